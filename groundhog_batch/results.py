"""Ledger -> results table (one row per call, in plan order) -> Parquet, CSV, TSV, JSON, JSONL, or pandas.

The table is built in batches and written as it is built (pyarrow record
batches), so memory is bounded by a batch, not by the run. A call's swept
parameters are regenerated from the run's sweep; its result, error and output
come from the record its task wrote.

Columns: ``job``, ``call``, the swept parameters, ``status``, ``result`` and,
for dict results, one ``result.<key>`` column per key, then ``error``,
``traceback``, ``stdout``, ``stderr`` (always text), ``attempts``,
``duration_s``, ``started_at`` and ``finished_at`` (UTC timestamps), ``cpu_s`` and
``max_rss_mib`` (the call's CPU time and its worker's peak memory, from the
runner's ``getrusage``), and ``script_sha256`` (the script version that produced
the row, see ``script_versions``).

A column's type is the narrowest that holds all its values exactly: integers
(nullable: a parameter absent from another job's rows stays an integer),
floats (an integer column with a float in it), booleans, or text. Anything
else (an integer of 2**63 or more, lists, dicts, mixed kinds) is text,
non-strings as JSON. Types are taken from the first batch; if a later batch
needs a wider one, the export starts again with it (rare: a run's results
usually have one shape).

Trust boundary: pickled results (objects that are not plain data) are never
unpickled here. The table shows ``<Type object, pickled>``, the type read from
the pickle's opcodes without running them. Only ``Run.results(objects=True)``
unpickles, and unpickling runs code: do it only for runs whose records you
trust as you trust the script (a task's records come from the task's user code).
"""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import pickletools
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .columns import TEXT_COLUMNS, reserved
from .errors import HogError
from .ledger import CODE_STATES, SUCCEEDED
from .ledger_reads import CallWindow

if TYPE_CHECKING:
    from .api import Run

EXPORT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
BATCH_ROWS = 20_000
# Exports read blocks of short success records as Arrow columns (``success_columns``).
COLUMNAR = True
MAX_RESTARTS = 8


_PICKLED_BUILTINS = {
    "EMPTY_SET": "set",
    "FROZENSET": "frozenset",
    "EMPTY_LIST": "list",
    "EMPTY_DICT": "dict",
    "EMPTY_TUPLE": "tuple",
    "TUPLE": "tuple",
    "TUPLE1": "tuple",
    "TUPLE2": "tuple",
    "TUPLE3": "tuple",
    "SHORT_BINBYTES": "bytes",
    "BINBYTES": "bytes",
    "BINBYTES8": "bytes",
    "BYTEARRAY8": "bytearray",
    "LONG1": "int",
    "LONG4": "int",
    "BINFLOAT": "float",
}


def pickled_type_name(encoded: str | None) -> str:
    """The class a base64 pickle would rebuild, read from its opcodes (nothing is executed).

    The first container or class the pickle builds names it; helper functions
    (names starting with ``_``, such as NumPy's ``_reconstruct``) are passed over.
    """
    try:
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(base64.b64decode(encoded or "")):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif opcode.name in ("GLOBAL", "STACK_GLOBAL"):
                name = (
                    arg.split(" ")[-1]
                    if opcode.name == "GLOBAL"
                    else (strings[-1] if strings else "")
                )
                if name and not name.startswith("_"):
                    return name.rsplit(".", 1)[-1]
            elif opcode.name in _PICKLED_BUILTINS:
                return _PICKLED_BUILTINS[opcode.name]
    except Exception:
        pass
    return "object"


def decode_result(record: dict | None, unpickle: bool = False) -> Any:
    """A call's returned value from its record; pickles only with ``unpickle`` (it runs code)."""
    if not record or not record.get("ok"):
        return None
    if record.get("kind") == "pickle":
        if unpickle:
            return pickle.loads(base64.b64decode(record["value"]))
        return f"<{record.get('type') or pickled_type_name(record.get('value'))} object, pickled>"
    return record.get("value")


# --- rows, in batches of columns ----------------------------------------------------------


