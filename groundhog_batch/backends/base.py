"""The backend contract: a kind of backend (its limits, its config check, how it opens), and the backend itself.

A **kind** (``BackendKind``) is what an endpoint resolves to: ``local``, ``globus``,
``slurm``. It is one object in one module, listed once in ``registry``. It gives:

- ``limits(config)``: what one task may carry and how long it may run, computed
  offline from the job's merged endpoint config (``validate`` and ``plan`` need
  no network). ``Plan`` packs against these and never asks which kind it is.
- ``config_problems(job, locate)``: the offline check of the job's config;
  ``check(spec)``: the check just before a run is created (it may ask a service).
- ``open(context)``: the ``Backend`` that runs a run's tasks.

A **backend** knows nothing of manifests, plans or ledgers. It receives a
narrow ``BackendContext`` (scratch and working dirs, its own slice of the run's
metadata, each job's endpoint and rendered script) and rendered task scripts,
and hands back, task by task, the record lines after the runner's delimiter
(raw, or decoded) and how the task ended. A new backend is one small file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..type_names import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..errors import HogError
    from ..manifest.endpoint_config import ResolvedEndpoint
    from ..manifest.spec import JobSpec, RunSpec

# (hog-batch task id, backend task id) pairs, and the backend's group id if it has one
IdsCallback = Callable[[list[tuple[str, str]], "str | None"], None]
# (task_id, job, external_id, calls) of a task a previous submitter started
AbandonedTask = tuple[str, str, "str | None", list[int]]
# locate(config key, message, hint) -> the error at the manifest line (or script table) that set the key
ConfigLocator = Callable[[str, str, str], "HogError"]


@dataclass(frozen=True)
class Limits:
    """What one task of a job may be on its backend: Plan packs tasks against these, and nothing else.

    Zero or None means no limit. Every field is computed offline from the job's endpoint config.
    """

    default_parallelism: int  # tasks in flight when the manifest sets no max_parallel
    max_auto_calls_per_task: int  # the largest task ``calls_per_task: auto`` makes
    auto_tasks_per_slot: int = (
        1  # ``auto`` aims at this many tasks per slot (more: a slow call holds less back)
    )
    payload_bytes: int | None = None  # the most payload bytes one task may carry
    payload_limit_text: str = (
        ""  # what that limit is, for the error of a call over it ("one ... task can carry")
    )
    payload_limit_hint: str = ""  # the fix for a call over it
    result_bytes: int | None = None  # the most bytes a task's whole result may be
    records_bytes_per_task: int = (
        0  # what a task may print as records; calls that would not fit are deferred
    )
    result_bytes_per_call: int = 0  # a call's pickled result, at most
    output_bytes_per_call: int | None = (
        None  # each of a call's stdout and stderr (None: the runner's default)
    )
    walltime: Any = None  # the batch walltime as the config gives it (for messages)
    walltime_s: float | None = None  # it in seconds; None when unset or unreadable
    task_walltime: bool = (
        False  # tasks carry their own walltime (their calls at their timeouts, plus slack)
    )
    target_task_s: float | None = (
        None  # ``auto`` packs tasks to last about this long when a call's time is known
    )


def parse_walltime_s(value: Any) -> float | None:
    """A batch walltime in seconds: ``HH:MM:SS``, ``MM:SS``, ``D-HH:MM:SS``, ``D-HH``, or minutes (Slurm's forms)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) * 60 if value > 0 else None
    text = str(value).strip()
    days = 0
    if "-" in text:
        day_text, _, text = text.partition("-")
        if not day_text.isdigit():
            return None
        days = int(day_text)
    parts = text.split(":")
    if not all(part.isdigit() for part in parts) or not 1 <= len(parts) <= 3:
        return None
    numbers = [int(part) for part in parts]
    if len(numbers) == 1:
        seconds = numbers[0] * 60 if days == 0 else numbers[0] * 3600
    elif len(numbers) == 2:
        seconds = numbers[0] * 60 + numbers[1] if days == 0 else numbers[0] * 3600 + numbers[1] * 60
    else:
        seconds = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    total = days * 86400 + seconds
    return float(total) if total > 0 else None


class MetaSlice:
    """A backend's own slice of the run's metadata (kept in the ledger, crash-safe): keys under its kind's prefix.

    ``store`` is anything with ``get_meta(key, default)`` and ``set_meta(key, value)`` (the ledger, or a dict's
    stand-in in tests); values are JSON.
    """

    def __init__(self, store: Any, prefix: str) -> None:
        self._store, self.prefix = store, prefix

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get_meta(self.prefix + key, default)

    def set(self, key: str, value: Any) -> None:
        self._store.set_meta(self.prefix + key, value)


class DictMeta:
    """Metadata kept in memory: a stand-in for the ledger in tests of a backend alone."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        self.values[key] = value


@dataclass(frozen=True)
class JobTarget:
    """What a backend knows of one job: where it runs, and its rendered task script."""

    name: str
    endpoint: ResolvedEndpoint  # reference, kind, endpoint_id, merged config
    script_template: (
        str  # the job's rendered task script, PAYLOAD_SENTINEL where each task's payload goes
    )
    limits: Limits
    max_parallel: int = (
        0  # the job's tasks running at once (a backend that queues tasks itself keeps to it)
    )


@dataclass
class BackendContext:
    """All a backend receives of its run.

    ``jobs`` is loaded on first use (a local backend that only stops tasks
    never reads the manifest).
    """

    scratch_dir: Path  # private to the run; the backend names its own files in it
    working_dir: Path  # where task scripts run (the manifest's folder)
    meta: MetaSlice
    load_jobs: Callable[[], Mapping[str, JobTarget]] = field(default=lambda: {}, repr=False)
    _jobs: Mapping[str, JobTarget] | None = field(default=None, repr=False)

    @property
    def jobs(self) -> Mapping[str, JobTarget]:
        if self._jobs is None:
            self._jobs = self.load_jobs()
        return self._jobs

    def job(self, name: str) -> JobTarget:
        return self.jobs[name]


@dataclass(frozen=True)
class TaskSubmission:
    task_id: str  # hog-batch's own id, unique in the run
    job: str
    calls: list[int]
    script: str  # the rendered bash script (a backend with needs_script False gets "" and sends only the payload)
    payload: str = ""
    # What the batch job carrying the task must ask for (a Slurm array's --time and --mem):
    walltime_s: float | None = None  # None: the endpoint's walltime; set when a retry escalated it
    memory_mib: float | None = (
        None  # each call's memory (``memory:``, escalated on retries); None: not set
    )


@dataclass
class TaskReport:
    """What a task said since the last poll; ``finished`` once it has ended."""

    task_id: str
    records: list[dict[str, Any]] = field(
        default_factory=list
    )  # decoded records (a remote backend's)
    lines: bytes = (
        b""  # or the record lines as the runner wrote them, undecoded (complete lines only)
    )
    finished: bool = False
    returncode: int | None = None
    stderr_tail: str = ""
    saw_delimiter: bool = True
    lost: bool = False  # the backend has no trace of the task (e.g. the service dropped it)
    failure: str = ""  # why the backend says the task failed (an endpoint error), when it says so


class Backend(ABC):
    name: str = "backend"
    needs_script: bool = (
        True  # False: the backend sends only payloads (the script is registered once per job)
    )
    queues_tasks: bool = False  # True: it takes every task at once and keeps max_parallel running itself (a batch queue)
    submits_each_at_once: bool = (
        False  # True: a task goes out as soon as it is packed, not with the next
    )

    @abstractmethod
    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        """Start the tasks; hand their backend ids to ``on_ids`` as soon as each group of them is accepted."""

    @abstractmethod
    def poll(self, timeout_s: float) -> list[TaskReport]:
        """Reports since the last call, waiting up to ``timeout_s`` for the first one."""

    @abstractmethod
    def cancel(self, task_ids: list[str]) -> None:
        """Stop these tasks and everything they started."""

    def reattach(self, tasks: list[AbandonedTask]) -> list[TaskReport]:
        """Tasks a previous submitter started: (task_id, job, external_id, calls) each; one report per task, in order.

        A local backend stops them and reports what they recorded (finished). A
        remote one cannot stop them: it follows them again and reports them
        unfinished; their results come through ``poll`` like any other's.
        """
        return [TaskReport(task_id) for task_id, *_ in tasks]

    def forget(self, task_id: str) -> None:  # noqa: B027 - optional hook
        """The ledger holds everything the task reported: drop what the backend kept for it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; running tasks are cancelled."""


class BackendKind(ABC):
    """One kind of backend, listed once in ``registry``: how an endpoint of this kind is named, limited, checked, run."""

    name: ClassVar[str]  # as run.json records it: local, globus, slurm
    where: ClassVar[str]  # for messages: "locally", "on Globus Compute", "on Slurm"
    service: ClassVar[str]  # what is asked for results: "Globus Compute", "Slurm"
    tasks_outlive_submitter: ClassVar[bool] = (
        False  # True: status and collect take in results a dead submitter left
    )
    sees_run_dir: ClassVar[bool] = (
        False  # True: tasks see the run directory (this machine, or a shared filesystem)
    )

    @abstractmethod
    def claims(self, target: str) -> bool:
        """Whether this kind serves an endpoint given as ``target`` (``local``, a UUID, ``slurm``)."""

    def endpoint_id(self, target: str) -> str | None:
        """The address this kind keeps for the endpoint (a Globus endpoint's UUID); None when it needs none."""
        return None

    @abstractmethod
    def limits(self, config: Mapping[str, Any]) -> Limits:
        """The limits of one task on an endpoint of this config; offline."""

    def config_problems(self, job: JobSpec, locate: ConfigLocator) -> list[HogError]:
        """What is wrong with the job's endpoint config, offline (``validate``, ``plan``); each error located."""
        return []

    def check(self, spec: RunSpec) -> None:  # noqa: B027 - optional hook
        """Check the run's jobs just before the run is created (may ask the service); raise to refuse."""

    def render_wrapper(self, job: JobSpec, task_id: str) -> str | None:
        """What runs a task's script on this backend, for ``plan --render`` (None: the script runs as it is)."""
        return None

    def limits_report(self, limits: Limits, largest_payload_bytes: int) -> dict[str, Any] | None:
        """The service limits ``plan`` shows for a job (``remote_limits``), if the kind has any."""
        return None

    @abstractmethod
    def open(self, context: BackendContext) -> Backend:
        """The backend that runs a run's tasks."""


__all__ = [
    "AbandonedTask",
    "Backend",
    "BackendContext",
    "BackendKind",
    "ConfigLocator",
    "DictMeta",
    "IdsCallback",
    "JobTarget",
    "Limits",
    "MetaSlice",
    "TaskReport",
    "TaskSubmission",
    "parse_walltime_s",
]
