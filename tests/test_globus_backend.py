"""Globus Compute: hog-batch submit against the loopback service, driven by the unmodified SDK client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from groundhog_batch.api import open_run

HEAD = "# /// script\n# requires-python = \">=3.10\"\n# dependencies = []\n# ///\n"
COUNTING = HEAD + (
    "import os\n"
    "LOG = {log!r}\n"
    "def f(x):\n"
    "    with open(LOG, 'a') as log:\n"
    "        log.write(f'{{x}}\\n')\n"
    "    print('computing', x)\n"
    "    return {{'x': x, 'square': x * x}}\n"
)


def remote_project(project, globus, n_calls=12, calls_per_task=4, extra=""):
    endpoint = globus.add_endpoint()
    log = project.root / "side-effects.txt"
    project.write("work.py", COUNTING.format(log=str(log)))
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {endpoint}\nconfig: {{account: cis250000}}\n"
                     f"calls_per_task: {calls_per_task}\nsweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n{extra}")
    return log


def side_effects(log):
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def results(project, run_dir="run"):
    run = open_run(project.root / run_dir)
    try:
        return run.results()
    finally:
        run.close()


def test_a_sweep_runs_on_the_endpoint_and_every_result_comes_back(project, globus):
    log = remote_project(project, globus, n_calls=12, calls_per_task=4)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 12
    assert list(table["result.square"]) == [x * x for x in range(12)]
    assert table["stdout"][3] == "computing 3\n"
    assert side_effects(log) == list(range(12))
    assert globus.requests["function"] == 1 and globus.requests["submit"] == 1
    assert globus.rate_limited == 0


def test_more_records_than_the_shell_function_snippet_keeps_by_default(project, globus):
    remote_project(project, globus, n_calls=1500, calls_per_task=1500)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    table = results(project)
    assert (table["status"] == "succeeded").all() and len(table) == 1500


def test_a_config_key_the_endpoint_does_not_accept_is_named_with_the_allowed_ones(project, globus):
    remote_project(project, globus)
    project.manifest(project.root.joinpath("sweep.yaml").read_text().replace("account:", "acount:"))
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 2, done.stderr
    assert "sweep.yaml:4" in done.stderr and "'acount'" in done.stderr and "did you mean 'account'" in done.stderr
    assert "partition" in done.stderr  # the keys it accepts
    assert globus.requests["submit"] == 0 and not (project.root / "run").exists()
    assert "Traceback" not in done.stderr


def test_a_config_value_of_the_wrong_type_names_the_key_and_the_type(project, globus):
    remote_project(project, globus)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--set", "config.nodes_per_block=two")
    assert done.returncode == 2, done.stderr
    assert "'nodes_per_block'" in done.stderr and "an integer" in done.stderr
    assert globus.requests["submit"] == 0


def test_429_and_503_answers_are_retried(project, globus):
    remote_project(project, globus)
    globus.fail_next("submit", 429, 503)
    globus.fail_next("status", 503, 429)
    globus.fail_next("function", 502)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert (results(project)["status"] == "succeeded").all()
    assert globus.requests["submit"] == 3 and globus.requests["function"] == 2


def test_tasks_the_endpoint_fails_are_followed_up_one_by_one(project, globus):
    remote_project(project, globus, n_calls=6, calls_per_task=2)
    globus.fail_tasks = True
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1
    table = results(project)
    assert (table["status"] == "failed").all()
    assert table["error"][0].startswith("TaskFailed: the endpoint reported the task failed: WorkerLost")
    assert globus.requests["task"] >= 3  # one look-up per failed task: they are missing from batch answers


def test_a_detached_run_with_pending_tasks_is_picked_up_later_by_status_and_collect(project, globus):
    log = remote_project(project, globus)
    globus.hold_tasks = True
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: all_ids_committed(project))
    run = open_run(project.root / "run")
    holder = run.holder()
    run.close()
    os.kill(holder["pid"], signal.SIGKILL)  # the background submitter dies; the tasks wait at the endpoint
    wait_for(lambda: open_run(project.root / "run").holder() is None)
    status = project.cli("status", "run", "--json")
    assert json.loads(status.stdout)["counts"].get("submitted") == 12
    globus.fail_next("status", *[500] * 8)  # the service is down: status still answers from the ledger
    status = project.cli("status", "run", "--json")
    assert status.returncode == 0 and "could not ask Globus Compute" in status.stderr
    assert json.loads(status.stdout)["counts"].get("submitted") == 12
    globus.release()
    globus.wait_idle()
    status = project.cli("status", "run", "--json")
    assert json.loads(status.stdout)["counts"]["succeeded"] == 12, status.stderr
    collected = project.cli("collect", "run", "-o", "out.csv")
    assert collected.returncode == 0, collected.stderr
    assert list(pd.read_csv(project.root / "out.csv")["result.x"]) == list(range(12))
    assert side_effects(log) == list(range(12)) and globus.requests["submit"] == 1


def test_a_submitter_killed_mid_run_resumes_without_submitting_again(project, globus):
    log = remote_project(project, globus)
    globus.hold_tasks = True
    submitter = start(project)
    wait_for(lambda: all_ids_committed(project))
    submitter.kill()
    submitter.wait()
    globus.release()
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    assert (results(project)["status"] == "succeeded").all()
    assert side_effects(log) == list(range(12)) and globus.requests["submit"] == 1


def test_a_submitter_killed_right_after_a_batch_request_loses_nothing(project, globus):
    log = remote_project(project, globus, n_calls=12, calls_per_task=2, extra="max_parallel: 3\n")
    submitter = start(project)
    globus.after_submit = lambda: (submitter.kill(), setattr(globus, "after_submit", None))
    submitter.wait(timeout=120)
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 12 and list(table["result.x"]) == list(range(12))
    globus.wait_idle()
    ran = side_effects(log)
    assert set(ran) == set(range(12))
    assert len(ran) - 12 <= 6  # at most the calls of the request whose answer was lost ran twice


def test_without_tokens_and_without_a_terminal_submit_says_how_to_log_in(project, globus, tmp_path):
    remote_project(project, globus)
    env = {"GLOBUS_COMPUTE_CLIENT_ID": "", "GLOBUS_COMPUTE_CLIENT_SECRET": "", "GLOBUS_COMPUTE_USER_DIR": str(tmp_path / "empty")}
    clean = {k: v for k, v in os.environ.items() if k not in env}
    done = subprocess.run([sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml"], cwd=project.root,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**clean, "GLOBUS_COMPUTE_USER_DIR": env["GLOBUS_COMPUTE_USER_DIR"]})
    assert done.returncode == 2, done.stderr
    assert "hog-batch login" in done.stderr and "Traceback" not in done.stderr
    assert globus.requests["submit"] == 0


def test_plan_shows_each_task_payload_and_refuses_a_call_over_the_command_limit(project, globus):
    endpoint = globus.add_endpoint()
    project.write("work.py", HEAD + "def f(items):\n    return len(items)\n")
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
                     f"      values: {list(range(100))}\n      size: 10\n")
    shown = project.cli("plan", "sweep.yaml")
    assert shown.returncode == 0, shown.stderr
    assert "payload" in shown.stdout and "per task" in shown.stdout
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
                     f"      values: {['x' * 1000] * 300}\n      size: 150\n")
    refused = project.cli("plan", "sweep.yaml")
    assert refused.returncode == 2
    assert "KiB" in refused.stderr and "pass: path" in refused.stderr and "Traceback" not in refused.stderr


def start(project, run_dir="run"):
    return subprocess.Popen([sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", run_dir],
                            cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def all_ids_committed(project, run_dir="run"):
    run = open_run(project.root / run_dir)
    try:
        tasks = run.ledger.tasks_in_flight()
        return bool(tasks) and all(external_id for _, _, external_id, _ in tasks)
    finally:
        run.close()


def wait_for(condition, timeout_s=60.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.05)
    pytest.fail("timed out waiting")


def test_results_stay_under_the_service_limit_and_a_result_too_large_fails_alone(project, globus):
    endpoint = globus.add_endpoint()
    project.write("work.py", HEAD + "def f(mb):\n    return 'y' * (mb * 1_000_000)\n")
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {endpoint}\ncalls_per_task: 4\n"
                     "sweep:\n  zip:\n    mb: [3, 3, 3, 5]\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded", "succeeded", "succeeded", "failed"]
    assert [len(r) for r in table["result"][:3]] == [3_000_000] * 3
    assert "over the limit of 4000000 bytes" in table["error"][3]
    assert list(table["attempts"]) == [1, 1, 1, 1]  # the calls deferred for room were not counted as attempts
    assert globus.requests["submit"] == 2
