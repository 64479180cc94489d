"""The one description of a task's records: what the runner writes for each call, read by the host.

The runner (``runner.py``, shipped alone inside every task, stdlib only) cannot
import this module; ``tests/test_record_schema.py`` runs the shipped runner and
holds every record it writes to these shapes, and docs/running.md tables them.
A record is one JSON object on one line. Its shape tells its kind:

- **succeeded, short**: a call that returned JSON data and printed nothing;
- **finished**: any other call that ran (``ok`` says whether it returned);
- **finished with files**: the same, for a call run in its own directory (``workdir: call``),
  with ``files``, what it left there;
- **lost**: a call whose worker died under it, written by the supervisor;
- **deferred**: a call this task will not run; the host runs it in another task,
  with no attempt counted.

The host may add ``script_sha256`` to a record it keeps (a call taken from an
earlier run by ``--reuse``, one kept by ``debug --record``): the script that
produced it, when not the run's version at the time (``script_versions``).
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
TEXT_OR_NONE = (str, type(None))

# Field -> the Python types its JSON value may decode to.
SHORT_SUCCESS: dict[str, tuple[type, ...]] = {
    "call": (int,),  # the call's index in its job
    "ok": (bool,),  # always true here
    "kind": (str,),  # always "json" here
    "value": (object,),  # the returned value, as JSON data
    "t0": NUMBER,  # when the call started (Unix seconds, to the microsecond)
    "t1": NUMBER,  # when it ended
    "cpu_s": NUMBER,  # CPU seconds it used: its own, and its waited-for children's (getrusage)
    "max_rss_mib": NUMBER,  # peak resident memory, MiB: the call's own (Linux, see runner.py), else its worker's so far
}
FINISHED: dict[str, tuple[type, ...]] = {
    **SHORT_SUCCESS,
    "kind": (str, type(None)),  # "json", "pickle", or null when the call raised
    "error": TEXT_OR_NONE,  # "ExceptionType: message" when it raised
    "tb": TEXT_OR_NONE,  # its traceback
    "out": (str,),  # what the call printed on stdout (the tail kept)
    "err": (str,),  # and on stderr
}
# Always true: the runner saw the worker die. Its CPU time and memory died with the worker.
LOST: dict[str, tuple[type, ...]] = {
    **{k: t for k, t in FINISHED.items() if k not in ("cpu_s", "max_rss_mib")},
    "lost": (bool,),
}
# workdir: call: a finished call with what it left in its own directory (paths relative to it; "..." past 200)
FINISHED_WITH_FILES: dict[str, tuple[type, ...]] = {**FINISHED, "files": (list,)}
DEFERRED: dict[str, tuple[type, ...]] = {
    "call": (int,),
    "deferred": (bool,),  # always true
    "reason": (str,),  # why this task did not run it (a walltime, the output budget, a stop)
}
SHAPES = {
    "succeeded-short": SHORT_SUCCESS,
    "finished": FINISHED,
    "finished-with-files": FINISHED_WITH_FILES,
    "lost": LOST,
    "deferred": DEFERRED,
}


def shape_of(record: dict[str, Any]) -> str:
    """Which shape a record has by its keys, or "unknown"."""
    keys = set(record)
    for name, fields in SHAPES.items():
        if keys == set(fields):
            return name
    return "unknown"


def problems(record: dict[str, Any]) -> list[str]:
    """What makes ``record`` differ from its shape; empty for a record the host reads as written."""
    name = shape_of(record)
    if name == "unknown":
        return [f"keys {sorted(record)} match no record shape ({', '.join(SHAPES)})"]
    found = []
    for field, types in SHAPES[name].items():
        value = record[field]
        if object not in types and (
            not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        ):
            found.append(
                f"{name}: {field} is {type(value).__name__}, not {'/'.join(t.__name__ for t in types)}"
            )
    if name == "succeeded-short" and (record["ok"] is not True or record["kind"] != "json"):
        found.append("succeeded-short: ok must be true and kind 'json'")
    if name in ("lost", "deferred") and record[name] is not True:
        found.append(f"{name}: {name} must be true")
    return found
