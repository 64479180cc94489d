"""The HTML report: one self-contained file, through the real CLI, and opened in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

SWEEP_SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
def model(a, b):
    if a == 1 and b == "y":
        raise ValueError(f"a={a} diverges")
    return {"loss": 1.0 / (a + 1), "size": a * 10}
"""

SWEEP = """\
script: model.py
function: model
sweep:
  product:
    a: [0, 1, 2, 3]
    b: [x, y]
"""


@pytest.fixture
def finished_run(project):
    project.write("model.py", SWEEP_SCRIPT)
    project.manifest(SWEEP)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    return project


def plot_divs(html: str) -> list[str]:
    return re.findall(r'<div class="plot" id="fig-\d+" data-key="([^"]+)"', html)


def test_report_writes_one_self_contained_file_with_results_failures_time_and_provenance(
    finished_run,
):
    done = finished_run.cli("report", "run", "-o", "out/report.html")
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stderr and "MB" in done.stderr
    html = (finished_run.root / "out" / "report.html").read_text()
    keys = plot_divs(html)
    assert "results/model/result.loss" in keys and "results/model/result.size" in keys
    assert "time/durations" in keys and "time/timeline" in keys
    assert "ValueError" in html and "a=1 diverges" in html  # the failure group, with its first line
    assert "Provenance" in html and "model.py" in html
    assert not re.search(r"<script[^>]+src=", html), (
        "the report must not load anything from the network"
    )
    assert "Traceback" not in done.stderr


def test_report_defaults_to_the_run_directory_and_collect_and_submit_take_report(finished_run):
    assert finished_run.cli("report", "run").returncode == 0
    assert (finished_run.root / "run" / "report.html").is_file()
    (finished_run.root / "run" / "report.html").unlink()
    done = finished_run.cli("collect", "run", "--report")
    assert done.returncode == 0, done.stderr
    assert (finished_run.root / "run" / "report.html").is_file()
    again = finished_run.cli("submit", "sweep.yaml", "--run-dir", "run2", "--report")
    assert again.returncode == 1 and "report:" in again.stderr
    assert (finished_run.root / "run2" / "report.html").is_file()


def test_report_of_a_run_not_finished_shows_what_finished_and_says_how_to_finish(finished_run):
    done = finished_run.cli(
        "submit",
        "sweep.yaml",
        "--run-dir",
        "half",
        "--max-failures",
        "1",
        "--set",
        "max_parallel=1",
        "--set",
        "calls_per_task=1",
    )
    assert done.returncode == 1
    shown = finished_run.cli("report", "half")
    assert shown.returncode == 0, shown.stderr
    html = (finished_run.root / "half" / "report.html").read_text()
    assert "hog-batch resume" in html


def test_the_figures_are_objects_for_a_notebook(finished_run):
    import groundhog_batch as hb

    figures = hb.Run(finished_run.root / "run").figures()
    assert {"results/model/result.loss", "time/durations"} <= set(figures)
    assert type(figures["time/durations"]).__name__ == "Figure"


def test_report_of_a_missing_run_is_a_clear_error(project):
    done = project.cli("report", "nowhere")
    assert done.returncode == 2 and "Traceback" not in done.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=10000",
]


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium): the browser "
    "check of the report is skipped",
)
def test_the_report_renders_every_plot_offline_in_a_real_browser_without_console_errors(
    finished_run, tmp_path
):
    assert finished_run.cli("report", "run").returncode == 0
    page = (finished_run.root / "run" / "report.html").as_uri()
    flags = [*BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--enable-logging=stderr", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'data-report-ready="1"' in dom.stdout, dom.stderr[-2000:]
    n_plots = len(plot_divs((finished_run.root / "run" / "report.html").read_text()))
    assert f'data-plots-rendered="{n_plots}"' in dom.stdout
    assert 'data-report-errors="0"' in dom.stdout
    assert "Uncaught" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1200,2200", f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_a_failed_call_is_marked_where_it_falls(finished_run):
    import groundhog_batch as hb

    figure = hb.Run(finished_run.root / "run").figures()["results/model/result.loss"]
    marks = [trace for trace in figure.data if (trace.name or "").startswith("failed")]
    assert marks and list(marks[0].x) == [1] and "a=1 diverges" in str(marks[0].hovertext)


def test_a_heatmap_cell_left_empty_by_a_failed_call_is_drawn_empty(project):
    project.write(
        "grid.py",
        """\
def f(a, b):
    if a == 2 and b == 5:
        raise ValueError("no value here")
    return a * b
""",
    )
    project.manifest(
        "script: grid.py\nfunction: f\nsweep:\n  product:\n    a: {range: [0, 12]}\n    b: {range: [0, 30]}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    done = project.cli("report", "run")
    assert done.returncode == 0, done.stderr
    import groundhog_batch as hb

    heatmaps = [
        t
        for f in hb.Run(project.root / "run").figures().values()
        for t in f.data
        if t.type == "heatmap"
    ]
    assert heatmaps, "two parameters with many values are drawn as a heatmap"
