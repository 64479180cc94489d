"""The run's state on disk: one SQLite database in WAL mode, written as things happen.

The plan is not stored: a job's calls are its sweep's points, numbered
0..n_calls-1, and are regenerated from the snapshotted manifest whenever
they are needed. The ledger records only what happened:

- ``tasks``: every task submitted, with its calls (as ranges), its backend id
  and when it was submitted and finished;
- ``blocks``: the records of succeeded calls, one row per block of records a
  task reported, stored as the runner wrote them (JSON lines, zlib-compressed)
  and parsed only when the results are read;
- ``failures``: per failed call, its attempts so far, whether it waits for a
  retry or failed for good, and the record of its last attempt;
- ``cancelled``: the calls ``cancel`` stopped, as ranges.

A call's state is derived: succeeded if a block holds it, failed if its
failure is final, cancelled if a cancel covered it, submitted if a task in
flight holds it, pending otherwise. Every write is committed before anything
depends on it (a task's records before its records file is removed, a task
before it starts). A killed submitter therefore loses nothing but the calls
that were running, and those are pending again by construction. A succeeded
call is never overwritten and never stored twice.

Reading API (for ``status``, ``logs``, reports): :meth:`Ledger.counts`,
:meth:`Ledger.counts_by_job`, :meth:`Ledger.failed_calls`,
:meth:`Ledger.call_record`, :meth:`Ledger.task_times` and the streaming
:meth:`Ledger.iter_calls`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import weakref
import zlib
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .errors import RunError
from .render.runner import decode_ranges, encode_ranges, expand_ranges
from .type_names import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger_reads import CallWindow, TaskTimes

SCHEMA_VERSION = 2


class CallState(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def in_flight(self) -> bool:
        return self in (CallState.SUBMITTED, CallState.RUNNING)

    @property
    def public(self) -> str:
        """The status the results table shows: in-flight calls are still pending."""
        return CallState.PENDING.value if self.in_flight else self.value


# A job's call states in memory: one byte per call.
PENDING, SUBMITTED, SUCCEEDED, FAILED, CANCELLED, WAITING = range(
    6
)  # WAITING: pending, after a retry backoff
CODE_STATES = (
    CallState.PENDING,
    CallState.SUBMITTED,
    CallState.SUCCEEDED,
    CallState.FAILED,
    CallState.CANCELLED,
    CallState.PENDING,
)
_TO_SUBMITTED = bytes(SUBMITTED if code in (PENDING, WAITING) else code for code in range(256))
_TO_CANCELLED = bytes(
    CANCELLED if code in (PENDING, SUBMITTED, WAITING) else code for code in range(256)
)
_UNFINISHED = re.compile(b"[\x00\x01\x05]+")

# The head of a success record as the runner writes it (json.dumps of its dict, keys in order).
# Blocks whose lines all match are stored without decoding; anything else is parsed line by line.
# Found after a newline (the block is searched with one put before it): a literal start, which the regular
# expression engine skips to, where ``^`` with re.M tried every byte (5x slower, 0.7 µs a record).
_OK_HEAD = re.compile(rb'\n\{"call": (\d+), "ok": true[,}]')


class RecordText:
    """What a call raised and printed, read from its runner record (``self.record``, None before it ran)."""

    record: dict[str, Any] | None

    @property
    def error(self) -> str | None:
        return self.record.get("error") if self.record else None

    @property
    def traceback(self) -> str | None:
        return self.record.get("tb") if self.record else None

    @property
    def stdout(self) -> str:
        return (self.record.get("out") if self.record else None) or ""

    @property
    def stderr(self) -> str:
        return (self.record.get("err") if self.record else None) or ""


@dataclass(frozen=True)
class CallRecord(RecordText):
    """One call as the ledger knows it: its state, attempts, and the record of its last attempt (if any)."""

    job: str
    call: int
    state: CallState
    attempts: int
    record: (
        dict[str, Any] | None
    )  # the runner's record: ok, kind, value, error, tb, out, err, t0, t1

    @property
    def started_at(self) -> float | None:
        return self.record.get("t0") if self.record else None

    @property
    def finished_at(self) -> float | None:
        return self.record.get("t1") if self.record else None


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (job TEXT PRIMARY KEY, job_order INTEGER NOT NULL, n_calls INTEGER NOT NULL);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    backend TEXT NOT NULL,
    external_id TEXT,
    group_id TEXT,
    state TEXT NOT NULL,
    calls TEXT NOT NULL,
    n_calls INTEGER NOT NULL,
    submitted_at REAL,
    finished_at REAL
);
CREATE INDEX tasks_by_state ON tasks (state);
CREATE TABLE blocks (
    block INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    task_id TEXT NOT NULL,
    n_ok INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    ok_calls BLOB,
    records BLOB NOT NULL
);
CREATE INDEX blocks_by_call ON blocks (job, lo);
CREATE TABLE failures (
    job TEXT NOT NULL,
    call INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    final INTEGER NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    PRIMARY KEY (job, call)
) WITHOUT ROWID;
CREATE TABLE cancelled (job TEXT PRIMARY KEY, ranges TEXT NOT NULL);
"""


