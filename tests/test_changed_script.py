"""Fix the code, re-run the failures: retry with the changed script, every row's script version, reuse by function."""

from __future__ import annotations

import hashlib

import pytest

import groundhog_batch as hb

SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import os

LIMIT = 3


def helper(x):
    return x


def f(x):
    with open(os.environ["SIDE_EFFECTS"], "a") as log:
        log.write(f"{x}\\n")
    if x >= LIMIT:
        raise ValueError(f"x={x} too big")
    return x * 10
"""

MANIFEST = (
    "script: work.py\nfunction: f\ncalls_per_task: 2\nsweep:\n  product:\n    x: [0, 1, 2, 3, 4]\n"
)


@pytest.fixture
def work(project, tmp_path, monkeypatch):
    project.write("work.py", SCRIPT)
    project.manifest(MANIFEST)
    side_effects = tmp_path / "ran.txt"
    monkeypatch.setenv("SIDE_EFFECTS", str(side_effects))
    project.ran = lambda: (
        sorted(int(x) for x in side_effects.read_text().split()) if side_effects.exists() else []
    )
    project.forget = lambda: side_effects.unlink(missing_ok=True)
    return project


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.slow
def test_retry_with_the_changed_script_reruns_only_the_failures_and_each_row_says_its_script(work):
    assert work.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    fixed = SCRIPT.replace("LIMIT = 3", "LIMIT = 100")
    work.write("work.py", fixed)
    refused = work.cli("retry", "run")
    assert refused.returncode == 2 and "--accept-changed-script" in refused.stderr
    work.forget()
    done = work.cli("retry", "run", "--accept-changed-script")
    assert done.returncode == 0, done.stderr
    assert work.ran() == [3, 4]  # the failed calls, and only they, ran again
    table = hb.Run(work.root / "run").results()
    assert list(table["result"]) == [0, 10, 20, 30, 40]
    assert list(table["script_sha256"]) == [_sha(SCRIPT)] * 3 + [_sha(fixed)] * 2
    report = work.cli("report", "run")
    assert report.returncode == 0, report.stderr
    assert "job f mixes script versions: 3 from " in (work.root / "run" / "report.html").read_text()
    assert work.cli("resume", "run").returncode == 0  # the run now goes on with the new script


@pytest.mark.slow
def test_every_row_names_the_script_that_produced_it(work):
    work.write("work.py", SCRIPT.replace("LIMIT = 3", "LIMIT = 100"))
    assert (
        work.cli(
            "submit", "sweep.yaml", "--run-dir", "run", "--set", "sweep.product.x=[0,1]"
        ).returncode
        == 0
    )
    table = hb.Run(work.root / "run").results()
    assert list(table["script_sha256"]) == [_sha(SCRIPT.replace("LIMIT = 3", "LIMIT = 100"))] * 2


@pytest.mark.slow
def test_reuse_by_function_takes_calls_whose_function_is_unchanged_when_the_rest_of_the_script_changed(
    work,
):
    assert work.cli("submit", "sweep.yaml", "--run-dir", "first").returncode == 1
    work.write(
        "work.py",
        SCRIPT.replace("def helper(x):\n    return x", "def helper(x):\n    return -x  # edited"),
    )
    work.forget()
    by_script = work.cli("submit", "sweep.yaml", "--run-dir", "by-script", "--reuse", "first")
    assert "reused 0 of 5" in by_script.stderr and work.ran() == [0, 1, 2, 3, 4]
    work.forget()
    by_function = work.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "by-function",
        "--reuse",
        "first",
        "--reuse-by",
        "function",
    )
    assert "reused 3 of 5" in by_function.stderr, by_function.stderr
    assert work.ran() == [3, 4]  # only the calls that had failed ran
    table = hb.Run(work.root / "by-function").results()
    assert (
        list(table["script_sha256"][:3]) == [_sha(SCRIPT)] * 3
    )  # reused rows keep the script that made them


@pytest.mark.slow
def test_reuse_by_function_takes_nothing_when_the_function_itself_changed(work):
    assert work.cli("submit", "sweep.yaml", "--run-dir", "first").returncode == 1
    work.write("work.py", SCRIPT.replace("return x * 10", "return x * 11"))
    done = work.cli(
        "submit", "sweep.yaml", "--run-dir", "second", "--reuse", "first", "--reuse-by", "function"
    )
    assert "reused 0 of 5" in done.stderr
