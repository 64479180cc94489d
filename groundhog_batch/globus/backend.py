"""Run tasks on Globus Compute endpoints: one registered function per job, each task's payload its argument.

- **Function**: the job's rendered task script inside a small Python function
  (``transport``), registered once per run and content (its id is kept in the
  ledger, so ``resume`` registers nothing). The endpoint runs byte for byte
  the script the local backend runs.
- **Submission**: batch requests under 10 MB less a margin, counted in bytes. Every
  request carries a task group id minted here, so when its answer is lost
  (502, 504, a reset connection) the group is looked up: tasks already in it
  are adopted, and the request is sent again only if the group is empty.
  Each request's task ids are committed to the ledger before the next one.
  Lost answers are retried with backoff within a budget, then the run
  pauses; a 413 splits the request.
- **Results**: pushed to a result queue per request (``create_queue``) and
  consumed as they come (``result_queue``); polled only for what the queue
  did not deliver (no queue, reattached tasks once, a silent queue's sweep).
  Polled states are read raw and streamed, many tasks per request, backing
  off while nothing finishes. An endpoint exception becomes the calls' error
  with its real first line (``WorkerLost: ...``). A task the service does not
  know is lost: its calls run again, once; lost again, they fail.
- **Records streamed** (``shared_records``): with ``shared_records_dir`` in
  the endpoint config, each task writes its calls' records to a folder this
  machine sees too, read every few seconds while it runs; a task that fails
  after its runner started keeps its finished calls, fails the call it was
  running, and runs the others again.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

from ..backends.base import Backend, BackendContext, IdsCallback, TaskReport, TaskSubmission
from ..errors import BackendError
from ..ids import content_id
from ..render.payload import iter_records
from ..render.runner import DELIMITER
from . import transport
from .result_queue import ResultQueue
from .service import (
    ComputeService,
    RequestTooLarge,
    ServicePaused,
    SubmitUncertain,
    patient_backoff,
)
from .shared_records import (
    READ_INTERVAL_S,
    RUN_KEY_META,
    SharedRecords,
    endpoint_config,
    lost_call_record,
)

STATUS_CHUNK = 500  # task ids per status request, at most
ANSWER_BUDGET_BYTES = (
    100 * 1000 * 1000
)  # a status request asks for no more results than this, by the largest seen
REPORT_BATCH_BYTES = (
    16 * 1024 * 1024
)  # poll hands over the results read so far once they weigh this much
STDERR_TAIL_CHARS = 4000
# keys in the backend's slice of the run's metadata (stored as globus_<key>)
LOST_META_KEY = "lost_calls"
REQUEST_META_KEY = "request_in_flight"  # the task group and tasks of a request not yet answered
QUEUES_META_KEY = "result_queues"  # task groups whose results are pushed to a queue
SWEEP_LONGEST_S = 3600.0
MACHINERY_META_KEY = "machinery_reruns"  # job -> {call: times re-run after a machinery failure}
MACHINERY_RERUNS = 3
# What the endpoint says when the machinery, not the call, failed, before the task ran: a restarted
# endpoint refusing a stale command, a task cancelled by `globus-compute-endpoint stop`, a user endpoint
# that could not start (its failure notice; after a kill, its PID file still looks alive).
MACHINERY_SIGNS = (
    "Ignoring command from server",
    "CancelledError",
    "TaskCancelled",
    "Failed to start or unexpected error",
)


def push_wanted() -> bool:
    """Results pushed over AMQP unless ``HOG_BATCH_GLOBUS_PUSH=0`` (then every task is polled)."""
    return os.environ.get("HOG_BATCH_GLOBUS_PUSH", "1") not in ("0", "false", "no")


def sweep_interval_s() -> float:
    """With results pushed: how long a silent queue waits before every task is looked up (doubling to an hour)."""
    return float(os.environ.get("HOG_BATCH_GLOBUS_SWEEP_S", "300"))


def submit_spacing_s() -> float:
    """With results pushed: results arriving within this long of the last submission are gathered, so the
    slots they free are submitted together (``HOG_BATCH_GLOBUS_SUBMIT_SPACING_S``; 0 hands each over at once)."""
    return float(os.environ.get("HOG_BATCH_GLOBUS_SUBMIT_SPACING_S", "1.0"))


def stranded_after_s() -> float:
    """How long a run with tasks in flight may go without any result before those tasks count as stranded.

    The endpoint acknowledges a task once its engine holds it; an endpoint
    killed then (a lost host, an OOM kill) never reports the task, and the
    service keeps it pending for ever. Past this silence the tasks the service
    still holds as pending run again (a machinery rerun). A task that really
    runs this long with nothing else finishing would run twice: the deadline is
    at least twice the longest ``walltime`` of the tasks in flight.
    """
    return float(os.environ.get("HOG_BATCH_GLOBUS_STRANDED_S", str(6 * 3600)))


def poll_bounds_s() -> tuple[float, float]:
    """(first, longest) wait between status requests; the wait grows while nothing finishes."""
    return (
        float(os.environ.get("HOG_BATCH_GLOBUS_POLL_S", "2.0")),
        float(os.environ.get("HOG_BATCH_GLOBUS_POLL_MAX_S", "30.0")),
    )


def split_requests(
    submissions: list[TaskSubmission],
    budget_bytes: int,
    records: dict[str, dict[str, str] | None] | None = None,
) -> list[list[TaskSubmission]]:
    """Consecutive groups of tasks, each group's tasks together under ``budget_bytes`` of request body
    (``records``: each streaming task's records argument, by task id)."""
    records = records or {}
    groups: list[list[TaskSubmission]] = []
    current: list[TaskSubmission] = []
    size = 0
    for submission in submissions:
        added = transport.request_bytes(submission.payload, records.get(submission.task_id))
        if current and size + added > budget_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(submission)
        size += added
    if current:
        groups.append(current)
    return groups


def exception_headline(text: str) -> str:
    """The line that says what went wrong in an endpoint's exception text.

    The endpoint frames tracebacks in rows of ``+`` and ``-``; a traceback's
    last line names the exception (``WorkerLost: Task failure due to loss of
    worker 0 on host ...``), dotted module prefix dropped. Text that is not a
    traceback is its own first line.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [
        line
        for line in lines
        if line and not set(line) <= set("+-") and not line.startswith("Traceback from attempt")
    ]
    if not lines:
        return "no reason given"
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        candidates = [
            line for line in lines if not line.startswith(("File ", "Traceback", "^", "~"))
        ]
        headline = candidates[-1] if candidates else lines[-1]
    else:
        headline = lines[0]
    name, colon, rest = headline.partition(":")
    if colon and " " not in name and "." in name:
        headline = name.rsplit(".", 1)[-1] + colon + rest
    return headline


def too_large_report(task_id: str, refused: RequestTooLarge) -> TaskReport:
    """A task the service refused alone for its size: its calls fail, with the sizes in the error."""
    return TaskReport(
        task_id,
        finished=True,
        saw_delimiter=False,
        failure=f"Globus Compute refused the task's {refused.request_bytes:,}-byte submission as too "
        f"large (HTTP 413: {refused.detail}); hog-batch packs requests under "
        f"{transport.request_budget_bytes():,} bytes, the service's documented limit being "
        f"{transport.REQUEST_LIMIT_BYTES:,}. Pass large inputs with `pass: path`, or set a smaller "
        "calls_per_task",
    )


def machinery_failure(status: dict[str, Any]) -> bool:
    """True when the endpoint's machinery failed the task before it ran (not the function, not the call)."""
    if status.get("stranded"):  # taken by an endpoint that died: no result will ever come
        return True
    if str(status.get("status", "")).lower() in ("cancelled", "canceled"):
        return True
    text = str(status.get("exception") or "")
    return any(sign in text for sign in MACHINERY_SIGNS)


def report_from_status(
    task_id: str, status: dict[str, Any], deserialize, stream_refused=None
) -> TaskReport | None:
    """A finished task's report from its raw state; None while it is pending.

    ``stream_refused(reason)`` hears why a task did not stream its records to the shared folder, if it says so.
    """
    state = str(status.get("status", "unknown")).lower()
    if "exception" in status and status["exception"]:
        text = str(status["exception"]).strip()
        return TaskReport(
            task_id,
            finished=True,
            saw_delimiter=False,
            stderr_tail=text[-STDERR_TAIL_CHARS:],
            failure=f"the endpoint reported: {exception_headline(text)}",
        )
    if "result" in status and state == "success":
        try:
            result = deserialize(status["result"])
        except Exception as exc:  # noqa: BLE001 - a result we cannot read fails its task, not the run
            return TaskReport(
                task_id,
                finished=True,
                saw_delimiter=False,
                failure=f"the task's result could not be read: {type(exc).__name__}: {exc}",
            )
        if not isinstance(result, dict) or "stdout" not in result:
            return TaskReport(
                task_id,
                finished=True,
                saw_delimiter=False,
                failure=f"the task returned {type(result).__name__}, not hog-batch's task result",
            )
        if result.get("records_stream") and stream_refused is not None:
            stream_refused(str(result["records_stream"]))
        lines = str(result["stdout"]).splitlines()
        return TaskReport(
            task_id,
            records=list(iter_records(lines)),
            finished=True,
            returncode=result.get("returncode"),
            stderr_tail=str(result.get("stderr") or "")[-STDERR_TAIL_CHARS:],
            saw_delimiter=DELIMITER in lines,
        )
    if state == "failed" or state == "unknown" and status.get("reason"):
        return TaskReport(
            task_id,
            finished=True,
            saw_delimiter=False,
            lost=True,
            failure=f"the service has no record of the task ({status.get('reason') or 'no result'})",
        )
    return None


def _run_again(report: TaskReport, calls: list[int], reason: str, lost: bool = False) -> TaskReport:
    """``report``'s task finished with ``calls`` deferred (pending again, no attempt counted) for ``reason``."""
    return TaskReport(
        report.task_id,
        records=[{"call": c, "deferred": True, "reason": reason} for c in calls],
        lines=report.lines,
        finished=True,
        saw_delimiter=True,
        failure=report.failure,
        lost=lost,
    )


class GlobusBackend(Backend):
    name = "globus"
    needs_script = False

    def __init__(self, context: BackendContext, service: ComputeService | None = None) -> None:
        self.context, self.meta = context, context.meta
        self.service = service or ComputeService()
        self._function_ids: dict[str, str] = {}
        self._followed: dict[str, str] = {}  # service task id -> hog-batch task id
        self._calls: dict[str, tuple[str, list[int]]] = {}  # hog-batch task id -> (job, calls)
        self._first_poll_s, self._longest_poll_s = poll_bounds_s()
        self._interval_s = self._first_poll_s
        self._next_poll = 0.0
        self._group_id: str | None = None
        self._ready: list[
            TaskReport
        ] = []  # reports known without asking the service (a task refused as too large)
        self._refused_bytes = transport.REQUEST_LIMIT_BYTES  # lowered when the service answers 413
        self._closing = False
        self._cycle: Iterator[TaskReport] | None = None  # the status cycle being read
        self._cycle_found = False
        self._largest_result_bytes = 0
        # Results pushed (``result_queue``): the tasks whose group's queue is consumed, and those to ask once anyway.
        self._queue: ResultQueue | None = None if push_wanted() else False  # type: ignore[assignment]
        self._pushed: set[str] = set()
        self._verify: set[str] = set()  # reattached: asked once, whatever pushes
        self._acks: dict[
            str, tuple[int, int]
        ] = {}  # hog-batch task id -> its message, acknowledged on forget
        self._sweep_s = sweep_interval_s()
        self._sweep_at = time.monotonic() + self._sweep_s
        self.sweeps = 0
        # Stranded tasks: the last time a task was submitted or a result came, and the silence allowed after it.
        self._progress_at = time.monotonic()
        self._stranded_s = stranded_after_s()
        self._stranding = False  # the next status cycle reruns what is still pending
        self.stranded_checks = 0
        self._resumed_groups: list[
            str
        ] = []  # queues of a previous submitter, consumed on the first wait
        # Records streamed through a shared folder (``shared_records``): each streaming task's argument.
        self._shared = SharedRecords(context.scratch_dir, self.meta)
        self._stream_args: dict[str, dict[str, str] | None] = {}
        self._stream_at = 0.0
        self._submitted_at = 0.0  # when the last submission went out (time.monotonic)
        self._submit_spacing_s = submit_spacing_s()

    # --- submission -------------------------------------------------------------------

    def function_id(self, job_name: str) -> str:
        """The job's task function, registered once per run and content (the id lives in the ledger)."""
        if job_name not in self._function_ids:
            job = self.context.job(job_name)
            source = transport.function_source(job.script_template)
            key = "function:" + content_id({"source": source}, length=24)
            function_id = self.meta.get(key)
            if function_id is None:
                function_id = self.service.register_function(
                    source, f"hog-batch task of job {job.name}"
                )
                self.meta.set(key, function_id)
            self._function_ids[job_name] = function_id
        return self._function_ids[job_name]

    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        by_job: dict[str, list[TaskSubmission]] = {}
        for task in tasks:
            by_job.setdefault(task.job, []).append(task)
            self._calls[task.task_id] = (task.job, list(task.calls))
        for job_name, submissions in by_job.items():
            job = self.context.job(job_name)
            limit = transport.payload_limit_bytes()
            for submission in submissions:
                size = len(submission.payload.encode())
                if size > limit:
                    raise BackendError(
                        message=f"task {submission.task_id} has a {size:,}-byte payload, over the "
                        f"{limit:,} bytes one Globus Compute submission can carry",
                        hint="pass large inputs with `pass: path` on a filesystem the endpoint shares, "
                        "or set a smaller calls_per_task for this job",
                    )
            function_id = self.function_id(job_name)
            sent_config = endpoint_config(job.endpoint.config)
            for submission in submissions:
                self._stream_args[submission.task_id] = self._shared.follow(
                    submission.task_id, job.endpoint.config
                )
            fixed = self.service.request_fixed_bytes(sent_config, str(uuid.uuid4()))
            budget = min(transport.request_budget_bytes(), self._refused_bytes) - fixed
            pending = deque(split_requests(submissions, budget, self._stream_args))
            while pending:
                group = pending.popleft()
                try:
                    task_ids = self._submit_once(
                        job.endpoint.endpoint_id, function_id, group, sent_config
                    )
                except RequestTooLarge as refused:
                    self.meta.set(REQUEST_META_KEY, None)
                    if len(group) == 1:
                        self._ready.append(too_large_report(group[0].task_id, refused))
                        continue
                    # The service counts its limit otherwise (a proxy's headers): pack under 90% of what it refused.
                    self._refused_bytes = min(self._refused_bytes, int(refused.request_bytes * 0.9))
                    budget = self._refused_bytes - fixed
                    rest = [s for g in (group, *pending) for s in g]
                    regrouped = split_requests(rest, budget, self._stream_args)
                    if len(regrouped[0]) == len(group):  # the same request again: halve it instead
                        half = len(group) // 2
                        regrouped = [
                            group[:half],
                            group[half:],
                            *split_requests(rest[len(group) :], budget, self._stream_args),
                        ]
                    pending = deque(regrouped)
                    continue
                on_ids(
                    [(s.task_id, t) for s, t in zip(group, task_ids, strict=True)], self._group_id
                )
                self.meta.set(REQUEST_META_KEY, None)
                pushed = self._pushes() and self._watch(self._group_id)
                for submission, task_id in zip(group, task_ids, strict=True):
                    self._followed[task_id] = submission.task_id
                    if pushed:
                        self._pushed.add(task_id)
        self._next_poll = min(self._next_poll, time.monotonic() + self._first_poll_s)
        self._submitted_at = time.monotonic()
        self._progress_at = time.monotonic()
        walltimes = [t.walltime_s for t in tasks if t.walltime_s]
        if walltimes:
            self._stranded_s = max(self._stranded_s, 2 * max(walltimes))

    def _submit_once(
        self,
        endpoint_id: str,
        function_id: str,
        group: list[TaskSubmission],
        config: dict[str, Any],
    ) -> list[str]:
        """Submit one request into a fresh task group; if its answer is lost, adopt what the group holds.

        A request whose answer is lost and whose group stays empty is sent
        again after a backoff, within the outage budget; past it the run
        pauses (``ServicePaused``), and ``resume`` adopts or resends it.
        """
        self._group_id = str(uuid.uuid4())
        payloads = [transport.arguments(s.payload, self._stream_args.get(s.task_id)) for s in group]
        self.meta.set(
            REQUEST_META_KEY, {"group_id": self._group_id, "tasks": [s.task_id for s in group]}
        )
        backoff = patient_backoff()
        while True:
            try:
                task_ids = self.service.submit(
                    endpoint_id,
                    function_id,
                    payloads,
                    config,
                    self._group_id,
                    create_queue=self._pushes(),
                )
                break
            except SubmitUncertain as uncertain:
                taken = self.service.group_tasks(self._group_id) or []
                if len(taken) == len(group):
                    task_ids = taken
                    break
                if taken:
                    raise BackendError(
                        message=f"Globus Compute took {len(taken)} of the {len(group)} tasks of a submission whose "
                        f"answer was lost ({uncertain.detail}); hog-batch cannot tell which calls they carry",
                        hint=f"the run stops here rather than run calls twice: `hog-batch resume RUN_DIR` submits "
                        f"the request again (task group {self._group_id})",
                    ) from None
                if not backoff.wait():
                    raise ServicePaused(
                        message=f"paused: {backoff.waits + 1} submissions of {len(group)} tasks got no answer in "
                        f"{backoff.elapsed_s():.0f} s (last: {uncertain.detail}), and the service took none of them",
                        hint="nothing is lost: `hog-batch resume RUN_DIR` sends the request again once the service "
                        "answers (HOG_BATCH_GLOBUS_OUTAGE_S sets how long a run waits)",
                    ) from None
        if len(task_ids) != len(group):
            raise BackendError(
                message=f"Globus Compute answered {len(task_ids)} task ids for {len(group)} tasks",
                hint="resume the run; report this if it happens again",
            )
        return task_ids

    # --- results ----------------------------------------------------------------------

    # --- pushed results ----------------------------------------------------------------

    def _pushes(self) -> bool:
        """True while results can be pushed to this process (the first call connects to the broker)."""
        if self._queue is None:
            self._queue = ResultQueue(self.service.result_queue_credentials)
            if not self._queue.connect():
                self._queue = False  # type: ignore[assignment]
        return bool(self._queue) and self._queue.working

    def _watch(self, group_id: str) -> bool:
        """Consume the group's result queue (remembered in the ledger, for ``resume``)."""
        groups = self.meta.get(QUEUES_META_KEY, [])
        if group_id not in groups:
            self.meta.set(QUEUES_META_KEY, [*groups, group_id])
        return self._queue.watch(group_id)

    def _receive(self, timeout_s: float) -> list[TaskReport]:
        """Results pushed so far, waiting up to ``timeout_s`` for the first; without a queue, just the wait.

        A ``status`` or ``collect`` (``poll(0)``) never connects to the broker: it asks the service once.
        """
        if timeout_s <= 0 and self._queue is None:
            return []
        if self._resumed_groups and self._pushed and self._pushes():
            groups, self._resumed_groups = self._resumed_groups, []
            watched = [group for group in groups if self._queue.watch(group)]
            if not watched:
                self._pushed.clear()
        if not (self._pushed and self._pushes()):
            if self._pushed:  # the broker went away: ask for those tasks instead
                self._pushed.clear()
                self._next_poll = 0.0
            time.sleep(max(timeout_s, 0))
            return []
        reports = []
        for tag, service_id, status in self._queue.receive(timeout_s):
            task_id = self._followed.pop(service_id, None)
            if task_id is None:  # already reported (polled, or pushed before a restart)
                self._queue.done(tag)
                continue
            self._pushed.discard(service_id)
            self._verify.discard(service_id)
            self._largest_result_bytes = max(
                self._largest_result_bytes, len(status.get("result") or "")
            )
            report = report_from_status(
                task_id, status, self.service.deserialize, self._shared.warn_unused
            ) or TaskReport(
                task_id,
                finished=True,
                saw_delimiter=False,
                failure=f"a pushed result said {status.get('status')}",
            )
            self._acks[task_id] = tag
            reports.append(self._settle(report, status))
        if reports:
            self._sweep_s = sweep_interval_s()
            self._sweep_at = time.monotonic() + self._sweep_s
            self._progress_at = time.monotonic()
        if not self._queue.working:
            self._pushed.clear()
        return reports

    def _to_ask(self) -> tuple[list[str], float]:
        """The tasks to look up with the next status cycle, and the seconds until it is due.

        Without pushes, every followed task, on the adaptive interval. With
        them, only what pushes do not cover: tasks whose group has no queue,
        reattached tasks (once), and, when the queue has been silent for the
        sweep interval, every task (the interval then doubles, up to an hour).
        After ``stranded_after_s`` without any result, every task, and those
        still pending run again.
        """
        now = time.monotonic()
        if self._followed and now - self._progress_at >= self._stranded_s:
            self._progress_at = now
            self._stranding = True
            self.stranded_checks += 1
            return list(self._followed), 0.0
        asked = [sid for sid in self._followed if sid not in self._pushed or sid in self._verify]
        if asked:
            return asked, self._next_poll - now
        if self._pushed and now >= self._sweep_at:
            self.sweeps += 1
            self._sweep_s = min(self._sweep_s * 2, SWEEP_LONGEST_S)
            self._sweep_at = now + self._sweep_s
            return list(self._followed), 0.0
        return [], float("inf")

    # --- results ----------------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[TaskReport]:
        """Reports of finished tasks: pushed ones as they come, the others a status cycle at a time.

        A cycle with large results is handed over in parts: each part (about
        ``REPORT_BATCH_BYTES`` of results) reaches the ledger before the next
        is read from the service's answer, so memory holds one part, whatever
        the answer weighs.
        """
        if self._ready:
            ready, self._ready = self._ready, []
            return ready
        streamed = self._read_streams()
        if streamed:
            self._progress_at = time.monotonic()  # a task writing records is alive, not stranded
            return streamed
        if self._cycle is None:
            asked, wait_s = self._to_ask()
            if not asked or wait_s > timeout_s:
                return self._gather(self._receive(timeout_s))
            if wait_s > 0:
                pushed = self._receive(wait_s)
                if pushed:
                    return self._gather(pushed)
            self._cycle = self._check(asked, patient=timeout_s > 0, stranded=self._stranding)
            self._stranding = False
            self._cycle_found = False
            self._verify -= set(asked)
        reports: list[TaskReport] = []
        weight = 0
        for report in self._cycle:
            reports.append(report)
            weight += sum(
                len(str(r.get("value", ""))) + len(r.get("out") or "") for r in report.records
            )
            if weight >= REPORT_BATCH_BYTES:
                self._cycle_found = True
                return reports
        self._cycle = None
        found = self._cycle_found or bool(reports)
        self._interval_s = (
            self._first_poll_s if found else min(self._interval_s * 1.5, self._longest_poll_s)
        )
        self._next_poll = time.monotonic() + self._interval_s
        return reports

    def _gather(self, reports: list[TaskReport]) -> list[TaskReport]:
        """Pushed results that come within ``submit_spacing_s`` of the last submission are handed over together:
        the slots they free go out in one request, not one request per result (a run of short tasks
        would otherwise spend the user's whole rate budget on submissions)."""
        if not reports or self._submit_spacing_s <= 0:
            return reports
        while True:  # with nothing left outstanding this waits too: submissions stay that far apart
            left = self._submitted_at + self._submit_spacing_s - time.monotonic()
            if left <= 0:
                return reports
            reports += self._receive(left)

    def _read_streams(self) -> list[TaskReport]:
        """Records running tasks wrote to the shared folder since the last read (every ``READ_INTERVAL_S``)."""
        now = time.monotonic()
        if not self._shared.tasks or now < self._stream_at:
            return []
        self._stream_at = now + READ_INTERVAL_S
        reports = []
        for task_id in list(self._shared.tasks):
            lines = self._shared.read_new(task_id)
            if lines:
                reports.append(TaskReport(task_id, lines=lines))
        return reports

    def _with_stream(self, report: TaskReport, status: dict[str, Any]) -> TaskReport:
        """A finished streaming task: its file's last records, its result's others; failed after its runner
        started (a lost worker), the call it was running fails and those it never started run again."""
        task_id = report.task_id
        if task_id not in self._shared.tasks:
            return report
        report.lines += self._shared.read_new(task_id)
        report.records = self._shared.unreported(task_id, report.records)
        if (
            not report.failure
            or report.lost
            or machinery_failure(status)
            or not self._shared.started(task_id)
        ):
            return report
        _, calls = self._calls.get(task_id, (None, []))
        done = self._shared.reported[task_id] | {r.get("call") for r in report.records}
        missing = [call for call in calls if call not in done]
        if not missing:
            return report
        kept = len(calls) - len(missing)
        report.records = [
            *report.records,
            lost_call_record(
                missing[0],
                f"TaskFailed: {report.failure}, while this call ran (the task's {kept} finished call(s) "
                f"are kept; the {len(missing) - 1} it had not started run again)",
            ),
            *(
                {"call": call, "deferred": True, "reason": f"{report.failure}; running it again"}
                for call in missing[1:]
            ),
        ]
        return report

    def _unfinished(self, task_id: str, calls: list[int]) -> list[int]:
        """The task's calls whose records were not read from its shared file."""
        seen = self._shared.reported.get(task_id)
        return [call for call in calls if call not in seen] if seen else calls

    def status_chunk(self) -> int:
        """Task ids per status request: as many as fit ``ANSWER_BUDGET_BYTES`` at the largest result seen."""
        return max(1, min(STATUS_CHUNK, ANSWER_BUDGET_BYTES // max(self._largest_result_bytes, 1)))

    def _check(
        self, service_ids: list[str], patient: bool = True, stranded: bool = False
    ) -> Iterator[TaskReport]:
        """States of the followed tasks, read as they arrive; ``patient`` rides out an outage (a submitter),
        else fails fast (``status``); ``stranded``: a task still pending is reported stranded."""
        start = 0
        while start < len(service_ids):
            chunk = service_ids[start : start + self.status_chunk()]
            start += len(chunk)
            for service_id, status in self.service.status_stream(chunk, patient=patient):
                task_id = self._followed.get(service_id)
                if task_id is None:
                    continue
                self._largest_result_bytes = max(
                    self._largest_result_bytes, len(status.get("result") or "")
                )
                report = report_from_status(
                    task_id, status, self.service.deserialize, self._shared.warn_unused
                )
                if report is None and stranded:
                    report = TaskReport(
                        task_id,
                        finished=True,
                        saw_delimiter=False,
                        failure=f"no result came for {self._stranded_s:.0f} s and the service still holds "
                        f"the task as {status.get('status', 'pending')!r}: the endpoint took it and was "
                        "lost (killed or restarted)",
                    )
                    status = {**status, "stranded": True}
                elif report is None:
                    continue
                else:
                    self._progress_at = time.monotonic()
                del self._followed[service_id]
                self._pushed.discard(service_id)
                yield self._settle(report, status)

    def _settle(self, report: TaskReport, status: dict[str, Any]) -> TaskReport:
        """A lost task's calls run again once; a machinery failure's up to ``MACHINERY_RERUNS`` times."""
        report = self._with_stream(report, status)
        if report.lost:
            return self._rerun_lost_once(report)
        if machinery_failure(status):
            return self._rerun_after_machinery_failure(report)
        return report

    def _rerun_after_machinery_failure(self, report: TaskReport) -> TaskReport:
        """The calls go back to pending (deferred: no attempt counted), counted apart, a bounded number of times."""
        job, calls = self._calls.get(report.task_id, (None, []))
        if job is None:
            return report
        calls = self._unfinished(report.task_id, calls)
        counts = self.meta.get(MACHINERY_META_KEY, {})
        done = counts.setdefault(job, {})
        again = [call for call in calls if done.get(str(call), 0) < MACHINERY_RERUNS]
        if len(again) < len(calls):
            return (
                report  # some call has been re-run as often as allowed: the task fails as reported
            )
        for call in again:
            done[str(call)] = done.get(str(call), 0) + 1
        self.meta.set(MACHINERY_META_KEY, counts)
        times = max(done[str(call)] for call in again)
        reason = f"{report.failure} (a failure of the endpoint, not of the call); running it again ({times} of {MACHINERY_RERUNS})"
        return _run_again(report, again, reason)

    def _rerun_lost_once(self, report: TaskReport) -> TaskReport:
        """A lost task's calls run again (deferred, no attempt counted) the first time; the second time they fail."""
        job, calls = self._calls.get(report.task_id, (None, []))
        if job is None:
            return report
        calls = self._unfinished(report.task_id, calls)
        lost_before = self.meta.get(LOST_META_KEY, {})
        seen = set(lost_before.get(job, []))
        again = [call for call in calls if call not in seen]
        if not again:
            return report
        lost_before[job] = sorted(seen | set(again))
        self.meta.set(LOST_META_KEY, lost_before)
        return _run_again(report, again, f"{report.failure}; running it again", lost=True)

    def reattach(self, tasks: list[tuple[str, str, str | None, list[int]]]) -> list[TaskReport]:
        """Follow again the tasks a previous submitter left; adopt those of its unanswered request.

        While this submitter stops (``close``), nothing is asked: the tasks of
        an unanswered request stay in flight for the next ``resume`` to adopt.
        """
        unanswered = {task_id for task_id, _, external_id, _ in tasks if not external_id}
        request = self.meta.get(REQUEST_META_KEY) or {}
        kept = set(request.get("tasks", [])) & unanswered if self._closing else set()
        adopted = {} if self._closing else self._adopt_unanswered_request(unanswered)
        reports = []
        for task_id, job, external_id, calls in tasks:
            self._calls[task_id] = (job, list(calls))
            external_id = external_id or adopted.get(task_id)
            if task_id in kept:
                reports.append(TaskReport(task_id, finished=False))
            elif external_id:
                self._followed[external_id] = task_id
                reports.append(TaskReport(task_id, finished=False))
            else:  # the service never took it (or cannot say which tasks it took): its calls run again
                reports.append(TaskReport(task_id, finished=True, lost=True))
        self._next_poll = 0.0
        self._progress_at = time.monotonic()
        self._verify |= set(
            self._followed
        )  # asked once: what finished while nobody listened may not be in a queue
        if not self._closing and self.meta.get(
            RUN_KEY_META
        ):  # the run streams records: read them again
            self._follow_streams_again(tasks)
        groups = self.meta.get(QUEUES_META_KEY, []) if push_wanted() and not self._closing else []
        if groups:  # their queues are consumed from the first wait on (``_receive``); a ``status`` asks once
            self._resumed_groups = list(groups)
            self._pushed |= set(self._followed)
        return reports

    def _follow_streams_again(self, tasks: list[tuple[str, str, str | None, list[int]]]) -> None:
        """Reattached tasks' shared files, read from their start (the ledger keeps a record once)."""
        followed = set(self._followed.values())
        for task_id, job, _, _ in tasks:
            if task_id not in followed or job not in self.context.jobs:
                continue
            try:
                self._shared.follow(task_id, self.context.job(job).endpoint.config)
            except BackendError:  # the folder is gone or not ours now: results come at task end
                continue
        self._stream_at = 0.0

    def _adopt_unanswered_request(self, unanswered: set[str]) -> dict[str, str]:
        """The previous submitter died waiting for a request's answer: the tasks its task group holds, by our task id."""
        request = self.meta.get(REQUEST_META_KEY)
        if not unanswered or not request or not set(request["tasks"]) <= unanswered:
            return {}
        taken = self.service.group_tasks(request["group_id"]) or []
        if len(taken) != len(request["tasks"]):
            return {}
        return dict(zip(request["tasks"], taken, strict=True))

    def forget(self, task_id: str) -> None:
        """The ledger holds the task's reports: drop its calls, and acknowledge its pushed result."""
        self._calls.pop(task_id, None)
        self._stream_args.pop(task_id, None)
        self._shared.forget(task_id)
        tag = self._acks.pop(task_id, None)
        if tag is not None and self._queue:
            self._queue.done(tag)

    def close(self) -> None:
        """The submitter stops: no more requests (a SIGTERM ends it at once; ``resume`` asks what it did not)."""
        self._closing = True
        self._shared.close()
        if self._queue:
            self._queue.close()

    def cancel(self, task_ids: list[str]) -> None:
        """Globus Compute cannot stop a submitted task: stop following it (its calls are cancelled in the ledger)."""
        wanted = set(task_ids)
        self._followed = {
            service_id: task_id
            for service_id, task_id in self._followed.items()
            if task_id not in wanted
        }


__all__ = ["GlobusBackend", "exception_headline", "report_from_status", "split_requests"]
