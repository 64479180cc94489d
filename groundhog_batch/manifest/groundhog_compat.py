"""Groundhog scripts run unchanged: one that imports ``groundhog_hpc`` needs it in its environment.

A Groundhog script (``import groundhog_hpc as hog``, ``@hog.function()``)
often lists no dependencies: Groundhog's own runner brings its package. Here
the call runs in the script's uv environment, so without ``groundhog-hpc``
there every call would fail with ``ModuleNotFoundError``; ``validate`` says
so first, at the import's line, with what to add.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..errors import KeyPath, ManifestError

MODULE = "groundhog_hpc"
PACKAGE = "groundhog-hpc"


def _import_line(tree: ast.Module) -> int | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == MODULE for a in node.names):
            return node.lineno
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == MODULE
        ):
            return node.lineno
    return None


def missing_groundhog(
    tree: ast.Module, dependencies: tuple[str, ...] | list[str], script: Path, key_path: KeyPath
) -> ManifestError | None:
    """An error when the script imports groundhog_hpc and no dependency installs it."""
    line = _import_line(tree)
    if line is None:
        return None
    names = {
        re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;@]", d.strip(), maxsplit=1)[0]).lower()
        for d in dependencies
    }
    if PACKAGE in names:
        return None
    return ManifestError(
        message=f"{script.name} imports {MODULE}, which its environment does not install: every call would fail "
        f"with ModuleNotFoundError (the script is run in its own uv environment, not by Groundhog)",
        hint=f'add it to the script\'s metadata (# dependencies = ["{PACKAGE}"]) or to the manifest '
        f"(dependencies: [{PACKAGE}])",
        file=script,
        line=line,
        key_path=key_path,
    )
