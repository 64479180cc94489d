"""Files shipped inside the package (the schemas, the task template, the runner), read as text.

Installed as plain files (as pip installs it), a file is read beside this module: that costs
one open, where ``importlib.resources`` imports tempfile, shutil, zipfile and the compression
modules first. From a zip, it goes through ``importlib.resources``.
"""

from __future__ import annotations

import os


def read_text(relative: str) -> str:
    """The shipped file at ``relative`` (a path under the package, with ``/``), as UTF-8 text."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), *relative.split("/"))
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):  # the package is in a zip
        from importlib import resources

        return resources.files("groundhog_batch").joinpath(relative).read_text("utf-8")
