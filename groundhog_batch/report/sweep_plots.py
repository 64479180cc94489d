"""Parameters -> results: each numeric result of a job against the parameters its sweep varies.

Where each parameter goes is decided in :mod:`.roles` (the user's ``report:``
choices first). A point on a line is the mean over the aggregated parameters
(replicates) with its 95% confidence interval (Student's t) as a band, or as
error bars on a categorical axis, and the single calls are faint dots behind
it. A colour parameter with many values gives a heatmap of the means instead.

Failed calls are a red x where they fall in parameter space: on the floor of a
line panel (hover shows the error) or on their heatmap cell. Large runs stay
small: at most ``MAX_POINTS`` single calls and ``MAX_FAILED`` failure marks per
figure (a random sample, said in the caption), and a numeric axis with more
than ``MAX_AXIS_VALUES`` values is binned.

Every figure has a caption built from what was drawn, so it never promises
what the figure lacks. A job with many results gets at most
``MAX_FIGURES_PER_JOB`` figures: the results the user names first, then those
that vary across calls, in the order the function returned them.
"""

from __future__ import annotations

from .data import JobView
from .figure import FAILED_COLOUR, PALETTE, ReportFigure, base_layout, hover_text
from .numbers import number_text, short, t975, tick_text, tidy_column
from .roles import MAX_PANELS, Roles, choose_roles
from .settings import ReportSettings

FACET_COLUMNS = 3
MAX_POINTS = 3000
MAX_FAILED = 1000
MAX_AXIS_VALUES = 200
AXIS_BINS = 100
MAX_FIGURES_PER_JOB = 12
MAX_RESULT_FIGURES = 36  # over all jobs: the report stays quick to build and to open
BAND_ALPHA = 0.18
DODGE = 0.012  # with error bars, lines are nudged apart by this fraction of the x axis
ALL_CALLS = "all calls"


def ranked_results(job: JobView, settings: ReportSettings) -> list[str]:
    """The job's numeric results, most informative first: those the user names, then those that vary
    across its calls, then those present in fewer calls, then constants (each in table order)."""
    named = [r for r in settings.results if r in job.results]
    rest = [r for r in job.results if r not in named]
    if not rest:
        return named
    import numpy as np

    done = job.frame.loc[job.frame["status"] == "succeeded", rest].to_numpy(
        dtype=float, na_value=np.nan
    )
    missing = np.isnan(
        done
    )  # one pass over a wide table (a dict of 5,000 numbers), not one per column
    filled = (
        np.where(missing, np.inf, done).min(axis=0),
        np.where(missing, -np.inf, done).max(axis=0),
    )
    varies = filled[1] > filled[0]
    complete = ~missing.any(axis=0)
    tier = {r: 2 if not varies[i] else 0 if complete[i] else 1 for i, r in enumerate(rest)}
    return named + sorted(rest, key=tier.__getitem__)  # sorted is stable: table order within a tier


def result_figures(
    job: JobView,
    settings: ReportSettings | None = None,
    limit: int = MAX_FIGURES_PER_JOB,
    elsewhere: frozenset[str] = frozenset(),
    ranked: list[str] | None = None,
) -> list[ReportFigure]:
    """``elsewhere``: the parameters of the run's other jobs (choices naming them are for those jobs)."""
    settings = settings or ReportSettings()
    chosen = (ranked or ranked_results(job, settings))[: max(limit, 0)]
    return [
        result_figure(
            job, result, settings, choose_roles(job, settings.choice(job.name, result), elsewhere)
        )
        for result in chosen
    ]


def _ordered_values(column, numeric: bool) -> list:
    values = list(dict.fromkeys(column.dropna()))
    return sorted(values) if numeric else values


def _binned(frame, column: str, said: list[str], name: str):
    """``frame[column]``, or the centres of ``AXIS_BINS`` equal bins when it has too many values."""
    import numpy as np
    import pandas as pd

    from .data import is_numeric

    values = frame[column]
    if values.nunique() <= MAX_AXIS_VALUES or not is_numeric(values):
        return tidy_column(values)
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high, AXIS_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    index = np.clip(
        np.searchsorted(edges, values.to_numpy(dtype=float), side="right") - 1, 0, AXIS_BINS - 1
    )
    said.append(f"{name} has {values.nunique():,} values, binned into {AXIS_BINS} equal bins")
    return tidy_column(pd.Series(centres[index], index=frame.index))


