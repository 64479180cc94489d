"""Task-wide limits the runner enforces itself: a walltime that kills for real, and an output budget."""

from __future__ import annotations

import os
import subprocess
import time

from test_task_isolation import runner_command

from groundhog_batch.render.payload import TaskPayload, iter_records

SCRIPT = """\
import os, subprocess, time
def hang(x, pid_file):
    child = subprocess.Popen(["sleep", "120"])
    with open(pid_file, "w") as handle:
        handle.write(str(child.pid))
    time.sleep(120)
def big(x):
    return "y" * 1000
"""


def run_task(tmp_path, payload: TaskPayload):
    command = runner_command(tmp_path, SCRIPT, payload)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done, list(iter_records(done.stdout.splitlines()))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().split()[2]
    return state != "Z"


def test_past_its_walltime_a_task_kills_its_processes_and_exits_124(tmp_path):
    pid_file = tmp_path / "child.pid"
    payload = TaskPayload(
        function="hang",
        call_indices=[0, 1],
        swept_kwargs=[{"x": 0}, {"x": 1}],
        args=[],
        kwargs={"pid_file": str(pid_file)},
        walltime_s=1.5,
    )
    started = time.time()
    done, records = run_task(tmp_path, payload)
    assert done.returncode == 124
    assert time.time() - started < 30
    assert (
        records[0]["call"] == 0
        and not records[0]["ok"]
        and "walltime of 1.5 s" in records[0]["error"]
    )
    assert records[1] == {"call": 1, "deferred": True, "reason": "the task ran past its walltime"}
    assert not alive(int(pid_file.read_text()))  # the call's own child is gone too


def test_records_over_the_output_budget_are_deferred_to_another_task(tmp_path):
    payload = TaskPayload(
        function="big",
        call_indices=[0, 1, 2, 3],
        swept_kwargs=[{"x": i} for i in range(4)],
        args=[],
        kwargs={},
        max_stdout_bytes=2600,
    )
    done, records = run_task(tmp_path, payload)
    assert done.returncode == 0, done.stderr
    assert [r["ok"] for r in records[:2]] == [True, True]
    assert [(r["call"], r.get("deferred")) for r in records[2:]] == [(2, True), (3, True)]
