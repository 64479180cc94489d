"""Parameters -> results: each numeric result of a job against the parameters its sweep varies.

The layout follows how many parameters vary:

- none: the result of each call, by call number;
- the x axis is the numeric parameter with the most values (else the first one);
- the next parameter, the one with the fewest values, colours the figure: one line per value
  when it has at most ``MAX_LINES`` of them, otherwise a heatmap (x against it, colour = mean result);
- a third parameter with at most ``MAX_FACETS`` values splits the figure into panels;
- parameters left over are folded in: lines are means over them and each call is a faint point.

Failed calls are a red x where they fall in parameter space: on the floor of a line panel
(hover shows the error) or on their heatmap cell. Large runs stay small: at most ``MAX_POINTS``
single points and ``MAX_FAILED`` failure marks per figure (a random sample, said under the
figure), and a numeric axis with more than ``MAX_AXIS_VALUES`` values is binned.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import JobView
from .figure import FAILED_COLOUR, PALETTE, ReportFigure, base_layout, hover_text

MAX_LINES = 8
MAX_FACETS = 6
FACET_COLUMNS = 3
MAX_POINTS = 3000
MAX_FAILED = 1000
MAX_AXIS_VALUES = 200
AXIS_BINS = 100


@dataclass(frozen=True)
class Roles:
    """Which varying parameter goes where in a job's figures."""

    x: str | None
    colour: str | None
    facet: str | None
    folded: tuple[str, ...]
    heatmap: bool


def choose_roles(job: JobView) -> Roles:
    varying = list(job.varying)
    if not varying:
        return Roles(None, None, None, (), False)
    numeric = [p for p in varying if job.is_numeric(p)]
    x = max(numeric or varying, key=job.n_values)  # first of the largest on ties
    others = sorted((p for p in varying if p != x), key=job.n_values)
    colour = others.pop(0) if others else None
    facet = next((p for p in others if job.n_values(p) <= MAX_FACETS), None)
    folded = tuple(p for p in others if p != facet)
    heatmap = colour is not None and job.n_values(colour) > MAX_LINES
    return Roles(x, colour, facet, folded, heatmap)


def result_figures(job: JobView) -> list[ReportFigure]:
    roles = choose_roles(job)
    return [result_figure(job, result, roles) for result in job.results]


def _ordered_values(column, numeric: bool) -> list:
    values = list(dict.fromkeys(column.dropna()))
    return sorted(values) if numeric else values


def _binned(frame, column: str, notes: list[str], name: str):
    """``frame[column]``, or the centres of ``AXIS_BINS`` equal bins when it has too many values."""
    import numpy as np

    values = frame[column]
    if values.nunique() <= MAX_AXIS_VALUES or not _is_number(values):
        return values
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high, AXIS_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    index = np.clip(np.searchsorted(edges, values.to_numpy(dtype=float), side="right") - 1, 0, AXIS_BINS - 1)
    notes.append(f"{name} has {values.nunique():,} values: binned into {AXIS_BINS} equal bins")
    import pandas as pd

    return pd.Series(centres[index], index=frame.index)


def _is_number(column) -> bool:
    from .data import is_numeric

    return is_numeric(column)


def _sample(frame, limit: int, what: str, notes: list[str]):
    if len(frame) <= limit:
        return frame
    notes.append(f"{what}: a random {limit:,} of {len(frame):,} shown")
    return frame.sample(limit, random_state=0).sort_index()


def _call_hover(rows, params: list[str], tail: list[str]) -> list[str]:
    lines = []
    for record, extra in zip(rows[["call", *params]].itertuples(index=False), tail, strict=True):
        shown = [f"call {record[0]}"] + [f"{hover_text(p)}={hover_text(v)}" for p, v in zip(params, record[1:], strict=True)]
        lines.append("<br>".join([*shown, extra]))
    return lines