def _sample(frame, limit: int):
    if len(frame) <= limit:
        return frame, False
    return frame.sample(limit, random_state=0).sort_index(), True


def _call_hover(rows, params: list[str], labels, tail: list[str]) -> list[str]:
    lines = []
    for record, extra in zip(rows[["call", *params]].itertuples(index=False), tail, strict=True):
        shown = [f"call {record[0]}"] + [
            f"{hover_text(labels(p))} = {hover_text(number_text(v))}"
            for p, v in zip(params, record[1:], strict=True)
        ]
        lines.append("<br>".join([*shown, extra]))
    return lines


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def interval_stats(group, result: str, sort: bool = True, geometric: bool = False):
    """Per x: the mean, calls, and the 95% interval of the mean, ``low`` to ``high`` (Student's t with
    n - 1 degrees of freedom; none for a single call). ``geometric``: all of it on the logarithms of the
    values, so on a log axis the interval is symmetric and never below zero."""
    import numpy as np

    values = group[result].astype(float)
    if geometric:
        values = np.log(values)
    stats = values.groupby(group["__x"], sort=sort).agg(["mean", "std", "count"]).reset_index()
    counts = stats["count"].to_numpy(dtype=int)
    t = np.array([t975(n - 1) if n > 1 else np.nan for n in counts])
    half = np.nan_to_num(
        t * stats["std"].to_numpy(dtype=float) / np.sqrt(np.maximum(counts, 1)), nan=0.0
    )
    mean = stats["mean"].to_numpy(dtype=float)
    low, high = mean - half, mean + half
    if geometric:
        mean, low, high = np.exp(mean), np.exp(low), np.exp(high)
    stats["mean"], stats["low"], stats["high"] = mean, low, high
    return stats


class _Drawn:
    """What a figure ended up showing, for its caption."""

    def __init__(self) -> None:
        self.band = self.bars = self.geometric = self.broken = self.dodged = False
        self.points = 0
        self.points_of = 0
        self.failed = 0
        self.failed_of = 0
        self.counts: list[int] = []
        self.lines = 1  # lines in a panel: bands are fainter when many overlap
        self.said: list[str] = []


