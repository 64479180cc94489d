"""A validated manifest -> calls -> tasks (groups of calls) -> payloads and rendered scripts.

Calls stream out of the sweep in plan order; tasks take consecutive calls of
one job. ``calls_per_task: auto`` fills the cores locally (a few tasks per
core, so a slow call does not hold everything back) and, for remote
endpoints, also keeps every payload under the service's size limit.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import datafiles
from .errors import ManifestError
from .manifest.spec import JobSpec, RunSpec
from .render.payload import PICKLE_PROTOCOL, TaskPayload
from .render.renderer import PAYLOAD_SENTINEL, render_task_script, shell_function_command
from .render.runner import TIMEOUT_GRACE_S
from .sweep import ChunkRef, ChunkSource

AUTO = "auto"
LOCAL_TASKS_PER_WORKER = 4
MAX_AUTO_CALLS_PER_TASK_LOCAL = 10_000
MAX_AUTO_CALLS_PER_TASK_REMOTE = 1_000
# A ShellFunction runs its command as one `bash -c` argument, and Linux caps one argument
# at 128 KiB (MAX_ARG_STRLEN, with its NUL): script, runner and payload must fit in it.
SHELL_COMMAND_LIMIT_BYTES = 128 * 1024 - 1
SHELL_COMMAND_MARGIN_BYTES = 512  # the call-count comment and the header's own growth
MIN_REMOTE_PAYLOAD_BYTES = 4 * 1024
# The service keeps at most 10 MB per task result, as serialized by the SDK (base64: 4/3 of
# the ShellResult), and the ShellResult echoes the command back: the records get what is left.
REMOTE_RESULT_LIMIT_BYTES = 10 * 1000 * 1000
REMOTE_STDOUT_BUDGET_BYTES = REMOTE_RESULT_LIMIT_BYTES * 3 // 4 - SHELL_COMMAND_LIMIT_BYTES - 600_000  # stderr, framing
REMOTE_MAX_RESULT_BYTES_PER_CALL = 4 * 1000 * 1000  # pickled; base64 brings it to 5.3 MB, under the budget
REMOTE_MAX_OUTPUT_BYTES_PER_CALL = 256 * 1024  # each of stdout and stderr
REMOTE_WALLTIME_SLACK_S = 60.0
SNIPPET_MARGIN_LINES = 16


@dataclass(frozen=True)
class PlannedCall:
    job: str
    index: int  # 0-based, within its job
    params: dict[str, Any]  # the swept values as the results table shows them
    kwargs: dict[str, Any]  # the swept keyword arguments (chunks still as references)


@dataclass
class Task:
    job: JobSpec
    calls: list[PlannedCall]


class ChunkResolver:
    """Reads each chunked data file once and cuts chunks out of it."""

    def __init__(self, sources: dict[str, ChunkSource]) -> None:
        self.sources = sources
        self._data: dict[str, Any] = {}

    def resolve(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self.sources:
            return kwargs
        resolved = dict(kwargs)
        for name, value in kwargs.items():
            if isinstance(value, ChunkRef):
                resolved[name] = datafiles.slice_rows(self._load(name), value.start, value.stop)
        return resolved

    def _load(self, name: str) -> Any:
        if name not in self._data:
            source = self.sources[name]
            self._data[name] = list(source.inline_values) if source.file is None else datafiles.load_chunkable(source.file)
        return self._data[name]


def iter_calls(job: JobSpec) -> Iterator[PlannedCall]:
    for index, point in enumerate(job.sweep.points()):
        yield PlannedCall(job.name, index, point.params, point.kwargs)


def auto_calls_per_task(job: JobSpec) -> int:
    if job.endpoint.is_local:
        per_task = math.ceil(job.n_calls / (job.max_parallel * LOCAL_TASKS_PER_WORKER))
        return max(1, min(per_task, MAX_AUTO_CALLS_PER_TASK_LOCAL))
    return max(1, min(math.ceil(job.n_calls / job.max_parallel), MAX_AUTO_CALLS_PER_TASK_REMOTE))


class Plan:
    """What a run will do: its jobs' calls, packed into tasks."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self._resolvers = {job.name: ChunkResolver(job.sweep.chunk_sources) for job in spec.jobs}
        self._budgets: dict[str, int] = {}

    @property
    def jobs(self) -> list[JobSpec]:
        return self.spec.jobs

    def job(self, name: str) -> JobSpec:
        for job in self.spec.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def calls_per_task(self, job: JobSpec) -> int:
        return auto_calls_per_task(job) if job.calls_per_task == AUTO else int(job.calls_per_task)

    def payload_budget_bytes(self, job: JobSpec) -> int | None:
        """Remote: what the 128 KiB command leaves for the payload once script and runner are in."""
        if job.endpoint.is_local:
            return None
        if job.name not in self._budgets:
            fixed = len(render_task_script(job.name, job.script_path, job.script_text, job.environment, ""))
            budget = SHELL_COMMAND_LIMIT_BYTES - SHELL_COMMAND_MARGIN_BYTES - fixed
            if budget < MIN_REMOTE_PAYLOAD_BYTES:
                raise ManifestError(
                    message=f"the task script of job {job.name!r} is {fixed / 1024:.0f} KiB with hog-batch's runner in it, "
                    f"too large for a Globus Compute ShellFunction, which runs its command as one bash argument "
                    f"(at most {SHELL_COMMAND_LIMIT_BYTES // 1024} KiB on Linux)",
                    hint="move most of the script into a module installed on the endpoint, and import it from a small script",
                    file=self.spec.manifest_path, key_path=("script",),
                )
            self._budgets[job.name] = budget
        return self._budgets[job.name]

    def snippet_lines(self, job: JobSpec) -> int:
        """Lines of stdout a remote task must return: the delimiter and one record per call."""
        return self.calls_per_task(job) + SNIPPET_MARGIN_LINES

    def tasks(self, job: JobSpec, calls: Iterable[PlannedCall] | None = None) -> Iterator[Task]:
        """Pack calls (all of the job's, or the given ones) into tasks, in order."""
        per_task = self.calls_per_task(job)
        budget = self.payload_budget_bytes(job)
        batch: list[PlannedCall] = []
        batch_bytes = 0
        for call in iter_calls(job) if calls is None else calls:
            size = self.call_size_bytes(job, call) if budget else 0
            if budget and size > budget:
                raise ManifestError(
                    message=f"call {call.index} of job {job.name!r} carries {size / 1024:.0f} KiB of encoded arguments, over "
                    f"the {budget / 1024:.0f} KiB a Globus Compute task of this script can carry (a ShellFunction's "
                    f"command is one bash argument, at most {SHELL_COMMAND_LIMIT_BYTES // 1024} KiB on Linux)",
                    hint="pass data files with `pass: path` on a filesystem the endpoint shares, or make the chunks "
                    "smaller (rows: or parts:)",
                    file=self.spec.manifest_path,
                    key_path=("sweep",),
                )
            if batch and (len(batch) >= per_task or (budget and batch_bytes + size > budget)):
                yield Task(job, batch)
                batch, batch_bytes = [], 0
            batch.append(call)
            batch_bytes += size
        if batch:
            yield Task(job, batch)

    def all_tasks(self) -> Iterator[Task]:
        for job in self.spec.jobs:
            yield from self.tasks(job)

    def call_size_bytes(self, job: JobSpec, call: PlannedCall) -> int:
        """What the call adds to its task's encoded payload (base64 of its pickle, and its index)."""
        pickled = len(pickle.dumps(self._resolvers[job.name].resolve(call.kwargs), protocol=PICKLE_PROTOCOL))
        return 4 * math.ceil(pickled / 3) + 12

    def payload(self, task: Task) -> TaskPayload:
        job = task.job
        resolver = self._resolvers[job.name]
        remote = not job.endpoint.is_local
        return TaskPayload(
            function=job.function,
            call_indices=[call.index for call in task.calls],
            swept_kwargs=[resolver.resolve(call.kwargs) for call in task.calls],
            args=job.args,
            kwargs=job.kwargs,
            timeout_s=job.timeout_s,
            max_result_bytes=REMOTE_MAX_RESULT_BYTES_PER_CALL if remote else 0,
            max_output_bytes=REMOTE_MAX_OUTPUT_BYTES_PER_CALL if remote else TaskPayload.max_output_bytes,
            max_stdout_bytes=REMOTE_STDOUT_BUDGET_BYTES if remote else 0,
            walltime_s=self.walltime_s(job, len(task.calls)) if remote else None,
        )

    @staticmethod
    def walltime_s(job: JobSpec, n_calls: int) -> float | None:
        """A remote task's walltime: every call at its timeout, plus slack; none without a timeout."""
        if not job.timeout_s:
            return None
        return n_calls * (job.timeout_s + TIMEOUT_GRACE_S) + REMOTE_WALLTIME_SLACK_S

    def shell_function_command(self, job: JobSpec) -> str:
        """The job's task script as a Globus ShellFunction command, its payload left as ``{payload}``."""
        return shell_function_command(
            render_task_script(job.name, job.script_path, job.script_text, job.environment, PAYLOAD_SENTINEL))

    def render(self, task: Task, payload_text: str | None = None) -> str:
        """The task's bash script (with its payload, unless another text is given)."""
        job = task.job
        text = self.payload(task).encode() if payload_text is None else payload_text
        return render_task_script(job.name, job.script_path, job.script_text, job.environment, text)


def make_plan(spec: RunSpec) -> Plan:
    return Plan(spec)
