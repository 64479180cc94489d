"""The run's state on disk: one SQLite database in WAL mode, written as things happen.

Every transition is committed before anything depends on it: calls are
recorded as planned before the first task starts, a task's calls are marked
submitted (with the backend's id for the task) before the submitter moves on,
and each result is committed as it arrives. A killed submitter therefore
loses nothing but the calls that were running, which ``resume`` runs again.
A succeeded call is never overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


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


@dataclass
class CallOutcome:
    """One finished attempt of one call, as a task reported it."""

    job: str
    call: int
    ok: bool
    result_kind: str | None = None  # json | pickle
    result: str | None = None  # JSON text, or base64 pickle
    result_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    stdout: str = ""
    stderr: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    machinery: bool = False  # the machinery failed (killed process, environment build), not the user's code


@dataclass(frozen=True)
class CallRow:
    job: str
    call: int
    state: CallState
    attempts: int
    not_before: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    job TEXT NOT NULL,
    call INTEGER NOT NULL,
    job_order INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    call_key TEXT,
    task_id TEXT,
    result_kind TEXT,
    result TEXT,
    result_type TEXT,
    error TEXT,
    traceback TEXT,
    stdout TEXT,
    stderr TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (job, call)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state);
CREATE INDEX IF NOT EXISTS calls_by_key ON calls (call_key);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    backend TEXT NOT NULL,
    external_id TEXT,
    group_id TEXT,
    state TEXT NOT NULL,
    calls TEXT NOT NULL,
    submitted_at REAL,
    finished_at REAL
);
"""


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._in_transaction = False

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self._in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    # --- metadata -----------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def check_schema_version(self) -> None:
        """Refuse a ledger written by a newer hog-batch, whose format this one may not know."""
        found = self.get_meta("schema_version", SCHEMA_VERSION)
        if found > SCHEMA_VERSION:
            from .errors import RunError

            raise RunError(message=f"this run was written by a newer hog-batch (ledger format {found}, this one knows {SCHEMA_VERSION})",
                           hint="upgrade hog-batch: pip install -U hog-batch")

    # --- planning ---------------------------------------------------------------------

    def add_calls(self, rows: Iterable[tuple[str, int, int, str, str]], batch_size: int = 20_000) -> int:
        """Record planned calls: (job, call, job_order, params JSON, call key). Existing calls are kept."""
        count = 0
        batch: list[tuple[str, int, int, str, str]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                count += self._insert_calls(batch)
                batch = []
        if batch:
            count += self._insert_calls(batch)
        return count

    def _insert_calls(self, batch: list[tuple[str, int, int, str, str]]) -> int:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO calls (job, call, job_order, state, params, call_key) VALUES (?, ?, ?, 'pending', ?, ?)",
                batch,
            )
        return len(batch)

    # --- reading state ----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys((s.value for s in CallState), 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM calls GROUP BY state"):
            found[state] = n
        return found

    def counts_by_job(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for job, state, n in self.db.execute("SELECT job, state, COUNT(*) FROM calls GROUP BY job, state ORDER BY MIN(job_order)"):
            found.setdefault(job, dict.fromkeys((s.value for s in CallState), 0))[state] = n
        return found

    def calls_in(self, states: Iterable[CallState], job: str | None = None) -> list[CallRow]:
        names = [s.value for s in states]
        marks = ",".join("?" * len(names))
        query = f"SELECT job, call, state, attempts, not_before FROM calls WHERE state IN ({marks})"
        params: list[Any] = names
        if job is not None:
            query += " AND job = ?"
            params = [*names, job]
        query += " ORDER BY job_order, call"
        return [CallRow(j, c, CallState(s), a, nb) for j, c, s, a, nb in self.db.execute(query, params)]

    def failures(self, limit: int = 20) -> list[tuple[str, int, str]]:
        rows = self.db.execute(
            "SELECT job, call, COALESCE(error, '') FROM calls WHERE state = 'failed' ORDER BY job_order, call LIMIT ?", (limit,)
        )
        return [(job, call, error.splitlines()[0] if error else "") for job, call, error in rows]

    def iter_result_rows(self) -> Iterator[tuple]:
        yield from self.db.execute(
            "SELECT job, call, params, state, result_kind, result, result_type, error, traceback, stdout, stderr,"
            " attempts, started_at, finished_at FROM calls ORDER BY job_order, call"
        )

    def succeeded_by_key(self, keys: list[str]) -> dict[str, tuple]:
        found = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT call_key, result_kind, result, result_type, stdout, stderr, started_at, finished_at"
                f" FROM calls WHERE state = 'succeeded' AND call_key IN ({marks})",
                part,
            ):
                found[row[0]] = row[1:]
        return found

    # --- transitions ------------------------------------------------------------------

    def mark_submitted(self, tasks: list[tuple[str, str, list[int]]], backend: str) -> None:
        """These tasks (task_id, job, calls) exist now: their calls are in flight and attempted once more."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, NULL, NULL, 'submitted', ?, ?, NULL)",
                           [(task_id, job, backend, json.dumps(calls), now) for task_id, job, calls in tasks])
            db.executemany(
                "UPDATE calls SET state = 'submitted', task_id = ?, attempts = attempts + 1 WHERE job = ? AND call = ? AND state != 'succeeded'",
                [(task_id, job, call) for task_id, job, calls in tasks for call in calls],
            )

    def set_external_ids(self, pairs: list[tuple[str, str]], group_id: str | None = None) -> None:
        """Backend ids of tasks just accepted, in one transaction (and the backend's group id)."""
        with self.transaction() as db:
            db.executemany("UPDATE tasks SET external_id = ?, group_id = COALESCE(?, group_id) WHERE task_id = ?",
                           [(external_id, group_id, task_id) for task_id, external_id in pairs])
            if group_id is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('group_id', ?)", (json.dumps(group_id),))

    def tasks_in_flight(self) -> list[tuple[str, str, str | None, list[int]]]:
        rows = self.db.execute("SELECT task_id, job, external_id, calls FROM tasks WHERE state = 'submitted' ORDER BY submitted_at")
        return [(task_id, job, external_id, json.loads(calls)) for task_id, job, external_id, calls in rows]

    def finish_task(self, task_id: str, state: str = "done") -> None:
        with self.transaction() as db:
            db.execute("UPDATE tasks SET state = ?, finished_at = ? WHERE task_id = ?", (state, time.time(), task_id))

    def record(self, outcomes: Iterable[CallOutcome], retries: dict[str, int], backoff_s: float) -> list[CallOutcome]:
        """Store finished attempts in one transaction; failures with retries left go back to pending.

        Returns the outcomes that were final (not retried). A result for a call
        that already succeeded is ignored: a succeeded call is never overwritten.
        """
        final: list[CallOutcome] = []
        now = time.time()
        outcomes = list(outcomes)
        succeeded = [o for o in outcomes if o.ok]
        with self.transaction() as db:
            # Successes need no decision: one statement for all of them.
            db.executemany(
                "UPDATE calls SET state = 'succeeded', attempts = MAX(attempts, 1), not_before = 0, result_kind = ?,"
                " result = ?, result_type = ?, error = NULL, traceback = NULL, stdout = ?, stderr = ?, started_at = ?,"
                " finished_at = ? WHERE job = ? AND call = ? AND state != 'succeeded'",
                [(o.result_kind, o.result, o.result_type, o.stdout, o.stderr, o.started_at, o.finished_at, o.job, o.call)
                 for o in succeeded],
            )
            final += succeeded
            for o in outcomes:
                if o.ok:
                    continue
                row = db.execute("SELECT state, attempts FROM calls WHERE job = ? AND call = ?", (o.job, o.call)).fetchone()
                if row is None or row[0] == CallState.SUCCEEDED.value:
                    continue
                attempts = max(row[1], 1)
                retry = not o.ok and attempts <= retries.get(o.job, 0)
                state = CallState.SUCCEEDED if o.ok else (CallState.PENDING if retry else CallState.FAILED)
                not_before = now + backoff_s * 2 ** (attempts - 1) if retry else 0
                db.execute(
                    "UPDATE calls SET state = ?, attempts = ?, not_before = ?, result_kind = ?, result = ?, result_type = ?,"
                    " error = ?, traceback = ?, stdout = ?, stderr = ?, started_at = ?, finished_at = ?"
                    " WHERE job = ? AND call = ?",
                    (state.value, attempts, min(not_before, now + 300), o.result_kind, o.result, o.result_type, o.error,
                     o.traceback, o.stdout, o.stderr, o.started_at, o.finished_at, o.job, o.call),
                )
                if not retry:
                    final.append(o)
        return final

    def requeue(self, job: str, calls: Iterable[int], count_attempt: bool = False) -> None:
        """Calls that did not run (their task died before them) go back to pending."""
        delta = 0 if count_attempt else 1
        with self.transaction() as db:
            db.executemany(
                "UPDATE calls SET state = 'pending', attempts = MAX(attempts - ?, 0) WHERE job = ? AND call = ? AND state IN ('submitted', 'running')",
                [(delta, job, call) for call in calls],
            )

    def requeue_in_flight(self, keep_tasks: Iterable[str] = ()) -> int:
        """After a crash of the submitter: calls it had in flight are pending again, but for tasks still followed."""
        keep = list(keep_tasks)
        marks = ",".join("?" * len(keep))
        spared = f" AND (task_id IS NULL OR task_id NOT IN ({marks}))" if keep else ""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE calls SET state = 'pending', attempts = MAX(attempts - 1, 0)"
                f" WHERE state IN ('submitted', 'running'){spared}", keep)
            db.execute(f"UPDATE tasks SET state = 'abandoned' WHERE state = 'submitted'"
                       f"{' AND task_id NOT IN (' + marks + ')' if keep else ''}", keep)
            return cursor.rowcount

    def reset_failed(self) -> int:
        with self.transaction() as db:
            return db.execute("UPDATE calls SET state = 'pending', attempts = 0, not_before = 0 WHERE state = 'failed'").rowcount

    def reset_cancelled(self) -> int:
        with self.transaction() as db:
            return db.execute("UPDATE calls SET state = 'pending', not_before = 0 WHERE state = 'cancelled'").rowcount

    def cancel_unfinished(self) -> int:
        with self.transaction() as db:
            db.execute("UPDATE tasks SET state = 'cancelled' WHERE state = 'submitted'")
            return db.execute(
                "UPDATE calls SET state = 'cancelled' WHERE state IN ('pending', 'submitted', 'running')"
            ).rowcount

    def reuse(self, job: str, call: int, found: tuple) -> None:
        kind, result, result_type, stdout, stderr, started_at, finished_at = found
        with self.transaction() as db:
            db.execute(
                "UPDATE calls SET state = 'succeeded', result_kind = ?, result = ?, result_type = ?, stdout = ?, stderr = ?,"
                " started_at = ?, finished_at = ?, error = NULL, traceback = NULL WHERE job = ? AND call = ? AND state != 'succeeded'",
                (kind, result, result_type, stdout, stderr, started_at, finished_at, job, call),
            )
