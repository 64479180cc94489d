"""Runs survive: a killed submitter loses nothing, resume never re-runs a succeeded call."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import COUNTING_SCRIPT as COUNTING
from conftest import SCRIPT_HEAD as HEAD
from conftest import task_processes, waiting_script

from groundhog_batch.api import open_run
from groundhog_batch.render.payload import unframe_records

N_CALLS = 40


def start_submit(project, side_effects, run_dir="run"):
    return subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", run_dir],
        cwd=project.root,
        env={**os.environ, "SIDE_EFFECTS": str(side_effects)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def counting_project(project):
    project.write("work.py", COUNTING)
    project.manifest(
        f"script: work.py\nfunction: f\ncalls_per_task: 5\nsweep:\n  product:\n    x: {{range: [0, {N_CALLS}]}}\n"
    )
    return project.root / "side-effects.txt"


@pytest.mark.parametrize("kill_after_s", [0.4, 0.9, 1.5, 2.2])
def test_sigkill_of_the_submitter_then_resume_loses_nothing_and_reruns_nothing(
    project, kill_after_s
):
    side_effects = counting_project(project)
    submitter = start_submit(project, side_effects)
    time.sleep(kill_after_s)
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait()
    if not (project.root / "run" / "run.json").exists():
        assert not side_effects.exists()  # killed while planning: nothing ran
        return
    before = open_run(project.root / "run").counts()
    done = project.cli("resume", "run", env={"SIDE_EFFECTS": str(side_effects)})
    assert done.returncode == 0, done.stderr
    table = open_run(project.root / "run").results()
    assert (table["status"] == "succeeded").all() and list(table["result"]) == list(range(N_CALLS))
    runs = Counter(int(line) for line in side_effects.read_text().split())
    assert set(runs) == set(range(N_CALLS))
    assert all(count == 1 for count in runs.values()), (before, runs)


def test_interrupt_stops_every_process_and_resume_finishes(project):
    project.write(
        "work.py",
        HEAD + "import time\ndef f(x):\n    time.sleep(120 if x == 0 else 0)\n    return x\n",
    )
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nsweep:\n  product:\n    x: [0, 1]\n"
    )
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 90
    while time.time() < deadline and open_run_counts(project).get("succeeded", 0) < 1:
        time.sleep(0.2)
    submitter.send_signal(signal.SIGINT)
    _, stderr = submitter.communicate(timeout=30)
    assert submitter.returncode == 130, stderr
    assert "hog-batch resume" in stderr and "Traceback" not in stderr
    time.sleep(0.5)
    leftover = subprocess.run(
        ["pgrep", "-f", str(project.root / "run")], capture_output=True, text=True
    ).stdout.split()
    assert leftover == []
    run = open_run(project.root / "run")
    assert run.counts()["succeeded"] == 1 and run.counts()["pending"] == 1


def open_run_counts(project):
    try:
        return open_run(project.root / "run").counts()
    except Exception:
        return {}


def test_status_collect_runs_retry_and_cancel(project):
    project.write(
        "work.py",
        HEAD
        + "import os\ndef f(x):\n    if x == 1 and not os.path.exists('fixed'):\n        raise ValueError('not yet')\n    return x\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0, 1, 2]\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    status = project.cli("status", "run")
    assert (
        "2 succeeded, 1 failed" in status.stdout
        and "failed: f call 1: ValueError: not yet" in status.stdout
    )
    (project.root / "fixed").write_text("")
    assert project.cli("retry", "run").returncode == 0
    collected = project.cli("collect", "run", "-o", "out.csv")
    assert (
        collected.returncode == 0 and (project.root / "out.csv").read_text().count("succeeded") == 3
    )
    assert "run" in project.cli("runs").stdout or project.cli("runs").returncode == 0
    cancelled = project.cli("cancel", "run")
    assert cancelled.returncode == 0 and "3 succeeded" in cancelled.stdout


def test_cancel_of_a_running_run_stops_it_and_marks_pending_calls_cancelled(project):
    project.write("work.py", HEAD + "import time\ndef f(x):\n    time.sleep(0.5)\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 1\nsweep:\n  product:\n    x: {range: [0, 20]}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0 and "running in the background (pid" in done.stderr
    deadline = time.time() + 60
    while time.time() < deadline and open_run_counts(project).get("succeeded", 0) < 1:
        time.sleep(0.2)
    assert project.cli("cancel", "run").returncode == 0
    counts = open_run(project.root / "run").counts()
    assert (
        counts["cancelled"] > 0
        and counts["succeeded"] + counts["cancelled"] + counts["failed"] == 20
    )


def test_a_second_process_on_a_running_run_follows_it_with_the_holder_named(project):
    go = (
        project.root / "go"
    )  # the call waits for it: the run is surely still going when resume looks
    project.write("work.py", waiting_script(go))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0]\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach").returncode == 0
    holder = open_run(project.root / "run").holder()
    follower = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "resume", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = ""
    while "following: " not in said and (line := follower.stderr.readline()):
        said += line
    assert f"(pid {holder['pid']} on " in said, said
    go.touch()
    _, rest = follower.communicate(timeout=120)
    assert follower.returncode == 0, said + rest
    assert "work: 1 succeeded" not in said + rest and "sweep: 1 succeeded" in rest
    assert open_run(project.root / "run").counts()["succeeded"] == 1


def test_reuse_takes_identical_succeeded_calls_from_an_earlier_run(project):
    side_effects = counting_project(project)
    env = {"SIDE_EFFECTS": str(side_effects)}
    assert project.cli("submit", "sweep.yaml", "--run-dir", "first", env=env).returncode == 0
    assert (
        project.cli(
            "submit", "sweep.yaml", "--run-dir", "second", "--reuse", "first", env=env
        ).returncode
        == 0
    )
    assert len(side_effects.read_text().split()) == N_CALLS
    assert (open_run(project.root / "second").results()["status"] == "succeeded").all()


def test_cancel_after_a_killed_submitter_keeps_what_its_tasks_recorded(project):
    side_effects = counting_project(project)
    submitter = start_submit(project, side_effects)
    deadline = time.time() + 60
    while time.time() < deadline and not (
        side_effects.exists() and len(side_effects.read_text().split()) >= 8
    ):
        time.sleep(0.05)
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait()
    deadline = time.monotonic() + 60
    while left := task_processes(project.root / "run"):
        # the orphaned tasks finish their current call, record it, and stop
        assert time.monotonic() < deadline, f"orphaned tasks still running: {left}"
        time.sleep(0.05)
    assert project.cli("cancel", "run").returncode == 0
    ran = Counter(int(line) for line in side_effects.read_text().split())
    table = open_run(project.root / "run").results()
    succeeded = set(table.loc[table["status"] == "succeeded", "call"])
    assert succeeded == set(ran)  # every call that ran has its result; none is lost to the cancel
    assert set(table["status"]) <= {"succeeded", "cancelled"}


def test_a_folder_without_a_complete_run_is_refused_clearly(project):
    (project.root / "half").mkdir()
    (project.root / "half" / "state.sqlite").write_bytes(b"")
    done = project.cli("resume", "half")
    assert done.returncode == 2 and "not a hog-batch run directory (no run.json)" in done.stderr
    assert "Traceback" not in done.stderr


def durable_successes(run_dir) -> set[int]:
    """Calls whose success is on disk: in the ledger, or in a records file a killed task left for resume."""
    done = {
        int(call) for call in open_run(run_dir).results().query("status == 'succeeded'")["call"]
    }
    key_path = run_dir / "tasks" / "records.key"
    key = key_path.read_bytes() if key_path.exists() else b""
    for path in (run_dir / "tasks").glob("*.records"):
        secret = hmac.new(key, path.stem.encode(), hashlib.sha256).hexdigest()[:32]
        try:
            lines = unframe_records(path.read_bytes(), secret).splitlines()
        except FileNotFoundError:  # the task finished and its records reached the ledger
            continue
        for line in lines:
            record = json.loads(line)
            if record.get("ok") is True:
                done.add(int(record["call"]))
    return done


def kill_in_a_task(run_dir, which: int, seeded: random.Random, before) -> bool:
    """SIGKILL the runner supervisor (``which`` 1) or the worker (2) of one task running calls; False if none.

    A supervisor is SIGSTOPped first, as in the issue: its worker goes on, and the records it writes reach the
    records file but not the submitter; ``before()`` notes what is on disk then, just before the SIGKILL.
    """
    deadline = time.monotonic() + 1.0
    while not (
        running := sorted(pids[which] for pids in task_processes(run_dir) if pids[2])
    ):  # calls started
        if time.monotonic() > deadline:  # between tasks, or the run is done
            before()
            return False
        time.sleep(0.02)
    pid = seeded.choice(running)
    try:
        if which == 1:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.1)
        before()
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def kill_the_submitter(process, how) -> bool:
    how(process)
    return True


KILLS = {
    "SIGKILL of the submitter's process group": lambda process, run_dir, seeded, before: (
        before() or kill_the_submitter(process, lambda p: os.killpg(p.pid, signal.SIGKILL))
    ),
    "SIGTERM of the submitter (a scheduler)": lambda process, run_dir, seeded, before: (
        before() or kill_the_submitter(process, lambda p: p.send_signal(signal.SIGTERM))
    ),
    "SIGINT of the submitter (Ctrl-C)": lambda process, run_dir, seeded, before: (
        before() or kill_the_submitter(process, lambda p: p.send_signal(signal.SIGINT))
    ),
    "SIGSTOP then SIGKILL of a task's runner supervisor": lambda process, run_dir, seeded, before: (
        kill_in_a_task(run_dir, 1, seeded, before)
    ),
    "SIGKILL of a task's worker": lambda process, run_dir, seeded, before: kill_in_a_task(
        run_dir, 2, seeded, before
    ),
}
KILLS_THE_SUBMITTER = {kind for kind in KILLS if "submitter" in kind}
KILLED_AS_IT_RAN = (
    "WorkerDied:",
    "TaskFailed:",
)  # the errors of a call whose task process was killed under it


def snapshot(run_dir, side_effects, snapshots: list[tuple[int, set[int]]]) -> None:
    """Note the calls whose success is on disk now, and how many side effects happened by then."""
    durable = durable_successes(
        run_dir
    )  # first: a call on disk now has its side effect in the lines read next
    snapshots.append(
        (len(side_effects.read_text().split()) if side_effects.exists() else 0, durable)
    )


def test_thirty_seeded_kills_of_submitter_runner_and_worker_lose_nothing_and_run_nothing_twice(
    project,
):
    """30 kills at seeded moments, of a seeded kind: SIGKILL, SIGTERM or SIGINT of the submitter (resumed after
    each), or SIGKILL of a running task's worker or (SIGSTOPped first) runner supervisor (the submitter goes on;
    the call that was running fails, and ``retries`` runs it again). In the end every call succeeded with its result (0 lost); no
    call ran twice, but a call killed as it ran may have done its side effect before the kill (counted apart,
    each with a failed attempt recorded); and no call whose success was on disk at a kill ran again afterwards."""
    n_calls = 400
    project.write("work.py", COUNTING.replace("time.sleep(0.05)", "time.sleep(0.04)"))
    project.manifest(
        f"script: work.py\nfunction: f\ncalls_per_task: 4\nmax_parallel: 2\nretries: 3\n"
        f"sweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
    )
    side_effects = project.root / "side-effects.txt"
    env = {**os.environ, "SIDE_EFFECTS": str(side_effects)}
    run_dir = project.root / "run"
    seeded = random.Random(13)
    moments = [seeded.randrange(25, 75) / 100 for _ in range(30)]
    kinds = [seeded.choice(sorted(KILLS)) for _ in moments]
    snapshots: list[
        tuple[int, set[int]]
    ] = []  # (side-effect lines so far, durable successes), before and after each kill
    landed: Counter = Counter()
    process = None
    for kill_at_s, kind in zip(moments, kinds, strict=True):
        if process is None or process.poll() is not None:
            command = (
                ["resume", "run"]
                if run_dir.exists()
                else ["submit", "sweep.yaml", "--run-dir", "run"]
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "groundhog_batch", *command],
                cwd=project.root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.time() + 60
            while (
                command[0] == "submit"
                and not (run_dir / "run.json").exists()
                and time.time() < deadline
            ):
                time.sleep(0.02)
        time.sleep(kill_at_s)
        landed[kind] += KILLS[kind](
            process, run_dir, seeded, lambda: snapshot(run_dir, side_effects, snapshots)
        )
        if kind in KILLS_THE_SUBMITTER:
            process.wait(timeout=60)
            process = None
        time.sleep(
            0.3
        )  # orphaned tasks notice their submitter is gone; a task's submitter notices it died
        snapshot(run_dir, side_effects, snapshots)
    if process is not None:
        process.wait(timeout=120)
    done = project.cli("resume", "run", env={"SIDE_EFFECTS": str(side_effects)})
    assert done.returncode == 0, done.stderr
    table = open_run(run_dir).results()
    assert (table["status"] == "succeeded").all() and list(table["result"]) == list(
        range(n_calls)
    )  # 0 lost
    effects = [int(line) for line in side_effects.read_text().split()]
    rerun = {x for lines, durable in snapshots for x in effects[lines:] if x in durable}
    assert rerun == set(), f"succeeded calls ran again after a kill: {sorted(rerun)}"
    failed_attempts = {
        call: error
        for call, error in open_run(run_dir).ledger.db.execute(
            "SELECT call, json_extract(record, '$.error') FROM failures"
        )
    }
    twice = {x: n for x, n in Counter(effects).items() if n > 1}
    killed_as_it_ran = {
        x for x in twice if str(failed_attempts.get(x, "")).startswith(KILLED_AS_IT_RAN)
    }
    print(
        f"kills tried {len(kinds)}, landed {sum(landed.values())} ({dict(landed)}); lost 0; run twice "
        f"{len(set(twice) - killed_as_it_ran)}; killed as they ran and run again {len(killed_as_it_ran)}"
    )
    attempts = dict(zip(table["call"], table["attempts"], strict=True))
    assert all(twice[x] <= attempts[x] for x in killed_as_it_ran), (twice, attempts)
    assert set(twice) - killed_as_it_ran == set(), (
        f"calls run twice over {sum(landed.values())} kills ({landed}): {twice}"
    )
    assert (
        len(snapshots) == 60
        and set(effects) == set(range(n_calls))
        and len(set(kinds)) == len(KILLS)
    )
    assert (
        landed["SIGSTOP then SIGKILL of a task's runner supervisor"]
        and landed["SIGKILL of a task's worker"]
    ), landed


def test_a_run_whose_ledger_was_deleted_is_refused_not_read_as_success(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0, 1]\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    for path in (project.root / "run").glob("state.sqlite*"):
        path.unlink()
    for command in (["resume", "run"], ["status", "run"], ["collect", "run"]):
        done = project.cli(*command)
        assert done.returncode == 2 and "ledger" in done.stderr and "missing" in done.stderr, (
            command,
            done.stderr,
        )
        assert "Traceback" not in done.stderr
    assert not (
        project.root / "run" / "state.sqlite"
    ).exists()  # nothing but submit creates a ledger
