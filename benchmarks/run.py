"""hog-batch benchmarks, measured side by side in one run.

    python benchmarks/run.py            # the default set (all but groundhog, which takes over 10 minutes)
    python benchmarks/run.py --quick    # smaller sizes (10k and 100k calls), for development
    python benchmarks/run.py scale peers   # only some: startup report plan scale budget numpy peers throughput remote remote-big coldstart slurm groundhog

``HOG_BENCH_ROUNDS`` (default 3): how many interleaved rounds scale, numpy and joblib run; figures are
medians, and a ratio is the median of each round's own ratio (the load of a shared machine moves between rounds).
``HOG_BENCH_GROUNDHOG_CALLS`` (default 2000) sets how many calls Groundhog runs;
Groundhog starts one uv process per call, so 2,000 take about 12 minutes here.
``HOG_BATCH_BENCH_ONE_CALL_N`` (default 2000) sizes the remote row of one call per task, run with
``HOG_BATCH_BENCH_ONE_CALL_SLOTS`` (default 8) loopback slots; ``HOG_BATCH_BENCH_ONE_CALL_ONLY=1``
runs only that row of ``remote``.

Each benchmark runs the real CLI in a subprocess and reports wall time and the
peak resident memory of that subprocess. Nothing here asserts: it prints a
table with ratios and says which targets hold.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL = "# /// script\n# dependencies = []\n# ///\ndef f(x):\n    return x\n"
TRIVIAL_X2 = "# /// script\n# dependencies = []\n# ///\ndef f(x):\n    return x * 2\n"


def cli(folder: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (MiB) of one hog-batch command."""
    _, wall_s, peak_mib, _, done = cli_usage(folder, *args)
    return wall_s, peak_mib, done


def project(folder: Path, manifest: str, script: str = TRIVIAL) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work.py").write_text(script)
    (folder / "sweep.yaml").write_text("script: work.py\nfunction: f\n" + manifest)
    return folder


def bench_plan(base: Path, quick: bool = False) -> list[tuple]:
    folder = project(
        base / "plan",
        "sweep:\n  product:\n    x: {range: [0, 1000]}\n    y: {range: [0, 1000]}\n",
        script="def f(x, y):\n    return x\n",
    )
    wall_s, peak_mib, done = cli(folder, "plan", "sweep.yaml", "--json")
    assert done.returncode == 0, done.stderr
    return [
        (
            "plan 1,000,000 calls",
            f"{wall_s:.1f} s",
            f"{peak_mib:.0f} MiB peak",
            "target < 10 s, < 1 GiB",
            "holds" if wall_s < 10 and peak_mib < 1024 else "MISSED",
        )
    ]


THROUGHPUT: dict[str, float] = {}  # calls/s of hog-batch, shared with the Groundhog comparison


def bench_throughput(base: Path, quick: bool = False) -> list[tuple]:
    rows = []
    rates = THROUGHPUT
    for per_task in ("1", "auto"):
        folder = project(
            base / f"tp-{per_task}",
            f"calls_per_task: {per_task}\nsweep:\n  product:\n    x: {{range: [0, 2000]}}\n",
        )
        cli(
            folder, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]"
        )  # warm the environment
        wall_s, peak_mib, done = cli(folder, "submit", "sweep.yaml", "--run-dir", "run")
        assert done.returncode == 0, done.stderr
        rates[per_task] = 2000 / wall_s
        rows.append(
            (
                f"2,000 trivial calls, calls_per_task {per_task}",
                f"{wall_s:.1f} s",
                f"{rates[per_task]:.0f} calls/s",
                "",
                "",
            )
        )
    rows.append(("  auto / 1", f"{rates['auto'] / rates['1']:.0f}x", "", "", ""))
    return rows


SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
LOOP_AND_POOL = """\
import multiprocessing, pickle, sys, time
sys.path.insert(0, ".")
from work import f
n = int(sys.argv[1])
started = time.perf_counter()
for x in range(0 if sys.argv[2:] == ["pool-only"] else n):
    kwargs = pickle.loads(pickle.dumps({"x": x}))
    pickle.loads(pickle.dumps(f(**kwargs)))
loop_s = time.perf_counter() - started
if sys.argv[2:] == ["loop-only"]:
    sys.exit(print(loop_s))
started = time.perf_counter()
with multiprocessing.Pool(2) as pool:
    assert len(pool.map(f, range(n), chunksize=max(1, n // 16))) == n
print(loop_s, time.perf_counter() - started)
"""
# The per-call bookkeeping hog-batch's guarantees need, and nothing else: in one process, no supervisor, no
# submitter, no task. Before the next call the record is in the file (a framed record stored into a mapped
# window of it, as the worker stores it; a store is kept if the process is killed, like a write), with the
# call's start and end, its CPU time and peak memory (getrusage), and what it printed to each stream (both
# flushed, both descriptors' ends looked at). The arguments arrive pickled, a task's worth at once.
FLOOR = """\
import mmap, os, pickle, sys, time
from resource import RUSAGE_SELF, getrusage
sys.path.insert(0, ".")
from work import f
n = int(sys.argv[1])
flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
records = os.open("floor.records", flags, 0o600)
out, err = os.open("floor.out", flags, 0o600), os.open("floor.err", flags, 0o600)
prefix = os.urandom(16).hex().encode() + b" "
pickled = pickle.dumps([{"x": x} for x in range(n)])
now, lseek = time.time, os.lseek
window = 256 << 10
started_all = time.perf_counter()
swept = pickle.loads(pickled)
at = limit = 0
before = getrusage(RUSAGE_SELF)
for position in range(n):
    started = now()
    value = f(**swept[position])
    finished = now()
    after = getrusage(RUSAGE_SELF)
    cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    sys.stdout.flush()
    sys.stderr.flush()
    lseek(out, 0, os.SEEK_END)
    lseek(err, 0, os.SEEK_END)
    line = (
        b'{"call": %d, "ok": true, "kind": "json", "value": %d, "t0": %.6f, "t1": %.6f, "cpu_s": %.6f, '
        b'"max_rss_mib": %.1f}' % (position, value, started, finished, cpu_s, after.ru_maxrss / 1024.0)
    )
    framed = prefix + line + b"\\n"
    if at + len(framed) > limit:  # a new window of the file, set aside on disk, then mapped
        base = at - at % mmap.ALLOCATIONGRANULARITY
        os.posix_fallocate(records, at, window)
        view = mmap.mmap(records, at + window - base, offset=base)
        limit = at + window
    view[at - base : at - base + len(framed)] = framed
    at += len(framed)
    before = after
print(time.perf_counter() - started_all)
"""
SUBMITTER_CPU = """\
import atexit, os, resource, runpy, sys
def report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["HOG_BENCH_CPU_FILE"], "w") as handle:
        handle.write(f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss / 1024}")
atexit.register(report)
sys.argv = ["hog-batch", *sys.argv[1:]]
runpy.run_module("groundhog_batch", run_name="__main__")
"""


