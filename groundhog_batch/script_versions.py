"""Which version of its script produced each row of a run.

A run starts with one script per job (``run.json``: ``jobs[].script_sha256``).
``retry --accept-changed-script`` adds a version: ``run.json`` keeps
``script_versions: {job: [{"sha256": ..., "since": epoch seconds}]}``, and a
call that started at or after ``since`` ran that script (retries need the run
idle, so no task straddles the change). A record may also name its version
itself (``script_sha256``): calls taken from an earlier run by ``--reuse``,
and a call kept by ``debug --record``. The results table shows the version
of every row in its ``script_sha256`` column.

Times are the calls' own start times (``t0``), taken on the machine that ran
them: a remote node whose clock is behind the submitter's by more than the
time between a retry and its first call could have a row attributed to the
version before.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .errors import RunError
from .run_paths import write_atomic


def versions(info: dict, job: str) -> list[tuple[float, str | None]]:
    """(since, sha256) of each script the job ran, oldest first; the first is the one the run started with."""
    first = next(
        (entry.get("script_sha256") for entry in info.get("jobs", []) if entry.get("name") == job),
        None,
    )
    started = (info.get("script_versions") or {}).get(job) or []
    if started:  # the job's entry now holds the latest; the first version is kept with the list
        first = started[0].get("previous", first)
    return [(float("-inf"), first), *((float(v["since"]), v["sha256"]) for v in started)]


def version_of(
    record: dict[str, Any] | None, job_versions: list[tuple[float, str | None]]
) -> str | None:
    """The script version that produced ``record`` (None: no record, the call has not run)."""
    if not record:
        return None
    own = record.get("script_sha256")
    if own:
        return own
    started = record.get("t0")
    if started is None:
        started = record.get("t1")
    if started is None:
        return job_versions[-1][1]
    chosen = job_versions[0][1]
    for since, sha in job_versions:
        if started >= since:
            chosen = sha
    return chosen


def accept_changed_scripts(run) -> list[str]:
    """Record each job's script as it is now as the run's new version (the caller holds the run's lock).

    Returns the jobs whose script changed. The new script is snapshotted
    beside the original (``scripts/<job>.<sha256[:12]>.py``).
    """
    changed = []
    current = {job.name: job for job in run.sweep_spec().jobs}
    for entry in run.info["jobs"]:
        job = current.get(entry["name"])
        if job is None or job.script_sha256 == entry["script_sha256"]:
            continue
        history = run.info.setdefault("script_versions", {}).setdefault(job.name, [])
        history.append(
            {"sha256": job.script_sha256, "since": time.time(), "previous": entry["script_sha256"]}
        )
        entry["script_sha256"] = job.script_sha256
        write_atomic(
            run.paths.script_version_snapshot(job.name, job.script_sha256), job.script_text
        )
        changed.append(job.name)
    if changed:
        try:
            write_atomic(run.paths.run_info, json.dumps(run.info, indent=2, default=str))
        except OSError as exc:
            raise RunError(
                message=f"cannot record the new script version in {run.paths.run_info}: {exc.strerror}",
                hint="acting on a run needs write access to its directory",
            ) from None
        run._spec = None
    return changed


def mixed_versions(info: dict, frame) -> dict[str, dict[str, int]]:
    """Job -> {script sha256: rows} for jobs whose finished rows came from more than one script."""
    if frame is None or "script_sha256" not in getattr(frame, "columns", ()):
        return {}
    found: dict[str, dict[str, int]] = {}
    for job, rows in frame.dropna(subset=["script_sha256"]).groupby("job", sort=False):
        counts = rows["script_sha256"].value_counts()
        if len(counts) > 1:
            found[str(job)] = {str(sha): int(n) for sha, n in counts.items()}
    return found


__all__ = ["accept_changed_scripts", "mixed_versions", "version_of", "versions"]
