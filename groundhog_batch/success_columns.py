"""A block of short success records read as Arrow columns, for exports of big runs.

Most calls of a big sweep return a number and print nothing: their records are
the runner's short success line (``render/runner.py``, ``SUCCESS_LINE``), the
same eight keys every time. Decoding them one ``json.loads`` dict at a time is
most of an export's time, and the four floats of each are most of that. Arrow's
JSON reader parses them straight into columns, in C++, on every core.

Only a block whose every record has exactly that shape is read this way, and
only where the values come out as ``json.loads`` plus the table's own typing
(``results._infer``) would give them: all integers that fit in int64, all
booleans, or all floats (no integer among them: ``json.loads`` keeps it an
int, and a text column shows it as one). Anything else, such as
other keys, a string, a dict, a pickle or a failure, is ``None``: the caller
decodes the block as dicts, as before. ``tests/test_success_columns.py``
compares both paths' tables on the same runs.
"""

from __future__ import annotations

import io
import re
from typing import Any

_LINE_HEAD = b'{"call": '  # how the runner starts every record (its keys in order: call first)
# A value written as an integer. In a block of short records "value" is a key and nothing else: the only
# text a short record holds is its kind, "json".
_INTEGER_VALUE = re.compile(rb'"value"\s*:\s*-?[0-9]+\s*[,}]')


def block_table(data: bytes) -> Any | None:
    """The records of one block (JSON lines) as a pyarrow Table of the short record's eight keys, or None (not
    all short)."""
    newlines = data.count(b"\n")
    if not _plain(data, newlines):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    fixed = [
        ("call", pa.int64()),
        ("ok", pa.bool_()),
        ("kind", pa.string()),
        ("t0", pa.float64()),
        ("t1", pa.float64()),
        ("cpu_s", pa.float64()),
        ("max_rss_mib", pa.float64()),
    ]
    arrow_types = {"int": pa.int64(), "bool": pa.bool_(), "float": pa.float64()}
    for value_type in (arrow_types[kind] for kind in _value_kinds(data)):
        schema = pa.schema([*fixed[:3], ("value", value_type), *fixed[3:]])
        try:
            table = pj.read_json(
                io.BytesIO(data),
                parse_options=pj.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="error"
                ),
            )
        except (pa.ArrowException, ValueError, TypeError):  # not all short: the dict path reads it
            continue
        break
    else:
        return None
    if table.num_rows != newlines + (not data.endswith(b"\n")):
        return None  # two records on a line: json.loads reads neither
    table = table.combine_chunks()
    ok, kind, call = table.column("ok"), table.column("kind"), table.column("call")
    if ok.null_count or call.null_count or not pc.all(ok).as_py():
        return None
    if kind.null_count or not pc.all(pc.equal(kind, "json")).as_py():
        return None
    if value_type == pa.float64() and _INTEGER_VALUE.search(data):
        return None  # an integer among floats: json.loads keeps it an int, which text columns show as such
    return table


def _value_kinds(data: bytes) -> tuple[str, ...]:
    """The value types the block may be read as, told from its first value: an integer, a boolean or a float
    leaves one (an integer next to a float is refused anyway, see ``_INTEGER_VALUE``); a null leaves all three;
    anything else (a string, a dict, a list) none, before Arrow parses anything."""
    at = data.find(b'"value": ')
    if at < 0:
        return ()
    first = data[at + 9 : at + 10]
    if first == b"n":
        return ("int", "bool", "float")
    if first in (b"t", b"f"):
        return ("bool",)
    if first in (b"N", b"I") or first.isdigit() or first == b"-":
        token = re.match(rb"-?([^,}\s]*)", data[at + 9 : at + 64]).group(1)
        return ("int",) if token.isdigit() else ("float",)
    return ()


def _plain(data: bytes, newlines: int) -> bool:
    """Whether ``data`` is written as the runner writes short records, in nothing Arrow's reader takes and
    ``json.loads`` does not: ASCII (no byte order mark), every line starting ``{"call": `` (no blank line, no two
    records on one), no escape (a key spelled ``"valu\\u0065"``), no ``-NaN``, ``Inf`` or ``-Inf`` (Python
    spells them ``NaN``, ``Infinity``). Each check is one pass in C; the rare letters are looked for first."""
    return (
        data.startswith(_LINE_HEAD)
        and data.isascii()
        and b"\\" not in data
        and data.count(b"\n" + _LINE_HEAD) == newlines - data.endswith(b"\n")
        and (b"N" not in data or b"-NaN" not in data)
        and (b"I" not in data or data.count(b"Inf") == data.count(b"Infinity"))
    )


def window_table(tables: list[Any], start: int, stop: int) -> Any | None:
    """Rows ``start <= call < stop`` of the blocks' tables, in call order, or None unless every call of the
    window is there exactly once, with its value of one type."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for table in tables:
        calls = table.column("call")
        first, last = calls[0].as_py(), calls[-1].as_py()
        if last - first + 1 == table.num_rows and _ascending_by_one(calls):
            lo, hi = max(start, first), min(stop, last + 1)
            if lo < hi:
                parts.append(table.slice(lo - first, hi - lo))
        else:
            inside = pc.and_(pc.greater_equal(calls, start), pc.less(calls, stop))
            parts.append(table.filter(inside))
    if not parts or len({part.schema for part in parts}) > 1:
        return None  # none, or values read as different types: the dict path types them together
    window = pa.concat_tables(parts).sort_by("call").combine_chunks()
    if window.num_rows != stop - start:
        return None
    calls = window.column("call").to_numpy()
    if not (calls == np.arange(start, stop, dtype=calls.dtype)).all():
        return None
    return window


def _ascending_by_one(calls: Any) -> bool:
    import numpy as np

    values = calls.to_numpy()
    return bool((np.diff(values) == 1).all())


__all__ = ["block_table", "window_table"]
