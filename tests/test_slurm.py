"""Sweeps as Slurm job arrays, end to end through a real one-node Slurm (tests/slurm_cluster.py).

Each test asserts what the user sees (exit codes, the results table) and the
side effects counted per call: every call appends its argument to a file, so a
call that ran twice, or not at all, shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import SCRIPT_HEAD

pytestmark = pytest.mark.slurm

# f(x) appends "start x" to $SIDE_EFFECTS, then x when it is done; x in SLOW sleeps for ever (until a walltime
# stops it); with CALL_BARRIER_N set, a call waits (up to 2 minutes) until that many calls have started; x in
# HELD waits (up to 2 minutes) for the file $CALL_GO_FILE (a test that stops the run part-way knows it still runs).
SCRIPT = SCRIPT_HEAD + (
    "import os, time\n"
    "SLOW = {int(v) for v in os.environ.get('SLOW_CALLS', '').split(',') if v}\n"
    "HELD = {int(v) for v in os.environ.get('HELD_CALLS', '').split(',') if v}\n"
    "PAUSE = float(os.environ.get('CALL_PAUSE_S', '0'))\n"
    "BARRIER = int(os.environ.get('CALL_BARRIER_N', '0'))\n"
    "def started():\n"
    "    with open(os.environ['SIDE_EFFECTS']) as log:\n"
    "        return sum(line.startswith('start') for line in log)\n"
    "def f(x):\n"
    "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
    "        log.write(f'start {x}\\n')\n"
    "    deadline = time.monotonic() + 120\n"
    "    while started() < BARRIER and time.monotonic() < deadline:\n"
    "        time.sleep(0.05)\n"
    "    while x in HELD and not os.path.exists(os.environ['CALL_GO_FILE']):\n"
    "        if time.monotonic() > deadline:\n"
    "            raise TimeoutError('the test never created ' + os.environ['CALL_GO_FILE'])\n"
    "        time.sleep(0.05)\n"
    "    if x in SLOW:\n"
    "        time.sleep(3600)\n"
    "    time.sleep(PAUSE)\n"
    "    with open(os.environ['SIDE_EFFECTS'], 'a') as log:\n"
    "        log.write(f'{x}\\n')\n"
    "    return x * 10\n"
)


def manifest_text(
    n_calls: int,
    calls_per_task: int,
    max_parallel: int,
    walltime: str = "00:10:00",
    partition: str = "debug",
    extra: str = "",
) -> str:
    return (
        "name: arrays\n"
        "script: f.py\n"
        "function: f\n"
        "endpoint: cluster\n"
        "endpoints:\n"
        "  cluster:\n"
        "    endpoint: slurm\n"
        f"    partition: {partition}\n"
        f'    walltime: "{walltime}"\n'
        f"calls_per_task: {calls_per_task}\n"
        f"max_parallel: {max_parallel}\n"
        f"{extra}"
        "sweep:\n"
        "  product:\n"
        f"    x: {{range: [0, {n_calls}]}}\n"
    )


class Sweep:
    """A project with the counting script, and what its calls did."""

    def __init__(
        self,
        project,
        n_calls: int,
        calls_per_task: int,
        max_parallel: int,
        script: str = SCRIPT,
        **options,
    ) -> None:
        self.project = project
        self.side_effects = project.root / "side-effects.txt"
        project.write("f.py", script)
        project.manifest(manifest_text(n_calls, calls_per_task, max_parallel, **options))
        self.run_dir = project.root / "run"
        self.env = {"SIDE_EFFECTS": str(self.side_effects)}

    def cli(
        self, *args: str, env: dict | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess:
        return self.project.cli(*args, env={**self.env, **(env or {})}, timeout=timeout)

    def finished(self) -> Counter:
        """How often each call finished."""
        return Counter(int(line) for line in self._lines() if not line.startswith("start"))

    def started(self) -> Counter:
        return Counter(int(line.split()[1]) for line in self._lines() if line.startswith("start"))

    def _lines(self) -> list[str]:
        return self.side_effects.read_text().splitlines() if self.side_effects.exists() else []

    def status(self) -> dict:
        done = self.cli("status", str(self.run_dir), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def table(self) -> list[dict]:
        out = self.project.root / "table.json"
        done = self.cli("collect", str(self.run_dir), "-o", str(out))
        assert done.returncode == 0, done.stderr
        return json.loads(out.read_text())

    def arrays(self, slurm) -> set[str]:
        """The array job ids Slurm knows for this run (its job names start with hog-RUNKEY-)."""
        from groundhog_batch.ledger import Ledger

        ledger = Ledger(self.run_dir / "state.sqlite", read_only=True)
        try:
            key = ledger.get_meta("slurm_run_key")
        finally:
            ledger.close()
        lines = slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%F|%j").stdout.splitlines()
        return {
            line.split("|")[0] for line in lines if line.split("|")[1].startswith(f"hog-{key}-")
        }


def held(calls, go: Path) -> dict[str, str]:
    """The environment that makes ``calls`` wait for the file ``go``."""
    return {"HELD_CALLS": ",".join(str(x) for x in calls), "CALL_GO_FILE": str(go)}


def wait_for(predicate, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_readme_grid_example_runs_as_a_slurm_array(project, slurm):
    source = Path(__file__).parent.parent / "configs" / "01-grid"
    shutil.copytree(source, project.root, dirs_exist_ok=True)
    done = project.cli(
        "submit", "sweep.yaml", "--endpoint", "slurm", "--run-dir", "run", "-o", "out.json"
    )
    assert done.returncode == 0, done.stderr
    assert "pi-grid: 8 succeeded" in done.stderr
    rows = json.loads((project.root / "out.json").read_text())
    assert sorted((row["n"], row["seed"]) for row in rows) == [
        (n, s) for n in (1000, 10000) for s in range(4)
    ]
    assert all(abs(row["result.pi"] - 3.14159) < 0.3 for row in rows)
    info = json.loads((project.root / "run" / "run.json").read_text())
    assert info["backend"] == "slurm"


def test_two_thousand_calls_go_out_as_twenty_elements_two_at_a_time(project, slurm):
    sweep = Sweep(project, n_calls=2000, calls_per_task=100, max_parallel=2)
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert "arrays: 2000 succeeded" in done.stderr
    assert sweep.finished() == Counter(range(2000))  # every call exactly once
    assert len(sweep.arrays(slurm)) == 1  # one array of 20 elements, not 20 jobs
    # %2: never more than two elements ran at once (each element's span from its first to its last call)
    table = sweep.table()
    spans: dict[int, list[float]] = {}
    for row in table:
        span = spans.setdefault(row["call"] // 100, [row["started_at"], row["finished_at"]])
        span[0], span[1] = min(span[0], row["started_at"]), max(span[1], row["finished_at"])
    assert len(spans) == 20
    edges = sorted(
        [(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most <= 2
    assert [row["result"] for row in sorted(table, key=lambda r: r["call"])] == [
        x * 10 for x in range(2000)
    ]
    assert "only this node sees" in done.stderr  # the run directory is under /tmp: said so


def test_a_submitter_killed_right_after_sbatch_never_submits_a_second_array(
    project, slurm, tmp_path
):
    sweep = Sweep(project, n_calls=40, calls_per_task=10, max_parallel=4)
    shim = tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("sbatch")
    (
        shim / "sbatch"
    ).write_text(  # the real sbatch, then SIGKILL to the submitter that called it (not for checks)
        f'#!/bin/sh\n"{real}" "$@"\nstatus=$?\ncase " $* " in *" --test-only "*) ;; *) kill -9 $PPID ;; esac\n'
        "exit $status\n"
    )
    (shim / "sbatch").chmod(0o755)
    killed = sweep.cli(
        "submit", "sweep.yaml", "--run-dir", "run", env={"PATH": f"{shim}:{os.environ['PATH']}"}
    )
    assert killed.returncode == -9
    assert len(sweep.arrays(slurm)) == 1  # sbatch took the array; the ledger never heard its id
    resumed = sweep.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "arrays: 40 succeeded" in resumed.stderr
    assert len(sweep.arrays(slurm)) == 1  # found by name in squeue and adopted: no second array
    assert sweep.finished() == Counter(range(40))


def test_detached_submit_returns_once_the_arrays_are_accepted_and_status_watch_follows_them(
    project, slurm
):
    sweep = Sweep(project, n_calls=30, calls_per_task=10, max_parallel=3)
    done = sweep.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "--detach", env={"CALL_PAUSE_S": "0.1"}
    )
    assert done.returncode == 0, done.stderr
    assert "status --watch" in done.stderr
    assert sweep.status()["active"] is None  # nothing of hog-batch runs here while the arrays run
    watched = sweep.cli("status", "run", "--watch")
    assert watched.returncode == 0, watched.stderr + watched.stdout
    assert sweep.status()["counts"]["succeeded"] == 30
    assert sweep.finished() == Counter(range(30))


def test_cancel_mid_run_keeps_finished_calls_and_cancels_the_rest(project, slurm):
    sweep = Sweep(project, n_calls=40, calls_per_task=10, max_parallel=2)
    go = project.root / "go"  # calls 3 on wait for it: the cancel surely lands mid-run
    done = sweep.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "--detach",
        env={"CALL_PAUSE_S": "0.3", **held(range(3, 40), go)},
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: sum(sweep.finished().values()) >= 3, "three calls to finish")
    cancelled = sweep.cli("cancel", "run")
    assert cancelled.returncode == 0, cancelled.stderr
    go.touch()  # a held call the cancel missed would finish now
    assert not slurm.run(
        "squeue", "-h", "-t", "PD,R,CG", "-o", "%i"
    ).stdout.strip()  # nothing left on Slurm
    before = sweep.finished()
    time.sleep(1.5)
    assert sweep.finished() == before  # nothing runs any more
    counts = sweep.status()["counts"]
    assert counts["succeeded"] == len(before) and set(before.values()) == {1}
    assert counts["succeeded"] + counts["cancelled"] == 40
    assert counts["cancelled"] > 0
    status = sweep.cli("status", "run", "--watch")
    assert status.returncode == 1  # not every call succeeded


def test_a_short_walltime_keeps_finished_calls_fails_the_running_one_and_resume_runs_the_rest(
    project, slurm
):
    sweep = Sweep(project, n_calls=10, calls_per_task=10, max_parallel=1, walltime="00:01:00")
    done = sweep.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "--detach", env={"SLOW_CALLS": "2"}
    )
    assert done.returncode == 0, done.stderr
    [array] = sweep.arrays(slurm)
    wait_for(lambda: sweep.started()[2], "call 2 to start")
    # The walltime passes now rather than in a minute: Slurm's own time-limit check (every 30 s) then
    # kills the element as at its walltime (TIMEOUT, Reason=TimeLimit), without the minute's wait.
    slurm.run("scontrol", "update", f"JobId={array}_0", "EndTime=now")
    watched = sweep.cli("status", "run", "--watch", timeout=200)
    assert watched.returncode == 1
    status = sweep.status()
    assert status["counts"]["succeeded"] == 2 and status["counts"]["failed"] == 1
    assert status["counts"]["pending"] == 7  # never started: not failed, no attempt counted
    [failure] = status["failures"]
    assert (
        failure["call"] == 2
        and failure["error"].startswith("TimeoutError:")
        and "00:01:00" in failure["error"]
    )
    resumed = sweep.cli("resume", "run")
    assert resumed.returncode == 1  # call 2 stays failed
    assert sweep.status()["counts"]["succeeded"] == 9
    assert sweep.finished() == Counter([0, 1, 3, 4, 5, 6, 7, 8, 9])
    assert sweep.started()[2] == 1  # the slow call ran once, and was stopped by the walltime
    ended = slurm.run("squeue", "-h", "-r", "-t", "all", "-j", array, "-o", "%T %r %l").stdout
    assert ended.split() == ["TIMEOUT", "TimeLimit", "1:00"]  # Slurm's own walltime kill


def test_the_walltime_warning_signal_finishes_the_running_call_and_starts_no_new_one(
    project, slurm
):
    sweep = Sweep(project, n_calls=20, calls_per_task=20, max_parallel=1)
    done = sweep.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "--detach", env={"CALL_PAUSE_S": "0.5"}
    )
    assert done.returncode == 0, done.stderr
    [array] = sweep.arrays(slurm)
    wait_for(lambda: sum(sweep.finished().values()) >= 2, "two calls to finish")
    # What Slurm does at --signal=B:TERM@N, which may come long before the walltime: TERM to the batch shell.
    slurm.run("scancel", "--batch", "--signal=TERM", f"{array}_0")
    watched = sweep.cli("status", "run", "--watch")
    assert watched.returncode == 1
    counts = sweep.status()["counts"]
    ran = sweep.finished()
    assert counts["succeeded"] == len(ran) < 20 and counts["failed"] == 0
    assert counts["pending"] == 20 - len(ran)
    assert (
        sweep.started() == ran
    )  # the call running when the signal came finished; none started after it
    resumed = sweep.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert sweep.finished() == Counter(range(20))


def test_more_tasks_than_max_array_size_go_out_as_several_arrays(project, slurm, tmp_path):
    from slurm_cluster import SlurmCluster

    small = SlurmCluster(max_array_size=4).start()
    try:
        sweep = Sweep(project, n_calls=20, calls_per_task=2, max_parallel=10)
        done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run", env=small.environment())
        assert done.returncode == 0, done.stderr
        assert len(sweep.arrays(small)) == 3  # 10 tasks, at most 4 elements an array: 4 + 4 + 2
        assert sweep.finished() == Counter(range(20))
    finally:
        small.stop()


def test_a_cold_environment_cache_is_built_once_by_eight_elements_starting_together(
    project, slurm, tmp_path
):
    from groundhog_batch.backends.local import find_uv

    builds = tmp_path / "builds.txt"
    counting_uv = tmp_path / "uv"
    counting_uv.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = venv ] && echo "$$" >> "{builds}"; done\n'
        f'exec "{find_uv()}" "$@"\n'
    )
    counting_uv.chmod(0o755)
    sweep = Sweep(project, n_calls=8, calls_per_task=1, max_parallel=8)
    cache = tmp_path / "cold-cache"
    done = sweep.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env={
            "HOG_BATCH_CACHE_DIR": str(cache),
            "HOG_BATCH_UV": str(counting_uv),
            "CALL_BARRIER_N": "8",
        },
    )
    assert done.returncode == 0, done.stderr
    assert sweep.finished() == Counter(range(8))
    assert len(builds.read_text().splitlines()) == 1
    table = sweep.table()
    assert max(r["started_at"] for r in table) < min(
        r["finished_at"] for r in table
    )  # all eight ran at once (each call waits until all eight have started)


SECOND_USER = "hogbatch2"


@pytest.fixture
def second_user():
    """A second Unix user (created here, as root), who may run this checkout's Python."""
    import fcntl

    with open(
        "/tmp/hog-batch-second-user.lock", "a"
    ) as lock:  # test runs of other checkouts take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        if subprocess.run(["id", SECOND_USER], capture_output=True).returncode != 0:
            subprocess.run(
                ["useradd", "--create-home", SECOND_USER], check=True, capture_output=True
            )
        # The interpreter may live under a private folder (/root/.pyenv): let the user pass through (o+x) while
        # the test runs.
        closed = {}
        for path in {
            *Path(os.path.realpath(sys.executable)).parents,
            *Path(__file__).resolve().parents,
        }:
            mode = path.stat().st_mode & 0o777
            if not mode & 0o001:
                closed[path] = mode
                path.chmod(mode | 0o001)
        try:
            yield SECOND_USER
        finally:
            for path, mode in closed.items():
                path.chmod(mode)


