"""The Slurm commands hog-batch runs, and what their answers mean: the one seam to a cluster.

Only the client commands of a login node are used (``sbatch``, ``squeue``,
``scontrol``, ``scancel``, and ``sacct`` where accounting works); nothing is
assumed of the compute nodes but bash and a shared filesystem. Facts about
their answers (Slurm 22.05):

- ``squeue -h -r -t all`` lists every element of an array on its own line;
  an element is known by its array job id (``%F``) and index (``%K``),
  since its own id (``%A``/``%i``) differs per element. Finished elements
  stay listed for ``MinJobAge`` (300 s by default), then Slurm forgets them.
- a forgotten id gives ``Invalid job id specified`` (exit 1) to ``squeue -j``
  and ``scontrol show job``; ``scancel`` of one is silent with exit 0.
- ``sacct`` fails where there is no accounting database ("Slurm accounting
  storage is disabled"), as on many sites.
- an element killed at its time limit ends ``TIMEOUT`` (exit ``0:15``);
  one that exits 3 ends ``FAILED`` (``3:0``).

A controller that cannot be reached is a :class:`SlurmUnreachable`, which a
caller following running jobs waits out; an answer that refuses the request
(a bad partition, an invalid array) is a :class:`SlurmRefused` carrying
Slurm's own message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

COMMAND_TIMEOUT_S = 60.0
SQUEUE_FORMAT = "%F|%K|%T|%j|%r"
INVALID_JOB_ID = "Invalid job id specified"
UNREACHABLE_MARKS = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Communication connection failure",
    "Zero Bytes were transmitted",
    "Slurm backup controller in standby mode",
    "Unable to establish controller machine",
)


class ElementState(str, Enum):
    """An array element's state as Slurm names it (``squeue %T``, ``scontrol JobState``)."""

    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OTHER = "OTHER"

    @classmethod
    def parse(cls, text: str) -> ElementState:
        word = text.strip().split()[0].upper() if text.strip() else ""
        try:
            return cls(word)
        except ValueError:
            return cls.OTHER

    @property
    def ended(self) -> bool:
        """The element will run no more (COMPLETING still runs its epilog: not yet)."""
        return self in ENDED


ENDED = frozenset(
    {
        ElementState.COMPLETED,
        ElementState.FAILED,
        ElementState.TIMEOUT,
        ElementState.CANCELLED,
        ElementState.OUT_OF_MEMORY,
        ElementState.NODE_FAIL,
        ElementState.PREEMPTED,
        ElementState.BOOT_FAIL,
        ElementState.DEADLINE,
    }
)


@dataclass(frozen=True)
class Element:
    """One line of ``squeue -r``: an array element."""

    array_id: str
    index: int
    state: ElementState
    name: str
    reason: str = ""


class SlurmError(Exception):
    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}")
        self.command, self.message = command, message


class SlurmRefused(SlurmError):
    """Slurm answered and said no (its own words in ``message``)."""


class SlurmUnreachable(SlurmError):
    """The controller did not answer; try again later."""


class SlurmMissing(SlurmError):
    """The command is not installed here."""


def slurm_message(stderr: str) -> str:
    """Slurm's own words, without the ``sbatch: error:`` prefixes, one line."""
    lines = [
        re.sub(r"^(\w+: )?(error: )?", "", line.strip())
        for line in stderr.splitlines()
        if line.strip()
    ]
    unique = list(dict.fromkeys(line for line in lines if line))
    return "; ".join(unique) or "no message"


