"""One call, in front of you: run here, in its environment, with its real arguments; recorded only when asked."""

from __future__ import annotations

import subprocess
import sys

import pytest

import groundhog_batch as hb

SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import sys
def f(x, scale=1):
    print(f"working on x={x}", flush=True)
    print("a warning", file=sys.stderr, flush=True)
    if x == 2:
        broken = x * 10
        raise ValueError(f"x={x} is broken")
    return x * scale
"""

MANIFEST = (
    "script: work.py\nfunction: f\nkwargs: {scale: 3}\nsweep:\n  product:\n    x: [0, 1, 2, 3]\n"
)


@pytest.fixture
def work(project):
    project.write("work.py", SCRIPT)
    project.manifest(MANIFEST)
    return project


@pytest.mark.slow
def test_debug_a_manifests_call_before_any_run_streams_output_and_prints_the_result(work):
    done = work.cli("debug", "sweep.yaml", "--call", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "working on x=3",
        "9",
    ]  # its output, then its result (scale=3 came in)
    assert "a warning" in done.stderr and "f call 3 (x=3): returned" in done.stderr
    assert not (work.root / "hog-runs").exists()  # nothing was made, nothing recorded


@pytest.mark.slow
def test_debug_a_failed_call_of_a_run_shows_its_traceback_and_records_nothing(work):
    assert work.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    done = work.cli("debug", "run", "2")
    assert done.returncode == 1
    assert (
        'raise ValueError(f"x={x} is broken")' in done.stderr
        and "ValueError: x=2 is broken" in done.stdout
    )
    assert hb.Run(work.root / "run").counts()["failed"] == 1


@pytest.mark.slow
def test_pdb_opens_at_the_exception_in_the_calls_environment(work):
    done = subprocess.run(
        [sys.executable, "-m", "groundhog_batch", "debug", "sweep.yaml", "--call", "2", "--pdb"],
        cwd=work.root,
        input="p broken\np sys.executable\nc\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "(Pdb) 20" in done.stdout  # a local of the frame that raised
    assert (
        "hog-batch" in done.stdout.split("(Pdb) 20")[1]
    )  # the job's environment, in the cache, not this venv


@pytest.mark.slow
def test_record_keeps_the_result_of_a_fixed_call_in_the_run(work):
    assert work.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    work.write("work.py", SCRIPT.replace("if x == 2:", "if x == -1:"))
    done = work.cli("debug", "run", "2", "--record")
    assert done.returncode == 0, done.stderr
    table = hb.Run(work.root / "run").results()
    assert list(table["status"]) == ["succeeded"] * 4 and list(table["result"]) == [0, 3, 6, 9]


@pytest.mark.slow
def test_run_call_run_here_returns_the_value_or_raises_the_calls_error(work, monkeypatch):
    monkeypatch.chdir(work.root)
    run = hb.submit("sweep.yaml")
    assert run.call(1).run_here() == 3
    with pytest.raises(ValueError, match="x=2 is broken") as raised:
        run.call(2).run_here()
    assert 'raise ValueError(f"x={x} is broken")' in raised.value.remote_traceback
    assert run.counts()["failed"] == 1  # not recorded


def test_debug_needs_one_call(work):
    done = work.cli("debug", "sweep.yaml")
    assert done.returncode == 2 and "give one call" in done.stderr
    done = work.cli("debug", "sweep.yaml", "--call", "9")
    assert done.returncode == 2 and "has no call 9" in done.stderr and "0 to 3" in done.stderr
    done = work.cli("debug", "sweep.yaml", "--call", "1", "--record")
    assert done.returncode == 2 and "--record needs a run" in done.stderr
