"""A run you can trust: private state, no symlink followed, changed inputs refused, damage reported (exit 2,
never a traceback), refused commands change nothing, SIGTERM and an early cancel stop cleanly."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import HELD_COUNTING_SCRIPT as HELD_COUNTING
from conftest import SCRIPT_HEAD as HEAD
from conftest import small_filesystem

from groundhog_batch.api import open_run

ROWS_SCRIPT = HEAD + "def f(a, b):\n    return a * 10 + b\n"


def refused(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


def rows_run(project, rows: str = "a,b\n1,1\n2,2\n3,3\n") -> None:
    project.write("work.py", ROWS_SCRIPT)
    project.write("p.csv", rows)
    project.manifest("script: work.py\nfunction: f\nsweep:\n  rows: {file: p.csv}\n")


def with_umask(umask: int, *args: str) -> list[str]:
    return [
        "sh",
        "-c",
        f'umask {umask:03o} && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        "groundhog_batch",
        *args,
    ]


# --- private run directories ------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_run_directory_is_private_whatever_the_umask_and_an_export_follows_the_umask(
    project, umask
):
    rows_run(project)
    done = subprocess.run(
        with_umask(umask, "submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv"),
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (
        stat.S_IMODE((project.root / "run").stat().st_mode) == 0o700
    )  # ledger, tasks/, records: the user's alone
    assert stat.S_IMODE((project.root / "out.csv").stat().st_mode) == 0o666 & ~umask


def test_a_run_directory_that_exists_with_files_in_it_is_refused(project):
    rows_run(project)
    (project.root / "taken").mkdir()
    (project.root / "taken" / "lock").symlink_to(project.root / "p.csv")
    refused(
        project.cli("submit", "sweep.yaml", "--run-dir", "taken"),
        "already holds files",
        "--run-dir",
    )
    (project.root / "a-file").write_text("")
    refused(project.cli("submit", "sweep.yaml", "--run-dir", "a-file"), "is a file")


def test_a_lock_file_planted_as_a_symlink_is_not_followed(project):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    precious = project.root / "precious.txt"
    precious.write_text("keep me")
    lock = project.root / "run" / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    for command in (["resume", "run"], ["cancel", "run"], ["status", "run"]):
        refused(project.cli(*command), "is a symbolic link")
    assert precious.read_text() == "keep me"


# --- changed inputs ---------------------------------------------------------------------------------------------


def test_resume_after_the_rows_file_changed_is_refused_naming_the_file(project):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    (project.root / "p.csv").write_text("a,b\n1,1\n2,9\n3,3\n")
    for command in (["resume", "run"], ["retry", "run"]):
        refused(project.cli(*command), "p.csv changed since this run started", "restore the file")
    assert (
        project.cli("collect", "run", "-o", "x.csv").returncode == 0
    )  # from the run's copy of the rows file
    (project.root / "p.csv").write_text("a,b\n1,1\n2,2\n3,3\n")
    assert project.cli("resume", "run").returncode == 0


def test_a_shrunken_rows_file_is_refused_at_once_not_spun_on(project):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    (project.root / "p.csv").write_text("a,b\n1,1\n")
    refused(project.cli("resume", "run", timeout=60), "p.csv changed since this run started")


def test_a_changed_chunk_file_is_refused_by_resume_and_reuse_goes_by_content(project):
    side_effects = project.root / "side-effects.txt"
    project.write(
        "work.py",
        HEAD + "import os\ndef f(data):\n"
        "    open(os.environ['SIDE_EFFECTS'], 'a').write('x\\n')\n"
        "    values = open(data['path']).read().split()[1:][data['start']:data['stop']]\n"
        "    return sum(int(v) for v in values)\n",
    )
    project.write("d.csv", "v\n1\n2\n3\n4\n")
    project.write("same.csv", "v\n1\n2\n3\n4\n")
    project.write("other.csv", "v\n1\n2\n3\n40\n")
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  chunks:\n    data: {file: d.csv, rows: 2, pass: path}\n"
    )
    env = {"SIDE_EFFECTS": str(side_effects)}
    assert project.cli("submit", "sweep.yaml", "--run-dir", "first", env=env).returncode == 0
    for source, run_dir, ran in (("same.csv", "second", 2), ("other.csv", "third", 4)):
        done = project.cli(
            "submit",
            "sweep.yaml",
            "--run-dir",
            run_dir,
            "--reuse",
            "first",
            "--set",
            f"sweep.chunks.data.file={source}",
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert (
            len(side_effects.read_text().split()) == ran
        )  # the same content is reused, other content runs
    assert list(open_run(project.root / "third").results()["result"]) == [3, 43]
    (project.root / "d.csv").write_text("v\n1\n2\n3\n40\n")
    refused(project.cli("resume", "first", env=env), "d.csv changed since this run started")
    refused(
        project.cli("submit", "sweep.yaml", "--run-dir", "fourth", "--reuse", "first", env=env),
        "cannot reuse the results of",
        "d.csv changed",
    )
    assert not (project.root / "fourth").exists()


def test_a_python_file_beside_the_script_that_it_does_not_import_is_not_an_input(project):
    rows_run(project)
    project.write("helper.py", "K = 1\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    project.write("helper.py", "K = 2\n")
    done = project.cli("resume", "run")
    assert done.returncode == 0 and "helper.py" not in done.stderr


def test_retry_refused_because_the_script_changed_leaves_failed_calls_failed(project):
    project.write(
        "work.py",
        HEAD + "def f(x):\n    if x == 1:\n        raise ValueError('no')\n    return x\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [0, 1]\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    refused(project.cli("retry", "run"), "changed since this run started")
    counts = open_run(project.root / "run").counts()
    assert counts["failed"] == 1 and counts["pending"] == 0


# --- damage: exit 2, never a traceback ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_ledger_never_reads_as_success(project, damage):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    ledger = project.root / "run" / "state.sqlite"
    data = ledger.read_bytes()
    ledger.write_bytes(
        {
            "garbage": b"not a database at all" * 100,
            "truncated": data[: len(data) // 3],
            "empty": b"",
        }[damage]
    )
    for command in (["resume", "run"], ["status", "run"], ["collect", "run", "-o", "x.csv"]):
        done = project.cli(*command)
        refused(done, "ledger")
    assert not (project.root / "x.csv").exists()


@pytest.mark.parametrize(
    "content",
    ["[]", "{}", "not json {", '{"name": "x", "manifest_path": "m", "overrides": [], "jobs": [1]}'],
)
def test_a_damaged_run_json_is_an_error_and_runs_still_lists_the_other_runs(project, content):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "hog-runs/good").returncode == 0
    assert project.cli("submit", "sweep.yaml", "--run-dir", "hog-runs/bad").returncode == 0
    (project.root / "hog-runs" / "bad" / "run.json").write_text(content)
    for command in (
        ["resume", "hog-runs/bad"],
        ["status", "hog-runs/bad"],
        ["collect", "hog-runs/bad"],
    ):
        refused(project.cli(*command), "run.json")
    listed = project.cli("runs")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert "3 succeeded" in listed.stdout and "bad  damaged:" in listed.stdout


def test_a_deleted_manifest_snapshot_is_an_error_naming_it(project):
    rows_run(project)
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    (project.root / "run" / "manifest.yaml").unlink()
    for command in (["resume", "run"], ["collect", "run", "-o", "x.csv"]):
        refused(project.cli(*command), "manifest snapshot", "manifest.yaml")


def test_a_read_only_run_directory_still_answers_status_and_collect_elsewhere(project):
    rows_run(project)
    with small_filesystem(project.root / "ro", "4m") as mount:
        assert project.cli("submit", "sweep.yaml", "--run-dir", "ro/run").returncode == 0
        assert (
            subprocess.run(
                ["mount", "-o", "remount,ro", str(mount)], capture_output=True
            ).returncode
            == 0
        )
        status = project.cli("status", "ro/run")
        assert status.returncode == 0 and "3 succeeded" in status.stdout, status.stderr
        collected = project.cli("collect", "ro/run", "-o", "elsewhere.csv")
        assert collected.returncode == 0, collected.stderr
        assert (project.root / "elsewhere.csv").read_text().count("succeeded") == 3
        refused(project.cli("collect", "ro/run"), "read-only")
        refused(project.cli("resume", "ro/run"), "read-only")


def test_a_full_disk_is_reported_as_such_with_exit_2(project):
    project.write("work.py", HEAD + "import os\ndef f(x):\n    return os.urandom(20000).hex()\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nsweep:\n  product:\n    x: {range: [0, 40]}\n"
    )
    with small_filesystem(project.root / "full", "400k"):
        done = project.cli("submit", "sweep.yaml", "--run-dir", "full/run")
        refused(done, "full")
        assert "cannot rollback" not in done.stderr


# --- stopping -----------------------------------------------------------------------------------------------------


def test_sigterm_stops_the_submitter_like_ctrl_c_and_the_run_resumes(project):
    side_effects, go = project.root / "side-effects.txt", project.root / "go"
    project.write(
        "work.py", HELD_COUNTING
    )  # calls 4 on wait for `go`: the run is surely running at the SIGTERM
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 2\nmax_parallel: 2\nsweep:\n  product:\n"
        "    x: {range: [0, 40]}\n"
    )
    env = {"SIDE_EFFECTS": str(side_effects), "HELD_FROM": "4", "GO": str(go)}
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while submitter.poll() is None and not (
        side_effects.exists() and len(side_effects.read_text().split()) >= 4
    ):
        assert time.monotonic() < deadline, "calls 0-3 never ran"
        time.sleep(0.05)
    assert submitter.poll() is None, submitter.communicate()[1]
    submitter.send_signal(signal.SIGTERM)
    _, stderr = submitter.communicate(timeout=60)
    assert submitter.returncode == 143, stderr
    assert (
        "terminated (SIGTERM)" in stderr
        and "hog-batch resume" in stderr
        and "Traceback" not in stderr
    )
    go.touch()
    done = project.cli("resume", "run", env=env)
    assert done.returncode == 0, done.stderr
    assert Counter(side_effects.read_text().split()) == Counter(
        str(x) for x in range(40)
    )  # 0 lost, 0 twice


def test_cancel_right_after_a_detached_submit_stops_the_run(project):
    project.write("work.py", HEAD + "import time\ndef f(x):\n    time.sleep(0.2)\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 1\nsweep:\n  product:\n"
        "    x: {range: [0, 30]}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach").returncode == 0
    cancelled = project.cli("cancel", "run")
    assert cancelled.returncode == 0, cancelled.stderr
    deadline = time.time() + 120
    while time.time() < deadline and open_run(project.root / "run").holder() is not None:
        time.sleep(0.2)
    counts = open_run(project.root / "run").counts()
    assert counts["cancelled"] > 0 and counts["pending"] == 0, counts
    assert counts["cancelled"] + counts["succeeded"] == 30
    log = project.root / "run" / "submitter.log"
    assert "Traceback" not in (log.read_text() if log.exists() else "")