def test_two_users_share_scratch_each_with_a_private_cache(slurm, second_user, tmp_path_factory):
    import pwd

    shared = Path(tempfile_dir("hog-shared-scratch-"))
    shared.chmod(0o1777)  # $SCRATCH: everyone's, sticky
    results = {}
    try:
        for user in ("root", second_user):
            home = Path(tempfile_dir(f"hog-{user}-project-"))
            entry = pwd.getpwnam(user)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            (home / "f.py").write_text(SCRIPT)
            (home / "sweep.yaml").write_text(manifest_text(6, 3, 2))
            for path in home.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)
            env = {key: value for key, value in os.environ.items() if key != "HOG_BATCH_CACHE_DIR"}
            env.update(
                SCRATCH=str(shared),
                SIDE_EFFECTS=str(home / "side-effects.txt"),
                HOME=entry.pw_dir,
                USER=user,
                LOGNAME=user,
                UV_CACHE_DIR="",
            )
            env.pop("UV_CACHE_DIR")
            command = [
                sys.executable,
                "-m",
                "groundhog_batch",
                "submit",
                "sweep.yaml",
                "--run-dir",
                "run",
            ]
            if user != "root":
                command = ["runuser", "-u", user, "--", *command]
            done = subprocess.run(
                command, cwd=home, env=env, capture_output=True, text=True, timeout=240
            )
            results[user] = (done, home)
        for user, (done, home) in results.items():
            assert done.returncode == 0, f"{user}: {done.stderr}"
            finished = [
                line
                for line in (home / "side-effects.txt").read_text().splitlines()
                if line.isdigit()
            ]
            assert sorted(map(int, finished)) == list(range(6))
        caches = {path.stat().st_uid: path for path in shared.iterdir()}
        for user in ("root", second_user):
            uid = pwd.getpwnam(user).pw_uid
            assert uid in caches, (
                f"no cache of {user} in {sorted(p.name for p in shared.iterdir())}"
            )
            assert caches[uid].stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for _, home in results.values():
            shutil.rmtree(home, ignore_errors=True)


