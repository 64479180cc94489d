"""Drive a run: pending calls -> tasks -> backend -> ledger, until nothing is left to do.

The ledger is the truth; this loop only keeps what is in flight in memory.
Each round takes the calls pending in the ledger, packs them into tasks and
keeps up to ``max_parallel`` tasks in flight. Failed calls with retries left
are pending again (after a backoff) and run in the next round.
"""

from __future__ import annotations

import gc
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from .backends import registry
from .backends.base import Backend, TaskReport, TaskSubmission
from .datafiles import DataFileChanged
from .errors import Interrupted, RunError  # noqa: F401 - Interrupted is re-exported: callers import it from here
from .ledger import PENDING, SUBMITTED, WAITING, Ledger
from .plan import Plan, PlannedCall, Task, iter_calls
from .render.runner import RECORDS_FULL_EXIT
from .retry_policy import RetryPolicy
from .run_paths import RunPaths

ENV_BUILD_FAILED_EXIT = 97
WALLTIME_EXIT = 124  # the runner's, and the SDK's ShellFunction's
POLL_INTERVAL_S = 0.5
PROGRESS_INTERVAL_S = 0.25
RECORD_CALL = re.compile(rb'^\{"call": (\d+)')


@dataclass
class InFlight:
    job: str
    calls: list[int]


def call_dirs(job, paths: RunPaths) -> str | None:
    """With ``workdir: call``, the folder holding each call's own directory (RUN/calls/JOB, or under the endpoint's
    ``scratch``: SCRATCH/hog-batch/RUN/calls/JOB); None otherwise."""
    if getattr(job, "workdir", None) != "call":
        return None
    scratch = job.endpoint.config.get("scratch")
    if scratch:
        return f"{scratch}/hog-batch/{paths.root.name}/calls/{job.name}"
    if registry.of_job(
        job
    ).sees_run_dir:  # its tasks see the run directory (Slurm: a shared filesystem)
        return str(paths.call_dirs(job.name))
    return f"~/hog-batch/{paths.root.name}/calls/{job.name}"  # a remote worker's home, with no scratch set


def retry_backoff_s() -> float:
    return float(os.environ.get("HOG_BATCH_RETRY_BACKOFF_S", "1.0"))


def failure_record(call: int, error: str) -> dict:
    """The record of a call the task could not report on (the machinery failed, not the user's code)."""
    return {
        "call": call,
        "ok": False,
        "kind": None,
        "value": None,
        "error": error,
        "tb": None,
        "out": "",
        "err": "",
        "t0": None,
        "t1": None,
        "lost": True,
    }


def store_report(
    ledger: Ledger, job: str, report: TaskReport, retries: dict[str, int], backoff_s: float
) -> None:
    """What a task reported (raw record lines, or decoded records) into the ledger."""
    if report.lines:
        ledger.store_records(job, report.task_id, report.lines, retries, backoff_s)
    if report.records:
        ledger.store_record_dicts(job, report.task_id, report.records, retries, backoff_s)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "the task was lost"
    if returncode == WALLTIME_EXIT:
        return "the task ran past its walltime (exit 124)"
    if returncode < 0:
        return f"the task was killed by signal {-returncode}"
    if returncode > 128:
        return f"the task was killed by signal {returncode - 128}"
    return f"the task exited with code {returncode}"


