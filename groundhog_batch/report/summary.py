"""The summary at the top of the report: what ran, how long it took, what failed and why, the best
results, and the hashes of the script and data, as (label, HTML) rows.

Other parts of hog-batch can add rows through ``summary_rows``'s ``extra``
(each a function of the report data giving (label, text) pairs, or none).
"""

from __future__ import annotations

import html
from collections.abc import Callable

from .data import FINISHED, ReportData
from .failures import FailureGroup
from .numbers import number_text, seconds_text, short

FAILURES_IN_SUMMARY = 3
SummaryRows = Callable[[ReportData], list[tuple[str, str]]]


def _e(value) -> str:
    return html.escape(str(value))


def _what_ran(data: ReportData) -> str:
    jobs = {job.get("name"): job for job in data.info.get("jobs", [])}
    scripts = (data.info.get("provenance") or {}).get("scripts") or {}
    lines = []
    for view in data.jobs:
        script = scripts.get(view.name, {}).get("path") or ""
        endpoint = jobs.get(view.name, {}).get("endpoint") or "?"
        swept = ", ".join(f"{p} ({view.n_values(p)})" for p in view.varying) or "nothing swept"
        where = f" from {script.rsplit('/', 1)[-1]}" if script else ""
        lines.append(
            f"<b>{_e(view.name)}</b>{_e(where)}: {len(view.frame):,} calls over {_e(swept)}, on {_e(endpoint)}"
        )
    return "<br>".join(lines)


def _how_long(data: ReportData) -> str:
    frame = data.frame
    done = frame[frame["status"].isin(FINISHED)]
    parts = []
    started = [s[3] for s in data.spans if s[3] is not None]
    ended = [s[5] or s[4] for s in data.spans if (s[5] or s[4]) is not None]
    if started and ended:
        parts.append(f"{seconds_text(max(ended) - min(started))} from the first task to the last")
    if len(done) and "duration_s" in frame:
        total = float(done["duration_s"].fillna(0).sum())
        parts.append(
            f"{seconds_text(total)} of calls in all (median {seconds_text(float(done['duration_s'].median()))} a call)"
        )
    started_at = (data.info.get("provenance") or {}).get("started_at")
    if started_at:
        parts.append(f"started {started_at}")
    return _e("; ".join(parts) or "no call has finished yet")


def _failed(data: ReportData, groups: list[FailureGroup]) -> str:
    if not groups:
        return "no call failed"
    several = len(data.jobs) > 1
    rows = [
        f"{g.count:,} × <code>{_e(g.first_line)}</code>"
        + (f" (job {_e(g.job)})" if several else "")
        for g in groups[:FAILURES_IN_SUMMARY]
    ]
    rest = groups[FAILURES_IN_SUMMARY:]
    if rest:
        rows.append(f"…and {sum(g.count for g in rest):,} more in {len(rest):,} other kind(s)")
    total = sum(g.count for g in groups)
    return (
        f"{total:,} call{'s' if total != 1 else ''}: "
        + "; ".join(rows)
        + ' (<a href="#failures">details</a>)'
    )


def best_rows(data: ReportData) -> list[tuple[str, str]]:
    """For each ``best: {result.KEY: min|max}``: the best succeeded call of each job that has that result."""
    rows = []
    for column, way in data.settings.best.items():
        for view in data.jobs:
            if column not in view.frame:
                continue
            done = view.frame[(view.frame["status"] == "succeeded") & view.frame[column].notna()]
            if not len(done) or not view.is_numeric(column):
                continue
            index = (
                done[column].astype(float).idxmin()
                if way == "min"
                else done[column].astype(float).idxmax()
            )
            best = done.loc[index]
            params = ", ".join(
                f"{data.settings.label(p)} = {number_text(best[p])}" for p in view.varying
            )
            rows.append(
                (
                    f"best {data.settings.label(column)} ({way})",
                    f"{_e(short(float(best[column])))} in call {int(best['call'])}"
                    + (f" of {_e(view.name)}" if len(data.jobs) > 1 else "")
                    + (f" ({_e(params)})" if params else ""),
                )
            )
    return rows


def _hashes(data: ReportData) -> str:
    prov = data.info.get("provenance") or {}
    lines = [
        f"script of {_e(job)}: <code>{_e(str(s.get('sha256', '?'))[:16])}</code> {_e(str(s.get('path', '')).rsplit('/', 1)[-1])}"
        for job, s in (prov.get("scripts") or {}).items()
    ]
    lines += [
        f"data: <code>{_e(str(digest)[:16])}</code> {_e(str(path).rsplit('/', 1)[-1])}"
        for path, digest in (prov.get("data_files") or {}).items()
    ]
    return "<br>".join(lines) + (
        ' (full hashes under <a href="#provenance">Provenance</a>)' if lines else "none recorded"
    )


def summary_rows(
    data: ReportData, groups: list[FailureGroup], extra: list[SummaryRows] = ()
) -> list[tuple[str, str]]:
    rows = [
        ("what ran", _what_ran(data)),
        ("how long", _how_long(data)),
        ("what failed", _failed(data, groups)),
    ]
    rows += best_rows(data)
    rows.append(("script and data", _hashes(data)))
    for more in extra:
        rows += [(label, _e(text)) for label, text in more(data)]
    return rows
