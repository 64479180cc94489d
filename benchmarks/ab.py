"""Two versions of hog-batch side by side: the same trivial sweep submitted with each, alternating.

    python benchmarks/ab.py OLD_CHECKOUT NEW_CHECKOUT            # 1,000,000 calls, 3 rounds
    HOG_AB_CALLS=100000 HOG_AB_ROUNDS=5 python benchmarks/ab.py A B

Each checkout's ``groundhog_batch`` is put first on ``PYTHONPATH`` and the CLI of
this environment runs it. Each submit's wall time and the CPU time of its whole
process tree (``wait4``: the submitter and every task it waited for) are
printed per round, with the medians. The order alternates between rounds and
the page cache is synced between runs: a shared machine's load moves, and
one run's writeback would otherwise land in the next.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = "# /// script\n# dependencies = []\n# ///\ndef f(x):\n    return x * 2\n"


def submit(folder: Path, checkout: str, run_dir: str) -> tuple[float, float]:
    shutil.rmtree(folder / run_dir, ignore_errors=True)
    os.sync()
    time.sleep(0.5)
    env = dict(os.environ, PYTHONPATH=checkout)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--local"]
        + ["--run-dir", run_dir],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"submit with {checkout} failed:\n{process.stderr.read().decode()}")
    return wall_s, usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    n_calls = int(os.environ.get("HOG_AB_CALLS", "1000000"))
    rounds = int(os.environ.get("HOG_AB_ROUNDS", "3"))
    folder = Path(tempfile.mkdtemp(prefix="hog-ab-"))
    (folder / "work.py").write_text(SCRIPT)
    (folder / "sweep.yaml").write_text(
        f"script: work.py\nfunction: f\nsweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
    )
    names = ["A", "B"]
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    try:
        for checkout in argv:
            submit(folder, checkout, "warm")  # the environment, built once
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                figures[name].append(submit(folder, argv[names.index(name)], f"run-{name}"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{n_calls:,} trivial calls, {rounds} alternating rounds")
    for name, checkout in zip(names, argv, strict=True):
        walls = [wall for wall, _ in figures[name]]
        cpus = [cpu for _, cpu in figures[name]]
        print(
            f"{name} {checkout}: wall {' '.join(f'{w:.2f}' for w in walls)} s "
            f"(median {statistics.median(walls):.2f}), whole-tree CPU "
            f"{' '.join(f'{c:.2f}' for c in cpus)} s (median {statistics.median(cpus):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