_OPEN: weakref.WeakSet[Ledger] = weakref.WeakSet()  # the ledgers this process has open


def close_all() -> None:
    """Close every ledger still open: the last connection to a ledger checkpoints its WAL into the file."""
    for ledger in list(_OPEN):
        ledger.close()


class Ledger:
    """A run's ledger. Only ``submit`` creates one (``create=True``); everything else opens an existing one."""

    def __init__(self, path: Path, create: bool = False, read_only: bool = False) -> None:
        self.path = path
        if (
            read_only and not create
        ):  # a directory that cannot be written: nothing can change the file either
            if not path.is_file():
                raise RunError(
                    message=f"the run's ledger {path} is missing",
                    hint="a run directory without its ledger cannot be collected; submit the manifest again",
                )
            # With a -wal file (a submitter was killed), SQLite reads it in read-only mode; without one the
            # database is all in the main file, which nothing can change while the directory is read-only.
            wal = path.with_name(path.name + "-wal").exists()
            self.db = sqlite3.connect(
                f"{path.absolute().as_uri()}?{'mode=ro' if wal else 'immutable=1'}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        elif create:
            if path.exists():
                raise RunError(
                    message=f"{path} already exists", hint="a new run needs a new run directory"
                )
            self.db = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        else:
            try:
                self.db = sqlite3.connect(
                    f"{path.absolute().as_uri()}?mode=rw",
                    uri=True,
                    timeout=30.0,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error:
                raise RunError(
                    message=f"the run's ledger {path} is missing or cannot be opened",
                    hint="a run directory without its ledger cannot be resumed or collected; "
                    "submit the manifest again",
                ) from None
        try:
            if create:
                # A new ledger is no run's until run.json names it, and create_run makes its file durable
                # once, whole, before writing run.json (run_paths.fsync_file): no sync of its own until then
                # (the switch to WAL and the checkpoint at close took 7 syncs, 2-40 ms by the disk's load).
                self.db.execute("PRAGMA synchronous=OFF")
                self.db.execute("PRAGMA journal_mode=WAL")
            elif not read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            if create:
                self.db.executescript(_SCHEMA)
            else:
                self.check_schema_version()
        except RunError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise RunError(
                message=f"the run's ledger {path} is damaged ({exc})",
                hint="it cannot be trusted: submit the manifest again into a new run directory",
            ) from None
        self._in_transaction = False
        self._states: dict[str, bytearray] | None = None
        self._not_before: dict[tuple[str, int], float] = {}
        _OPEN.add(self)

    def close(self) -> None:
        self.db.close()
        _OPEN.discard(self)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, committed write; nested uses join the outer one."""
        if self._in_transaction:
            yield self.db
            return
        if self.db.in_transaction:
            # Left open by a Ctrl-C or SIGTERM that struck between BEGIN and its end (the signal's
            # exception can be raised at any bytecode, even inside the ROLLBACK below): nothing of it
            # was committed, so drop it whole, and what memory holds with it.
            self._roll_back()
        try:
            self._in_transaction = True
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self._roll_back()
            raise
        finally:
            self._in_transaction = False

    def _roll_back(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already (disk full, I/O error): the error to show is the first one
        finally:
            self._states = None  # memory may be ahead of the disk: read it again

    # --- metadata -----------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def check_schema_version(self) -> None:
        """Refuse a ledger this hog-batch cannot read: empty, damaged, or of another format."""
        try:
            found = self.get_meta("schema_version")
        except sqlite3.DatabaseError:
            found = None
        if found is not None and (not isinstance(found, int) or isinstance(found, bool)):
            raise RunError(
                message=f"the run directory is damaged: its ledger {self.path} gives its format as "
                f"{found!r}, not a number",
                hint="it cannot be trusted: submit the manifest again into a new run directory",
            )
        if found is None:
            raise RunError(
                message=f"the run's ledger {self.path} is empty or damaged: it holds no run",
                hint="it cannot be trusted: submit the manifest again into a new run directory",
            )
        if found > SCHEMA_VERSION:
            raise RunError(
                message=f"this run was written by a newer hog-batch (ledger format {found}, this one knows {SCHEMA_VERSION})",
                hint="upgrade hog-batch: pip install -U hog-batch",
            )
        if found < SCHEMA_VERSION:
            raise RunError(
                message=f"this run was written by an older hog-batch (ledger format {found}, this one reads {SCHEMA_VERSION})",
                hint="finish or collect it with the hog-batch version that started it",
            )

    # --- planning ---------------------------------------------------------------------

    def add_jobs(self, jobs: Iterable[tuple[str, int]]) -> None:
        """The run's jobs, in order, and how many calls each has (their calls are not stored)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO jobs VALUES (?, ?, ?)",
                [(name, order, n) for order, (name, n) in enumerate(jobs)],
            )
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                (json.dumps(SCHEMA_VERSION),),
            )

    def jobs(self) -> dict[str, int]:
        """Job name -> number of calls, in plan order."""
        return dict(self.db.execute("SELECT job, n_calls FROM jobs ORDER BY job_order"))

    # --- call states ------------------------------------------------------------------

    def states(self) -> dict[str, bytearray]:
        """Every call's state code (PENDING, SUBMITTED, ...), one byte per call, per job; kept up to date in memory."""
        if self._states is None:
            self._states = self._load_states()
        return self._states

    def _load_states(self) -> dict[str, bytearray]:
        states = {job: bytearray(n) for job, n in self.jobs().items()}
        self._not_before = {}
        for job, call, final, not_before in self.db.execute(
            "SELECT job, call, final, not_before FROM failures"
        ):
            states[job][call] = FAILED if final else WAITING
            if not final:
                self._not_before[(job, call)] = not_before
        for job, calls in self.db.execute("SELECT job, calls FROM tasks WHERE state = 'submitted'"):
            state = states[job]
            for start, stop in decode_ranges(calls):
                state[start:stop] = state[start:stop].translate(_TO_SUBMITTED)
        for job, ranges in self.db.execute("SELECT job, ranges FROM cancelled"):
            state = states[job]
            for start, stop in decode_ranges(ranges):
                state[start:stop] = state[start:stop].translate(_TO_CANCELLED)
        for job, lo, hi, ok_calls in self.db.execute("SELECT job, lo, hi, ok_calls FROM blocks"):
            state = states[job]
            if ok_calls is None:
                state[lo : hi + 1] = bytes([SUCCEEDED]) * (hi + 1 - lo)
            else:
                for call in array("i", ok_calls):
                    state[call] = SUCCEEDED
        return states

    def reload(self) -> None:
        self._states = None

    def ready(self, job: str, call: int, now: float, state: bytearray | None = None) -> bool:
        """Whether the call should run now: pending, or waiting for a retry whose backoff is over."""
        code = (state if state is not None else self.states()[job])[call]
        return code == PENDING or (
            code == WAITING and self._not_before.get((job, call), 0.0) <= now
        )

    def next_retry_at(self) -> float | None:
        """When the first call waiting for a retry may run (None: none waits)."""
        states = self.states()
        times = [t for (job, call), t in self._not_before.items() if states[job][call] == WAITING]
        return min(times) if times else None

    def has_pending(self) -> bool:
        return any(PENDING in state or WAITING in state for state in self.states().values())

    # --- reading ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Calls per state (every CallState is a key)."""
        found = dict.fromkeys((s.value for s in CallState), 0)
        for job_counts in self.counts_by_job().values():
            for key, n in job_counts.items():
                found[key] += n
        return found

    def counts_by_job(self) -> dict[str, dict[str, int]]:
        """Calls per state, per job in plan order."""
        found: dict[str, dict[str, int]] = {}
        for job, state in self.states().items():
            counts = found[job] = dict.fromkeys((s.value for s in CallState), 0)
            for code, call_state in enumerate(CODE_STATES):
                counts[call_state.value] += state.count(code)
        return found

    def attempts_so_far(self, job: str, calls: list[int]) -> dict[int, int]:
        """Call -> the attempts recorded for it (calls never run are left out: none so far)."""
        found: dict[int, int] = {}
        if not self.db.execute("SELECT 1 FROM failures WHERE job = ? LIMIT 1", (job,)).fetchone():
            return found  # nothing has failed: one look, not one per 500 calls
        for start in range(0, len(calls), 500):
            part = calls[start : start + 500]
            found.update(
                self.db.execute(
                    f"SELECT call, attempts FROM failures WHERE job = ? AND call IN ({','.join('?' * len(part))})",
                    (job, *part),
                ).fetchall()
            )
        return found

    def failures(self, limit: int | None = 20) -> list[tuple[str, int, str]]:
        """Failed calls as (job, call, first line of the error), in plan order."""
        return [
            (r.job, r.call, (r.error or "").splitlines()[0] if r.error else "")
            for r in self.failed_calls(limit)
        ]

    def iter_failed_calls(self, job: str) -> Iterator[CallRecord]:
        """The calls of ``job`` that failed for good, in call order, one at a time (a run may have many)."""
        rows = self.db.execute(
            "SELECT call, attempts, record FROM failures WHERE final = 1 AND job = ? ORDER BY call",
            (job,),
        )
        for call, attempts, record in rows:
            yield CallRecord(job, call, CallState.FAILED, attempts, json.loads(record))

    def failed_calls(self, limit: int | None = None) -> list[CallRecord]:
        """Calls that failed for good, in plan order, with their last attempt's error, traceback, stdout, stderr."""
        rows = self.db.execute(
            "SELECT f.job, f.call, f.attempts, f.record FROM failures f JOIN jobs j ON j.job = f.job"
            " WHERE f.final = 1 ORDER BY j.job_order, f.call LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [
            CallRecord(job, call, CallState.FAILED, attempts, json.loads(record))
            for job, call, attempts, record in rows
        ]

    def call_record(self, job: str, call: int) -> CallRecord | None:
        """One call: its state, attempts and last record; None if the run has no such call."""
        state = self.states().get(job)
        if state is None or not 0 <= call < len(state):
            return None
        code = state[call]
        failure = self.db.execute(
            "SELECT attempts, record FROM failures WHERE job = ? AND call = ?", (job, call)
        ).fetchone()
        attempts = failure[0] if failure else 0
        record = json.loads(failure[1]) if failure else None
        if code == SUCCEEDED:
            attempts += 1
            for ok_calls, records in self.db.execute(
                "SELECT ok_calls, records FROM blocks WHERE job = ? AND lo <= ? AND hi >= ?",
                (job, call, call),
            ):
                if ok_calls is None or call in array("i", ok_calls):
                    record = next(r for c, r in _success_records(records, self.path) if c == call)
                    break
        return CallRecord(job, call, CODE_STATES[code], attempts, record)

    def task_times(self) -> list[TaskTimes]:
        """Every task: its job, state, number of calls, and when it was submitted and finished (epoch seconds)."""
        from .ledger_reads import TaskTimes

        return [
            TaskTimes(*row)
            for row in self.db.execute(
                "SELECT task_id, job, state, n_calls, submitted_at, finished_at FROM tasks ORDER BY submitted_at, task_id"
            )
        ]

    def iter_windows(
        self, job: str, window: int = 20_000, columnar: bool = False
    ) -> Iterator[CallWindow]:
        """The calls of ``job`` in plan order, a window at a time: memory is bounded by ``window`` calls.

        With ``columnar``, a window whose calls all succeeded with short records (``success_columns``) comes
        with its records as one Arrow table (``CallWindow.columns``) and no dicts.
        """
        from .ledger_reads import CallWindow, StoredBlock

        state = self.states()[job]
        spans = sorted(
            self.db.execute("SELECT lo, hi, block FROM blocks WHERE job = ?", (job,)).fetchall()
        )
        parsed: dict[int, StoredBlock] = {}  # block -> its success records, while needed
        next_span = 0
        all_succeeded = bytes([SUCCEEDED]) * window
        for start in range(0, len(state), window):
            stop = min(start + window, len(state))
            while next_span < len(spans) and spans[next_span][0] < stop:
                lo, hi, block = spans[next_span]
                (records,) = self.db.execute(
                    "SELECT records FROM blocks WHERE block = ?", (block,)
                ).fetchone()
                parsed[block] = StoredBlock(hi, records, self.path, columnar)
                next_span += 1
            needed = [stored for stored in parsed.values() if stored.hi >= start]
            states = bytes(state[start:stop])
            failures = {
                call: (attempts, json.loads(record))
                for call, attempts, record in self.db.execute(
                    "SELECT call, attempts, record FROM failures WHERE job = ? AND call >= ? AND call < ?",
                    (job, start, stop),
                )
            }
            table = None
            if (
                columnar
                and needed
                and not failures
                and states == all_succeeded[: stop - start]
                and all(stored.table is not None for stored in needed)
            ):
                from .success_columns import window_table

                table = window_table([stored.table for stored in needed], start, stop)
            successes: dict[int, dict] = {}
            if table is None:
                for stored in needed:
                    records = stored.records()
                    if stored.hi < stop and (not records or min(records) >= start):
                        successes.update(records)
                    else:
                        successes.update((c, r) for c, r in records.items() if start <= c < stop)
            for block in [b for b, stored in parsed.items() if stored.hi < stop]:
                del parsed[block]
            yield CallWindow(job, start, stop, states, successes, failures, table)

    def iter_calls(self, job: str) -> Iterator[CallRecord]:
        """Every call of ``job`` in plan order, with its state, attempts and last record (streamed)."""
        for window in self.iter_windows(job):
            yield from window.records()

    # --- tasks --------------------------------------------------------------------------

    def mark_submitted(self, tasks: list[tuple[str, str, list[int]]], backend: str) -> None:
        """These tasks (task_id, job, calls) are about to start: committed first, so their calls are in flight."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO tasks VALUES (?, ?, ?, NULL, NULL, 'submitted', ?, ?, ?, NULL)",
                [
                    (task_id, job, backend, encode_ranges(calls), len(calls), now)
                    for task_id, job, calls in tasks
                ],
            )
        states = self.states()
        for _, job, calls in tasks:
            state = states[job]
            for start, stop in decode_ranges(encode_ranges(calls)):
                state[start:stop] = state[start:stop].translate(_TO_SUBMITTED)

    def set_external_ids(self, pairs: list[tuple[str, str]], group_id: str | None = None) -> None:
        """Backend ids of tasks just accepted, in one transaction (and the backend's group id)."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE tasks SET external_id = ?, group_id = COALESCE(?, group_id) WHERE task_id = ?",
                [(external_id, group_id, task_id) for task_id, external_id in pairs],
            )
            if group_id is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('group_id', ?)", (json.dumps(group_id),)
                )

    def tasks_in_flight(self) -> list[tuple[str, str, str | None, list[int]]]:
        """Tasks submitted and not finished: (task_id, job, backend id, calls)."""
        rows = self.db.execute(
            "SELECT task_id, job, external_id, calls FROM tasks WHERE state = 'submitted' ORDER BY submitted_at"
        )
        return [
            (task_id, job, external_id, expand_ranges(calls))
            for task_id, job, external_id, calls in rows
        ]

    def finish_task(self, task_id: str, state: str = "done") -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE tasks SET state = ?, finished_at = ? WHERE task_id = ?",
                (state, time.time(), task_id),
            )

    def unreported(self, job: str, calls: list[int]) -> list[int]:
        """Those of a task's calls that are still in flight: it has said nothing about them."""
        state = self.states()[job]
        return [call for call in calls if state[call] == SUBMITTED]

    # --- results ------------------------------------------------------------------------

    def store_records(
        self, job: str, task_id: str, lines: bytes, retries: dict[str, int], backoff_s: float
    ) -> None:
        """A block of a task's records (JSON lines, as the runner wrote them), in one transaction.

        Successes are stored as the block itself, not decoded. Failures with
        retries left wait for their backoff; deferred calls are pending again
        with no attempt counted. A call that already succeeded keeps its result.
        """
        if not lines:
            return
        if not lines.endswith(b"\n"):
            lines += b"\n"
        state = self.states()[job]
        ok_calls = list(map(int, _OK_HEAD.findall(b"\n" + lines)))
        other: list[dict] = []
        n = len(ok_calls)
        if (
            n != lines.count(b"\n")
            or not n
            or ok_calls != list(range(ok_calls[0], ok_calls[0] + n))
            or SUCCEEDED in state[ok_calls[0] : ok_calls[0] + n]
        ):
            lines, ok_calls, other = _sort_block(lines, state)
            n = len(ok_calls)
        with self.transaction() as db:
            if n:
                lo, hi = min(ok_calls), max(ok_calls)
                contiguous = hi - lo + 1 == n
                db.execute(
                    "INSERT INTO blocks (job, task_id, n_ok, lo, hi, ok_calls, records) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        job,
                        task_id,
                        n,
                        lo,
                        hi,
                        None if contiguous else array("i", ok_calls).tobytes(),
                        zlib.compress(lines, 1),
                    ),
                )
            for record in other:
                self._store_other(db, job, task_id, record, state, retries, backoff_s)
        if n:
            if contiguous:
                state[lo : hi + 1] = bytes([SUCCEEDED]) * n
            else:
                for call in ok_calls:
                    state[call] = SUCCEEDED

    def store_record_dicts(
        self, job: str, task_id: str, records: list[dict], retries: dict[str, int], backoff_s: float
    ) -> None:
        """Records already decoded (a remote backend's, the submitter's own): stored like a block of lines."""
        self.store_records(
            job,
            task_id,
            b"".join(json.dumps(r).encode() + b"\n" for r in records),
            retries,
            backoff_s,
        )

    def _store_other(
        self,
        db: sqlite3.Connection,
        job: str,
        task_id: str,
        record: dict,
        state: bytearray,
        retries: dict[str, int],
        backoff_s: float,
    ) -> None:
        """A failure (or a deferral): one attempt more, unless this task's failure of the call is stored already
        (a records file read again after a crash holds records that reached the ledger before it)."""
        call = int(record["call"])
        if not 0 <= call < len(state) or state[call] == SUCCEEDED:
            return
        if record.get("deferred"):  # the task could not run it: pending again, no attempt counted
            if state[call] == SUBMITTED:
                state[call] = PENDING
            return
        row = db.execute(
            "SELECT attempts, json_extract(record, '$.retry_base'), json_extract(record, '$.task'), final "
            "FROM failures WHERE job = ? AND call = ?",
            (job, call),
        ).fetchone()
        if row and row[2] == task_id:
            if state[call] == SUBMITTED:
                state[call] = FAILED if row[3] else WAITING
            return
        attempts = (row[0] if row else 0) + 1
        base = (
            (row[1] or 0) if row else 0
        )  # attempts made before the last `retry`, which grants `retries` anew
        record = {**record, "task": task_id}
        if base:
            record["retry_base"] = base
        most = retries.get(job, 0)
        retry = attempts - base <= most and _retried(most, record)
        now = time.time()
        not_before = min(now + backoff_s * 2 ** (attempts - base - 1), now + 300) if retry else 0.0
        db.execute(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
            (job, call, attempts, 0 if retry else 1, not_before, json.dumps(record)),
        )
        state[call] = WAITING if retry else FAILED
        if retry:
            self._not_before[(job, call)] = not_before

    def requeue(self, job: str, calls: Iterable[int]) -> None:
        """Calls a task will not run (it died before them) are pending again; nothing to write."""
        state = self.states()[job]
        for call in calls:
            if state[call] == SUBMITTED:
                state[call] = PENDING

    def requeue_in_flight(self, keep_tasks: Iterable[str] = ()) -> int:
        """After a crash of the submitter: its tasks are abandoned (their unreported calls pending), but those still followed."""
        keep = list(keep_tasks)
        marks = ",".join("?" * len(keep))
        with self.transaction() as db:
            before = self.counts()["submitted"]
            db.execute(
                f"UPDATE tasks SET state = 'abandoned', finished_at = COALESCE(finished_at, ?) WHERE state = 'submitted'"
                f"{' AND task_id NOT IN (' + marks + ')' if keep else ''}",
                [time.time(), *keep],
            )
            self.reload()
            return before - self.counts()["submitted"]

    def reset_failed(self, job: str | None = None, error_type: str | None = None) -> int:
        """Failed calls are pending again: all of them, or those of ``job`` whose error is of ``error_type``
        (``ValueError``: the word before the error's first colon). ``attempts`` goes on counting every run of
        the call; the retry budget (``retries``) starts again from the attempts made so far (``retry_base``)."""
        where, values = ["final = 1"], []
        if job is not None:
            where.append("job = ?")
            values.append(job)
        if error_type is not None:
            where.append(
                "(json_extract(record, '$.error') = ? OR substr(json_extract(record, '$.error'), 1, ?) = ?)"
            )
            values += [error_type, len(error_type) + 1, f"{error_type}:"]
        with self.transaction() as db:
            n = db.execute(
                "UPDATE failures SET final = 0, not_before = 0, record = json_set(record, '$.retry_base', attempts) "
                f"WHERE {' AND '.join(where)}",
                values,
            ).rowcount
        self.reload()
        return n

    def waiting_attempts(self, job: str) -> dict[int, int]:
        """Call -> attempts it made since the last ``retry``, for the job's calls that wait for another."""
        return {
            call: attempts - (base or 0)
            for call, attempts, base in self.db.execute(
                "SELECT call, attempts, json_extract(record, '$.retry_base') FROM failures WHERE job = ? AND final = 0",
                (job,),
            )
        }

    def reset_cancelled(self) -> int:
        """Cancelled calls are pending again."""
        n = self.counts()["cancelled"]
        with self.transaction() as db:
            db.execute("DELETE FROM cancelled")
            db.execute("UPDATE failures SET not_before = 0 WHERE final = 0")
        self.reload()
        return n

    def cancel_unfinished(self) -> int:
        """Every call not finished (pending, waiting or in flight) is cancelled."""
        states = self.states()
        with self.transaction() as db:
            db.execute(
                "UPDATE tasks SET state = 'cancelled', finished_at = ? WHERE state = 'submitted'",
                (time.time(),),
            )
            total = 0
            for job, state in states.items():
                spans = [(m.start(), m.end()) for m in _UNFINISHED.finditer(state)]
                total += sum(stop - start for start, stop in spans)
                if spans:
                    known = db.execute(
                        "SELECT ranges FROM cancelled WHERE job = ?", (job,)
                    ).fetchone()
                    text = ",".join(f"{start}-{stop - 1}" for start, stop in spans)
                    db.execute(
                        "INSERT OR REPLACE INTO cancelled VALUES (?, ?)",
                        (job, f"{known[0]},{text}" if known else text),
                    )
        self.reload()
        return total

    def succeeded_records(self, job: str) -> Iterator[tuple[int, dict]]:
        """(call, record) of every succeeded call of ``job``, in no particular order."""
        for (records,) in self.db.execute("SELECT records FROM blocks WHERE job = ?", (job,)):
            yield from _success_records(records, self.path)


