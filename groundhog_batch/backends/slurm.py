"""Run tasks as Slurm job arrays, submitted from this machine (a login node): the ``slurm`` kind.

- **Arrays, not jobs.** A job's tasks go out as ``sbatch --array=0-N%max_parallel``;
  element i runs ``bash TASK.sh`` of task i, byte for byte the script a local
  run uses (``render/array.sh`` is the wrapper). Arrays are split at the
  site's ``MaxArraySize``.
- **Submit, then log out.** Every file a task needs or writes is under the
  run directory (or ``scratch:``), on a filesystem the nodes share; the
  ledger keeps each task's element id (``ARRAY_INDEX``). Nothing has to run
  here while the arrays run: ``resume`` and ``status --watch`` follow them
  again by those ids.
- **Exactly once.** The job name carries the run and the task range, and the
  array about to be submitted is in the run's metadata first: a submitter
  that dies between ``sbatch`` and the ledger write is found out by name in
  ``squeue``, and its array is adopted, not submitted again.
- **State without accounting.** A task is done when its wrapper wrote its
  exit status; records come from its records file as they are written.
  ``squeue -r`` says how an element ended when the wrapper could not say
  (a time limit, a cancel); ``scontrol show job`` tells a forgotten job
  ("Invalid job id specified") from one still queued. A forgotten job with
  no records is lost: its calls run again, once. A controller that does not
  answer is waited out.
- **Walltime.** An element killed at its time limit keeps every call it
  finished; the running call fails with a ``TimeoutError`` naming the
  walltime; the calls it never started are pending again, no attempt counted.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, HogError
from ..ids import content_id
from ..render.renderer import render_array_script
from ..render.runner import DELIMITER
from ..run_paths import write_atomic
from .base import (
    AbandonedTask,
    Backend,
    BackendContext,
    BackendKind,
    ConfigLocator,
    IdsCallback,
    JobTarget,
    Limits,
    TaskReport,
    TaskSubmission,
    parse_walltime_s,
)
from .records_file import RecordsFiles
from .slurm_commands import (
    ElementState,
    SlurmCommands,
    SlurmError,
    SlurmMissing,
    SlurmUnreachable,
)
from .slurm_config import config_problems, sbatch_options, slurm_time, warning_signal_s

STDERR_TAIL_BYTES = 4000
DEFAULT_MAX_PARALLEL = 64
MAX_AUTO_CALLS_PER_TASK = 1_000
LOST_KEY = "lost_calls"
SUBMITTING_KEY = "submitting"  # the array sbatch is about to take: its name and tasks
ARRAYS_KEY = "arrays"  # array job id -> its task folder
RUN_KEY = "run_key"
CALL_OF_RECORD = re.compile(rb'^\{"call": (\d+)', re.M)
NODE_LOCAL_PREFIXES = ("/tmp", "/var/tmp", "/dev/shm", "/run")


def poll_bounds_s() -> tuple[float, float]:
    """(first, longest) wait between ``squeue`` calls; it grows while nothing changes."""
    return (
        float(os.environ.get("HOG_BATCH_SLURM_POLL_S", "1.0")),
        float(os.environ.get("HOG_BATCH_SLURM_POLL_MAX_S", "15.0")),
    )


@dataclass
class Followed:
    """A task whose element runs (or waits) on Slurm."""

    job: str
    calls: list[int]
    array_id: str
    index: int
    task_dir: Path
    reported: set[int] = field(default_factory=set)
    state: ElementState | None = None  # as Slurm said at the last look

    @property
    def element(self) -> str:
        return f"{self.array_id}_{self.index}"


def node_local(path: Path) -> bool:
    """Whether ``path`` is on a filesystem only this node sees (``/tmp``, a tmpfs)."""
    resolved = str(path.resolve())
    if any(
        resolved == prefix or resolved.startswith(prefix + "/") for prefix in NODE_LOCAL_PREFIXES
    ):
        return True
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    best, fstype = "", ""
    for parts in mounts:
        if (
            len(parts) >= 3
            and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/"))
            and len(parts[1]) > len(best)
        ):
            best, fstype = parts[1], parts[2]
    return fstype in ("tmpfs", "ramfs")


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - STDERR_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _saw_delimiter(path: Path) -> bool:
    """Whether the task's runner started: its delimiter line leads its stdout (only the task script's own
    messages, which are few, come before it)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return False
    return (DELIMITER + "\n").encode() in head


