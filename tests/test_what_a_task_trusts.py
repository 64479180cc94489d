"""What another user can write to a shared folder never decides what runs as you (docs/running.md,
"What a task trusts"); the .python-version attack is done with two real Unix users."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from test_environments import rendered_task, start_task, task_env

from groundhog_batch.backends.local import find_uv

REPO = Path(__file__).resolve().parents[1]
NO_METADATA_SCRIPT = (
    "def f(x):\n    return x * 10\n"  # no requires-python: uv would look for a .python-version
)
MANIFEST = "script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n"


def evil_python(folder: Path, log: Path) -> Path:
    """Another user's 'Python': it notes who ran it, then behaves like Python so nothing looks wrong."""
    wrapper = folder / "python3"
    wrapper.write_text(f"#!/bin/sh\nid -un >> '{log}'\nexec '{sys.executable}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def submit(project, env=None):
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv", env=env)
    table = pd.read_csv(project.root / "out.csv") if (project.root / "out.csv").exists() else None
    return done, table


def ran_fine(done, table):
    assert done.returncode == 0, done.stderr
    assert list(table["result"]) == [10, 20]


# --- two real users ---------------------------------------------------------------------------------


def run_as(
    user: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def hog_batch_for(user: str, home: Path, shared: Path) -> tuple[list[str], dict[str, str]]:
    """How ``user`` runs this checkout's hog-batch: its own Python if that user can start it, else the
    system Python of the same version with this checkout and its packages on PYTHONPATH."""
    packages = os.pathsep.join([str(REPO), *site.getsitepackages()])
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "USER": user,
        "LANG": "C.UTF-8",
        "HOG_BATCH_UV": find_uv(),
    }
    probe = ["-c", "import groundhog_batch, pandas"]
    for python, extra in (
        (sys.executable, {}),
        (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", {"PYTHONPATH": packages}),
    ):
        if (
            os.path.exists(python)
            and run_as(user, [python, *probe], {**env, **extra}, shared, 120).returncode == 0
        ):
            return [python, "-m", "groundhog_batch"], {**env, **extra}
    pytest.skip(
        f"user {user} can read neither this checkout's Python nor its packages ({REPO}); "
        "the attack needs hog-batch runnable by a second user"
    )


@pytest.fixture
def two_users():
    if os.getuid() != 0:
        pytest.skip(
            "needs root: it creates two Unix users (useradd) and runs as each of them (runuser)"
        )
    if not (shutil.which("useradd") and shutil.which("runuser")):
        pytest.skip("needs useradd and runuser (Debian's passwd and util-linux)")
    names = [f"hogatk{os.getpid() % 100000}", f"hogvic{os.getpid() % 100000}"]
    for name in names:
        subprocess.run(
            ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name],
            check=True,
            capture_output=True,
        )
    shared = Path(
        tempfile.mkdtemp(prefix="hog-shared-", dir="/tmp")
    )  # like /tmp or a scratch folder
    shared.chmod(0o1777)
    try:
        yield names[0], names[1], shared
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for name in names:
            subprocess.run(["userdel", name], capture_output=True)


def test_another_users_python_version_in_a_shared_parent_folder_never_runs_as_you(two_users):
    attacker, victim, shared = two_users
    # The attacker plants a .python-version in the shared folder, pointing at their own "Python".
    plant = (
        f"set -e; mkdir -m 755 '{shared}/tools'; touch '{shared}/tools/ran-as'; chmod 666 '{shared}/tools/ran-as'\n"
        f"printf '#!/bin/sh\\nid -un >> {shared}/tools/ran-as\\nexec /usr/bin/python3 \"$@\"\\n' > '{shared}/tools/python3'\n"
        f"chmod 755 '{shared}/tools/python3'; echo '{shared}/tools/python3' > '{shared}/.python-version'\n"
    )
    planted = run_as(attacker, ["sh", "-c", plant], {"PATH": "/usr/bin:/bin"}, shared)
    assert planted.returncode == 0, planted.stderr
    assert (shared / ".python-version").stat().st_uid != 0
    # The victim works in a project below it, with a cache of their own.
    project, home, cache = shared / "project", shared / "victim-home", shared / "victim-cache"
    for folder in (project, home, cache):
        folder.mkdir(mode=0o700)
    (project / "work.py").write_text(NO_METADATA_SCRIPT)
    (project / "sweep.yaml").write_text(MANIFEST)
    for path in (project, home, cache, project / "work.py", project / "sweep.yaml"):
        shutil.chown(path, victim, victim)
    command, env = hog_batch_for(victim, home, shared)
    done = run_as(
        victim,
        [*command, "submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv"],
        {**env, "HOG_BATCH_CACHE_DIR": str(cache)},
        project,
    )
    ran_as = (shared / "tools" / "ran-as").read_text().split()
    assert ran_as == [], f"the attacker's program ran as {ran_as}"
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(project / "out.csv")["result"]) == [10, 20]


