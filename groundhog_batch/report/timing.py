"""Time: how long calls took, and how many tasks ran at once.

The timeline puts each task on a worker lane (the first lane free when it
started), so the number of lanes is the peak parallelism achieved. Past
``MAX_TASK_BARS`` tasks only the curve of tasks running at once is drawn.
"""

from __future__ import annotations

import time

from .data import ReportData
from .figure import FAILED_COLOURS, PALETTE, ReportFigure, base_layout, hover_text
from .numbers import seconds_text

DURATION_BINS = 40
MAX_TASK_BARS = 3000
CURVE_POINTS = 1500


def duration_figure(data: ReportData) -> ReportFigure | None:
    """Histogram of call durations, per job, succeeded and failed stacked; log-spaced bins when they spread widely."""
    import numpy as np
    import plotly.graph_objects as go

    done = data.frame[
        data.frame["status"].isin(("succeeded", "failed")) & data.frame["duration_s"].notna()
    ]
    if not len(done):
        return None
    seconds = done["duration_s"].to_numpy(dtype=float)
    positive = seconds[seconds > 0]
    low = float(positive.min()) if len(positive) else 1e-6
    high = max(float(seconds.max()), low * 1.001)
    log = high / low > 100
    start = low if log else float(seconds.min())
    if not log and high - start < 1e-9:
        start, high = start * 0.9, high * 1.1 + 1e-6
    edges = (
        np.geomspace(start, high, DURATION_BINS + 1)
        if log
        else np.linspace(start, high, DURATION_BINS + 1)
    )
    fig = go.Figure()
    tallest = np.histogram(np.clip(seconds, edges[0], edges[-1]), bins=edges)[
        0
    ].max()  # the stacked bars' height
    jobs = [str(job) for job in done["job"].unique()]  # in order of appearance
    for j, job in enumerate(jobs):
        for status in ("succeeded", "failed"):
            part = done[(done["job"] == job) & (done["status"] == status)]["duration_s"].to_numpy(
                dtype=float
            )
            if not len(part):
                continue
            counts, _ = np.histogram(np.clip(part, edges[0], edges[-1]), bins=edges)
            label = f"{job}, {status}" if len(jobs) > 1 else status
            failed = status == "failed"
            colour = (
                FAILED_COLOURS[j % len(FAILED_COLOURS)] if failed else PALETTE[j % len(PALETTE)]
            )
            marker = (
                {
                    "color": colour,
                    "pattern": {
                        "shape": "x" if failed else "",
                        "fgcolor": PALETTE[j % len(PALETTE)],
                        "solidity": 0.25,
                    },
                }
                if failed and len(jobs) > 1
                else {"color": colour}
            )
            fig.add_trace(
                go.Bar(
                    x=np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2,
                    width=np.diff(edges),
                    y=counts,
                    name=hover_text(label),
                    marker=marker,
                    hovertext=[
                        f"{a:.3g}–{b:.3g} s: {n:,} calls"
                        for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True)
                    ],
                    hoverinfo="text",
                )
            )
    layout = base_layout(
        f"Call durations: {len(done):,} finished calls, median {seconds_text(float(np.median(seconds)))}, "
        f"longest {seconds_text(float(seconds.max()))}",
        360,
    )
    fig.update_layout(**layout, barmode="stack", bargap=0.02)
    fig.update_xaxes(
        title_text="seconds per call" + (" (log scale)" if log else ""),
        type="log" if log else "linear",
        **({"dtick": 1 if high / low > 1000 else "D2", "exponentformat": "power"} if log else {}),
    )
    fig.update_yaxes(title_text="calls", **count_ticks(int(tallest)))
    caption = (
        "How long each finished call took: the number of calls per bin"
        + (", bins spaced logarithmically" if log else "")
        + (
            ", one colour per job, succeeded and failed stacked (failed in red"
            + (", hatched, a shade per job)" if len(jobs) > 1 else ")")
            if len(jobs) > 1 or (done["status"] == "failed").any()
            else ""
        )
        + ". Hover for each bin's range and count."
    )
    return ReportFigure("time/durations", "time", fig, caption=caption)


def count_ticks(largest: int) -> dict:
    """A count axis from 0 whose ticks are whole numbers: one per unit up to 10, else Plotly's own."""
    return (
        {"rangemode": "tozero", "tick0": 0, "dtick": 1}
        if largest <= 10
        else {"rangemode": "tozero"}
    )


def task_intervals(
    data: ReportData, now: float | None = None
) -> list[tuple[str, str, float, float, bool, int]]:
    """(task_id, job, start, end, still running, calls) of each task that started; a running task ends now."""
    now = now or time.time()
    found = []
    for task_id, job, state, started, last_call, finished, n_calls in data.spans:
        if started is None:
            continue
        running = state == "submitted"
        end = now if running else (last_call or finished or started)
        found.append((task_id, job, float(started), float(max(end, started)), running, n_calls))
    return found


