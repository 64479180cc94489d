"""hog-batch benchmarks, measured side by side in one run.

    python benchmarks/run.py            # every benchmark
    python benchmarks/run.py plan       # only some: plan, throughput, overhead, collect

Each benchmark runs the real CLI in a subprocess and reports wall time and the
peak resident memory of that subprocess. Nothing here asserts: it prints a
table with ratios and says which targets hold.
"""

from __future__ import annotations

import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL = "# /// script\n# dependencies = []\n# ///\ndef f(x):\n    return x\n"


def cli(folder: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (MiB) of one hog-batch command."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter();"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
            "w = time.perf_counter() - t;"
            "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024);"
            "sys.stderr.write(p.stderr[-2000:]); sys.exit(p.returncode)")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "groundhog_batch", *args],
                          cwd=folder, capture_output=True, text=True)
    wall_s, peak_mib = map(float, done.stdout.split())
    return wall_s, peak_mib, done


def project(folder: Path, manifest: str, script: str = TRIVIAL) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work.py").write_text(script)
    (folder / "sweep.yaml").write_text("script: work.py\nfunction: f\n" + manifest)
    return folder


def bench_plan(base: Path) -> list[tuple]:
    folder = project(base / "plan", "sweep:\n  product:\n    x: {range: [0, 1000]}\n    y: {range: [0, 1000]}\n", script="def f(x, y):\n    return x\n")
    wall_s, peak_mib, done = cli(folder, "plan", "sweep.yaml", "--json")
    assert done.returncode == 0, done.stderr
    return [("plan 1,000,000 calls", f"{wall_s:.1f} s", f"{peak_mib:.0f} MiB peak", "target < 10 s, < 1 GiB",
             "holds" if wall_s < 10 and peak_mib < 1024 else "MISSED")]


def bench_throughput(base: Path) -> list[tuple]:
    rows = []
    rates = {}
    for per_task in ("1", "auto"):
        folder = project(base / f"tp-{per_task}", f"calls_per_task: {per_task}\nsweep:\n  product:\n    x: {{range: [0, 2000]}}\n")
        cli(folder, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]")  # warm the environment
        wall_s, peak_mib, done = cli(folder, "submit", "sweep.yaml", "--run-dir", "run")
        assert done.returncode == 0, done.stderr
        rates[per_task] = 2000 / wall_s
        rows.append((f"2,000 trivial calls, calls_per_task {per_task}", f"{wall_s:.1f} s", f"{rates[per_task]:.0f} calls/s", "", ""))
    rows.append(("  auto / 1", f"{rates['auto'] / rates['1']:.0f}x", "", "", ""))
    return rows


def bench_overhead_and_collect(base: Path) -> list[tuple]:
    n = 100_000
    folder = project(base / "overhead", f"sweep:\n  product:\n    x: {{range: [0, {n}]}}\n")
    cli(folder, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]")
    wall_s, peak_mib, done = cli(folder, "submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    started = time.perf_counter()
    namespace: dict = {}
    exec(TRIVIAL, namespace)
    function = namespace["f"]
    for x in range(n):
        kwargs = pickle.loads(pickle.dumps({"x": x}))
        pickle.loads(pickle.dumps(function(**kwargs)))
    loop_s = time.perf_counter() - started
    ratio = wall_s / loop_s
    rows = [(f"{n:,} trivial calls via submit", f"{wall_s:.1f} s", f"{peak_mib:.0f} MiB peak", "", ""),
            (f"{n:,} calls in a plain loop (pickle round trip)", f"{loop_s:.2f} s", "", "", ""),
            ("  submit / loop", f"{ratio:.0f}x", "", "target <= 10x", "holds" if ratio <= 10 else "MISSED")]
    c_wall, c_peak, done = cli(folder, "collect", "run", "-o", "results.parquet")
    assert done.returncode == 0, done.stderr
    rows.append((f"collect {n:,} calls to Parquet", f"{c_wall:.1f} s", f"{c_peak:.0f} MiB peak", "", ""))
    return rows


BENCHMARKS = {"plan": bench_plan, "throughput": bench_throughput, "overhead": bench_overhead_and_collect}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hog-bench-") as tmp:
        os.environ.setdefault("HOG_BATCH_CACHE_DIR", str(Path(tmp) / "cache"))
        os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
        for name in chosen:
            rows += BENCHMARKS[name](Path(tmp))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
