"""The ledger on its own: a write is whole or absent, whatever interrupts it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from groundhog_batch.ledger import Ledger


class InterruptedConnection:
    """The ledger's SQLite connection, with a Ctrl-C (KeyboardInterrupt, as the SIGTERM handler raises too)
    arriving just after or just before one statement: where a real signal can strike, made repeatable."""

    def __init__(self, db: sqlite3.Connection, after: str | None = None, before: str | None = None):
        self.db, self.after, self.before = db, after, before

    def execute(self, sql: str, *args):
        if self.before and sql.startswith(self.before):
            self.before = None
            raise KeyboardInterrupt
        cursor = self.db.execute(sql, *args)
        if self.after and sql.startswith(self.after):
            self.after = None
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name):
        return getattr(self.db, name)


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger(tmp_path / "state.sqlite", create=True)
    yield opened
    opened.close()


def reopened_meta(ledger, key):
    """What another process reading the file finds: only what was committed."""
    other = sqlite3.connect(ledger.path)
    try:
        row = other.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None
    finally:
        other.close()


def test_a_write_interrupted_just_after_begin_is_absent_and_the_next_write_works(ledger):
    real = ledger.db
    ledger.db = InterruptedConnection(real, after="BEGIN")
    with pytest.raises(KeyboardInterrupt):
        ledger.set_meta("lost", 1)
    ledger.db = real
    ledger.set_meta("kept", 2)  # was: "cannot start a transaction within a transaction"
    assert reopened_meta(ledger, "lost") is None and reopened_meta(ledger, "kept") == 2


def test_a_write_whose_rollback_is_interrupted_too_is_absent_and_the_next_write_works(ledger):
    real = ledger.db
    ledger.add_jobs([("job", 3)])
    ledger.db = InterruptedConnection(real, before="ROLLBACK")
    with pytest.raises(KeyboardInterrupt):
        with ledger.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('lost', '1')")
            raise KeyboardInterrupt  # the first Ctrl-C; the second strikes in the rollback
    assert real.in_transaction  # left open: only the next transaction can close it
    ledger.db = real
    ledger.set_meta("kept", 2)
    assert reopened_meta(ledger, "lost") is None and reopened_meta(ledger, "kept") == 2
    assert ledger.counts()["pending"] == 3


def test_a_write_interrupted_after_commit_is_kept(ledger):
    real = ledger.db
    ledger.db = InterruptedConnection(real, after="COMMIT")
    with pytest.raises(KeyboardInterrupt):
        ledger.set_meta("committed", 1)
    ledger.db = real
    assert not real.in_transaction and reopened_meta(ledger, "committed") == 1


def test_nested_transactions_join_the_outer_one_and_fail_with_it(ledger):
    with pytest.raises(RuntimeError):
        with ledger.transaction():
            ledger.set_meta("inner", 1)
            raise RuntimeError("the outer write fails")
    assert reopened_meta(ledger, "inner") is None
    with ledger.transaction():
        ledger.set_meta("inner", 1)
    assert reopened_meta(ledger, "inner") == 1
