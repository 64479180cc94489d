"""Values, names and types never give a silently wrong table, and never a traceback (issue 22).

Through the real CLI: what the user sees (exit code, message, exported table).
"""

from __future__ import annotations

import datetime
import decimal
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from groundhog_batch.columns import BOOKKEEPING_COLUMNS, reserved

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def no_traceback(done) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


# --- parameters named like the table's columns --------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "result",
        "status",
        "error",
        "call",
        "attempts",
        "started_at",
        "cpu_s",
        "max_rss_mib",
        "script_sha256",
        "files",
        "job",
    ],
)
def test_a_parameter_named_like_a_column_of_the_table_is_a_located_error_at_validate(project, name):
    project.write("f.py", HEAD + f"def work({name}=0, x=1):\n    return {name}\n")
    project.manifest(
        f"script: f.py\nfunction: work\nsweep:\n  product:\n    x: [1]\n    {name}: [100, 200]\n"
    )
    done = project.cli("validate", "sweep.yaml")
    no_traceback(done)
    assert done.returncode == 2
    assert (
        f"sweep.yaml:6 at sweep.product.{name}: parameter {name!r} has the name of a column"
        in done.stderr
    )
    assert "rename the parameter" in done.stderr


def test_a_rows_file_column_named_like_a_column_of_the_table_is_refused_naming_the_file(project):
    project.write("f.py", HEAD + "def work(x, status):\n    return x\n")
    project.write("r.csv", "x,status\n1,ok\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: r.csv}\n")
    done = project.cli("validate", "sweep.yaml")
    no_traceback(done)
    assert done.returncode == 2
    assert (
        "sweep.yaml:4 at sweep.rows.file: column 'status' of r.csv has the name of a column"
        in done.stderr
    )
    assert "columns: [...]" in done.stderr


def test_every_column_the_table_has_besides_the_parameters_is_reserved(project):
    project.write("f.py", HEAD + "def work(x):\n    return {'a': x}\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  product:\n    x: [1, 2]\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.parquet")
    assert done.returncode == 0, done.stderr
    columns = pq.read_schema(project.root / "out.parquet").names
    assert [c for c in columns if not reserved(c)] == ["x"]
    assert {"job", "call", "status", "result", "error", "attempts", "started_at"} <= set(
        BOOKKEEPING_COLUMNS
    )


# --- values JSON has no type for ----------------------------------------------------------


def test_an_unquoted_yaml_date_reaches_the_call_as_a_date_and_the_table_as_a_date_column(project):
    project.write(
        "f.py",
        HEAD
        + "def work(day):\n    return {'type': type(day).__name__, 'next': str(day.replace(day=day.day + 1))}\n",
    )
    project.manifest(
        "script: f.py\nfunction: work\nsweep:\n  product:\n    day: [2024-01-30, 2024-02-01]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(project.root / "out.csv")
    assert list(table["day"]) == ["2024-01-30", "2024-02-01"]
    assert list(table["result.type"]) == ["date", "date"] and list(table["result.next"]) == [
        "2024-01-31",
        "2024-02-02",
    ]
    for output in ("out.parquet", "out.json", "out.jsonl", "out.tsv"):
        collected = project.cli("collect", "run", "-o", output)
        no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
    assert pq.read_schema(project.root / "out.parquet").field("day").type == "date32[day]"
    assert [row["day"] for row in json.loads((project.root / "out.json").read_text())] == [
        "2024-01-30",
        "2024-02-01",
    ]
    report = project.cli("report", "run")
    no_traceback(report)
    assert report.returncode == 0, report.stderr


def test_decimal_list_and_time_columns_of_a_parquet_rows_file_reach_the_call_without_numpy(project):
    pd.DataFrame(
        {
            "a": [1, 2],
            "dec": [decimal.Decimal("1.10"), decimal.Decimal("2.50")],
            "items": [[1, 2], [3]],
            "when": pd.to_datetime(["2024-01-01 12:00", "2024-01-02 00:00"]),
            "day": [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)],
        }
    ).to_parquet(project.root / "rows.parquet")
    project.write(
        "f.py",
        HEAD
        + (
            "import sys\n"
            "def work(a, dec, items, when, day):\n"
            "    assert 'numpy' not in sys.modules and 'pandas' not in sys.modules\n"
            "    return {'types': ' '.join(type(v).__name__ for v in (a, dec, items, when, day)), 'total': sum(items)}\n"
        ),
    )
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: rows.parquet}\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(project.root / "out.csv", dtype=str)
    assert list(table["result.types"]) == ["int Decimal list datetime date"] * 2
    assert list(table["result.total"]) == ["3", "3"]
    assert list(table["dec"]) == ["1.10", "2.50"]  # exact, as text
    assert list(table["items"]) == ["[1, 2]", "[3]"]
    assert list(table["when"]) == ["2024-01-01T12:00:00", "2024-01-02T00:00:00"]
    for output in ("out.parquet", "out.json"):
        collected = project.cli("collect", "run", "-o", output)
        no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
    report = project.cli("report", "run")
    no_traceback(report)
    assert report.returncode == 0, report.stderr