def result_figure(
    job: JobView, result: str, settings: ReportSettings | None = None, roles: Roles | None = None
) -> ReportFigure:
    """One figure: ``result`` of ``job`` against its varying parameters, with its caption."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    settings = settings or ReportSettings()
    roles = roles or choose_roles(job, settings.choice(job.name, result))
    label = settings.label
    drawn = _Drawn()
    needed = ["call", "status", "error", result, *job.params]
    frame = job.frame[
        list(dict.fromkeys(c for c in needed if c in job.frame.columns))
    ].copy()  # not 1,000 other results
    if roles.x:
        frame["__x"] = _binned(frame, roles.x, drawn.said, label(roles.x))
    else:
        frame["__x"] = ALL_CALLS if roles.aggregated else frame["call"]
    for column in (roles.colour, roles.facet):
        if column:
            frame[column] = tidy_column(frame[column])
    if roles.heatmap:
        frame["__y"] = _binned(frame, roles.colour, drawn.said, label(roles.colour))
    ok = frame[(frame["status"] == "succeeded") & frame[result].notna()]
    failed = frame[frame["status"] == "failed"]
    facets = (
        _ordered_values(frame[roles.facet], job.is_numeric(roles.facet)) if roles.facet else [None]
    )
    if len(facets) > MAX_PANELS:
        drawn.said.append(
            f"the first {MAX_PANELS} of {len(facets)} values of {label(roles.facet)} have a panel"
        )
        facets = facets[:MAX_PANELS]
    cols = min(len(facets), FACET_COLUMNS)
    rows = -(-len(facets) // cols)
    titles = (
        [f"{hover_text(label(roles.facet))} = {hover_text(number_text(v))}" for v in facets]
        if roles.facet
        else None
    )
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        shared_yaxes=True,
        shared_xaxes="all",
        horizontal_spacing=0.04,
        vertical_spacing=0.12 if rows > 1 else 0.0,
    )
    x_numeric = (
        roles.x is None
        and not roles.aggregated
        or (roles.x is not None and job.is_numeric(roles.x))
    )
    colours = (
        _ordered_values(frame[roles.colour], job.is_numeric(roles.colour))
        if roles.colour and not roles.heatmap
        else [None]
    )
    drawn.lines = len(colours)
    span = _span_of(frame["__x"], roles.log_x) if x_numeric else (0.0, 0.0)
    repeats = _repeats(ok, roles)
    points, sampled = _sample(ok, MAX_POINTS) if repeats else (ok.iloc[0:0], False)
    failed_shown, failed_sampled = _sample(failed, MAX_FAILED)
    floor = _floor(ok[result], roles.log_y)
    shown_params = list(job.varying)
    for i, facet_value in enumerate(facets):
        row, col = i // cols + 1, i % cols + 1

        def pick(part, facet_value=facet_value):
            return part if roles.facet is None else part[part[roles.facet] == facet_value]

        if roles.heatmap:
            _heatmap(fig, go, pick(ok), result, row, col, roles, label, drawn)
        else:
            for c, colour_value in enumerate(colours):
                colour = PALETTE[c % len(PALETTE)]
                here = (
                    pick(ok)
                    if roles.colour is None
                    else pick(ok)[pick(ok)[roles.colour] == colour_value]
                )
                name = (
                    hover_text(label(result))
                    if roles.colour is None
                    else f"{hover_text(label(roles.colour))} = {hover_text(number_text(colour_value))}"
                )
                single = (
                    pick(points)
                    if roles.colour is None
                    else pick(points)[pick(points)[roles.colour] == colour_value]
                )
                if len(single):  # behind the mean
                    xs = single["__x"].to_numpy()
                    nudge = (c - (len(colours) - 1) / 2) * DODGE * (span[1] - span[0])
                    if roles.interval == "bars" and x_numeric and nudge:  # beside their line's bars
                        xs = (
                            xs.astype(float) * 10**nudge
                            if roles.log_x
                            else xs.astype(float) + nudge
                        )
                    fig.add_trace(
                        go.Scatter(
                            x=xs,
                            y=single[result].to_numpy(dtype=float),
                            mode="markers",
                            marker={"color": colour, "size": 5, "opacity": 0.28},
                            legendgroup=name,
                            showlegend=False,
                            hovertext=_call_hover(
                                single,
                                shown_params,
                                label,
                                [
                                    f"{hover_text(label(result))} = {short(v)}"
                                    for v in single[result]
                                ],
                            ),
                            hoverinfo="text",
                            name=name,
                        ),
                        row=row,
                        col=col,
                    )
                    drawn.points += len(single)
                gone = (
                    pick(failed)
                    if roles.colour is None
                    else pick(failed)[pick(failed)[roles.colour] == colour_value]
                )
                _mean_line(
                    fig,
                    go,
                    here,
                    result,
                    name,
                    colour,
                    row,
                    col,
                    x_numeric,
                    roles,
                    label,
                    drawn,
                    set(gone["__x"].dropna().tolist()) if x_numeric else set(),
                    (c - (len(colours) - 1) / 2) * DODGE if x_numeric else 0.0,
                    span,
                )
        fail_part = pick(failed_shown)
        if len(fail_part):
            y = fail_part["__y"].to_numpy() if roles.heatmap else [floor] * len(fail_part)
            fig.add_trace(
                go.Scatter(
                    x=fail_part["__x"].to_numpy(),
                    y=y,
                    mode="markers",
                    name=f"failed ({len(failed):,})",
                    legendgroup="failed",
                    showlegend=True,
                    marker={
                        "symbol": "x",
                        "color": FAILED_COLOUR,
                        "size": 10,
                        "line": {"width": 1, "color": FAILED_COLOUR},
                    },
                    hovertext=_call_hover(
                        fail_part,
                        shown_params,
                        label,
                        [
                            f"failed: {hover_text(str(e).splitlines()[0] if e else '')}"
                            for e in fail_part["error"]
                        ],
                    ),
                    hoverinfo="text",
                ),
                row=row,
                col=col,
            )
            drawn.failed += len(fail_part)
    drawn.points_of = len(ok) if sampled else drawn.points
    drawn.failed_of = len(failed) if failed_sampled else drawn.failed
    _dedupe_legend(fig)
    title = _title(job, result, roles, label)
    layout = base_layout(title, 90 + 300 * rows)
    if roles.heatmap:
        layout["coloraxis"] = {
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": hover_text("mean " + label(result)), "side": "right"}},
        }
        # the legend (failed marks) goes above the plot, clear of the colour bar and its title
        layout["legend"] = {
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
        }
    fig.update_layout(**layout)
    fig.update_xaxes(
        title_text=hover_text(label(roles.x) if roles.x else ("" if roles.aggregated else "call")),
        row=rows,
    )
    fig.update_yaxes(
        title_text=hover_text(label(roles.colour) if roles.heatmap else label(result)), col=1
    )
    if roles.log_x:
        fig.update_xaxes(type="log", **_value_ticks(frame["__x"]))
    elif x_numeric and _is_integer(frame["__x"]) and frame["__x"].nunique() <= 20:
        # a few integer values (seeds, sizes) get a tick each, and no 0.5 ticks between them
        fig.update_xaxes(tickmode="array", tickvals=sorted(frame["__x"].dropna().unique().tolist()))
    if not x_numeric and drawn.bars and len(colours) > 1:
        fig.update_layout(scattermode="group", scattergap=0.6)  # bars of a category side by side
    if not x_numeric:
        order = _ordered_values(frame["__x"], False)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    if roles.log_y and not roles.heatmap:
        fig.update_yaxes(type="log")
    if roles.heatmap and not job.is_numeric(roles.colour):
        fig.update_yaxes(type="category")
    return ReportFigure(
        f"results/{job.name}/{result}",
        "results",
        fig,
        [],
        caption=_caption(job, result, roles, label, drawn),
    )


def _title(job: JobView, result: str, roles: Roles, label) -> str:
    title = f"{job.name}: {label(result)}"
    if roles.x:
        title += f" against {label(roles.x)}"
        if roles.colour:
            title += (
                f", {'heatmap over' if roles.heatmap else 'one line per'} {label(roles.colour)}"
            )
        if roles.facet:
            title += f", a panel per {label(roles.facet)}"
        if roles.aggregated:
            title += f"; mean over {', '.join(label(p) for p in roles.aggregated)}"
    elif roles.aggregated:
        title += f" over {', '.join(label(p) for p in roles.aggregated)}"
    else:
        title += " per call (no parameter varies)"
    return title


def _span(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return f"{low:,} call{'s' if high > 1 else ''}" if low == high else f"{low:,} to {high:,} calls"


def _caption(job: JobView, result: str, roles: Roles, label, drawn: _Drawn) -> str:
    """What the figure shows, said from what was drawn."""
    names = ", ".join(label(p) for p in roles.aggregated)
    parts = []
    if roles.heatmap:
        parts.append(
            f"Colour: the mean of {label(result)} in each cell of {label(roles.x)} and {label(roles.colour)}"
            + (f", over {names}" if roles.aggregated else "")
            + "; a blank cell has no succeeded call."
        )
    elif drawn.counts and max(drawn.counts) > 1:
        how = "a shaded band" if drawn.band else "error bars" if drawn.bars else ""
        mean = "geometric mean (for the log axis)" if drawn.geometric else "mean"
        parts.append(
            f"Each point is the {mean} of {label(result)}"
            + (f" over {names}" if names else " over repeated calls")
            + f" ({_span(drawn.counts)} a point)"
            + (f", with its 95% confidence interval (Student's t) as {how}" if how else "")
            + "."
            + (
                " Lines are nudged sideways so their bars do not hide each other."
                if drawn.dodged
                else ""
            )
        )
    elif drawn.counts:
        parts.append(f"Each point is one call's {label(result)}.")
    if roles.folded:
        parts.append(
            f"Also averaged: {', '.join(label(p) for p in roles.folded)}, which is not a replicate; "
            "give it a place with report: {x, color, facet} to show it."
        )
    if drawn.points:
        parts.append(
            "Faint dots are the single calls"
            + (
                f" (a random {drawn.points:,} of {drawn.points_of:,})"
                if drawn.points_of > drawn.points
                else ""
            )
            + "."
        )
    if drawn.failed:
        where = "on their cells" if roles.heatmap else "along the bottom of the panel"
        parts.append(
            ("The line breaks where a call failed. " if drawn.broken else "")
            + f"Red × marks {'a random ' + format(drawn.failed, ',') + ' of ' if drawn.failed_of > drawn.failed else ''}"
            f"{drawn.failed_of:,} failed call{'s' if drawn.failed_of != 1 else ''} {where}; hover for the error."
        )
    axes = [
        f"{name} axis logarithmic"
        for name, on in (("x", roles.log_x), ("y", roles.log_y and not roles.heatmap))
        if on
    ]
    if axes:
        parts.append(" and ".join(axes).capitalize() + ".")
    parts.extend(f"{s[0].upper()}{s[1:]}." for s in drawn.said)
    if roles.ignored:
        parts.append(
            f"Not used here ({'; '.join(roles.ignored)}): no such varying parameter in job {job.name}."
        )
    return " ".join(parts)


def _repeats(ok, roles: Roles) -> bool:
    keys = [k for k in ("__x", roles.colour, roles.facet) if k]
    return bool(len(ok)) and bool(ok.duplicated(subset=keys).any())


def _floor(values, log: bool) -> float:
    import numpy as np

    if log:
        positive = values[values > 0]
        if not len(positive):
            return 1.0
        low, high = float(positive.min()), float(positive.max())
        return float(low / (high / low) ** 0.06) if high > low else low / 2
    if not len(values):
        return 0.0
    low, high = float(values.min()), float(values.max())
    return float(np.float64(low - 0.06 * ((high - low) or abs(low) or 1.0)))


def _span_of(column, log: bool) -> tuple[float, float]:
    """The x axis's extent (in decades on a log axis), for nudging lines apart."""
    import numpy as np

    values = column.dropna().to_numpy(dtype=float)
    if log:
        values = np.log10(values[values > 0])
    return (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)


