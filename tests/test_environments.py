"""uv environments: built once per cache under concurrency, never half-made, offline once warm."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time

import pandas as pd

from groundhog_batch.backends.local import find_uv

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = [{deps}]\n# ///\ndef f(x):\n    return x\n'


def counting_uv(project):
    """A uv that logs each `venv` build, then runs the real uv."""
    log = project.root / "uv-builds.log"
    wrapper = project.root / "uv-wrapper"
    wrapper.write_text(
        f'#!/usr/bin/env bash\nfor a in "$@"; do [ "$a" = venv ] && echo build >> \'{log}\'; done\n'
        f"exec '{find_uv()}' \"$@\"\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper, log


def test_eight_tasks_on_a_cold_cache_build_the_environment_once(project, tmp_path):
    wrapper, log = counting_uv(project)
    project.write("work.py", HEAD.format(deps=""))
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 8\nsweep:\n  product:\n    x: {range: [0, 8]}\n"
    )
    env = {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cold"), "HOG_BATCH_UV": str(wrapper)}
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", env=env)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["build"]


def test_a_failed_build_leaves_no_environment_behind_and_fails_every_call_clearly(
    project, tmp_path
):
    project.write("work.py", HEAD.format(deps='"hog-batch-no-such-package-4c1e"'))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    cache = tmp_path / "cache"
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "r.parquet",
        env={"HOG_BATCH_CACHE_DIR": str(cache)},
    )
    assert done.returncode == 1
    table = pd.read_parquet(project.root / "r.parquet")
    assert (table["status"] == "failed").all()
    assert (
        table["error"][0].startswith("EnvironmentBuildFailed")
        and "hog-batch-no-such-package" in table["error"][0]
    )
    envs = cache / "hog-batch" / "envs"
    assert [p.name for p in envs.iterdir() if not p.name.endswith(".lock")] == []


def test_a_warm_environment_needs_no_network(project, tmp_path):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n")
    env = {"HOG_BATCH_CACHE_DIR": str(tmp_path / "warm")}
    assert project.cli("submit", "sweep.yaml", "--run-dir", "a", env=env).returncode == 0
    offline = {**env, "UV_OFFLINE": "1", "HOG_BATCH_UV": "/nonexistent/uv", "PATH": os.defpath}
    done = project.cli("submit", "sweep.yaml", "--run-dir", "b", env=offline)
    assert done.returncode == 0, done.stderr


# --- many task scripts at once on a shared filesystem (issue 17): a lock that is a directory ---------

SLOW_BUILD = '[ "$a" = venv ] && sleep 1'


def rendered_task(project, deps=""):
    """Task 0's script, as `plan --render 0` prints it, written to a file."""
    project.write("work.py", HEAD.format(deps=deps))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [7]\n")
    done = project.cli("plan", "sweep.yaml", "--render", "0")
    assert done.returncode == 0, done.stderr
    script = project.root / "task.sh"
    script.write_text(done.stdout)
    env_id = json.loads(project.cli("plan", "sweep.yaml", "--json").stdout)["jobs"][0][
        "environment"
    ]["env_id"]
    return script, env_id


def uv_wrapper(folder, log, extra=""):
    """A uv that logs each `venv` build (and runs ``extra`` for each argument), then runs the real uv."""
    wrapper = folder / "uv-wrapper"
    wrapper.write_text(
        f'#!/usr/bin/env bash\nfor a in "$@"; do [ "$a" = venv ] && echo build >> \'{log}\'; {extra or ":"}; done\n'
        f"exec '{find_uv()}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def task_env(cache, uv, **more):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOG_BATCH_")}
    return {**env, "HOG_BATCH_CACHE_DIR": str(cache), "HOG_BATCH_UV": str(uv), **more}


def start_task(script, env):
    return subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=script.parent,
        text=True,
        start_new_session=True,
    )


def test_eight_task_scripts_started_at_once_on_a_cold_cache_build_the_environment_once(
    project, tmp_path
):
    script, _ = rendered_task(project)
    log = tmp_path / "builds.log"
    env = task_env(tmp_path / "cold", uv_wrapper(tmp_path, log, SLOW_BUILD))
    tasks = [start_task(script, env) for _ in range(8)]
    outputs = [task.communicate(timeout=240) for task in tasks]
    assert [task.returncode for task in tasks] == [0] * 8, outputs
    assert all('"value": 7' in out for out, _ in outputs)
    assert log.read_text().split() == ["build"]
    envs = tmp_path / "cold" / "hog-batch" / "envs"
    assert sorted(p.name for p in envs.iterdir()) == sorted(
        p.name for p in envs.iterdir() if "." not in p.name
    )  # no lock, no build dir


def test_a_lock_left_by_a_builder_that_died_on_this_node_is_taken_over_at_once(project, tmp_path):
    script, env_id = rendered_task(project)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / "cache" / "hog-batch" / "envs" / f"{env_id}.lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text(f"{socket.gethostname()} {dead.pid}\n")
    log = tmp_path / "builds.log"
    task = start_task(
        script,
        task_env(tmp_path / "cache", uv_wrapper(tmp_path, log), HOG_BATCH_LOCK_STALE_S="3600"),
    )
    out, err = task.communicate(timeout=120)
    assert task.returncode == 0, err
    assert f"removed the lock {lock}: its holder, process {dead.pid} on this host, is gone" in err
    assert log.read_text().split() == ["build"] and not lock.exists()