def _exit_status(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


class SlurmBackend(Backend):
    name = "slurm"
    queues_tasks = (
        True  # every task goes out at once: the array's %max_parallel keeps the rest waiting
    )

    def __init__(self, context: BackendContext, commands: SlurmCommands | None = None) -> None:
        self.context = context
        self.commands = commands or SlurmCommands()
        self._followed: dict[str, Followed] = {}
        self._records: dict[Path, RecordsFiles] = {}
        self._stopped: dict[
            str, bytes
        ] = {}  # tasks cancel stopped: what they recorded, until it is handed on
        self._done: dict[
            str, Path
        ] = {}  # ended tasks whose files go once the ledger has their records
        self._first_poll_s, self._longest_poll_s = poll_bounds_s()
        self._interval_s = self._first_poll_s
        self._next_check = 0.0
        self._max_array_size: int | None = None
        self._node_memory: dict[str | None, int | None] = {}  # partition -> its largest node's MiB
        self._max_time: dict[str | None, float | None] = {}  # partition -> its MaxTime (s)
        self._warned_node_local = False

    # --- where things are ------------------------------------------------------------------

    def run_key(self) -> str:
        key = self.context.meta.get(RUN_KEY)
        if key is None:
            key = os.urandom(4).hex()
            self.context.meta.set(RUN_KEY, key)
        return key

    def task_dir(self, target: JobTarget) -> Path:
        scratch = target.endpoint.config.get("scratch")
        if scratch:
            return (
                Path(os.path.expandvars(os.path.expanduser(str(scratch)))).absolute()
                / f"hog-{self.run_key()}"
            )
        return self.context.scratch_dir

    def records(self, task_dir: Path) -> RecordsFiles:
        if task_dir not in self._records:
            self._records[task_dir] = RecordsFiles(task_dir)
        return self._records[task_dir]

    def _prepare_dir(self, task_dir: Path) -> None:
        task_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if node_local(task_dir) and not self._warned_node_local:
            self._warned_node_local = True
            print(
                f"hog-batch: warning: the task files go to {task_dir}, on a filesystem only this node sees; "
                "elements on other nodes cannot read their scripts or write their records. Put the run directory "
                "on a shared filesystem (--run-dir), or set `scratch:` in the Slurm endpoint's config",
                file=sys.stderr,
            )

    # --- submission --------------------------------------------------------------------------

    def max_array_size(self) -> int:
        if self._max_array_size is None:
            self._max_array_size = self.commands.max_array_size()
        return self._max_array_size

    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        # One array per job and resources: a retry whose walltime or memory escalated goes out in its own.
        by_array: dict[tuple[str, str | None, int | None], list[TaskSubmission]] = {}
        for task in tasks:
            time_limit = slurm_time(task.walltime_s) if task.walltime_s else None
            memory = math.ceil(task.memory_mib) if task.memory_mib else None
            by_array.setdefault((task.job, time_limit, memory), []).append(task)
        for (job_name, _, _), submissions in by_array.items():
            target = self.context.job(job_name)
            task_dir = self.task_dir(target)
            self._prepare_dir(task_dir)
            try:
                size = max(1, self.max_array_size())  # indices 0..MaxArraySize-1
            except SlurmError as exc:
                raise _submit_error(exc, target) from None
            for start in range(0, len(submissions), size):
                self._submit_array(target, task_dir, submissions[start : start + size], on_ids)
        self._next_check = min(self._next_check, time.monotonic() + self._first_poll_s)

    def array_name(self, job_name: str, first_task: str, n_tasks: int) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_name)[:40]
        return f"hog-{self.run_key()}-{safe}-{first_task.rsplit('-', 1)[-1]}+{n_tasks}"

    def _submit_array(
        self, target: JobTarget, task_dir: Path, group: list[TaskSubmission], on_ids: IdsCallback
    ) -> None:
        records = self.records(task_dir)
        for submission in group:
            write_atomic(task_dir / f"{submission.task_id}.sh", submission.script)
        name = self.array_name(target.name, group[0].task_id, len(group))
        script = task_dir / f"{name}.sbatch"
        worker_init = str(target.endpoint.config.get("worker_init") or "")
        write_atomic(
            script,
            render_array_script(
                name,
                task_dir,
                [s.task_id for s in group],
                [records.secret(s.task_id) for s in group],
                worker_init,
            ),
        )
        options = self.array_options(
            target,
            task_dir,
            name,
            len(group),
            self._walltime_within_partition(target, group[0].walltime_s),
            self._memory_within_nodes(target, group[0].memory_mib),
        )
        self.context.meta.set(
            SUBMITTING_KEY,
            {"name": name, "tasks": [s.task_id for s in group], "dir": str(task_dir)},
        )
        try:
            array_id = self.commands.sbatch(options, script, cwd=self.context.working_dir)
        except (
            SlurmUnreachable
        ) as exc:  # it may have taken the array: `resume` looks it up by name first
            raise BackendError(
                message=f"sbatch got no answer from Slurm: {exc.message}",
                hint="the controller may be down or busy; `hog-batch resume RUN_DIR` finds the array "
                "if Slurm took it, and submits it otherwise",
            ) from None
        except SlurmError as exc:
            self.context.meta.set(SUBMITTING_KEY, None)
            raise _submit_error(exc, target) from None
        on_ids([(s.task_id, f"{array_id}_{i}") for i, s in enumerate(group)], None)
        self._remember_array(array_id, task_dir)
        self.context.meta.set(SUBMITTING_KEY, None)
        for i, submission in enumerate(group):
            self._followed[submission.task_id] = Followed(
                target.name, list(submission.calls), array_id, i, task_dir
            )

    def array_options(
        self,
        target: JobTarget,
        task_dir: Path,
        name: str,
        n_tasks: int,
        walltime_s: float | None = None,
        memory_mib: float | None = None,
    ) -> list[str]:
        return array_options(
            target.endpoint.config,
            target.max_parallel,
            task_dir,
            self.context.working_dir,
            name,
            n_tasks,
            walltime_s,
            memory_mib,
        )

    @staticmethod
    def _of_partition(
        target: JobTarget, known: dict, look_up: Callable[[str | None], Any]
    ) -> tuple[str | None, Any]:
        """The job's partition (None: the default) and what ``look_up`` says of it, asked once a partition."""
        partition = target.endpoint.config.get("partition") or None
        if partition not in known:
            known[partition] = look_up(partition)
        return partition, known[partition]

    def _walltime_within_partition(
        self, target: JobTarget, walltime_s: float | None
    ) -> float | None:
        """A retry's escalated ``walltime_s``, or the partition's ``MaxTime`` when it grew past that."""
        if not walltime_s:
            return walltime_s
        partition, longest = self._of_partition(
            target, self._max_time, self.commands.partition_max_time_s
        )
        if longest is None or walltime_s <= longest:
            return walltime_s
        print(
            f"hog-batch: warning: a retry of job {target.name!r} would need --time={slurm_time(walltime_s)} "
            f"(`walltime:` grown by `retries: {{walltime: ...}}`), more than "
            f"{'partition ' + repr(partition) if partition else 'any partition'} allows "
            f"(MaxTime {slurm_time(longest)}): asking for that",
            file=sys.stderr,
        )
        return longest

    def _memory_within_nodes(self, target: JobTarget, memory_mib: float | None) -> float | None:
        """``memory_mib``, or the most a node has when a retry escalated it past that (nf-core's
        ``check_max`` habit: the last attempts get all there is; a first attempt over it was refused
        before the run, by ``check``)."""
        if not memory_mib:
            return memory_mib
        partition, largest = self._of_partition(
            target, self._node_memory, self.commands.largest_node_memory_mib
        )
        if largest is None or memory_mib <= largest:
            return memory_mib
        print(
            f"hog-batch: warning: job {target.name!r} asks for {math.ceil(memory_mib)} MiB per element "
            f"(`memory:`, grown by `retries: {{memory: ...}}`), more than any node "
            f"{'of partition ' + repr(partition) + ' ' if partition else ''}has ({largest} MiB): "
            f"asking for {largest} MiB",
            file=sys.stderr,
        )
        return float(largest)

    def _remember_array(self, array_id: str, task_dir: Path) -> None:
        arrays = dict(self.context.meta.get(ARRAYS_KEY, {}) or {})
        arrays[array_id] = str(task_dir)
        self.context.meta.set(ARRAYS_KEY, arrays)

    # --- following ---------------------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[TaskReport]:
        if any(self._stopped.values()):
            reports = [
                TaskReport(task_id, lines=lines)
                for task_id, lines in self._stopped.items()
                if lines
            ]
            self._stopped = dict.fromkeys(self._stopped, b"")
            return reports
        if not self._followed:
            time.sleep(max(timeout_s, 0))
            return []
        reports = self._stream()
        if not reports and timeout_s > 0:
            time.sleep(min(timeout_s, max(0.0, self._next_check - time.monotonic())))
            reports = self._stream()
        if time.monotonic() >= self._next_check:
            try:
                ended = self._check()
            except SlurmUnreachable:
                ended = []
                self._interval_s = min(self._interval_s * 2, self._longest_poll_s)
            except SlurmError as exc:  # squeue refused: say so, and keep following
                print(
                    f"hog-batch: warning: cannot ask Slurm for the arrays' state ({exc}); trying again",
                    file=sys.stderr,
                )
                ended = []
            reports += ended
            self._interval_s = (
                self._first_poll_s if reports else min(self._interval_s * 1.5, self._longest_poll_s)
            )
            self._next_check = time.monotonic() + self._interval_s
        return reports

    def _stream(self) -> list[TaskReport]:
        """The records written since the last look; a task whose wrapper wrote a clean exit status is done."""
        reports = []
        for task_id, followed in list(self._followed.items()):
            if (
                followed.state is ElementState.PENDING
            ):  # no files yet: not looked at until Slurm starts it
                continue
            lines = self._new_lines(task_id, followed)
            status = _exit_status(followed.task_dir / f"{task_id}.exit")
            if (
                status is not None and status < 128
            ):  # it ended by itself: nothing Slurm says changes that
                reports.append(self._finish(task_id, followed, None, status, lines))
            elif lines:
                reports.append(TaskReport(task_id, lines=lines))
        return reports

    def _new_lines(self, task_id: str, followed: Followed) -> bytes:
        lines = self.records(followed.task_dir).read_new(task_id)
        if lines:
            followed.reported.update(int(call) for call in CALL_OF_RECORD.findall(lines))
        return lines

    def _check(self) -> list[TaskReport]:
        """Ask Slurm how the followed elements are; reports of those that ended."""
        known = {(e.array_id, e.index): e.state for e in self.commands.elements()}
        reports = []
        forgotten = []
        for task_id, followed in list(self._followed.items()):
            state = known.get((followed.array_id, followed.index))
            if state is None:
                details = self.commands.job(followed.element)
                if details is None:  # Slurm forgot it (MinJobAge), or never had it
                    forgotten.append((task_id, followed))
                    continue
                state = ElementState.parse(details.get("JobState", ""))
            followed.state = state
            if state.ended:
                reports.append(self._ended(task_id, followed, state))
        if forgotten:  # where accounting works, it still knows how they ended
            accounted = (
                self.commands.accounting_states({followed.array_id for _, followed in forgotten})
                or {}
            )
            for task_id, followed in forgotten:
                state = accounted.get((followed.array_id, followed.index), (None, ""))[0]
                if state is not None and state.ended:
                    reports.append(self._ended(task_id, followed, state))
                else:
                    reports.append(self._forgotten(task_id, followed))
        return reports

    def _ended(self, task_id: str, followed: Followed, state: ElementState) -> TaskReport:
        status = _exit_status(followed.task_dir / f"{task_id}.exit")
        return self._finish(task_id, followed, state, status, self._new_lines(task_id, followed))

    def _forgotten(self, task_id: str, followed: Followed) -> TaskReport:
        lines = self._new_lines(task_id, followed)
        status = _exit_status(followed.task_dir / f"{task_id}.exit")
        if status is not None or lines or followed.reported:
            return self._finish(task_id, followed, None, status, lines)
        del self._followed[task_id]
        return self._lost_once(
            task_id,
            followed,
            f"Slurm no longer knows element {followed.element} "
            "(Invalid job id specified) and it left no records",
        )

    def _finish(
        self,
        task_id: str,
        followed: Followed,
        state: ElementState | None,
        status: int | None,
        lines: bytes,
    ) -> TaskReport:
        """The report of an element that ended: its last records, and outcomes for the calls it could not report."""
        del self._followed[task_id]
        task_dir = followed.task_dir
        self._done[task_id] = task_dir
        stderr_tail = _tail(task_dir / f"{task_id}.stderr")
        saw_delimiter = _saw_delimiter(task_dir / f"{task_id}.out")
        unreported = [call for call in followed.calls if call not in followed.reported]
        report = TaskReport(
            task_id,
            lines=lines,
            finished=True,
            returncode=status,
            stderr_tail=stderr_tail,
            saw_delimiter=saw_delimiter,
        )
        if not unreported or state in (None, ElementState.COMPLETED, ElementState.FAILED):
            if status is None and unreported:
                report.failure = f"element {followed.element} ended without an exit status (killed, or its node died)"
            return report
        config = (
            self.context.job(followed.job).endpoint.config
            if followed.job in self.context.jobs
            else {}
        )
        if state is ElementState.TIMEOUT:
            walltime = config.get("walltime", "?")
            if not saw_delimiter:
                report.failure = (
                    f"element {followed.element} reached its walltime of {walltime} before its calls "
                    "started (building the environment took too long?)"
                )
                return report
            # The shape of the host's own record of a call the task could not report on (executor.failure_record).
            report.records = [
                {
                    "call": unreported[0],
                    "ok": False,
                    "kind": None,
                    "value": None,
                    "tb": None,
                    "error": f"TimeoutError: the Slurm element {followed.element} reached its walltime of "
                    f"{walltime} while this call ran",
                    "out": "",
                    "err": "",
                    "t0": None,
                    "t1": None,
                    "lost": True,
                }
            ]
            report.records += [
                {
                    "call": call,
                    "deferred": True,
                    "reason": f"not started before the walltime {walltime}",
                }
                for call in unreported[1:]
            ]
            return report
        if state is ElementState.OUT_OF_MEMORY:
            report.failure = f"Slurm killed element {followed.element} at its memory limit (mem: {config.get('mem', '?')})"
            return report
        if state is ElementState.CANCELLED:
            report.failure = f"element {followed.element} was cancelled (scancel)"
            return report
        if state in (ElementState.NODE_FAIL, ElementState.PREEMPTED, ElementState.BOOT_FAIL):
            lost = self._lost_once(
                task_id, followed, f"element {followed.element} ended {state.value}"
            )
            lost.lines, lost.returncode, lost.stderr_tail = lines, status, stderr_tail
            return lost
        report.failure = f"element {followed.element} ended {state.value}"
        return report

    def _lost_once(self, task_id: str, followed: Followed, reason: str) -> TaskReport:
        """A lost element's unreported calls run again (deferred, no attempt counted) the first time; then they fail."""
        lost_before = dict(self.context.meta.get(LOST_KEY, {}) or {})
        seen = set(lost_before.get(followed.job, []))
        unreported = [call for call in followed.calls if call not in followed.reported]
        again = [call for call in unreported if call not in seen]
        if not again:
            return TaskReport(
                task_id, finished=True, saw_delimiter=False, lost=True, failure=reason
            )
        lost_before[followed.job] = sorted(seen | set(again))
        self.context.meta.set(LOST_KEY, lost_before)
        return TaskReport(
            task_id,
            records=[
                {"call": c, "deferred": True, "reason": f"{reason}; running it again"}
                for c in again
            ],
            finished=True,
            saw_delimiter=True,
            lost=True,
            failure=reason,
        )

    # --- after a submitter died ----------------------------------------------------------------

    def reattach(self, tasks: list[AbandonedTask]) -> list[TaskReport]:
        arrays = self.context.meta.get(ARRAYS_KEY, {}) or {}
        request = self.context.meta.get(SUBMITTING_KEY) or {}
        adopted = self._adopt_unanswered(
            {task_id for task_id, _, external_id, _ in tasks if not external_id}
        )
        reports = []
        for task_id, job, external_id, calls in tasks:
            if (
                task_id in self._stopped
            ):  # this process cancelled it (Ctrl-C): keep what it did, the rest runs again
                reports.append(TaskReport(task_id, lines=self._stopped.pop(task_id), finished=True))
                continue
            element = external_id or adopted.get(task_id)
            array_id, _, index = (element or "").partition("_")
            if (
                not index.isdigit()
            ):  # Slurm does not know it: it ran long ago (its files say), or never
                in_request = task_id in request.get("tasks", [])
                reports.append(
                    self._ran_unknown(
                        task_id, Path(request["dir"]) if in_request else self._job_dir(job)
                    )
                )
                continue
            task_dir = Path(arrays[array_id]) if array_id in arrays else self._job_dir(job)
            self._followed[task_id] = Followed(job, list(calls), array_id, int(index), task_dir)
            reports.append(TaskReport(task_id, finished=False))
        self._next_check = 0.0
        return reports

    def _ran_unknown(self, task_id: str, task_dir: Path) -> TaskReport:
        """A task with no element id that Slurm does not list: what its files hold if it ran (its array was
        forgotten after MinJobAge), else nothing; its other calls run again."""
        if not (task_dir / f"{task_id}.out").exists():
            return TaskReport(task_id, finished=True, lost=True)
        self._done[task_id] = task_dir
        return TaskReport(
            task_id,
            lines=self.records(task_dir).read_new(task_id),
            finished=True,
            returncode=_exit_status(task_dir / f"{task_id}.exit"),
            saw_delimiter=_saw_delimiter(task_dir / f"{task_id}.out"),
        )

    def _job_dir(self, job: str) -> Path:
        return (
            self.task_dir(self.context.job(job))
            if job in self.context.jobs
            else self.context.scratch_dir
        )

    def _adopt_unanswered(self, unanswered: set[str]) -> dict[str, str]:
        """The previous submitter died around ``sbatch``: the array it may have submitted, found by name."""
        request = self.context.meta.get(SUBMITTING_KEY)
        if not unanswered or not request or not set(request["tasks"]) <= unanswered:
            return {}
        found = [e for e in self.commands.elements() if e.name == request["name"]]
        if not found:
            return {}
        array_id = found[0].array_id
        self._remember_array(array_id, Path(request["dir"]))
        self.context.meta.set(SUBMITTING_KEY, None)
        return {task_id: f"{array_id}_{i}" for i, task_id in enumerate(request["tasks"])}

    def adopted_ids(self) -> list[tuple[str, str]]:
        return [(task_id, followed.element) for task_id, followed in self._followed.items()]

    def forget(self, task_id: str) -> None:
        """The ledger has the task's records: its files go (the array's batch script and Slurm's log stay)."""
        self._followed.pop(task_id, None)
        task_dir = self._done.pop(task_id, None)
        if task_dir is not None:
            self.records(task_dir).remove(task_id)
            for suffix in (".sh", ".out", ".stderr", ".exit"):
                (task_dir / f"{task_id}{suffix}").unlink(missing_ok=True)

    # --- stopping ------------------------------------------------------------------------------

    def cancel(self, task_ids: list[str], wait_s: float = 60.0) -> None:
        """``scancel`` the tasks' elements (whole arrays when all their tasks go), wait until they ended,
        and keep their last reports for the next ``poll``: calls they finished are kept."""
        wanted = [task_id for task_id in task_ids if task_id in self._followed]
        if not wanted:
            return
        by_array: dict[str, list[str]] = {}
        for task_id in wanted:
            by_array.setdefault(self._followed[task_id].array_id, []).append(task_id)
        in_array: dict[str, int] = {}
        for followed in self._followed.values():
            in_array[followed.array_id] = in_array.get(followed.array_id, 0) + 1
        targets = []
        for array_id, members in by_array.items():
            if len(members) == in_array[array_id]:
                targets.append(array_id)
            else:
                targets += [self._followed[task_id].element for task_id in members]
        try:
            self.commands.scancel(targets)
        except SlurmError as exc:
            raise BackendError(
                message=f"scancel could not cancel {', '.join(targets)}: {exc.message}",
                hint="cancel them yourself with scancel; `hog-batch status` then shows what they finished",
            ) from None
        deadline = time.monotonic() + wait_s
        remaining = set(wanted)
        while remaining and time.monotonic() < deadline:
            try:
                known = {(e.array_id, e.index): e.state for e in self.commands.elements()}
            except SlurmUnreachable:
                known = None
            for task_id in sorted(remaining):
                followed = self._followed[task_id]
                state = (
                    known.get((followed.array_id, followed.index)) if known is not None else None
                )
                if (
                    known is None
                ):  # Slurm does not answer: the wrapper's exit status is all there is to go by
                    if _exit_status(followed.task_dir / f"{task_id}.exit") is not None:
                        remaining.discard(task_id)
                elif state is None or state.ended:
                    remaining.discard(task_id)
            if remaining:
                time.sleep(0.3)
        for task_id in (
            wanted
        ):  # what they finished; the executor cancels the rest (or, reattaching, requeues them)
            followed = self._followed.pop(task_id)
            self._stopped[task_id] = self._new_lines(task_id, followed)

    def close(self) -> None:
        """Nothing runs here: the arrays go on without this process."""