def iter_row_batches(
    run: Run, batch_size: int = BATCH_ROWS, columnar: bool = False
) -> Iterator[dict[str, list]]:
    """The table's rows in plan order, as batches of columns (name -> list of Python values), one job per batch.

    Swept parameters are keyed ``param:<name>``; timestamps are epoch seconds;
    pickles are shown, not unpickled. With ``columnar`` (the exports), a batch
    whose calls all succeeded with short records holds pyarrow arrays instead of
    lists for the columns read from those records (``success_columns``).
    """
    from .script_versions import versions

    for job in run.sweep_spec().jobs:
        points = job.sweep.points()
        job_versions = versions(run.info, job.name)
        for window in run.ledger.iter_windows(job.name, batch_size, columnar):
            params = job.sweep.columns(window.start, window.stop)
            if params is None:  # exclusions: walk the points
                chosen = list(islice(points, window.stop - window.start))
                params = {
                    name: [point.params.get(name) for point in chosen] for name in job.sweep.names
                }
            yield _window_columns(job.name, params, window, job_versions)


_PUBLIC = [state.public for state in CODE_STATES]


def _window_columns(
    job: str,
    params: dict[str, list],
    window: CallWindow,
    job_versions: list[tuple[float, str | None]],
) -> dict[str, list]:
    from .script_versions import version_of

    if window.columns is not None:
        return _short_window_columns(job, params, window, job_versions)
    n = window.stop - window.start
    calls = range(window.start, window.stop)
    records = (
        [window.record(call) for call in calls]
        if window.failures
        else [window.successes.get(call) for call in calls]
    )
    columns: dict[str, list] = {"job": [job] * n, "call": list(calls)}
    for name, values in params.items():
        columns[f"param:{name}"] = values
    columns["status"] = [_PUBLIC[code] for code in window.states]
    values = [
        r.get("value")
        if r is not None and r.get("kind") == "json" and r.get("ok")
        else decode_result(r)
        for r in records
    ]
    columns["result"] = values
    if any(type(value) is dict for value in values):
        keys: dict[str, None] = {}
        for value in values:
            if type(value) is dict:
                keys.update(dict.fromkeys(value))
        for key in keys:
            columns[f"result.{clean_text(key)}"] = [
                value.get(key) if type(value) is dict else None for value in values
            ]
    empty = {}
    records = [r if r is not None else empty for r in records]
    columns["error"] = [r.get("error") for r in records]
    columns["traceback"] = [r.get("tb") for r in records]
    columns["stdout"] = [r.get("out") or ("" if r else None) for r in records]
    columns["stderr"] = [r.get("err") or ("" if r else None) for r in records]
    files = [r.get("files") for r in records]
    if any(
        f is not None for f in files
    ):  # workdir: call; what each call left in its directory, as JSON text
        columns["files"] = [None if f is None else json.dumps(f) for f in files]
    if window.failures:
        columns["attempts"] = [window.attempts(call) for call in calls]
    else:
        columns["attempts"] = [int(code == SUCCEEDED) for code in window.states]
    t0 = columns["started_at"] = [r.get("t0") for r in records]
    t1 = columns["finished_at"] = [r.get("t1") for r in records]
    columns["duration_s"] = [
        b - a if a is not None and b is not None else None for a, b in zip(t0, t1, strict=True)
    ]
    columns["cpu_s"] = [r.get("cpu_s") for r in records]
    columns["max_rss_mib"] = [r.get("max_rss_mib") for r in records]
    if len(job_versions) == 1:
        only = job_versions[0][1]
        columns["script_sha256"] = [
            (r.get("script_sha256") or only) if r else None for r in records
        ]
    else:
        columns["script_sha256"] = [version_of(r, job_versions) for r in records]
    return columns