STARTUP_SCRIPT = """\
# /// script
# dependencies = []
# ///
import os, time


def f(x):
    with open(os.environ["HOG_BENCH_FIRST_CALL"], "a") as handle:
        handle.write(f"{time.time()}\\n")
    return x
"""


def bench_startup(base: Path, quick: bool = False) -> list[tuple]:
    """Fixed costs a short sweep pays: the CLI's start, and the time from the CLI's start to the first call running.

    The three commands are measured in interleaved rounds (one of each per round), so a change in the shared
    machine's load falls on all of them. Each row gives the wall time (what the target is about) and the CPU
    time of every process the command started (user + system): on a quiet machine the wall time of these
    sequential steps is about their CPU time; on a loaded one the wall time also holds the waits for a core.
    """
    runs = 5 if quick else 11
    # Bytecode for every module first, as `pip install` writes it: an editable checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile each module changed since its .pyc on every start.
    import compileall

    import groundhog_batch

    compileall.compile_dir(Path(groundhog_batch.__file__).parent, quiet=1)
    folder = project(base / "startup", "sweep:\n  product:\n    x: [1]\n", STARTUP_SCRIPT)
    os.environ["HOG_BENCH_FIRST_CALL"] = str(folder / "first-call")
    example = Path(__file__).resolve().parent.parent / "configs" / "01-grid" / "sweep.yaml"
    for warmup in ("warmup", "warmup-2"):  # the environment, built once; the runner's bytecode kept
        cli(folder, "submit", "sweep.yaml", "--local", "--run-dir", warmup)
    measured: dict[str, list[tuple[float, float]]] = {"help": [], "validate": [], "submit": []}
    firsts, submits = [], []
    for attempt in range(runs):
        _, wall_s, _, cpu_s, _ = cli_usage(folder, "--help")
        measured["help"].append((wall_s, cpu_s))
        _, wall_s, _, cpu_s, done = cli_usage(folder, "validate", str(example))
        assert done.returncode == 0, done.stderr
        measured["validate"].append((wall_s, cpu_s))
        (folder / "first-call").unlink(missing_ok=True)
        started, wall_s, _, cpu_s, done = cli_usage(
            folder, "submit", "sweep.yaml", "--local", "--run-dir", f"run-{attempt}"
        )
        assert done.returncode == 0, done.stderr
        measured["submit"].append((wall_s, cpu_s))
        firsts.append(float((folder / "first-call").read_text().split()[0]) - started)
        submits.append(task_submitted_s(folder / f"run-{attempt}", started))
    help_s, help_cpu = (median([m[k] for m in measured["help"]]) for k in (0, 1))
    validate_s, validate_cpu = (median([m[k] for m in measured["validate"]]) for k in (0, 1))
    submit_cpu = median([m[1] for m in measured["submit"]])
    first_s = median(firsts)
    # Where it goes: the submitter's part (Python, imports, the manifest, the run directory, the
    # ledger) up to the moment it hands the task to the backend, and the task's (bash, its checks,
    # the environment's Python, the runner, the script's import), in the same runs.
    submitted_s = median(submits)
    task_s = median([f - s for f, s in zip(firsts, submits, strict=True)])
    of = f"median of {runs}"
    return [
        (
            f"hog-batch --help ({of})",
            f"{help_s:.3f} s wall",
            f"{help_cpu:.3f} s CPU",
            "target <= 0.12 s",
            "holds" if help_s <= 0.12 else "MISSED",
        ),
        (
            f"hog-batch validate of the example ({of})",
            f"{validate_s:.3f} s wall",
            f"{validate_cpu:.3f} s CPU",
            "target <= 0.12 s",
            "holds" if validate_s <= 0.12 else "MISSED",
        ),
        (
            f"CLI start to the first call running, cached environment ({of})",
            f"{first_s:.3f} s wall",
            f"{submit_cpu:.3f} s CPU (the whole submit)",
            "target <= 0.15 s",
            "holds" if first_s <= 0.15 else "MISSED",
        ),
        (
            "  of which: CLI start to the task handed to the backend",
            f"{submitted_s:.3f} s",
            "",
            "",
            "",
        ),
        ("  of which: the task's start to its first call running", f"{task_s:.3f} s", "", "", ""),
    ]


def task_submitted_s(run_dir: Path, started: float) -> float:
    """Seconds from the command's start to its first task being handed to the backend (the ledger's submitted_at)."""
    import sqlite3

    with sqlite3.connect(run_dir / "state.sqlite") as db:
        (first,) = db.execute("SELECT MIN(submitted_at) FROM tasks").fetchone()
    return (first or started) - started


