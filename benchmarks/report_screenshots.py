"""Redraw docs/img/report-defaults.png and docs/img/report-chosen.png: the report of a realistic workload.

    python benchmarks/report_screenshots.py [OUT_DIR]     # default: docs/img

The workload (benchmarks/workload/): a 180-call fit grid (NumPy and SciPy fit a damped
oscillator; 10 planted failures) and a 50,000-row Parquet file in 50 chunks (3 chunks
with planted missing readings). It runs twice: with no report: section, and with one
choosing axes, replicates and units (workload-report.yaml, reusing the first run's calls).
Each report is drawn by headless Chromium, offline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
WORKLOAD = HERE / "workload"
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=127.0.0.1:9",
    "--hide-scrollbars",
    "--virtual-time-budget=20000",
]


def hog(folder: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "groundhog_batch", *args], cwd=folder, capture_output=True, text=True
    )
    print(f"$ hog-batch {' '.join(args)}\n{done.stderr.strip()}\n", file=sys.stderr)
    return done


def screenshot(page: Path, png: Path, height: int, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (apt-get install chromium)")
    subprocess.run(
        [
            chromium,
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size=1250,{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=300,
        check=True,
    )


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lab"
        shutil.copytree(WORKLOAD, folder, ignore=shutil.ignore_patterns("*.parquet"))
        subprocess.run([sys.executable, "make_data.py"], cwd=folder, check=True)
        hog(folder, "submit", "workload.yaml", "--run-dir", "defaults")
        hog(folder, "submit", "workload-report.yaml", "--run-dir", "chosen", "--reuse", "defaults")
        for name in ("defaults", "chosen"):
            hog(folder, "report", name)
            screenshot(
                folder / name / "report.html",
                out / f"report-{name}.png",
                2300,
                Path(tmp) / f"profile-{name}",
            )
            print(f"wrote {out / f'report-{name}.png'}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "docs" / "img")
