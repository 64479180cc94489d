"""results -> figures -> one self-contained HTML file.

``figures(run)`` gives the Plotly figures (for a notebook); ``write_report(run, path)``
writes them with the failures and the provenance into one HTML file that opens
offline. Both read the run without its lock, so they work while it runs.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import HogError
from ..run_notes import run_notes_rows
from ..run_paths import write_atomic
from .data import ReportData, load
from .failures import failure_groups
from .figure import TEMPLATE, ReportFigure
from .files import files_section
from .page import SIZE_MARK, render_page
from .provenance import provenance_items
from .summary import SummaryRows, summary_rows
from .sweep_plots import MAX_FIGURES_PER_JOB, MAX_RESULT_FIGURES, ranked_results, result_figures
from .timing import duration_figure, timeline_figure

SUMMARY_HOOKS: list[SummaryRows] = [
    run_notes_rows
]  # more rows for the summary at the top (label, text), from other parts


@dataclass(frozen=True)
class ReportWritten:
    path: Path
    size_bytes: int
    build_s: float
    calls: int
    finished: int
    notes: tuple[str, ...]

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def _require_plotly() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise HogError(
            message="the report needs Plotly, which is not installed here",
            hint="pip install plotly (hog-batch lists it as a dependency: reinstall hog-batch)",
        ) from None


@contextmanager
def _no_default_template():
    """Figures made without Plotly's default template: each figure would carry (and deep-copy) a copy of it;
    the page's script sets one template for all of them."""
    import plotly.io as pio

    default = pio.templates.default
    pio.templates.default = None
    try:
        yield
    finally:
        pio.templates.default = default


def report_figures(
    data: ReportData,
) -> tuple[dict[str, list[ReportFigure]], list[ReportFigure], dict[str, str]]:
    """Figures per job (parameters -> results), the time figures, and what each job's figures leave out.

    A job draws at most ``MAX_FIGURES_PER_JOB`` results and the run at most
    ``MAX_RESULT_FIGURES``, most informative first: a function returning a
    dict of 1,000 numbers gives a report as quick to build and open as any.
    """
    with _no_default_template():
        return _report_figures(data)


def _report_figures(
    data: ReportData,
) -> tuple[dict[str, list[ReportFigure]], list[ReportFigure], dict[str, str]]:
    results: dict[str, list[ReportFigure]] = {}
    left_out: dict[str, str] = {}
    room = MAX_RESULT_FIGURES
    for job in data.jobs:
        limit = min(MAX_FIGURES_PER_JOB, room)
        others = frozenset(p for other in data.jobs if other is not job for p in other.params)
        ranked = ranked_results(job, data.settings)
        results[job.name] = result_figures(job, data.settings, limit, others, ranked)
        room -= len(results[job.name])
        missing = ranked[len(results[job.name]) :]
        if missing:
            shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
            left_out[job.name] = (
                f"{len(missing):,} of {len(ranked):,} numeric results of job {job.name} have no figure here ({shown}): "
                f"the report draws at most {MAX_FIGURES_PER_JOB} per job and {MAX_RESULT_FIGURES} in all, those that vary "
                "across calls first. Every value is in the results table; choose with report: {results: [...]} in the "
                "manifest or `hog-batch report --results`."
            )
    timing = [f for f in (duration_figure(data), timeline_figure(data)) if f is not None]
    return results, timing, left_out


def figures(run, options: dict | None = None) -> dict[str, object]:
    """The report's Plotly figures by key (``results/<job>/<result>``, ``time/durations``, ``time/timeline``)."""
    _require_plotly()
    results, timing, _ = report_figures(load(run, options))
    found = {f.key: f.figure for f in [*(f for job in results.values() for f in job), *timing]}
    for figure in found.values():
        figure.update_layout(template=TEMPLATE)  # the page sets it once in its script
    return found


def write_report(run, path: str | Path, options: dict | None = None) -> ReportWritten:
    """Write the HTML report of ``run`` to ``path`` (write, then rename); ``options`` as ``hog-batch report`` takes
    them (x, color, facet, replicates, log_x, log_y, labels, best, results), over the manifest's ``report:``.

    The file follows the umask, as any file the user writes: a report is meant to be shared.
    """
    _require_plotly()
    started = time.perf_counter()
    data = load(run, options)
    results, timing, left_out = report_figures(data)
    groups = failure_groups(
        data.frame, {job.name: job.params for job in data.jobs}, data.failure_groups
    )
    page = render_page(
        data,
        results,
        timing,
        groups,
        provenance_items(data),
        [],
        summary_rows(data, groups, SUMMARY_HOOKS),
        left_out,
        files_section(data, Path(path).absolute().parent),
    )
    size = len(page.replace(SIZE_MARK, "").encode("utf-8"))
    payload = page.replace(SIZE_MARK, f"{size / 1e6:.1f} MB").encode("utf-8")
    target = Path(path).absolute()
    write_atomic(target, payload, shared=True)
    notes = tuple(
        dict.fromkeys(
            [
                *left_out.values(),
                *(
                    n
                    for f in [*(f for job in results.values() for f in job), *timing]
                    for n in f.notes
                ),
            ]
        )
    )
    return ReportWritten(
        target, len(payload), time.perf_counter() - started, data.n_calls, data.n_finished, notes
    )


__all__ = ["ReportFigure", "ReportWritten", "figures", "write_report"]
