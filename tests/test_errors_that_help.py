"""Errors at run time that say what to do: a missing module names the dependency to declare."""

from __future__ import annotations

SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import sklearn


def fit(x):
    return x
"""


def test_a_missing_module_says_which_dependency_to_add_to_the_script_header(project):
    project.write("fit.py", SCRIPT)
    project.manifest("script: fit.py\nfunction: fit\nsweep:\n  product:\n    x: [1]\n")
    done = project.cli("submit", "--local", "sweep.yaml")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        "ModuleNotFoundError: No module named 'sklearn' (while loading fit.py or its arguments)"
        in done.stderr
    )
    assert (
        'add "scikit-learn" to the dependencies in the script\'s "# /// script" block'
        in done.stderr
    )
