"""A private RabbitMQ broker (Debian's ``rabbitmq-server``) on free loopback ports, with its state in a temp dir.

Its own node name, AMQP port, distribution port and ``epmd`` (on its own
port, started here and stopped with the broker), its own ``HOME`` (the Erlang
cookie), no plugins: test runs from several worktrees never meet. ``guest``
may connect from loopback, which is all the tests need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD_CANDIDATES = [
    "/usr/lib/erlang/bin/epmd",
    *sorted(str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")),
]
START_TIMEOUT_S = 180.0


def available() -> str | None:
    """None when a broker can be started here, else why not."""
    if not os.path.exists(SERVER) and not shutil.which("rabbitmq-server"):
        return "rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class RabbitMQ:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hog-rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.node = f"hog{uuid.uuid4().hex[:10]}@localhost"
        self._server: subprocess.Popen | None = None
        self._epmd: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _environment(self) -> dict[str, str]:
        (self.root / "enabled_plugins").write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(self.root),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_LOGS": str(self.root / "rabbit.log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
        }

    def start(self) -> RabbitMQ:
        env = self._environment()
        epmd = next((p for p in EPMD_CANDIDATES if os.path.exists(p)), shutil.which("epmd"))
        if epmd:  # our own epmd, a child of ours (not a daemon that outlives the tests)
            self._epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = SERVER if os.path.exists(SERVER) else shutil.which("rabbitmq-server")
        with (self.root / "server.out").open("wb") as out:
            self._server = subprocess.Popen(
                [server],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"rabbitmq-server exited with {self._server.returncode}: "
                    f"{(self.root / 'server.out').read_text()[-2000:]}"
                )
            if _listening(self.port):
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"rabbitmq-server did not listen on port {self.port} within {START_TIMEOUT_S:.0f} s"
        )

    def stop(self) -> None:
        for process in (self._server, self._epmd):
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    """``python tests/rabbitmq_server.py``: start a broker, print its URL, run until SIGTERM (for .ci/run and benchmarks)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    broker = RabbitMQ().start()
    print(broker.url, flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