def tempfile_dir(prefix: str) -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def test_an_unknown_partition_is_a_located_error_and_nothing_is_submitted(project, slurm):
    sweep = Sweep(project, n_calls=4, calls_per_task=2, max_parallel=2, partition="nosuchpartition")
    known = set(slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%i").stdout.split())
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 2
    line = (
        manifest_text(4, 2, 2, partition="nosuchpartition")
        .splitlines()
        .index("    partition: nosuchpartition")
        + 1
    )
    assert f"sweep.yaml:{line}" in done.stderr
    assert "Invalid partition name specified" in done.stderr  # sbatch's own words
    assert "fix:" in done.stderr and "sinfo" in done.stderr
    assert not sweep.run_dir.exists()  # nothing half-made
    assert (
        set(slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%i").stdout.split()) == known
    )  # no job submitted


def test_ctrl_c_on_a_foreground_submit_stops_its_arrays_and_resume_runs_the_rest_once(
    project, slurm
):
    import signal

    sweep = Sweep(project, n_calls=30, calls_per_task=10, max_parallel=3)
    go = (
        project.root / "go"
    )  # all but each element's first call wait for it: Ctrl-C surely lands mid-run
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        env={
            **os.environ,
            **sweep.env,
            "CALL_PAUSE_S": "0.3",
            **held((x for x in range(30) if x % 10), go),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: sum(sweep.finished().values()) >= 3, "three calls to finish")
        submitter.send_signal(signal.SIGINT)
        _, stderr = submitter.communicate(timeout=90)
    finally:
        submitter.kill()
    assert submitter.returncode == 130, stderr
    go.touch()  # a held call Ctrl-C left running would finish now
    [array] = sweep.arrays(slurm)
    assert not slurm.run(
        "squeue", "-h", "-r", "-t", "PD,R,CG", "-j", array, "-o", "%i"
    ).stdout.strip()
    counts = sweep.status()["counts"]
    assert counts["succeeded"] == sum(sweep.finished().values()) and counts["failed"] == 0
    resumed = sweep.cli("resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert sweep.finished() == Counter(range(30))


# --- memory: and escalated retries: what each array asks Slurm for ---------------------------------


def run_arrays(sweep, slurm) -> list[dict[str, str]]:
    """``scontrol show job`` of each array of the run, in submission order."""
    shown = []
    for array_id in sorted(sweep.arrays(slurm), key=int):
        fields = slurm.run("scontrol", "-o", "show", "job", array_id).stdout.splitlines()[0]
        shown.append(dict(word.split("=", 1) for word in fields.split() if "=" in word))
    return shown


def test_memory_is_asked_of_slurm_with_mem_and_more_than_a_node_has_is_a_located_error(
    project, slurm
):
    sweep = Sweep(project, n_calls=2, calls_per_task=1, max_parallel=2, extra="memory: 600M\n")
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    [array] = run_arrays(sweep, slurm)
    assert array["MinMemoryNode"] == "600M" and array["TimeLimit"] == "00:10:00"
    assert sweep.finished() == Counter(range(2))

    over = Sweep(project, n_calls=2, calls_per_task=1, max_parallel=2, extra="memory: 9G\n")
    known = set(slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%i").stdout.split())
    done = over.cli("submit", "sweep.yaml", "--run-dir", "run2")
    assert done.returncode == 2
    line = manifest_text(2, 1, 2, extra="memory: 9G\n").splitlines().index("memory: 9G") + 1
    assert f"sweep.yaml:{line}" in done.stderr  # at the `memory:` line
    assert "9216 MiB" in done.stderr and "(8000 MiB)" in done.stderr  # the node's RealMemory
    assert "Traceback" not in done.stderr and "fix: lower `memory:` to at most 8000M" in done.stderr
    assert not (project.root / "run2").exists()
    assert set(slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%i").stdout.split()) == known


RETRIED = SCRIPT_HEAD + (
    "import os, time\n"
    "def f(x):\n"
    "    if os.environ['HOG_BATCH_ATTEMPT'] == '1':\n"
    "        time.sleep(60)  # past the call's timeout: a TimeoutError\n"
    "    return x\n"
)


def test_a_retry_after_a_timeout_goes_out_in_an_array_with_the_escalated_walltime_and_memory(
    project, slurm
):
    sweep = Sweep(
        project,
        n_calls=2,
        calls_per_task=1,
        max_parallel=2,
        script=RETRIED,
        walltime="00:01:00",
        extra="timeout: 1\nmemory: 500M\n"
        "retries: {max: 1, on: [TimeoutError], walltime: 2x, memory: 2x}\n",
    )
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    status = sweep.status()
    assert status["counts"]["succeeded"] == 2
    assert [row["attempts"] for row in sweep.table()] == [2, 2]
    first, *retries = run_arrays(sweep, slurm)  # each call is retried as soon as it failed
    assert (first["TimeLimit"], first["MinMemoryNode"]) == ("00:01:00", "500M")
    assert {(r["TimeLimit"], r["MinMemoryNode"]) for r in retries} == {("00:02:00", "1000M")}
    elements = [
        line
        for array in [first, *retries]
        for line in slurm.run(
            "squeue", "-h", "-r", "-t", "all", "-j", array["ArrayJobId"], "-o", "%l %m"
        ).stdout.splitlines()
    ]
    assert (
        sorted(elements) == ["1:00 500M"] * 2 + ["2:00 1000M"] * 2
    )  # each call: once, then once more
