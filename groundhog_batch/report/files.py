"""Files calls wrote in their own directories (``workdir: call``), linked from the report.

Each link is relative to the report's folder when the file is on this machine
(RUN/calls/JOB/N/...), so a report copied with its run directory keeps working.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from ..run_paths import RunPaths
from .data import ReportData
from .numbers import number_text

MAX_CALLS_LISTED = 200
MAX_FILES_PER_CALL = 20


def _e(value) -> str:
    return html.escape(str(value))


def files_section(data: ReportData, report_dir: Path) -> str:
    """The section's HTML, or "" when no call listed files."""
    if "files" not in data.frame.columns:
        return ""
    rows = data.frame[data.frame["files"].notna()]
    if not len(rows):
        return ""
    paths = RunPaths(Path(data.root))
    params = {job.name: job.varying for job in data.jobs}
    lines = []
    for record in rows.head(MAX_CALLS_LISTED).to_dict("records"):
        job, call = str(record["job"]), int(record["call"])
        try:
            names = json.loads(record["files"])
        except (TypeError, ValueError):
            continue
        folder = paths.call_dirs(job) / str(call)
        links = []
        for name in names[:MAX_FILES_PER_CALL]:
            target = folder / name
            if name != "..." and target.is_file():
                href = quote(os.path.relpath(target, report_dir))
                links.append(f'<a href="{_e(href)}">{_e(name)}</a>')
            else:
                links.append(_e(name))
        if len(names) > MAX_FILES_PER_CALL:
            links.append(f"…and {len(names) - MAX_FILES_PER_CALL:,} more")
        shown = ", ".join(f"{p}={number_text(record.get(p))}" for p in params.get(job, []))
        lines.append(
            f"<tr><td>{_e(job)}</td><td class='n'>{call}</td><td>{_e(shown)}</td><td>{' '.join(links) or '(none)'}</td></tr>"
        )
    more = (
        (
            f'<p class="note">…and {len(rows) - MAX_CALLS_LISTED:,} more calls wrote files: their directories are under '
            f"{_e(paths.root / 'calls')}</p>"
        )
        if len(rows) > MAX_CALLS_LISTED
        else ""
    )
    return (
        "<h2 id='files'>Files the calls wrote</h2><p class='sub'>Each call ran in its own directory "
        "(<code>workdir: call</code>); the table's <code>files</code> column lists the same.</p>"
        "<table><tr><th>job</th><th>call</th><th>parameters</th><th>files</th></tr>"
        + "".join(lines)
        + "</table>"
        + more
    )
