"""Nothing is lost, nothing runs twice: a task's records file is the truth of what its calls did, whatever stops
the task (its runner killed, a cancel, a full disk), and a cancel sticks. Every call appends its number to a
side-effects file, so each test counts how often each call really ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import SCRIPT_HEAD as HEAD
from conftest import small_filesystem, task_processes

from groundhog_batch.api import cancel, open_run


def counting_script(sleep_s: float) -> str:
    return HEAD + (
        "import os, time\n"
        "def f(x):\n"
        f"    time.sleep({sleep_s})\n"
        "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
        "        log.write(f'{x}\\n')\n"
        "    return x\n"
    )


def ran(side_effects: Path) -> Counter:
    """How often each call ran."""
    return (
        Counter(int(x) for x in side_effects.read_text().split())
        if side_effects.exists()
        else Counter()
    )


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def cli(project, *args: str, side_effects: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", *args],
        cwd=project.root,
        env={**os.environ, "SIDE_EFFECTS": str(side_effects)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def by_status(run_dir: Path) -> dict[str, set[int]]:
    table = open_run(run_dir).results()
    return {
        status: set(table.loc[table["status"] == status, "call"]) for status in set(table["status"])
    }


@pytest.mark.parametrize("stop_first", [True, False], ids=["stopped-then-killed", "killed"])
def test_a_killed_runner_supervisor_loses_no_finished_call_and_runs_none_twice(project, stop_first):
    """One task of 1,000 calls of 2 ms; its runner's supervisor is SIGKILLed (first SIGSTOPped, so its worker
    goes on and its records reach only the records file). Every call that returned keeps its result, none runs
    again, and only the call that was running when the task died (if any) is failed, as TaskFailed."""
    n_calls = 1000
    side_effects = project.root / "side-effects.txt"
    project.write("work.py", counting_script(0.002))
    project.manifest(
        f"script: work.py\nfunction: f\ncalls_per_task: {n_calls}\n"
        f"sweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
    )
    run_dir = project.root / "run"
    submitter = cli(project, "submit", "sweep.yaml", "--run-dir", "run", side_effects=side_effects)
    wait_for(
        lambda: (
            sum(ran(side_effects).values()) >= 100 and any(s for _, s, _ in task_processes(run_dir))
        )
    )
    [(_, supervisor, _)] = task_processes(run_dir)
    if stop_first:
        os.kill(supervisor, signal.SIGSTOP)
        so_far = sum(ran(side_effects).values())
        wait_for(lambda: sum(ran(side_effects).values()) >= so_far + 200)
    os.kill(supervisor, signal.SIGKILL)
    _, stderr = submitter.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    runs, states = ran(side_effects), by_status(run_dir)
    assert [x for x, n in runs.items() if n > 1] == []  # nothing ran twice
    failed = states.get("failed", set())
    assert len(failed) <= 1 and states.get("succeeded", set()) | failed == set(
        range(n_calls)
    )  # nothing lost
    assert (
        set(runs) - failed == states["succeeded"]
    )  # every call that ran is kept, but the one killed as it ran
    assert submitter.returncode == (1 if failed else 0), stderr
    if failed:
        assert (
            open_run(run_dir)
            .results()
            .set_index("call")
            .loc[min(failed), "error"]
            .startswith("TaskFailed: the task was killed by signal 9 while this call ran")
        )


def test_cancel_keeps_the_call_it_let_finish_and_resume_does_not_run_it_again(project):
    side_effects = project.root / "side-effects.txt"
    project.write("work.py", counting_script(0.4))
    project.manifest(
        "script: work.py\nfunction: f\nmax_parallel: 1\nsweep:\n  product:\n    x: {range: [0, 20]}\n"
    )
    run_dir = project.root / "run"
    assert (
        cli(
            project,
            "submit",
            "sweep.yaml",
            "--run-dir",
            "run",
            "--detach",
            side_effects=side_effects,
        ).wait(60)
        == 0
    )
    wait_for(lambda: len(ran(side_effects)) >= 3)
    stopped = project.cli("cancel", "run")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: open_run(run_dir).holder() is None)
    states = by_status(run_dir)
    assert set(ran(side_effects)) == states["succeeded"]  # the call the cancel let finish is kept
    assert states["cancelled"] == set(range(20)) - states["succeeded"]
    resumed = project.cli("resume", "run", env={"SIDE_EFFECTS": str(side_effects)})
    assert resumed.returncode == 0, resumed.stderr
    assert ran(side_effects) == Counter(range(20))  # each call ran once


def test_a_cancel_before_the_detached_submitter_holds_the_run_sticks(project):
    """`cancel` lands after `submit --detach` wrote the run and before its background process took the run's
    lock: the calls stay cancelled (as cancel said), and none runs."""
    side_effects = project.root / "side-effects.txt"
    project.write("work.py", counting_script(0.2))
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 1\n"
        "sweep:\n  product:\n    x: {range: [0, 30]}\n"
    )
    run_dir = project.root / "run"
    submitter = cli(
        project, "submit", "sweep.yaml", "--run-dir", "run", "--detach", side_effects=side_effects
    )
    wait_for(lambda: (run_dir / "run.json").exists(), timeout_s=120)
    said = cancel(run_dir)  # in this process: long before the background process has started Python
    assert submitter.wait(60) == 0
    wait_for(
        lambda: open_run(run_dir).holder() is None
    )  # it held the run (and ran what it found) or stopped
    assert open_run(run_dir).counts() == said
    assert set(ran(side_effects)) == by_status(run_dir).get("succeeded", set())
    if said["succeeded"] == 0:  # cancel won the race, as it nearly always does
        assert said["cancelled"] == 30 and not side_effects.exists()


def test_a_failure_read_again_from_the_records_file_after_a_killed_submitter_counts_one_attempt(
    project,
):
    """The failure of call 0 reached the ledger; the submitter is SIGKILLed while call 1 runs; resume reads the
    task's records file, which holds that failure too: call 0 still shows 1 attempt."""
    started = project.root / "started"
    project.write(
        "work.py",
        HEAD
        + (
            "import os, time\n"
            "def f(x):\n"
            "    if x == 0:\n"
            "        raise ValueError('no')\n"
            f"    if not os.path.exists({str(started)!r}):\n"
            f"        open({str(started)!r}, 'w').close()\n"
            "        time.sleep(300)\n"
            "    return x\n"
        ),
    )
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 2\nsweep:\n  product:\n    x: [0, 1]\n"
    )
    run_dir = project.root / "run"
    submitter = cli(
        project, "submit", "sweep.yaml", "--run-dir", "run", side_effects=project.root / "unused"
    )
    wait_for(lambda: started.exists() and open_run(run_dir).counts()["failed"] == 1)
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait(30)
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 1, resumed.stderr
    table = open_run(run_dir).results().set_index("call")
    assert list(table["status"]) == ["failed", "succeeded"]
    assert list(table["attempts"]) == [1, 1]


