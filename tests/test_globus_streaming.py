"""Globus Compute with ``shared_records_dir``: finished calls' records reach the ledger while their task runs.

The loopback service (tests/loopback_globus.py) runs each task in a worker
process through globus-compute-endpoint's own code; the shared folder is one
this machine and the workers both see, as a login node and its cluster's
nodes see a shared filesystem. Call 2 waits at a gate (a file), so the task
is caught mid-way: calls 0 and 1 finished, the rest not.
"""

from __future__ import annotations

import os
import subprocess
import sys

from test_globus_backend import HEAD, STRICT_SCHEMA, results, side_effects, wait_for

from groundhog_batch.api import open_run

GATED = HEAD + (
    "import pathlib, time\n"
    "LOG, GATE = {log!r}, {gate!r}\n"
    "def f(x):\n"
    "    if x == 2:\n"
    "        deadline = time.time() + 120\n"
    "        while not pathlib.Path(GATE).exists() and time.time() < deadline:\n"
    "            time.sleep(0.05)\n"
    "    with open(LOG, 'a') as log:\n"
    "        log.write(f'{{x}}\\n')\n"
    "    return x * x\n"
)


def gated_project(project, globus, shared, schema=None):
    endpoint = globus.add_endpoint(schema=schema)
    log, gate = project.root / "side-effects.txt", project.root / "gate"
    project.write("work.py", GATED.format(log=str(log), gate=str(gate)))
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\n"
        f"config: {{shared_records_dir: {str(shared)!r}}}\n"
        "calls_per_task: 5\nsweep:\n  product:\n    x: {range: [0, 5]}\n"
    )
    return log, gate


def start(project):
    return subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def succeeded(project) -> int:
    run = open_run(project.root / "run")
    try:
        return run.counts()["succeeded"]
    finally:
        run.close()


def test_finished_calls_reach_the_ledger_while_their_task_still_runs(project, globus, tmp_path):
    shared = tmp_path / "shared"
    # An endpoint that refuses keys it does not list: shared_records_dir is hog-batch's, never sent to it.
    log, gate = gated_project(project, globus, shared, schema=STRICT_SCHEMA)
    submitter = start(project)
    wait_for(lambda: succeeded(project) == 2, timeout_s=120)
    assert globus.running_workers() == 1  # the task is still running: call 2 waits at the gate
    gate.touch()
    _, stderr = submitter.communicate(timeout=120)
    assert submitter.returncode == 0, stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 5
    assert list(table["result"]) == [x * x for x in range(5)]
    assert side_effects(log) == list(
        range(5)
    )  # each call once: the result's records were not stored again
    assert globus.requests["submit"] == 1
    assert (
        os.listdir(shared) == []
    )  # the run's folder and its files are gone once the ledger holds them


def test_a_worker_lost_mid_task_loses_only_the_call_it_was_running(project, globus, tmp_path):
    log, _ = gated_project(project, globus, tmp_path / "shared")
    submitter = start(project)
    wait_for(lambda: succeeded(project) == 2, timeout_s=120)
    assert globus.kill_workers() == 1  # the node is lost while call 2 runs
    _, stderr = submitter.communicate(timeout=120)
    assert submitter.returncode == 1, stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded", "succeeded", "failed", "succeeded", "succeeded"]
    assert table["error"][2].startswith(
        "TaskFailed: the endpoint reported: WorkerLost: Task failure due to loss of worker"
    )
    assert "while this call ran" in table["error"][2]
    assert side_effects(log) == [0, 1, 3, 4]  # 3 and 4 ran once, in a task of their own
    assert globus.requests["submit"] == 2


def test_a_shared_folder_others_can_write_to_is_refused_before_the_run_exists(
    project, globus, tmp_path
):
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    gated_project(project, globus, shared)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 2, done.stderr
    assert "shared_records_dir" in done.stderr and "writable by other users" in done.stderr
    assert "chmod go-w" in done.stderr and "Traceback" not in done.stderr
    assert globus.requests["submit"] == 0 and not (project.root / "run").exists()


def test_a_submitter_killed_mid_task_resumes_and_every_call_runs_once(project, globus, tmp_path):
    log, gate = gated_project(project, globus, tmp_path / "shared")
    submitter = start(project)
    wait_for(lambda: succeeded(project) == 2, timeout_s=120)
    submitter.kill()
    submitter.wait()
    gate.touch()
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 5
    assert side_effects(log) == list(range(5)) and globus.requests["submit"] == 1


def test_a_worker_that_finds_the_run_folder_open_to_others_streams_nothing_and_the_run_says_so(
    project, globus, tmp_path
):
    from test_globus_backend import all_ids_committed

    shared = tmp_path / "shared"
    log, gate = gated_project(project, globus, shared)
    gate.touch()
    globus.hold_tasks = True
    submitter = start(project)
    wait_for(lambda: all_ids_committed(project), timeout_s=120)
    (run_folder,) = shared.iterdir()
    run_folder.chmod(0o755)  # someone opened it up: the worker must not write records there
    globus.release()
    _, stderr = submitter.communicate(timeout=120)
    assert submitter.returncode == 0, stderr
    assert "could not stream its records through shared_records_dir" in stderr
    assert "is not a private directory" in stderr
    assert (
        list(results(project)["status"]) == ["succeeded"] * 5
    )  # from the task's result, as without it
    assert side_effects(log) == list(range(5)) and not run_folder.exists()