def _broken_at(xs, failed_x: set) -> list[int]:
    """Positions after which the line must break: a failed call lies between two drawn points."""
    if not failed_x or len(xs) < 2:
        return []
    return [i for i in range(len(xs) - 1) if any(xs[i] < f < xs[i + 1] for f in failed_x)]


def _mean_line(
    fig,
    go,
    group,
    result: str,
    name: str,
    colour: str,
    row: int,
    col: int,
    x_numeric: bool,
    roles: Roles,
    label,
    drawn: _Drawn,
    failed_x: set = frozenset(),
    shift: float = 0.0,
    span: tuple[float, float] = (0.0, 0.0),
) -> None:
    """``shift``: with error bars, each line is nudged by this fraction of the axis, so that bars at the
    same x do not hide each other (hover still says the true x)."""
    if not len(group):
        return
    import numpy as np

    geometric = roles.log_y and bool((group[result] > 0).all())
    stats = interval_stats(group, result, sort=x_numeric, geometric=geometric)
    drawn.geometric = drawn.geometric or geometric
    counts = stats["count"].to_numpy(dtype=int)
    drawn.counts.extend(int(n) for n in counts)
    several = bool((counts > 1).any())
    xs, means = stats["__x"].to_numpy(), stats["mean"].to_numpy(dtype=float)
    low, high = stats["low"].to_numpy(dtype=float), stats["high"].to_numpy(dtype=float)
    ylabel = hover_text(label(result))
    which = "geometric mean" if geometric else "mean"
    hover = []
    for x, m, lo, hi, n in zip(xs, means, low, high, counts, strict=True):
        head = (
            f"{hover_text(label(roles.x)) + ' = ' if roles.x else ''}{hover_text(number_text(x))}"
        )
        if n > 1:
            hover.append(
                f"{head}<br>{which} {ylabel} = {short(m)}<br>95% CI {short(lo)} to {short(hi)} ({n:,} calls)"
            )
        else:
            hover.append(f"{head}<br>{ylabel} = {short(m)}")
    band = several and roles.interval == "band" and x_numeric and len(stats) > 1
    if band:
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([xs, xs[::-1]]),
                y=np.concatenate([high, low[::-1]]),
                fill="toself",
                fillcolor=_rgba(colour, BAND_ALPHA if drawn.lines <= 3 else BAND_ALPHA / 2),
                line={"width": 0},
                mode="lines",
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
                name=name,
            ),
            row=row,
            col=col,
        )
        drawn.band = True
    bars = several and not band
    line_x, line_y, line_hover = xs, means, hover
    if bars and shift and span[1] > span[0]:
        nudge = shift * (span[1] - span[0])
        line_x = xs.astype(float) * 10**nudge if roles.log_x else xs.astype(float) + nudge
        drawn.dodged = True
    breaks = _broken_at(xs, failed_x)
    if breaks and not bars:  # no line drawn across a failed call, as if its value were known
        line_x, line_y, line_hover = (
            np.insert(np.asarray(v, dtype=object), [b + 1 for b in breaks], None)
            for v in (xs, means, hover)
        )
        drawn.broken = True
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line_y,
            mode="lines+markers" if x_numeric else "markers",
            name=name,
            legendgroup=name,
            showlegend=True,
            line={"color": colour, "width": 2},
            marker={"color": colour, "size": 7},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": high - means,
                "arrayminus": means - low,
                "visible": True,
                "color": colour,
                "thickness": 1.5,
                "width": 4,
            }
            if bars
            else None,
            hovertext=line_hover,
            hoverinfo="text",
        ),
        row=row,
        col=col,
    )
    drawn.bars = drawn.bars or bars


