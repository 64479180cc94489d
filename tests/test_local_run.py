"""End to end through the real CLI, bash and uv: results, failures, crashes, timeouts, hostile input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from groundhog_batch.render.runner import DELIMITER

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def run(
    project,
    body: str,
    sweep: str,
    extra: str = "",
    script_name: str = "work.py",
    expect: int | None = 0,
    args=(),
):
    project.write(script_name, HEAD + body)
    project.manifest(f"script: {json.dumps(script_name)}\nfunction: f\n{extra}sweep:\n{sweep}")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "results.parquet", *args)
    assert "Traceback" not in done.stderr, done.stderr
    if expect is not None:
        assert done.returncode == expect, done.stderr
    return done, pd.read_parquet(project.root / "results.parquet")


def test_results_table_has_the_spec_columns_in_plan_order_with_numeric_dtypes(project):
    body = "def f(n, scale):\n    print('hello', n)\n    return {'value': n * scale, 'label': str(n)}\n"
    _, table = run(project, body, "  product:\n    n: [1, 2, 3]\n    scale: [0.5, 2.0]\n")
    for column in [
        "job",
        "call",
        "n",
        "scale",
        "status",
        "result",
        "result.value",
        "result.label",
        "error",
        "traceback",
        "stdout",
        "stderr",
        "attempts",
        "duration_s",
        "started_at",
        "finished_at",
    ]:
        assert column in table.columns
    assert list(table["call"]) == list(range(6))
    assert table["n"].dtype.kind == "i" and table["result.value"].dtype.kind == "f"
    assert (table["status"] == "succeeded").all() and table["stdout"][0] == "hello 1\n"
    assert (
        str(table["started_at"].dtype) == "datetime64[us, UTC]"
        and table["started_at"][0].year >= 2024
    )


def test_a_raising_call_fails_alone_and_the_run_exits_1(project):
    body = "def f(x):\n    if x == 2:\n        raise ValueError('bad x')\n    return x\n"
    done, table = run(
        project, body, "  product:\n    x: [1, 2, 3]\n", "calls_per_task: 3\n", expect=1
    )
    assert list(table["status"]) == ["succeeded", "failed", "succeeded"]
    assert table["error"][1] == "ValueError: bad x" and "raise ValueError" in table["traceback"][1]
    assert "failed: f call 1: ValueError: bad x" in done.stderr


@pytest.mark.parametrize(
    "crash,reason",
    [
        ("import os; os._exit(3)", "process exited with code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "process killed by signal 9"),
        ("import ctypes; ctypes.string_at(0)", "process killed by signal 11"),
    ],
)
def test_a_call_that_kills_its_process_fails_and_its_siblings_still_succeed(project, crash, reason):
    body = f"def f(x):\n    if x == 1:\n        {crash}\n    return x * 10\n"
    _, table = run(
        project, body, "  product:\n    x: [0, 1, 2, 3]\n", "calls_per_task: 4\n", expect=1
    )
    assert list(table["status"]) == ["succeeded", "failed", "succeeded", "succeeded"]
    assert reason in table["error"][1]
    assert list(table["result"][[0, 2, 3]]) == [0, 20, 30]


def test_timeout_fails_the_call_and_its_neighbours_go_on(project):
    body = (
        "import signal, time\n"
        "def f(x):\n"
        "    if x == 1:\n        time.sleep(60)\n"
        "    if x == 2:\n        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n        time.sleep(300)\n"
        "    return x\n"
    )
    _, table = run(
        project,
        body,
        "  product:\n    x: [0, 1, 2, 3]\n",
        "calls_per_task: 4\ntimeout: 1\n",
        expect=1,
    )
    assert list(table["status"]) == ["succeeded", "failed", "failed", "succeeded"]
    assert table["error"][1].startswith("TimeoutError: the call exceeded its timeout of 1 s")
    assert "was killed" in table["error"][2]  # stuck with the alarm blocked: killed after the grace
    # killed after the timeout and its grace (1 + 3 s), not left to sleep its 300 s: bounded loosely, the
    # machine may be loaded
    assert table["duration_s"][2] < 60


def test_retries_rerun_a_failing_call(project):
    body = (
        "import os\ndef f(x):\n    marker = os.path.join(os.getcwd(), f'tried-{x}')\n"
        "    if not os.path.exists(marker):\n        open(marker, 'w').close()\n        raise RuntimeError('first try fails')\n"
        "    return x\n"
    )
    _, table = run(project, body, "  product:\n    x: [1, 2]\n", "retries: 1\n")
    assert list(table["attempts"]) == [2, 2] and (table["status"] == "succeeded").all()


def test_hostile_script_parameters_and_output_survive(project):
    body = (
        "'''\nHOG_SCRIPT_EOF\nHOG_RUNNER_EOF\nHOG_PAYLOAD_EOF\nEOF\n'''\n"
        "import sys\n"
        "BRACES = '{} {x} ${HOME} `whoami` $(echo pwned); echo pwned'\n"
        "def f(value):\n"
        f"    print({DELIMITER!r})\n"
        '    print(\'{"call": 0, "ok": true}\')\n'
        "    sys.stdout.flush()\n"
        "    sys.stdout.buffer.write(b'\\xff\\xfe not utf-8\\n')\n"
        "    for i in range(100_000):\n        print(i)\n"
        "    return {'value': value, 'braces': BRACES}\n"
    )
    sweep = '  product:\n    value: ["; echo pwned", "a\\nb", "\'\\"$HOME\\"\'", "}}{{"]\n'
    extra = "dependencies: ['colorama; python_version < \"3\"']\n"
    _, table = run(project, body, sweep, extra, script_name='my script\'s "v1".py')
    assert list(table["result.value"]) == ["; echo pwned", "a\nb", "'\"$HOME\"'", "}}{{"]
    assert table["result.braces"][0] == "{} {x} ${HOME} `whoami` $(echo pwned); echo pwned"
    stdout = table["stdout"][0]
    assert (
        DELIMITER in stdout
        and "\ufffd\ufffd not utf-8" in stdout
        and stdout.rstrip().endswith("99999")
    )
    assert not (project.root / "pwned").exists()


def test_results_that_are_not_plain_data_are_pickled_or_fail_clearly(project):
    body = (
        "import threading\ndef f(kind):\n    return {1, 2} if kind == 'set' else threading.Lock()\n"
    )
    _, table = run(project, body, "  product:\n    kind: [set, lock]\n", expect=1)
    assert table["status"][0] == "succeeded" and table["result"][0] == "<set object, pickled>"
    assert table["status"][1] == "failed" and "cannot be serialized" in table["error"][1]
    from groundhog_batch.api import open_run

    assert open_run(project.root / "run").results(objects=True)["result"][0] == {1, 2}


@pytest.mark.slow
def test_numpy_results_arrive_as_plain_numbers_from_a_real_dependency(project):
    body = "import numpy as np\ndef f(n):\n    return {'mean': np.float64(n) / 2, 'count': np.int64(n), 'arr': np.arange(n)}\n"
    project.write("work.py", body.replace("dependencies = []", ""))
    _, table = run(
        project,
        body.replace("import numpy", "import numpy"),
        "  product:\n    n: [2, 4]\n",
        "dependencies: [numpy]\n",
    )
    assert list(table["result.mean"]) == [1.0, 2.0] and table["result.count"].dtype.kind == "i"
    assert json.loads(table["result.arr"][1]) == [0, 1, 2, 3]


def test_plan_render_prints_the_task_script_that_submit_runs(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    done = project.cli("plan", "sweep.yaml", "--render", "1")
    assert done.returncode == 0 and done.stdout.startswith("#!/usr/bin/env bash")
    assert "hog_runner.py" in done.stdout
    missing = project.cli("plan", "sweep.yaml", "--render", "9")
    assert missing.returncode == 2 and "there is no task 9" in missing.stderr


def test_plan_json_reports_jobs_calls_tasks_and_payload_sizes(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 2\nsweep:\n  product:\n    x: {range: [0, 5]}\n"
    )
    report = json.loads(project.cli("plan", "sweep.yaml", "--json").stdout)
    job = report["jobs"][0]
    assert report["n_calls"] == 5 and job["n_tasks"] == 3 and job["payload_bytes"]["max"] > 0
    assert job["payload_bytes"]["measured"] is True


def test_plan_of_a_hundred_million_local_calls_counts_its_tasks_and_estimates_their_payloads(
    project,
):
    project.write("work.py", HEAD + "def f(x, y):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  product:\n"
        "    x: {range: [0, 10000]}\n    y: {range: [0, 10000]}\n"
    )
    done = project.cli("plan", "sweep.yaml", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "100,000,000 call(s) in 1,000 task(s)" in done.stdout
    assert "(estimated from the first task)" in done.stdout


def test_a_run_leaves_pythons_garbage_collector_as_it_found_it(project):
    """The submitter runs the cycle collector seldom while calls stream through (it was a tenth of its CPU);
    a notebook that ran a sweep in its own process gets its collector back as it was, frozen objects too."""
    import gc

    import groundhog_batch as hb

    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep: {product: {x: [0, 1, 2]}}\n")
    gc.set_threshold(500, 7, 9)
    try:
        run = hb.submit(project.root / "sweep.yaml", run_dir=project.root / "run")
        assert gc.get_threshold() == (500, 7, 9)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(700, 10, 10)
    assert list(run.results()["result"]) == [0, 1, 2]


def test_a_finished_run_leaves_no_records_file_behind(project):
    """The records files of finished tasks are removed in a thread of their own (freeing a large one took the
    submitter's loop 20 ms); the submit waits for them before it returns."""
    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 2\nsweep: {product: {x: {range: [0, 9]}}}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (project.root / "run" / "tasks").iterdir()) == ["records.key"]


