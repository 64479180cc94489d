"""An escalated task's limits, as recorded per attempt (retry_policy says how they grow).

Its own module: only a retry that escalates makes one, so a submit's start never makes the dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Escalation:
    """What one escalated task ran with: recorded per attempt."""

    task_id: str
    job: str
    attempt: int
    calls: int
    timeout_s: float | None
    memory_mib: float | None
    walltime_s: float | None  # the task's own deadline (the runner's)
    batch_walltime_s: float | None = None  # the batch job's (a Slurm array's --time), when it grew
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "task_id": self.task_id,
            "job": self.job,
            "attempt": self.attempt,
            "calls": self.calls,
            "timeout_s": self.timeout_s,
            "memory_mib": self.memory_mib,
            "walltime_s": self.walltime_s,
            "batch_walltime_s": self.batch_walltime_s,
        }


__all__ = ["Escalation"]
