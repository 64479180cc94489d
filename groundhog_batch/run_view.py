"""What a person asks of a run, answered from its ledger: progress, failures grouped, one call's output.

Every read goes through the small functions here, so ``status``, ``logs``,
``runs`` and the progress display do not depend on how the ledger stores
its rows. They read without the run's lock: a live submitter keeps writing
while they look (SQLite's WAL lets both happen at once).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import RunError
from .ledger import CallRecord, CallState, Ledger
from .type_names import TYPE_CHECKING

if TYPE_CHECKING:
    from .run_view_records import CallLog, FailureGroup

FINISHED = (CallState.SUCCEEDED.value, CallState.FAILED.value, CallState.CANCELLED.value)
STREAMS = ("stdout", "stderr", "traceback")
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def error_type(error: str | None) -> str:
    """``ValueError: bad x`` -> ``ValueError``; anything without a type name -> ``error``."""
    found = _ERROR_TYPE.match(error or "")
    return found.group(1) if found else "error"


def first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


# --- progress ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Counts of a run's calls at one moment."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(state, 0) for state in FINISHED)

    @property
    def failed(self) -> int:
        return self.counts.get(CallState.FAILED.value, 0)

    @property
    def in_flight(self) -> int:
        return self.counts.get(CallState.SUBMITTED.value, 0) + self.counts.get(
            CallState.RUNNING.value, 0
        )


def progress(ledger: Ledger, fresh: bool = False) -> Progress:
    """The counts now; ``fresh`` reads them again from disk (another process may be writing the run)."""
    if fresh:
        ledger.reload()
    return Progress(ledger.counts())


def progress_by_job(ledger: Ledger) -> dict[str, Progress]:
    return {job: Progress(counts) for job, counts in ledger.counts_by_job().items()}


def summary(counts: dict[str, int], driven: bool = True) -> str:
    """``8 succeeded, 2 failed, 3 in flight``: the states that have calls, in a fixed order.

    With ``driven`` False (nothing drives the run), calls left in flight are said to be so.
    """
    shown = [
        f"{counts[k]} {k}" for k in ("succeeded", "failed", "cancelled", "pending") if counts.get(k)
    ]
    in_flight = Progress(counts).in_flight
    if in_flight:
        shown.append(f"{in_flight} in flight" if driven else f"{in_flight} left in flight")
    return ", ".join(shown) or "no calls"


def holder_text(holder: dict) -> str:
    """Who drives a run: ``running in the background (pid 12, on host, since ...)`` or ``resume by pid 12 ...``."""
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
    if holder.get("background"):
        return f"running in the background ({where})"
    return f"running: {holder.get('action', '?')} by {where}"


def interrupted_text(counts: dict[str, int], root) -> str | None:
    """For a run nothing drives: how to finish it, if calls are unfinished (None if it is done)."""
    now = Progress(counts)
    unfinished = now.in_flight + counts.get(CallState.PENDING.value, 0)
    if not unfinished:
        return None
    return f"interrupted ({unfinished:,} call{'s' if unfinished != 1 else ''} unfinished): `hog-batch resume {root}` finishes it"


@dataclass
class RateMeter:
    """Calls finished per second since the meter started, and the time left at that rate."""

    started_finished: int
    started_at: float = field(default_factory=time.monotonic)

    def rate(self, finished: int) -> float | None:
        elapsed = time.monotonic() - self.started_at
        done = finished - self.started_finished
        return done / elapsed if elapsed > 0 and done > 0 else None

    def eta_s(self, now: Progress) -> float | None:
        rate = self.rate(now.finished)
        return (now.total - now.finished) / rate if rate else None


def duration_text(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``3d4h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def progress_line(name: str, now: Progress, meter: RateMeter) -> str:
    """One plain line: ``pi-grid: 40/100 finished (38 succeeded, 2 failed), 3.2 calls/s, ETA 19s``."""
    rate = meter.rate(now.finished)
    rate_text = f"{rate:.3g} calls/s" if rate else "rate ?"
    return (
        f"{name}: {now.finished}/{now.total} finished ({summary(now.counts)}), {rate_text}, "
        f"ETA {duration_text(meter.eta_s(now))}"
    )


# --- failures ---------------------------------------------------------------------------


def _failed_rows(ledger: Ledger) -> Iterator[tuple[str, int, str]]:
    """(job, call, error) of every call failed for good, in plan order, without loading its output."""
    yield from ledger.db.execute(
        "SELECT f.job, f.call, COALESCE(json_extract(f.record, '$.error'), '') FROM failures f"
        " JOIN jobs j ON j.job = f.job WHERE f.final = 1 ORDER BY j.job_order, f.call"
    )


def failed_calls(ledger: Ledger) -> Iterator[tuple[str, int, str]]:
    """(job, call, first line of the error) of every failed call, in plan order, streamed."""
    for job, call, error in _failed_rows(ledger):
        yield job, call, first_line(error)


def failure_groups(ledger: Ledger) -> list[FailureGroup]:
    """Every failed call, grouped by job and type of error; the largest group first (plan order on ties)."""
    rows = _failed_rows(ledger)
    first = next(rows, None)
    if (
        first is None
    ):  # nothing failed (a submit's summary asks too): no FailureGroup module to import
        return []
    from .run_view_records import FailureGroup

    groups: dict[tuple[str, str], FailureGroup] = {}
    for job, call, error in itertools.chain([first], rows):
        line = first_line(error) or "(no error recorded)"
        group = groups.setdefault((job, error_type(error)), FailureGroup(job, error_type(error)))
        group.calls.append(call)
        group.messages[line] = group.messages.get(line, 0) + 1
    return sorted(groups.values(), key=lambda group: -group.count)


def selected_failures(
    ledger: Ledger, job: str | None = None, of_type: str | None = None
) -> dict[str, set[int]]:
    """Job -> its failed calls (of ``job``, whose error is of type ``of_type``: what ``retry`` selects)."""
    found: dict[str, set[int]] = {}
    for row_job, call, error in _failed_rows(ledger):
        if (job is None or row_job == job) and (of_type is None or error_type(error) == of_type):
            found.setdefault(row_job, set()).add(call)
    return found


# --- one call's output ------------------------------------------------------------------


def job_sizes(ledger: Ledger) -> dict[str, int]:
    """Job name -> number of calls, in plan order."""
    return ledger.jobs()


def call_logs(
    run,
    selected: Iterable[tuple[str, int]] | None = None,
    job: str | None = None,
    failed_only: bool = False,
) -> Iterator[CallLog]:
    """The calls asked for (job, call), else every call of ``job`` (or of the run), in plan order, streamed.

    The parameters come from the run's sweep (the ledger does not store the plan).
    """
    ledger = run.ledger
    if selected is not None:
        found = [ledger.call_record(j, c) for j, c in selected if job is None or j == job]
        records = [
            r for r in found if r is not None and (not failed_only or r.state is CallState.FAILED)
        ]
        params = _params_of(run, {(r.job, r.call) for r in records})
        for record in records:
            yield _call_log(record, params.get((record.job, record.call), {}))
        return
    from .plan import iter_calls

    for spec_job in run.sweep_spec().jobs:
        if job is not None and spec_job.name != job:
            continue
        if not failed_only:
            for planned, record in zip(
                iter_calls(spec_job), ledger.iter_calls(spec_job.name), strict=False
            ):
                yield _call_log(record, planned.params)
            continue
        planned_calls = iter_calls(
            spec_job
        )  # the failed calls and the sweep, both in call order, side by side
        planned = next(planned_calls, None)
        for record in ledger.iter_failed_calls(spec_job.name):
            while planned is not None and planned.index < record.call:
                planned = next(planned_calls, None)
            yield _call_log(
                record,
                planned.params if planned is not None and planned.index == record.call else {},
            )


def _params_of(run, calls: set[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The swept parameters of these calls, regenerated from the run's sweep."""
    from .plan import iter_calls

    found: dict[tuple[str, int], dict] = {}
    for spec_job in run.sweep_spec().jobs:
        indexes = {c for j, c in calls if j == spec_job.name}
        if not indexes:
            continue
        last = max(indexes)
        for planned in iter_calls(spec_job):
            if planned.index in indexes:
                found[(spec_job.name, planned.index)] = planned.params
            if planned.index >= last:
                break
    return found