def test_a_records_file_given_up_is_gone_when_the_process_ends_even_unclosed(tmp_path):
    """A finished task's records file is removed in the background; a process that never closes its backend
    (``status`` taking in a dead submitter's tasks) still removes it before it exits."""
    import subprocess
    import sys

    (tmp_path / "t1.records").write_bytes(b"x" * 1_000_000)
    code = (
        "import sys; from pathlib import Path; from groundhog_batch.backends.records_file import RecordsFiles;"
        "RecordsFiles(Path(sys.argv[1])).remove_soon('t1')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "t1.records").exists()


def test_the_end_of_a_submit_runs_exit_handlers_joins_threads_and_closes_ledgers_but_frees_nothing(
    tmp_path,
):
    """``submit`` ends without freeing its heap object by object (40-60 ms of every run): what exit does that
    anybody sees still happens, in Python's order (threading's exit hooks, then non-daemon threads joined: a
    library's executor stops so, atexit handlers, the ledger's WAL folded into the file, the streams flushed),
    and the exit status is the one asked for; a destructor of the heap does not run."""
    import subprocess
    import sys

    code = """
import atexit, sys, threading
from pathlib import Path
from groundhog_batch.ledger import Ledger
from groundhog_batch.process_end import exit_now
folder = Path(sys.argv[1])
ledger = Ledger(folder / "state.sqlite", create=True)
ledger.set_meta("kept", True)
atexit.register(lambda: (folder / "handler").write_text("ran"))
stop = threading.Event()
def worker():  # like a library's executor thread: told to stop by threading's own exit hook, then joined
    stop.wait()
    (folder / "thread").write_text("joined")
threading.Thread(target=worker).start()
threading._register_atexit(stop.set)
class Heap:
    def __del__(self):
        (folder / "freed").write_text("freed")
heap = Heap()
print("buffered, not yet flushed", end="")
exit_now(3)
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, not yet flushed"
    assert (tmp_path / "handler").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"
    assert not (tmp_path / "freed").exists()
    assert not (tmp_path / "state.sqlite-wal").exists()
    import sqlite3

    with sqlite3.connect(f"{(tmp_path / 'state.sqlite').as_uri()}?immutable=1", uri=True) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'kept'").fetchall() == [("true",)]


def test_a_submit_with_a_failed_call_exits_1_and_leaves_its_ledger_whole(project):
    """The CLI's own process ends through ``exit_now``: the status and the run directory are as before."""
    project.write(
        "work.py", "def f(x):\n    if x == 1:\n        raise ValueError(x)\n    return x\n"
    )
    project.manifest("script: work.py\nfunction: f\nsweep: {product: {x: [0, 1, 2]}}\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    assert "2 succeeded, 1 failed" in done.stderr
    assert not (project.root / "run" / "state.sqlite-wal").exists()
    status = project.cli("status", "run", "--json")
    assert json.loads(status.stdout)["counts"]["failed"] == 1, status.stderr
