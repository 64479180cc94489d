"""The files a run's calls depend on, hashed when the run starts and checked whenever it is planned again.

A run's calls are regenerated from its manifest snapshot and the files the
sweep reads (``rows:`` and ``chunks:`` files), so an edited file would give
calls other arguments than the ones already run, and a table whose parameters
are not what the function received. ``submit`` records a SHA-256 of each in
``run.json``; ``resume``, ``retry``, ``status`` and ``collect`` refuse a run
whose files changed, naming the file. The script itself is checked by its own
recorded hash. Python files beside the script (helper modules it may import)
are recorded too; a change there is only warned about, since hog-batch cannot
know whether the script imports them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from .datafiles import file_sha256
from .errors import RunError
from .manifest import RunSpec

MAX_HELPER_FILES = 200


def _sweep_files(node: Any) -> Iterator[str]:
    """Every ``file:`` a sweep section names (rows, chunks, in unions of sweep objects)."""
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            yield node["file"]
        for value in node.values():
            yield from _sweep_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _sweep_files(item)


def input_files(spec: RunSpec) -> dict[str, str]:
    """Path -> SHA-256 of each data file the sweeps read."""
    base_dir = spec.manifest_path.parent
    sections = [spec.data.get("sweep")]
    jobs = spec.data.get("jobs")
    if isinstance(jobs, list):
        sections += [job.get("sweep") for job in jobs if isinstance(job, dict)]
    found: dict[str, str] = {}
    for name in _sweep_files(sections):
        path = (base_dir / name).resolve()
        if str(path) not in found and path.is_file():
            found[str(path)] = file_sha256(path)
    return found


def helper_files(spec: RunSpec) -> dict[str, str]:
    """Path -> SHA-256 of the Python files beside each job's script (not the script: it has its own check)."""
    found: dict[str, str] = {}
    for job in spec.jobs:
        folder = job.script_path.parent
        try:
            candidates = sorted(folder.glob("*.py"))[:MAX_HELPER_FILES]
        except OSError:
            continue
        for path in candidates:
            if path != job.script_path and str(path) not in found and path.is_file():
                try:
                    found[str(path)] = file_sha256(path)
                except OSError:
                    continue
    return found


def record(spec: RunSpec) -> dict[str, dict[str, str]]:
    """What ``run.json`` keeps under ``inputs``."""
    return {"files": input_files(spec), "helpers": helper_files(spec)}


def _sha_now(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def check_files(inputs: Any, run_root: Path, recorded: Collection[str] = ()) -> None:
    """Refuse a run whose sweep files changed since it started (a run from before hashing has none).

    Files in ``recorded`` are not checked: the caller plans from the run's own record of them.
    """
    files = inputs.get("files") if isinstance(inputs, dict) else None
    if not isinstance(files, dict):
        return
    for name, recorded_sha in files.items():
        if name in recorded:
            continue
        now = _sha_now(Path(name))
        if now != recorded_sha:
            what = "is gone" if now is None else "changed"
            raise RunError(
                message=f"{name} {what} since this run started: the run's calls take their arguments from it",
                hint=f"restore the file as it was to go on with run {run_root}, "
                "or submit the manifest again as a new run with the new file",
            )


def changed_helpers(inputs: Any) -> list[str]:
    """The helper files (Python files beside a script) that changed or went since the run started."""
    helpers = inputs.get("helpers") if isinstance(inputs, dict) else None
    if not isinstance(helpers, dict):
        return []
    return [name for name, recorded in helpers.items() if _sha_now(Path(name)) != recorded]
