"""The ``hog-batch`` command's entry: a plain ``validate`` or ``submit`` starts without importing click.

click (with the modules it pulls in) is about a tenth of the time these two take to start, and a short sweep
pays it before its first call. Their arguments are read here only when click would read them without a word:
each token a known option or the one manifest, nothing click would refuse or answer itself (help, a path of
the wrong kind, a value that looks like an option, a shell-completion request). Anything else goes to click
(``cli.py``), so help, usage errors and their exit codes are click's own, byte for byte. Either way the same
functions run (``cli_actions.py``), writing through ``console.echo``.
"""

from __future__ import annotations

import os
import stat
import sys

# option -> (parameter, kind): "flag" (True when given), "value" (the next token or after "="),
# "values" (a value that may be given again: a tuple, in order); what click's commands declare for them
OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "validate": {"--set": ("overrides", "values")},
    "submit": {
        "--local": ("local", "flag"),
        "--endpoint": ("endpoint", "value"),
        "--set": ("overrides", "values"),
        "--run-dir": ("run_dir", "value"),
        "--output": ("output", "value"),
        "-o": ("output", "value"),
        "--detach": ("detach", "flag"),
        "--report": ("with_report", "flag"),
        "--quiet": ("quiet", "flag"),
        "-q": ("quiet", "flag"),
        "--verbose": ("verbose", "flag"),
        "-v": ("verbose", "flag"),
    },
}
# What click's parameters default to, and which are paths of one kind: a file (not a folder) or a folder.
DEFAULTS: dict[str, dict[str, object]] = {
    "validate": {"overrides": ()},
    "submit": {
        "local": False,
        "endpoint": None,
        "overrides": (),
        "run_dir": None,
        "output": None,
        "reuse": None,
        "reuse_by": "script",
        "detach": False,
        "with_report": False,
        "max_failures": None,
        "quiet": False,
        "verbose": False,
    },
}
FILE_PATHS = ("manifest", "output")
FOLDER_PATHS = ("run_dir",)


def plain_arguments(args: list[str]) -> tuple[str, dict[str, object]] | None:
    """(command, its parameters as click would pass them) when ``args`` is a plain validate or submit; else None."""
    if not args or args[0] not in OPTIONS:
        return None
    command, options = args[0], OPTIONS[args[0]]
    params: dict[str, object] = dict(DEFAULTS[command])
    seen: set[str] = set()
    manifest = None
    rest = args[1:]
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            if manifest is not None:
                return None  # a second argument: click's error
            manifest = token
            continue
        name, equals, value = token.partition("=")
        if name not in options or (equals and not name.startswith("--")):
            return None  # help, --, an unknown or abbreviated option, -qv, -ofile: click's business
        param, kind = options[name]
        if kind == "flag":
            if equals:
                return None
        else:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            if value.startswith("-"):
                return None
        if kind == "flag":
            params[param] = True
        elif kind == "values":
            params[param] = (*params[param], value)  # type: ignore[misc]
        elif param in seen:
            return None  # a value given twice: leave it to click
        else:
            params[param] = value
            seen.add(param)
    if manifest is None:
        return None
    params = {"manifest": manifest, **params}
    for param in (*FILE_PATHS, *FOLDER_PATHS):
        path = params.get(param)
        if isinstance(path, str) and not _path_click_takes(path, folder=param in FOLDER_PATHS):
            return None
    return command, params


def _path_click_takes(path: str, folder: bool) -> bool:
    """click.Path(dir_okay=False) for a file, click.Path(file_okay=False) for a folder, need not exist:
    what is there must be of that kind and readable."""
    try:
        info = os.stat(path)
    except OSError:
        return True
    wrong = stat.S_ISREG(info.st_mode) if folder else stat.S_ISDIR(info.st_mode)
    return not wrong and os.access(path, os.R_OK)


def _completing() -> bool:
    """A shell asks for completions (_HOG_BATCH_COMPLETE=...): click answers."""
    return any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ)


def main(prog_name: str | None = None) -> None:
    """Run ``hog-batch`` with ``sys.argv``: a plain validate or submit directly, anything else through click."""
    from . import cli_actions
    from .console import plain_streams

    cli_actions.OWN_PROCESS[0] = (
        True  # this process is the command's own: its end may skip the teardown
    )
    plain = None if _completing() or not plain_streams() else plain_arguments(sys.argv[1:])
    if plain is None:
        from .cli import main as click_main

        click_main(prog_name=prog_name)
        return
    command, params = plain
    # What click's main does around a command: Ctrl-C outside the command's own handling is "Aborted!",
    # exit 1; a closed pipe there exits 1 quietly; a command that returns exits 0.
    try:
        cli_actions.start()
        getattr(cli_actions, command)(**params)
    except (EOFError, KeyboardInterrupt):
        from .console import echo

        echo("", err=True)
        echo("Aborted!", err=True)
        sys.exit(1)
    except BrokenPipeError:
        from click.utils import PacifyFlushWrapper  # as click does: nothing more is said

        sys.stdout = PacifyFlushWrapper(sys.stdout)
        sys.stderr = PacifyFlushWrapper(sys.stderr)
        sys.exit(1)
    sys.exit(0)
