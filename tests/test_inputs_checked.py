"""A run's inputs never change under it unnoticed (issue 22).

A data file rewritten while a run goes never gives calls a mix of old and new
content; every input the table depends on is checked by resume, retry,
--reuse and collect.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

import groundhog_batch as hb
from groundhog_batch.api import execute, prepare
from groundhog_batch.datafiles import file_sha256

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
NUMPY_HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = ["numpy"]\n# ///\n'


def no_traceback(done) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


# --- a data file rewritten during the run ---------------------------------------------------


def test_an_npy_file_rewritten_mid_submit_stops_the_run_and_no_call_gets_new_data(project):
    np.save(project.root / "data.npy", np.ones((50, 2)))
    planned_sha = file_sha256(project.root / "data.npy")
    project.write(
        "f.py",
        NUMPY_HEAD
        + (
            "import os\nimport numpy as np\n"
            "def work(data):\n"
            "    total = float(data.sum())\n"
            "    np.save(os.environ['DATA'], np.full((50, 2), 100.0))  # the file changes while the run goes\n"
            "    return total\n"
        ),
    )
    project.manifest(
        "script: f.py\nfunction: work\ncalls_per_task: 1\nmax_parallel: 1\n"
        "sweep:\n  chunks:\n    data: {file: data.npy, rows: 10}\n"
    )
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "out.csv",
        env={"DATA": str(project.root / "data.npy")},
    )
    no_traceback(done)
    assert done.returncode == 2
    assert "data.npy changed while the run was going" in done.stderr
    table = hb.open_run(project.root / "run").results()
    finished = table[table["status"] == "succeeded"]
    assert len(finished) >= 1 and set(finished["result"]) == {
        20.0
    }  # the planned content, never 1000
    info = json.loads((project.root / "run" / "run.json").read_text())
    assert info["inputs"]["files"][str(project.root / "data.npy")] == planned_sha
    resumed = project.cli("resume", "run")
    assert resumed.returncode == 2 and "data.npy changed since this run started" in resumed.stderr


def test_a_file_passed_by_path_rewritten_mid_run_is_an_error_not_exit_0(project):
    project.write("d.csv", "v\n" + "".join(f"{i}\n" for i in range(10)))
    project.write(
        "f.py",
        HEAD
        + (
            "def work(data):\n"
            "    lines = open(data['path']).read().split()[1:]\n"
            "    with open(data['path'], 'a') as handle:\n"
            "        handle.write('1000\\n')\n"
            "    return sum(int(v) for v in lines[data['start']:data['stop']])\n"
        ),
    )
    project.manifest(
        "script: f.py\nfunction: work\ncalls_per_task: 1\nmax_parallel: 1\n"
        "sweep:\n  chunks:\n    data: {file: d.csv, rows: 2, pass: path}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    no_traceback(done)
    assert done.returncode == 2
    assert "d.csv changed while the run was going" in done.stderr
    assert not (project.root / "out.csv").exists()


def test_a_table_chunked_by_value_is_read_once_so_a_rewrite_mid_run_changes_no_call(project):
    project.write("d.csv", "v\n" + "1\n" * 10)
    project.write(
        "f.py",
        HEAD.replace("[]", '["pandas"]')
        + (
            "import os\n"
            "def work(data):\n"
            "    with open(os.environ['DATA'], 'w') as handle:\n"
            "        handle.write('v\\n' + '1000\\n' * 10)\n"
            "    return int(data['v'].sum())\n"
        ),
    )
    project.manifest(
        "script: f.py\nfunction: work\ncalls_per_task: 1\nmax_parallel: 1\n"
        "sweep:\n  chunks:\n    data: {file: d.csv, rows: 2}\n"
    )
    done = project.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "run",
        "-o",
        "out.csv",
        env={"DATA": str(project.root / "d.csv")},
    )
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(project.root / "out.csv")["result"]) == [2] * 5


def test_a_rows_file_changed_after_it_was_read_is_recorded_and_copied_as_read(project):
    project.write("f.py", HEAD + "def work(a):\n    return a\n")
    project.write("p.csv", "a\n1\n2\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: p.csv}\n")
    spec = hb.load_manifest(project.root / "sweep.yaml")
    project.write("p.csv", "a\n10\n20\n")  # after validation read it, before the run records it
    run = prepare(spec, run_dir=project.root / "run")
    execute(run)
    assert list(run.results()["result"]) == [1, 2]
    recorded = run.info["inputs"]["files"][str(project.root / "p.csv")]
    copy = run.paths.rows_snapshot(recorded, ".csv")
    assert copy.read_text() == "a\n1\n2\n"  # the hash and the copy are of what the calls got
    assert list(hb.open_run(project.root / "run").results()["a"]) == [1, 2]


# --- every input, on every path ---------------------------------------------------------------


SCRIPT = HEAD + (
    "import os, sys\n"
    "sys.path.insert(0, os.environ['HELPERS'])  # a task runs a copy of the script, elsewhere\n"
    "import helper\n"
    "def work(x):\n"
    "    open(os.environ['SIDE_EFFECTS'], 'a').write(f'{x}\\n')\n"
    "    if x == 2:\n"
    "        raise ValueError('two')\n"
    "    return x * 10 + helper.K\n"
)


def first_run(project):
    project.write("f.py", SCRIPT)
    project.write("helper.py", "K = 1\n")
    project.write("p.csv", "x\n1\n2\n3\n")
    project.manifest("script: f.py\nfunction: work\nsweep:\n  rows: {file: p.csv}\n")
    env = {"SIDE_EFFECTS": str(project.root / "ran.txt"), "HELPERS": str(project.root)}
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", env=env)
    assert done.returncode == 1, done.stderr
    return env


def ran(project) -> int:
    return len((project.root / "ran.txt").read_text().split())


def paths_after_the_change(project, env):
    """What resume, retry, submit --reuse and collect do now."""
    return {
        "resume": project.cli("resume", "run", env=env),
        "retry": project.cli("retry", "run", env=env),
        "reuse": project.cli(
            "submit", "sweep.yaml", "--run-dir", "again", "--reuse", "run", env=env
        ),
        "collect": project.cli("collect", "run", "-o", "out.csv", env=env),
    }


def test_a_changed_script_is_refused_by_resume_and_retry_and_reused_by_no_call(project):
    env = first_run(project)
    project.write("f.py", SCRIPT.replace("x * 10", "x * 100"))
    seen = paths_after_the_change(project, env)
    for action in ("resume", "retry"):
        no_traceback(seen[action])
        assert (
            seen[action].returncode == 2
            and "f.py changed since this run started" in seen[action].stderr
        )
    assert (
        seen["reuse"].returncode == 1 and ran(project) == 3 + 3
    )  # every call ran again, none reused
    assert list(hb.open_run(project.root / "again").results()["result"].dropna()) == [101, 301]
    assert (
        seen["collect"].returncode == 0
    )  # the table is the ledger's: what ran, with the script it ran with
    assert list(pd.read_csv(project.root / "out.csv")["result"].dropna()) == [11, 31]


def test_a_changed_helper_module_the_script_imports_is_refused_and_reused_by_no_call(project):
    env = first_run(project)
    project.write("helper.py", "K = 5\n")
    seen = paths_after_the_change(project, env)
    for action in ("resume", "retry"):
        no_traceback(seen[action])
        assert (
            seen[action].returncode == 2
            and "helper.py changed since this run started" in seen[action].stderr
        )
    assert (
        seen["reuse"].returncode == 1 and ran(project) == 3 + 3
    )  # results of the old helper are not taken
    assert list(hb.open_run(project.root / "again").results()["result"].dropna()) == [15, 35]
    assert seen["collect"].returncode == 0


def test_a_changed_rows_file_is_refused_by_resume_retry_and_reuse_and_collect_reads_the_copy(
    project,
):
    env = first_run(project)
    project.write("p.csv", "x\n1\n2\n4\n")
    seen = paths_after_the_change(project, env)
    for action in ("resume", "retry", "reuse"):
        no_traceback(seen[action])
        assert seen[action].returncode == 2 and "p.csv changed" in seen[action].stderr
    assert ran(project) == 3
    assert seen["collect"].returncode == 0
    assert list(pd.read_csv(project.root / "out.csv")["x"]) == [1, 2, 3]


def test_an_edited_manifest_snapshot_is_refused_on_every_path(project):
    env = first_run(project)
    snapshot = project.root / "run" / "manifest.yaml"
    snapshot.write_text(snapshot.read_text() + "kwargs: {}\n")
    seen = paths_after_the_change(project, env)
    for action, done in seen.items():
        no_traceback(done)
        assert done.returncode == 2, action
        assert "manifest snapshot or the overrides in run.json changed" in done.stderr, action
    assert ran(project) == 3


def test_edited_overrides_in_run_json_are_refused_on_every_path(project):
    env = first_run(project)
    info_path = project.root / "run" / "run.json"
    info = json.loads(info_path.read_text())
    info["overrides"] = ["sweep.rows.columns=[x]"]
    info_path.write_text(json.dumps(info))
    seen = paths_after_the_change(project, env)
    for action, done in seen.items():
        no_traceback(done)
        assert done.returncode == 2, action
        assert "manifest snapshot or the overrides in run.json changed" in done.stderr, action
    assert ran(project) == 3


def test_retry_with_new_settings_keeps_the_run_usable_on_every_path(project):
    env = first_run(project)
    retried = project.cli("retry", "run", "--set", "retries=1", env=env)
    assert retried.returncode == 1, retried.stderr
    for command in (["collect", "run", "-o", "out.csv"], ["resume", "run"], ["logs", "run"]):
        done = project.cli(*command, env=env)
        assert "Traceback" not in done.stderr, (
            done.stderr
        )  # (logs prints the call's own traceback on stdout)
        assert done.returncode in (0, 1), (command, done.stderr)
    assert os.path.exists(project.root / "out.csv")


def test_a_helper_module_in_the_manifests_folder_imported_by_a_script_in_another_is_an_input(
    project,
):
    project.write("scripts/f.py", SCRIPT)
    project.write("helper.py", "K = 1\n")  # where PYTHONPATH=. finds it, beside the manifest
    project.write("p.csv", "x\n1\n3\n")
    project.manifest("script: scripts/f.py\nfunction: work\nsweep:\n  rows: {file: p.csv}\n")
    env = {"SIDE_EFFECTS": str(project.root / "ran.txt"), "HELPERS": str(project.root)}
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run", env=env).returncode == 0
    project.write("helper.py", "K = 2\n")
    resumed = project.cli("resume", "run", env=env)
    no_traceback(resumed)
    assert resumed.returncode == 2 and "helper.py changed since this run started" in resumed.stderr
