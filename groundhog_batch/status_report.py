"""How ``status``, ``logs`` and ``runs`` put a run into words (and JSON), from the reads in run_view."""

from __future__ import annotations

import time
from calendar import timegm

from .run_view import (
    duration_text,
    failed_calls,
    failure_groups,
    holder_text,
    interrupted_text,
    progress_by_job,
    summary,
)
from .type_names import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run_view_records import CallLog, FailureGroup

GROUPS_SHOWN = 10  # kinds of error listed without --all
CALLS_SHOWN = 5  # call numbers listed per kind without --all
FAILURES_IN_JSON = 20  # individual failures in --json without --all


def age_s(iso_utc: str | None) -> float | None:
    """Seconds since an ISO 8601 UTC time like 2026-11-21T12:17:48Z."""
    if not iso_utc:
        return None
    try:
        return time.time() - timegm(time.strptime(iso_utc, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _calls_text(calls: list[int], show_all: bool) -> str:
    shown = calls if show_all else calls[:CALLS_SHOWN]
    text = ", ".join(map(str, shown))
    if len(calls) > len(shown):
        text += f" ...and {len(calls) - len(shown)} more"
    return text


def status_text(run, show_all: bool = False) -> list[str]:
    """The lines of ``hog-batch status``."""
    started = run.info.get("provenance", {}).get("started_at")
    lines = [f"run {run.name} ({run.root})"]
    holder = run.holder()
    if holder is not None:
        lines.append(f"  {holder_text(holder)}")
    else:
        lines.append(
            f"  {interrupted_text(run.counts(), run.root) or 'finished: no call is left to run'}"
        )
    if started:
        lines.append(f"  started {started} ({duration_text(age_s(started))} ago)")
    for job, now in progress_by_job(run.ledger).items():
        lines.append(
            f"  {job}: {now.finished}/{now.total} finished ({summary(now.counts, holder is not None)})"
        )
    groups = failure_groups(run.ledger)
    lines += failure_lines(
        groups, len(run.info.get("jobs", [])) > 1, show_all, f"hog-batch status --all {run.root}"
    )
    if groups:
        example = groups[0]
        lines.append(
            f"  what they printed: hog-batch logs {run.root} --failed  (one: hog-batch logs {run.root} "
            f"{example.job}:{example.calls[0]})"
        )
    return lines


def failure_lines(
    groups: list[FailureGroup], several_jobs: bool, show_all: bool = False, more_command: str = ""
) -> list[str]:
    """Failed calls grouped by job and type of error (``run_view.failure_groups``), as ``status`` and the
    summary of ``submit``, ``resume`` and ``retry`` print them."""
    lines = []
    shown = groups if show_all else groups[:GROUPS_SHOWN]
    for group in shown:
        where = f"job {group.job} " if several_jobs else ""
        if group.count == 1:
            lines.append(f"  failed: {group.job} call {group.calls[0]}: {group.error}")
        else:
            lines.append(f"  failed: {group.count} calls: {group.error}")
            lines.append(f"          {where}calls {_calls_text(group.calls, show_all)}")
    if len(groups) > len(shown):
        hidden = groups[len(shown) :]
        lines.append(
            f"  ...and {len(hidden)} more kinds of error ({sum(g.count for g in hidden)} calls)"
            + (f": {more_command}" if more_command else "")
        )
    return lines


def status_json(run, show_all: bool = False) -> dict[str, Any]:
    """``status --json``: everything with ``show_all``; otherwise the first few calls of each kind of error."""
    groups = failure_groups(run.ledger)
    by_job = progress_by_job(run.ledger)
    failures = [
        {"job": job, "call": call, "error": error} for job, call, error in failed_calls(run.ledger)
    ]
    listed = failures if show_all else failures[:FAILURES_IN_JSON]
    return {
        "run_dir": str(run.root),
        "name": run.name,
        "started_at": run.info.get("provenance", {}).get("started_at"),
        "active": run.holder(),
        "counts": run.counts(),
        "jobs": {job: now.counts for job, now in by_job.items()},
        "failure_groups": [
            {
                "job": g.job,
                "error_type": g.error_type,
                "count": g.count,
                "example": g.example,
                "messages": len(g.messages),
                "calls": g.calls if show_all else g.calls[:CALLS_SHOWN],
            }
            for g in groups
        ],
        "failures": listed,
        "failures_not_listed": len(failures) - len(listed),
    }


def format_call_log(log: CallLog, stream: str | None, headers: bool = True) -> str:
    """One call as text. With ``stream``: that stream only, as printed (``traceback`` falls back to the error)."""
    if stream is not None:
        text = log.stream(stream) or (log.error or "" if stream == "traceback" else "")
        if text and not text.endswith("\n"):
            text += "\n"
        return (f"==> {log.job} call {log.call} <==\n" if headers else "") + text
    params = " ".join(f"{key}={value!r}" for key, value in log.params.items())
    attempts = f", {log.attempts} attempts" if log.attempts > 1 else ""
    parts = [f"=== {log.job} call {log.call}: {log.state}{attempts}  {params} ===\n"]
    sections = [
        ("stdout", log.stdout),
        ("stderr", log.stderr),
        ("traceback", log.traceback or ("" if log.state == "succeeded" else log.error or "")),
    ]
    for name, text in sections:
        if text:
            parts.append(f"--- {name} ---\n{text}" + ("" if text.endswith("\n") else "\n"))
    if len(parts) == 1:
        parts.append("(printed nothing)\n")
    return "".join(parts)


def runs_lines(found: list[dict]) -> list[str]:
    """``hog-batch runs``: one line per run with its state, progress and age."""
    lines = []
    for run in found:
        counts = run["counts"]
        finished = sum(counts.get(state, 0) for state in ("succeeded", "failed", "cancelled"))
        stopped = None if run["active"] else interrupted_text(counts, run["run_dir"])
        state = "running" if run["active"] else stopped or "finished"
        lines.append(
            f"{run['run_dir']}  {run['name']}  {state}  {finished}/{sum(counts.values())} finished "
            f"({summary(counts, bool(run['active']))})  started {duration_text(age_s(run['started_at']))} ago"
        )
    return lines
