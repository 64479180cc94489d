"""From Python: a run returned at once and driven elsewhere, watched, its results taken as they come,
one future per call, cancelled, reopened from another process; manifests as dicts and keywords."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import groundhog_batch as hb
from groundhog_batch.errors import ManifestErrors

# Calls with x >= held wait for the file `go` (bounded), so a test decides when the run may finish.
GATED = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import os, time
def f(x, held=2):
    if x >= held:
        deadline = time.monotonic() + 60
        while not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.02)
    if x == 1:
        raise ValueError(f"x={x} is odd")
    return {"double": 2 * x}
"""


@pytest.fixture
def gated(project, monkeypatch):
    project.write("gated.py", GATED)
    monkeypatch.chdir(project.root)
    yield project
    (project.root / "go").touch()  # never leave calls waiting


def _manifest(n: int = 4) -> dict:
    return {
        "script": "gated.py",
        "function": "f",
        "sweep": {"product": {"x": list(range(n))}},
        "calls_per_task": 1,
        "max_parallel": 2,
    }


def _until(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_submit_without_waiting_returns_a_run_another_process_drives(gated):
    run = hb.submit(_manifest(), wait=False)
    assert not run.done() and run.holder()["pid"] != __import__("os").getpid()
    _until(
        lambda: run.counts()["succeeded"] + run.counts()["failed"] == 2
    )  # x=0, x=1; x=2, 3 are held
    assert run.wait(timeout=0.2) is False
    finished = run.results()
    assert list(finished["call"]) == [0, 1] and list(finished["status"]) == ["succeeded", "failed"]
    assert len(run.results(all=True)) == 4
    (gated.root / "go").touch()
    assert run.wait(timeout=60) is True and run.done()
    assert run.counts()["succeeded"] == 3 and list(run.results()["result.double"].dropna()) == [
        0,
        4,
        6,
    ]


@pytest.mark.slow
def test_as_completed_yields_every_call_once_with_its_parameters(gated):
    run = hb.submit(_manifest(), wait=False)
    seen = []
    for result in run.as_completed(timeout=60):
        seen.append((result.call, result.params["x"], result.status))
        if len(seen) == 2:
            (gated.root / "go").touch()
    assert sorted(seen) == [
        (0, 0, "succeeded"),
        (1, 1, "failed"),
        (2, 2, "succeeded"),
        (3, 3, "succeeded"),
    ]


@pytest.mark.slow
def test_futures_resolve_to_values_or_raise_the_calls_own_error_with_its_traceback(gated):
    (gated.root / "go").touch()
    run = hb.submit(_manifest(), wait=False)
    futures = run.futures()
    assert len(futures) == 4
    assert futures[0].result(timeout=60) == {"double": 0}
    with pytest.raises(ValueError, match="x=1 is odd") as raised:
        futures[1].result(timeout=60)
    assert isinstance(raised.value, hb.CallFailed) and raised.value.call == 1
    assert 'raise ValueError(f"x={x} is odd")' in str(
        raised.value.__cause__
    )  # the remote traceback
    assert [f.result(timeout=60) for f in futures[2:]] == [{"double": 4}, {"double": 6}]


@pytest.mark.slow
def test_cancel_stops_the_run_and_cancels_the_futures_of_calls_not_run(gated):
    run = hb.submit(_manifest(6), wait=False)
    futures = run.futures()
    _until(lambda: run.counts()["succeeded"] + run.counts()["failed"] == 2)
    counts = run.cancel()
    assert counts["cancelled"] == 4 and run.done()
    _until(lambda: all(f.done() for f in futures))
    assert [f.cancelled() for f in futures] == [False, False, True, True, True, True]


@pytest.mark.slow
def test_a_run_is_reopened_from_another_process_and_resumed_from_the_cli(gated):
    run = hb.submit(
        hb.sweep("gated.py", "f", product={"x": [0, 2, 3]}, calls_per_task=1), wait=False
    )
    run.cancel()
    # The manifest is kept in the run directory as YAML; the CLI resumes the run from it.
    assert "function: f" in (run.root / "manifest.yaml").read_text()
    (gated.root / "go").touch()
    done = gated.cli("resume", str(run.root))
    assert done.returncode == 0, done.stderr
    code = f"import groundhog_batch as hb; r = hb.Run({str(run.root)!r}); print(r.done(), r.counts()['succeeded'])"
    seen = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=gated.root
    )
    assert seen.stdout.split() == ["True", "3"], seen.stderr


def test_sweep_errors_name_the_keyword(gated):
    with pytest.raises(ManifestErrors) as raised:
        hb.sweep("gated.py", "f", product={"x": {"rnge": [0, 3]}})
    text = raised.value.render()
    assert (
        "hb.sweep() at product.x.rnge: unknown key 'rnge'" in text
        and "did you mean 'range'" in text
    )
    with pytest.raises(
        ManifestErrors, match=r"hb.sweep\(\) at function: gated.py defines no function 'g'"
    ):
        hb.sweep("gated.py", "g", product={"x": [1]})


def test_a_dict_manifest_is_checked_like_a_file_naming_the_key(gated):
    with pytest.raises(ManifestErrors) as raised:
        hb.submit({**_manifest(), "timeout": "soon"}, wait=False)
    assert raised.value.errors[0].render().startswith("error: manifest at timeout:")
    assert not Path("hog-runs").exists()  # refused before anything was made


def test_progress_outside_jupyter_is_one_plain_line(gated, capsys):
    (gated.root / "go").touch()
    run = hb.submit(_manifest(2), wait=True)
    run.progress()
    assert capsys.readouterr().out.startswith("f: 2/2 finished (1 succeeded, 1 failed)")


def test_who_holds_a_run_is_read_once_the_holder_has_written_it_not_while_the_lock_file_is_empty(
    tmp_path,
):
    """The holder takes the lock, then writes who it is: a look in between waits for it (CI saw ``{}``)."""
    import fcntl
    import json
    import os
    import threading

    from groundhog_batch.run_lock import RunLock

    path = tmp_path / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, nothing written yet
    writer = threading.Timer(0.2, os.pwrite, (fd, json.dumps({"pid": 4242}).encode(), 0))
    writer.start()
    try:
        assert RunLock(path).holder() == {"pid": 4242}
    finally:
        writer.join()
        os.ftruncate(fd, 0)
    assert RunLock(path).holder() == {}  # a holder that never says who it is: held, by nobody known
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    assert RunLock(path).holder() is None
