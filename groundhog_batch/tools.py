"""The programs hog-batch starts by name (bash, git), found only where you put them.

An empty or relative ``PATH`` entry means the current folder, which may be a
shared one another user can write to: such entries are skipped, as the task
script skips them (docs/running.md, "What a task trusts").
"""

from __future__ import annotations

import os
import shutil


def trusted_path(path: str | None = None) -> str:
    """``path`` (default: ``$PATH``) without its empty and relative entries."""
    entries = (path if path is not None else os.environ.get("PATH", os.defpath)).split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if os.path.isabs(entry))


def find_program(name: str) -> str:
    """``name``'s absolute path from the trusted PATH, or ``name`` itself (the start then fails as not found)."""
    return shutil.which(name, path=trusted_path()) or name
