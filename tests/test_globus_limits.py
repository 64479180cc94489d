"""Issue 18: the service's walls — backoff with a budget, 413s, the shared rate limit, storms at start.

Through the real CLI against the loopback service (tests/loopback_globus.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from loopback_globus import PID_FILE_NOTICE
from test_globus_backend import HEAD, remote_project, results, side_effects, wait_for

from groundhog_batch.globus import transport


def test_lost_submit_answers_back_off_then_pause_resumably_with_a_bounded_request_count(
    project, globus
):
    log = remote_project(project, globus)
    globus.fail_next(
        "submit", *[502] * 1000
    )  # a gateway loses every request: the service takes nothing
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env={"HOG_BATCH_GLOBUS_RETRY_S": "0.2", "HOG_BATCH_GLOBUS_OUTAGE_S": "3"},
    )
    assert done.returncode == 2, done.stderr
    assert "paused" in done.stderr and "Traceback" not in done.stderr
    assert f"hog-batch resume '{project.root / 'run'}'" in done.stderr
    assert (
        2 <= globus.requests["submit"] <= 8
    )  # backoff: 0.1-0.2 s, doubling, within 3 s (not 2 per second for ever)
    globus.reset()
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12
    globus.wait_idle()
    assert side_effects(log) == list(range(12))


def test_a_413_at_9_5_mb_splits_the_request_and_the_run_finishes(project, globus):
    endpoint = globus.add_endpoint()
    globus.max_request_bytes = 9_500_000  # a proxy that counts the limit otherwise
    project.write("data.csv", "text\n" + ("y" * 2_400_000 + "\n") * 8)
    project.write("work.py", HEAD + "def f(text):\n    return len(text)\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nmax_parallel: 8\ncalls_per_task: 1\n"
        "sweep:\n  rows:\n    file: data.csv\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["result"]) == [2_400_000] * 8
    assert (
        globus.refused_too_large >= 1 and globus.largest_request_bytes > 9_500_000
    )  # refused once, then split
    assert (
        transport.REQUEST_LIMIT_BYTES - transport.request_budget_bytes()
        == transport.REQUEST_MARGIN_BYTES
        > 0
    )


def test_a_task_over_the_services_limit_fails_only_its_calls_with_the_limit_in_the_error(
    project, globus
):
    endpoint = globus.add_endpoint()
    globus.max_request_bytes = 3_000_000
    project.write("work.py", HEAD + "def f(text):\n    return len(text)\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\ncalls_per_task: 1\nsweep:\n  product:\n"
        f"    text: [small, {'y' * 3_200_000}, also small]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert list(table["status"]) == ["succeeded", "failed", "succeeded"]
    assert (
        "HTTP 413" in table["error"][1] and "over the limit of 3,000,000 bytes" in table["error"][1]
    )


def test_sigterm_during_a_submission_backoff_ends_the_submitter_at_once_and_resume_runs_every_call_once(
    project, globus
):
    log = remote_project(project, globus)
    globus.fail_next("submit", *[502] * 1000)
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOG_BATCH_GLOBUS_RETRY_S": "120"},
    )
    wait_for(
        lambda: globus.requests["group"] >= 1
    )  # the answer was lost, the group is empty: now it waits 60-120 s
    submitter.send_signal(signal.SIGTERM)
    _, stderr = submitter.communicate(timeout=15)  # far shorter than the wait it was in
    assert submitter.returncode == 143, stderr
    assert "hog-batch resume" in stderr and "Traceback" not in stderr
    globus.reset()
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    globus.wait_idle()
    assert side_effects(log) == list(range(12))


def test_sigterm_while_riding_out_an_outage_ends_the_submitter_at_once(project, globus):
    remote_project(project, globus)
    globus.fail_next("status", *[503] * 1000)
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "HOG_BATCH_GLOBUS_RETRY_S": "120",
            "HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S": "600",
        },
    )
    wait_for(lambda: globus.requests["status"] >= 1)  # the wait after it is 60-120 s
    submitter.send_signal(signal.SIGTERM)
    _, stderr = submitter.communicate(timeout=15)
    assert submitter.returncode == 143, stderr
    globus.reset()
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12


LOOKUPS = textwrap.dedent("""\
    import sys
    from groundhog_batch.globus.service import ComputeService
    service = ComputeService()
    for _ in range(int(sys.argv[2])):
        service.endpoint_metadata(sys.argv[1])
