"""Run tasks on Globus Compute endpoints: the job's task script as one ``ShellFunction``, payloads as its argument.

- One ``ShellFunction`` per job, registered once per run (its id is kept in the
  ledger, so ``resume`` registers nothing). Its command is the same rendered
  script the local backend runs, with ``{payload}`` where the payload goes.
- Submission goes through the batch API, in requests of at most
  ``REQUEST_BUDGET_BYTES``; each request's task ids (and the task group id) are
  committed to the ledger as soon as it returns, before the next request.
- Polling asks for many tasks at once, backing off while nothing finishes.
  Failed tasks are missing from the batch answer: each is asked about alone.
- A ``ShellResult`` is parsed like a local task's stdout: the records after
  the delimiter. Exit 124 is the task's walltime; no delimiter means the
  machinery failed, and the stderr tail says why.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..backends.base import Backend, IdsCallback, TaskReport, TaskSubmission
from ..errors import BackendError
from ..ids import content_id
from ..ledger import Ledger
from ..plan import SHELL_COMMAND_MARGIN_BYTES, Plan
from ..render.payload import iter_records
from ..render.runner import DELIMITER
from .service import ComputeService

REQUEST_BUDGET_BYTES = 9 * 1000 * 1000  # the service takes requests of at most 10 MB
TASK_REQUEST_OVERHEAD_BYTES = 512  # the serializer's header and the JSON around one task's arguments
STATUS_CHUNK = 500  # task ids per status request
STDERR_TAIL_CHARS = 4000


def poll_bounds_s() -> tuple[float, float]:
    """(first, longest) wait between status requests; the wait grows while nothing finishes."""
    return (float(os.environ.get("HOG_BATCH_GLOBUS_POLL_S", "2.0")),
            float(os.environ.get("HOG_BATCH_GLOBUS_POLL_MAX_S", "30.0")))


def request_size_bytes(payload: str) -> int:
    """What one task adds to a batch request: its payload, pickled and base64-encoded by the SDK."""
    return (len(payload) * 4) // 3 + TASK_REQUEST_OVERHEAD_BYTES


def split_requests(submissions: list[TaskSubmission], budget_bytes: int = REQUEST_BUDGET_BYTES) -> list[list[TaskSubmission]]:
    """Consecutive groups of tasks, each group's request under the budget."""
    groups: list[list[TaskSubmission]] = []
    current: list[TaskSubmission] = []
    size = 0
    for submission in submissions:
        added = request_size_bytes(submission.payload)
        if current and size + added > budget_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(submission)
        size += added
    if current:
        groups.append(current)
    return groups


def report_from_status(task_id: str, status: dict[str, Any]) -> TaskReport | None:
    """A finished task's report from its status; None while it is pending."""
    if status.get("pending", True) and "exception" not in status:
        return None
    if "exception" in status:
        text = str(status["exception"]).strip()
        last = text.splitlines()[-1] if text else "no reason given"
        return TaskReport(task_id, finished=True, saw_delimiter=False, stderr_tail=text[-STDERR_TAIL_CHARS:],
                          failure=f"the endpoint reported the task failed: {last}")
    if status.get("missing"):
        return TaskReport(task_id, finished=True, saw_delimiter=False, lost=True,
                          failure="the service has no record of the task (it may have expired)")
    result = status.get("result")
    stdout, stderr, returncode = getattr(result, "stdout", None), getattr(result, "stderr", ""), getattr(result, "returncode", None)
    if stdout is None:
        return TaskReport(task_id, finished=True, saw_delimiter=False,
                          failure=f"the task returned {type(result).__name__}, not a ShellResult")
    lines = stdout.splitlines()
    return TaskReport(task_id, records=list(iter_records(lines)), finished=True, returncode=returncode,
                      stderr_tail=(stderr or "")[-STDERR_TAIL_CHARS:], saw_delimiter=DELIMITER in lines)


