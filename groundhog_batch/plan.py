"""A validated manifest -> calls -> tasks (groups of calls) -> payloads and rendered scripts.

Calls stream out of the sweep in plan order; tasks take consecutive calls of
one job. Each job's tasks are packed against the ``Limits`` its backend kind
gives (``backends.base``), and nothing else: ``calls_per_task: auto`` aims
at a few tasks per slot, up to the kind's largest auto task; a task's payload
stays under the kind's byte limit, and its expected duration under the
endpoint's walltime when one is set. When a call's time is known (``call_times``:
an earlier run, a ``plan --sample``) and the kind has a target task duration
(``Limits.target_task_s``: about 10 minutes on Globus Compute), ``auto`` also
packs no more calls than fit that target. The plan never asks which backend it is.
"""

from __future__ import annotations

import math
import pickle
from collections import namedtuple
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from . import datafiles
from .backends.base import Limits
from .call_span import CallSpan, listed_values
from .errors import ManifestError
from .manifest.spec import JobSpec, RunSpec
from .render.payload import PICKLE_PROTOCOL, TaskPayload
from .render.renderer import PAYLOAD_SENTINEL, render_task_script
from .render.runner import TIMEOUT_GRACE_S
from .type_names import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sweep_data import ChunkSource

AUTO = "auto"
WALLTIME_SLACK_S = 60.0
DEFERRED_RECORD_BYTES = 200  # a call the output budget defers still prints one short record
PAYLOAD_HEADER_BYTES_PER_CALL = 12  # the call's index in the payload header
PAYLOAD_FIXED_BYTES = 1024  # the header's other fields, the pickle's own framing


# What one call of a job is expected to take, and where that comes from (for ``plan``'s sizing line):
# seconds (float), source ("earlier runs", "sample", ...). Plain namedtuples: typing's NamedTuple would
# import typing at every start (type_names.py).
CallTime = namedtuple("CallTime", ["seconds", "source"], module=__name__)
# One call: its job (str), index (0-based, within its job), params (the swept values as the results table
# shows them) and kwargs (the swept keyword arguments, chunks still as references).
PlannedCall = namedtuple("PlannedCall", ["job", "index", "params", "kwargs"], module=__name__)


@dataclass
class Task:
    job: JobSpec
    # a list, or a CallSpan (consecutive calls of a plain sweep, made only if asked for)
    calls: Sequence[PlannedCall]

    @property
    def indices(self) -> Sequence[int]:
        """The calls' indices, without making the calls of a span."""
        if isinstance(self.calls, CallSpan):
            return self.calls.indices
        return [call.index for call in self.calls]


