"""The local backend's kind: what ``validate`` and ``plan`` ask of it (its name, its limits), without the
process machinery of ``backends/local.py``, which is imported only to run tasks."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..type_names import TYPE_CHECKING, Any
from .base import BackendContext, BackendKind, Limits

if TYPE_CHECKING:
    from .local import LocalBackend

# One task per core: each task starts bash, Python and the script's imports (NumPy: 0.1 s), and two tasks per
# core paid that twice (300 calls of 10 ms ran 10-15 % slower than with one). A sweep whose calls grow along it
# balances less well (its second half is the slower task); set calls_per_task for those.
TASKS_PER_SLOT = 1
MAX_AUTO_CALLS_PER_TASK = 100_000


def default_parallelism() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


class LocalKind(BackendKind):
    """Tasks as subprocesses of the submitter, on this machine's cores."""

    name = "local"
    where = "locally"
    service = "this machine"
    sees_run_dir = True

    def claims(self, target: str) -> bool:
        return target == "local"

    def limits(self, config: Mapping[str, Any]) -> Limits:
        return Limits(
            default_parallelism=default_parallelism(),
            max_auto_calls_per_task=MAX_AUTO_CALLS_PER_TASK,
            auto_tasks_per_slot=TASKS_PER_SLOT,
        )

    def open(self, context: BackendContext) -> LocalBackend:
        from .local import LocalBackend

        return LocalBackend(context.scratch_dir, context.working_dir)


KIND = LocalKind()