def test_a_runner_whose_stderr_is_on_the_full_disk_too_still_stops_cleanly(tmp_path):
    """The records file fills up and stderr (a log on the same disk) takes no note either: the runner stops with
    its full-disk exit code, every call that ran recorded, instead of crashing on the note it could not write."""
    from test_task_isolation import runner_command

    from groundhog_batch.render.payload import TaskPayload
    from groundhog_batch.render.runner import RECORDS_FULL_EXIT

    calls = list(range(50))
    payload = TaskPayload(
        function="f", call_indices=calls, swept_kwargs=[{"x": i} for i in calls], args=[], kwargs={}
    )
    command = runner_command(tmp_path, "def f(x):\n    return 'x' * 20000\n", payload)
    with small_filesystem(tmp_path / "full", "200k") as mount:
        with open(mount / "records", "wb") as records, open("/dev/full", "wb") as full_stderr:
            done = subprocess.run(
                command,
                stdout=records,
                stderr=full_stderr,
                timeout=120,
            )
        kept = (mount / "records").read_bytes()
    assert done.returncode == RECORDS_FULL_EXIT
    assert 0 < kept.count(b'"ok": true') < 50


def test_a_full_disk_pauses_the_run_keeping_every_finished_call_and_resume_goes_on(project):
    """The run directory is on a 400 KB file system; 400 calls print 20 KB each, 200 per task. The submitter stops
    with exit 2 and says the run is paused; no call failed and none ran twice; once there is space, resume runs
    the rest, each call exactly once."""
    side_effects = project.root / "side-effects.txt"
    env = {"SIDE_EFFECTS": str(side_effects)}
    project.write(
        "work.py",
        HEAD
        + (
            "import os\n"
            "def f(x):\n"
            "    print(os.urandom(10000).hex())\n"
            "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
            "        log.write(f'{x}\\n')\n"
            "    return x\n"
        ),
    )
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 200\nsweep:\n  product:\n    x: {range: [0, 400]}\n"
    )
    with small_filesystem(project.root / "full", "400k") as mount:
        paused = project.cli("submit", "sweep.yaml", "--run-dir", "full/run", env=env)
        before = ran(side_effects)
        assert sum(before.values()) < 400 and all(n == 1 for n in before.values())
        table = open_run(project.root / "full" / "run").results()
        failed = table[table["status"] == "failed"]
        assert failed.empty, (list(failed["error"]), paused.stderr)
        assert paused.returncode == 2, paused.stderr
        assert (
            "the disk is full" in paused.stderr
            and "paused" in paused.stderr
            and "hog-batch resume" in paused.stderr
        )
        assert "Traceback" not in paused.stderr
        assert (
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(mount)], capture_output=True
            ).returncode
            == 0
        )
        resumed = project.cli("resume", "full/run", env=env)
        assert resumed.returncode == 0, resumed.stderr
        table = open_run(project.root / "full" / "run").results()
        assert (table["status"] == "succeeded").all() and list(table["result"]) == list(range(400))
        assert ran(side_effects) == Counter(range(400))  # every call exactly once
