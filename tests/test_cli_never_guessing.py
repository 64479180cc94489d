"""A CLI that never leaves you guessing: which run, whether it is running, what to type next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import HELD_COUNTING_SCRIPT as HELD_COUNTING
from conftest import SCRIPT_HEAD as HEAD
from conftest import waiting_script


def two_runs(project):
    project.write(
        "work.py",
        HEAD + "def f(x):\n    if x == 1:\n        raise ValueError('bad x')\n    return x\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0, 1, 2]\n")
    first = project.cli("submit", "sweep.yaml")
    second = project.cli("submit", "sweep.yaml")
    assert first.returncode == second.returncode == 1
    runs = sorted(p for p in (project.root / "hog-runs").iterdir())
    latest = max(
        runs,
        key=lambda p: json.loads((p / "run.json").read_text())["provenance"]["started_at"] + p.name,
    )
    return latest


def test_a_command_without_a_run_takes_the_latest_under_hog_runs_and_says_which(project):
    latest = two_runs(project)
    for command in (["status"], ["collect"], ["report"], ["logs", "1"], ["resume"]):
        done = project.cli(*command)
        assert done.returncode in (0, 1), (command, done.stderr)
        assert f"the latest run: hog-runs/{latest.name}" in done.stderr, command
    assert (latest / "report.html").is_file() and (latest / "results.parquet").is_file()
    logs = project.cli("logs", "1")
    assert "=== f call 1: failed" in logs.stdout and "ValueError: bad x" in logs.stdout


def test_without_any_run_a_command_says_how_to_name_one(project):
    done = project.cli("status")
    assert (
        done.returncode == 2
        and "no run under ./hog-runs" in done.stderr
        and "Traceback" not in done.stderr
    )


def test_after_kill_9_status_and_runs_say_interrupted_and_how_to_finish(project):
    project.write("work.py", HELD_COUNTING)  # calls 4 on wait for `go`: the kill lands mid-run
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 5\nsweep:\n  product:\n    x: {range: [0, 40]}\n"
    )
    side_effects, go = project.root / "side-effects.txt", project.root / "go"
    env = {"SIDE_EFFECTS": str(side_effects), "HELD_FROM": "4", "GO": str(go)}
    submitter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "groundhog_batch",
            "submit",
            "sweep.yaml",
            "--run-dir",
            "hog-runs/killed",
        ],
        cwd=project.root,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while submitter.poll() is None and not (
        side_effects.exists() and len(side_effects.read_text().split()) >= 4
    ):
        assert time.monotonic() < deadline, "calls 0-3 never ran"
        time.sleep(0.05)
    assert submitter.poll() is None, submitter.communicate()[1]
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.wait()
    status = project.cli("status", "hog-runs/killed")
    assert (
        "interrupted (" in status.stdout
        and "`hog-batch resume " in status.stdout
        and "finishes it" in status.stdout
    )
    assert "not running" not in status.stdout
    runs = project.cli("runs")
    assert "interrupted (" in runs.stdout and "finishes it" in runs.stdout
    go.touch()
    finished = project.cli("resume", env=env)
    assert finished.returncode == 0, finished.stderr
    assert "finished: no call is left to run" in project.cli("status").stdout


def test_a_detached_run_says_it_runs_in_the_background(project):
    go = (
        project.root / "go"
    )  # the call waits for it: the run is surely still going when status looks
    project.write("work.py", waiting_script(go))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0]\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0 and "running in the background (pid " in done.stderr
    status = project.cli("status", "run")
    assert "running in the background (pid " in status.stdout and "resume by" not in status.stdout
    go.touch()
    project.cli("status", "run", "--watch")


def test_the_submit_summary_groups_failures_as_status_does(project):
    project.write(
        "work.py",
        HEAD + "def f(x):\n    if x % 2:\n        raise ValueError(f'odd {x}')\n    return x\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: {range: [0, 20]}\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1
    status = project.cli("status", "run")
    grouped = "  failed: 10 calls: ValueError (10 different messages), e.g. ValueError: odd 1"
    assert grouped in done.stderr and grouped in status.stdout
    assert "failed: f call 3" not in done.stderr


def test_logs_asks_for_the_job_only_when_more_than_one_job_has_that_call(project):
    project.write(
        "work.py",
        HEAD
        + "def f(x):\n    print('f', x)\n    return x\ndef g(y):\n    print('g', y)\n    return y\n",
    )
    project.manifest(
        "jobs:\n  - {script: work.py, function: f, sweep: {product: {x: {range: [0, 3]}}}}\n"
        "  - {script: work.py, function: g, sweep: {product: {y: {range: [0, 200]}}}}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    only_g = project.cli("logs", "run", "150")
    assert only_g.returncode == 0 and "g 150" in only_g.stdout, only_g.stderr
    both = project.cli("logs", "run", "1")
    assert both.returncode == 2 and "ambiguous: jobs f, g each have a call 1" in both.stderr


def test_retry_with_nothing_matching_refuses_without_a_progress_line(project):
    project.write(
        "work.py",
        HEAD + "def f(x):\n    if x == 1:\n        raise ValueError('bad')\n    return x\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0, 1]\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    done = project.cli("retry", "run", "--error", "KeyError")
    assert done.returncode == 2 and "no failed call matches --error KeyError" in done.stderr
    assert "finished" not in done.stderr and "ETA" not in done.stderr, done.stderr


def test_init_placeholders_make_validate_warn_until_replaced(project):
    project.write("model.py", "def model(n: int, rate: float, name='x'):\n    return n * rate\n")
    assert project.cli("init", "model.py").returncode == 0
    done = project.cli("validate", "model.yaml")
    assert done.returncode == 0, done.stderr
    assert (
        "warning: model.yaml:" in done.stderr
        and "n: [1, 2, 3] is still the placeholder" in done.stderr
    )
    assert "rate: [0.1, 1.0, 10.0] is still the placeholder" in done.stderr
    text = (project.root / "model.yaml").read_text().replace("[1, 2, 3]", "[100, 1000]")
    (project.root / "model.yaml").write_text(text)
    again = project.cli("validate", "model.yaml")
    assert (
        "n: " not in again.stderr
        and "rate: [0.1, 1.0, 10.0] is still the placeholder" in again.stderr
    )


def test_a_groundhog_script_without_groundhog_in_its_environment_is_refused_at_validate_with_the_fix(
    project,
):
    project.write(
        "hog.py", "import groundhog_hpc as hog\n\n@hog.function()\ndef f(x):\n    return x\n"
    )
    project.manifest("script: hog.py\nfunction: f\nsweep: {product: {x: [1, 2]}}\n")
    done = project.cli("validate", "sweep.yaml")
    assert (
        done.returncode == 2
        and "hog.py:1" in done.stderr
        and "imports groundhog_hpc" in done.stderr
    )
    assert "dependencies: [groundhog-hpc]" in done.stderr and "Traceback" not in done.stderr
    project.manifest(
        "script: hog.py\nfunction: f\ndependencies: [groundhog-hpc]\nsweep: {product: {x: [1, 2]}}\n"
    )
    assert project.cli("validate", "sweep.yaml").returncode == 0


def test_hydra_comma_values_sweep_under_sweep_and_are_refused_elsewhere_with_the_right_syntax(
    project,
):
    project.write("work.py", HEAD + "def f(n: int, k: int = 0):\n    return n + k\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    n: [1]\n")
    swept = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "--set", "sweep.product.n=10,20"
    )
    assert swept.returncode == 0, swept.stderr
    assert list(
        project.cli("collect", "run", "-o", "out.csv")
        and __import__("pandas").read_csv(project.root / "out.csv")["result"]
    ) == [10, 20]
    refused = project.cli("validate", "sweep.yaml", "--set", "kwargs.k=1,2")
    assert refused.returncode == 2 and "Hydra's sweep syntax" in refused.stderr
    assert "--set sweep.product.k=[1,2]" in refused.stderr
    bare = project.cli("validate", "sweep.yaml", "--set", "n=1,2")
    assert bare.returncode == 2 and "--set sweep.product.n=[1,2]" in bare.stderr


def test_an_environment_being_built_is_said_and_a_cached_one_is_not(project, tmp_path):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    cold = {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cold"), "HOG_BATCH_ENV_QUIET_S": "0"}
    first = project.cli("submit", "sweep.yaml", "--run-dir", "a", env=cold)
    assert first.returncode == 0, first.stderr
    said = first.stderr.index(
        "building the environment for f: Python only, no dependencies (once: later runs reuse it)"
    )
    assert "environment for f ready" in first.stderr and said < first.stderr.index(
        "sweep: 2 succeeded"
    )
    warm = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "b",
        env={"HOG_BATCH_CACHE_DIR": str(tmp_path / "cold")},
    )
    assert warm.returncode == 0 and "building the environment" not in warm.stderr
    quiet = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "c",
        "-q",
        env={**cold, "HOG_BATCH_CACHE_DIR": str(tmp_path / "q")},
    )
    assert quiet.returncode == 0 and "building the environment" not in quiet.stderr
