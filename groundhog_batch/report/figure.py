"""One report figure: a Plotly figure with a stable key, the section it belongs to, and notes on what it leaves out."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

FAILED_COLOUR = "#d62728"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
HOVER_CHARS = 160


@dataclass
class ReportFigure:
    key: str  # e.g. "results/model/result.loss"
    section: str  # results | time
    figure: Any  # plotly.graph_objects.Figure
    notes: list[str] = field(default_factory=list)  # sampling and binning, said under the figure


def hover_text(text: Any) -> str:
    """User text shown in a hover label: Plotly renders some HTML there, so it is escaped and kept short."""
    value = str(text)
    if len(value) > HOVER_CHARS:
        value = value[: HOVER_CHARS - 1] + "…"
    return html.escape(value)


def base_layout(title: str, height: int) -> dict:
    return {"title": {"text": hover_text(title), "x": 0.01, "xanchor": "left", "font": {"size": 15}},
            "template": "plotly_white", "height": height, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
            "legend": {"orientation": "v"}, "hovermode": "closest"}
