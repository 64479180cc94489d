"""The results table is exact: every value as the call saw or returned it, in a type that holds it."""

from __future__ import annotations

import base64
import json
import pickle
import sqlite3
import zlib

import numpy as np
import pandas as pd

from groundhog_batch.api import open_run
from groundhog_batch.sweep import geomspace, linspace

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def submit(project, body: str, sweep: str, expect: int = 0):
    project.write("work.py", HEAD + body)
    project.manifest(f"script: work.py\nfunction: f\nsweep:\n{sweep}")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == expect and "Traceback" not in done.stderr, done.stderr
    return project.root / "run"


def collect(project, name: str) -> str:
    done = project.cli("collect", "run", "-o", name)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return (project.root / name).read_text() if not name.endswith(".parquet") else ""


def test_integers_of_2_63_and_more_and_mixed_parameters_go_to_text_columns(project):
    submit(
        project,
        "def f(n, p):\n    return n\n",
        "  product:\n    n: [1, 18446744073709551616]\n    p: [a, [1, 2]]\n",
    )
    collect(project, "out.parquet")
    table = pd.read_parquet(project.root / "out.parquet")
    assert list(table["n"]) == ["1", "1", "18446744073709551616", "18446744073709551616"]
    assert list(table["result"]) == ["1", "1", "18446744073709551616", "18446744073709551616"]
    assert list(table["p"]) == ["a", "[1, 2]", "a", "[1, 2]"]
    assert "18446744073709551616" in collect(project, "out.csv")


def test_json_and_jsonl_keep_full_float_precision(project):
    submit(project, "def f(x):\n    return x / 3 + 0.1\n", "  product:\n    x: [1, 2]\n")
    for name in ("out.json", "out.jsonl"):
        text = collect(project, name)
        rows = (
            json.loads(text)
            if name.endswith(".json")
            else [json.loads(line) for line in text.splitlines()]
        )
        assert [row["result"] for row in rows] == [1 / 3 + 0.1, 2 / 3 + 0.1]
        assert rows[0]["started_at"].endswith("Z")


def test_text_columns_are_strings_even_when_nothing_failed(project):
    submit(project, "def f(x):\n    return x\n", "  product:\n    x: [1, 2]\n")
    table = open_run(project.root / "run").results()
    for column in ("error", "traceback", "stdout", "stderr", "status", "job"):
        assert str(table[column].dtype) == "string", column
    assert table["error"].str.len().isna().all()


def test_started_and_finished_are_utc_timestamps(project):
    submit(project, "def f(x):\n    return x\n", "  product:\n    x: [1]\n")
    table = open_run(project.root / "run").results()
    assert str(table["started_at"].dtype) == "datetime64[us, UTC]"
    assert table["started_at"][0] <= table["finished_at"][0]
    collect(project, "out.parquet")
    assert str(pd.read_parquet(project.root / "out.parquet")["finished_at"].dtype).endswith("UTC]")


def test_a_parameter_absent_from_another_part_stays_an_integer(project):
    submit(
        project,
        "def f(x=0, y=0):\n    return x + y\n",
        "  - product:\n      x: [1, 2]\n  - product:\n      y: [3]\n",
    )
    table = open_run(project.root / "run").results()
    assert (
        str(table["x"].dtype) == "Int64"
        and list(table["x"][:2]) == [1, 2]
        and pd.isna(table["x"][2])
    )
    lines = collect(project, "out.csv").splitlines()
    assert lines[1].split(",")[2:4] == ["1", ""] and lines[3].split(",")[2:4] == ["", "3"]


def test_linspace_and_geomspace_agree_with_numpy_to_the_last_bit():
    for start, stop, num in [(0, 1, 11), (0.001, 0.1, 5), (-3.3, 7.1, 50), (1e-9, 1e9, 7)]:
        assert linspace(start, stop, num) == np.linspace(start, stop, num).tolist()
    for start, stop, num in [(1, 1000, 4), (0.001, 0.1, 5), (3.3, 7.1, 50), (1e-9, 1e9, 7)]:
        assert geomspace(start, stop, num) == np.geomspace(start, stop, num).tolist()
    assert geomspace(-1, -1000, 4) == np.geomspace(-1, -1000, 4).tolist()


def test_a_rows_file_with_a_blank_or_na_value_is_a_located_error(project):
    project.write("rows.csv", "a,b\n1,x\n,y\n3,n/a\n")
    project.write("work.py", HEAD + "def f(a, b):\n    return a\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  rows:\n    file: rows.csv\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "rows.csv line 3, column 'a'" in done.stderr and "missing" in done.stderr
    assert not (project.root / "run").exists()


def test_collect_never_unpickles_a_pickled_result(project):
    """A crafted pickle in the ledger runs nothing at collect; the table names its type from the opcodes."""
    run_dir = submit(
        project, "class Box:\n    pass\ndef f(x):\n    return Box()\n", "  product:\n    x: [1]\n"
    )
    marker = project.root / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    db = sqlite3.connect(run_dir / "state.sqlite")
    block, records = db.execute("SELECT block, records FROM blocks").fetchone()
    record = json.loads(zlib.decompress(records))
    assert record["kind"] == "pickle"
    record["value"] = base64.b64encode(pickle.dumps(Evil(), protocol=4)).decode()
    db.execute(
        "UPDATE blocks SET records = ? WHERE block = ?",
        (zlib.compress(json.dumps(record).encode() + b"\n"), block),
    )
    db.commit()
    db.close()
    for name in ("out.parquet", "out.csv", "out.json"):
        collect(project, name)
    assert project.cli("status", "run").returncode == 0
    table = open_run(run_dir).results()
    assert table["result"][0] == "<open object, pickled>" and not marker.exists()
    open_run(run_dir).results(
        objects=True
    )  # asking for the objects is what unpickles: the trust boundary
    assert marker.exists()


def test_pickled_results_show_their_type_and_come_back_as_objects_when_asked(project):
    run_dir = submit(
        project,
        "import fractions\ndef f(x):\n    return fractions.Fraction(x, 3)\n",
        "  product:\n    x: [1, 2]\n",
    )
    assert list(open_run(run_dir).results()["result"]) == ["<Fraction object, pickled>"] * 2
    objects = open_run(run_dir).results(objects=True)["result"]
    assert [str(value) for value in objects] == ["1/3", "2/3"]
