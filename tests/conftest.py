"""Shared fixtures: a scratch project folder, the real CLI, one warm environment cache per session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

TRIVIAL_SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
def square(x, offset=0):
    return x * x + offset
"""


# Started as a background job of a shell without job control (`nohup pytest &`, `sh -c '... &'`), this process
# ignores SIGINT, and so would every process a test starts: the tests that send a submitter Ctrl-C would see it
# ignored (exit 0, not 130). A handler here is reset to the default in each child, where Python installs its own.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SCRIPT_HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
# One call of f(x) appends x to the file $SIDE_EFFECTS: counts how often each call really ran.
COUNTING_SCRIPT = SCRIPT_HEAD + (
    "import os, time\n"
    "def f(x):\n"
    "    time.sleep(0.05)\n"
    "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
    "        log.write(f'{x}\\n')\n"
    "    return x\n"
)
# The same, but a call with x >= $HELD_FROM first waits (at most 120 s) for the file $GO: a test that stops a run
# part-way knows the run cannot have finished before it stopped it, however slowly the machine runs.
HELD_COUNTING_SCRIPT = SCRIPT_HEAD + (
    "import os, time\n"
    "def f(x):\n"
    "    time.sleep(0.05)\n"
    "    deadline = time.monotonic() + 120\n"
    "    while x >= int(os.environ['HELD_FROM']) and not os.path.exists(os.environ['GO']):\n"
    "        if time.monotonic() > deadline:\n"
    "            raise TimeoutError('the test never created ' + os.environ['GO'])\n"
    "        time.sleep(0.02)\n"
    "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
    "        log.write(f'{x}\\n')\n"
    "    return x\n"
)


def waiting_script(go: Path) -> str:
    """A script whose f(x) returns x once the file ``go`` exists (waiting at most 120 s): the run is surely
    still going while a test looks at it."""
    return SCRIPT_HEAD + (
        "import os, time\n"
        "def f(x):\n"
        "    deadline = time.monotonic() + 120\n"
        f"    while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    return x\n"
    )


_floor_build = []  # the background build of the SDK floor's environment, when the floor test is collected


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    """The floor test's environment takes minutes of downloads and installs and hardly any CPU: start it now, in
    the background, so it is ready when the test comes (tests/floor_environment.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # two test processes: the one that gets the floor test builds it there, the other goes on
    if any(item.nodeid.startswith("tests/test_globus_floor.py") for item in items):
        import tempfile

        from floor_environment import BackgroundBuild

        _floor_build.append(BackgroundBuild(Path(tempfile.mkdtemp(prefix="hog-floor-"))))


def pytest_sessionfinish(session, exitstatus):
    import shutil

    for build in _floor_build:
        build.stop()
        shutil.rmtree(build.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def floor_environment():
    """What the background build of the SDK floor's environment made (see tests/floor_environment.py)."""
    if not _floor_build:  # not started at collection (two test processes): built now
        import tempfile

        from floor_environment import BackgroundBuild

        _floor_build.append(BackgroundBuild(Path(tempfile.mkdtemp(prefix="hog-floor-"))))
    return _floor_build[0].outcome()


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """Every test shares one uv environment cache; tasks never download a Python."""
    cache = tmp_path_factory.mktemp("env-cache")
    old = dict(os.environ)
    os.environ["HOG_BATCH_CACHE_DIR"] = str(cache)
    os.environ["UV_PYTHON_DOWNLOADS"] = "never"
    # uv's own cache stays where it is warm (a task keeps a UV_CACHE_DIR you set, checked like its own).
    default_uv_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv"
    os.environ.setdefault("UV_CACHE_DIR", str(default_uv_cache))
    os.environ["HOG_BATCH_RETRY_BACKOFF_S"] = "0.01"
    yield cache
    os.environ.clear()
    os.environ.update(old)