class SlurmCommands:
    """Runs the Slurm client commands; ``env`` is added to the environment (``SLURM_CONF``, say)."""

    def __init__(
        self, env: dict[str, str] | None = None, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> None:
        self.env = {**os.environ, **(env or {})}
        self.timeout_s = timeout_s

    def available(self, program: str = "sbatch") -> bool:
        return shutil.which(program, path=self.env.get("PATH")) is not None

    def _run(
        self, argv: list[str], stdin: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        program = argv[0]
        if not self.available(program):
            raise SlurmMissing(program, f"{program} is not on PATH")
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env=self.env,
                cwd=cwd,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SlurmUnreachable(program, f"no answer in {self.timeout_s:g} s") from None
        except OSError as exc:
            raise SlurmMissing(program, f"cannot run {program}: {exc.strerror}") from None
        if done.returncode != 0 and any(mark in done.stderr for mark in UNREACHABLE_MARKS):
            raise SlurmUnreachable(program, slurm_message(done.stderr))
        return done

    # --- submitting -----------------------------------------------------------------------

    def sbatch(
        self,
        options: list[str],
        script: Path | None,
        cwd: Path | None = None,
        test_only: bool = False,
    ) -> str:
        """Submit ``script`` with ``options``; the job id (``--parsable``). ``test_only``: check, submit nothing
        (``script`` may then be None)."""
        argv = [
            "sbatch",
            "--parsable",
            *(["--test-only"] if test_only else []),
            *options,
            *([str(script)] if script is not None else ["--wrap=true"]),
        ]
        done = self._run(argv, cwd=cwd)
        if done.returncode != 0:
            raise SlurmRefused("sbatch", slurm_message(done.stderr))
        if test_only:
            return ""
        job_id = done.stdout.strip().split(";")[0]  # "ID" or "ID;CLUSTER"
        if not job_id.isdigit():
            raise SlurmRefused("sbatch", f"unexpected answer {done.stdout.strip()!r}")
        return job_id

    # --- following ------------------------------------------------------------------------

    def elements(self, user: str | None = None) -> list[Element]:
        """Every array element of ``user`` (default: this user) Slurm still knows, finished ones too."""
        argv = ["squeue", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT, "-u", user or _user()]
        done = self._run(argv)
        if done.returncode != 0:
            raise SlurmRefused("squeue", slurm_message(done.stderr))
        found = []
        for line in done.stdout.splitlines():
            parts = line.split("|", 4)
            if len(parts) < 4 or not parts[0].isdigit():
                continue
            index = int(parts[1]) if parts[1].isdigit() else -1  # N/A: not an array
            found.append(
                Element(
                    parts[0],
                    index,
                    ElementState.parse(parts[2]),
                    parts[3],
                    parts[4] if len(parts) > 4 else "",
                )
            )
        return found

    def job(self, job_id: str) -> dict[str, str] | None:
        """``scontrol show job`` as key/value pairs; None if Slurm no longer knows the id."""
        done = self._run(["scontrol", "-o", "show", "job", job_id])
        if done.returncode != 0:
            if INVALID_JOB_ID in done.stderr:
                return None
            raise SlurmRefused("scontrol", slurm_message(done.stderr))
        line = done.stdout.splitlines()[0] if done.stdout.strip() else ""
        return dict(re.findall(r"(\S+?)=(\S*)", line))

    def config(self) -> dict[str, str]:
        """``scontrol show config`` as key/value pairs."""
        done = self._run(["scontrol", "show", "config"])
        if done.returncode != 0:
            raise SlurmRefused("scontrol", slurm_message(done.stderr))
        found = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                found[key.strip()] = value.strip()
        return found

    def max_array_size(self) -> int:
        """The site's ``MaxArraySize``: an array's indices must be below it."""
        value = self.config().get("MaxArraySize", "1001")
        return int(value) if value.isdigit() else 1001

    def largest_node_memory_mib(self, partition: str | None = None) -> int | None:
        """The most memory (MiB, ``RealMemory``) a node of ``partition`` (all nodes when None) has; None
        when ``sinfo`` does not say."""
        argv = ["sinfo", "-h", "-N", "-o", "%m"] + (["-p", partition] if partition else [])
        try:
            done = self._run(argv)
        except SlurmError:
            return None
        sizes = [
            int(word.rstrip("+")) for word in done.stdout.split() if word.rstrip("+").isdigit()
        ]
        return max(sizes) if done.returncode == 0 and sizes else None

    def partition_max_time_s(self, partition: str | None = None) -> float | None:
        """The longest time limit (``MaxTime``) of ``partition`` (the longest of all when None), in seconds;
        None when it has none ("infinite") or ``sinfo`` does not say."""
        from .base import parse_walltime_s

        argv = ["sinfo", "-h", "-o", "%l"] + (["-p", partition] if partition else [])
        try:
            done = self._run(argv)
        except SlurmError:
            return None
        words = done.stdout.split() if done.returncode == 0 else []
        limits = [parse_walltime_s(word) for word in words]
        if not limits or any(limit is None for limit in limits):
            return None
        return max(limits)

    def accounting_states(
        self, array_ids: Iterable[str]
    ) -> dict[tuple[str, int], tuple[ElementState, str]] | None:
        """``sacct``'s (state, exit code) per element, or None where accounting does not work."""
        ids = ",".join(array_ids)
        if not ids or not self.available("sacct"):
            return None
        try:
            done = self._run(["sacct", "-n", "-P", "-X", "-j", ids, "-o", "JobID,State,ExitCode"])
        except SlurmError:
            return None
        if done.returncode != 0:
            return None
        found = {}
        for line in done.stdout.splitlines():
            job_id, _, rest = line.partition("|")
            state, _, code = rest.partition("|")
            array_id, sep, index = job_id.partition("_")
            if sep and index.isdigit():
                found[(array_id, int(index))] = (ElementState.parse(state), code)
        return found

    # --- stopping -------------------------------------------------------------------------

    def scancel(self, job_ids: Iterable[str], signal: str | None = None) -> None:
        ids = list(job_ids)
        if not ids:
            return
        done = self._run(["scancel", *([f"--signal={signal}"] if signal else []), *ids])
        if done.returncode != 0:
            raise SlurmRefused("scancel", slurm_message(done.stderr))


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


__all__ = [
    "ENDED",
    "Element",
    "ElementState",
    "SlurmCommands",
    "SlurmError",
    "SlurmMissing",
    "SlurmRefused",
    "SlurmUnreachable",
    "slurm_message",
]
