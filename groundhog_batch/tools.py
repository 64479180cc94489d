"""The programs hog-batch starts by name (bash, git), found only where you put them.

An empty or relative ``PATH`` entry means the current folder, which may be a
shared one another user can write to: such entries are skipped, as the task
script skips them (docs/running.md, "What a task trusts").
"""

from __future__ import annotations

import os
import stat


def trusted_path(path: str | None = None) -> str:
    """``path`` (default: ``$PATH``) without its empty and relative entries."""
    entries = (path if path is not None else os.environ.get("PATH", os.defpath)).split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if os.path.isabs(entry))


def find_program(name: str) -> str:
    """``name``'s absolute path from the trusted PATH, or ``name`` itself (the start then fails as not found)."""
    for folder in trusted_path().split(os.pathsep):
        if not os.path.isabs(
            folder
        ):  # an empty PATH leaves one empty entry: never the current folder
            continue
        candidate = os.path.join(folder, name)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):  # as shutil.which decides
            return candidate
    return name