def _short_window_columns(
    job: str,
    params: dict[str, list],
    window: CallWindow,
    job_versions: list[tuple[float, str | None]],
) -> dict[str, Any]:
    """``_window_columns`` of a window whose calls all succeeded with short records (``window.columns``, an
    Arrow table): the same columns, those read from the records as arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = window.stop - window.start
    table = window.columns

    def same(text: str | None):  # one text n times, made in Arrow
        return pa.repeat(text_array([text])[0], n)

    t0, t1 = table.column("t0").chunk(0), table.column("t1").chunk(0)
    columns: dict[str, Any] = {"job": same(job), "call": table.column("call").chunk(0)}
    for name, values in params.items():
        columns[f"param:{name}"] = values
    columns["status"] = same(_PUBLIC[SUCCEEDED])
    columns["result"] = table.column("value").chunk(0)
    columns["error"] = columns["traceback"] = pa.nulls(n, pa.string())
    columns["stdout"] = columns["stderr"] = same("")
    columns["attempts"] = pa.repeat(pa.scalar(1, pa.int64()), n)
    columns["started_at"], columns["finished_at"] = t0, t1
    columns["duration_s"] = pc.subtract(t1, t0)
    columns["cpu_s"] = table.column("cpu_s").chunk(0)
    columns["max_rss_mib"] = table.column("max_rss_mib").chunk(0)
    if len(job_versions) == 1:
        columns["script_sha256"] = same(job_versions[0][1])
    else:  # which version ran each call: by its start (``version_of``; a short record names none)
        from .script_versions import version_of

        columns["script_sha256"] = [
            version_of({"t0": a, "t1": b}, job_versions)
            for a, b in zip(t0.to_pylist(), t1.to_pylist(), strict=True)
        ]
    return columns


# --- column types ------------------------------------------------------------------------


class _Widen(Exception):
    """A batch needs a wider type (or a new column) than the batches already written."""


class Shape:
    """The table's columns and the type of each variable one; grows as batches show more."""

    def __init__(self, param_names: list[str]) -> None:
        self.params = list(param_names)
        self.result_keys: list[str] = []
        self.kinds: dict[str, str] = {}  # column -> null | bool | int | float | text
        self.frozen = False  # batches were written with this shape: a change means starting again
        self.changed = False
        self.files = False  # a ``files`` column (workdir: call), after the text columns

    @staticmethod
    def param_column(name: str) -> str:
        """A parameter's column: its name (``validate`` refuses names the table uses; a run from before that
        check keeps its bookkeeping columns and shows such a parameter as ``param.NAME``)."""
        return f"param.{name}" if reserved(name) else name

    def columns(self) -> list[str]:
        return [
            "job",
            "call",
            *map(self.param_column, self.params),
            "status",
            "result",
            *(f"result.{k}" for k in self.result_keys),
            *TEXT_COLUMNS,
            *(["files"] if self.files else []),
            "attempts",
            "duration_s",
            "started_at",
            "finished_at",
            "cpu_s",
            "max_rss_mib",
            "script_sha256",
        ]

    def widen(self, column: str, kind: str) -> None:
        if self.kinds.get(column) == kind:
            return
        self.kinds[column] = kind
        self.changed = True

    def add_key(self, key: str) -> None:
        if key not in self.result_keys:
            self.result_keys.append(key)
            self.changed = True


def _combine(a: str | None, b: str) -> str:
    if a is None or a == "null" or a == b:
        return b
    if b == "null":
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "text"


def _infer(values: list) -> tuple[str, Any]:
    import pyarrow as pa

    try:
        # A column of short records (an Arrow array) is typed as pa.array() of its values would be.
        if isinstance(values, pa.Array):
            array = pa.nulls(len(values)) if values.null_count == len(values) else values
        else:
            array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError, TypeError):
        return "text", None
    kind = {
        pa.int64(): "int",
        pa.float64(): "float",
        pa.bool_(): "bool",
        pa.string(): "text",
        pa.null(): "null",
        pa.date32(): "date",
    }.get(array.type)
    if kind is None:
        return "text", None
    return kind, array


def json_default(value: Any) -> Any:
    """What JSON text shows for a value JSON has no type for: a date (or time) in ISO 8601, a Decimal exactly,
    a set or tuple as a list, an array as its list, anything else as its ``str``."""
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "backslashreplace")
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


