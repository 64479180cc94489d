"""What a report shows, read from a run directory without taking its lock.

Reading the ledger is a plain SQLite read in WAL mode: it never blocks a live
submitter, and a run still in progress shows what has finished so far.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .settings import ReportSettings, from_manifest_data

FINISHED = ("succeeded", "failed")


@dataclass
class JobView:
    """One job's rows, its parameters, and which of them the sweep varies."""

    name: str
    frame: Any  # pandas DataFrame: this job's rows
    params: list[str]
    varying: list[str]
    results: list[str]  # numeric result columns: ``result`` or ``result.KEY``
    kinds: dict[str, str] = field(
        default_factory=dict
    )  # parameter -> range | linspace | geomspace | values | list | rows | chunks
    counted: dict[str, int] = field(
        default_factory=dict, repr=False
    )  # parameter -> its distinct values

    def n_values(self, param: str) -> int:
        """How many distinct values ``param`` takes (counted once: a million rows take a while to hash)."""
        if param not in self.counted:
            self.counted[param] = int(self.frame[param].nunique(dropna=True))
        return self.counted[param]

    def is_numeric(self, column: str) -> bool:
        return is_numeric(self.frame[column])


@dataclass
class ReportData:
    name: str
    root: str
    info: dict
    manifest_text: str
    frame: Any  # the whole results table
    jobs: list[JobView]
    spans: list[
        tuple
    ]  # per task: (task_id, job, state, started, last call finished, finished, calls)
    counts: dict[str, int]
    holder: dict | None  # the live submitter, if any
    settings: ReportSettings = field(default_factory=ReportSettings)
    failure_groups: list | None = (
        None  # run_view_records.FailureGroup: failed calls grouped as ``status`` groups them
    )
    generated_at: float = field(default_factory=time.time)

    @property
    def n_calls(self) -> int:
        return len(self.frame)

    @property
    def n_finished(self) -> int:
        return int(self.frame["status"].isin(FINISHED).sum())

    @property
    def in_progress(self) -> bool:
        return self.n_finished + self.counts.get("cancelled", 0) < self.n_calls


def is_numeric(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


def _hashable(column):
    """Parameter values that are lists or mappings, as JSON text, so they can be grouped."""
    if column.dtype != object:
        return column
    return column.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v)


def param_columns(frame) -> list[str]:
    """The results table holds ``job, call, <parameters...>, status, result, ...``."""
    columns = list(frame.columns)
    return columns[columns.index("call") + 1 : columns.index("status")]


def result_columns(frame) -> list[str]:
    return [c for c in frame.columns if c == "result" or c.startswith("result.")]


def job_views(frame, kinds: dict[str, dict[str, str]] | None = None) -> list[JobView]:
    params = param_columns(frame)
    results = result_columns(frame)
    views = []
    for name in frame["job"].unique():  # in order of appearance
        rows = frame[frame["job"] == name].copy()
        own = [p for p in params if rows[p].notna().any()]
        for p in own:
            rows[p] = _hashable(rows[p])
        counted = {p: int(rows[p].nunique(dropna=True)) for p in own}
        varying = [p for p in own if counted[p] > 1]
        done = rows[rows["status"] == "succeeded"]
        typed = [r for r in results if is_numeric(rows[r])]
        present = (
            done[typed].notna().any() if typed else {}
        )  # one pass over a wide table, not one per column
        numeric = [r for r in typed if bool(present[r])]
        views.append(
            JobView(
                str(name), rows, own, varying, numeric, (kinds or {}).get(str(name), {}), counted
            )
        )
    return views


def task_spans(run) -> list[tuple]:
    """Each task's span from the ledger: submitted (a local task starts at once) to finished."""
    return [
        (t.task_id, t.job, t.state, t.submitted_at, None, t.finished_at, t.n_calls)
        for t in run.ledger.task_times()
    ]


def manifest_data(run, text: str) -> dict:
    """The run's manifest as data, with its ``--set`` overrides; ``{}`` if it cannot be read (the report goes on)."""
    from ..errors import HogError
    from ..manifest.overrides import apply_overrides, parse_override
    from ..manifest.yaml_source import load_yaml_text

    try:
        raw, _ = load_yaml_text(text)
        data, _ = apply_overrides(raw, [parse_override(o) for o in run.info.get("overrides") or []])
    except (HogError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def sweep_kinds(sweep: Any) -> dict[str, str]:
    """How the manifest sweeps each parameter: range, linspace, geomspace, values, list, rows or chunks."""
    found: dict[str, str] = {}
    for part in sweep if isinstance(sweep, list) else [sweep]:
        if not isinstance(part, dict):
            continue
        for group in ("product", "zip"):
            specs = part.get(group) if isinstance(part.get(group), dict) else {}
            for name, spec in specs.items():
                kind = next(
                    (
                        k
                        for k in ("range", "linspace", "geomspace", "values")
                        if isinstance(spec, dict) and k in spec
                    ),
                    "list",
                )
                found.setdefault(str(name), kind)
        rows = part.get("rows")
        for name in (rows.get("columns") or []) if isinstance(rows, dict) else []:
            found.setdefault(str(name), "rows")
        for name in part.get("chunks") if isinstance(part.get("chunks"), dict) else {}:
            found.setdefault(str(name), "chunks")
    return found


def job_kinds(data: dict, job_names: list[str]) -> dict[str, dict[str, str]]:
    """Job name -> its parameters' kinds; a job without its own ``sweep`` takes the top one (manifest order)."""
    entries = data.get("jobs") if isinstance(data.get("jobs"), list) else [{}]
    kinds = {}
    for name, entry in zip(job_names, entries, strict=False):
        sweep = (
            entry.get("sweep", data.get("sweep")) if isinstance(entry, dict) else data.get("sweep")
        )
        kinds[name] = sweep_kinds(sweep)
    return kinds


def load(run, options: dict | None = None) -> ReportData:
    """Everything the report needs from ``run`` (a :class:`groundhog_batch.api.Run`); ``options``: the command's."""
    frame = run.results()
    manifest = run.paths.manifest_snapshot
    text = manifest.read_text("utf-8", errors="replace") if manifest.is_file() else ""
    data = manifest_data(run, text)
    names = [str(job.get("name")) for job in run.info.get("jobs", [])]
    return ReportData(
        name=run.name,
        root=str(run.root),
        info=run.info,
        manifest_text=text,
        frame=frame,
        jobs=job_views(frame, job_kinds(data, names)),
        spans=task_spans(run),
        counts=run.counts(),
        holder=run.holder(),
        settings=from_manifest_data(data).with_options(options or {}),
        failure_groups=run.failure_groups(),
    )