def _call_log(record: CallRecord, params: dict) -> CallLog:
    from .run_view_records import CallLog

    return CallLog(
        record.job,
        record.call,
        record.state.public,
        record.attempts,
        params,
        record.error,
        record.stdout,
        record.stderr,
        record.traceback or "",
    )


def parse_call_refs(
    refs: Iterable[str], sizes: dict[str, int], job: str | None
) -> list[tuple[str, int]]:
    """``3`` (in the only job, or in ``job``) or ``JOB:3`` -> (job, call); an unknown call is a clear error."""
    found = []
    for ref in refs:
        name, _, index_text = ref.rpartition(":")
        name = name or job
        if not name:
            having = [
                j for j, size in sizes.items() if index_text.isdigit() and int(index_text) < size
            ]
            if len(having) > 1:  # asked only when more than one job has this call
                raise RunError(
                    message=f"call {ref!r} is ambiguous: jobs {', '.join(having)} each have a call {ref}",
                    hint=f"name the job: `--job {having[0]}` or `{having[0]}:{ref}`",
                )
            name = having[0] if having else next(iter(sizes))
        if name not in sizes:
            raise RunError(
                message=f"this run has no job {name!r}", hint=f"its jobs: {', '.join(sizes)}"
            )
        try:
            index = int(index_text)
        except ValueError:
            raise RunError(
                message=f"{ref!r} is not a call number",
                hint="give calls by their index in the results table's `call` column, e.g. 0 or JOB:0",
            ) from None
        if not 0 <= index < sizes[name]:
            raise RunError(
                message=f"job {name!r} has no call {index}",
                hint=f"its calls are numbered 0 to {sizes[name] - 1}",
            )
        found.append((name, index))
    return found