def result_figure(job: JobView, result: str, roles: Roles | None = None) -> ReportFigure:
    """One figure: ``result`` of ``job`` against its varying parameters."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    roles = roles or choose_roles(job)
    notes: list[str] = []
    frame = job.frame.copy()
    frame["__x"] = _binned(frame, roles.x, notes, roles.x) if roles.x else frame["call"]
    if roles.heatmap:
        frame["__y"] = _binned(frame, roles.colour, notes, roles.colour)
    ok = frame[(frame["status"] == "succeeded") & frame[result].notna()]
    failed = frame[frame["status"] == "failed"]
    facets = _ordered_values(frame[roles.facet], job.is_numeric(roles.facet)) if roles.facet else [None]
    cols = min(len(facets), FACET_COLUMNS)
    rows = -(-len(facets) // cols)
    titles = [f"{roles.facet} = {hover_text(v)}" for v in facets] if roles.facet else None
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True, shared_xaxes="all",
                        horizontal_spacing=0.04, vertical_spacing=0.12 if rows > 1 else 0.0)
    x_numeric = roles.x is None or job.is_numeric(roles.x)
    colours = _ordered_values(frame[roles.colour], job.is_numeric(roles.colour)) if roles.colour else [None]
    points = _sample(ok, MAX_POINTS, "single calls", notes) if roles.folded or _repeats(ok, roles) else ok.iloc[0:0]
    failed_shown = _sample(failed, MAX_FAILED, "failed calls", notes)
    floor = _floor(ok[result])
    shown_params = list(job.varying)
    for i, facet_value in enumerate(facets):
        row, col = i // cols + 1, i % cols + 1
        first = i == 0

        def pick(part, facet_value=facet_value):
            return part if roles.facet is None else part[part[roles.facet] == facet_value]

        if roles.heatmap:
            _heatmap(fig, go, pick(ok), result, row, col)
        else:
            for c, colour_value in enumerate(colours):
                colour = PALETTE[c % len(PALETTE)]
                group = pick(ok) if roles.colour is None else pick(ok)[pick(ok)[roles.colour] == colour_value]
                name = result if roles.colour is None else f"{roles.colour} = {hover_text(colour_value)}"
                _mean_line(fig, go, group, result, name, colour, first, row, col, x_numeric)
                single = pick(points) if roles.colour is None else pick(points)[pick(points)[roles.colour] == colour_value]
                if len(single):
                    fig.add_trace(go.Scatter(
                        x=single["__x"].to_numpy(), y=single[result].to_numpy(dtype=float), mode="markers",
                        marker={"color": colour, "size": 5, "opacity": 0.35}, legendgroup=name, showlegend=False,
                        hovertext=_call_hover(single, shown_params, [f"{result}={v:.6g}" for v in single[result]]),
                        hoverinfo="text", name=name), row=row, col=col)
        fail_part = pick(failed_shown)
        if len(fail_part):
            y = fail_part["__y"].to_numpy() if roles.heatmap else [floor] * len(fail_part)
            fig.add_trace(go.Scatter(
                x=fail_part["__x"].to_numpy(), y=y, mode="markers", name=f"failed ({len(failed):,})",
                legendgroup="failed", showlegend=True,
                marker={"symbol": "x", "color": FAILED_COLOUR, "size": 10, "line": {"width": 1, "color": FAILED_COLOUR}},
                hovertext=_call_hover(fail_part, shown_params,
                                      [f"failed: {hover_text(str(e).splitlines()[0] if e else '')}" for e in fail_part["error"]]),
                hoverinfo="text"), row=row, col=col)
    _dedupe_legend(fig)
    title = f"{job.name}: {result}"
    if roles.x:
        title += f" against {roles.x}"
        if roles.colour:
            title += f", {'heatmap over' if roles.heatmap else 'one line per'} {roles.colour}"
        if roles.facet:
            title += f", a panel per {roles.facet}"
    else:
        title += " per call (no parameter varies)"
    if roles.folded:
        notes.append(f"lines are means over {', '.join(roles.folded)}; faint points are single calls")
    layout = base_layout(title, 90 + 300 * rows)
    if roles.heatmap:
        layout["coloraxis"] = {"colorscale": "Viridis", "colorbar": {"title": {"text": hover_text(result)}}}
    fig.update_layout(**layout)
    fig.update_xaxes(title_text=hover_text(roles.x or "call"), row=rows)
    fig.update_yaxes(title_text=hover_text(roles.colour if roles.heatmap else result), col=1)
    if x_numeric and pd_is_integer(frame["__x"]) and frame["__x"].nunique() <= 20:
        # a few integer values (seeds, sizes) get a tick each, and no 0.5 ticks between them
        fig.update_xaxes(tickmode="array", tickvals=sorted(frame["__x"].dropna().unique().tolist()))
    if not x_numeric:
        order = _ordered_values(frame["__x"], False)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    if roles.heatmap and not job.is_numeric(roles.colour):
        fig.update_yaxes(type="category")
    return ReportFigure(f"results/{job.name}/{result}", "results", fig, notes)


def _repeats(ok, roles: Roles) -> bool:
    keys = [k for k in ("__x", roles.colour, roles.facet) if k]
    return bool(len(ok)) and bool(ok.duplicated(subset=keys).any())


def _floor(values) -> float:
    if not len(values):
        return 0.0
    low, high = float(values.min()), float(values.max())
    return low - 0.06 * ((high - low) or abs(low) or 1.0)


def _mean_line(fig, go, group, result: str, name: str, colour: str, first: bool, row: int, col: int, x_numeric: bool) -> None:
    if not len(group):
        return
    stats = group.groupby("__x", sort=x_numeric)[result].agg(["mean", "min", "max", "count"]).reset_index()
    several = bool((stats["count"] > 1).any())
    hover = [f"{hover_text(x)}<br>{'mean ' if several else ''}{hover_text(result)}={m:.6g}"
             + (f" (min {lo:.6g}, max {hi:.6g}, {n:,} calls)" if several else "")
             for x, m, lo, hi, n in stats[["__x", "mean", "min", "max", "count"]].itertuples(index=False)]
    fig.add_trace(go.Scatter(x=stats["__x"].to_numpy(), y=stats["mean"].to_numpy(dtype=float), mode="lines+markers",
                             name=name, legendgroup=name, showlegend=first, line={"color": colour, "width": 2},
                             marker={"color": colour, "size": 6}, hovertext=hover, hoverinfo="text"), row=row, col=col)


def pd_is_integer(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(column))


def _heatmap(fig, go, part, result: str, row: int, col: int) -> None:
    if not len(part):
        return
    grid = part.groupby(["__y", "__x"])[result].agg(["mean", "count"])
    means = grid["mean"].astype(float).unstack()
    counts = grid["count"].astype(float).unstack()  # a cell no call filled is NaN
    hover = [[f"{hover_text(x)}, {hover_text(y)}: mean {m:.6g} over {int(n)} calls" if n == n and m == m else ""
              for x, m, n in zip(means.columns, means.loc[y], counts.loc[y], strict=True)] for y in means.index]
    fig.add_trace(go.Heatmap(z=means.to_numpy(dtype=float), x=list(means.columns), y=list(means.index),
                             coloraxis="coloraxis", hovertext=hover, hoverinfo="text", name=result), row=row, col=col)


def _dedupe_legend(fig) -> None:
    """One legend entry per name across panels."""
    seen: set[str] = set()
    for trace in fig.data:
        if trace.showlegend is False:
            continue
        if trace.name in seen:
            trace.showlegend = False
        seen.add(trace.name)
