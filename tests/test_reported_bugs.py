"""Regressions for bugs a tester found, each through the real CLI: what the user saw, and what they see now."""

from __future__ import annotations

import json

import pandas as pd

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def submit(
    project,
    body: str,
    sweep: str,
    extra: str = "",
    output: str = "out.csv",
    expect: int = 0,
    args=(),
):
    project.write("f.py", HEAD + body)
    project.manifest(f"script: f.py\nfunction: work\n{extra}sweep:\n{sweep}")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", output, *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == expect, done.stderr
    return done


def test_result_key_columns_stay_on_their_own_call_rows_after_a_failed_call(project):
    body = (
        "def work(x, mode='ok'):\n"
        "    if mode == 'raise' and x % 3 == 0:\n        raise ValueError('bad')\n"
        "    return {'sq': x * x, 'mode': mode}\n"
    )
    submit(project, body, "  product:\n    x: [1, 3, 2]\n    mode: [raise]\n", expect=1)
    table = pd.read_csv(project.root / "out.csv")
    assert list(table["status"]) == ["succeeded", "failed", "succeeded"]
    assert list(table["result.sq"].fillna(-1)) == [1, -1, 4]
    assert list(table["result.mode"].fillna("")) == ["raise", "", "raise"]


def test_dict_results_with_differing_keys_each_land_on_their_own_row(project):
    body = "def work(x):\n    return {'a': x} if x % 2 else {'b': x * 10}\n"
    submit(project, body, "  product:\n    x: [1, 2, 3, 4, 5]\n", output="out.json")
    rows = json.loads((project.root / "out.json").read_text())
    assert [(r["x"], r["result.a"], r["result.b"]) for r in rows] == [
        (1, 1, None),
        (2, None, 20),
        (3, 3, None),
        (4, None, 40),
        (5, 5, None),
    ]


def test_a_rows_file_row_with_an_extra_field_is_a_located_error_not_a_shifted_table(project):
    project.write("f.py", HEAD + "def work(x, mode):\n    return x\n")
    project.write("r.csv", "x,mode\n1,ok,extra\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: r.csv}\n")
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "r.csv line 2 has 3 fields, the header has 2" in done.stderr
    assert "sweep.rows.file" in done.stderr


def test_a_finished_run_collects_and_shows_logs_after_its_rows_and_chunk_files_moved(project):
    project.write("rows.csv", "x,y\n1,2\n3,4\n")
    project.write("d.csv", "v\n1\n2\n3\n4\n5\n")
    body = "def work(x, y, data):\n    print('hello', x)\n    return x + y + data['stop']\n"
    submit(
        project,
        body,
        "  rows: {file: rows.csv}\n  chunks:\n    data: {file: d.csv, rows: 2, pass: path}\n",
    )
    (project.root / "elsewhere").mkdir()
    for name in ("rows.csv", "d.csv"):
        (project.root / name).rename(project.root / "elsewhere" / name)
    collected = project.cli("collect", "run", "-o", "again.csv")
    assert collected.returncode == 0, collected.stderr
    assert (project.root / "again.csv").read_text() == (project.root / "out.csv").read_text()
    table = pd.read_csv(project.root / "again.csv")
    assert list(table["x"]) == [1, 1, 1, 3, 3, 3] and list(table["result"]) == [5, 7, 8, 9, 11, 12]
    logs = project.cli("logs", "run", "4")
    assert logs.returncode == 0 and "x=3 y=4" in logs.stdout and "hello 3" in logs.stdout
    resumed = project.cli("resume", "run")  # going on needs the real files
    assert resumed.returncode == 2 and "rows.csv is gone since this run started" in resumed.stderr


def test_calls_whose_worker_died_are_grouped_and_retried_as_WorkerDied(project):
    body = "import os\ndef work(x):\n    if x == 1:\n        os._exit(3)\n    return x\n"
    submit(project, body, "  product:\n    x: [0, 1, 2]\n", expect=1)
    status = json.loads(project.cli("status", "run", "--json").stdout)
    assert [(g["error_type"], g["count"]) for g in status["failure_groups"]] == [("WorkerDied", 1)]
    table = pd.read_csv(project.root / "out.csv")
    assert table["error"][1] == "WorkerDied: process exited with code 3 before the call returned"
    unmatched = project.cli("retry", "run", "--error", "TaskFailed")
    assert unmatched.returncode == 2
    assert "no failed call matches --error TaskFailed (types here: WorkerDied)" in unmatched.stderr
    assert "TaskFailed" not in json.dumps(
        json.loads((project.root / "run" / "run.json").read_text()).get("retries", [])
    )
    retried = project.cli("retry", "run", "--error", "WorkerDied")
    assert retried.returncode == 1 and "WorkerDied" in retried.stderr
    assert "WorkerDied" in project.cli("retry", "--help").stdout


