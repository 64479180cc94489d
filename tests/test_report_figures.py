"""Figures a scientist would show: the user's axes, replicates as mean and 95% interval, numbers as
people write them, captions that say what is drawn, a summary on top, and a report of any size."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from conftest import Project
from hypothesis import given, settings
from hypothesis import strategies as st

import groundhog_batch as hb

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'

# result = 10 a + b + a noise term that depends on the seed only; b = 0.1 ... 0.5 by linspace (0.30000000000000004)
GRID_SCRIPT = (
    HEAD
    + """\
def model(a, b, seed):
    if a > 3 and b > 0.45:
        raise ValueError(f"a={a} diverges")
    noise = [0.3, -0.1, 0.45, -0.2][seed]
    return {"y": 10 * a + b + noise * a, "flat": 1.0}
"""
)
GRID = """\
script: model.py
function: model
sweep:
  product:
    a: {geomspace: [1, 4, 3]}
    b: {linspace: [0.1, 0.5, 5]}
    seed: {range: [0, 4]}
"""
T975_DOF3 = 3.182446305284263  # Student's t, 0.975 quantile, 3 degrees of freedom (4 calls a point)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Project:
    project = Project(tmp_path_factory.mktemp("grid project"))
    project.write("model.py", GRID_SCRIPT)
    project.manifest(
        GRID + "report:\n  x: a\n  replicates: [seed]\n  best: {result.y: max}\n"
        "  labels: {a: 'a (m/s)', result.y: 'y (J)'}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    return project


def traces(figure, kind: str) -> list:
    return [t for t in figure.data if t.type == kind]


def mean_lines(figure) -> dict:
    return {
        t.name: t
        for t in figure.data
        if t.type == "scatter" and t.mode and "lines" in t.mode and t.fill is None
    }


def test_replicates_are_drawn_as_means_with_95_percent_intervals_that_pandas_computes_alike(grid):
    figure = hb.Run(grid.root / "run").figures()["results/model/result.y"]
    table = hb.Run(grid.root / "run").results()
    ok = table[table["status"] == "succeeded"]
    lines = mean_lines(figure)
    bands = {t.legendgroup: t for t in figure.data if t.fill == "toself"}
    for b, part in ok.groupby("b"):
        name = f"b = {round(b, 12):g}"
        stats = part.groupby("a")["result.y"].agg(["mean", "std", "count"])
        line = lines[name]
        assert list(line.x) == pytest.approx(list(stats.index))
        assert list(line.y) == pytest.approx(list(stats["mean"]))
        assert set(stats["count"]) == {4}
        half = T975_DOF3 * stats["std"] / 2  # sqrt(4)
        band = bands[name]
        n = len(stats)
        assert list(band.y[:n]) == pytest.approx(list(stats["mean"] + half))
        assert list(band.y[n:]) == pytest.approx(list((stats["mean"] - half)[::-1]))
    faint = [
        t
        for t in figure.data
        if t.mode == "markers" and t.marker.opacity and t.marker.opacity < 0.5
    ]
    assert sum(len(t.x) for t in faint) == len(ok), (
        "every single call is drawn faint behind the means"
    )


def test_the_caption_says_what_is_drawn_and_the_page_has_a_summary_on_top(grid):
    done = grid.cli("report", "run")
    assert done.returncode == 0, done.stderr
    html = (grid.root / "run" / "report.html").read_text()
    captions = re.findall(r'<p class="caption"><b>Figure (\d+)\.</b> ([^<]*)</p>', html)
    assert len(captions) == len(re.findall(r'<div class="plot"', html))
    first = captions[0][1]
    assert "mean of y (J) over seed (4 calls a point)" in first
    assert "95% confidence interval" in first and "shaded band" in first
    assert "Faint dots are the single calls" in first and "failed call" in first
    summary = html[: html.index("Parameters → results</h2>")]
    for row in ("what ran", "how long", "what failed", "best y (J) (max)", "script and data"):
        assert f"<dt>{row}</dt>" in summary
    assert "ValueError: a=" in summary and "diverges" in summary
    sha = json.loads((grid.root / "run" / "run.json").read_text())["provenance"]["scripts"][
        "model"
    ]["sha256"]
    assert sha[:16] in summary


def test_a_seed_is_aggregated_by_default_and_a_geomspace_axis_is_logarithmic(grid):
    grid.manifest(GRID, name="plain.yaml")
    assert grid.cli("submit", "plain.yaml", "--run-dir", "plain", "--reuse", "run").returncode == 1
    figure = hb.Run(grid.root / "plain").figures()["results/model/result.y"]
    assert figure.layout.xaxis.title.text == "b" and set(mean_lines(figure)) == {
        "a = 1",
        "a = 2",
        "a = 4",
    }
    assert "over seed" in figure.layout.title.text or all(
        len(t.x) == 5 for t in mean_lines(figure).values()
    )
    figure = hb.Run(grid.root / "plain").figures(x="a")["results/model/result.y"]
    assert figure.layout.xaxis.title.text == "a" and figure.layout.xaxis.type == "log"
    assert set(mean_lines(figure)) == {"b = 0.1", "b = 0.2", "b = 0.3", "b = 0.4", "b = 0.5"}
    assert list(figure.layout.xaxis.ticktext) == ["1", "2", "4"]


def test_numbers_are_written_as_people_write_them(grid):
    table = hb.Run(grid.root / "run").results()
    assert 0.30000000000000004 in set(table["b"]), "the table keeps the exact value linspace gave"
    figure = hb.Run(grid.root / "run").figures(x="b", color="a")["results/model/result.y"]
    assert list(mean_lines(figure)[next(iter(mean_lines(figure)))].x) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert set(mean_lines(figure)) == {
        "a (m/s) = 1",
        "a (m/s) = 2",
        "a (m/s) = 4",
    }  # not 3.999999999999999
    hover = " ".join(str(h) for t in figure.data for h in (t.hovertext or ()))
    assert "0.30000000000000004" not in hover and "3.999999" not in hover


def test_report_options_choose_axes_labels_and_log_scale(grid):
    done = grid.cli(
        "report",
        "run",
        "-o",
        "chosen.html",
        "--x",
        "b",
        "--color",
        "a",
        "--log-y",
        "--label",
        "b=b (1/m)",
        "--interval",
        "bars",
    )
    assert done.returncode == 0, done.stderr
    figure = hb.Run(grid.root / "run").figures(
        x="b", color="a", log_y=True, labels={"b": "b (1/m)"}, interval="bars"
    )["results/model/result.y"]
    assert figure.layout.xaxis.title.text == "b (1/m)" and figure.layout.yaxis.type == "log"
    assert all(t.error_y.array is not None for t in mean_lines(figure).values())
    html = (grid.root / "chosen.html").read_text()
    assert "geometric mean (for the log axis)" in html and "error bars" in html


def test_a_constant_result_comes_last(grid):
    keys = list(hb.Run(grid.root / "run").figures())
    assert keys.index("results/model/result.y") < keys.index("results/model/result.flat")


def test_report_o_follows_the_umask_as_collect_o_does(grid):
    old = os.umask(0o022)
    try:
        done = grid.cli("report", "run", "-o", "shared/report.html")
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((grid.root / "shared" / "report.html").stat().st_mode) == 0o644


def test_a_report_section_that_is_wrong_is_a_located_error_at_validate(grid):
    grid.manifest(GRID + "report:\n  colour: b\n  best: {result.y: smallest}\n", name="wrong.yaml")
    done = grid.cli("validate", "wrong.yaml")
    assert done.returncode == 2
    assert "report" in done.stderr and "colour" in done.stderr and "Traceback" not in done.stderr


def test_failed_calls_of_two_jobs_show_their_own_parameters_and_distinct_reds(project):
    project.write(
        "two.py",
        HEAD
        + """\
