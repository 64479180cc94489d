"""results -> figures -> one self-contained HTML file.

``figures(run)`` gives the Plotly figures (for a notebook); ``write_report(run, path)``
writes them with the failures and the provenance into one HTML file that opens
offline. Both read the run without its lock, so they work while it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import HogError
from ..run_paths import write_atomic
from .data import ReportData, load
from .failures import failure_groups
from .figure import ReportFigure
from .page import SIZE_MARK, render_page
from .provenance import provenance_items
from .sweep_plots import result_figures
from .timing import duration_figure, timeline_figure


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
        raise HogError(message="the report needs Plotly, which is not installed here",
                       hint="pip install plotly (hog-batch lists it as a dependency: reinstall hog-batch)") from None


def report_figures(data: ReportData) -> tuple[dict[str, list[ReportFigure]], list[ReportFigure]]:
    """Figures per job (parameters -> results), and the time figures."""
    results = {job.name: result_figures(job) for job in data.jobs}
    timing = [f for f in (duration_figure(data), timeline_figure(data)) if f is not None]
    return results, timing


def figures(run) -> dict[str, object]:
    """The report's Plotly figures by key (``results/<job>/<result>``, ``time/durations``, ``time/timeline``)."""
    _require_plotly()
    results, timing = report_figures(load(run))
    return {f.key: f.figure for f in [*(f for job in results.values() for f in job), *timing]}


def write_report(run, path: str | Path) -> ReportWritten:
    """Write the HTML report of ``run`` to ``path`` (write, then rename)."""
    _require_plotly()
    started = time.perf_counter()
    data = load(run)
    results, timing = report_figures(data)
    params = sorted({p for job in data.jobs for p in job.params}, key=list(data.frame.columns).index)
    page = render_page(data, results, timing, failure_groups(data.frame, params), provenance_items(data), [])
    size = len(page.replace(SIZE_MARK, "").encode("utf-8"))
    payload = page.replace(SIZE_MARK, f"{size / 1e6:.1f} MB").encode("utf-8")
    target = Path(path).absolute()
    write_atomic(target, payload)
    notes = tuple(n for f in [*(f for job in results.values() for f in job), *timing] for n in f.notes)
    return ReportWritten(target, len(payload), time.perf_counter() - started, data.n_calls, data.n_finished, notes)


__all__ = ["ReportFigure", "ReportWritten", "figures", "write_report"]
