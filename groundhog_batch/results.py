"""Ledger -> pandas table (one row per call, in plan order) -> CSV, TSV, Parquet, JSON, JSONL."""

from __future__ import annotations

import base64
import json
import math
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import HogError
from .ledger import CallState, Ledger
from .run_paths import write_atomic

EXPORT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
SCALAR_TYPES = (bool, int, float, str)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode_result(kind: str | None, text: str | None, unpickle: bool = False) -> Any:
    if kind == "json" and text is not None:
        return json.loads(text)
    if kind == "pickle" and text is not None:
        if unpickle:
            return pickle.loads(base64.b64decode(text))
        return None
    return None


def _cell(value: Any) -> Any:
    """Scalars as themselves, anything else as JSON text."""
    if value is None or isinstance(value, SCALAR_TYPES):
        return value
    return json.dumps(value, sort_keys=False)


def results_frame(ledger: Ledger, objects: bool = False):
    """The results table. With ``objects=True`` the ``result`` column holds the returned objects themselves."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    param_names: dict[str, None] = {}
    result_keys: dict[str, None] = {}
    for (job, call, params_json, state, kind, result_text, result_type, error, tb, stdout, stderr,
         attempts, started_at, finished_at) in ledger.iter_result_rows():
        params = json.loads(params_json)
        param_names.update(dict.fromkeys(params))
        row: dict[str, Any] = {"job": job, "call": call, **params, "status": CallState(state).public}
        if kind == "pickle":
            try:
                value = decode_result(kind, result_text, unpickle=True)
                row["result"] = value if objects else f"<{type(value).__name__} object, pickled>"
            except Exception:
                row["result"] = f"<{result_type or 'object'}, pickled; not loadable here>"
        else:
            value = decode_result(kind, result_text)
            row["result"] = value if objects else _cell(value)
            if isinstance(value, dict):
                for key, item in value.items():
                    result_keys.setdefault(f"result.{key}", None)
                    row[f"result.{key}"] = _cell(item)
        duration = finished_at - started_at if started_at is not None and finished_at is not None else None
        row.update(error=error, traceback=tb, stdout=stdout, stderr=stderr, attempts=attempts,
                   duration_s=duration, started_at=_iso(started_at), finished_at=_iso(finished_at))
        rows.append(row)
    columns = ["job", "call", *param_names, "status", "result", *result_keys, "error", "traceback",
               "stdout", "stderr", "attempts", "duration_s", "started_at", "finished_at"]
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    return frame if objects else _uniform_columns(frame)


def _uniform_columns(frame):
    """Object columns that mix kinds of values become text, so every format can store them."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        kinds = {_kind(v) for v in column if not _missing(v)}
        if kinds <= {"number"}:
            frame[name] = column.astype("float64") if any(isinstance(v, float) for v in column) else column.astype("Int64")
        elif kinds == {"bool"}:
            frame[name] = column.astype("boolean")
        elif len(kinds) > 1:
            frame[name] = column.map(lambda v: None if _missing(v) else (v if isinstance(v, str) else json.dumps(v)))
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


def export_frame(frame, path: Path) -> Path:
    """Write the table, atomically, in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise HogError(message=f"cannot export to {path.name}: unknown format {suffix or '(no suffix)'}",
                       hint=f"use one of {', '.join(EXPORT_SUFFIXES)}")
    if suffix == ".parquet":
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data: bytes | str = buffer.getvalue()
    elif suffix in (".csv", ".tsv"):
        data = frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".json":
        data = frame.to_json(orient="records", indent=1)
    else:
        data = frame.to_json(orient="records", lines=True)
    write_atomic(path, data)
    return path