def test_a_result_holding_an_undecodable_file_name_exports_everywhere_and_reports(project):
    project.write(
        "f.py",
        HEAD
        + (
            "import os, sys\n"
            "def work(x):\n"
            "    name = os.fsdecode(b'caf\\xe9.txt')\n"
            "    print(name, file=sys.stderr)\n"
            "    return {name: 1, 'name': name} if x else name\n"
        ),
    )
    project.manifest("script: f.py\nfunction: work\nsweep:\n  product:\n    x: [0, 1]\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    for output in ("out.parquet", "out.json", "out.jsonl", "out.tsv"):
        collected = project.cli("collect", "run", "-o", output)
        no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
    rows = json.loads((project.root / "out.json").read_text())
    assert rows[0]["result"] == "caf\\xe9.txt" and rows[1]["result.name"] == "caf\\xe9.txt"
    assert "result.caf\\xe9.txt" in rows[1]
    report = project.cli("report", "run")
    no_traceback(report)
    assert report.returncode == 0, report.stderr


# --- values checked against the function's annotations -----------------------------------


ANNOTATED = HEAD + (
    "from typing import Literal, Optional\n"
    "def work(n: int, lr: 'float' = 0.1, mode: Literal['fast', 'exact'] = 'fast', tag: Optional[str] = None,\n"
    "         x: int | None = None, data: 'np.ndarray' = None):\n"
    "    return n\n"
)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            "kwargs: {lr: '0.05'}\nsweep: {product: {n: [1]}}\n",
            "kwargs.lr: work() takes lr: float (f.py:6), but kwargs.lr gives '0.05', a str",
        ),
        (
            "sweep: {product: {n: [1], mode: [fast, slow]}}\n",
            "sweep.product.mode gives 'slow', a str",
        ),
        (
            "sweep: {product: {n: [1], x: [null, 2.5]}}\n",
            "work() takes x: int | None (f.py:6), but sweep.product.x gives 2.5, a float",
        ),
        ("sweep: {product: {n: [true]}}\n", "sweep.product.n gives True, a bool"),
        ("kwargs: {tag: 3}\nsweep: {product: {n: [1]}}\n", "kwargs.tag gives 3, an int"),
    ],
)
def test_a_value_that_does_not_fit_a_plain_annotation_is_a_located_error(
    project, manifest, expected
):
    project.write("f.py", ANNOTATED)
    project.manifest("script: f.py\nfunction: work\n" + manifest)
    done = project.cli("validate", "sweep.yaml")
    no_traceback(done)
    assert done.returncode == 2
    assert expected in done.stderr


def test_values_that_fit_or_that_no_plain_annotation_covers_are_passed_through(project):
    project.write("f.py", ANNOTATED)
    project.manifest(
        "script: f.py\nfunction: work\nkwargs: {data: [1, 2], lr: 1}\n"
        "sweep: {product: {n: {range: [0, 5]}, mode: [exact], x: [null, 3], tag: [null, a]}}\n"
    )
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 0, done.stderr