def fit(zeta, seed):
    if zeta > 1:
        raise RuntimeError("overdamped")
    return zeta * 2 + seed
def detect(data):
    if data[0] == 4:
        raise ValueError("missing readings")
    return sum(data)
""",
    )
    project.manifest("""\
jobs:
  - name: fit
    script: two.py
    function: fit
    sweep: {product: {zeta: [0.5, 1.2], seed: [0, 1]}}
  - name: detector
    script: two.py
    function: detect
    sweep: {chunks: {data: {values: [0, 1, 2, 3, 4, 5], size: 2}}}
""")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 1
    assert project.cli("report", "run").returncode == 0
    html = (project.root / "run" / "report.html").read_text()
    examples = re.findall(r"example: call (\d+)( \([^)]*\))?</summary>", html)
    assert examples and all("<NA>" not in params and "nan" not in params for _, params in examples)
    assert ("2", " (data=2)") in examples, (
        "the detector's example shows the detector's parameter only"
    )
    assert ("2", " (zeta=1.2, seed=0)") in examples
    durations = hb.Run(project.root / "run").figures()["time/durations"]
    failed_colours = {t.name: t.marker.color for t in durations.data if "failed" in t.name}
    assert len(failed_colours) == 2 and len(set(failed_colours.values())) == 2


def test_a_heatmap_keeps_its_failed_legend_clear_of_the_colour_bar_and_promises_no_dots(project):
    project.write(
        "grid.py",
        HEAD
        + """\
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
    assert project.cli("report", "run").returncode == 0
    figure = hb.Run(project.root / "run").figures()["results/f/result"]
    assert traces(figure, "heatmap")
    legend, bar = figure.layout.legend, figure.layout.coloraxis.colorbar
    assert legend.orientation == "h" and legend.y > 1 and bar.title.side == "right"
    html = (project.root / "run" / "report.html").read_text()
    caption = re.search(r"<b>Figure 1\.</b> ([^<]*)</p>", html).group(1)
    assert "blank cell" in caption and "Faint dots" not in caption and "means over" not in caption