class ChunkResolver:
    """Cuts chunks out of each chunked data file, read once and checked against the hashes the run recorded.

    ``recorded``: data file -> SHA-256 at planning (``run.json``). A chunk is
    cut from a :class:`~groundhog_batch.datafiles.VerifiedChunks`; a file
    passed by path is checked (by its inode, size and times, then its hash)
    each time a call naming it is packed. Either way a file changed since
    planning stops the run instead of mixing old and new data.
    """

    def __init__(
        self, sources: dict[str, ChunkSource], recorded: dict[str, str] | None = None
    ) -> None:
        self.sources = sources
        self.recorded = recorded or {}
        self._data: dict[str, Any] = {}
        self._identities: dict[str, Any] = {}

    def resolve(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self.sources:
            return kwargs
        from .sweep_data import ChunkRef

        resolved = dict(kwargs)
        for name, value in kwargs.items():
            if isinstance(value, ChunkRef):
                resolved[name] = self._chunk(name, value.start, value.stop)
            elif name in self.sources and self.sources[name].pass_as == "path":
                self.check_path(self.sources[name])
        return resolved

    def _chunk(self, name: str, start: int, stop: int) -> Any:
        source = self.sources[name]
        if source.file is None:
            return list(source.inline_values[start:stop])
        if name not in self._data:
            self._data[name] = datafiles.VerifiedChunks(
                source.file, source.bounds, self.recorded.get(str(source.file))
            )
        return self._data[name].chunk(start, stop)

    def check_path(self, source: ChunkSource) -> None:
        """A file passed by path still holds what the run planned from (cheap unless it was written)."""
        expected = self.recorded.get(str(source.file))
        if expected is None or source.file is None:
            return
        identity = datafiles.file_identity(source.file)
        if identity is not None and identity == self._identities.get(str(source.file)):
            return
        try:
            now = datafiles.file_sha256(source.file)
        except OSError as exc:
            raise datafiles.changed_error(
                source.file, f"it cannot be read: {exc.strerror}"
            ) from None
        if now != expected:
            raise datafiles.changed_error(
                source.file, "its SHA-256 is not the one recorded when the run was planned"
            )
        self._identities[str(source.file)] = identity

    def check_paths(self) -> None:
        """Every file passed by path is unchanged (after a run: calls may have read it until the end)."""
        self._identities.clear()
        for source in self.sources.values():
            if source.pass_as == "path":
                self.check_path(source)


def iter_calls(job: JobSpec) -> Iterator[PlannedCall]:
    name, make = job.name, tuple.__new__  # a million calls: skip the NamedTuple's own __new__
    for index, (params, kwargs) in enumerate(job.sweep.pairs()):
        yield make(PlannedCall, (name, index, params, kwargs))


def auto_calls_per_task(job: JobSpec, limits: Limits) -> int:
    """``calls_per_task: auto``: the job's calls over its slots (``auto_tasks_per_slot`` tasks each), within the kind's largest."""
    per_task = math.ceil(job.n_calls / (job.max_parallel * limits.auto_tasks_per_slot))
    return max(1, min(per_task, limits.max_auto_calls_per_task))


class Plan:
    """What a run will do: its jobs' calls, packed into tasks."""

    def __init__(
        self,
        spec: RunSpec,
        limits: Mapping[str, Limits] | None = None,
        call_times: Mapping[str, CallTime] | None = None,
    ) -> None:
        """``limits``: each job's, by name; by default what each job's backend kind gives for its config.
        ``call_times``: each job's expected time per call, by name, where one is known (it sizes ``auto`` tasks)."""
        if limits is None:
            from .backends.registry import limits_for

            limits = limits_for(spec)
        self.spec = spec
        self._limits = dict(limits)
        self.call_times = dict(call_times or {})
        self._resolvers = {
            job.name: ChunkResolver(job.sweep.chunk_sources, spec.recorded_inputs)
            for job in spec.jobs
        }

    @property
    def jobs(self) -> list[JobSpec]:
        return self.spec.jobs

    def check_data_passed_by_path(self) -> None:
        """The data files calls read themselves (``pass: path``) are as the run planned them."""
        for resolver in self._resolvers.values():
            resolver.check_paths()

    def job(self, name: str) -> JobSpec:
        for job in self.spec.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def limits(self, job: JobSpec) -> Limits:
        return self._limits[job.name]

    def calls_per_task(self, job: JobSpec) -> int:
        """The job's calls_per_task; ``auto`` also keeps tasks inside the endpoint's walltime, and near the
        kind's target duration when a call's time is known."""
        if job.calls_per_task != AUTO:
            return int(job.calls_per_task)
        auto = auto_calls_per_task(job, self.limits(job))
        bounds = [
            b for b in (self.calls_fitting_walltime(job), self.calls_fitting_target(job)) if b
        ]
        return min([auto, *bounds])

    def calls_fitting_target(self, job: JobSpec) -> int | None:
        """How many calls, at their known time, fill the kind's target task duration; None when either is unknown."""
        target_s = self.limits(job).target_task_s
        known = self.call_times.get(job.name)
        if not target_s or known is None:
            return None
        return max(1, int(target_s // max(known.seconds, 1e-3)))

    def task_sizing(self, job: JobSpec) -> str:
        """What the job's task size is based on, in words (``plan`` shows it)."""
        per_task = self.calls_per_task(job)
        if job.calls_per_task != AUTO:
            return f"calls_per_task {per_task:,}, as set"
        limits = self.limits(job)
        known = self.call_times.get(job.name)
        target_s = limits.target_task_s
        if per_task == self.calls_fitting_walltime(job) and per_task < auto_calls_per_task(
            job, limits
        ):
            return f"auto: every call at its timeout fits the endpoint's walltime {limits.walltime}"
        spread = (
            f"auto: {job.n_calls:,} calls over {job.max_parallel} task slot(s), "
            f"at most {limits.max_auto_calls_per_task:,} per task"
        )
        if not target_s:
            return spread
        target = duration_words(target_s)
        if known is None:
            return (
                f"{spread}; no call time known, so tasks are not sized to about {target} "
                "(`plan --sample N`, or an earlier run of this script, gives one; or set calls_per_task)"
            )
        lasting = duration_words(per_task * known.seconds)
        if per_task == self.calls_fitting_target(job):
            return (
                f"auto: tasks of about {target} at {known.seconds:.3g} s per call ({known.source}); "
                f"set calls_per_task to choose otherwise"
            )
        return f"{spread}; about {lasting} each at {known.seconds:.3g} s per call ({known.source})"

    def payload_budget_bytes(self, job: JobSpec) -> int | None:
        """The most payload bytes one task may carry (None: no limit)."""
        return self.limits(job).payload_bytes

    def endpoint_walltime_s(self, job: JobSpec) -> float | None:
        """The batch job's walltime from the endpoint config (``walltime``), in seconds, when it is set and readable."""
        return self.limits(job).walltime_s

    def calls_fitting_walltime(self, job: JobSpec) -> int | None:
        """How many calls, each at its timeout, fit in the endpoint's walltime; None when either is unknown."""
        walltime_s = self.endpoint_walltime_s(job)
        if walltime_s is None or not job.timeout_s:
            return None
        room_s = walltime_s - 2 * WALLTIME_SLACK_S
        return max(1, int(room_s // (job.timeout_s + TIMEOUT_GRACE_S)))

    def walltime_warning(self, job: JobSpec) -> str | None:
        """Why a task of this job may outlive the endpoint's batch job, if it may."""
        walltime = self.limits(job).walltime
        if walltime is None:
            return None
        walltime_s = self.endpoint_walltime_s(job)
        if walltime_s is None:
            return (
                f"the endpoint config's walltime {walltime!r} is not a time hog-batch can read "
                "(HH:MM:SS, D-HH:MM:SS or minutes): tasks are not sized to it"
            )
        if not job.timeout_s:
            return (
                f"tasks of up to {self.calls_per_task(job):,} calls run in a batch job of walltime {walltime}; "
                "without a timeout hog-batch cannot tell whether they fit: set timeout (tasks are then "
                "sized to the walltime), or a smaller calls_per_task"
            )
        fitting = self.calls_fitting_walltime(job)
        if job.calls_per_task != AUTO and fitting is not None and int(job.calls_per_task) > fitting:
            return (
                f"calls_per_task {job.calls_per_task} at timeout {job.timeout_s:g} s may outlive the walltime "
                f"{walltime}: each task stops itself before it and its unfinished calls run again; "
                f"calls_per_task {fitting} would fit"
            )
        return None

    def tasks(self, job: JobSpec, calls: Iterable[PlannedCall] | None = None) -> Iterator[Task]:
        """Pack calls (all of the job's, or the given ones) into tasks, in order."""
        per_task = self.calls_per_task(job)
        budget = self.payload_budget_bytes(job)
        axes = job.sweep.product_axes() if calls is None else None
        if axes is not None and listed_values(axes) <= min(per_task, job.n_calls):
            spans = [
                CallSpan(job, axes, first, min(first + per_task, job.n_calls))
                for first in range(0, job.n_calls, per_task)
            ]
            if not budget or len(self.payload(Task(job, spans[0])).encode()) <= budget:
                for span in spans:
                    yield Task(job, span)
                return
        if not budget:  # no byte limit: just cut the calls into runs of per_task
            remaining = iter(iter_calls(job) if calls is None else calls)
            while batch := list(islice(remaining, per_task)):
                handed = [Task(job, batch)]
                del batch  # while this generator waits, it holds no task: 100,000 calls are 60 MB
                yield handed.pop()
            return
        fixed = PAYLOAD_FIXED_BYTES + self._job_arguments_bytes(job) if budget else 0
        batch: list[PlannedCall] = []
        batch_bytes = fixed
        for call in iter_calls(job) if calls is None else calls:
            size = self.call_size_bytes(job, call) + PAYLOAD_HEADER_BYTES_PER_CALL if budget else 0
            if budget and size > budget:
                limits = self.limits(job)
                raise ManifestError(
                    message=f"call {call.index} of job {job.name!r} carries {size:,} bytes of encoded arguments, over "
                    f"the {budget:,} bytes {limits.payload_limit_text or 'one task can carry'}",
                    hint=limits.payload_limit_hint or "make the chunks smaller (rows: or parts:)",
                    file=self.spec.manifest_path,
                    key_path=("sweep",),
                )
            if batch and (len(batch) >= per_task or (budget and batch_bytes + size > budget)):
                yield Task(job, batch)
                batch, batch_bytes = [], fixed
            batch.append(call)
            batch_bytes += size
        if batch:
            yield Task(job, batch)

    def all_tasks(self) -> Iterator[Task]:
        for job in self.spec.jobs:
            yield from self.tasks(job)

    @staticmethod
    def _job_arguments_bytes(job: JobSpec) -> int:
        """The job's fixed args and kwargs, which every payload carries, base64-encoded."""
        return 4 * math.ceil(
            len(pickle.dumps({"args": job.args, "kwargs": job.kwargs}, protocol=PICKLE_PROTOCOL))
            / 3
        )

    def call_size_bytes(self, job: JobSpec, call: PlannedCall) -> int:
        """What the call adds to its task's encoded payload (base64 of its pickle, and its index)."""
        pickled = len(
            pickle.dumps(self._resolvers[job.name].resolve(call.kwargs), protocol=PICKLE_PROTOCOL)
        )
        return 4 * math.ceil(pickled / 3) + 12

    def payload(self, task: Task) -> TaskPayload:
        job = task.job
        resolver = self._resolvers[job.name]
        limits = self.limits(job)
        span = task.calls if isinstance(task.calls, CallSpan) else None
        return TaskPayload(
            function=job.function,
            call_indices=list(task.indices),
            swept_kwargs=[]
            if span is not None
            else [resolver.resolve(call.kwargs) for call in task.calls]
            if resolver.sources
            else [call.kwargs for call in task.calls],
            grid=span.grid() if span is not None else None,
            args=job.args,
            kwargs=job.kwargs,
            timeout_s=job.timeout_s,
            max_result_bytes=limits.result_bytes_per_call,
            max_output_bytes=TaskPayload.max_output_bytes
            if limits.output_bytes_per_call is None
            else limits.output_bytes_per_call,
            max_stdout_bytes=(
                limits.records_bytes_per_task - DEFERRED_RECORD_BYTES * len(task.calls)
            )
            if limits.records_bytes_per_task
            else 0,
            walltime_s=self.walltime_s(job, len(task.calls)) if limits.task_walltime else None,
            memory_mib=job.memory_mib,
        )

    def walltime_s(self, job: JobSpec, n_calls: int) -> float | None:
        """A task's walltime: every call at its timeout plus slack, and never past the endpoint's walltime.

        A task that stops itself at its walltime reports its unfinished calls
        (they run again); one killed with its batch job reports nothing.
        """
        own = (
            n_calls * (job.timeout_s + TIMEOUT_GRACE_S) + WALLTIME_SLACK_S
            if job.timeout_s
            else None
        )
        endpoint_s = self.endpoint_walltime_s(job)
        batch = (
            endpoint_s - WALLTIME_SLACK_S
            if endpoint_s and endpoint_s > 2 * WALLTIME_SLACK_S
            else None
        )
        candidates = [t for t in (own, batch) if t is not None]
        return min(candidates) if candidates else None

    def script_template(self, job: JobSpec) -> str:
        """The job's rendered task script with the payload's place left open (PAYLOAD_SENTINEL)."""
        return render_task_script(
            job.name, job.script_path, job.script_text, job.environment, PAYLOAD_SENTINEL
        )

    def render(self, task: Task, payload_text: str | None = None) -> str:
        """The task's bash script (with its payload, unless another text is given)."""
        job = task.job
        text = self.payload(task).encode() if payload_text is None else payload_text
        return render_task_script(job.name, job.script_path, job.script_text, job.environment, text)


def duration_words(seconds: float) -> str:
    """``600`` -> ``10 min``; ``45`` -> ``45 s``; ``7200`` -> ``2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def make_plan(spec: RunSpec) -> Plan:
    return Plan(spec)