def json_text(value: Any) -> str:
    """A value as JSON text, whatever it holds (dates, Decimals, sets: :func:`json_default`)."""
    return json.dumps(value, default=json_default)


def clean_text(text: str) -> str:
    """Text that can be written as UTF-8: an undecodable byte a file name carried (``os.fsdecode(b'caf\\xe9')``,
    a lone surrogate) is shown as its escape, ``caf\\xe9``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _as_text(values: list) -> list:
    return [
        None
        if v is None
        else v
        if isinstance(v, str)
        else (
            v.isoformat()
            if isinstance(v, date | time)
            else str(v)
            if isinstance(v, Decimal)
            else json_text(v)
        )
        for v in values
    ]


def text_array(values: list):
    """A column of text (None for missing), every string writable as UTF-8."""
    import pyarrow as pa

    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array([clean_text(v) if isinstance(v, str) else v for v in values], pa.string())


_ARROW_KINDS = {
    "null": "null",
    "bool": "bool_",
    "int": "int64",
    "float": "float64",
    "text": "string",
    "date": "date32",
}


def _variable_column(shape: Shape, name: str, values: list):
    import pyarrow as pa

    kind, array = _infer(values)
    wanted = _combine(shape.kinds.get(name), kind)
    shape.widen(name, wanted)
    arrow_type = getattr(pa, _ARROW_KINDS[wanted])()
    if array is None or (wanted == "text" and kind != "text"):
        if isinstance(values, pa.Array):
            values = values.to_pylist()
        return text_array(_as_text(values))
    return array if array.type == arrow_type else array.cast(arrow_type)


def _timestamps(values: list):
    import pyarrow as pa
    import pyarrow.compute as pc

    seconds = values if isinstance(values, pa.Array) else pa.array(values, pa.float64())
    micros = pc.cast(pc.round(pc.multiply(seconds, 1_000_000.0)), pa.int64())
    return micros.cast(pa.timestamp("us", tz="UTC"))


_VARIABLE_FROM_RECORDS = ("result",)  # typed by the shape, even as an array (``_variable_column``)


def _arrow_batch(shape: Shape, columns: dict[str, list]):
    """One batch of columns as a pyarrow RecordBatch with the shape's columns (missing ones null)."""
    import pyarrow as pa

    n = len(columns["call"])
    for name in columns:
        if name.startswith("result."):
            shape.add_key(name[len("result.") :])
    if "files" in columns and not shape.files:
        shape.files = shape.changed = True
    arrays = []
    sources = {shape.param_column(name): f"param:{name}" for name in shape.params}
    for name in shape.columns():
        source = sources.get(name, name)
        values = columns.get(source)
        if values is None:
            values = [None] * n
        if isinstance(values, pa.Array) and name not in _VARIABLE_FROM_RECORDS:
            arrays.append(_timestamps(values) if name in ("started_at", "finished_at") else values)
        elif name in ("job", "status", "files", "script_sha256", *TEXT_COLUMNS):
            arrays.append(text_array(values))
        elif name in ("call", "attempts"):
            arrays.append(pa.array(values, pa.int64()))
        elif name in ("duration_s", "cpu_s", "max_rss_mib"):
            arrays.append(pa.array(values, pa.float64()))
        elif name in ("started_at", "finished_at"):
            arrays.append(_timestamps(values))
        else:
            arrays.append(_variable_column(shape, name, values))
    return pa.RecordBatch.from_arrays(arrays, names=shape.columns())


def _batches(run: Run, shape: Shape) -> Iterator:
    """Arrow batches of the table; raises _Widen when a batch needs a shape the written ones lack."""
    for columns in iter_row_batches(run, BATCH_ROWS, columnar=COLUMNAR):
        shape.changed = False
        batch = _arrow_batch(shape, columns)
        if shape.changed and shape.frozen:
            raise _Widen()
        shape.frozen = True
        yield batch


