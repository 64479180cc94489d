"""Exports read blocks of short success records as Arrow columns, and the table is the one json.loads gives.

``success_columns`` is a second reader of the runner's records: a table it
makes must be equal, value for value and type for type, to the table the
dict path makes. These tests compare the two on generated blocks and on real
runs, and check that the fast path is taken where it should be.
"""

from __future__ import annotations

import json
import math
import sqlite3
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundhog_batch import results, success_columns
from groundhog_batch.api import open_run
from groundhog_batch.errors import HogError
from groundhog_batch.ledger import _success_records
from groundhog_batch.render.runner import success_line
from groundhog_batch.success_columns import block_table

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def block(values: list, start: int = 0) -> bytes:
    """Lines as the runner writes them for calls returning ``values`` (``SUCCESS_LINE``)."""
    return b"".join(
        success_line(start + i, json.dumps(v).encode(), 1.7e9 + i / 7, 1.7e9 + i / 3, i / 1e6, 30.5)
        + b"\n"
        for i, v in enumerate(values)
    )


def same(a: list, b: list) -> bool:
    """Equal lists, NaN equal to NaN, and -0.0 told from 0.0."""
    return len(a) == len(b) and all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or (type(x) is type(y) and x == y and (not isinstance(x, float) or repr(x) == repr(y)))
        for x, y in zip(a, b, strict=True)
    )


def both_tables(run, root, monkeypatch):
    """The run's table exported with and without columns."""
    monkeypatch.setattr(results, "COLUMNAR", True)
    fast = pq.read_table(run.export(root / "fast.parquet"))
    monkeypatch.setattr(results, "COLUMNAR", False)
    slow = pq.read_table(run.export(root / "slow.parquet"))
    return fast, slow


def assert_same_table(fast, slow):
    assert fast.schema == slow.schema
    for name in slow.column_names:
        assert same(fast.column(name).to_pylist(), slow.column(name).to_pylist()), name


def typed(values) -> tuple[str, list]:
    """The result column as the table types it (``results._variable_column``)."""
    column = results._variable_column(results.Shape([]), "result", values)
    return str(column.type), column.to_pylist()


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e20, 2.0**53, 2.0**53 - 1, 0.1, 1 / 3]),
    st.text(max_size=5),
)


def one_kind(values):
    return st.lists(st.one_of(st.none(), values), min_size=1, max_size=30)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.lists(json_values, min_size=1, max_size=30),
        one_kind(st.integers(min_value=-(2**64), max_value=2**64)),
        one_kind(st.floats(allow_nan=True, allow_infinity=True)),
        one_kind(st.booleans()),
    )
)
def test_a_block_read_as_columns_holds_what_json_loads_reads(values):
    data = block(values)
    table = block_table(data)
    decoded = [json.loads(line) for line in data.splitlines()]
    if table is None:
        return  # the dict path reads it: nothing to compare
    for key in ("call", "t0", "t1", "cpu_s", "max_rss_mib"):
        assert same(table.column(key).to_pylist(), [r[key] for r in decoded]), key
    fast_type, fast = typed(table.column("value").chunk(0))
    slow_type, slow = typed([r["value"] for r in decoded])
    assert fast_type == slow_type and same(fast, slow), (values, fast, slow)


@pytest.mark.parametrize(
    "values",
    [
        [1, 2, -3, 2**63 - 1, None],
        [0.5, 1.0, float("nan"), float("inf"), -0.0, None, 1e20, 2.0**53],
        [True, False, None],
        [None, None],
    ],
    ids=["ints", "floats", "bools", "nulls"],
)
def test_numbers_and_booleans_are_read_as_columns(values):
    assert block_table(block(values)) is not None


@pytest.mark.parametrize(
    "values",
    [
        [1, 2**63],  # an integer int64 cannot hold is text in the table
        [0.5, 2**53 + 1],  # an integer a float cannot hold next to a float
        [0.5, 1],  # an integer next to a float: a text column shows "1", not "1.0"
        ["a", "b"],
        [{"y": 1}],
        [[1, 2]],
        [1, True],
    ],
    ids=["big-int", "big-int-and-float", "int-and-float", "text", "dict", "list", "int-and-bool"],
)
def test_anything_else_is_left_to_the_dict_path(values):
    assert block_table(block(values)) is None


