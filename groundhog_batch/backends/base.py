"""The backend contract: submit tasks, poll for what they report, cancel.

A backend knows nothing of manifests or ledgers. It receives rendered task
scripts and hands back, task by task, the record lines after the runner's
delimiter (raw, or decoded) and how the task ended. A new backend is one small file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (hog-batch task id, backend task id) pairs, and the backend's group id if it has one
IdsCallback = Callable[[list[tuple[str, str]], "str | None"], None]


@dataclass(frozen=True)
class TaskSubmission:
    task_id: str  # hog-batch's own id, unique in the run
    job: str
    calls: list[int]
    script: str  # the rendered bash script (the remote backend sends only its payload part)
    payload: str = ""


@dataclass
class TaskReport:
    """What a task said since the last poll; ``finished`` once it has ended."""

    task_id: str
    records: list[dict[str, Any]] = field(default_factory=list)  # decoded records (a remote backend's)
    lines: bytes = b""  # or the record lines as the runner wrote them, undecoded (complete lines only)
    finished: bool = False
    returncode: int | None = None
    stderr_tail: str = ""
    saw_delimiter: bool = True
    lost: bool = False  # the backend has no trace of the task (e.g. the service dropped it)
    failure: str = ""  # why the backend says the task failed (an endpoint error), when it says so


class Backend(ABC):
    name: str = "backend"
    needs_script: bool = True  # False: the backend sends only payloads (the script is registered once per job)

    @abstractmethod
    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        """Start the tasks; hand their backend ids to ``on_ids`` as soon as each group of them is accepted."""

    @abstractmethod
    def poll(self, timeout_s: float) -> list[TaskReport]:
        """Reports since the last call, waiting up to ``timeout_s`` for the first one."""

    @abstractmethod
    def cancel(self, task_ids: list[str]) -> None:
        """Stop these tasks and everything they started."""

    def reattach(self, tasks: list[tuple[str, str, str | None, list[int]]]) -> list[TaskReport]:
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