def test_a_hydra_style_comma_list_for_an_int_is_refused_with_the_sweep_syntax(project):
    project.write("f.py", ANNOTATED)
    project.manifest("script: f.py\nfunction: work\nsweep: {product: {n: ['1000,2000']}}\n")
    done = project.cli("validate", "sweep.yaml")
    no_traceback(done)
    assert done.returncode == 2
    assert "sweep.product.n gives '1000,2000', a str" in done.stderr
    assert "--set 'sweep.product.n=[1000,2000]'" in done.stderr
    quoted = project.cli("validate", "sweep.yaml", "--set", "sweep.product.n='1000,2000'")
    assert quoted.returncode == 2 and "(a value given on the command line)" in quoted.stderr
    bare = project.cli("validate", "sweep.yaml", "--set", "n=1000,2000")
    assert bare.returncode == 2 and "sweep.product.n=[1000,2000]" in bare.stderr
    swept = project.cli(
        "validate", "sweep.yaml", "--set", "sweep.product.n=1000,2000"
    )  # as Hydra means it
    assert swept.returncode == 0 and "2 call(s)" in swept.stdout


def test_a_rows_file_value_that_does_not_fit_the_annotation_names_the_row(project):
    project.write("f.py", ANNOTATED)
    project.write("r.csv", "n,lr\n1,0.5\n2,fast\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: r.csv}\n")
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2
    assert (
        "at sweep.rows.file: work() takes lr: float (f.py:6), but row 1 of the rows file gives lr='0.5', a str"
        in done.stderr
    )


# --- overrides that would do nothing ------------------------------------------------------


def test_retry_with_a_longer_timeout_takes_effect_when_the_job_sets_its_own(project):
    project.write("f.py", HEAD + "import time\ndef work(x):\n    time.sleep(x)\n    return x\n")
    project.manifest(
        "script: f.py\nfunction: work\njobs:\n  - name: slow\n    timeout: 0.5\n"
        "    sweep: {product: {x: [0, 1.5]}}\n"
    )
    first = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    assert first.returncode == 1, first.stderr
    retried = project.cli("retry", "run", "--error", "TimeoutError", "--set", "timeout=30")
    no_traceback(retried)
    assert retried.returncode == 0, retried.stderr
    assert list(pd.read_csv(project.root / "out.csv")["status"]) == ["succeeded", "succeeded"]


def test_a_set_of_the_top_level_sweep_that_every_job_hides_is_an_error_naming_the_key_that_works(
    project,
):
    project.write("f.py", HEAD + "def work(n):\n    return n\n")
    project.manifest(
        "script: f.py\nfunction: work\njobs:\n  - name: small\n    sweep: {product: {n: [10]}}\n"
    )
    done = project.cli("validate", "sweep.yaml", "--set", "sweep.product.n=[1,2]")
    no_traceback(done)
    assert done.returncode == 2
    assert "would change the top-level sweep, but every job sweeps its own" in done.stderr
    assert "--set 'jobs.0.sweep.product.n=[1,2]' (job 'small')" in done.stderr
    working = project.cli("validate", "sweep.yaml", "--set", "jobs.0.sweep.product.n=[1,2]")
    assert working.returncode == 0 and "2 call(s)" in working.stdout


def test_init_puts_a_parameter_named_like_a_column_under_kwargs_so_the_starter_validates(project):
    project.write("f.py", HEAD + "def work(x, status, result=3):\n    return x\n")
    done = project.cli("init", "f.py", "work")
    assert done.returncode == 0, done.stderr
    text = (project.root / "f.yaml").read_text()
    assert "kwargs:\n  status: 1" in text and "# result: ..." in text
    assert project.cli("validate", "f.yaml").returncode == 0


def test_a_parameter_given_under_kwargs_and_swept_is_an_error_not_a_silently_ignored_value(project):
    project.write("f.py", HEAD + "def work(n):\n    return n\n")
    project.manifest("script: f.py\nfunction: work\nsweep: {product: {n: [1, 2]}}\n")
    done = project.cli("validate", "sweep.yaml", "--set", "kwargs.n=5")
    no_traceback(done)
    assert done.returncode == 2
    assert "at kwargs.n: 'n' is given under kwargs and swept at sweep.product.n" in done.stderr