""")


def test_two_concurrent_processes_stay_under_the_rate_limit_together(project, globus):
    endpoint = globus.add_endpoint()
    globus.rate_window_s = 2.0  # the service's 20 requests per 10 s, five times faster
    env = {**os.environ, "HOG_BATCH_GLOBUS_RATE_WINDOW_S": "2"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LOOKUPS, endpoint, "30"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert globus.requests["endpoint"] == 60 and globus.rate_limited == 0
    assert globus.peak_requests(2.0) <= 20


def test_a_429_storm_at_start_leaves_a_run_directory_that_resumes(project, globus):
    log = remote_project(project, globus)
    globus.fail_next("endpoint", *[429] * 8)  # the config check's lookup gives up...
    globus.fail_next(
        "function", *[429] * 1000
    )  # ...and the storm goes on past the submitter's budget
    done = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", env={"HOG_BATCH_GLOBUS_OUTAGE_S": "1"}
    )
    assert done.returncode == 2, done.stderr
    assert "could not look up endpoint" in done.stderr and "paused" in done.stderr
    assert (project.root / "run" / "run.json").exists()
    globus.reset()
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12
    globus.wait_idle()
    assert side_effects(log) == list(range(12))


def test_calls_the_endpoint_machinery_failed_run_again_by_themselves_exactly_once(project, globus):
    log = remote_project(project, globus, n_calls=12, calls_per_task=2, extra="max_parallel: 6\n")
    globus.fail_next_tasks(
        4
    )  # a restarted endpoint ignores the commands it got before: "Ignoring command from server"
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr  # no `retry` needed
    table = results(project)
    assert list(table["status"]) == ["succeeded"] * 12 and list(table["attempts"]) == [1] * 12
    globus.wait_idle()
    assert side_effects(log) == list(range(12))  # each call ran exactly once


def test_calls_failed_by_a_user_endpoint_that_would_not_start_run_again_by_themselves(
    project, globus
):
    log = remote_project(project, globus, n_calls=8, calls_per_task=2, extra="max_parallel: 4\n")
    globus.fail_next_tasks(4, PID_FILE_NOTICE)  # the restarted endpoint's failure notice
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr  # no `retry` needed
    assert list(results(project)["status"]) == ["succeeded"] * 8
    globus.wait_idle()
    assert side_effects(log) == list(range(8))


def test_tasks_an_endpoint_took_and_lost_without_a_word_run_again_after_a_silence(project, globus):
    log = remote_project(project, globus, n_calls=4, calls_per_task=2, extra="max_parallel: 2\n")
    globus.hold_tasks = True
    globus.after_submit = globus.strand_held  # the first tasks stay pending at the service for ever
    # the silence allowed: longer than a task takes here, however loaded the machine
    stranded_s = "15"
    done = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", env={"HOG_BATCH_GLOBUS_STRANDED_S": stranded_s}
    )
    assert done.returncode == 0, done.stderr  # no `retry` needed
    assert list(results(project)["status"]) == ["succeeded"] * 4
    assert side_effects(log) == list(range(4))  # the stranded tasks never run: each call ran once
    assert globus.requests["submit"] == 2  # the two stranded tasks, submitted again once


def test_a_machinery_failure_that_keeps_coming_back_fails_the_calls_after_three_reruns(
    project, globus
):
    remote_project(project, globus, n_calls=2, calls_per_task=2)
    globus.fail_next_tasks(100)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    table = results(project)
    assert list(table["status"]) == ["failed"] * 2
    assert "Ignoring command from server" in table["error"][0]
    assert globus.requests["submit"] == 4  # the first try and three re-runs
