"""The largest payload one task carries through the endpoint's own code, measured end to end.

Runs ``hog-batch submit`` against the loopback service (tests/loopback_globus.py),
whose workers run each task with ``globus_compute_endpoint.engines.helper.execute_task``:
one call whose chunk, passed by value, makes a payload just under the per-task limit
``hog-batch plan`` enforces, then one just over it (refused at plan time).

    .venv/bin/python benchmarks/largest_payload.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loopback_globus import LoopbackGlobus  # noqa: E402

from groundhog_batch.backends.local import find_uv  # noqa: E402
from groundhog_batch.globus import transport  # noqa: E402

SCRIPT = (
    '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
    "def f(items):\n    return sum(len(item) for item in items)\n"
)


def manifest(endpoint: str, n_items: int) -> str:
    return (
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\nsweep:\n  chunks:\n    items:\n"
        f"      values: {['y' * 1000] * n_items}\n      size: {n_items}\n      pass: value\n"
    )


def main() -> None:
    os.environ["HOG_BATCH_UV"] = find_uv()
    service = LoopbackGlobus().start()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            service.environment(),
            GLOBUS_COMPUTE_USER_DIR=str(Path(tmp) / "gc"),
            HOG_BATCH_CACHE_DIR=str(Path(tmp) / "cache"),
            HOG_BATCH_GLOBUS_POLL_S="0.5",
        )
        folder = Path(tmp) / "project"
        folder.mkdir()
        (folder / "work.py").write_text(SCRIPT)
        endpoint = service.add_endpoint()
        limit = transport.payload_limit_bytes()
        # base64 of a pickled list of n strings of 1000 bytes: about 1338 bytes per item
        n_items = int(limit / 1338.0) - 20
        (folder / "sweep.yaml").write_text(manifest(endpoint, n_items))
        done = subprocess.run(
            [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        print(
            f"limit per task: {limit:,} bytes of payload; largest submission seen: "
            f"{service.largest_request_bytes:,} bytes of {transport.REQUEST_LIMIT_BYTES:,}"
        )
        print(
            f"{n_items:,} kB of arguments in one call: exit {done.returncode} "
            f"({'ran through execute_task' if done.returncode == 0 else done.stderr.strip()})"
        )
        (folder / "sweep.yaml").write_text(manifest(endpoint, n_items + 200))
        over = subprocess.run(
            [sys.executable, "-m", "groundhog_batch", "plan", "sweep.yaml"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        print(
            f"{n_items + 200:,} kB: plan exit {over.returncode}: {over.stderr.strip().splitlines()[0]}"
        )
    service.stop()


if __name__ == "__main__":
    main()
