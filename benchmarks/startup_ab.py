"""The start-up rows of ``run.py startup``, for an earlier commit and this checkout side by side.

    python benchmarks/startup_ab.py 7da00d8        # 25 interleaved rounds
    python benchmarks/startup_ab.py 7da00d8 11

The earlier commit's package is taken out of git into a temporary folder (bytecode compiled) and run from
this virtual environment on ``PYTHONPATH``; each round runs ``--help``, ``validate`` of the example and a
1-call submit with each code in turn (and the submit once more, noting its CPU time as it starts the task),
so a change in a shared machine's load falls on both. It prints the best and the median of each measure: on
a loaded machine the best round is the nearest to a quiet one, and CPU times move least with the load.
"""

from __future__ import annotations

import compileall
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A submit that notes its own CPU time (Python's start included) when it starts its first process, the
# task: the submitter's part of the first call's start, without the waits for a core of a loaded machine.
CPU_TO_TASK = """\
import os, runpy, subprocess, sys, time
start = subprocess.Popen.__init__
def noted(self, *args, **kwargs):
    if "HOG_AB_CPU_FILE" in os.environ:
        with open(os.environ.pop("HOG_AB_CPU_FILE"), "w") as handle:
            handle.write(str(time.process_time()))
    start(self, *args, **kwargs)
subprocess.Popen.__init__ = noted
sys.argv = ["hog-batch", *sys.argv[1:]]
runpy.run_module("groundhog_batch", run_name="__main__")
"""
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402


def main() -> None:
    before, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25
    import groundhog_batch

    compileall.compile_dir(Path(groundhog_batch.__file__).parent, quiet=1)
    example = HERE.parent / "configs" / "01-grid" / "sweep.yaml"
    with tempfile.TemporaryDirectory(prefix="hog-startup-ab.") as tmp:
        base = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", before, "groundhog_batch"],
            cwd=HERE.parent,
            capture_output=True,
            check=True,
        ).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(base / "before")
        compileall.compile_dir(base / "before" / "groundhog_batch", quiet=1)
        codes = {before: {"PYTHONPATH": str(base / "before")}, "this checkout": {}}
        folders = {}
        for n, (name, env) in enumerate(codes.items()):
            folder = bench.project(
                base / f"code-{n}", "sweep:\n  product:\n    x: [1]\n", bench.STARTUP_SCRIPT
            )
            env["HOG_BENCH_FIRST_CALL"] = str(folder / "first-call")
            for warmup in ("warmup", "warmup-2"):  # the environment, and the runner's bytecode
                bench.cli_usage(
                    folder, "submit", "sweep.yaml", "--local", "--run-dir", warmup, env=env
                )
            folders[name] = folder
        keys = (
            "--help",
            "validate",
            "validate CPU",
            "first call",
            "to the task",
            "in the task",
            "submit CPU to the task",
        )
        found = {name: {key: [] for key in keys} for name in codes}
        load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
        for attempt in range(rounds):
            for name, env in codes.items():
                folder, got = folders[name], found[name]
                got["--help"].append(bench.cli_usage(folder, "--help", env=env)[1])
                _, wall_s, _, cpu_s, done = bench.cli_usage(
                    folder, "validate", str(example), env=env
                )
                assert done.returncode == 0, done.stderr
                got["validate"].append(wall_s)
                got["validate CPU"].append(cpu_s)
                (folder / "first-call").unlink(missing_ok=True)
                started, _, _, _, done = bench.cli_usage(
                    folder,
                    "submit",
                    "sweep.yaml",
                    "--local",
                    "--run-dir",
                    f"run-{attempt}",
                    env=env,
                )
                assert done.returncode == 0, done.stderr
                first = float((folder / "first-call").read_text().split()[0]) - started
                handed = bench.task_submitted_s(folder / f"run-{attempt}", started)
                got["first call"].append(first)
                got["to the task"].append(handed)
                got["in the task"].append(first - handed)
                noted = folder / "cpu-to-the-task"
                done = subprocess.run(
                    [sys.executable, "-c", CPU_TO_TASK, "submit", "sweep.yaml", "--local"]
                    + ["--run-dir", f"cpu-run-{attempt}"],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env, "HOG_AB_CPU_FILE": str(noted)},
                )
                assert done.returncode == 0, done.stderr
                got["submit CPU to the task"].append(float(noted.read_text()))
        end = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
        print(
            f"load average {' '.join(load)} at the start, {' '.join(end)} at the end; {rounds} rounds"
        )
        print(f"| ms: best (median) | {' | '.join(codes)} |")
        print("|---|" + "---|" * len(codes))
        for key in keys:
            cells = [
                f"{1000 * min(found[name][key]):.0f} ({1000 * statistics.median(found[name][key]):.0f})"
                for name in codes
            ]
            print(f"| {key} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
