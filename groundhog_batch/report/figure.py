"""One report figure: a Plotly figure with a stable key, the section it belongs to, and notes on what it leaves out."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

FAILED_COLOUR = "#d62728"
# failed calls of each job in a figure that shows several jobs: reds that tell the jobs apart
FAILED_COLOURS = ("#d62728", "#8b0000", "#ff7f7f", "#b5485d", "#e8590c", "#5c1a1b")
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
HOVER_CHARS = 160


@dataclass
class ReportFigure:
    key: str  # e.g. "results/model/result.loss"
    section: str  # results | time
    figure: Any  # plotly.graph_objects.Figure
    notes: list[str] = field(default_factory=list)  # said under the figure, after the caption
    caption: str = ""  # what the figure shows, said from what was drawn


def hover_text(text: Any) -> str:
    """User text shown in a hover label: Plotly renders some HTML there, so it is escaped and kept short."""
    value = str(text)
    if len(value) > HOVER_CHARS:
        value = value[: HOVER_CHARS - 1] + "…"
    return html.escape(value)


TEMPLATE = "plotly_white"  # set once by the page's script (and by ``figures()`` for a notebook): setting it on
# each figure in Python costs a deep copy of the whole template per figure


def base_layout(title: str, height: int) -> dict:
    return {
        "title": {"text": hover_text(title), "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "v"},
        "hovermode": "closest",
    }
