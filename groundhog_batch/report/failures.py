"""Failures grouped by job and type of error (as ``status`` groups them), with counts and one example each."""

from __future__ import annotations

from dataclasses import dataclass

MAX_GROUPS = 50


@dataclass(frozen=True)
class FailureGroup:
    job: str
    error_type: str
    first_line: str
    count: int
    example_call: int
    example_params: dict
    traceback: str


def failure_groups(
    frame, params: dict[str, list[str]], grouped: list | None = None
) -> list[FailureGroup]:
    """Most frequent first, grouped as ``status`` and ``submit`` group them (``run_view.failure_groups``:
    by job and type of error; ``grouped`` is that list). The example is the group's first call in plan
    order, shown with its own job's parameters (``params``: job -> its parameters)."""
    failed = frame[frame["status"] == "failed"]
    if not len(failed):
        return []
    if grouped is None:
        from ..run_view import error_type as type_of
        from ..run_view_records import FailureGroup as Grouped

        found: dict = {}
        for job, call, error in failed[["job", "call", "error"]].itertuples(index=False):
            line = (
                str(error).strip().splitlines()[0]
                if _present(error) and str(error).strip()
                else "(no error recorded)"
            )
            group = found.setdefault((str(job), type_of(line)), Grouped(str(job), type_of(line)))
            group.calls.append(int(call))
            group.messages[line] = group.messages.get(line, 0) + 1
        grouped = sorted(found.values(), key=lambda g: -g.count)
    rows = failed.set_index(["job", "call"], drop=False)
    groups = []
    for group in grouped:
        try:
            example = rows.loc[(group.job, group.calls[0])]
        except KeyError:
            continue
        if getattr(example, "ndim", 1) > 1:
            example = example.iloc[0]
        shown = {
            p: example[p]
            for p in params.get(group.job, [])
            if p in rows.columns and _present(example[p])
        }
        trace = (
            str(example["traceback"])
            if _present(example["traceback"])
            else str(example["error"] or "")
        )
        groups.append(
            FailureGroup(
                group.job,
                group.error_type,
                group.error,
                group.count,
                int(group.calls[0]),
                shown,
                trace,
            )
        )
    return groups


def _present(value) -> bool:
    """Not None, NaN or pandas' NA (a nullable column's missing value)."""
    import pandas as pd

    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return True