class GlobusBackend(Backend):
    name = "globus"
    needs_script = False

    def __init__(self, plan: Plan, ledger: Ledger, service: ComputeService | None = None) -> None:
        self.plan, self.ledger = plan, ledger
        self.service = service or ComputeService()
        self._function_ids: dict[str, str] = {}
        self._followed: dict[str, str] = {}  # service task id -> hog-batch task id
        self._first_poll_s, self._longest_poll_s = poll_bounds_s()
        self._interval_s = self._first_poll_s
        self._next_poll = 0.0

    # --- submission -------------------------------------------------------------------

    def function_id(self, job_name: str) -> str:
        """The job's ShellFunction, registered once per run and content (the id lives in the ledger)."""
        if job_name not in self._function_ids:
            job = self.plan.job(job_name)
            command = self.plan.shell_function_command(job)
            lines = self.plan.snippet_lines(job)
            key = "globus_function:" + content_id({"command": command, "snippet_lines": lines}, length=24)
            function_id = self.ledger.get_meta(key)
            if function_id is None:
                name = "hog_batch_" + "".join(c if c.isalnum() else "_" for c in job.name)
                function_id = self.service.register_shell_function(command, lines, name)
                self.ledger.set_meta(key, function_id)
            self._function_ids[job_name] = function_id
        return self._function_ids[job_name]

    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        by_job: dict[str, list[TaskSubmission]] = {}
        for task in tasks:
            by_job.setdefault(task.job, []).append(task)
        for job_name, submissions in by_job.items():
            job = self.plan.job(job_name)
            budget = self.plan.payload_budget_bytes(job) or 0
            for submission in submissions:
                if len(submission.payload) > budget + SHELL_COMMAND_MARGIN_BYTES:
                    raise BackendError(message=f"task {submission.task_id} has a {len(submission.payload):,}-byte payload, "
                                       f"over the {budget:,} bytes its ShellFunction command can carry",
                                       hint="set a smaller calls_per_task for this job")
            function_id = self.function_id(job_name)
            for group in split_requests(submissions):
                group_id, task_ids = self.service.submit(job.endpoint.endpoint_id, function_id, [s.payload for s in group],
                                                         job.endpoint.config, self.ledger.get_meta("group_id"))
                if len(task_ids) != len(group):
                    raise BackendError(message=f"Globus Compute answered {len(task_ids)} task ids for {len(group)} tasks",
                                       hint="resume the run; report this if it happens again")
                on_ids([(s.task_id, t) for s, t in zip(group, task_ids, strict=True)], group_id)
                for submission, task_id in zip(group, task_ids, strict=True):
                    self._followed[task_id] = submission.task_id
        self._next_poll = min(self._next_poll, time.monotonic() + self._first_poll_s)

    # --- results ----------------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[TaskReport]:
        wait_s = self._next_poll - time.monotonic()
        if not self._followed or wait_s > timeout_s:
            time.sleep(max(timeout_s, 0))
            return []
        if wait_s > 0:
            time.sleep(wait_s)
        reports = self._check(list(self._followed))
        self._interval_s = self._first_poll_s if reports else min(self._interval_s * 1.5, self._longest_poll_s)
        self._next_poll = time.monotonic() + self._interval_s
        return reports

    def _check(self, service_ids: list[str]) -> list[TaskReport]:
        reports: list[TaskReport] = []
        for start in range(0, len(service_ids), STATUS_CHUNK):
            chunk = service_ids[start:start + STATUS_CHUNK]
            statuses = self.service.statuses(chunk)
            for service_id in chunk:
                status = statuses.get(service_id)
                if status is None:  # failed tasks are left out of batch answers: ask about each alone
                    status = self.service.task(service_id)
                report = report_from_status(self._followed[service_id], status)
                if report is not None:
                    del self._followed[service_id]
                    reports.append(report)
        return reports

    def reattach(self, tasks: list[tuple[str, str, str | None, list[int]]]) -> list[TaskReport]:
        reports = []
        for task_id, _job, external_id, _calls in tasks:
            if external_id:
                self._followed[external_id] = task_id
                reports.append(TaskReport(task_id, finished=False))
            else:  # the submitter died before the service's answer was committed: its calls run again
                reports.append(TaskReport(task_id, finished=True, lost=True))
        self._next_poll = 0.0
        return reports

    def cancel(self, task_ids: list[str]) -> None:
        """Globus Compute cannot stop a submitted task: stop following it (its calls are cancelled in the ledger)."""
        wanted = set(task_ids)
        self._followed = {service_id: task_id for service_id, task_id in self._followed.items() if task_id not in wanted}


__all__ = ["GlobusBackend", "report_from_status", "split_requests"]
