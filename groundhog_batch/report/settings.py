"""What the report draws where: the manifest's ``report:`` section and ``hog-batch report`` options.

Both take the same keys. The manifest's section is read from the run's own
snapshot (with the run's ``--set`` overrides), then the command's options
replace its keys one by one. A key at the top applies to every figure; an
entry of ``figures:`` applies to the figures it selects (``job`` and/or ``y``,
a result column) and wins over the top.

    report:
      x: omega0                       # the x axis
      color: zeta                     # one line (or heatmap row) per value
      facet: model                    # one panel per value
      replicates: [seed]              # aggregated: mean with a 95% interval, single calls faint behind
      interval: band                  # band (default on a numeric x) | bars
      log_x: true                     # default: true for a geomspace parameter
      log_y: false
      labels: {omega0: "ω₀ (rad/s)", result.gamma_fit: "γ (1/s)"}
      best: {result.loss: min}        # the summary names the best calls
      results: [result.gamma_fit]     # which results get a figure, in this order (default: all, most informative first)
      figures:
        - {y: result.loss, log_y: true}
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

FIGURE_KEYS = ("x", "color", "facet", "replicates", "interval", "log_x", "log_y")
KEYS = (*FIGURE_KEYS, "labels", "best", "results", "figures")
INTERVALS = ("band", "bars")
BEST = ("min", "max")


@dataclass(frozen=True)
class FigureChoice:
    """What one figure is asked to show; None leaves the choice to the defaults."""

    x: str | None = None
    color: str | None = None
    facet: str | None = None
    replicates: tuple[str, ...] | None = None
    interval: str | None = None
    log_x: bool | None = None
    log_y: bool | None = None


@dataclass(frozen=True)
class ReportSettings:
    top: FigureChoice = field(default_factory=FigureChoice)
    labels: dict[str, str] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    results: tuple[str, ...] = ()
    figures: tuple[tuple[str | None, str | None, FigureChoice], ...] = ()  # (job, y, choice)

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def choice(self, job: str, result: str) -> FigureChoice:
        """The top choices, with those of every ``figures:`` entry that selects this figure on top."""
        chosen = self.top
        for entry_job, entry_y, entry in self.figures:
            if entry_job in (None, job) and entry_y in (None, result):
                chosen = _over(chosen, entry)
        return chosen

    def with_options(self, options: dict[str, Any]) -> ReportSettings:
        """These settings with the command's options (same keys) on top."""
        return _over_settings(
            self, from_mapping({k: v for k, v in options.items() if v not in (None, (), [], {})})
        )

    @property
    def is_empty(self) -> bool:
        return self == ReportSettings()


def _over(low: FigureChoice, high: FigureChoice) -> FigureChoice:
    return replace(
        low,
        **{
            f.name: getattr(high, f.name)
            for f in fields(FigureChoice)
            if getattr(high, f.name) is not None
        },
    )


def _over_settings(low: ReportSettings, high: ReportSettings) -> ReportSettings:
    return ReportSettings(
        top=_over(low.top, high.top),
        labels={**low.labels, **high.labels},
        best={**low.best, **high.best},
        results=high.results or low.results,
        figures=(*low.figures, *high.figures),
    )


def _choice(data: dict) -> FigureChoice:
    replicates = data.get("replicates")
    if isinstance(replicates, str):
        replicates = [r for r in replicates.split(",") if r]
    return FigureChoice(
        x=_text(data.get("x")),
        color=_text(data.get("color")),
        facet=_text(data.get("facet")),
        replicates=tuple(str(r) for r in replicates)
        if isinstance(replicates, list | tuple)
        else None,
        interval=data.get("interval") if data.get("interval") in INTERVALS else None,
        log_x=data.get("log_x") if isinstance(data.get("log_x"), bool) else None,
        log_y=data.get("log_y") if isinstance(data.get("log_y"), bool) else None,
    )


def _text(value) -> str | None:
    return str(value) if value not in (None, "") else None


def from_mapping(data: Any) -> ReportSettings:
    """A ``report:`` section (already checked by the schema at validate); anything unusable is left out."""
    if not isinstance(data, dict):
        return ReportSettings()
    labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
    best = data.get("best") if isinstance(data.get("best"), dict) else {}
    results = data.get("results")
    if isinstance(results, str):
        results = [r for r in results.split(",") if r]
    figures = []
    for entry in data.get("figures") or []:
        if isinstance(entry, dict):
            figures.append((_text(entry.get("job")), _text(entry.get("y")), _choice(entry)))
    return ReportSettings(
        top=_choice(data),
        labels={str(k): str(v) for k, v in labels.items()},
        best={str(k): str(v) for k, v in best.items() if v in BEST},
        results=tuple(str(r) for r in results) if isinstance(results, list | tuple) else (),
        figures=tuple(figures),
    )


def from_manifest_data(data: Any) -> ReportSettings:
    return from_mapping(data.get("report") if isinstance(data, dict) else None)