def loop_and_pool(
    folder: Path, n: int, python: str = sys.executable, pool_only: bool = False
) -> tuple[float, float]:
    """The same calls in a plain loop (with a pickle round trip; 0 with ``pool_only``) and through multiprocessing.Pool(2)."""
    (folder / "loop_pool.py").write_text(LOOP_AND_POOL)
    done = subprocess.run(
        [python, "loop_pool.py", str(n), *(["pool-only"] if pool_only else [])],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loop_s, pool_s = map(float, done.stdout.split())
    return loop_s, pool_s


def floor_s(folder: Path, n: int) -> float:
    """Seconds the guarantees' own per-call bookkeeping takes for ``n`` calls in one process (``FLOOR``)."""
    (folder / "floor.py").write_text(FLOOR)
    done = subprocess.run(
        [sys.executable, "floor.py", str(n)], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


def submit_measured(folder: Path, run_dir: str, *extra: str) -> tuple[float, float, float]:
    """Wall seconds of ``submit --local`` (CLI start included), and the submitter's own CPU seconds and peak MiB."""
    (folder / "submitter_cpu.py").write_text(SUBMITTER_CPU)
    cpu_file = folder / f"{run_dir}.cpu"
    os.environ["HOG_BENCH_CPU_FILE"] = str(cpu_file)
    code = (
        "import subprocess, sys, time; t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(time.perf_counter() - t); sys.stderr.write(p.stderr[-2000:]); sys.exit(p.returncode)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            sys.executable,
            "submitter_cpu.py",
            "submit",
            "sweep.yaml",
            "--local",
            "--run-dir",
            run_dir,
            *extra,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    cpu_s, peak_mib = map(float, cpu_file.read_text().split())
    return float(done.stdout.split()[0]), cpu_s, peak_mib


def ledger_mb(run_dir: Path) -> float:
    return sum(p.stat().st_size for p in run_dir.glob("state.sqlite*")) / 1e6


SCALE_HEADER = (
    "calls",
    "submit --local",
    "in-process loop",
    "Pool(2)",
    "submit / loop",
    "submitter CPU",
    "submitter peak",
    "ledger",
    "collect -> Parquet",
)
SCALE: dict[int, dict[str, float]] = {}


# Each comparison runs this many rounds, interleaved (hog-batch, then the others): medians count.
ROUNDS = int(os.environ.get("HOG_BENCH_ROUNDS", "3"))


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def trivial_sweep(folder: Path, n: int, script: str = TRIVIAL_X2) -> Path:
    """A project sweeping ``f(x)`` (``x * 2`` unless ``script`` says otherwise) over ``n`` calls, its
    environment built by a one-call submit."""
    folder = project(folder, f"sweep:\n  product:\n    x: {{range: [0, {n}]}}\n", script)
    cli(
        folder,
        "submit",
        "sweep.yaml",
        "--local",
        "--run-dir",
        "warmup",
        "--set",
        "sweep.product.x=[0]",
    )
    return folder


def bench_scale(base: Path, quick: bool = False) -> list[tuple]:
    """The issue's table: trivial calls x*2 at 10k, 100k, 1M, against the loop and Pool (and joblib at 100k),
    side by side: ``ROUNDS`` interleaved rounds of each, medians (the machine is shared)."""
    rows: list[tuple] = [SCALE_HEADER]
    for n in QUICK_SIZES if quick else SIZES:
        folder = trivial_sweep(base / f"scale-{n}", n)
        joblib = joblib_python(base) if n == 100_000 else None
        measured: dict[str, list[float]] = {}
        for round_ in range(ROUNDS):
            if round_:
                shutil.rmtree(folder / "run")
            wall_s, cpu_s, peak_mib = submit_measured(folder, "run")
            loop_s, pool_s = loop_and_pool(folder, n)
            figures = {
                "submit": wall_s,
                "cpu": cpu_s,
                "peak": peak_mib,
                "loop": loop_s,
                "pool": pool_s,
                "floor": floor_s(folder, n),
            }
            if isinstance(joblib, Path):
                figures["joblib"] = joblib_s(joblib, folder, n)
            for name, value in figures.items():
                measured.setdefault(name, []).append(value)
        c_wall, c_peak, done = cli(folder, "collect", "run", "-o", "results.parquet")
        assert done.returncode == 0, done.stderr
        SCALE[n] = {name: median(values) for name, values in measured.items()}
        # Ratios are taken within each round (the load moves between rounds), then their median.
        SCALE[n]["ratio"] = median(
            [ours / loop for ours, loop in zip(measured["submit"], measured["loop"], strict=True)]
        )
        SCALE[n]["floor_ratio"] = median(
            [own / loop for own, loop in zip(measured["floor"], measured["loop"], strict=True)]
        )
        if "joblib" in measured:
            SCALE[n]["joblib_ratio"] = median(
                [
                    ours / theirs
                    for ours, theirs in zip(measured["submit"], measured["joblib"], strict=True)
                ]
            )
        SCALE[n].update(
            ledger=ledger_mb(folder / "run"), collect=c_wall, collect_peak=c_peak, rounds=measured
        )
        if isinstance(joblib, str):
            SCALE[n]["joblib_skipped"] = joblib
        big = SCALE[n]
        rows.append(
            (
                f"{n:,}",
                f"{big['submit']:.2f} s",
                f"{big['loop']:.2f} s",
                f"{big['pool']:.2f} s",
                f"{big['ratio']:.1f}x",
                f"{big['cpu']:.2f} s",
                f"{big['peak']:.0f} MiB",
                f"{big['ledger']:.1f} MB",
                f"{c_wall:.2f} s, {c_peak:.0f} MiB",
            )
        )
    rounds = [
        f"{n:,}: submit / loop "
        + ", ".join(
            f"{ours / loop:.1f}x"
            for ours, loop in zip(
                SCALE[n]["rounds"]["submit"], SCALE[n]["rounds"]["loop"], strict=True
            )
        )
        for n in SCALE
    ]
    return (
        rows
        + [
            (
                f"each figure the median of {ROUNDS} interleaved rounds, submit / loop the median of "
                "each round's ratio; rounds: " + "; ".join(rounds),
            )
        ]
        + scale_targets()
    )


def scale_targets() -> list[tuple]:
    rows = []
    for n in (100_000, 1_000_000):
        if n in SCALE:
            ratio = SCALE[n]["ratio"]
            rows.append(
                (
                    f"target: {n:,} calls, submit <= 3x the loop",
                    f"{ratio:.1f}x",
                    "holds" if ratio <= 3 else "MISSED",
                )
            )
            floor = SCALE[n]["floor_ratio"]
            rows.append(
                (
                    f"  {n:,} calls: the guarantees' own bookkeeping, one process, nothing else (no target)",
                    f"{SCALE[n]['floor']:.2f} s, {floor:.1f}x the loop (split over two cores: {floor / 2:.1f}x)",
                )
            )
    if 100_000 in SCALE and "joblib" in SCALE[100_000]:
        ours, theirs = SCALE[100_000]["submit"], SCALE[100_000]["joblib"]
        ratio = SCALE[100_000]["joblib_ratio"]
        rows.append(
            (
                "target: 100,000 calls, submit ahead of joblib loky (n_jobs=2)",
                f"hog-batch {ours:.2f} s, joblib {theirs:.2f} s: {ratio:.2f}x joblib's time",
                "holds" if ratio < 1 else "MISSED",
            )
        )
    elif 100_000 in SCALE:
        rows.append(
            (
                "target: 100,000 calls, submit ahead of joblib loky (n_jobs=2)",
                f"SKIPPED: {SCALE[100_000].get('joblib_skipped', 'not measured')}",
            )
        )
    if 1_000_000 in SCALE:
        big = SCALE[1_000_000]
        rows += [
            (
                "target: 1,000,000 calls, submitter peak <= 200 MiB",
                f"{big['peak']:.0f} MiB",
                "holds" if big["peak"] <= 200 else "MISSED",
            ),
            (
                "target: 1,000,000 calls, ledger <= 60 MB",
                f"{big['ledger']:.1f} MB",
                "holds" if big["ledger"] <= 60 else "MISSED",
            ),
            (
                "target: collect 1,000,000 calls to Parquet <= 5 s, <= 300 MiB",
                f"{big['collect']:.1f} s, {big['collect_peak']:.0f} MiB",
                "holds" if big["collect"] <= 5 and big["collect_peak"] <= 300 else "MISSED",
            ),
        ]
    return rows


NUMPY_SCRIPT = """\
# /// script
# dependencies = ["numpy"]
# ///
import numpy as np


SIZE = {size}


def f(x):
    values = np.random.default_rng(x).random(SIZE)
    return float(np.sort(values)[x % 1000])
"""
NUMPY_CALL_S = 0.010  # the workload: calls of about 10 ms of NumPy


def seconds_per_call(python: Path, folder: Path) -> float:
    """What one call of work.py's f takes in that Python, alone (the mean of 50)."""
    done = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, time; sys.path.insert(0, '.'); from work import f; f(0);"
            "t = time.perf_counter(); [f(x) for x in range(50)]; print((time.perf_counter() - t) / 50)",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


POOL_SCRIPT = """\
import multiprocessing, sys
sys.path.insert(0, ".")
from work import f
if __name__ == "__main__":
    n = int(sys.argv[1])
    with multiprocessing.Pool(2) as pool:
        assert len(pool.map(f, range(n), chunksize=max(1, n // 16))) == n
"""


def pool_from_terminal_s(python: Path, folder: Path, n: int) -> float:
    """Wall seconds of ``python pool_script.py N`` as a user times it from a terminal: the interpreter's start and
    the script's imports (NumPy) included, as hog-batch's figure includes the CLI's and the task's."""
    (folder / "pool_script.py").write_text(POOL_SCRIPT)
    started = time.perf_counter()
    subprocess.run([str(python), "pool_script.py", str(n)], cwd=folder, check=True)
    return time.perf_counter() - started


def tree_cpu_s(command: list[str], cwd: Path) -> float:
    """User + system CPU seconds of ``command`` and every process under it (from ``wait4``, as each parent waits)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def runner_alone_command(folder: Path, n: int) -> list[str]:
    """One task's runner on ``n`` calls of work.py's f, as a task starts it (script, runner, payload written
    to ``folder``): its worker and its supervisor, with no submitter and no task script."""
    from groundhog_batch.render.payload import TaskPayload
    from groundhog_batch.render.renderer import runner_source

    payload = TaskPayload(
        function="f",
        call_indices=list(range(n)),
        swept_kwargs=[],
        args=[],
        kwargs={},
        grid={"axes": [["x", list(range(n))]], "first": 0, "n": n},
    )
    (folder / "hog_runner.py").write_text(runner_source())
    (folder / "payload.b64").write_text(payload.encode())
    return [sys.executable, "hog_runner.py", "work.py", "payload.b64"]


def bench_budget(base: Path, quick: bool = False) -> list[tuple]:
    """Where 1,000,000 calls' CPU goes: the whole submit, the runner alone (one task: worker and supervisor),
    and the guarantees' bookkeeping alone (``FLOOR``), whole-tree CPU, interleaved rounds."""
    n = 100_000 if quick else 1_000_000
    folder = trivial_sweep(base / f"budget-{n}", n)
    (folder / "floor.py").write_text(FLOOR)
    (folder / "loop_pool.py").write_text(LOOP_AND_POOL)
    runner = runner_alone_command(folder, n)
    submit = [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--local"]
    measured: dict[str, list[float]] = {}
    for round_ in range(ROUNDS):
        figures = {
            "submit": tree_cpu_s([*submit, "--run-dir", f"run{round_}"], folder),
            "runner": tree_cpu_s(runner, folder),
            "floor": tree_cpu_s([sys.executable, "floor.py", str(n)], folder),
            "loop": tree_cpu_s([sys.executable, "loop_pool.py", str(n), "loop-only"], folder),
        }
        for name, value in figures.items():
            measured.setdefault(name, []).append(value)
        shutil.rmtree(folder / f"run{round_}")
    cpu = {name: median(values) for name, values in measured.items()}
    per_call = {name: value / n * 1e6 for name, value in cpu.items()}
    return [
        (
            f"{n:,} trivial calls: whole-tree CPU (median of {ROUNDS} interleaved rounds)",
            "CPU",
            "a call",
        ),
        *(
            (label, f"{cpu[name]:.2f} s", f"{per_call[name]:.1f} µs")
            for name, label in (
                ("submit", "submit --local (CLI, submitter, tasks: workers and supervisors)"),
                ("runner", "  the runner alone, one task (its worker and its supervisor)"),
                ("floor", "  the guarantees' bookkeeping alone, one process (FLOOR)"),
                ("loop", "  the in-process loop, its interpreter's start included"),
            )
        ),
        (
            "  submit beyond the runner alone (submitter, task starts, the pipe)",
            f"{cpu['submit'] - cpu['runner']:.2f} s",
            f"{per_call['submit'] - per_call['runner']:.1f} µs",
        ),
        (
            "  3x the loop on two cores allows (loop's CPU x 3 x 2)",
            f"{cpu['loop'] * 6:.2f} s",
            f"{per_call['loop'] * 6:.1f} µs",
        ),
    ]


def bench_numpy(base: Path, quick: bool = False) -> list[tuple]:
    """Calls of ~10 ms of NumPy each: hog-batch against multiprocessing.Pool(2) in the same environment."""
    n = 300  # issue 21: 300 calls of 10 ms, a 3 s workload, where start-up costs show
    folder = trivial_sweep(base / "numpy", n, NUMPY_SCRIPT.format(size=250_000))  # env built
    env_python = next(Path(os.environ["HOG_BATCH_CACHE_DIR"]).glob("**/envs/*/bin/python"))
    size = int(
        250_000 * NUMPY_CALL_S / seconds_per_call(env_python, folder)
    )  # about 10 ms a call, here and now
    (folder / "work.py").write_text(NUMPY_SCRIPT.format(size=size))
    per_call_s = seconds_per_call(env_python, folder)
    walls, pools, terminal = [], [], []
    for _ in range(
        ROUNDS
    ):  # interleaved: Pool(2), Pool(2) from a terminal, then submit, each round
        pools.append(loop_and_pool(folder, n, str(env_python), pool_only=True)[1])
        terminal.append(pool_from_terminal_s(env_python, folder, n))
        shutil.rmtree(folder / "run", ignore_errors=True)
        walls.append(submit_measured(folder, "run")[0])
    wall_s, pool_s = median(walls), median(pools)
    ratio = median(
        [w / p for w, p in zip(walls, pools, strict=True)]
    )  # within each round, then the median
    terminal_ratio = median([w / t for w, t in zip(walls, terminal, strict=True)])
    return [
        (
            f"{n:,} calls of {per_call_s * 1000:.0f} ms of NumPy (medians of {ROUNDS} interleaved rounds)",
            f"submit {wall_s:.2f} s",
            f"Pool(2) {pool_s:.2f} s",
            f"{ratio:.2f}x",
        ),
        (
            "  rounds: submit / Pool(2)",
            ", ".join(
                f"{w:.2f} / {p:.2f} s ({w / p:.2f}x)" for w, p in zip(walls, pools, strict=True)
            ),
            "",
            "",
        ),
        (
            "target: submit <= 1.05x Pool(2)",
            f"{ratio:.2f}x",
            "holds" if ratio <= 1.05 else "MISSED",
        ),
        (
            "besides (no target): Pool(2) timed as from a terminal, `python pool_script.py` with the interpreter's"
            " start and `import numpy`",
            f"submit {wall_s:.2f} s",
            f"python pool_script.py {median(terminal):.2f} s",
            f"{terminal_ratio:.2f}x",
        ),
        (
            "  rounds: submit / python pool_script.py",
            ", ".join(
                f"{w:.2f} / {t:.2f} s ({w / t:.2f}x)" for w, t in zip(walls, terminal, strict=True)
            ),
            "",
            "",
        ),
    ]


PARALLEL_SCRIPT = """\
import pickle, sys
def f(x):
    return x * 2
for arg in sys.argv[1:]:
    kwargs = pickle.loads(pickle.dumps({"x": int(arg)}))
    sys.stdout.write(repr(f(**kwargs)) + "\\n")
"""
JOBLIB_DRIVER = """\
import sys, time
sys.path.insert(0, ".")
from joblib import Parallel, delayed
from work import f
n = int(sys.argv[1])
started = time.perf_counter()
results = Parallel(n_jobs=2, backend="loky")(delayed(f)(x) for x in range(n))
assert len(results) == n
print(time.perf_counter() - started)
"""


def bench_peers(base: Path, quick: bool = False) -> list[tuple]:
    """GNU parallel (-X) and joblib's loky backend on the same trivial calls; hog-batch and joblib from the scale
    table (measured there in interleaved rounds)."""
    n = 100_000
    if n not in SCALE:
        bench_scale(base, quick=True)
    ours = SCALE[n]["submit"]
    folder = base / f"scale-{n}"
    rows: list[tuple] = []
    parallel = shutil.which("parallel")
    if parallel is None:
        rows.append(
            (
                f"GNU parallel -X, {n:,} calls",
                "SKIPPED: GNU parallel is not installed (apt-get install parallel)",
            )
        )
    else:
        (folder / "calls.py").write_text(PARALLEL_SCRIPT)
        started = time.perf_counter()
        done = subprocess.run(
            f"seq 0 {n - 1} | {parallel} -X -j 2 {sys.executable} calls.py > parallel.out",
            shell=True,
            cwd=folder,
            capture_output=True,
            text=True,
        )
        parallel_s = time.perf_counter() - started
        assert done.returncode == 0, done.stderr[-2000:]
        assert sum(1 for _ in (folder / "parallel.out").open()) == n
        rows.append(
            (
                f"GNU parallel -X -j 2, {n:,} calls",
                f"{parallel_s:.2f} s",
                f"hog-batch {ours:.2f} s",
                f"hog-batch is {parallel_s / ours:.2f}x its speed",
                "ahead" if ours < parallel_s else "BEHIND",
            )
        )
    if "joblib" in SCALE[n]:
        joblib_s = SCALE[n]["joblib"]
        rows.append(
            (
                f"joblib loky n_jobs=2, {n:,} calls (median of {ROUNDS}, interleaved with hog-batch's)",
                f"{joblib_s:.2f} s",
                f"hog-batch {ours:.2f} s",
                f"hog-batch is {joblib_s / ours:.2f}x its speed",
                "ahead" if ours < joblib_s else "BEHIND",
            )
        )
    else:
        rows.append((f"joblib loky, {n:,} calls", f"SKIPPED: {SCALE[n].get('joblib_skipped', '')}"))
    return rows


_JOBLIB: list = []


def joblib_python(base: Path) -> Path | str:
    """The Python of an environment of its own with joblib (made once), or why there is none."""
    if not _JOBLIB:
        from uv import find_uv_bin

        env_dir = base / "joblib-env"
        uv = find_uv_bin()
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True)
        installed = subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), "joblib"],
            capture_output=True,
            text=True,
        )
        _JOBLIB.append(
            env_dir / "bin" / "python"
            if installed.returncode == 0
            else f"joblib could not be installed: {installed.stderr[-300:]}"
        )
    return _JOBLIB[0]