# --- one user, the same class of configuration ------------------------------------------------------


def test_a_python_version_in_a_parent_folder_is_not_read(project, tmp_path):
    log = tmp_path / "ran-as"
    (tmp_path / ".python-version").write_text(
        str(evil_python(tmp_path, log)) + "\n"
    )  # the project's parent
    project.write("work.py", NO_METADATA_SCRIPT)
    project.manifest(MANIFEST)
    ran_fine(*submit(project, {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cache")}))
    assert not log.exists()


def test_uv_toml_and_pyproject_toml_in_parent_folders_are_not_read(project, tmp_path):
    refuse = 'required-version = "==0.0.1"\n'  # uv stops at once if it reads either
    (tmp_path / "uv.toml").write_text(refuse)
    (project.root / "pyproject.toml").write_text(
        f'[project]\nname = "x"\nversion = "0"\nrequires-python = ">=3.99"\n[tool.uv]\n{refuse}'
    )
    project.write("work.py", NO_METADATA_SCRIPT)
    project.manifest(MANIFEST)
    ran_fine(*submit(project, {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cache")}))


def test_uv_variables_set_for_other_work_do_not_reach_uv(project, tmp_path):
    log = tmp_path / "ran-as"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('required-version = "==0.0.1"\n')
    project.write("work.py", NO_METADATA_SCRIPT)
    project.manifest(MANIFEST)
    env = {
        "HOG_BATCH_CACHE_DIR": str(tmp_path / "cache"),
        "UV_PYTHON": str(evil_python(tmp_path, log)),
        "UV_CONFIG_FILE": str(bad_config),
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "elsewhere"),
        "UV_SYSTEM_PYTHON": "1",
    }
    ran_fine(*submit(project, env))
    assert not log.exists() and not (tmp_path / "elsewhere").exists()


def test_programs_in_the_working_folder_are_not_found_through_a_relative_path_entry(
    project, tmp_path
):
    log = tmp_path / "pwned"
    for name in ("bash", "mktemp", "cat", "mkdir"):
        fake = project.root / name
        fake.write_text(f"#!/bin/sh\necho {name} >> '{log}'\nexit 1\n")
        fake.chmod(0o755)
    project.write("work.py", NO_METADATA_SCRIPT)
    project.manifest(MANIFEST)
    env = {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cache"), "PATH": f":.:{os.environ['PATH']}:"}
    ran_fine(*submit(project, env))
    assert not log.exists()


def test_pythonhome_does_not_reach_the_environments_python(project, tmp_path):
    """A module system's PYTHONHOME on a node (the submitter elsewhere has none): the task still runs."""
    script, _ = rendered_task(project)
    env = {
        **task_env(tmp_path / "cache", find_uv()),
        "PYTHONHOME": str(tmp_path / "nowhere"),
        "HOG_BATCH_ENDPOINT_PYTHON": sys.executable,
    }
    task = start_task(script, env)
    out, err = task.communicate(timeout=300)
    assert task.returncode == 0, err
    assert '"value": 7' in out


def test_helper_modules_beside_the_script_still_import_with_pythonpath(project, tmp_path):
    project.write("helper.py", "FACTOR = 10\n")
    project.write("work.py", "import helper\n\ndef f(x):\n    return x * helper.FACTOR\n")
    project.manifest(MANIFEST)
    ran_fine(*submit(project, {"HOG_BATCH_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": "."}))


def test_the_background_submitter_never_imports_from_the_current_folder(project, tmp_path):
    log = tmp_path / "pwned"
    fake = project.root / "groundhog_batch"  # a folder of that name where the user runs hog-batch
    fake.mkdir()
    (fake / "__init__.py").write_text(f"open({str(log)!r}, 'a').write('imported\\n')\n")
    project.write("work.py", NO_METADATA_SCRIPT)
    project.manifest(MANIFEST)
    hog_batch = str(
        Path(sys.executable).parent / "hog-batch"
    )  # the console script, as a user runs it

    def cli(*args):
        return subprocess.run(
            [hog_batch, *args], cwd=project.root, capture_output=True, text=True, timeout=300
        )

    done = cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0, done.stderr
    followed = cli("resume", "run")  # follows the background submitter to the end
    assert followed.returncode == 0, (
        followed.stderr + (project.root / "run" / "submitter.log").read_text()
    )
    assert cli("collect", "run", "-o", "out.csv").returncode == 0
    assert not log.exists()
    assert list(pd.read_csv(project.root / "out.csv")["result"]) == [10, 20]
