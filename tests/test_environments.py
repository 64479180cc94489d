"""uv environments: built once per cache under concurrency, never half-made, offline once warm."""

from __future__ import annotations

import os
import stat

import pandas as pd

from groundhog_batch.backends.local import find_uv

HEAD = "# /// script\n# requires-python = \">=3.10\"\n# dependencies = [{deps}]\n# ///\ndef f(x):\n    return x\n"


def counting_uv(project):
    """A uv that logs each `venv` build, then runs the real uv."""
    log = project.root / "uv-builds.log"
    wrapper = project.root / "uv-wrapper"
    wrapper.write_text(f"#!/usr/bin/env bash\nfor a in \"$@\"; do [ \"$a\" = venv ] && echo build >> '{log}'; done\n"
                       f"exec '{find_uv()}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper, log


def test_eight_tasks_on_a_cold_cache_build_the_environment_once(project, tmp_path):
    wrapper, log = counting_uv(project)
    project.write("work.py", HEAD.format(deps=""))
    project.manifest("script: work.py\nfunction: f\ncalls_per_task: 1\nmax_parallel: 8\nsweep:\n  product:\n    x: {range: [0, 8]}\n")
    env = {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cold"), "HOG_BATCH_UV": str(wrapper)}
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", env=env)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["build"]


def test_a_failed_build_leaves_no_environment_behind_and_fails_every_call_clearly(project, tmp_path):
    project.write("work.py", HEAD.format(deps='"hog-batch-no-such-package-4c1e"'))
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    cache = tmp_path / "cache"
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "r.parquet", env={"HOG_BATCH_CACHE_DIR": str(cache)})
    assert done.returncode == 1
    table = pd.read_parquet(project.root / "r.parquet")
    assert (table["status"] == "failed").all()
    assert table["error"][0].startswith("EnvironmentBuildFailed") and "hog-batch-no-such-package" in table["error"][0]
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