def array_options(
    config: Mapping[str, Any],
    max_parallel: int,
    task_dir: Path,
    working_dir: Path,
    name: str,
    n_tasks: int,
    walltime_s: float | None = None,
    memory_mib: float | None = None,
) -> list[str]:
    """sbatch's options for an array of ``n_tasks`` elements, ``max_parallel`` of them running at once;
    ``walltime_s`` (a retry's escalated walltime) replaces the config's, ``memory_mib`` is ``memory:``."""
    options = [
        f"--array=0-{n_tasks - 1}%{max_parallel or DEFAULT_MAX_PARALLEL}",
        f"--job-name={name}",
        f"--output={task_dir}/{name}_%a.log",
        f"--chdir={working_dir}",
    ]
    warning = warning_signal_s(walltime_s or parse_walltime_s(config.get("walltime")))
    if warning:
        options.append(f"--signal=B:TERM@{warning}")
    return options + sbatch_options(config, walltime_s, memory_mib)


def _submit_error(exc: SlurmError, target: JobTarget) -> HogError:
    """sbatch's own words, with where the config was set and what to change."""
    if isinstance(exc, SlurmMissing):
        return BackendError(
            message=f"job {target.name!r} runs on Slurm, but {exc.message}",
            hint="run hog-batch on the cluster's login node (where sbatch is), or load Slurm's module "
            "first (module load slurm)",
        )
    if isinstance(exc, SlurmUnreachable):
        return BackendError(
            message=f"Slurm did not answer: {exc.message}",
            hint="the controller may be down or busy: try again in a minute (nothing was submitted)",
        )
    return BackendError(
        message=f"sbatch refused the array of job {target.name!r}: {exc.message}",
        hint=_refusal_hint(exc.message, target.endpoint.config),
    )