def _with_restarts(run: Run, consume) -> Any:
    """Run ``consume(batches, shape)`` until one pass needs no wider types (each restart learns more)."""
    names: dict[str, None] = {}
    for job in run.sweep_spec().jobs:
        names.update(dict.fromkeys(job.sweep.names))
    shape = Shape(list(names))
    for _ in range(MAX_RESTARTS):
        shape.frozen = False
        try:
            return consume(_batches(run, shape), shape)
        except _Widen:
            continue
    for name in [
        *map(shape.param_column, shape.params),
        "result",
        *(f"result.{k}" for k in shape.result_keys),
    ]:
        shape.kinds[name] = "text"
    shape.frozen = False
    return consume(_batches(run, shape), shape)


# --- outputs ------------------------------------------------------------------------------


def results_frame(run: Run, objects: bool = False):
    """The whole table as a pandas DataFrame (text columns as ``string``, integers as nullable ``Int64``)."""
    import pandas as pd
    import pyarrow as pa

    def collect(batches, shape):
        found = list(batches)
        schema = found[-1].schema if found else _arrow_batch(shape, {"call": []}).schema
        return pa.Table.from_batches(
            [b.cast(schema) if b.schema != schema else b for b in found], schema=schema
        )

    table = _with_restarts(run, collect)
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    frame = table.to_pandas(types_mapper=mapping.get)
    if objects:
        frame["result"] = pd.Series(list(_result_objects(run)), dtype=object, index=frame.index)
    return frame


def _result_objects(run: Run) -> Iterator[Any]:
    for job in run.sweep_spec().jobs:
        for call_record in run.ledger.iter_calls(job.name):
            try:
                yield decode_result(call_record.record, unpickle=True)
            except Exception:
                yield f"<{pickled_type_name((call_record.record or {}).get('value'))}, pickled; not loadable here>"


def export_table(run: Run, path: Path) -> Path:
    """Write the table in the format the suffix names, streamed to a temp file renamed into place."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise HogError(
            message=f"cannot export to {path.name}: unknown format {suffix or '(no suffix)'}",
            hint=f"use one of {', '.join(EXPORT_SUFFIXES)}",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    writer = {
        ".parquet": _write_parquet,
        ".csv": _write_csv,
        ".tsv": _write_csv,
        ".json": _write_json,
        ".jsonl": _write_json,
    }[suffix]
    try:
        _with_restarts(run, lambda batches, shape: writer(tmp, batches, shape, suffix))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(
            tmp, 0o666 & ~umask
        )  # an exported table follows the umask, like any file the user writes
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_parquet(tmp: Path, batches, shape: Shape, suffix: str) -> None:
    import pyarrow.parquet as pq

    writer = None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_batch(batch)
        if writer is None:
            pq.write_table(_empty(shape), tmp)
    finally:
        if writer is not None:
            writer.close()


def _empty(shape: Shape):
    import pyarrow as pa

    return pa.Table.from_batches([_arrow_batch(shape, {"call": []})])


def _write_csv(tmp: Path, batches, shape: Shape, suffix: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ",")
    writer = None
    try:
        for batch in batches:
            # CSV has no null type: such a column (nothing in it yet) is written as empty text
            schema = pa.schema(
                [pa.field(f.name, pa.string()) if f.type == pa.null() else f for f in batch.schema]
            )
            batch = batch.cast(schema) if schema != batch.schema else batch
            if writer is None:
                writer = pcsv.CSVWriter(str(tmp), schema, write_options=options)
            writer.write_batch(batch)
        if writer is None:
            pcsv.write_csv(_empty(shape), str(tmp), write_options=options)
    finally:
        if writer is not None:
            writer.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return (
            value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(tmp: Path, batches, shape: Shape, suffix: str) -> None:
    """JSON (an array of objects) or JSON lines, one object per row; floats at full precision."""
    lines = suffix == ".jsonl"
    with tmp.open("w", encoding="utf-8") as handle:
        first = True
        if not lines:
            handle.write("[")
        for batch in batches:
            for row in batch.to_pylist():
                text = json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False)
                if lines:
                    handle.write(text + "\n")
                else:
                    handle.write(("\n" if first else ",\n") + text)
                first = False
        if not lines:
            handle.write("\n]\n" if not first else "]\n")