@pytest.mark.parametrize(
    "line",
    [
        b'{"call": 1, "ok": true, "kind": "json", "value": 1, "t0": 1.0, "t1": 2.0, "cpu_s": 0.1, '
        b'"max_rss_mib": 3.0, "out": "hi\\n"}',
        b'{"call": 1, "ok": true, "kind": "pickle", "value": "gAR9lC4=", "t0": 1.0, "t1": 2.0, "cpu_s": 0.1, '
        b'"max_rss_mib": 3.0}',
        b'{"call": 1, "ok": false, "kind": null, "value": null, "error": "E", "t0": 1.0, "t1": 2.0}',
        b'{"ok": true, "kind": "json", "value": 1}',
    ],
    ids=["printed", "pickle", "failure", "no-call"],
)
def test_a_record_of_another_shape_sends_its_block_to_the_dict_path(line):
    assert block_table(block([1, 2]) + line + b"\n") is None


CASES = {
    "ints": "    if x == 13 and not os.path.exists('failed'):\n"
    "        open('failed', 'w').close()\n"
    "        raise ValueError('once')\n"
    "    if x == 20:\n"
    "        print('hello')\n"
    "    return None if x % 11 == 0 else x * 3\n",
    "floats": "    return [x / 7, float(x), float('nan'), float('inf'), -0.0, None][x % 6] if x > 20 else x\n",
    "bools": "    return None if x % 9 == 0 else x % 2 == 0\n",
    "everything": "    return [x, x / 2, True, None, 'a', {'y': x}, 2**64, [x]][x // 8 % 8]\n",
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_export_is_the_same_table_with_and_without_columns(project, monkeypatch, case):
    project.write("work.py", HEAD + "import os\n\n\ndef f(x):\n" + CASES[case])
    project.manifest(
        "script: work.py\nfunction: f\nretries: 1\ncalls_per_task: 9\n"
        "sweep:\n  product:\n    x: {range: [0, 70]}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    run = open_run(project.root / "run")
    monkeypatch.setattr(results, "BATCH_ROWS", 7)  # many windows: some all short, some not
    taken = []
    original = success_columns.window_table

    def counted(*args):
        table = original(*args)
        taken.append(table is not None)
        return table

    monkeypatch.setattr(success_columns, "window_table", counted)
    assert_same_table(*both_tables(run, project.root, monkeypatch))
    if case != "everything":
        assert any(taken), "no window was read as columns"
    assert pa.Table.from_pandas(run.results()).num_rows == 70


# --- found by review: each failed on the first version of the columnar reader ----------------------


def test_a_job_whose_script_changed_keeps_its_results(project, monkeypatch):
    """Job a's script changed (a comment) and was accepted by a retry of job b's failure: job a has two
    script versions, and each row still has its result, times and the version that ran it."""
    project.write("a.py", HEAD + "def f(x):\n    return x * 3\n")
    project.write(
        "b.py",
        HEAD + "def g(x):\n    if x == 5:\n        raise ValueError('boom')\n    return x + 0.5\n",
    )
    project.manifest(
        "sweep:\n  product:\n    x: {range: [0, 10]}\n"
        "jobs:\n  - {name: a, script: a.py, function: f}\n  - {name: b, script: b.py, function: g}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "run", "-q")
    assert done.returncode == 1, done.stderr
    project.write("a.py", HEAD + "def f(x):\n    return x * 3\n# edited\n")
    project.cli("retry", "run", "--accept-changed-script", "-q")
    run = open_run(project.root / "run")
    fast, slow = both_tables(run, project.root, monkeypatch)
    assert slow.column("result").to_pylist()[:3] == [0.0, 3.0, 6.0]
    assert_same_table(fast, slow)
    monkeypatch.setattr(results, "COLUMNAR", True)
    assert run.results()["result"].tolist()[:3] == [0.0, 3.0, 6.0]


def _damage(run_dir, value):
    db = sqlite3.connect(run_dir / "state.sqlite")
    db.execute("UPDATE blocks SET records = ?", (value,))
    db.commit()
    db.close()


@pytest.mark.parametrize("value", ["not a blob", 12345], ids=["text", "integer"])
def test_a_block_that_is_not_bytes_is_the_located_damage_error(project, monkeypatch, value):
    """Both paths say "the run directory is damaged ... cannot be decompressed", never a traceback."""
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: {range: [0, 5]}\n")
    assert project.cli("submit", "sweep.yaml", "--local", "--run-dir", "run", "-q").returncode == 0
    _damage(project.root / "run", value)
    run = open_run(project.root / "run")
    monkeypatch.setattr(results, "COLUMNAR", False)
    with pytest.raises(HogError, match="damaged"):
        run.export(project.root / "slow.parquet")
    monkeypatch.setattr(results, "COLUMNAR", True)
    with pytest.raises(HogError, match="damaged"):
        run.export(project.root / "fast.parquet")


def _line(call: int, value: bytes = b"1.5", cpu: bytes = b"0.1") -> bytes:
    return (
        b'{"call": %d, "ok": true, "kind": "json", "value": %s, "t0": 1.5, "t1": 2.5, "cpu_s": %s, '
        b'"max_rss_mib": 30.5}' % (call, value, cpu)
    )


DAMAGED_BLOCKS = {
    # RapidJSON's NaN/Inf flag takes more than Python's json does
    "minus-nan-value": _line(0) + b"\n" + _line(1, b"-NaN") + b"\n",
    "inf-value": _line(0) + b"\n" + _line(1, b"Inf") + b"\n",
    "minus-inf-value": _line(0) + b"\n" + _line(1, b"-Inf") + b"\n",
    "minus-nan-cpu": _line(0) + b"\n" + _line(1, cpu=b"-NaN") + b"\n",
    # a UTF-8 byte order mark: Arrow skips it; the old path drops the first line (it does not start with "{")
    "bom": b"\xef\xbb\xbf" + _line(0) + b"\n" + _line(1) + b"\n",
    # two records on one line and a blank line: as many rows as newlines, but json.loads drops both records
    "joined-and-blank": _line(0) + _line(1) + b"\n" + _line(2) + b"\n\n",
}


@pytest.mark.parametrize("data", list(DAMAGED_BLOCKS.values()), ids=list(DAMAGED_BLOCKS))
def test_a_block_json_loads_cannot_read_is_not_read_as_columns(data):
    old = dict(_success_records(zlib.compress(data)))
    table = block_table(data)
    read = [] if table is None else table.column("call").to_pylist()
    assert sorted(read) == sorted(old) or table is None, (read, sorted(old))


def test_an_integer_under_an_escaped_value_key_stays_an_integer_in_a_text_column(
    project, monkeypatch
):
    """``"valu\\u0065": 3`` is the key "value" to json.loads and to Arrow (not to a search for the key): where
    the result column is text (another window holds strings) the row shows "3", not "3.0"."""
    project.write("work.py", HEAD + "def f(x):\n    return 0.5 if x < 10 else 'a'\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 10\nsweep:\n  product:\n    x: {range: [0, 20]}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--local", "--run-dir", "run", "-q").returncode == 0
    db = sqlite3.connect(project.root / "run" / "state.sqlite")
    block, records = db.execute("SELECT block, records FROM blocks ORDER BY lo").fetchone()
    lines = zlib.decompress(records).splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"value": 0.5', b'"valu\\u0065": 3')
    db.execute(
        "UPDATE blocks SET records = ? WHERE block = ?", (zlib.compress(b"".join(lines)), block)
    )
    db.commit()
    db.close()
    monkeypatch.setattr(results, "BATCH_ROWS", 10)
    fast, slow = both_tables(open_run(project.root / "run"), project.root, monkeypatch)
    assert slow.column("result").to_pylist()[3] == "3"
    assert_same_table(fast, slow)