def _refusal_hint(message: str, config: Mapping[str, Any]) -> str:
    text = message.lower()
    if "partition" in text:
        return f"set `partition:` to one `sinfo -s` lists (it is {config.get('partition')!r})"
    if "account" in text or "association" in text:
        return f"set `account:` to one of yours (`sacctmgr show assoc user=$USER`; it is {config.get('account')!r})"
    if "qos" in text:
        return f"set `qos:` to one your account may use (it is {config.get('qos')!r})"
    if "array" in text:
        return "lower calls_per_task's task count or max_parallel; the site's MaxArraySize is in `scontrol show config`"
    if "gres" in text or "generic resource" in text:
        return f"change `gres:` (it is {config.get('gres')!r}); `sinfo -o %G` lists what the nodes have"
    if "feature" in text or "constraint" in text:
        return f"change `constraint:` (it is {config.get('constraint')!r}); `sinfo -o %f` lists the nodes' features"
    if "time limit" in text or "--time" in text:
        return f"lower `walltime:` (it is {config.get('walltime')!r}) to the partition's limit (`sinfo -o %l`)"
    if "mem" in text:
        return f"change `mem:` (it is {config.get('mem')!r})"
    if "node configuration is not available" in text:
        return (
            "no node has what the array asks for: lower `mem:`/`memory:`, `cpus_per_task:`, `gres:` or "
            '`constraint:` to what `sinfo -N -o "%P %c %m %G %f"` lists'
        )
    return "change the Slurm endpoint's config (partition, account, qos, sbatch_args, ...) and submit again"