def test_attempts_count_every_run_of_a_call_across_retry(project):
    body = (
        "import os\ndef work(x):\n"
        "    open(os.path.join(os.environ['RUNS_DIR'], 'ran.txt'), 'a').write('x\\n')\n"
        "    raise ValueError('always')\n"
    )
    env = {"RUNS_DIR": str(project.root)}
    project.write("f.py", HEAD + body)
    project.manifest("script: f.py\nfunction: work\nretries: 1\nsweep:\n  product:\n    x: [1]\n")
    assert (
        project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv", env=env).returncode
        == 1
    )
    assert list(pd.read_csv(project.root / "out.csv")["attempts"]) == [2]
    assert project.cli("retry", "run", env=env).returncode == 1
    ran = len((project.root / "ran.txt").read_text().split())
    assert ran == 4  # retry gives the call its retries again
    assert list(pd.read_csv(project.root / "out.csv")["attempts"]) == [ran]


def test_an_unprintable_exception_or_a_closed_stdout_fails_only_its_call(project):
    body = (
        "import sys\n"
        "class Weird(Exception):\n    def __str__(self):\n        raise RuntimeError('no str')\n"
        "def work(x):\n"
        "    print('before', x)\n"
        "    if x == 0:\n        raise Weird()\n"
        "    if x == 1:\n        sys.stdout.close()\n        return 'closed'\n"
        "    return x\n"
    )
    submit(project, body, "  product:\n    x: [0, 1, 2]\n", extra="calls_per_task: 3\n", expect=1)
    table = pd.read_csv(project.root / "out.csv")
    assert list(table["status"]) == ["failed", "succeeded", "succeeded"]
    assert (
        table["error"][0] == "Weird: <unprintable Weird>"
        and "raise Weird()" in table["traceback"][0]
    )
    assert list(table["result"][1:]) == ["closed", "2"] and table["stdout"][2] == "before 2\n"


def test_small_messages_say_what_happened(project):
    submit(project, "def work(x):\n    return x\n", "  product:\n    x: [1]\n")
    cancelled = project.cli("cancel", "run")
    assert (
        cancelled.returncode == 0
        and "nothing to cancel: the run had already finished (1 succeeded)" in cancelled.stdout
    )
    project.write("afile", "")
    under_a_file = project.cli("collect", "run", "-o", "afile/out.csv")
    assert under_a_file.returncode == 2 and "afile is a file, not a folder" in under_a_file.stderr
    misspelt = project.cli("submit", "sweep.yaml", "-o", "out/{timestmap}.csv")
    assert misspelt.returncode == 2 and "unknown placeholder {timestmap}" in misspelt.stderr
    assert "{run} and {timestamp}" in misspelt.stderr and not (project.root / "out").exists()
    project.write("f.py", HEAD + "def work(x):\n    return -x\n")
    changed = project.cli("resume", "run")
    assert (
        changed.returncode == 2
        and f"`hog-batch submit ... --reuse {project.root / 'run'}`" in changed.stderr
    )


def test_a_call_that_kills_its_process_keeps_what_it_printed(project):
    body = (
        "import os, sys\ndef work(x):\n"
        "    print('working on', x, flush=True)\n    os.write(2, b'low-level note\\n')\n"
        "    if x == 1:\n        os._exit(3)\n    return x\n"
    )
    submit(project, body, "  product:\n    x: [0, 1, 2]\n", extra="calls_per_task: 3\n", expect=1)
    table = pd.read_csv(project.root / "out.csv")
    assert list(table["status"]) == ["succeeded", "failed", "succeeded"]
    assert list(table["stdout"]) == ["working on 0\n", "working on 1\n", "working on 2\n"]
    assert table["stderr"][1] == "low-level note\n"
