"""``python -m groundhog_batch``: the CLI."""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    # -m puts the current folder first on sys.path: a script there named random.py or json.py
    # must not stand in for the standard library module hog-batch itself imports.
    del sys.path[0]

from .launch import main  # noqa: E402

main(prog_name="hog-batch")
