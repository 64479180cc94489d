"""Errors a user can cause, each carrying what went wrong, where, and the fix.

The CLI turns any :class:`HogError` into one readable block and its
``exit_code``; anything else is a bug in hog-batch and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EXIT_OK = 0
EXIT_CALLS_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM

KeyPath = tuple[str | int, ...]


def format_key_path(key_path: Sequence[str | int]) -> str:
    """``("sweep", "product", "n")`` -> ``sweep.product.n``; list items as ``[i]``."""
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + shorten(str(part), 60)
    return text


def shorten(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters, for echoing user input (a 5,000-character name) in a message."""
    text = str(text)
    return (
        text
        if len(text) <= limit
        else f"{text[: limit - 20]}...{text[-12:]} ({len(text):,} characters)"
    )


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is a file, not a folder."""
    for parent in path.parents:
        try:
            if parent.exists():
                return None if parent.is_dir() else parent
        except (OSError, ValueError):
            return None
    return None


def _folder_or_unusable(path: Path) -> str | None:
    """Why ``path`` cannot be a file: a folder is there, or the path itself is unusable; None otherwise."""
    try:
        if path.is_dir():
            return f"{shorten(str(path))} is a folder, not a file"
    except OSError as exc:
        return f"{shorten(str(path))} cannot be used: {exc.strerror}"
    except ValueError:
        return f"{shorten(str(path))} contains a NUL character"
    return None


def unreadable_file(path: Path) -> str | None:
    """Why ``path`` is not a file to read ("not found: ..."), or None when it is one."""
    try:
        if path.is_file():
            return None
    except (OSError, ValueError):
        pass
    problem = _folder_or_unusable(path)
    if problem:
        return problem
    blocker = _file_in_the_way(path)
    return f"not found: {shorten(str(path))}" + (
        f" ({shorten(str(blocker))} is a file, not a folder)" if blocker else ""
    )


def unwritable_file(path: Path) -> str | None:
    """Why a file cannot be created at ``path`` (a folder there, a file where a folder should be), or None."""
    problem = _folder_or_unusable(path)
    if problem:
        return problem
    blocker = _file_in_the_way(path)
    if blocker:
        return f"{shorten(str(path))} cannot be created: {shorten(str(blocker))} is a file, not a folder"
    return None


@dataclass
class HogError(Exception):
    """A user-facing error: what is wrong, where, and how to fix it."""

    message: str
    hint: str = ""
    file: str | Path | None = None
    line: int | None = None
    key_path: KeyPath = ()
    exit_code: int = EXIT_INVALID

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def where(self) -> str:
        place = ""
        if self.file is not None:
            place = str(self.file)
            if self.line is not None:
                place += f":{self.line}"
        if self.key_path:
            place += (" at " if place else "at ") + format_key_path(self.key_path)
        return place

    def render(self) -> str:
        head = f"error: {self.where}: {self.message}" if self.where else f"error: {self.message}"
        return head + (f"\n  fix: {self.hint}" if self.hint else "")

    def __str__(self) -> str:
        return self.render()


class ManifestError(HogError):
    """Something in a manifest, a script's metadata or an input file is wrong."""


@dataclass
class ManifestErrors(HogError):
    """Several manifest errors, reported together rather than one at a time."""

    errors: list[HogError] = field(default_factory=list)

    @classmethod
    def of(cls, errors: Iterable[HogError]) -> ManifestErrors:
        found = sorted(
            errors, key=lambda e: (str(e.file or ""), e.line or 0)
        )  # in the order of the file
        noun = "error" if len(found) == 1 else "errors"
        return cls(message=f"{len(found)} {noun} in the manifest", errors=found)

    def render(self) -> str:
        return "\n".join(error.render() for error in self.errors)


class RunError(HogError):
    """A run directory is missing, locked, or in a state that forbids the action."""


class RunInUse(RunError):
    """Another live hog-batch process holds the run's lock (``resume`` then follows it instead)."""


class BackendError(HogError):
    """The execution machinery (uv, bash, Globus Compute) could not do its part."""


def os_error(exc: OSError) -> HogError:
    """A file-system refusal (a file where a folder should be, no permission, a full disk) as a user error."""
    name = exc.filename
    what = f"{shorten(str(name))}: {exc.strerror or exc}" if name else str(exc.strerror or exc)
    blocker = _file_in_the_way(Path(name)) if isinstance(name, str | Path) else None
    if isinstance(exc, FileExistsError) and isinstance(name, str | Path) and Path(name).is_file():
        blocker = Path(name)  # a folder was to be made where a file is
    if blocker is not None:
        what += f" ({shorten(str(blocker))} is a file, not a folder)"
    return HogError(
        message=what,
        hint="choose a path whose folders exist or can be created, and that you may write to",
    )


_STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an I/O error",
}


def storage_error(exc: BaseException) -> HogError | None:
    """A disk or permission failure under the run (disk full, read-only, damaged ledger) as a HogError, else None."""
    sqlite3 = sys.modules.get("sqlite3")  # only what imported it can have raised its errors
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "full" in text:
            return RunError(
                message=f"the disk is full: cannot write the run's ledger ({text})",
                hint="the run is paused, and every call that finished is kept (in the ledger, or in its "
                "task's records file): free some space (or raise the quota), then `hog-batch resume` "
                "the run; no call runs twice",
            )
        if "readonly" in text or "unable to open" in text:
            return RunError(
                message=f"cannot write the run's ledger: {text}",
                hint="acting on a run needs write access to its directory",
            )
        return RunError(
            message=f"the run's ledger is damaged or unreadable: {text}",
            hint="it cannot be trusted: submit the manifest again into a new run directory",
        )
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return RunError(
            message=f"cannot write{where}: {_STORAGE_ERRNOS[exc.errno]}",
            hint="free some space, or pick a place you can write to (-o, --run-dir); "
            "a run stopped by this can be resumed",
        )
    return None


class Interrupted(Exception):
    """The submitter was interrupted; the run can be resumed (the CLI exits 130 and says how)."""

    def __init__(self, run_dir=None) -> None:
        super().__init__(f"interrupted: {run_dir}" if run_dir else "interrupted")
        self.run_dir = run_dir
