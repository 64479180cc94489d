"""hog-batch benchmarks, measured side by side in one run.

    python benchmarks/run.py            # every benchmark
    python benchmarks/run.py plan       # only some: plan throughput groundhog overhead remote coldstart

``HOG_BENCH_GROUNDHOG_CALLS`` (default 2000) sets how many calls Groundhog runs;
Groundhog starts one uv process per call, so 2,000 take about 12 minutes here.

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


THROUGHPUT: dict[str, float] = {}  # calls/s of hog-batch, shared with the Groundhog comparison


def bench_throughput(base: Path) -> list[tuple]:
    rows = []
    rates = THROUGHPUT
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


GROUNDHOG_VERSION = "0.9.3"
GROUNDHOG_SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
#
# [tool.uv]
# python-preference = "system"
# ///
import groundhog_hpc as hog


@hog.function()
def f(x):
    return x
"""
GROUNDHOG_DRIVER = """\
import os, sys, time
sys.path.insert(0, os.getcwd())
import groundhog_hpc  # installs the import hook .local() and batch_local() require
import work
n = int(sys.argv[1])
work.f.batch_local(kwargs=[{"x": 0}], executor_kwargs={"max_workers": 1})[0].result()  # its environment, built once
started = time.perf_counter()
futures = work.f.batch_local(kwargs=[{"x": i} for i in range(n)], executor_kwargs={"max_workers": os.cpu_count()})
assert [future.result() for future in futures] == list(range(n))
print(time.perf_counter() - started)
"""


def bench_groundhog(base: Path) -> list[tuple]:
    """The same trivial calls through Groundhog's fastest local path, batch_local, in its own environment."""
    from uv import find_uv_bin

    n = int(os.environ.get("HOG_BENCH_GROUNDHOG_CALLS", "2000"))
    env_dir = base / "groundhog-env"
    uv = find_uv_bin()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"),
                    f"groundhog-hpc=={GROUNDHOG_VERSION}"], check=True)
    folder = base / "groundhog"
    folder.mkdir()
    (folder / "work.py").write_text(GROUNDHOG_SCRIPT)
    (folder / "drive.py").write_text(GROUNDHOG_DRIVER)
    done = subprocess.run([str(env_dir / "bin" / "python"), "drive.py", str(n)], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    wall_s = float(done.stdout.split()[-1])
    rate = n / wall_s
    if "auto" not in THROUGHPUT:
        bench_throughput(base)
    ratio = THROUGHPUT["auto"] / rate
    return [(f"{n:,} trivial calls, Groundhog {GROUNDHOG_VERSION} batch_local", f"{wall_s:.1f} s", f"{rate:.1f} calls/s", "", ""),
            ("  hog-batch auto / Groundhog", f"{ratio:.0f}x", "", "target >= 300x", "holds" if ratio >= 300 else "MISSED")]


def bench_remote(base: Path) -> list[tuple]:
    """Requests per 10,000 trivial calls against the loopback Globus Compute service."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from loopback_globus import LoopbackGlobus

    from groundhog_batch.backends.local import find_uv

    n = 10_000
    os.environ["HOG_BATCH_UV"] = find_uv()
    service = LoopbackGlobus().start()
    try:
        endpoint = service.add_endpoint()
        env = {**service.environment(), "GLOBUS_COMPUTE_USER_DIR": str(base / "globus-compute"),
               "HOG_BATCH_GLOBUS_POLL_S": "1.0"}
        os.environ.update(env)
        folder = project(base / "remote", f"endpoint: {endpoint}\nsweep:\n  product:\n    x: {{range: [0, {n}]}}\n")
        wall_s, _, done = cli(folder, "submit", "sweep.yaml", "--run-dir", "run")
        assert done.returncode == 0, done.stderr
        counts = dict(service.requests)
    finally:
        service.stop()
    submissions = counts.get("submit", 0)
    return [(f"{n:,} trivial calls on the loopback Globus service", f"{wall_s:.1f} s",
             f"{sum(v for k, v in counts.items() if k != 'token')} requests", "", ""),
            ("  by kind", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), "", "", ""),
            ("  submission requests", str(submissions), "", "target <= 3", "holds" if submissions <= 3 else "MISSED")]


def bench_coldstart(base: Path) -> list[tuple]:
    """8 tasks at once on a cold environment cache against 1: the environment is built once."""
    script = "# /// script\n# dependencies = [\"six\"]\n# ///\ndef f(x):\n    return x\n"
    folder = project(base / "cold", "calls_per_task: 1\nmax_parallel: 8\nsweep:\n  product:\n    x: {range: [0, 8]}\n", script)
    os.environ["HOG_BATCH_CACHE_DIR"] = str(base / "cold-warmup")
    cli(folder, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]")  # uv's download cache
    walls = {}
    for n_tasks in (1, 8):
        cache = base / f"cold-cache-{n_tasks}"
        os.environ["HOG_BATCH_CACHE_DIR"] = str(cache)
        walls[n_tasks], _, done = cli(folder, "submit", "sweep.yaml", "--run-dir", f"run-{n_tasks}",
                                      "--set", f"sweep.product.x={{range: [0, {n_tasks}]}}")
        assert done.returncode == 0, done.stderr
    built = [p for p in (base / "cold-cache-8" / "hog-batch" / "envs").iterdir() if p.is_dir()]
    ratio = walls[8] / walls[1]
    holds = ratio < 2 and len(built) == 1
    return [("cold cache: 1 task", f"{walls[1]:.1f} s", "", "", ""),
            ("cold cache: 8 tasks at once", f"{walls[8]:.1f} s", f"{len(built)} environment(s) built", "", ""),
            ("  8 / 1", f"{ratio:.2f}x", "", "target < 2x, built once", "holds" if holds else "MISSED")]


BENCHMARKS = {"plan": bench_plan, "throughput": bench_throughput, "groundhog": bench_groundhog,
              "overhead": bench_overhead_and_collect, "remote": bench_remote, "coldstart": bench_coldstart}


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