class SlurmKind(BackendKind):
    name = "slurm"
    where = "on Slurm"
    service = "Slurm"
    tasks_outlive_submitter = True
    sees_run_dir = True  # the run directory must be on a filesystem the nodes see

    def claims(self, target: str) -> bool:
        return target == "slurm"

    def limits(self, config: Mapping[str, Any]) -> Limits:
        walltime = config.get("walltime")
        return Limits(
            default_parallelism=DEFAULT_MAX_PARALLEL,
            max_auto_calls_per_task=MAX_AUTO_CALLS_PER_TASK,
            walltime=None if walltime is None else str(walltime),
            walltime_s=parse_walltime_s(walltime),
            task_walltime=True,
        )

    def config_problems(self, job, locate: ConfigLocator) -> list[HogError]:
        return config_problems(job.endpoint.config, locate)

    def check(self, spec) -> None:
        """Ask sbatch (``--test-only``, nothing submitted) whether it takes each job's options: an unknown
        partition or a bad memory size is refused here, before the run exists, located in the manifest."""
        commands = SlurmCommands()
        seen: set[str] = set()
        problems: list[HogError] = []
        node_memory: dict[str | None, int | None] = {}
        for index, job in enumerate(spec.jobs):
            memory_mib = getattr(job, "memory_mib", None)
            if (
                memory_mib
            ):  # sbatch --test-only says only "Requested node configuration is not available"
                partition = job.endpoint.config.get("partition") or None
                if partition not in node_memory:
                    node_memory[partition] = commands.largest_node_memory_mib(partition)
                largest = node_memory[partition]
                if largest is not None and math.ceil(memory_mib) > largest:
                    problems.append(_memory_over_nodes(job, spec, index, largest))
                    continue
            options = sbatch_options(job.endpoint.config, memory_mib=memory_mib)
            key = content_id({"options": options})
            if key in seen:
                continue
            seen.add(key)
            try:
                commands.sbatch(
                    ["--array=0-0", "--job-name=hog-check", *options],
                    None,
                    cwd=spec.manifest_path.parent,
                    test_only=True,
                )
            except SlurmError as exc:
                problems.append(_located_refusal(exc, job, spec, index))
        if problems:
            from ..errors import ManifestErrors

            raise problems[0] if len(problems) == 1 else ManifestErrors.of(problems)

    def render_wrapper(self, job, task_id: str) -> str:
        """The array's batch script and sbatch options, for a task submitted alone (``plan --render``)."""
        task_dir = Path("RUN_DIR/tasks")
        name = f"hog-RUNKEY-{re.sub(r'[^A-Za-z0-9_.-]', '_', job.name)[:40]}-{task_id}+1"
        memory_mib = getattr(job, "memory_mib", None)
        options = array_options(
            job.endpoint.config,
            job.max_parallel,
            task_dir,
            job.script_path.parent,
            name,
            1,
            memory_mib=memory_mib,
        )
        script = render_array_script(
            name,
            task_dir,
            [task_id],
            ["RECORDS_SECRET"],
            str(job.endpoint.config.get("worker_init") or ""),
        )
        return (
            f"\n# ---- on Slurm, the script above is {task_dir}/{task_id}.sh, run by element 0 of an array:\n"
            f"# sbatch --parsable {' '.join(shlex.quote(option) for option in options)} {task_dir}/{name}.sbatch\n"
            + _retry_lines(job, memory_mib)
            + f"# ---- {task_dir}/{name}.sbatch:\n{script}"
        )

    def open(self, context: BackendContext) -> Backend:
        return SlurmBackend(context)


