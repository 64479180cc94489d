"""The results table's own columns: the names a swept parameter can never take.

One row of the table is one call; its swept parameters sit beside these
columns under their own names. A parameter named ``status`` or ``result``
would give the table two columns of one name (or overwrite the call's
status), so :func:`reserved` is checked when a manifest is validated, and
:mod:`groundhog_batch.results` builds its columns from the same lists.
"""

from __future__ import annotations

RESULT = "result"
RESULT_KEY_PREFIX = "result."  # result.KEY: one column per key of a dict result
TEXT_COLUMNS = ("error", "traceback", "stdout", "stderr")
TIME_COLUMNS = ("started_at", "finished_at")

# Every column the table has besides the swept parameters (and result.KEY), including
# those a table may gain: the call's resources, the script version, the files it wrote.
BOOKKEEPING_COLUMNS = (
    "job",
    "call",
    "status",
    RESULT,
    *TEXT_COLUMNS,
    "attempts",
    "duration_s",
    *TIME_COLUMNS,
    "cpu_s",
    "max_rss_mib",
    "script_sha256",
    "files",
)


MEANING = {
    "job": "the job's name",
    "call": "the call's index",
    "status": "the call's state",
    RESULT: "the returned value",
    "error": "the call's error",
    "traceback": "the call's traceback",
    "stdout": "what the call printed",
    "stderr": "what the call printed to stderr",
    "attempts": "how often the call ran",
    "duration_s": "the call's duration",
    "started_at": "when the call started",
    "finished_at": "when the call finished",
    "cpu_s": "the call's CPU time",
    "max_rss_mib": "the call's peak memory",
    "script_sha256": "the script version",
    "files": "the files the call wrote",
}


def meaning(name: str) -> str:
    """What the table's column ``name`` holds, in a few words."""
    return MEANING.get(name, f"key {name[len(RESULT_KEY_PREFIX) :]!r} of a dict result")


def reserved(name: str) -> bool:
    """Whether a swept parameter called ``name`` would collide with a column of the results table."""
    return name in BOOKKEEPING_COLUMNS or name.startswith(RESULT_KEY_PREFIX)


def reserved_names_text() -> str:
    """The reserved names, for an error's hint."""
    return ", ".join(BOOKKEEPING_COLUMNS) + f", {RESULT_KEY_PREFIX}*"