def _retried(policy: int, record: dict) -> bool:
    """Whether the job's retry policy (``retry_policy.RetryPolicy``: ``on``) retries this error at all."""
    on = getattr(policy, "on", None)
    return on is None or (record.get("error") or "").split(":", 1)[0].strip() in on


def _success_records(compressed: bytes, path: Path | None = None) -> Iterator[tuple[int, dict]]:
    """The success records of one stored block (zlib-compressed JSON lines), decoded in one go."""
    yield from success_records_in(block_text(compressed, path))


def block_text(compressed: bytes, path: Path | None = None) -> bytes:
    """One stored block's JSON lines, or the run directory is damaged."""
    try:
        return zlib.decompress(compressed)
    except (zlib.error, TypeError) as exc:
        raise RunError(
            message=f"the run directory is damaged: a block of results in its ledger {path} cannot be "
            f"decompressed ({exc})",
            hint="its results cannot be trusted: submit the manifest again into a new run directory",
        ) from None


def success_records_in(data: bytes) -> Iterator[tuple[int, dict]]:
    """(call, record) of the success records in a block's JSON lines: all at once, or line by line where a
    line is not a record."""
    try:
        records = json.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
        for record in records:
            if record.get("ok") is True:
                yield record["call"], record
        return
    except (ValueError, AttributeError, KeyError):
        pass
    for line in data.splitlines():
        if line.startswith(b"{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("ok") is True:
                yield int(record["call"]), record


def _sort_block(lines: bytes, state: bytearray) -> tuple[bytes, list[int], list[dict]]:
    """The slow path: decode every line; keep new successes as lines, hand back the other records."""
    kept: list[bytes] = []
    ok_calls: list[int] = []
    other: list[dict] = []
    seen: set[int] = set()
    for line in lines.splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            record = json.loads(line)
            call = int(record["call"])
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(record, dict) or not 0 <= call < len(state):
            continue
        if record.get("ok") is True:
            if state[call] == SUCCEEDED or call in seen:
                continue
            seen.add(call)
            ok_calls.append(call)
            kept.append(json.dumps(record).encode())
        else:
            other.append(record)
    return b"".join(line + b"\n" for line in kept), ok_calls, other


__all__ = [
    "CODE_STATES",
    "CallRecord",
    "CallState",
    "Ledger",
    "SCHEMA_VERSION",
    "decode_ranges",
    "encode_ranges",
    "expand_ranges",
]
