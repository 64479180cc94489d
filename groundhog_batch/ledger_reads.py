"""What the ledger's bulk reads return: a window of a job's calls (results, exports) and a task's times.

Their own module: only reading a run's results or its tasks makes them, so a submit's start never makes
the dataclasses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ledger import CODE_STATES, SUCCEEDED, CallRecord, block_text, success_records_in


@dataclass(frozen=True)
class CallWindow:
    """Calls ``start``..``stop - 1`` of a job: their state codes, success records and failures (attempts, record)."""

    job: str
    start: int
    stop: int
    states: bytes
    successes: dict[int, dict]
    failures: dict[int, tuple[int, dict]]
    columns: Any = (
        None  # with every call succeeded and short: the records as a pyarrow Table, no successes
    )

    def record(self, call: int) -> dict | None:
        if self.states[call - self.start] == SUCCEEDED:
            return self.successes.get(call)
        failure = self.failures.get(call)
        return failure[1] if failure else None

    def attempts(self, call: int) -> int:
        failure = self.failures.get(call)
        return (failure[0] if failure else 0) + (self.states[call - self.start] == SUCCEEDED)

    def records(self) -> Iterator[CallRecord]:
        for call in range(self.start, self.stop):
            yield CallRecord(
                self.job,
                call,
                CODE_STATES[self.states[call - self.start]],
                self.attempts(call),
                self.record(call),
            )


class StoredBlock:
    """One stored block of success records while a window needs it: read as an Arrow table (``columnar`` and
    every record short), else decoded as dicts when first asked, from the text decompressed once. A window
    that cannot take a block's table (a failure in it, a neighbour block of another shape) asks for dicts."""

    def __init__(self, hi: int, compressed: bytes, path: Path | None, columnar: bool) -> None:
        self.hi, self._compressed, self._path = hi, compressed, path
        self._data: bytes | None = block_text(compressed, path)
        self._records: dict[int, dict] | None = None
        self.table = None
        if columnar:
            from .success_columns import block_table

            self.table = block_table(self._data)
            if self.table is not None:
                self._data = (
                    None  # the table holds the records: the text again only if a window asks
                )

    def records(self) -> dict[int, dict]:
        if self._records is None:
            data = (
                self._data if self._data is not None else block_text(self._compressed, self._path)
            )
            self._records = dict(success_records_in(data))
            self._data = None
        return self._records


@dataclass(frozen=True)
class TaskTimes:
    task_id: str
    job: str
    state: str  # submitted | done | abandoned | cancelled
    n_calls: int
    submitted_at: float | None
    finished_at: float | None


__all__ = ["CallWindow", "StoredBlock", "TaskTimes"]