class Project:
    """A folder with a manifest, scripts and data files, and the CLI run inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def manifest(self, text: str, name: str = "sweep.yaml") -> Path:
        return self.write(name, text)

    def cli(
        self, *args: str, timeout: float = 300, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "groundhog_batch", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def project(tmp_path) -> Project:
    folder = tmp_path / "my project"  # a space in every path
    folder.mkdir()
    yield Project(folder)
    stop_processes_under(folder)


def stop_processes_under(folder: Path) -> None:
    """Kill what a test left running in its folder (a detached run a failed assertion never released).

    A test that fails half-way must not leave a run waiting for ever: it would hold CPU and,
    in CI, the output pipe.
    """
    import signal

    marker = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes() or str(folder) in os.readlink(
                entry / "cwd"
            ):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


@pytest.fixture(scope="session")
def loopback_service(isolated_environment, tmp_path_factory):
    """The loopback Globus Compute service (tests/loopback_globus.py), for the whole session."""
    from loopback_globus import LoopbackGlobus

    from groundhog_batch.backends.local import find_uv

    os.environ["HOG_BATCH_UV"] = find_uv()  # what an endpoint's worker_init would provide
    service = LoopbackGlobus().start()  # on a free port: concurrent test runs never collide
    os.environ.update(service.environment())
    os.environ["GLOBUS_COMPUTE_USER_DIR"] = str(tmp_path_factory.mktemp("globus-compute-dir"))
    os.environ["HOG_BATCH_GLOBUS_POLL_S"] = "0.2"
    os.environ["HOG_BATCH_GLOBUS_POLL_MAX_S"] = "1.0"
    os.environ["HOG_BATCH_GLOBUS_RETRY_S"] = "0.05"
    os.environ["HOG_BATCH_STATE_DIR"] = str(
        tmp_path_factory.mktemp("hog-batch-state")
    )  # the shared rate limiter's file
    yield service
    service.stop()


@pytest.fixture
def globus(loopback_service):
    """The loopback service with no faults and a fresh request count."""
    loopback_service.reset()
    yield loopback_service
    loopback_service.reset()
    loopback_service.release()


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def task_processes(run_dir: Path) -> list[tuple[int, int | None, int | None]]:
    """(bash, runner supervisor, worker) pids of each task of the run now running (None: not started yet).

    A task is ``bash RUN/tasks/ID.sh``; its supervisor is the Python child of that bash that runs
    hog_runner.py (or, once an environment keeps its bytecode, .hog-runner-ID.pyc), its worker the
    supervisor's child (a fork of it).
    """
    marker = str(run_dir / "tasks").encode()
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    children: dict[int, list[int]] = {}
    for pid in pids:
        parent = _parent_pid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found = []
    for pid in pids:
        argv = _argv(pid)
        if argv and argv[0].endswith(b"bash") and len(argv) > 1 and argv[1].startswith(marker):
            supervisor = next(
                (
                    child
                    for child in children.get(pid, [])
                    if any(
                        part.endswith((b"/hog_runner.py", b".pyc")) and b"runner" in part
                        for part in _argv(child)
                    )
                ),
                None,
            )
            worker = next(iter(children.get(supervisor, [])), None) if supervisor else None
            found.append((pid, supervisor, worker))
    return found


@contextmanager
def small_filesystem(path, size: str):
    """A tmpfs mounted at ``path`` (root only); skips the test where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="session")
def slurm_cluster(isolated_environment):
    """A private one-node Slurm (tests/slurm_cluster.py) for the session; SLURM_CONF points every client at it."""
    from slurm_cluster import SlurmCluster, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    from groundhog_batch.backends.local import find_uv

    cluster = SlurmCluster().start()
    saved = {
        key: os.environ.get(key)
        for key in (
            "SLURM_CONF",
            "HOG_BATCH_UV",
            "HOG_BATCH_SLURM_POLL_S",
            "HOG_BATCH_SLURM_POLL_MAX_S",
        )
    }
    os.environ.update(cluster.environment())
    os.environ["HOG_BATCH_UV"] = find_uv()  # what a cluster's worker_init would provide
    os.environ["HOG_BATCH_SLURM_POLL_S"] = "0.3"
    os.environ["HOG_BATCH_SLURM_POLL_MAX_S"] = "1.0"
    yield cluster
    cluster.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def slurm(slurm_cluster):
    """The session's Slurm, with no job of an earlier test still queued or running."""
    slurm_cluster.idle()
    yield slurm_cluster