class Executor:
    """``max_failures``: after that many calls fail for good, start nothing new (GNU parallel's
    ``--halt soon,fail=N``): running tasks are stopped as on Ctrl-C, what they finished is kept,
    the rest stays pending for ``resume``, and ``halted`` is True."""

    def __init__(
        self,
        plan: Plan,
        ledger: Ledger,
        backend: Backend,
        paths: RunPaths,
        on_progress: Callable[[dict[str, int]], None] | None = None,
        max_failures: int | None = None,
    ) -> None:
        self.plan, self.ledger, self.backend, self.paths = plan, ledger, backend, paths
        self.on_progress = on_progress or (lambda counts: None)
        self.max_failures = max_failures
        self.failed_here = 0  # calls that failed for good in this execution
        self._failed_before = ledger.counts()["failed"] if max_failures is not None else 0
        self.halted = False
        self.disk_full: TaskReport | None = (
            None  # a task stopped because its records file had no room
        )
        self.in_flight: dict[str, InFlight] = {}
        self._followed_again: set[str] = (
            set()
        )  # tasks a previous submitter started: their records may come again
        self._progress_at = 0.0
        self.retries = {job.name: RetryPolicy.of(job.retries) for job in plan.jobs}
        self.backoff_s = retry_backoff_s()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        """Run until no call is pending or in flight; return the final counts."""
        with fewer_collections():
            return self._run()

    def _run(self) -> dict[str, int]:
        self.recover_abandoned()
        try:
            while True:
                if self._cancel_requested():
                    self._cancel()
                    break
                if self._halt_due():
                    self._halt()
                    break
                if not self.ledger.has_pending():
                    if self.in_flight:  # tasks a previous submitter left on a remote endpoint
                        self._absorb(self.backend.poll(POLL_INTERVAL_S))
                        continue
                    break
                now = time.time()
                if not self._any_ready(now):
                    wake = self.ledger.next_retry_at() or now + 0.05
                    time.sleep(min(max(wake - now, 0.05), 5.0))
                    continue
                self._round()
                if self._cancel_requested():
                    self._cancel()
                    break
                if self._halt_due():
                    self._halt()
                    break
        except (KeyboardInterrupt, Interrupted):
            self._stop_for_resume()
            raise Interrupted(self.paths.root) from None
        except (
            DataFileChanged
        ):  # a task could not be prepared: what ran is kept, and the run is resumable
            self._stop_for_resume()
            raise
        counts = self.ledger.counts()
        self.on_progress(counts)
        return counts

    def _any_ready(self, now: float) -> bool:
        states = self.ledger.states()
        if any(PENDING in state for state in states.values()):
            return True
        wake = self.ledger.next_retry_at()
        return wake is not None and wake <= now

    def _round(self) -> None:
        """Submit the ready calls, as many tasks at once as there are free slots; wait for them all.

        Each task is packed and rendered before a slot frees, so a finished
        task is followed by the next one at once; a batch goes out as soon as
        it fills the free slots (a local task at once: the first one runs
        while the next is packed).
        """
        for job in self.plan.jobs:
            batch: list[TaskSubmission] = []
            slots = math.inf if self.backend.queues_tasks else job.max_parallel
            for task, attempt in self._tasks(job):
                prepared = self._prepare(task, attempt)
                del task  # its calls are in the payload now; the loop waits below without them
                while len(self.in_flight) + len(batch) >= slots:
                    if batch:
                        self._submit(batch)
                        batch = []
                        continue
                    self._absorb(self.backend.poll(POLL_INTERVAL_S))
                    if self._cancel_requested() or self._halt_due():
                        return
                batch.append(prepared)
                if len(self.in_flight) + len(batch) >= slots or self.backend.submits_each_at_once:
                    self._submit(batch)
                    batch = []
            if batch:
                self._submit(batch)
        while self.in_flight:
            self._absorb(self.backend.poll(POLL_INTERVAL_S))
            if self._cancel_requested() or self._halt_due():
                return

    def dispatch(self) -> int:
        """Submit every ready call's tasks and return without waiting for them; the number of tasks submitted.

        For a backend whose tasks run on without this process (a batch queue):
        ``submit --detach`` returns once they are accepted. Tasks an earlier
        submitter left stay in flight in the ledger, to be followed again.
        """
        self.recover_abandoned()
        submitted = 0
        for job in self.plan.jobs:
            batch = [self._prepare(task, attempt) for task, attempt in self._tasks(job)]
            if batch:
                self._submit(batch)
                submitted += len(batch)
        self.in_flight.clear()
        return submitted

    def follow(self) -> dict[str, int]:
        """Follow the tasks in flight until they have all ended (or a cancel is asked for); submit nothing."""
        self.recover_abandoned()
        while self.in_flight:
            if self._cancel_requested():
                self._cancel()
                break
            self._absorb(self.backend.poll(POLL_INTERVAL_S))
        counts = self.ledger.counts()
        self.on_progress(counts)
        return counts

    def _nothing_ran(self, job) -> bool:
        """Every call of the job is pending: none has run, failed or been handed to a task."""
        state = self.ledger.states()[job.name]
        return state.count(PENDING) == len(state)

    def _ready_calls(self, job) -> Iterator[PlannedCall]:
        """The job's calls that should run now, regenerated from its sweep (the plan is not stored)."""
        state = self.ledger.states()[job.name]
        if PENDING not in state and WAITING not in state:
            return
        if self._nothing_ran(job):  # every call, without looking at each
            yield from iter_calls(job)
            return
        ready = self.ledger.ready
        now = time.time()
        for call in iter_calls(job):
            code = state[call.index]
            if code == PENDING or (code == WAITING and ready(job.name, call.index, now, state)):
                yield call

    def _tasks(self, job) -> Iterator[tuple[Task, int]]:
        """The ready calls packed into tasks, with their attempt; with escalating retries, one attempt per task."""
        policy = self.retries[job.name]
        if not policy.escalates:
            # Nothing has run yet: the plan packs the whole job (a plain sweep's tasks as spans of it).
            ready = None if self._nothing_ran(job) else self._ready_calls(job)
            for task in self.plan.tasks(job, ready):
                yield task, 1
            return
        made = self.ledger.waiting_attempts(job.name)
        by_attempt: dict[int, list[PlannedCall]] = {}
        for call in self._ready_calls(job):
            by_attempt.setdefault(made.get(call.index, 0) + 1, []).append(call)
        for attempt in sorted(by_attempt):
            for task in self.plan.tasks(job, by_attempt[attempt]):
                yield task, attempt

    def _prepare(self, task: Task, attempt: int = 1) -> TaskSubmission:
        """The task as the backend takes it: its id, payload and rendered script."""
        task_id = f"{task.job.name}-{os.urandom(5).hex()}"  # uuid4's first 10 hex digits, without uuid (and platform)
        payload = replace(self.plan.payload(task), context=self._context(task))
        batch_walltime_s = None  # the endpoint's walltime, unless a retry escalates it
        if attempt > 1 and self.retries[task.job.name].escalates:
            policy = self.retries[task.job.name]
            payload = policy.scaled(payload, attempt)
            endpoint_s = self.plan.endpoint_walltime_s(task.job)
            if endpoint_s and policy.growth("walltime", attempt) != 1.0:
                batch_walltime_s = endpoint_s * policy.growth("walltime", attempt)
            self._record_escalation(task_id, task, attempt, payload, batch_walltime_s)
        memory_mib = payload.memory_mib
        payload = payload.encode()
        script = self.plan.render(task, payload) if self.backend.needs_script else ""
        return TaskSubmission(
            task_id,
            task.job.name,
            list(task.indices),
            script,
            payload,
            walltime_s=batch_walltime_s,
            memory_mib=memory_mib,
        )

    def _context(self, task: Task) -> dict:
        """What each call is told of where it is (HOG_BATCH_RUN_DIR, _JOB, _CALL, _ATTEMPT), and its directory."""
        calls = list(task.indices)
        before = self.ledger.attempts_so_far(task.job.name, calls)
        return {
            "run_dir": str(self.paths.root),
            "job": task.job.name,
            # Empty when every call is on its first attempt (the runner takes a missing one for 1).
            "attempts": [before.get(c, 0) + 1 for c in calls] if before else [],
            "workdir": call_dirs(task.job, self.paths),
        }

    def _record_escalation(
        self, task_id: str, task: Task, attempt: int, payload, batch_walltime_s: float | None
    ) -> None:
        from .escalation import Escalation

        escalation = Escalation(
            task_id,
            task.job.name,
            attempt,
            len(task.calls),
            payload.timeout_s,
            payload.memory_mib,
            payload.walltime_s,
            batch_walltime_s,
        )
        self.ledger.set_meta(
            "escalations", [*self.ledger.get_meta("escalations", []), escalation.as_dict()]
        )

    def _submit(self, submissions: list[TaskSubmission]) -> None:
        # State first: the tasks are in the ledger before they exist, and each group of backend ids
        # is committed as soon as the backend has it, before the next request.
        self.ledger.mark_submitted(
            [(s.task_id, s.job, s.calls) for s in submissions], self.backend.name
        )
        for submission in submissions:
            self.in_flight[submission.task_id] = InFlight(submission.job, submission.calls)
        self.backend.submit(submissions, self.ledger.set_external_ids)

    # --- reports ----------------------------------------------------------------------

    def _absorb(self, reports: list[TaskReport]) -> None:
        """Reports into the ledger, in one transaction; only then may the backend drop its copies.

        The record lines a task sent since the last poll are stored as one block.
        """
        if not reports:
            return
        lines: dict[str, list[bytes]] = {}
        for report in reports:
            if report.lines:
                lines.setdefault(report.task_id, []).append(report.lines)
        for task_id in self._followed_again.intersection(lines):
            flight = self.in_flight.get(task_id)
            if flight is not None:
                lines[task_id] = [
                    unreported_lines(b"".join(lines[task_id]), self.ledger.states()[flight.job])
                ]
        finished: list[str] = []
        with self.ledger.transaction():
            for task_id, parts in lines.items():
                flight = self.in_flight.get(task_id)
                if flight is not None:
                    self.ledger.store_records(
                        flight.job, task_id, b"".join(parts), self.retries, self.backoff_s
                    )
            for report in reports:
                flight = self.in_flight.get(report.task_id)
                if flight is None:
                    continue
                if report.records:
                    self.ledger.store_record_dicts(
                        flight.job, report.task_id, report.records, self.retries, self.backoff_s
                    )
                if report.finished:
                    self._unreported(flight, report)
                    self.ledger.finish_task(report.task_id)
                    finished.append(report.task_id)
        for task_id in finished:
            self.backend.forget(task_id)
            del self.in_flight[task_id]
            self._followed_again.discard(task_id)
        if self.disk_full is not None:
            self._pause_for_space()
        if self.max_failures is not None:
            self.failed_here = self.ledger.counts()["failed"] - self._failed_before
        if time.monotonic() - self._progress_at > PROGRESS_INTERVAL_S:
            self._progress_at = time.monotonic()
            self.on_progress(self.ledger.counts())

    def _unreported(self, flight: InFlight, report: TaskReport) -> None:
        """Outcomes for the calls a finished task said nothing about."""
        missing = self.ledger.unreported(flight.job, flight.calls)
        if not missing:
            return
        tail = report.stderr_tail.strip()
        detail = f"\n{tail}" if tail else ""
        if report.failure:
            error = f"TaskFailed: {report.failure}{detail}"
        elif report.returncode == ENV_BUILD_FAILED_EXIT:
            error = f"EnvironmentBuildFailed: the task's uv environment could not be built{detail}"
        elif not report.saw_delimiter:
            error = (
                f"TaskFailed: {describe_exit(report.returncode)} before the runner started{detail}"
            )
        elif (
            report.returncode == RECORDS_FULL_EXIT
        ):  # every call that ran is recorded; the others never started
            self.ledger.requeue(flight.job, missing)
            self.disk_full = report
            return
        else:  # the runner itself died: the first missing call was running, the rest never started
            self.ledger.requeue(flight.job, missing[1:])
            missing = missing[:1]
            error = f"TaskFailed: {describe_exit(report.returncode)} while this call ran{detail}"
        self.ledger.store_record_dicts(
            flight.job,
            report.task_id,
            [failure_record(call, error) for call in missing],
            self.retries,
            self.backoff_s,
        )

    # --- stopping ---------------------------------------------------------------------

    def _cancel_requested(self) -> bool:
        return self.paths.cancel_request.exists()

    def _cancel(self) -> None:
        """Stop what runs and keep what it finished (the call a stopped task let finish, too); the rest is cancelled."""
        self._stop_for_resume()
        self.in_flight.clear()
        self.ledger.cancel_unfinished()
        self.paths.cancel_request.unlink(missing_ok=True)

    def _pause_for_space(self) -> None:
        """A task's records file had no room (a full disk): stop every task, keep what they finished, and stop."""
        report, self.disk_full = self.disk_full, None
        try:
            self._stop_for_resume()
        except (
            OSError,
            sqlite3.Error,
        ):  # the ledger cannot take them now: the records files keep them for resume
            self.backend.close()
        tail = report.stderr_tail.strip().splitlines()
        raise RunError(
            message="the disk is full: a task had no room left to record its calls' results"
            + (f" ({tail[-1]})" if tail else ""),
            hint=f"the run is paused, and every call that finished is kept: free some space, then "
            f"`hog-batch resume {self.paths.root}` goes on where it stopped (no call runs twice)",
        )

    def _halt_due(self) -> bool:
        return self.max_failures is not None and self.failed_here >= self.max_failures

    def _halt(self) -> None:
        """Too many failures: stop what runs, keep what finished, leave the rest pending."""
        self._stop_for_resume()
        self.halted = True

    def _stop_for_resume(self) -> None:
        self.backend.cancel(list(self.in_flight))
        self.backend.close()
        # Records the tasks wrote before they were stopped are kept; the rest runs again on resume.
        self.recover_abandoned()

    def recover_abandoned(self) -> None:
        self.in_flight.clear()
        for task_id, job, calls in recover_abandoned(
            self.ledger, self.backend, self.retries, self.backoff_s
        ):
            self.in_flight[task_id] = InFlight(job, calls)
            self._followed_again.add(task_id)

    def harvest(self) -> dict[str, int]:
        """Take in what tasks a previous submitter left have finished, without submitting anything."""
        self.recover_abandoned()
        if self.in_flight:
            while reports := self.backend.poll(
                0
            ):  # a remote backend hands over a large answer in parts
                self._absorb(reports)
        self.in_flight.clear()
        return self.ledger.counts()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Python's cycle collector seldom while calls stream through, as it was afterwards.

    Every planned call is a few dicts, so the collector ran every 700 of them
    and walked everything the process had imported: a tenth of the submitter's
    CPU at 100,000 trivial calls. What exists before the run is set aside
    (``gc.freeze``), and a collection waits for 100,000 new objects; nearly all
    are freed by their reference counts long before.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def unreported_lines(lines: bytes, state: bytearray) -> bytes:
    """The record lines of calls still in flight: a task followed again may hand on records the ledger has."""
    kept = []
    for line in lines.splitlines(keepends=True):
        found = RECORD_CALL.match(line)
        if (
            found is None
            or int(found.group(1)) >= len(state)
            or state[int(found.group(1))] == SUBMITTED
        ):
            kept.append(line)
    return b"".join(kept)


def recover_abandoned(
    ledger: Ledger, backend: Backend, retries: dict[str, int], backoff_s: float = 0.0
) -> list[tuple[str, str, list[int]]]:
    """Tasks a dead submitter left: keep what they recorded; their other calls are pending again.

    Returns the tasks the backend follows again (task_id, job, calls): a remote
    endpoint's tasks go on running, and their results are still to come.
    """
    abandoned = ledger.tasks_in_flight()
    followed = []
    done = []
    if abandoned:
        reports = backend.reattach(abandoned)
        with ledger.transaction():
            for (task_id, job, _external_id, calls), report in zip(abandoned, reports, strict=True):
                if not report.finished:
                    followed.append((task_id, job, calls))
                    continue
                store_report(ledger, job, report, retries, backoff_s)
                ledger.finish_task(task_id, "abandoned")
                done.append(task_id)
            ledger.requeue_in_flight(keep_tasks=[task_id for task_id, _, _ in followed])
    else:
        ledger.reload()
    for task_id in done:
        backend.forget(task_id)
    return followed


__all__ = [
    "Executor",
    "Interrupted",
    "failure_record",
    "recover_abandoned",
    "store_report",
    "unreported_lines",
]
