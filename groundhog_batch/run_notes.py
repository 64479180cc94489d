"""Short notes about a run's rows, for the report's summary: versions mixed, resources asked for and used.

- A job whose rows came from more than one version of its script
  (``retry --accept-changed-script``, ``--reuse``) says so, with the rows per version.
- Requested against used (Snakemake's efficiency report): per job, the
  longest call against its ``timeout``, the highest peak memory against its
  ``memory``, CPU time against wall time; calls that used less than 10% of
  what they asked for are counted, so the next run can ask for less.
"""

from __future__ import annotations

from typing import Any

LOW_USE = 0.10


def run_notes_rows(data: Any) -> list[tuple[str, str]]:
    """Rows for the report's summary (``report.SUMMARY_HOOKS``), from its ``ReportData``."""
    rows = [("script versions", note) for note in version_notes(data.info, data.frame)]
    usage = usage_notes(data.root, data.frame)
    if usage:
        rows.append(("asked for and used", "; ".join(usage)))
    return rows


def version_notes(info: dict, frame: Any) -> list[str]:
    from .script_versions import mixed_versions

    return [
        f"job {job} mixes script versions: "
        + ", ".join(f"{n:,} from {sha[:12]}" for sha, n in counts.items())
        + " (the script_sha256 column says which row ran which)"
        for job, counts in mixed_versions(info, frame).items()
    ]


def usage_notes(root: Any, frame: Any) -> list[str]:
    """Per job: the longest call against its timeout, the highest peak against its memory, CPU against wall."""
    from .api import Run

    try:
        run = Run(root)
        try:
            jobs = run.sweep_spec().jobs
        finally:
            run.close()
    except (
        Exception
    ):  # the notes are extra: a run whose sweep cannot be planned again still gets its report
        return []
    notes = []
    for job in jobs:
        rows = (
            frame[(frame["job"] == job.name) & frame["duration_s"].notna()]
            if "duration_s" in frame
            else None
        )
        if rows is None or rows.empty:
            continue
        notes.extend(_usage(job.name, rows, job.timeout_s, getattr(job, "memory_mib", None)))
    return notes


def _usage(job: str, rows: Any, timeout_s: float | None, memory_mib: float | None) -> list[str]:
    notes = []
    n = len(rows)
    if timeout_s:
        longest = float(rows["duration_s"].max())
        low = int((rows["duration_s"] < LOW_USE * timeout_s).sum())
        notes.append(
            f"job {job}: timeout {timeout_s:g} s requested, longest call {longest:.3g} s "
            f"({100 * longest / timeout_s:.0f}%)"
            + (f"; {low:,} of {n:,} calls used less than 10% of it" if low else "")
        )
    peaks = rows["max_rss_mib"].dropna() if "max_rss_mib" in rows else []
    if memory_mib and len(peaks):
        highest = float(peaks.max())
        low = int((peaks < LOW_USE * memory_mib).sum())
        notes.append(
            f"job {job}: memory {memory_mib:g} MiB requested, highest peak {highest:.0f} MiB "
            f"({100 * highest / memory_mib:.0f}%)"
            + (f"; {low:,} of {len(peaks):,} calls used less than 10% of it" if low else "")
        )
    cpu = rows["cpu_s"].dropna() if "cpu_s" in rows else []
    if len(cpu):
        wall = float(rows.loc[cpu.index, "duration_s"].sum())
        if wall > 0:
            notes.append(
                f"job {job}: {float(cpu.sum()):.3g} s of CPU in {wall:.3g} s of calls "
                f"({100 * float(cpu.sum()) / wall:.0f}% of one core)"
            )
    return notes


__all__ = ["run_notes_rows", "usage_notes", "version_notes"]
