"""A private one-node Slurm for tests: munged, slurmctld and slurmd as root, no systemd.

Everything lives in one folder (key, sockets, state, logs, slurm.conf) and
listens on free loopback ports, so test runs from several worktrees at once
never meet. Clients find it through ``SLURM_CONF`` (``environment()``).

Facts this configuration encodes (Debian's slurm-wlm 22.05):

- ``proctrack/linuxproc`` and ``task/none``: no cgroups or systemd needed;
- no accounting (``accounting_storage/none``): ``sacct`` fails, as on many sites;
- ``batch_sched_delay=0``: without it an array starts about 3 s late;
- ``SlurmdParameters=config_overrides``: the node offers more CPUs than the
  machine has, so many small elements run at once;
- ``KillWait`` short, so a walltime test waits seconds, not half a minute.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
START_TIMEOUT_S = 30.0


def missing_programs() -> list[str]:
    return [
        name
        for name in DAEMONS
        if shutil.which(name) is None and not Path("/usr/sbin", name).exists()
    ]


def why_unavailable() -> str | None:
    """Why no test Slurm can run here (None: it can)."""
    if os.geteuid() != 0:
        return "the test Slurm runs its daemons as root (no systemd); these tests need root"
    missing = missing_programs()
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} missing): install "
            f"{' '.join(PACKAGES)} (apt-get install --no-install-recommends; .ci/run does)"
        )
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """One node, ``cpus`` CPUs; ``max_array_size`` and ``min_job_age_s`` as given."""

    def __init__(
        self,
        root: Path | None = None,
        cpus: int = 16,
        max_array_size: int = 1001,
        min_job_age_s: int = 300,
        kill_wait_s: int = 2,
    ) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="hog-slurm-"))
        self.cpus, self.max_array_size, self.min_job_age_s, self.kill_wait_s = (
            cpus,
            max_array_size,
            min_job_age_s,
            kill_wait_s,
        )
        self.node = socket.gethostname().split(".")[0]
        self.partition = "debug"
        self.processes: list[subprocess.Popen] = []
        self.conf = self.root / "slurm.conf"

    # --- configuration -------------------------------------------------------------------

    def slurm_conf(self, ctld_port: int, slurmd_port: int) -> str:
        r = self.root
        return "\n".join(
            [
                "ClusterName=hogtest",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                f"SlurmctldPort={ctld_port}",
                f"SlurmdPort={slurmd_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={r}/munge/munge.socket",
                f"StateSaveLocation={r}/state",
                f"SlurmdSpoolDir={r}/spool",
                f"SlurmctldPidFile={r}/slurmctld.pid",
                f"SlurmdPidFile={r}/slurmd.pid",
                f"SlurmctldLogFile={r}/log/slurmctld.log",
                f"SlurmdLogFile={r}/log/slurmd.log",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/filetxt",
                f"JobCompLoc={r}/log/jobcomp.txt",
                "SchedulerType=sched/backfill",
                "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "SlurmdParameters=config_overrides",
                "MpiDefault=none",
                "SwitchType=switch/none",
                "ReturnToService=2",
                f"MaxArraySize={self.max_array_size}",
                f"MinJobAge={self.min_job_age_s}",
                f"KillWait={self.kill_wait_s}",
                "OverTimeLimit=0",
                "InactiveLimit=0",
                "SlurmctldTimeout=30",
                "SlurmdTimeout=30",
                "MessageTimeout=10",
                "DependencyParameters=kill_invalid_depend",
                f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=8000 State=UNKNOWN",
                f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def environment(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> SlurmCluster:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # a second test user's sbatch reads slurm.conf and reaches the munge socket
        for name in ("munge", "state", "spool", "log"):
            (r / name).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(self.slurm_conf(free_port(), free_port()))
        self.conf.chmod(0o644)
        env = {**os.environ, **self.environment()}
        self._start(
            [
                _program("munged"),
                "--force",
                "--foreground",
                f"--key-file={key}",
                f"--socket={r}/munge/munge.socket",
                f"--log-file={r}/log/munged.log",
                f"--pid-file={r}/munge/munged.pid",
                f"--seed-file={r}/munge/munged.seed",
            ],
            env,
        )
        self._wait_for(lambda: (r / "munge" / "munge.socket").exists(), "munged to open its socket")
        self._start([_program("slurmctld"), "-D", "-i", "-f", str(self.conf)], env)
        self._start([_program("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)], env)
        self._wait_for(self._node_ready, "the node to be idle")
        return self

    def _start(self, argv: list[str], env: dict[str, str]) -> None:
        log = (self.root / "log" / f"{Path(argv[0]).name}.out").open("ab")
        self.processes.append(
            subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        )

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead:
                break
            time.sleep(0.1)
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted((self.root / "log").glob("*"))
        )
        self.stop()
        raise RuntimeError(f"the test Slurm did not start: waited for {what}\n{logs}")

    def _node_ready(self) -> bool:
        done = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return done.returncode == 0 and done.stdout.strip().rstrip("*") in (
            "idle",
            "mixed",
            "allocated",
        )

    def run(
        self, *argv: str, check: bool = True, user: str | None = None
    ) -> subprocess.CompletedProcess:
        command = list(argv) if user is None else ["runuser", "-u", user, "--", *argv]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
            env={**os.environ, **self.environment()},
        )

    def idle(self, timeout_s: float = 60.0) -> None:
        """Wait until no job of the cluster is pending or running (a test leaves it clean)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.run(
                "squeue", "-h", "-t", "PD,R,CG,CF", "-o", "%i", check=False
            ).stdout.strip():
                return
            time.sleep(0.2)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)
