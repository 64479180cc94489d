"""A damaged run directory gives one located "the run directory is damaged" error, never a traceback (issue 22)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("damaged")
    (folder / "f.py").write_text(HEAD + "def work(x):\n    print('hi', x)\n    return x * 2\n")
    (folder / "sweep.yaml").write_text(
        "script: f.py\nfunction: work\nsweep:\n  product:\n    x: [1, 2, 3]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return folder


def _sql(run, statement: str) -> None:
    db = sqlite3.connect(run / "state.sqlite")
    db.execute(statement)
    db.commit()
    db.close()


def _no_endpoint(run) -> None:
    info = json.loads((run / "run.json").read_text())
    del info["jobs"][0]["endpoint"]
    (run / "run.json").write_text(json.dumps(info))


DAMAGE = {
    "a zlib-corrupted results block": (
        lambda run: _sql(run, "UPDATE blocks SET records = x'789c0000deadbeef'"),
        "a block of results in its ledger",
    ),
    "a run.json job without endpoint": (_no_endpoint, "run.json: job 0 ('work') has no 'endpoint'"),
    "deleted jobs rows": (
        lambda run: _sql(run, "DELETE FROM jobs"),
        "has no job 'work', which run.json lists",
    ),
    "a string schema_version": (
        lambda run: _sql(run, "UPDATE meta SET value = '\"2\"' WHERE key = 'schema_version'"),
        "gives its format as '2', not a number",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize(
    "command",
    [["collect", "RUN", "-o", "out.csv"], ["logs", "RUN"], ["status", "RUN"], ["report", "RUN"]],
)
def test_damaged_ledger_contents_give_a_located_damaged_error_never_a_traceback(
    finished_run, tmp_path, project, damage, command
):
    run = tmp_path / "run"
    shutil.copytree(finished_run / "run", run)
    harm, expected = DAMAGE[damage]
    harm(run)
    done = project.cli(*[str(run) if part == "RUN" else part for part in command])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    if damage == "a zlib-corrupted results block" and command[0] == "status":
        assert done.returncode == 0  # status counts calls; it never reads their results
        return
    assert done.returncode == 2, done.stdout
    assert "the run directory is damaged" in done.stderr and expected in done.stderr
