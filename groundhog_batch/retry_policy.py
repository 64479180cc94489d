"""Retries that escalate: ``retries: {max: 3, on: [TimeoutError, MemoryError, WorkerDied], timeout: 2x}``.

``retries: N`` re-runs any failed call up to N times, with the same limits.
The mapping form says which errors are worth a retry (``on``: the word before
the first ``:`` of the error, as ``status`` groups them; default: any) and
how each attempt's limits grow (Nextflow's ``task.attempt`` habit): with
``timeout: 2x`` the second attempt gets twice the timeout, the third four
times, and so on; ``memory`` and ``walltime`` (a remote task's) likewise.
Calls of different attempts never share a task. Each escalated task's
limits are recorded in the ledger (``escalations``, per attempt).
"""

from __future__ import annotations

import re
from dataclasses import replace

from .type_names import Any

FACTOR_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*x\s*$"
SCALED = ("timeout", "memory", "walltime")


def parse_factor(value: Any) -> float | None:
    """``"2x"`` or ``2`` -> 2.0."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    if re.match(FACTOR_PATTERN, str(value)):
        return float(str(value).strip()[:-1])
    return None


class RetryPolicy(int):
    """A job's retries: an int (the most re-runs of a call, what the ledger compares attempts with), which
    also knows which errors are retried (``on``) and how limits grow per attempt (``factors``)."""

    on: tuple[str, ...] | None
    factors: dict[str, float]

    def __new__(
        cls, most: int, on: tuple[str, ...] | None = None, factors: dict[str, float] | None = None
    ):
        policy = super().__new__(cls, most)
        policy.on = tuple(on) if on else None
        policy.factors = dict(factors or {})
        return policy

    @classmethod
    def of(cls, value: Any) -> RetryPolicy:
        """From the manifest's ``retries`` (an integer, or the mapping form; already validated)."""
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            factors = {key: parse_factor(value[key]) for key in SCALED if key in value}
            return cls(
                int(value.get("max", 0)),
                tuple(value.get("on") or ()) or None,
                {k: f for k, f in factors.items() if f and f != 1.0},
            )
        return cls(int(value or 0))

    def retries_error(self, error_type: str) -> bool:
        return self.on is None or error_type in self.on

    @property
    def escalates(self) -> bool:
        return bool(self.factors)

    def growth(self, key: str, attempt: int) -> float:
        """How much ``key``'s limit (timeout, memory, walltime) is multiplied by on the ``attempt``-th run."""
        return self.factors.get(key, 1.0) ** max(attempt - 1, 0)

    def scaled(self, payload, attempt: int):
        """The task payload for calls on their ``attempt``-th run (1: as planned)."""
        if attempt <= 1 or not self.factors:
            return payload
        grow = {key: self.growth(key, attempt) for key in self.factors}
        changes = {}
        if "timeout" in grow and payload.timeout_s:
            changes["timeout_s"] = payload.timeout_s * grow["timeout"]
        if "memory" in grow and payload.memory_mib:
            changes["memory_mib"] = payload.memory_mib * grow["memory"]
        if "walltime" in grow and payload.walltime_s:
            changes["walltime_s"] = payload.walltime_s * grow["walltime"]
        return replace(payload, **changes) if changes else payload


__all__ = ["RetryPolicy", "parse_factor"]
