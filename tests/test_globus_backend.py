"""Globus Compute: hog-batch through the real CLI against the loopback service, driven by the unmodified SDK client.

Every task runs through globus-compute-endpoint's own code (tests/loopback_globus.py):
its template rendering and schema check, ``execute_task`` in a worker process, its
result packing and 10 MiB cap, and GlobusComputeEngine's report of a lost worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from loopback_globus import STRICT_TEMPLATE

from groundhog_batch.api import open_run

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
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
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nconfig: {{account: cis250000}}\n"
        f"calls_per_task: {calls_per_task}\nsweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n{extra}"
    )
    return log


def side_effects(log):
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def submit_remote(project, endpoint, body, manifest_rest):
    """``submit`` of ``f`` in a script of ``body`` on ``endpoint``; the rest of the manifest as given."""
    project.write("work.py", HEAD + body)
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {endpoint}\n{manifest_rest}")
    return project.cli("submit", "sweep.yaml", "--run-dir", "run")


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


STRICT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "account": {"type": "string"},
        "partition": {"type": "string"},
        "worker_init": {"type": "string"},
        "endpoint_setup": {"type": "string"},
    },
}


def test_a_config_key_a_strict_endpoint_does_not_accept_is_named_with_the_allowed_ones(
    project, globus
):
    endpoint = globus.add_endpoint(schema=STRICT_SCHEMA)
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nconfig: {{acount: cis250000}}\n"
        "sweep:\n  product:\n    x: [1, 2]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 2, done.stderr
    assert (
        "sweep.yaml:4" in done.stderr
        and "'acount'" in done.stderr
        and "did you mean 'account'" in done.stderr
    )
    assert "partition" in done.stderr  # the keys it accepts
    assert globus.requests["submit"] == 0 and not (project.root / "run").exists()
    assert "Traceback" not in done.stderr


def test_a_key_the_default_schema_does_not_list_is_a_warning_with_did_you_mean_and_the_run_goes_on(
    project, globus
):
    remote_project(project, globus, extra="")
    done = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "--set", "config.worker_int=module load x"
    )
    assert done.returncode == 0, done.stderr
    assert (
        "warning" in done.stderr
        and "'worker_int'" in done.stderr
        and "did you mean 'worker_init'" in done.stderr
    )
    assert (results(project)["status"] == "succeeded").all()


def test_a_groundhog_script_with_walltime_account_and_partition_runs_on_the_default_schema(
    project, globus
):
    endpoint = globus.add_endpoint()
    project.write(
        "work.py",
        '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n'
        f'# [tool.hog.anvil]\n# endpoint = "{endpoint}"\n# account = "cis250000"\n'
        '# partition = "shared"\n# walltime = "00:30:00"\n# ///\n'
        "def f(x):\n    return x * 10\n",
    )
    project.manifest(
        "script: work.py\nfunction: f\nendpoint: anvil\nsweep:\n  product:\n    x: [1, 2, 3]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 3 and list(table["result"]) == [10, 20, 30]


def test_a_config_value_of_the_wrong_type_names_the_key_and_the_type(project, globus):
    remote_project(project, globus)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--set", "config.worker_init=5")
    assert done.returncode == 2, done.stderr
    assert "'worker_init'" in done.stderr and "a string" in done.stderr
    assert globus.requests["submit"] == 0


def test_an_endpoint_whose_record_cannot_be_read_is_a_warning_and_the_run_goes_on(project, globus):
    endpoint = globus.add_endpoint(metadata_status=403)
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  product:\n    x: [1, 2]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert "warning: cannot read endpoint" in done.stderr and "403" in done.stderr


def test_a_config_the_endpoint_refuses_fails_the_tasks_with_its_validation_error(project, globus):
    endpoint = globus.add_endpoint(
        schema=STRICT_SCHEMA, metadata_status=403
    )  # nothing to check against here
    done = submit_remote(
        project,
        endpoint,
        "def f(x):\n    return x\n",
        "config: {acount: cis250000}\nsweep:\n  product:\n    x: [1, 2]\n",
    )
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert (table["status"] == "failed").all()
    assert (
        "(ValidationError) Additional properties are not allowed ('acount' was unexpected)"
        in table["error"][0]
    )


def test_a_strict_template_with_worker_init_runs_with_nothing_set(project, globus):
    endpoint = globus.add_endpoint(template=STRICT_TEMPLATE)
    project.write("work.py", HEAD + "def f(x):\n    return x + 1\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  product:\n    x: [1, 2]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["result"]) == [2, 3]


def test_a_template_variable_nobody_sets_fails_the_tasks_the_way_the_endpoint_does(project, globus):
    endpoint = globus.add_endpoint(template=STRICT_TEMPLATE + "# {{ account }}\n")
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  product:\n    x: [1, 2]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert (table["status"] == "failed").all()
    assert "Unable to start user endpoint process" in table["error"][0]
    assert "(UndefinedError) 'account' is undefined" in table["error"][0]


def test_429_and_503_answers_are_retried(project, globus):
    remote_project(project, globus)
    globus.fail_next("submit", 429, 503)
    globus.fail_next("status", 503, 429)
    globus.fail_next("function", 502)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert (results(project)["status"] == "succeeded").all()
    assert globus.requests["submit"] == 3 and globus.requests["function"] == 2


def test_a_worker_killed_mid_task_gives_the_endpoints_reason_in_the_error_column(project, globus):
    endpoint = globus.add_endpoint()
    started = project.root / "started"
    project.write(
        "work.py",
        HEAD + f"import pathlib, time\ndef f(x):\n    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(120)\n",
    )
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  product:\n    x: [1, 2]\n"
        "calls_per_task: 2\n"
    )
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(started.exists, timeout_s=120)
    assert globus.kill_workers() == 1
    _, stderr = submitter.communicate(timeout=120)
    assert submitter.returncode == 1, stderr
    table = results(project)
    assert (table["status"] == "failed").all()
    assert table["error"][0].startswith(
        "TaskFailed: the endpoint reported: WorkerLost: Task failure due to loss of worker"
    )
    assert "Traceback" not in stderr


def test_a_detached_run_with_pending_tasks_is_picked_up_later_by_status_and_collect(
    project, globus
):
    log = remote_project(project, globus)
    globus.hold_tasks = True
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: all_ids_committed(project))
    run = open_run(project.root / "run")
    holder = run.holder()
    run.close()
    os.kill(
        holder["pid"], signal.SIGKILL
    )  # the background submitter dies; the tasks wait at the endpoint
    wait_for(lambda: open_run(project.root / "run").holder() is None)
    status = project.cli("status", "run", "--json")
    assert json.loads(status.stdout)["counts"].get("submitted") == 12
    globus.fail_next(
        "status", *[500] * 8
    )  # the service is down: status still answers from the ledger
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
    assert list(table["status"]) == ["succeeded"] * 12 and list(table["result.x"]) == list(
        range(12)
    )
    globus.wait_idle()
    ran = side_effects(log)
    assert set(ran) == set(range(12))
    assert (
        len(ran) == 12
    )  # the request whose answer died with the submitter was adopted from its task group


def test_without_tokens_and_without_a_terminal_submit_says_how_to_log_in(project, globus, tmp_path):
    remote_project(project, globus)
    env = {
        "GLOBUS_COMPUTE_CLIENT_ID": "",
        "GLOBUS_COMPUTE_CLIENT_SECRET": "",
        "GLOBUS_COMPUTE_USER_DIR": str(tmp_path / "empty"),
    }
    clean = {k: v for k, v in os.environ.items() if k not in env}
    done = subprocess.run(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**clean, "GLOBUS_COMPUTE_USER_DIR": env["GLOBUS_COMPUTE_USER_DIR"]},
    )
    assert done.returncode == 2, done.stderr
    assert "hog-batch login" in done.stderr and "Traceback" not in done.stderr
    assert globus.requests["submit"] == 0


def test_plan_shows_both_limits_and_refuses_a_call_over_the_request_limit_with_the_fix(
    project, globus
):
    endpoint = globus.add_endpoint()
    project.write("work.py", HEAD + "def f(items):\n    return len(items)\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
        f"      values: {list(range(100))}\n      size: 10\n"
    )
    shown = project.cli("plan", "sweep.yaml")
    assert shown.returncode == 0, shown.stderr
    assert "payload" in shown.stdout and "per task" in shown.stdout
    assert (
        "10,000,000 bytes per submission" in shown.stdout
        and "10,485,760 bytes per task" in shown.stdout
    )
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
        f"      values: {['x' * 10_000] * 1100}\n      size: 1100\n"
    )
    refused = project.cli("plan", "sweep.yaml")
    assert refused.returncode == 2
    assert (
        "bytes" in refused.stderr
        and "pass: path" in refused.stderr
        and "Traceback" not in refused.stderr
    )


def start(project, run_dir="run"):
    return subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", run_dir],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    done = submit_remote(
        project,
        endpoint,
        "def f(mb):\n    return 'y' * (mb * 1_000_000)\n",
        "calls_per_task: 4\nsweep:\n  zip:\n    mb: [3, 3, 3, 5]\n",
    )
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded", "succeeded", "succeeded", "failed"]
    assert [len(r) for r in table["result"][:3]] == [3_000_000] * 3
    assert "over the limit of 4000000 bytes" in table["error"][3]
    assert list(table["attempts"]) == [
        1,
        1,
        1,
        1,
    ]  # the calls deferred for room were not counted as attempts
