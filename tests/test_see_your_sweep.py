"""Seeing a sweep from the command line: logs, status, runs, progress, following, retry, init."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from groundhog_batch.api import open_run

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'

# x % 3 == 1 raises ValueError with its own message; x % 3 == 2 raises the same KeyError; the rest succeed.
MIXED = (
    HEAD
    + """import sys
def f(x):
    print("out", x)
    print("err", x, file=sys.stderr)
    if x % 3 == 1:
        raise ValueError(f"bad {x}")
    if x % 3 == 2:
        raise KeyError("k")
    return x
"""
)

# Every call waits until the test creates the file `go`, so a run is still going while the test looks.
GATED = (
    HEAD
    + """import os, time
def f(x):
    while not os.path.exists("go"):
        time.sleep(0.05)
    if x == 3:
        raise ValueError("three")
    return x
"""
)


def mixed_run(project, n: int = 6, extra: str = "", *args: str, env: dict | None = None):
    project.write("work.py", MIXED)
    project.manifest(
        f"script: work.py\nfunction: f\n{extra}sweep:\n  product:\n    x: {{range: [0, {n}]}}\n"
    )
    return project.cli("submit", "sweep.yaml", "--run-dir", "run", *args, env=env)


def gated_manifest(project, n: int = 12):
    project.write("slow.py", GATED)
    project.manifest(
        f"script: slow.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 2\n"
        f"sweep:\n  product:\n    x: {{range: [0, {n}]}}\n"
    )


def wait_for(condition, timeout_s: float = 60):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def no_traceback(done) -> None:
    assert "Traceback" not in done.stderr, done.stderr


# --- small things -----------------------------------------------------------------------------


def test_bare_hog_batch_prints_help_and_exits_0(project):
    done = project.cli()
    assert done.returncode == 0 and "Usage: hog-batch" in done.stdout and "logs" in done.stdout


def test_shell_completion_from_the_click_recipe_completes_commands(project):
    script = project.cli(env={"_HOG_BATCH_COMPLETE": "bash_source"})
    assert (
        script.returncode == 0
        and "complete -o nosort -F" in script.stdout
        and "hog-batch" in script.stdout
    )
    words = project.cli(
        env={
            "_HOG_BATCH_COMPLETE": "bash_complete",
            "COMP_WORDS": "hog-batch lo",
            "COMP_CWORD": "1",
        }
    )
    assert {"plain,logs", "plain,login", "plain,logout"} <= set(words.stdout.split())


def test_reuse_says_how_many_calls_it_reused(project):
    assert mixed_run(project).returncode == 1
    done = project.cli("submit", "sweep.yaml", "--run-dir", "second", "--reuse", "run")
    assert "reused 2 of 6 call(s) from run" in done.stderr


def test_output_with_run_and_timestamp_gives_each_run_its_own_file(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\noutput: 'results/{run}-{timestamp}.csv'\nsweep:\n  product:\n    x: [1]\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "one").returncode == 0
    assert project.cli("submit", "sweep.yaml", "--run-dir", "two").returncode == 0
    names = sorted(path.name for path in (project.root / "results").iterdir())
    assert len(names) == 2 and names[0].startswith("one-20") and names[1].startswith("two-20")
    assert all(name.endswith("Z.csv") for name in names)


def test_a_second_run_says_it_will_overwrite_the_output_file_and_a_resume_does_not(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\noutput: out.csv\nsweep:\n  product:\n    x: [1]\n"
    )
    first = project.cli("submit", "sweep.yaml", "--run-dir", "one")
    assert first.returncode == 0 and "overwritten" not in first.stderr
    second = project.cli("submit", "sweep.yaml", "--run-dir", "two")
    assert (
        second.returncode == 0
        and f"note: {project.root / 'out.csv'} exists and will be overwritten" in second.stderr
    )
    assert "overwritten" not in project.cli("resume", "two").stderr


# --- logs -------------------------------------------------------------------------------------


def test_logs_shows_what_one_call_printed_and_raised(project):
    mixed_run(project)
    done = project.cli("logs", "run", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("=== f call 1: failed  x=1 ===\n")
    assert "--- stdout ---\nout 1\n" in done.stdout and "--- stderr ---\nerr 1\n" in done.stdout
    assert (
        "--- traceback ---\nTraceback (most recent call last):" in done.stdout
        and "ValueError: bad 1" in done.stdout
    )


def test_logs_stream_of_one_call_is_exactly_what_it_printed(project):
    mixed_run(project)
    assert project.cli("logs", "run", "f:4", "--stream", "stdout").stdout == "out 4\n"
    assert project.cli("logs", "run", "0", "--stream", "stderr").stdout == "err 0\n"
    several = project.cli("logs", "run", "0", "3", "--stream", "stdout").stdout
    assert several == "==> f call 0 <==\nout 0\n==> f call 3 <==\nout 3\n"


def test_logs_failed_shows_only_the_failed_calls(project):
    mixed_run(project)
    done = project.cli("logs", "run", "--failed", "--stream", "traceback")
    headers = [line for line in done.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> f call {x} <==" for x in (1, 2, 4, 5)]
    assert "KeyError: 'k'" in done.stdout


def test_logs_failed_names_each_failed_calls_parameters_job_by_job(project):
    project.write(
        "work.py",
        HEAD
        + "def f(x, y):\n    if (x + y) % 3 == 0:\n        raise ValueError(f'bad {x} {y}')\n    return x\n",
    )
    project.manifest(
        "jobs:\n"
        "  - name: a\n    script: work.py\n    function: f\n    sweep:\n      product:\n        x: [0, 1, 2]\n        y: [5, 6]\n"
        "  - name: b\n    script: work.py\n    function: f\n    sweep:\n      product:\n        x: [10, 11]\n        y: [2]\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    done = project.cli("logs", "run", "--failed")
    headers = [line for line in done.stdout.splitlines() if line.startswith("=== ")]
    assert headers == [
        "=== a call 1: failed  x=0 y=6 ===",
        "=== a call 2: failed  x=1 y=5 ===",
        "=== b call 0: failed  x=10 y=2 ===",
    ]


def test_logs_of_a_call_the_run_does_not_have_is_a_clear_error(project):
    mixed_run(project)
    done = project.cli("logs", "run", "17")
    assert (
        done.returncode == 2 and "job 'f' has no call 17" in done.stderr and "0 to 5" in done.stderr
    )
    no_traceback(done)
    assert project.cli("logs", "run", "--job", "nope").returncode == 2


def test_logs_piped_into_head_stops_quietly(project):
    project.write("work.py", HEAD + "def f(x):\n    print('line\\n' * 20000)\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: {range: [0, 8]}\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    done = subprocess.run(
        f"{sys.executable} -m groundhog_batch logs run 2>err.txt | head -n 2",
        shell=True,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == ["=== f call 0: succeeded  x=0 ===", "--- stdout ---"]
    assert (project.root / "err.txt").read_text() == ""


# --- status and runs --------------------------------------------------------------------------


def test_status_groups_failures_by_error_with_counts_and_says_how_many_more(project):
    mixed_run(project, 30)
    done = project.cli("status", "run")
    assert done.returncode == 0
    assert "  f: 30/30 finished (10 succeeded, 20 failed)" in done.stdout
    assert (
        "  failed: 10 calls: ValueError (10 different messages), e.g. ValueError: bad 1"
        in done.stdout
    )
    assert "          calls 1, 4, 7, 10, 13 ...and 5 more" in done.stdout
    assert "  failed: 10 calls: KeyError: 'k'" in done.stdout
    everything = project.cli("status", "run", "--all").stdout
    assert "calls 2, 5, 8, 11, 14, 17, 20, 23, 26, 29\n" in everything and "more" not in everything


def test_status_json_with_all_lists_every_failure(project):
    mixed_run(project, 60)
    capped = json.loads(project.cli("status", "run", "--json").stdout)
    assert len(capped["failures"]) == 20 and capped["failures_not_listed"] == 20
    complete = json.loads(project.cli("status", "run", "--json", "--all").stdout)
    assert complete["failures_not_listed"] == 0 and len(complete["failures"]) == 40
    assert {g["error_type"]: g["count"] for g in complete["failure_groups"]} == {
        "ValueError": 20,
        "KeyError": 20,
    }
    assert complete["failures"][0] == {"job": "f", "call": 1, "error": "ValueError: bad 1"}
    assert complete["counts"]["succeeded"] == 20


def test_runs_shows_each_runs_progress_and_age(project):
    project.write("work.py", MIXED)
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: {range: [0, 3]}\n")
    project.cli("submit", "sweep.yaml")
    done = project.cli("runs")
    assert done.returncode == 0
    line = done.stdout.strip()
    assert (
        "sweep  finished  3/3 finished (1 succeeded, 2 failed)  started " in line
        and line.endswith("s ago")
    )


# --- progress ---------------------------------------------------------------------------------


def test_without_a_terminal_progress_is_a_plain_line_with_counts_rate_and_eta(project):
    done = mixed_run(
        project, 6, "calls_per_task: 1\nmax_parallel: 1\n", env={"HOG_BATCH_PROGRESS_S": "0"}
    )
    lines = [line for line in done.stderr.splitlines() if " finished (" in line]
    assert lines, done.stderr
    assert all(line.startswith("sweep: ") and ", ETA " in line for line in lines)
    assert (
        lines[-1].startswith("sweep: 6/6 finished (2 succeeded, 4 failed), ")
        and "calls/s" in lines[-1]
    )


def test_verbose_prints_each_failure_as_it_happens(project):
    done = mixed_run(project, 3, "calls_per_task: 1\nmax_parallel: 1\n", "--verbose")
    stderr = done.stderr
    assert stderr.index("failed: f call 1: ValueError: bad 1") < stderr.index(
        "sweep: 1 succeeded, 2 failed"
    )


def test_verbose_retry_prints_the_retried_calls_that_fail_again(project):
    mixed_run(project, 3, "calls_per_task: 1\nmax_parallel: 1\n")
    done = project.cli("retry", "run", "--error", "KeyError", "--verbose")
    assert done.stderr.index("failed: f call 2: KeyError: 'k'") < done.stderr.index(
        "sweep: 1 succeeded, 2 failed"
    )


def test_quiet_prints_only_the_summary(project):
    done = mixed_run(project, 3, "", "--quiet")
    assert (
        done.returncode == 1
        and "run directory" not in done.stderr
        and " finished (" not in done.stderr
    )
    assert "sweep: 1 succeeded, 2 failed" in done.stderr


# --- following a run another process drives -----------------------------------------------------


def start_cli(project, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", *args],
        cwd=project.root,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def test_resume_on_a_detached_run_follows_it_to_the_same_summary_and_exit_code(project):
    gated_manifest(project)
    fast = {"HOG_BATCH_PROGRESS_S": "0.2"}
    detached = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach", env=fast)
    assert detached.returncode == 0 and "watch it with `hog-batch status --watch" in detached.stderr
    assert (
        open_run(project.root / "run").holder() is not None
    )  # detach returns once the run is held
    follower = start_cli(project, "resume", "run", env=fast)
    first = follower.stderr.readline()
    assert (
        first.startswith("following: running in the background (pid")
        and "Ctrl-C stops watching, not the run" in first
    )
    (project.root / "go").write_text("")
    _, rest = follower.communicate(timeout=120)
    assert follower.returncode == 1, rest
    assert " finished (" in rest and "sweep: 11 succeeded, 1 failed" in rest
    assert "failed: f call 3: ValueError: three" in rest
    log = (project.root / "run" / "submitter.log").read_text()
    assert (
        "sweep: " in log and " finished (" in log and "calls/s" in log
    )  # the follower's progress lines


def test_ctrl_c_stops_the_watcher_and_never_the_run(project):
    gated_manifest(project)
    project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    watcher = start_cli(project, "status", "run", "--watch")
    assert watcher.stderr.readline().startswith("following: running in the background (pid")
    watcher.send_signal(signal.SIGINT)
    _, stderr = watcher.communicate(timeout=30)
    assert watcher.returncode == 130 and "stopped watching; the run goes on" in stderr
    assert "Traceback" not in stderr
    run = open_run(project.root / "run")
    assert run.holder() is not None  # still driven
    (project.root / "go").write_text("")
    wait_for(lambda: run.holder() is None)
    counts = open_run(project.root / "run").counts()
    assert counts["succeeded"] == 11 and counts["failed"] == 1


def test_status_watch_on_a_finished_run_prints_status_and_exits_as_submit(project):
    mixed_run(project, 3)
    done = project.cli("status", "run", "--watch")
    assert done.returncode == 1 and "f: 3/3 finished" in done.stdout


# --- stopping early and retrying ----------------------------------------------------------------


def test_max_failures_stops_early_and_resume_finishes_the_rest(project):
    done = mixed_run(project, 30, "calls_per_task: 1\nmax_parallel: 1\n", "--max-failures", "2")
    assert done.returncode == 1
    assert "stopped early: 2 call(s) failed (--max-failures 2)" in done.stderr
    assert "still pending: finish them with `hog-batch resume" in done.stderr
    counts = open_run(project.root / "run").counts()
    assert counts["failed"] == 2 and counts["pending"] > 20
    finished = project.cli("resume", "run")
    assert finished.returncode == 1 and "sweep: 10 succeeded, 20 failed" in finished.stderr


def test_retry_reruns_only_the_selected_failures_with_changed_settings_recorded(project):
    project.write(
        "work.py",
        HEAD + "import time\ndef f(x):\n    if x == 0:\n        time.sleep(2)\n"
        "    if x == 1:\n        raise ValueError('always')\n    return x\n",
    )
    project.manifest(
        "script: work.py\nfunction: f\ntimeout: 0.5\ncalls_per_task: 1\n"
        "sweep:\n  product:\n    x: [0, 1, 2]\n"
    )
    first = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert first.returncode == 1 and "failed: f call 0: TimeoutError" in first.stderr
    retried = project.cli("retry", "run", "--error", "TimeoutError", "--set", "timeout=30")
    assert retried.returncode == 1 and "sweep: 2 succeeded, 1 failed" in retried.stderr, (
        retried.stderr
    )
    table = open_run(project.root / "run").results()
    assert list(table["status"]) == ["succeeded", "failed", "succeeded"] and list(
        table["attempts"]
    ) == [2, 1, 1]
    info = json.loads((project.root / "run" / "run.json").read_text())
    assert info["overrides"] == ["timeout=30"]
    assert (
        info["retries"][0]["set"] == ["timeout=30"]
        and info["retries"][0]["error_type"] == "TimeoutError"
    )
    assert info["retries"][0]["calls"] == 1


def test_retry_of_one_job_leaves_the_other_jobs_failures(project):
    project.write("work.py", HEAD + "def f(x):\n    raise ValueError(x)\n")
    project.manifest(
        "script: work.py\nfunction: f\njobs:\n  - name: a\n    sweep: {product: {x: [1]}}\n"
        "  - name: b\n    sweep: {product: {x: [2]}}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    assert project.cli("retry", "run", "--job", "a").returncode == 1
    table = open_run(project.root / "run").results()
    assert list(table["attempts"]) == [2, 1]  # attempts count every run of a call, retries included
    assert project.cli("retry", "run", "--job", "c").returncode == 2


def test_retry_refuses_settings_that_change_the_calls(project):
    mixed_run(project, 3)
    done = project.cli("retry", "run", "--set", "sweep.product.x=[7]")
    assert (
        done.returncode == 2
        and "changes the calls of job 'f'" in done.stderr
        and "--reuse" in done.stderr
    )
    assert "retries" not in json.loads((project.root / "run" / "run.json").read_text())


# --- init -------------------------------------------------------------------------------------


def test_init_writes_a_starter_manifest_that_validates_and_runs(project):
    project.write(
        "scripts/model.py",
        HEAD + "def train(depth: int, rate: float = 0.1, *, tag: str):\n    return depth * rate\n",
    )
    done = project.cli("init", "scripts/model.py")
    assert done.returncode == 0 and "wrote model.yaml" in done.stdout
    text = (project.root / "model.yaml").read_text()
    assert (
        text.startswith("# yaml-language-server: $schema=")
        and "manifest.schema.json" in text.splitlines()[0]
    )
    assert 'script: "scripts/model.py"' in text and 'function: "train"' in text
    assert (
        "    depth: [1, 2, 3]" in text
        and "    rate: [0.1]" in text
        and '    tag: ["a", "b"]' in text
    )
    assert (
        project.cli("validate", "model.yaml").stdout.strip()
        == "model.yaml: valid (1 job(s), 6 call(s))"
    )
    assert project.cli("submit", "model.yaml").returncode == 0


def test_init_never_overwrites_a_file(project):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.write("work.yaml", "mine\n")
    done = project.cli("init", "work.py", "f")
    assert (
        done.returncode == 2
        and "work.yaml already exists; hog-batch init never overwrites a file" in done.stderr
    )
    assert (project.root / "work.yaml").read_text() == "mine\n"
    assert project.cli("init", "work.py", "f", "-o", "other.yaml").returncode == 0


def test_init_asks_which_function_when_the_script_has_several(project):
    project.write("work.py", "def f(x):\n    return x\ndef g(y):\n    return y\n")
    done = project.cli("init", "work.py")
    assert (
        done.returncode == 2
        and "it defines f, g" in done.stderr
        and "hog-batch init work.py FUNCTION" in done.stderr
    )
    missing = project.cli("init", "work.py", "h")
    assert missing.returncode == 2 and "defines no function 'h'" in missing.stderr