def test_many_result_keys_give_a_capped_report_and_one_note(project):
    project.write(
        "wide.py",
        HEAD
        + """\
def wide(x):
    return {f"k{i:04d}": (x * i if i % 7 else 1.0) for i in range(1000)}
""",
    )
    project.manifest("script: wide.py\nfunction: wide\nsweep: {product: {x: [1, 2, 3]}}\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    done = project.cli("report", "run")
    assert done.returncode == 0, done.stderr
    html = (project.root / "run" / "report.html").read_text()
    result_plots = re.findall(r'data-key="results/', html)
    assert len(result_plots) == 12
    assert "988 of 1,000 numeric results of job wide have no figure here" in html
    assert done.stderr.count("have no figure here") == 1
    assert "result.k0000" not in re.findall(r'data-key="(results/[^"]+)"', html), (
        "a constant comes last"
    )


def test_a_report_choice_naming_no_parameter_is_a_warning_at_validate(grid):
    grid.manifest(
        GRID + "report:\n  x: bb\n  figures:\n    - {y: result.y, replicates: [sead]}\n",
        name="typo.yaml",
    )
    done = grid.cli("validate", "typo.yaml")
    assert done.returncode == 0
    assert "warning: report.x: 'bb' is not a swept parameter of any job (a, b, seed)" in done.stderr
    assert "warning: report.figures.0.replicates: 'sead' is not a swept parameter" in done.stderr


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 0.1, 1 / 3, 2.5e-7, 1e300, float("nan"), float("inf")]),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(min_value=1, max_value=5),
)
def test_a_column_tidied_once_per_distinct_value_is_each_value_tidied(values, repeats):
    """A parameter's column holds a few values a million times: tidying each distinct value once gives what
    tidying every value gives, bit for bit (NaN, infinities, and the sign of zero included)."""
    import numpy as np
    import pandas as pd

    from groundhog_batch.report.numbers import tidy, tidy_column

    column = pd.Series(values * repeats, name="x", index=range(5, 5 + len(values) * repeats))
    tidied = tidy_column(column)
    expected = column.map(tidy)
    assert tidied.dtype == expected.dtype and list(tidied.index) == list(expected.index)
    assert tidied.name == "x"
    got, want = tidied.to_numpy(), expected.to_numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    kept = ~np.isnan(want)
    assert np.array_equal(got[kept].view(np.int64), want[kept].view(np.int64))
