"""Failures grouped by job, error type and the error's first line, with counts and one example each."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_GROUPS = 50
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


@dataclass(frozen=True)
class FailureGroup:
    job: str
    error_type: str
    first_line: str
    count: int
    example_call: int
    example_params: dict
    traceback: str


def error_type(first_line: str) -> str:
    """``ValueError: bad x`` -> ``ValueError``; anything else (a timeout, a killed process) is an ``error``."""
    found = _ERROR_TYPE.match(first_line)
    return found.group(1) if found else "error"


def failure_groups(frame, params: dict[str, list[str]]) -> list[FailureGroup]:
    """Most frequent first; the example is the group's first call in plan order, shown with its own
    job's parameters (``params``: job -> its parameters; another job's columns are empty there)."""
    failed = frame[frame["status"] == "failed"]
    if not len(failed):
        return []
    first_lines = failed["error"].fillna("").astype(str).map(lambda e: e.strip().splitlines()[0] if e.strip() else "(no message)")
    keyed = failed.assign(__first=first_lines)
    groups = []
    for (job, first), part in keyed.groupby(["job", "__first"], sort=False):
        example = part.iloc[0]
        shown = {p: example[p] for p in params.get(str(job), []) if p in part.columns and _present(example[p])}
        groups.append(FailureGroup(str(job), error_type(first), first, len(part), int(example["call"]), shown,
                                   str(example["traceback"]) if _present(example["traceback"]) else str(example["error"] or "")))
    return sorted(groups, key=lambda g: -g.count)


def _present(value) -> bool:
    """Not None, NaN or pandas' NA (a nullable column's missing value)."""
    import pandas as pd

    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return True
