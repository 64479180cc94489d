"""The real ``globus-compute-endpoint`` daemon, configured in a temp dir and pointed at the loopback service.

``EndpointDaemon(service).configure()`` writes an endpoint directory as
``globus-compute-endpoint configure`` lays it out (``config.yaml``,
``user_config_template.yaml.j2``, ``user_environment.yaml``) under its own
``GLOBUS_COMPUTE_USER_DIR``; ``start()`` runs ``globus-compute-endpoint start
<name>`` in the foreground (its own session) with client credentials and the
service URLs of tests/loopback_globus.py, and waits until the endpoint has
registered and its first heartbeat has reached the service over RabbitMQ.

Run as root the core endpoint registers as multi-user (it then needs an
``email``) and clears the environment of the user endpoints it forks:
``user_environment.yaml`` gives them what tasks need (PATH, the uv cache,
hog-batch's test settings).

``kill()`` SIGKILLs the daemon and everything under it (its user endpoints and
their tasks), as a lost host or an OOM kill would; ``stop()`` is
``globus-compute-endpoint stop <name>``.

Every 4.x endpoint is templated: ``config.yaml`` holds no engine, and each
user endpoint is rendered from ``user_config_template.yaml.j2`` with the
submission's ``user_endpoint_config``, checked first against
``user_config_schema.json`` (both published at registration). Not tried
here: a root endpoint mapping Globus identities to *other* local users
(``identity_mapping_config_path``), whose user endpoints run as those users.
On this machine the venv's interpreter lives under ``/root`` (mode 0700):
``su nobody -c '.venv/bin/python -c 1'`` is "Permission denied", so a mapped
user could not even start ``globus-compute-endpoint``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN = pathlib.Path(sys.executable).parent / "globus-compute-endpoint"
HEARTBEAT_S = 5  # the endpoint's minimum
START_TIMEOUT_S = 120.0
# A user endpoint rendered from each user's config: ``endpoint_setup`` runs as it starts, ``max_workers``
# sizes its pool, ``engine`` picks threads of its own process (light on a small machine) or the
# GlobusComputeEngine real endpoints run (parsl's HighThroughputExecutor, a block of worker processes).
THREAD_TEMPLATE = """\
heartbeat_period: {heartbeat_s}
debug: {{{{ debug | default(false) | tojson }}}}
endpoint_setup: {{{{ endpoint_setup | default("") }}}}
engine:
{{%- if engine | default("threads") == "globus" %}}
  type: GlobusComputeEngine
  max_workers_per_node: {{{{ max_workers | default({workers}) }}}}
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 1
    max_blocks: 1
{{%- else %}}
  type: ThreadPoolEngine
  max_workers: {{{{ max_workers | default({workers}) }}}}
{{%- endif %}}
"""
# The keys a user may set (checked by the endpoint before rendering, and by hog-batch before submitting).
THREAD_SCHEMA = {
    "type": "object",
    "properties": {
        "tag": {"type": "string"},
        "endpoint_setup": {"type": "string"},
        "worker_init": {"type": "string"},
        "max_workers": {"type": "integer", "minimum": 1},
        "debug": {"type": "boolean"},
        "engine": {"enum": ["threads", "globus"]},
    },
    "additionalProperties": False,
}
PASSED_ENV_PREFIXES = ("HOG_BATCH_", "UV_", "SIDE_EFFECTS")


def available() -> str | None:
    """None when the daemon can run here, else why not."""
    if not BIN.exists():
        return f"globus-compute-endpoint is not installed beside {sys.executable}"
    try:
        import pyprctl  # noqa: F401 - the core endpoint imports it at start
    except Exception as exc:  # noqa: BLE001
        return f"the core endpoint needs pyprctl, which cannot be imported here: {exc!r}"
    return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (children first found, then theirs)."""
    children, found, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class EndpointDaemon:
    def __init__(
        self,
        service,
        name: str = "hog-test-ep",
        template: str | None = None,
        schema: dict | None = None,
        workers: int = 2,
        extra_config: str = "",
        environment: dict[str, str] | None = None,
    ) -> None:
        self.service, self.name = service, name
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="hog-endpoint-"))
        self.compute_dir = self.root / "globus_compute"
        self.dir = self.compute_dir / name
        self.template = template or THREAD_TEMPLATE.format(heartbeat_s=HEARTBEAT_S, workers=workers)
        self.schema = THREAD_SCHEMA if schema is None else schema
        self.extra_config = extra_config
        self.environment = environment or {}
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint_id(self) -> str | None:
        """The id in the daemon's endpoint.json; None until it has written the whole file (a starting daemon
        writes it again in place, so a look can find it empty or half written)."""
        try:
            return json.loads((self.dir / "endpoint.json").read_text())["endpoint_id"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.service.environment(),
            "GLOBUS_COMPUTE_USER_DIR": str(self.compute_dir),
        }

    def user_environment(self) -> dict[str, str]:
        """What user endpoints and their tasks get (a root core endpoint clears their environment)."""
        passed = {
            name: value
            for name, value in os.environ.items()
            if name.startswith(PASSED_ENV_PREFIXES)
        }
        return {
            "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "GLOBUS_COMPUTE_USER_DIR": str(self.compute_dir),
            **passed,
            **self.environment,
        }

    def configure(self) -> EndpointDaemon:
        self.dir.mkdir(parents=True)
        (self.dir / "config.yaml").write_text(
            f"display_name: hog-batch test endpoint\nemail: hog-batch-tests@localhost\n"
            f"heartbeat_period: {HEARTBEAT_S}\n{self.extra_config}"
        )
        (self.dir / "user_config_template.yaml.j2").write_text(self.template)
        (self.dir / "user_config_schema.json").write_text(json.dumps(self.schema, indent=1))
        (self.dir / "user_environment.yaml").write_text(json.dumps(self.user_environment()))
        return self

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for path in [self.root / "daemon.out", *sorted(self.compute_dir.rglob("endpoint.log"))]:
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def start(self) -> str:
        """``globus-compute-endpoint start``; returns the endpoint id once it registered and its heartbeat arrived."""
        registered_before = len(self.service.endpoint_broker().registrations)
        heartbeat_before = time.monotonic()
        out = (self.root / "daemon.out").open("ab")
        self.process = subprocess.Popen(
            [str(BIN), "start", self.name],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        out.close()
        self.starts += 1
        broker = self.service.endpoint_broker()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"globus-compute-endpoint start exited with {self.process.returncode}\n{self.log_tail()}"
                )
            endpoint_id = self.endpoint_id
            if (
                endpoint_id
                and len(broker.registrations) > registered_before
                and broker.heartbeats.get(endpoint_id, 0.0) > heartbeat_before
            ):
                return endpoint_id
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"the endpoint did not register within {START_TIMEOUT_S:.0f} s\n{self.log_tail()}"
        )

    def stop(self) -> subprocess.CompletedProcess:
        """``globus-compute-endpoint stop <name>``, then wait for the daemon to end.

        ``stop`` gives the daemon 10 s and exits 255 ("Encountered timeout
        attempting to stop endpoint") when calls keep a user endpoint busy; the
        daemon ends anyway, once it has killed its user endpoints.
        """
        stopped = subprocess.run(
            [str(BIN), "stop", self.name],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None
        return stopped

    def kill(self) -> None:
        """SIGKILL the daemon and all its processes; the stale PID files stay (as after a lost host)."""
        if self.process is None:
            return
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        self.process = None

    def remove_stale_pid_files(self, user_endpoints: bool = False) -> None:
        """What ``start`` after a kill asks of an administrator: "remove the PID file before starting again".

        The core endpoint's; with ``user_endpoints``, theirs too (which the
        administrator is not told about: left alone, a user endpoint started
        within three heartbeats of the kill refuses to start, and says so).
        """
        (self.dir / "daemon.pid").unlink(missing_ok=True)
        if user_endpoints:
            for path in self.compute_dir.glob("*/daemon.pid"):
                path.unlink(missing_ok=True)

    def user_endpoint_pids(self) -> list[int]:
        return [] if self.process is None else descendants(self.process.pid)

    def close(self) -> None:
        """The test's cleanup: nothing of the daemon stays, its directory neither."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
