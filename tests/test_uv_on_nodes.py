"""uv on real nodes, as Groundhog's task script does it (issue 18): the cache off the home directory,
a Python the node lacks, an old uv on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile

import pandas as pd
from test_environments import HEAD, rendered_task, start_task

from groundhog_batch.backends.local import find_uv
from groundhog_batch.render.renderer import UV_BOOTSTRAP_VERSION

MANIFEST = "script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n"


def env_logging_uv(folder):
    """A uv that logs, per call, its arguments and the uv variables it was given, then runs the real uv."""
    log = folder / "uv-calls.log"
    wrapper = folder / "uv-logging"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        f"echo \"$* | cache=${{UV_CACHE_DIR:-}} pythons=${{UV_PYTHON_INSTALL_DIR:-}} downloads=${{UV_PYTHON_DOWNLOADS:-}}\" >> '{log}'\n"
        f"exec '{find_uv()}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper, log


def node_env(tmp_path, **more):
    """A node's environment: no hog-batch or uv variables of ours, a user name, a HOME of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOG_BATCH_", "UV_", "GROUNDHOG_", "SCRATCH"))
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**env, "USER": "alice", "HOME": str(home), **more}


def cli(project, *args, env):
    """The CLI with exactly ``env`` (project.cli adds the test session's variables)."""
    return subprocess.run(
        [sys.executable, "-m", "groundhog_batch", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_the_uv_cache_and_its_pythons_live_under_scratch_user_uv(project, tmp_path):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest(MANIFEST)
    uv, log = env_logging_uv(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = cli(
        project,
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env=node_env(tmp_path, SCRATCH=str(scratch), HOG_BATCH_UV=str(uv)),
    )
    assert done.returncode == 0, done.stderr
    mine = scratch / "alice"
    builds = [line for line in log.read_text().splitlines() if " venv " in line]
    assert len(builds) == 1 and builds[0].endswith(
        f"| cache={mine}/uv pythons={mine}/uv/python downloads=never"
    )
    assert (mine / "uv" / "CACHEDIR.TAG").exists() and not (tmp_path / "home" / ".cache").exists()
    for directory in (
        mine,
        mine / "uv",
        mine / "uv" / "python",
        mine / "hog-batch",
        mine / "hog-batch" / "envs",
    ):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_groundhog_cache_dir_comes_before_scratch(project, tmp_path):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest(MANIFEST)
    chosen, scratch = tmp_path / "fast", tmp_path / "scratch"
    chosen.mkdir()
    scratch.mkdir()
    done = cli(
        project,
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        env=node_env(tmp_path, GROUNDHOG_CACHE_DIR=str(chosen), SCRATCH=str(scratch)),
    )
    assert done.returncode == 0, done.stderr
    assert (chosen / "alice" / "uv" / "CACHEDIR.TAG").exists() and list(scratch.iterdir()) == []


def test_a_uv_cache_another_user_can_write_is_refused(project, tmp_path):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest(MANIFEST)
    scratch = tmp_path / "scratch"
    (scratch / "alice" / "uv").mkdir(parents=True)
    (scratch / "alice").chmod(0o700)
    (scratch / "alice" / "uv").chmod(0o777)
    done = cli(
        project,
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "r.csv",
        env=node_env(tmp_path, SCRATCH=str(scratch)),
    )
    assert done.returncode == 1
    error = pd.read_csv(project.root / "r.csv")["error"][0]
    assert (
        error.startswith("EnvironmentBuildFailed")
        and f"{scratch}/alice/uv is writable by other users" in error
    )


def test_a_python_the_node_lacks_fails_the_task_with_97_and_offers_python_downloads(
    project, tmp_path
):
    project.write("work.py", HEAD.format(deps="").replace(">=3.10", ">=3.99"))
    project.manifest(MANIFEST)
    done = cli(
        project,
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "r.csv",
        env=node_env(tmp_path, HOG_BATCH_CACHE_DIR=str(tmp_path / "c")),
    )
    assert done.returncode == 1
    error = pd.read_csv(project.root / "r.csv")["error"][0]
    assert error.startswith("EnvironmentBuildFailed")
    assert 'no Python on this node satisfies requires-python ">=3.99"' in error
    assert (
        f"set python_downloads: true in the manifest to let uv install a managed Python under {tmp_path}/c/uv/python"
        in error
    )


def test_python_downloads_true_lets_uv_install_a_managed_python_under_the_cache(project, tmp_path):
    project.write("work.py", HEAD.format(deps="").replace(">=3.10", ">=3.99"))
    project.manifest("python_downloads: true\n" + MANIFEST)
    uv, log = env_logging_uv(tmp_path)
    cache = tmp_path / "c"
    env = node_env(
        tmp_path, HOG_BATCH_CACHE_DIR=str(cache), HOG_BATCH_UV=str(uv), UV_OFFLINE="1"
    )  # no Python to fetch here
    done = cli(project, "submit", "sweep.yaml", "--run-dir", "run", "-o", "r.csv", env=env)
    assert done.returncode == 1
    builds = [line for line in log.read_text().splitlines() if " venv " in line]
    assert builds and builds[0].endswith(f"pythons={cache}/uv/python downloads=automatic")
    assert (
        "python_downloads" not in pd.read_csv(project.root / "r.csv")["error"][0]
    )  # uv tried, and said why it could not


def test_python_downloads_must_be_true_or_false(project):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest("python_downloads: 'yes'\n" + MANIFEST)
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2 and "python_downloads" in done.stderr and ":1" in done.stderr


def fake_old_uv(folder):
    """A uv 0.2.30 on PATH: it logs how it was called and can do nothing else."""
    bin_dir = folder / "old-bin"
    bin_dir.mkdir()
    log = folder / "old-uv.log"
    (bin_dir / "uv").write_text(
        f"#!/bin/sh\necho \"$*\" >> '{log}'\n"
        "[ \"$1\" = --version ] && echo 'uv 0.2.30' && exit 0\n"
        "echo \"error: unexpected argument '--relocatable' found\" >&2\nexit 2\n"
    )
    (bin_dir / "uv").chmod(0o755)
    return bin_dir, log


def test_an_old_uv_on_path_is_passed_over_for_a_new_enough_one(project, tmp_path):
    project.write("work.py", HEAD.format(deps=""))
    project.manifest(MANIFEST)
    bin_dir, log = fake_old_uv(tmp_path)
    env = node_env(
        tmp_path,
        HOG_BATCH_CACHE_DIR=str(tmp_path / "c"),
        HOG_BATCH_UV="",
        PATH=f"{bin_dir}:{os.defpath}",
    )
    done = cli(project, "submit", "sweep.yaml", "--run-dir", "run", "-o", "r.csv", env=env)
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(project.root / "r.csv")["result"]) == [1, 2]
    assert log.read_text().split() == ["--version"]  # asked its version, never given work


def uv_wheel(folder):
    """A wheel of uv UV_BOOTSTRAP_VERSION (its binary: the real uv) for pip to find offline."""
    name = f"uv-{UV_BOOTSTRAP_VERSION}"
    wheel = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        binary = zipfile.ZipInfo(f"{name}.data/scripts/uv")
        binary.external_attr = 0o100755 << 16  # a regular, executable file
        archive.writestr(binary, f"#!/bin/sh\nexec '{find_uv()}' \"$@\"\n")
        archive.writestr(
            f"{name}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: uv\nVersion: {UV_BOOTSTRAP_VERSION}\n",
        )
        archive.writestr(
            f"{name}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{name}.dist-info/RECORD", "")
    return folder


def test_with_only_an_old_uv_the_task_installs_the_known_version_once_and_uses_it(
    project, tmp_path
):
    script, _ = rendered_task(project)
    bin_dir, log = fake_old_uv(tmp_path)
    python_dir = tmp_path / "endpoint-python"  # an endpoint's Python: pip, but no uv package
    venv.create(python_dir, with_pip=True)
    wheels = uv_wheel(tmp_path)
    cache = tmp_path / "c"
    env = node_env(
        tmp_path,
        HOG_BATCH_CACHE_DIR=str(cache),
        PATH=f"{bin_dir}:{os.defpath}",
        HOG_BATCH_ENDPOINT_PYTHON=str(python_dir / "bin" / "python"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
    )
    for _ in range(2):
        task = start_task(script, env)
        out, err = task.communicate(timeout=300)
        assert task.returncode == 0, err
        assert '"value": 7' in out
    assert (cache / "hog-batch" / "uv-bootstrap" / "bin" / "uv").exists()
    assert log.read_text().split() == [
        "--version"
    ]  # the second task had its environment: no uv needed