def _value_ticks(column) -> dict:
    """A tick at each swept value (up to 12 of them), written short: a log axis otherwise labels 2, 3 ... 9."""
    values = sorted(column.dropna().unique().tolist())
    if not values or len(values) > 12:
        return {}
    return {"tickmode": "array", "tickvals": values, "ticktext": [tick_text(v) for v in values]}


def _is_integer(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_integer_dtype(column))


def _heatmap(
    fig, go, part, result: str, row: int, col: int, roles: Roles, label, drawn: _Drawn
) -> None:
    if not len(part):
        return
    grid = part.groupby(["__y", "__x"])[result].agg(["mean", "count"])
    means = grid["mean"].astype(float).unstack()
    counts = grid["count"].astype(float).unstack()  # a cell no call filled is NaN
    drawn.counts.extend(int(n) for n in grid["count"])
    xl, yl, rl = (hover_text(label(n)) for n in (roles.x, roles.colour, result))
    hover = [
        [
            f"{xl} = {hover_text(number_text(x))}<br>{yl} = {hover_text(number_text(y))}<br>"
            f"mean {rl} = {short(m)} over {int(n)} call{'s' if n != 1 else ''}"
            if n == n and m == m
            else ""
            for x, m, n in zip(means.columns, means.loc[y], counts.loc[y], strict=True)
        ]
        for y in means.index
    ]
    fig.add_trace(
        go.Heatmap(
            z=means.to_numpy(dtype=float),
            x=list(means.columns),
            y=list(means.index),
            coloraxis="coloraxis",
            hovertext=hover,
            hoverinfo="text",
            name=rl,
        ),
        row=row,
        col=col,
    )


def _dedupe_legend(fig) -> None:
    """One legend entry per name across panels."""
    seen: set[str] = set()
    for trace in fig.data:
        if trace.showlegend is False:
            continue
        if trace.name in seen:
            trace.showlegend = False
        seen.add(trace.name)
