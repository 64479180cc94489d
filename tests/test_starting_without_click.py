"""A plain `validate` or `submit` starts without importing click (issue 21): its arguments are read as click
reads them, and everything it prints, every error and exit code, is what click's way prints.

No timing here: parsed parameters, printed bytes and exit codes are compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from groundhog_batch.cli import main as click_main
from groundhog_batch.launch import plain_arguments

HEAD = "# /// script\n# dependencies = []\n# ///\n"
EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "01-grid" / "sweep.yaml"
# The same CLI with click doing all of the reading (what every command but a plain validate or submit does).
THROUGH_CLICK = (
    "import sys; del sys.path[0]; from groundhog_batch.cli import main; main(prog_name='hog-batch')"
)


def click_params(args: list[str]) -> dict | None:
    """The parameters click hands the command for ``args``, or None when click refuses or answers itself."""
    command = click_main.commands[args[0]]
    try:
        with command.make_context(args[0], list(args[1:])) as ctx:
            return dict(ctx.params)
    except (click.exceptions.Exit, click.UsageError, click.BadParameter):
        return None


ARGUMENTS = [
    ["validate", "sweep.yaml"],
    ["validate", "sweep.yaml", "--set", "a=1", "--set=b=2"],
    ["validate", "--set", "a=1", "sweep.yaml"],
    ["validate", "--set=", "sweep.yaml"],
    ["validate", ""],
    ["validate", "missing.yaml"],
    ["submit", "sweep.yaml", "--local"],
    ["submit", "sweep.yaml", "--local", "--run-dir", "run", "-q"],
    ["submit", "--run-dir=run", "sweep.yaml", "-o", "out.csv", "--report", "-v", "--detach"],
    ["submit", "sweep.yaml", "--endpoint", "ep", "--set", "x=1", "--set", "y=2", "--quiet"],
    ["submit", "sweep.yaml", "--output=out.csv", "--verbose", "--local", "--local"],
]
TO_CLICK = [
    ["validate"],
    ["validate", "-h"],
    ["validate", "sweep.yaml", "--help"],
    ["validate", "sweep.yaml", "other.yaml"],
    ["validate", "folder"],  # a folder where a file must be: click's error
    ["validate", "sweep.yaml", "--set"],
    ["validate", "sweep.yaml", "--se", "a=1"],
    ["validate", "--", "sweep.yaml"],
    ["validate", "sweep.yaml", "--set", "-x"],
    ["submit", "sweep.yaml", "-qv"],
    ["submit", "sweep.yaml", "-oout.csv"],
    ["submit", "sweep.yaml", "--local=yes"],
    ["submit", "sweep.yaml", "--run-dir", "sweep.yaml"],  # a file where a folder must be
    ["submit", "sweep.yaml", "--run-dir", "a", "--run-dir", "b"],
    ["submit", "sweep.yaml", "--reuse", "run"],
    ["submit", "sweep.yaml", "--max-failures", "2"],
    ["submit", "sweep.yaml", "--reuse-by", "function"],
    ["submit", "sweep.yaml", "--json"],
    ["plan", "sweep.yaml"],
    ["--version"],
    [],
]


def test_plain_arguments_are_read_as_click_reads_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.yaml").write_text("script: work.py\n")
    (tmp_path / "folder").mkdir()
    for args in ARGUMENTS:
        plain = plain_arguments(args)
        assert plain is not None, args
        assert plain == (args[0], click_params(args)), args
    for args in TO_CLICK:
        assert plain_arguments(args) is None, args


def run(root: Path, args: list[str], through_click: bool, env: dict | None = None):
    start = (
        [sys.executable, "-c", THROUGH_CLICK]
        if through_click
        else [sys.executable, "-m", "groundhog_batch"]
    )
    done = subprocess.run(
        [*start, *args],
        cwd=root,
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout, done.stderr


LOADED = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "sys.argv = ['hog-batch', *sys.argv[1:]]\n"
    "from groundhog_batch.launch import main\n"
    "main()\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["validate", str(EXAMPLE)],
        ["submit", "sweep.yaml", "--local", "--run-dir", "run", "-q"],
    ],
)
def test_a_plain_validate_or_submit_imports_no_click(project, args):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n")
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(__import__("json").loads(done.stderr.strip().splitlines()[-1]))
    assert sorted(name for name in loaded if name == "click" or name.startswith("click.")) == []


def test_what_a_plain_command_prints_and_exits_with_is_what_clicks_way_does(project):
    project.write(
        "work.py", HEAD + "def f(x):\n    if x == 2:\n        raise ValueError(x)\n    return x\n"
    )
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    # a name with an ANSI colour code: click strips it from what does not go to a terminal
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n", name="sw\x1b[31mep.yaml"
    )
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  produkt:\n    x: [1]\n", name="typo.yaml"
    )
    project.manifest(
        "script: work.py\nfunction: f  # REPLACE\nsweep:\n  product:\n    x: [1]\n"
        "report:\n  x: y\n",
        name="warned.yaml",
    )
    (project.root / "folder").mkdir()
    cases = [
        ["validate", str(EXAMPLE)],
        ["validate", "sweep.yaml", "--set", "sweep.product.x=[1, 2, 3]"],
        ["validate", "sw\x1b[31mep.yaml"],
        ["validate", "typo.yaml"],
        ["validate", "warned.yaml"],
        ["validate", "missing.yaml"],
        ["validate", "sweep.yaml", "--set", "sweep.product.x=["],
        ["validate", "folder"],
        ["validate", "sweep.yaml", "--help"],
        ["submit", "typo.yaml", "--local"],
        ["submit", "sweep.yaml", "--quiet", "--verbose", "--local"],
    ]
    for args in cases:
        assert run(project.root, args, through_click=False) == run(
            project.root, args, through_click=True
        ), args
    # a whole run, one call failing (exit 1): the same lines, but for the run folder's name
    plain = run(project.root, ["submit", "sweep.yaml", "--local", "--run-dir", "a", "-q"], False)
    clicked = run(project.root, ["submit", "sweep.yaml", "--local", "--run-dir", "b", "-q"], True)
    assert plain[0] == clicked[0] == 1
    assert plain[1] == clicked[1]
    assert plain[2].replace(b"/a", b"/b") == clicked[2], (plain, clicked)
    assert b"1 succeeded, 1 failed" in plain[2]
