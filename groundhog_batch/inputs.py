"""The files a run's calls depend on, hashed when the run starts and checked whenever it is planned again.

A run's calls are regenerated from its manifest snapshot and the files the
sweep reads (``rows:`` and ``chunks:`` files), so an edited file would give
calls other arguments than the ones already run, and a table whose parameters
are not what the function received. ``submit`` records a SHA-256 of each in
``run.json``; ``resume``, ``retry``, ``status`` and ``collect`` refuse a run
whose files changed, naming the file. The script itself is checked by its own
recorded hash; so are the helper modules it imports from beside it (found
statically: ``resume`` and ``retry`` refuse when one changed, and ``--reuse``
takes no call whose helpers differ). The manifest snapshot and the overrides
are recorded as one digest, checked by every command that plans the calls
again (``collect``, ``logs``, ``report`` too).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
from collections.abc import Collection, Iterator
from pathlib import Path

from .datafiles import file_sha256
from .errors import RunError
from .ids import canonical_json
from .manifest import RunSpec
from .type_names import Any

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
    read = {name: rows.sha256 for job in spec.jobs for name, rows in job.sweep.rows_files.items()}
    found: dict[str, str] = {}
    for name in _sweep_files(sections):
        path = (base_dir / name).resolve()
        if str(path) in read:  # a rows file: the version the calls' arguments were read from
            found[str(path)] = read[str(path)]
        elif str(path) not in found and path.is_file():
            found[str(path)] = file_sha256(path)
    return found


def imported_helpers(
    script_path: Path, script_text: str, also_in: tuple[Path, ...] = ()
) -> list[Path]:
    """The Python files beside the script (or in ``also_in``) that it imports (``import helper``, ``from pkg.sub import x``),
    found statically and followed through the modules they import in turn; a package counts with all its files.

    A module imported only dynamically (``importlib``) is not found.
    """
    folders = list(
        dict.fromkeys([script_path.parent, *also_in])
    )  # the script's folder; the manifest's (PYTHONPATH=.)
    found: dict[Path, None] = {}
    todo = [script_text]
    while todo and len(found) < MAX_HELPER_FILES:
        try:
            tree = ast.parse(todo.pop())
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                modules = next(
                    (files for folder in folders if (files := _local_module_files(folder, top))), []
                )
                for path in modules:
                    if path not in found and path != script_path and len(found) < MAX_HELPER_FILES:
                        found[path] = None
                        with contextlib.suppress(OSError, UnicodeDecodeError):
                            todo.append(path.read_text("utf-8"))
    return list(found)


def _local_module_files(folder: Path, top: str) -> list[Path]:
    """``top.py`` in ``folder``, or every Python file of the package ``top/``; none when neither is there."""
    if not top.isidentifier():
        return []
    module = folder / f"{top}.py"
    with contextlib.suppress(OSError):
        if module.is_file():
            return [module]
        package = folder / top
        if (package / "__init__.py").is_file():
            return sorted(package.rglob("*.py"))[:MAX_HELPER_FILES]
    return []


def helper_files(spec: RunSpec) -> dict[str, str]:
    """Path -> SHA-256 of the helper modules each job's script imports from its folder or the manifest's
    (where ``PYTHONPATH=.`` finds them), not the script itself."""
    found: dict[str, str] = {}
    for job in spec.jobs:
        for path in imported_helpers(
            job.script_path, job.script_text, (spec.manifest_path.parent,)
        ):
            if str(path) not in found:
                try:
                    found[str(path)] = file_sha256(path)
                except OSError:
                    continue
    return found


def manifest_digest(manifest_text: str, overrides: list[str], endpoint: str | None) -> str:
    """What the run's calls are planned from besides its files: the manifest snapshot, the overrides, --endpoint."""
    return hashlib.sha256(canonical_json([manifest_text, overrides, endpoint]).encode()).hexdigest()


def record(spec: RunSpec, endpoint: str | None = None) -> dict[str, Any]:
    """What ``run.json`` keeps under ``inputs``."""
    return {
        "files": input_files(spec),
        "helpers": helper_files(spec),
        "manifest": manifest_digest(spec.manifest_text, spec.overrides, endpoint),
    }


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
    """The helper modules the scripts import that changed or went since the run started."""
    helpers = inputs.get("helpers") if isinstance(inputs, dict) else None
    if not isinstance(helpers, dict):
        return []
    return [name for name, recorded in helpers.items() if _sha_now(Path(name)) != recorded]


def check_helpers(inputs: Any, run_root: Path) -> None:
    """Refuse a run whose scripts' helper modules changed: calls before and after would run different code."""
    changed = changed_helpers(inputs)
    if changed:
        raise RunError(
            message=f"{changed[0]} changed since this run started: the script imports it, so calls run before and "
            "after the change would run different code",
            hint=f"restore it to go on with run {run_root}, or start a new run that takes what still holds: "
            f"`hog-batch submit MANIFEST --reuse {run_root}`",
        )


def check_manifest(
    inputs: Any, manifest_text: str, overrides: list[str], endpoint: str | None, run_root: Path
) -> None:
    """Refuse a run whose manifest snapshot or overrides (in run.json) were edited: they plan its calls."""
    recorded = inputs.get("manifest") if isinstance(inputs, dict) else None
    if recorded is None:  # a run from before this was recorded
        return
    if recorded != manifest_digest(manifest_text, overrides, endpoint):
        raise RunError(
            message="the run directory is damaged: its manifest snapshot or the overrides in run.json changed since "
            "the run started (the run's calls and their parameters are planned from them)",
            hint=f"restore {run_root}/manifest.yaml and run.json as they were, or submit the manifest again as a new run",
        )
