"""The example notebook runs in a real Jupyter kernel: submit, watch, results as they come, a kernel restart
while the run goes on, then reattach."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

nbclient = pytest.importorskip(
    "nbclient", reason="the test extras (nbclient, ipykernel) are not installed"
)
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

EXAMPLE = Path(__file__).parent.parent / "examples" / "notebook"


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/html") or output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append("\n".join(output["traceback"]))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_example_notebook_survives_a_kernel_restart_and_reattaches(tmp_path, monkeypatch):
    from nbclient.util import run_sync

    import groundhog_batch as hb

    for name in ("session.ipynb", "oscillator.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    notebook = nbformat.read(tmp_path / "session.ipynb", as_version=4)
    restart_at = next(
        i
        for i, cell in enumerate(notebook.cells)
        if "restart-kernel" in cell.metadata.get("tags", [])
    )
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells[:restart_at]):
                client.execute_cell(cell, index)
            kernel_pid = client.km.provisioner.process.pid
            run_sync(client.km.restart_kernel)(now=True)
            run_sync(client.kc.wait_for_ready)(timeout=60)
            assert client.km.provisioner.process.pid != kernel_pid
            # The kernel that submitted is gone; the run goes on, driven by its own process.
            (run_dir,) = (tmp_path / "hog-runs").iterdir()
            assert not hb.Run(run_dir).done()
            for index, cell in enumerate(notebook.cells[restart_at:], start=restart_at):
                client.execute_cell(cell, index)
    finally:
        (tmp_path / "release-batch-2").touch()  # never leave calls waiting
    cells = notebook.cells
    errors = [
        _text(cell)
        for cell in cells
        if any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    ]
    assert not errors, errors[0]
    submitted = next(cell for cell in cells if "hb.submit(sweep, wait=False)" in cell.source)
    assert "running" in _text(submitted)
    watched = next(cell for cell in cells if cell.source.startswith("run.progress()"))
    assert "hog-batch-progress" in _text(watched) and "4/8 finished" in _text(
        watched
    )  # updated in place since
    held = next(cell for cell in cells if cell.source.startswith("run.wait(timeout=2)"))
    assert _text(held).strip() == "False"
    came = next(cell for cell in cells if "as_completed" in cell.source)
    lines = _text(came).splitlines()
    assert len(lines) == 4 and all(
        "'batch': 1" in line for line in lines
    )  # batch 2 was still held back
    assert "omega0 must be positive" in _text(came)
    reattached = next(cell for cell in cells if "hb.Run(" in cell.source)
    assert "done: False" in _text(reattached)  # picked up while it was still running
    finished = next(cell for cell in cells if "run.progress(wait=True)" in cell.source)
    assert "8/8 finished" in _text(finished) and "<i>done</i>" in _text(
        finished
    )  # the display, updated in place
    futures = next(cell for cell in cells if "run.futures()" in cell.source)
    assert _text(futures).count("failed: ring_down") == 2 and _text(futures).count("settle_s") == 6
    run = hb.Run(run_dir)
    assert run.done() and run.counts()["succeeded"] == 6 and run.counts()["failed"] == 2
    assert len(run.results()) == 8
    assert os.path.exists(run.paths.report)