def joblib_s(python: Path, folder: Path, n: int) -> float:
    """Seconds joblib's loky backend (n_jobs=2) takes for the trivial calls in ``folder``'s work.py."""
    (folder / "joblib_drive.py").write_text(JOBLIB_DRIVER)
    done = subprocess.run(
        [str(python), "joblib_drive.py", str(n)], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


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


def bench_groundhog(base: Path, quick: bool = False) -> list[tuple]:
    """The same trivial calls through Groundhog's fastest local path, batch_local, in its own environment."""
    from uv import find_uv_bin

    n = int(os.environ.get("HOG_BENCH_GROUNDHOG_CALLS", "2000"))
    env_dir = base / "groundhog-env"
    uv = find_uv_bin()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(env_dir / "bin" / "python"),
            f"groundhog-hpc=={GROUNDHOG_VERSION}",
        ],
        check=True,
    )
    folder = base / "groundhog"
    folder.mkdir()
    (folder / "work.py").write_text(GROUNDHOG_SCRIPT)
    (folder / "drive.py").write_text(GROUNDHOG_DRIVER)
    done = subprocess.run(
        [str(env_dir / "bin" / "python"), "drive.py", str(n)],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wall_s = float(done.stdout.split()[-1])
    rate = n / wall_s
    if "auto" not in THROUGHPUT:
        bench_throughput(base)
    ratio = THROUGHPUT["auto"] / rate
    return [
        (
            f"{n:,} trivial calls, Groundhog {GROUNDHOG_VERSION} batch_local",
            f"{wall_s:.1f} s",
            f"{rate:.1f} calls/s",
            "",
            "",
        ),
        (
            "  hog-batch auto / Groundhog",
            f"{ratio:.0f}x",
            "",
            "target >= 300x",
            "holds" if ratio >= 300 else "MISSED",
        ),
    ]


def cli_usage(
    folder: Path, *args: str, env: dict | None = None
) -> tuple[float, float, float, float, subprocess.CompletedProcess]:
    """Start time (time.time), wall seconds, peak RSS (MiB) and CPU seconds of one hog-batch command."""
    code = (
        "import resource, subprocess, sys, time; s = time.time(); t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w = time.perf_counter() - t; u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(s, w, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime);"
        "sys.stderr.write(p.stderr[-2000:]); sys.exit(p.returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "groundhog_batch", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    started, wall_s, peak_mib, cpu_s = map(float, done.stdout.split())
    return started, wall_s, peak_mib, cpu_s, done


def result_times(run_dir: Path, started: float) -> tuple[float, float]:
    """Seconds from the command's start to the first and to the last task's results in the ledger."""
    import sqlite3

    with sqlite3.connect(run_dir / "state.sqlite") as db:
        first, last = db.execute("SELECT MIN(finished_at), MAX(finished_at) FROM tasks").fetchone()
    return (first or started) - started, (last or started) - started


REMOTE_HEADER = (
    "calls (calls_per_task)",
    "wall",
    "requests by route",
    "peak / 10 s",
    "submitter CPU",
    "peak RSS",
    "first / last result",
    "ledger",
)


REMOTE_ONE_CALL_SLOTS = int(os.environ.get("HOG_BATCH_BENCH_ONE_CALL_SLOTS", "8"))


def bench_remote(base: Path, quick: bool = False) -> list[tuple]:
    """Trivial calls on the loopback Globus Compute service with results pushed through a real RabbitMQ broker.

    Rows per scale: requests per route, the peak in any 10 s (the service allows 20), the submitter's CPU
    and peak memory, the time to the first and the last result, and the ledger's size.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import rabbitmq_server
    from loopback_globus import LoopbackGlobus

    from groundhog_batch.backends.local import find_uv

    one_call = (int(os.environ.get("HOG_BATCH_BENCH_ONE_CALL_N", "2000")), 1)
    scales = (
        [(1_000, "auto"), (10_000, "auto"), one_call]
        if quick
        else [(1_000, "auto"), (10_000, "auto"), (100_000, "auto"), one_call]
    )
    if os.environ.get("HOG_BATCH_BENCH_ONE_CALL_ONLY"):  # just the row of one call per task
        scales = [one_call]
    os.environ["HOG_BATCH_UV"] = find_uv()
    broker = None
    if rabbitmq_server.available() is None:
        broker = rabbitmq_server.RabbitMQ().start()
    service = LoopbackGlobus(amqp_url=broker.url if broker else None).start()
    rows: list[tuple] = [REMOTE_HEADER]
    try:
        endpoint = service.add_endpoint()
        os.environ.update(
            {
                **service.environment(),
                "GLOBUS_COMPUTE_USER_DIR": str(base / "globus-compute"),
                "HOG_BATCH_STATE_DIR": str(base / "state"),
            }
        )
        for n, per_task in scales:
            service.reset()
            one_call = per_task == 1
            if one_call:
                # One task per call: 2,000 tasks. The loopback's own cost per task (a fresh worker process
                # importing globus-compute-endpoint, ~0.8 s CPU) on its 2 slots made this row take an hour; here
                # each task's function (bash running the task script) runs in one of REMOTE_ONE_CALL_SLOTS
                # service threads instead, so the row measures the submitter, not the loopback's workers.
                service.set_workers(REMOTE_ONE_CALL_SLOTS)
                service.inline = True
                os.environ["GC_TASK_SANDBOX_DIR"] = str(
                    base
                )  # where those threads' task folders go
            folder = project(
                base / f"remote-{n}-{per_task}",
                f"endpoint: {endpoint}\ncalls_per_task: {per_task}\n"
                f"sweep:\n  product:\n    x: {{range: [0, {n}]}}\n",
            )
            started, wall_s, peak_mib, cpu_s, done = cli_usage(
                folder,
                "submit",
                "sweep.yaml",
                "--run-dir",
                "run",
            )
            if one_call:
                service.set_workers(2)
                os.environ.pop("GC_TASK_SANDBOX_DIR", None)
            assert done.returncode == 0, done.stderr
            first_s, last_s = result_times(folder / "run", started)
            counts = {k: v for k, v in sorted(service.requests.items()) if k != "token"}
            rows.append(
                (
                    f"{n:,} ({per_task})"
                    + (f", {REMOTE_ONE_CALL_SLOTS} inline slots" if one_call else ""),
                    f"{wall_s:.1f} s",
                    ", ".join(f"{k} {v}" for k, v in counts.items()),
                    str(service.peak_requests(10.0)),
                    f"{cpu_s:.1f} s",
                    f"{peak_mib:.0f} MiB",
                    f"{first_s:.1f} / {last_s:.1f} s",
                    f"{(folder / 'run' / 'state.sqlite').stat().st_size / 2**20:.1f} MiB",
                )
            )
    finally:
        service.stop()
        if broker is not None:
            broker.stop()
    rows.append(
        (
            "results",
            "pushed over AMQP (rabbitmq-server)" if broker else "polled (no rabbitmq-server here)",
            "",
            "",
            "",
            "",
            "",
            "",
        )
    )
    return rows


BIG_RESULTS_SCRIPT = """# /// script
# dependencies = []
# ///
import base64, os
def f(x):
    return base64.b64encode(os.urandom(1_760_000)).decode()
"""


def bench_remote_big(base: Path, quick: bool = False) -> list[tuple]:
    """100 task results of about 9 MiB each, all fetched at once by `resume`: the submitter's peak memory."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from loopback_globus import LoopbackGlobus

    from groundhog_batch.api import open_run
    from groundhog_batch.backends.local import find_uv

    n_tasks = 20 if quick else 100
    os.environ["HOG_BATCH_UV"] = find_uv()
    service = LoopbackGlobus().start()
    try:
        endpoint = service.add_endpoint()
        os.environ.update(
            {
                **service.environment(),
                "GLOBUS_COMPUTE_USER_DIR": str(base / "globus-compute-big"),
                "HOG_BATCH_GLOBUS_POLL_S": "1.0",
                "HOG_BATCH_STATE_DIR": str(base / "state"),
            }
        )
        folder = project(
            base / "remote-big",
            f"endpoint: {endpoint}\ncalls_per_task: 3\nmax_parallel: {n_tasks}\n"
            f"sweep:\n  product:\n    x: {{range: [0, {3 * n_tasks}]}}\n",
            BIG_RESULTS_SCRIPT,
        )
        service.hold_tasks = True
        submitter = subprocess.Popen(
            [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 600
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                run = open_run(folder / "run")
                tasks = run.ledger.tasks_in_flight()
                run.close()
            except Exception:
                continue
            if len(tasks) == n_tasks and all(external_id for _, _, external_id, _ in tasks):
                break
        submitter.kill()
        submitter.wait()
        service.release()
        service.wait_idle(timeout_s=1800)
        sizes = sorted(len(task["result"] or "") for task in service.tasks.values())
        wall_s, peak_mib, done = cli(folder, "resume", "run")
        assert done.returncode == 0, done.stderr
        statuses = service.requests.get("status", 0)
    finally:
        service.stop()
    mib = sizes[len(sizes) // 2] / 2**20 if sizes else 0
    return [
        (
            f"{n_tasks} results of {mib:.1f} MiB fetched at once (`resume`)",
            f"{wall_s:.1f} s",
            f"{peak_mib:.0f} MiB peak",
            "target <= 256 MiB",
            "holds" if peak_mib <= 256 else "MISSED",
        ),
        ("  status requests", str(statuses), "", "", ""),
    ]


def bench_coldstart(base: Path, quick: bool = False) -> list[tuple]:
    """8 tasks at once on a cold environment cache against 1: the environment is built once."""
    script = '# /// script\n# dependencies = ["six"]\n# ///\ndef f(x):\n    return x\n'
    folder = project(
        base / "cold",
        "calls_per_task: 1\nmax_parallel: 8\nsweep:\n  product:\n    x: {range: [0, 8]}\n",
        script,
    )
    os.environ["HOG_BATCH_CACHE_DIR"] = str(base / "cold-warmup")
    cli(
        folder, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]"
    )  # uv's download cache
    walls = {}
    for n_tasks in (1, 8):
        cache = base / f"cold-cache-{n_tasks}"
        os.environ["HOG_BATCH_CACHE_DIR"] = str(cache)
        walls[n_tasks], _, done = cli(
            folder,
            "submit",
            "sweep.yaml",
            "--run-dir",
            f"run-{n_tasks}",
            "--set",
            f"sweep.product.x={{range: [0, {n_tasks}]}}",
        )
        assert done.returncode == 0, done.stderr
    built = [p for p in (base / "cold-cache-8" / "hog-batch" / "envs").iterdir() if p.is_dir()]
    ratio = walls[8] / walls[1]
    holds = ratio < 2 and len(built) == 1
    return [
        ("cold cache: 1 task", f"{walls[1]:.1f} s", "", "", ""),
        (
            "cold cache: 8 tasks at once",
            f"{walls[8]:.1f} s",
            f"{len(built)} environment(s) built",
            "",
            "",
        ),
        ("  8 / 1", f"{ratio:.2f}x", "", "target < 2x, built once", "holds" if holds else "MISSED"),
    ]


def report_row(folder: Path, what: str, *submit_options: str) -> tuple:
    """Submit ``folder``'s sweep, then time ``hog-batch report`` of it against the 10 s target."""
    assert (
        cli(folder, "submit", "sweep.yaml", *submit_options, "--run-dir", "run")[2].returncode == 0
    )
    wall_s, peak_mib, done = cli(folder, "report", "run")
    assert done.returncode == 0, done.stderr
    return (
        f"report, {what}",
        f"{wall_s:.1f} s",
        f"{peak_mib:.0f} MiB peak",
        "target < 10 s",
        "holds" if wall_s < 10 else "MISSED",
    )


def bench_report(base: Path, quick: bool = False) -> list[tuple]:
    """The report of 3 calls returning dicts of 1,000 and 5,000 numbers (one figure per key would take minutes),
    of a 10,000-call grid with replicates, and of 1,000,000 trivial calls: each must build in under 10 s."""
    wide = "def f(x):\n    return {f'k{i}': x * i for i in range(%d)}\n"
    rows = [
        report_row(
            project(base / f"report-{keys}", "sweep:\n  product:\n    x: [1, 2, 3]\n", wide % keys),
            f"3 calls of {keys:,} keys",
        )
        for keys in (1_000, 5_000)
    ]
    n_seeds = 10 if quick else 100
    grid = (
        "sweep:\n  product:\n    a: {geomspace: [1, 1000, 10]}\n    b: {linspace: [0, 1, 10]}\n"
        f"    seed: {{range: [0, {n_seeds}]}}\n"
    )
    script = "def f(a, b, seed):\n    return {'y': a * b + seed % 7, 'z': a - b}\n"
    rows.append(
        report_row(
            project(base / "report-grid", grid, script), f"{100 * n_seeds:,} calls, replicates"
        )
    )
    n_big = 100_000 if quick else 1_000_000
    folder = trivial_sweep(base / f"report-{n_big}", n_big)
    rows.append(report_row(folder, f"{n_big:,} trivial calls", "--local"))
    return rows


def bench_slurm(base: Path, quick: bool = False) -> list[tuple]:
    """10,000 trivial calls as a Slurm array on a private one-node Slurm, against the local backend (submit -> last
    result: the submit command's wall time, which returns once every result is in the ledger)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from slurm_cluster import SlurmCluster, why_unavailable

    from groundhog_batch.backends.local import find_uv

    n = 10_000
    reason = why_unavailable()
    if reason:
        return [(f"{n:,} trivial calls through Slurm", f"SKIPPED: {reason}")]
    local = project(base / "slurm-local", f"sweep:\n  product:\n    x: {{range: [0, {n}]}}\n")
    cli(
        local, "submit", "sweep.yaml", "--run-dir", "warmup", "--set", "sweep.product.x=[0]"
    )  # warm the environment
    local_s, _, done = cli(local, "submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    cluster = SlurmCluster().start()
    saved = dict(os.environ)
    try:
        os.environ.update(
            {**cluster.environment(), "HOG_BATCH_UV": find_uv(), "HOG_BATCH_SLURM_POLL_S": "1.0"}
        )
        folder = project(
            base / "slurm", f"endpoint: slurm\nsweep:\n  product:\n    x: {{range: [0, {n}]}}\n"
        )
        slurm_s, _, done = cli(folder, "submit", "sweep.yaml", "--run-dir", "run")
        assert done.returncode == 0, done.stderr
        elements = len(
            list((folder / "run" / "tasks").glob("*.log"))
        )  # Slurm's log of each element
    finally:
        os.environ.clear()
        os.environ.update(saved)
        cluster.stop()
    return [
        (f"{n:,} trivial calls, local backend", f"{local_s:.1f} s", "", "", ""),
        (
            f"{n:,} trivial calls through Slurm ({elements} array elements, one node)",
            f"{slurm_s:.1f} s",
            "",
            "",
            "",
        ),
        ("  Slurm / local (submit -> last result)", f"{slurm_s / local_s:.1f}x", "", "", ""),
    ]


BENCHMARKS = {
    "startup": bench_startup,
    "report": bench_report,
    "plan": bench_plan,
    "scale": bench_scale,
    "budget": bench_budget,
    "numpy": bench_numpy,
    "peers": bench_peers,
    "throughput": bench_throughput,
    "remote": bench_remote,
    "remote-big": bench_remote_big,
    "coldstart": bench_coldstart,
    "groundhog": bench_groundhog,
    "slurm": bench_slurm,
}
DEFAULT = [
    "startup",
    "report",
    "plan",
    "scale",
    "budget",
    "numpy",
    "peers",
    "throughput",
    "coldstart",
    "remote",
    "slurm",
]  # groundhog: over 10 minutes


def load() -> str:
    """The machine's load while the benchmarks ran (it is shared: ratios side by side are what count)."""
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    chosen = [a for a in argv if a != "--quick"] or DEFAULT
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark {unknown[0]!r}; choose from: {', '.join(BENCHMARKS)} (and --quick)",
            file=sys.stderr,
        )
        return 2
    # A user's install has its bytecode written (pip compiles it); a shell that forbids it would time compilation.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
    )
    print(f"load average at start: {load()}{'  (quick mode)' if quick else ''}")
    sections = []
    with tempfile.TemporaryDirectory(prefix="hog-bench-") as tmp:
        os.environ.setdefault("HOG_BATCH_CACHE_DIR", str(Path(tmp) / "cache"))
        os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
        for name in chosen:
            try:
                sections.append((name, BENCHMARKS[name](Path(tmp), quick)))
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                sections.append((name, [(f"FAILED: {type(exc).__name__}: {str(exc)[-500:]}",)]))
    print(f"load average at end: {load()}")
    for name, rows in sections:
        print(f"\n## {name}\n")
        for row in rows:
            print("| " + " | ".join(str(cell) for cell in row) + " |")
            if row is SCALE_HEADER or row is REMOTE_HEADER:
                print("|" + "---|" * len(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