def _retry_lines(job, memory_mib: float | None) -> str:
    """What a retry of the task asks Slurm for, per attempt, when ``retries:`` escalates walltime or memory."""
    from ..retry_policy import RetryPolicy

    policy = RetryPolicy.of(job.retries)
    walltime_s = parse_walltime_s(job.endpoint.config.get("walltime"))
    lines = []
    for attempt in range(2, int(policy) + 2):
        grow_time, grow_memory = (
            policy.growth("walltime", attempt),
            policy.growth("memory", attempt),
        )
        changed = []
        if walltime_s and grow_time != 1.0:
            changed.append(f"--time={slurm_time(walltime_s * grow_time)}")
        if memory_mib and grow_memory != 1.0:
            changed += [
                o
                for o in sbatch_options(job.endpoint.config, memory_mib=memory_mib * grow_memory)
                if o.startswith("--mem=")
            ]
        if changed:
            lines.append(
                f"# a retry (attempt {attempt}) goes out in an array of its own with {' '.join(changed)}\n"
            )
    return "".join(lines)


def _memory_over_nodes(job, spec, index: int, largest: int) -> HogError:
    """``memory:`` asks more of one element than any node has: Slurm would hold the array for ever."""
    from ..manifest.yaml_source import load_yaml_text

    partition = job.endpoint.config.get("partition")
    where = f"of partition {partition!r} " if partition else ""
    message = (
        f"memory asks Slurm for {math.ceil(job.memory_mib)} MiB per element (--mem), more than any "
        f"node {where}has ({largest} MiB): the array could never start"
    )
    hint = (
        f"lower `memory:` to at most {largest}M, or choose a partition with larger nodes "
        '(`sinfo -N -o "%P %m"` lists each node\'s memory in MiB)'
    )
    _, source = load_yaml_text(spec.manifest_text, spec.manifest_path)
    for path in (("jobs", index, "memory"), ("memory",)):
        if path in source.lines:
            return source.error(path, message, hint)
    return BackendError(message=message, hint=hint)


def _located_refusal(exc: SlurmError, job, spec, index: int) -> HogError:
    """sbatch's refusal at the manifest line that set the option it names (else at the job's endpoint)."""
    from ..manifest.yaml_source import load_yaml_text
    from .slurm_config import config_key_path

    target = JobTarget(job.name, job.endpoint, "", SlurmKind().limits(job.endpoint.config))
    error = _submit_error(exc, target)
    text = exc.message.lower()
    key = next(
        (k for k in ("partition", "account", "qos", "gres", "constraint", "mem") if k in text), None
    )
    if key is None and ("feature" in text):
        key = "constraint"
    if key is None and "generic resource" in text:
        key = "gres"
    _, source = load_yaml_text(spec.manifest_text, spec.manifest_path)
    paths = config_key_path(index, job.endpoint.reference, key) if key else []
    paths += [("jobs", index, "endpoint"), ("endpoint",)]
    for path in paths:
        if path in source.lines:
            located = source.error(path, error.message, error.hint)
            return located
    return error


KIND = SlurmKind()

__all__ = ["KIND", "SlurmBackend", "SlurmKind", "node_local"]
