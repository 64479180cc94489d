"""Issue 10's "Show" list, end to end through the real CLI and the endpoint's own code (tests/loopback_globus.py)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from test_globus_backend import (
    HEAD,
    all_ids_committed,
    remote_project,
    results,
    side_effects,
    wait_for,
)


def test_a_task_on_a_worker_with_no_uv_on_path_runs(project, globus, tmp_path):
    cache = tmp_path / "fresh cache"
    endpoint = globus.add_endpoint(
        worker_env={
            "PATH": "/usr/bin:/bin",
            "HOG_BATCH_UV": None,
            "HOG_BATCH_CACHE_DIR": str(cache),
            "HOME": str(tmp_path / "home"),
        }
    )
    project.write("work.py", HEAD + "def f(x):\n    return x * 2\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  product:\n    x: [1, 2, 3]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", timeout=600)
    assert done.returncode == 0, done.stderr
    assert list(results(project)["result"]) == [2, 4, 6]
    assert (
        cache / "hog-batch" / "envs"
    ).is_dir()  # uv came from the endpoint's Python (tests/test_uv_on_nodes.py: pip)


def test_a_script_with_6000_non_ascii_characters_and_400_calls_all_succeed(project, globus):
    endpoint = globus.add_endpoint()
    project.write("work.py", HEAD + "# " + "π" * 6000 + "\ndef f(x):\n    return x + 1\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\ncalls_per_task: 100\n"
        "sweep:\n  product:\n    x: {range: [0, 400]}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 400 and list(table["result"]) == list(
        range(1, 401)
    )


def test_a_3_mb_chunk_passed_by_value_runs_remotely(project, globus):
    endpoint = globus.add_endpoint()
    project.write("work.py", HEAD + "def f(items):\n    return sum(len(item) for item in items)\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
        f"      values: {['y' * 1000] * 6000}\n      size: 3000\n      pass: value\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["result"]) == [3_000_000, 3_000_000]
    assert globus.largest_request_bytes > 3_000_000


def test_a_batch_accepted_then_answered_504_runs_each_call_exactly_once(project, globus):
    log = remote_project(project, globus, n_calls=12, calls_per_task=4)
    globus.lose_next_answer("submit", 504)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12
    globus.wait_idle()
    assert side_effects(log) == list(
        range(12)
    )  # every call ran once: the tasks in the task group were adopted
    assert globus.requests["submit"] == 1 and globus.requests["group"] == 1


def test_a_submission_the_service_surely_did_not_take_is_sent_again(project, globus):
    log = remote_project(project, globus)
    globus.fail_next("submit", 503)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    globus.wait_idle()
    assert side_effects(log) == list(range(12)) and globus.requests["submit"] == 2


def test_whoami_with_no_tokens_exits_2_without_prompting(project, globus, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")
    }
    env["GLOBUS_COMPUTE_USER_DIR"] = str(tmp_path / "no tokens")
    primary, secondary = (
        pty.openpty()
    )  # a terminal: a login, if one started, would prompt here and wait
    try:
        done = subprocess.run(
            [sys.executable, "-m", "groundhog_batch", "whoami"],
            cwd=project.root,
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not logged in" in done.stderr and "hog-batch login" in done.stderr
    assert "auth.globus.org" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_logout_when_never_logged_in_says_so(project, globus, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")
    }
    env["GLOBUS_COMPUTE_USER_DIR"] = str(tmp_path / "no tokens")
    done = subprocess.run(
        [sys.executable, "-m", "groundhog_batch", "logout"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "not logged in" in done.stdout and "logged out" not in done.stdout


def test_an_expired_token_is_refreshed_on_401_and_the_run_goes_on(project, globus, tmp_path):
    remote_project(project, globus)
    globus.fail_next("status", 401)
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env={"GLOBUS_COMPUTE_USER_DIR": str(tmp_path / "tokens")},
    )
    assert done.returncode == 0, done.stderr
    assert (results(project)["status"] == "succeeded").all()
    assert globus.requests["token"] >= 2  # the first token, and the one fetched after the 401


def test_a_task_the_service_forgot_is_lost_and_its_calls_run_once_more(project, globus):
    log = remote_project(project, globus)
    globus.hold_tasks = True
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: all_ids_committed(project))
    globus.forget_tasks()
    globus.release()
    _, stderr = submitter.communicate(timeout=300)
    assert submitter.returncode == 0, stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 12
    assert side_effects(log) == list(range(12)) and globus.requests["submit"] == 2


def test_the_submitter_rides_out_a_long_service_outage(project, globus):
    log = remote_project(project, globus)
    globus.fail_next("submit", *[503] * 20)
    globus.fail_next("status", *[503] * 30)
    globus.rate_window_s = (
        2.0  # the service's 20 requests per 10 s, five times faster, on both sides
    )
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env={"HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S": "0.2", "HOG_BATCH_GLOBUS_RATE_WINDOW_S": "2"},
    )
    assert done.returncode == 0, done.stderr
    assert (results(project)["status"] == "succeeded").all() and globus.requests["status"] > 30
    globus.wait_idle()
    assert (
        side_effects(log) == list(range(12)) and globus.requests["submit"] >= 21
    )  # every call ran once


def test_nothing_is_left_behind_in_the_endpoints_task_directory(project, globus):
    remote_project(project, globus)
    endpoint = project.root.joinpath("sweep.yaml").read_text().split("endpoint: ")[1].split()[0]
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(globus.task_dir(endpoint).iterdir()) == []