def assign_lanes(intervals: list[tuple[float, float]]) -> list[int]:
    """Each interval on the first lane free at its start (intervals given in start order)."""
    import heapq

    free: list[int] = []
    busy: list[tuple[float, int]] = []  # (end, lane)
    lanes: list[int] = []
    n_lanes = 0
    for start, end in intervals:
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, n_lanes = n_lanes, n_lanes + 1
        heapq.heappush(busy, (end, lane))
        lanes.append(lane)
    return lanes


def running_curve(intervals: list[tuple[float, float]]):
    """Times and how many tasks were running just after each, at most ``CURVE_POINTS`` steps (the peak of each)."""
    import numpy as np

    starts = np.array([s for s, _ in intervals])
    ends = np.array([e for _, e in intervals])
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))  # ends before starts at the same instant
    times, running = times[order], np.cumsum(steps[order])
    if len(times) > CURVE_POINTS:
        edges = np.linspace(times[0], times[-1], CURVE_POINTS + 1)
        which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, CURVE_POINTS - 1)
        peak = np.zeros(CURVE_POINTS)
        np.maximum.at(peak, which, running)
        return edges[:-1], peak
    return times, running


def timeline_figure(data: ReportData, now: float | None = None) -> ReportFigure | None:
    """Tasks as bars on worker lanes (top) and how many ran at once (bottom)."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = sorted(task_intervals(data, now), key=lambda t: (t[2], t[0]))
    if not tasks:
        return None
    t0 = min(t[2] for t in tasks)
    spans = [(t[2] - t0, t[3] - t0) for t in tasks]
    lanes = assign_lanes(spans)
    times, running = running_curve(spans)
    wall = max(e for _, e in spans)
    busy = sum(e - s for s, e in spans)
    notes = []
    bars = len(tasks) <= MAX_TASK_BARS
    fig = make_subplots(
        rows=2 if bars else 1,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3] if bars else None,
        vertical_spacing=0.06,
    )
    if bars:
        jobs = list(dict.fromkeys(t[1] for t in tasks))
        width = max(2, min(14, 300 // (max(lanes) + 1)))
        for j, job in enumerate(jobs):
            for running_now in (False, True):
                xs: list = []
                ys: list = []
                hover: list = []
                for (task_id, task_job, _, _, is_running, n_calls), (s, e), lane in zip(
                    tasks, spans, lanes, strict=True
                ):
                    if task_job != job or is_running != running_now:
                        continue
                    label = f"{hover_text(task_id)}: {n_calls} call(s), {e - s:.3g} s" + (
                        " (running)" if is_running else ""
                    )
                    xs += [s, e, None]
                    ys += [lane, lane, None]
                    hover += [label, label, None]
                if not xs:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        name=hover_text(job) + (" (running)" if running_now else ""),
                        line={
                            "width": width,
                            "color": PALETTE[j % len(PALETTE)],
                            "dash": "dot" if running_now else "solid",
                        },
                        hovertext=hover,
                        hoverinfo="text",
                    ),
                    row=1,
                    col=1,
                )
        n_lanes = max(lanes) + 1
        fig.update_yaxes(
            title_text="worker lane",
            range=[n_lanes - 0.5, -0.5],
            tickmode="linear",
            tick0=0,
            dtick=max(1, n_lanes // 10),
            zeroline=False,
            row=1,
            col=1,
        )
    else:
        notes.append(
            f"{len(tasks):,} tasks: only the number running at once is drawn (bars up to {MAX_TASK_BARS:,})"
        )
    fig.add_trace(
        go.Scatter(
            x=times,
            y=running,
            mode="lines",
            line={"shape": "hv", "color": "#444"},
            name="tasks running",
            fill="tozeroy",
            fillcolor="rgba(68,68,68,0.15)",
            hovertemplate="%{x:.3g} s: %{y} running<extra></extra>",
        ),
        row=2 if bars else 1,
        col=1,
    )
    fig.update_yaxes(
        title_text="running",
        **count_ticks(int(np.max(running)) if len(running) else 0),
        row=2 if bars else 1,
        col=1,
    )
    fig.update_xaxes(title_text="seconds since the first task started", row=2 if bars else 1, col=1)
    peak = int(np.max(running)) if len(running) else 0
    mean = busy / wall if wall > 0 else float(peak)
    title = (
        f"Tasks: {len(tasks):,} on up to {peak} worker(s) at once, {mean:.2f} on average "
        f"over {wall:.3g} s"
    )
    fig.update_layout(**base_layout(title, 480 if bars else 300))
    caption = (
        "Top: each task as a bar from its start to its last call, on the first worker lane free when it started, "
        "so the number of lanes is the most tasks that ran at once. Bottom: how many tasks ran at each moment."
        if bars
        else "How many tasks ran at each moment."
    )
    return ReportFigure("time/timeline", "time", fig, notes, caption=caption)
