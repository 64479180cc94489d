"""The environment and uv cache is per user and private: nothing another user prepared in it is ever used."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from conftest import TRIVIAL_SCRIPT

MANIFEST = "script: work.py\nfunction: square\nsweep:\n  product:\n    x: [1, 2]\n"


def setup(project, tmp_path):
    project.write("work.py", TRIVIAL_SCRIPT)
    project.manifest(MANIFEST)
    cache = tmp_path / "shared cache"
    cache.mkdir()
    env_id = json.loads(project.cli("plan", "sweep.yaml", "--json").stdout)["jobs"][0][
        "environment"
    ]["env_id"]
    return cache, cache / "hog-batch", env_id


def run(project, cache):
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "out.csv",
        env={"HOG_BATCH_CACHE_DIR": str(cache)},
    )
    table = pd.read_csv(project.root / "out.csv") if (project.root / "out.csv").exists() else None
    return done, table


def refused(done, table, *words):
    assert done.returncode == 1, done.stderr
    assert (table["status"] == "failed").all()
    error = table["error"][0]
    assert error.startswith("EnvironmentBuildFailed")
    for word in words:
        assert word in error, error


def test_a_fresh_cache_is_created_private(project, tmp_path):
    cache, base, env_id = setup(project, tmp_path)
    done, table = run(project, cache)
    assert done.returncode == 0, done.stderr
    for directory in (base, base / "envs", base / "envs" / env_id):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_an_environment_another_user_created_first_is_refused_naming_the_path(project, tmp_path):
    cache, base, env_id = setup(project, tmp_path)
    planted = base / "envs" / env_id
    planted.mkdir(parents=True, mode=0o700)
    (base / "envs").chmod(0o700)
    base.chmod(0o700)
    (planted / ".hog-complete").touch()
    (planted / "bin").mkdir()
    (planted / "bin" / "python").write_text("#!/bin/sh\necho pwned > /dev/stderr\n")
    os.chown(planted, 65534, 65534)  # nobody
    done, table = run(project, cache)
    refused(done, table, str(planted), "belongs to another user")
    assert "pwned" not in done.stderr + table["error"][0]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_a_cache_directory_another_user_owns_is_refused(project, tmp_path):
    cache, base, _ = setup(project, tmp_path)
    base.mkdir(mode=0o700)
    os.chown(base, 65534, 65534)
    done, table = run(project, cache)
    refused(done, table, str(base), "belongs to another user")


def test_a_cache_directory_others_can_write_is_refused(project, tmp_path):
    cache, base, _ = setup(project, tmp_path)
    base.mkdir()
    base.chmod(0o777)
    done, table = run(project, cache)
    refused(done, table, str(base), "writable by other users")


def test_a_symlinked_cache_directory_is_refused(project, tmp_path):
    cache, base, _ = setup(project, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    base.symlink_to(elsewhere)
    done, table = run(project, cache)
    refused(done, table, str(base), "symlink")


def test_a_symlinked_lock_is_not_followed_and_its_target_is_untouched(project, tmp_path):
    cache, base, env_id = setup(project, tmp_path)
    (base / "envs").mkdir(parents=True, mode=0o700)
    base.chmod(0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (base / "envs" / f"{env_id}.lock").symlink_to(victim)
    done, table = run(project, cache)
    refused(done, table, f"{env_id}.lock", "symlink")
    assert victim.read_text() == "precious\n"


def test_an_environment_build_compiles_bytecode(project, tmp_path):
    from groundhog_batch.backends.local import find_uv

    wrapper, log = tmp_path / "uv", tmp_path / "uv-calls.txt"
    wrapper.write_text(f"#!/usr/bin/env bash\necho \"$*\" >> '{log}'\nexec '{find_uv()}' \"$@\"\n")
    wrapper.chmod(0o755)
    project.write(
        "work.py",
        TRIVIAL_SCRIPT.replace(
            "dependencies = []", 'dependencies = ["hog-batch-no-such-package-4c1e"]'
        ),
    )
    project.manifest(MANIFEST)
    project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env={
            "HOG_BATCH_CACHE_DIR": str(tmp_path / "cache"),
            "HOG_BATCH_UV": str(wrapper),
            "UV_OFFLINE": "1",
        },
    )
    installs = [line for line in log.read_text().splitlines() if " pip install " in f" {line} "]
    assert installs and all("--compile-bytecode" in line for line in installs)
