"""The payload a task carries in, and the records it prints back.

A payload is two base64 lines: a JSON header (function, call indices as ranges, limits),
which the runner's supervisor reads without unpickling anything, and a pickle
of the arguments, which only the worker (in the user's environment) loads.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass

from ..type_names import Any
from .runner import DELIMITER, clean_records, encode_ranges, unframe

PICKLE_PROTOCOL = 4  # readable by every Python a task may run on (3.8+)


@dataclass(frozen=True)
class TaskPayload:
    function: str
    call_indices: list[int]
    swept_kwargs: list[dict[str, Any]]
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_s: float | None = None
    max_output_bytes: int = 2 * 1024 * 1024
    max_result_bytes: int = 0  # 0: no limit
    walltime_s: float | None = (
        None  # the whole task; past it the runner kills its calls and exits 124
    )
    max_stdout_bytes: int = (
        0  # the task's records; calls that would not fit are deferred (0: no limit)
    )
    # where each call is (HOG_BATCH_RUN_DIR, _JOB, _CALL, _ATTEMPT) and, with workdir: call, its directory's parent
    context: dict[str, Any] | None = None
    memory_mib: float | None = None  # each call's memory limit (the worker's RLIMIT_AS)
    # instead of swept_kwargs, the calls as a span of the sweep's axes (call_span.py), expanded by the runner
    grid: dict[str, Any] | None = None

    def encode(self) -> str:
        header = {
            "function": self.function,
            "calls": encode_ranges(self.call_indices),
            "timeout_s": self.timeout_s,
            "max_output_bytes": self.max_output_bytes,
            "max_result_bytes": self.max_result_bytes,
            "walltime_s": self.walltime_s,
            "max_stdout_bytes": self.max_stdout_bytes,
        }
        if self.context is not None:
            header["context"] = self.context
        if self.memory_mib:
            header["memory_mib"] = self.memory_mib
        body = {"args": self.args, "kwargs": self.kwargs}
        if self.grid is not None:
            body["grid"] = self.grid
        else:
            body["swept"] = self.swept_kwargs
        header_line = base64.b64encode(json.dumps(header, separators=(",", ":")).encode()).decode()
        body_line = base64.b64encode(pickle.dumps(body, protocol=PICKLE_PROTOCOL)).decode()
        return f"{header_line}\n{body_line}"


def iter_records(lines: Iterator[str] | list[str]) -> Iterator[dict[str, Any]]:
    """The call records in a task's stdout lines: every JSON line after the delimiter."""
    seen_delimiter = False
    for line in lines:
        line = line.rstrip("\r\n")
        if not seen_delimiter:
            seen_delimiter = line == DELIMITER
            continue
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def unframe_records(data: bytes, secret: str) -> bytes:
    """The records in a task's records file, as plain JSON lines.

    Each line the runner wrote there is ``SECRET RECORD`` (``runner.frame``); anything else
    (bytes user code wrote into the file, a line cut short by a kill) is left out.
    """
    prefix = secret.encode() + b" "
    text = clean_records(data[: data.rfind(b"\n") + 1], prefix)
    if text is not None:
        return text
    kept = []
    for line in data.split(b"\n")[:-1]:
        body = unframe(line, prefix)
        if body is not None:
            kept.append(body + b"\n")
    return b"".join(kept)


def unreported_records(data: bytes, secret: str, calls: list[int], reported: int = 0) -> bytes:
    """The records in a task's records file for its calls from position ``reported`` on, as plain JSON lines.

    The file is the truth of what a task's calls did: the runner appends each
    record there before the next call starts, and hands it on to stdout after.
    A runner killed in between leaves records that never reached stdout; this
    takes them, matched to ``calls`` in order as the runner does (a record
    counts for the next call only), so none is taken twice or for another call.
    """
    prefix = secret.encode() + b" "
    kept = []
    position = 0
    for line in data.split(b"\n")[:-1]:
        if position >= len(calls):
            break
        body = unframe(line, prefix)
        if body is None or not body.startswith(b'{"call": %d, ' % calls[position]):
            continue
        position += 1
        if position > reported:
            kept.append(body + b"\n")
    return b"".join(kept)