def test_a_lock_from_another_node_that_shows_no_sign_of_life_is_broken_after_the_stale_time(
    project, tmp_path
):
    script, env_id = rendered_task(project)
    lock = tmp_path / "cache" / "hog-batch" / "envs" / f"{env_id}.lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text("node-0042 12345\n")
    (lock / "beat").write_text("17\n")
    task = start_task(script, task_env(tmp_path / "cache", find_uv(), HOG_BATCH_LOCK_STALE_S="2"))
    out, err = task.communicate(timeout=120)
    assert task.returncode == 0, err
    assert "held by node-0042 12345 with no sign of life for 2 s" in err


def test_a_lock_whose_holder_on_another_node_is_alive_is_waited_for_and_never_broken(
    project, tmp_path
):
    script, env_id = rendered_task(project)
    lock = tmp_path / "cache" / "hog-batch" / "envs" / f"{env_id}.lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text("node-0042 12345\n")
    stop = threading.Event()

    def heartbeat():  # what the holder's task script does, from "another node"
        n = 0
        while not stop.wait(0.5):
            n += 1
            (lock / "beat.tmp").write_text(f"{n}\n")
            os.replace(lock / "beat.tmp", lock / "beat")

    beating = threading.Thread(target=heartbeat)
    beating.start()
    try:
        task = start_task(
            script,
            task_env(
                tmp_path / "cache", find_uv(), HOG_BATCH_LOCK_STALE_S="2", HOG_BATCH_LOCK_WAIT_S="5"
            ),
        )
        out, err = task.communicate(timeout=120)
    finally:
        stop.set()
        beating.join()
    assert task.returncode == 97
    assert (
        f"waited 5 s for the lock {lock} (held by node-0042 12345)" in err
        and "removed the lock" not in err
    )
    assert (lock / "owner").read_text() == "node-0042 12345\n"


def test_a_builder_killed_mid_build_leaves_no_environment_and_the_next_task_builds_it(
    project, tmp_path
):
    script, env_id = rendered_task(project)
    envs = tmp_path / "cache" / "hog-batch" / "envs"
    built = tmp_path / "venv-built"  # uv's exit status, once `uv venv` has returned
    stuck = tmp_path / "uv-stuck"  # builds the venv, then hangs before the environment is complete
    stuck.write_text(
        f"#!/usr/bin/env bash\n'{find_uv()}' \"$@\"\nstatus=$?\n"
        f'for a in "$@"; do [ "$a" = venv ] && {{ echo $status > \'{built}\'; sleep 300; }}; done\n'
        "exit $status\n"
    )
    stuck.chmod(0o755)
    first = start_task(script, task_env(tmp_path / "cache", stuck))
    deadline = time.monotonic() + 180
    while not built.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    _, first_err = first.communicate(timeout=30)
    assert built.exists() and built.read_text().strip() == "0", (
        f"`uv venv` did not finish: {built.exists() and built.read_text()!r}; task: {first_err}"
    )
    assert list(envs.glob(f".build-{env_id}.*/env/bin/python"))  # it was killed mid-build
    assert not (envs / env_id).exists()  # half an environment is never where a task looks
    log = tmp_path / "builds.log"
    second = start_task(script, task_env(tmp_path / "cache", uv_wrapper(tmp_path, log)))
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert '"value": 7' in out and log.read_text().split() == ["build"]
    assert sorted(p.name for p in envs.iterdir()) == [
        env_id
    ]  # the dead builder's lock and temp dir are gone


def test_an_environment_the_cache_holds_complete_is_not_looked_at_by_a_task_of_its_own(tmp_path):
    """Before the tasks start, the submitter gets each environment ready with a task that runs no call. One the
    cache holds complete, in private folders, needs none (bash and Python started for nothing cost 0.15 s
    of every submit); one missing, or in a folder others can write, still gets it, and its task decides."""
    from groundhog_batch.backends.local import LocalBackend

    cache = tmp_path / "cache"
    env_dir = cache / "hog-batch" / "envs" / "e1"
    env_dir.mkdir(parents=True, mode=0o700)
    for folder in (cache / "hog-batch", cache / "hog-batch" / "envs"):
        folder.chmod(0o700)
    (env_dir / ".hog-complete").touch()
    looked = tmp_path / "looked"
    backend = LocalBackend(tmp_path / "scratch", tmp_path, {"HOG_BATCH_CACHE_DIR": str(cache)})

    def build(env_id):
        return ("job", "nothing", f"echo {env_id} >> '{looked}'\n", env_id)

    backend.build_environments([build("e1"), build("e2")], quiet_s=60)
    assert looked.read_text().split() == ["e2"]  # e1 is complete: no task looked at it
    (cache / "hog-batch" / "envs").chmod(0o777)
    backend.build_environments([build("e1")], quiet_s=60)
    assert looked.read_text().split() == ["e2", "e1"]  # others may write there: its task decides
