"""Drive a run: pending calls -> tasks -> backend -> ledger, until nothing is left to do.

The ledger is the truth; this loop only keeps what is in flight in memory.
Each round takes the calls pending in the ledger, packs them into tasks and
keeps up to ``max_parallel`` tasks in flight. Failed calls with retries left
are pending again (after a backoff) and run in the next round.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .backends.base import Backend, TaskReport, TaskSubmission
from .ledger import CallOutcome, CallState, Ledger
from .plan import Plan, Task, iter_calls
from .run_paths import RunPaths

ENV_BUILD_FAILED_EXIT = 97
WALLTIME_EXIT = 124  # the runner's, and the SDK's ShellFunction's
POLL_INTERVAL_S = 0.5
PROGRESS_INTERVAL_S = 0.25


class Interrupted(Exception):
    """The submitter was interrupted; the run can be resumed."""

    def __init__(self, run_dir=None) -> None:
        super().__init__(f"interrupted: {run_dir}" if run_dir else "interrupted")
        self.run_dir = run_dir


@dataclass
class InFlight:
    job: str
    calls: list[int]
    recorded: set[int] = field(default_factory=set)


def retry_backoff_s() -> float:
    return float(os.environ.get("HOG_BATCH_RETRY_BACKOFF_S", "1.0"))


def outcome_from_record(job: str, record: dict) -> CallOutcome:
    """A runner's JSON record as a ledger outcome."""
    kind = record.get("kind")
    value = record.get("value")
    result = None
    if record.get("ok"):
        result = json.dumps(value) if kind == "json" else value
    return CallOutcome(
        job=job,
        call=int(record["call"]),
        ok=bool(record.get("ok")),
        result_kind=kind if record.get("ok") else None,
        result=result,
        result_type=record.get("type"),
        error=record.get("error"),
        traceback=record.get("tb"),
        stdout=record.get("out") or "",
        stderr=record.get("err") or "",
        started_at=record.get("t0"),
        finished_at=record.get("t1"),
        machinery=bool(record.get("lost")),
    )


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
    def __init__(self, plan: Plan, ledger: Ledger, backend: Backend, paths: RunPaths,
                 on_progress: Callable[[dict[str, int]], None] | None = None) -> None:
        self.plan, self.ledger, self.backend, self.paths = plan, ledger, backend, paths
        self.on_progress = on_progress or (lambda counts: None)
        self.in_flight: dict[str, InFlight] = {}
        self._progress_at = 0.0
        self.retries = {job.name: job.retries for job in plan.jobs}
        self.backoff_s = retry_backoff_s()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        """Run until no call is pending or in flight; return the final counts."""
        self.recover_abandoned()
        try:
            while True:
                if self._cancel_requested():
                    self._cancel()
                    break
                pending = self.ledger.calls_in([CallState.PENDING])
                if not pending and self.in_flight:  # tasks a previous submitter left on a remote endpoint
                    self._absorb(self.backend.poll(POLL_INTERVAL_S))
                    continue
                if not pending:
                    break
                now = time.time()
                ready = [row for row in pending if row.not_before <= now]
                if not ready:
                    time.sleep(min(max(min(r.not_before for r in pending) - now, 0.05), 5.0))
                    continue
                self._round(ready)
                if self._cancel_requested():
                    self._cancel()
                    break
        except (KeyboardInterrupt, Interrupted):
            self._stop_for_resume()
            raise Interrupted(self.paths.root) from None
        counts = self.ledger.counts()
        self.on_progress(counts)
        return counts

    def _round(self, ready) -> None:
        """Submit the ready calls, as many tasks at once as there are free slots; wait for them all."""
        by_job: dict[str, set[int]] = {}
        for row in ready:
            by_job.setdefault(row.job, set()).add(row.call)
        generators = [(job, self._tasks_for(job, by_job[job.name])) for job in self.plan.jobs if job.name in by_job]
        for job, tasks in generators:
            batch: list[Task] = []
            for task in tasks:
                while len(self.in_flight) + len(batch) >= job.max_parallel:
                    if batch:
                        self._submit(batch)
                        batch = []
                        continue
                    self._absorb(self.backend.poll(POLL_INTERVAL_S))
                    if self._cancel_requested():
                        return
                batch.append(task)
            if batch:
                self._submit(batch)
        while self.in_flight:
            self._absorb(self.backend.poll(POLL_INTERVAL_S))
            if self._cancel_requested():
                return

    def _tasks_for(self, job, wanted: set[int]) -> Iterator[Task]:
        calls = (call for call in iter_calls(job) if call.index in wanted)
        return self.plan.tasks(job, calls)

    def _submit(self, tasks: list[Task]) -> None:
        submissions = []
        for task in tasks:
            task_id = f"{task.job.name}-{uuid.uuid4().hex[:10]}"
            payload = self.plan.payload(task).encode()
            script = self.plan.render(task, payload) if self.backend.needs_script else ""
            submissions.append(TaskSubmission(task_id, task.job.name, [c.index for c in task.calls], script, payload))
        # State first: the calls are in flight before the tasks exist, and each group of backend ids
        # is committed as soon as the backend has it, before the next request.
        self.ledger.mark_submitted([(s.task_id, s.job, s.calls) for s in submissions], self.backend.name)
        for submission in submissions:
            self.in_flight[submission.task_id] = InFlight(submission.job, submission.calls)
        self.backend.submit(submissions, self.ledger.set_external_ids)

    # --- reports ----------------------------------------------------------------------

    def _absorb(self, reports: list[TaskReport]) -> None:
        if not reports:
            return
        outcomes: list[CallOutcome] = []
        finished: list[str] = []
        for report in reports:
            flight = self.in_flight.get(report.task_id)
            if flight is None:
                continue
            deferred = []
            for record in report.records:
                if record.get("deferred"):  # the task could not run or report it: again, no attempt counted
                    deferred.append(int(record["call"]))
                    flight.recorded.add(int(record["call"]))
                    continue
                outcome = outcome_from_record(flight.job, record)
                flight.recorded.add(outcome.call)
                outcomes.append(outcome)
            if deferred:
                self.ledger.requeue(flight.job, deferred)
            if report.finished:
                outcomes += self._unreported(flight, report)
                finished.append(report.task_id)
        self.ledger.record(outcomes, self.retries, self.backoff_s)
        for task_id in finished:
            self.ledger.finish_task(task_id)
            self.backend.forget(task_id)
            del self.in_flight[task_id]
        if time.monotonic() - self._progress_at > PROGRESS_INTERVAL_S:  # counting scans the ledger: not per result
            self._progress_at = time.monotonic()
            self.on_progress(self.ledger.counts())

    def _unreported(self, flight: InFlight, report: TaskReport) -> list[CallOutcome]:
        """Outcomes for the calls a finished task said nothing about."""
        missing = [call for call in flight.calls if call not in flight.recorded]
        if not missing:
            return []
        tail = report.stderr_tail.strip()
        detail = f"\n{tail}" if tail else ""
        if report.failure:
            error = f"TaskFailed: {report.failure}{detail}"
            return [CallOutcome(flight.job, call, ok=False, error=error, machinery=True) for call in missing]
        if report.returncode == ENV_BUILD_FAILED_EXIT:
            error = f"EnvironmentBuildFailed: the task's uv environment could not be built{detail}"
            return [CallOutcome(flight.job, call, ok=False, error=error, machinery=True) for call in missing]
        if not report.saw_delimiter:
            error = f"TaskFailed: {describe_exit(report.returncode)} before the runner started{detail}"
            return [CallOutcome(flight.job, call, ok=False, error=error, machinery=True) for call in missing]
        # The runner itself died: the first missing call was running, the rest never started.
        first, rest = missing[0], missing[1:]
        self.ledger.requeue(flight.job, rest)
        error = f"TaskFailed: {describe_exit(report.returncode)} while this call ran{detail}"
        return [CallOutcome(flight.job, first, ok=False, error=error, machinery=True)]

    # --- stopping ---------------------------------------------------------------------

    def _cancel_requested(self) -> bool:
        return self.paths.cancel_request.exists()

    def _cancel(self) -> None:
        self.backend.cancel(list(self.in_flight))
        self.backend.close()
        self.in_flight.clear()
        self.ledger.cancel_unfinished()
        self.paths.cancel_request.unlink(missing_ok=True)

    def _stop_for_resume(self) -> None:
        self.backend.cancel(list(self.in_flight))
        self.backend.close()
        # Records the tasks wrote before they were stopped are kept; the rest runs again on resume.
        self.recover_abandoned()

    def recover_abandoned(self) -> None:
        self.in_flight.clear()
        for task_id, job, calls in recover_abandoned(self.ledger, self.backend, self.retries, self.backoff_s):
            self.in_flight[task_id] = InFlight(job, calls)

    def harvest(self) -> dict[str, int]:
        """Take in what tasks a previous submitter left have finished, without submitting anything."""
        self.recover_abandoned()
        if self.in_flight:
            self._absorb(self.backend.poll(0))
        self.in_flight.clear()
        return self.ledger.counts()


def recover_abandoned(ledger: Ledger, backend: Backend, retries: dict[str, int],
                      backoff_s: float = 0.0) -> list[tuple[str, str, list[int]]]:
    """Tasks a dead submitter left: keep what they recorded, make the rest pending again.

    Returns the tasks the backend follows again (task_id, job, calls): a remote
    endpoint's tasks go on running, and their results are still to come.
    """
    abandoned = ledger.tasks_in_flight()
    followed = []
    if abandoned:
        reports = backend.reattach(abandoned)
        for (task_id, job, _external_id, calls), report in zip(abandoned, reports, strict=True):
            if not report.finished:
                followed.append((task_id, job, calls))
                continue
            ledger.record([outcome_from_record(job, record) for record in report.records if not record.get("deferred")],
                          retries, backoff_s)
            ledger.finish_task(task_id, "abandoned")
            backend.forget(task_id)
    ledger.requeue_in_flight(keep_tasks=[task_id for task_id, _, _ in followed])
    return followed


__all__ = ["Executor", "Interrupted", "outcome_from_record", "recover_abandoned"]
