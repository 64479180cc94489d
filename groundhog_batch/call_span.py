"""A task's calls as a span of its job's sweep: the sweep's axes and where the span starts, not a dict per call.

A job whose sweep is one product of values the manifest lists (ranges, lists,
zip groups, rows of a table; no ``exclude``, no chunks of a data file) packs
its tasks as spans. The payload carries the axes once and the span's first
call and length; the task's runner makes each call's keyword arguments from
them (``runner.expand_grid``), in the order planning gives them. The
submitter makes, pickles and writes nothing per call, and a task of 100,000
calls carries a few short lists instead of 100,000 dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

from .manifest.spec import JobSpec
from .type_names import Any

# An axis as the runner expands it (``Sweep.product_axes``): [name, values] (one keyword) or [None, entries]
# (dicts of keywords).
Axis = list


def listed_values(axes: list[Axis]) -> int:
    """How many values the axes list one by one (a range lists none): what a span's payload carries."""
    return sum(0 if isinstance(values, range) else len(values) for _, values in axes)


class CallSpan(Sequence):
    """Calls ``first`` .. ``stop - 1`` of a job: their indices at once, the calls themselves only if asked for."""

    def __init__(self, job: JobSpec, axes: list[Axis], first: int, stop: int) -> None:
        self.job, self.axes, self.first, self.stop = job, axes, first, stop

    @property
    def indices(self) -> range:
        return range(self.first, self.stop)

    def grid(self) -> dict[str, Any]:
        """What the task's payload carries for these calls (``runner.expand_grid`` reads it)."""
        return {"axes": self.axes, "first": self.first, "n": self.stop - self.first}

    def __len__(self) -> int:
        return self.stop - self.first

    def __iter__(self) -> Iterator:
        from .plan import iter_calls

        return islice(iter_calls(self.job), self.first, self.stop)

    def __getitem__(self, position):  # type: ignore[override]
        calls = list(self)
        return calls[position]
