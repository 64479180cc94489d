"""What `validate` and `submit` do, and the steps every command that runs calls shares, without click.

``cli.py`` parses the command line with click and calls these; ``launch.py`` calls the first two directly
when their arguments are plain (click's import is about a tenth of their start). Every line goes out through
``console.echo``, which is click's own ``echo`` once click is loaded: both ways print the same bytes.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

from .console import echo
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    HogError,
    os_error,
    storage_error,
)

EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as `cat` exits when its reader goes away
# Set by the entry point (launch.main): the command line runs this process, not a caller's main(args=...),
# so a command that ran calls may end it through process_end.exit_now.
OWN_PROCESS = [False]


def _warn_placeholders(spec) -> None:
    """Values `init` wrote as placeholders and nobody replaced: valid, but not what anyone means to run."""
    from .manifest.starter import placeholders_left

    for line, name, value in placeholders_left(spec.manifest_text):
        echo(
            f"warning: {spec.manifest_path.name}:{line}: {name}: {value} is still the placeholder `hog-batch init` "
            "wrote; put the values you mean there (and drop the REPLACE comment)",
            err=True,
        )


def _warn_report(spec) -> None:
    """A report: choice naming no parameter of any job (a typo) would be left out of every figure: say so now."""
    report = spec.data.get("report") if isinstance(spec.data, dict) else None
    if not isinstance(report, dict):
        return
    names = {name for job in spec.jobs for name in job.sweep.names}
    entries = [
        ("report", report),
        *(
            (f"report.figures.{i}", e)
            for i, e in enumerate(report.get("figures") or [])
            if isinstance(e, dict)
        ),
    ]
    for where, entry in entries:
        chosen = [(key, entry.get(key)) for key in ("x", "color", "facet")] + [
            ("replicates", name) for name in entry.get("replicates") or []
        ]
        for key, name in chosen:
            if isinstance(name, str) and name not in names:
                echo(
                    f"warning: {where}.{key}: {name!r} is not a swept parameter of any job "
                    f"({', '.join(sorted(names)) or 'none is swept'}); the report will not use it",
                    err=True,
                )


def _fail(error: HogError) -> None:
    echo(error.render(), err=True)
    sys.exit(error.exit_code)


def _pipe_closed() -> None:
    """The reader went away (``| head``): stop quietly, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is left in Python's buffer goes nowhere at exit
    sys.exit(EXIT_PIPE_CLOSED)


def _sqlite_error() -> type[Exception]:
    """sqlite3.Error once something imported sqlite3 (nothing else raises it): validate never needs it."""
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3.Error if sqlite3 is not None else OSError


def user_errors(command):
    """Turn user errors into messages and exit codes, never tracebacks."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from .errors import Interrupted

        try:
            return command(*args, **kwargs)
        except HogError as error:
            _fail(error)
        except BrokenPipeError:  # before OSError, of which it is one
            _pipe_closed()
        except (
            OSError,
            _sqlite_error(),
        ) as exc:  # a full disk, a damaged ledger, a path that cannot be made or written
            error = storage_error(exc)
            _fail(error if error is not None else os_error(exc))
        except (KeyboardInterrupt, Interrupted) as stop:
            run_dir = getattr(stop, "run_dir", None)
            hint = f"; resume it with `hog-batch resume {run_dir}`" if run_dir else ""
            how = "terminated (SIGTERM)" if _terminated else "interrupted"
            echo(f"{how}: running tasks were stopped, finished results are kept{hint}", err=True)
            sys.exit(EXIT_TERMINATED if _terminated else EXIT_INTERRUPTED)

    return wrapper


_terminated = False


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (what schedulers and `kill` send) stops the command as Ctrl-C does, once."""
    global _terminated
    if not _terminated:
        _terminated = True
        raise KeyboardInterrupt()


def _verbosity(quiet: bool, verbose: bool):
    from .console import Verbosity

    if quiet and verbose:
        raise HogError(
            message="--quiet and --verbose contradict each other", hint="give one of them"
        )
    return Verbosity.QUIET if quiet else Verbosity.VERBOSE if verbose else Verbosity.NORMAL


def _note(verbosity, text: str) -> None:
    """An informational line on stderr, unless --quiet."""
    if verbosity.value > 0:
        echo(text, err=True)


def _display(run, verbosity):
    from .console import ProgressDisplay
    from .run_view import progress

    return ProgressDisplay(run.name, progress(run.ledger), verbosity, run.ledger)


class _LazyDisplay:
    """The progress display, made at its first news (after every check of the command has passed)."""

    def __init__(self, run, verbosity) -> None:
        self.run, self.verbosity, self.display = run, verbosity, None

    def __call__(self, counts: dict[str, int]) -> None:
        if self.display is None:
            self.display = _display(self.run, self.verbosity)
        self.display(counts)

    def say(self, line: str) -> None:
        if self.display is not None:
            self.display.say(line)

    def environments_ready(self) -> None:
        if self.display is not None:
            self.display.environments_ready()

    def close(self) -> None:
        if self.display is not None:
            self.display.close()


def _drive(
    run,
    action: str,
    verbosity,
    max_failures: int | None = None,
    selection=None,
    report: bool = False,
) -> None:
    """Run the run in this process with a progress display, then report like submit."""
    from .api import execute

    output = run.output
    if output is not None and output.exists() and not run.output_written():
        echo(
            f"note: {output} exists and will be overwritten when this run ends; put {{run}} or {{timestamp}} "
            "in `output:` to keep each run's results",
            err=True,
        )
    display = _LazyDisplay(
        run, verbosity
    )  # shown once the run starts: a refused retry prints no progress line
    try:
        counts = execute(run, display, action, max_failures=max_failures, selection=selection)
    finally:
        display.close()
    if report:
        _write_report(run)
    try:
        _report_end(run, counts, max_failures)
    except SystemExit as done:
        if OWN_PROCESS[0]:  # what exit shows, without freeing the run's heap object by object
            from .process_end import exit_now

            exit_now(done.code)
        raise


def _write_report(run, path: str | None = None, options: dict | None = None) -> None:
    written = run.report(path, **(options or {}))
    note = (
        f" ({written.finished:,} of {written.calls:,} calls finished so far)"
        if written.finished < written.calls
        else ""
    )
    echo(
        f"report: {written.path} ({written.size_mb:.1f} MB, built in {written.build_s:.1f} s){note}",
        err=True,
    )
    for line in written.notes:  # each once, however many figures it concerns
        echo(f"  note: {line}", err=True)


def _report_end(run, counts: dict[str, int], max_failures: int | None = None) -> None:
    """The summary every way of running ends with (submit, resume, retry, following): counts, failures, exit code."""
    from .api import exit_code
    from .run_view import failure_groups, summary
    from .status_report import failure_lines

    echo(f"{run.name}: {summary(counts)}", err=True)
    groups = failure_groups(run.ledger)  # grouped as `status` groups them
    for line in failure_lines(
        groups, len(run.info.get("jobs", [])) > 1, more_command=f"hog-batch status --all {run.root}"
    ):
        echo(line, err=True)
    if groups:
        echo(
            f"  details: hog-batch status {run.root}; what they printed: hog-batch logs {run.root} --failed; "
            f"re-run them: hog-batch retry {run.root}",
            err=True,
        )
    unfinished = counts.get("pending", 0) + counts.get("submitted", 0) + counts.get("running", 0)
    if run.halted:
        echo(
            f"stopped early: {max_failures} call(s) failed (--max-failures {max_failures}); {unfinished} call(s) "
            f"not run are still pending: finish them with `hog-batch resume {run.root}`",
            err=True,
        )
    elif unfinished and run.holder() is None:
        echo(
            f"{unfinished} call(s) are unfinished: finish them with `hog-batch resume {run.root}`",
            err=True,
        )
    if run.output is not None and run.output.exists():
        echo(f"results: {run.output}", err=True)
    sys.exit(exit_code(counts))


def _detach(run, verbosity) -> None:
    """Return once the run's tasks are accepted (a batch queue: nothing stays here), or drive the run from a
    background process (its log: submitter.log) and return once that holds the run."""
    from .api import dispatch, run_kind
    from .handle import drive_in_background

    submitted = dispatch(run)
    if submitted is not None:
        _note(
            verbosity,
            f"submitted {submitted} task(s) to {run_kind(run).service}; nothing of the run goes on here, "
            f"so you may log out. Follow it with `hog-batch status --watch {run.root}`; finish what it leaves "
            f"(calls stopped by a walltime) with `hog-batch resume {run.root}`",
        )
        sys.exit(EXIT_OK)
    child = drive_in_background(run)
    _note(
        verbosity,
        f"running in the background (pid {child.pid}; its log: {run.paths.submitter_log}): "
        f"watch it with `hog-batch status --watch {run.root}`, stop it with `hog-batch cancel {run.root}`",
    )
    sys.exit(EXIT_OK)


def start() -> None:
    """What every command does first (the click group's callback)."""
    from .console import install

    install()  # errors, output and names from user code never drive the terminal
    signal.signal(signal.SIGTERM, _on_sigterm)


@user_errors
def validate(manifest: str, overrides: tuple[str, ...]) -> None:
    """Check a manifest: schema, script metadata, paths, endpoints. Exit 0 valid, 2 invalid."""
    from .manifest import load_manifest

    spec = load_manifest(manifest, overrides)
    echo(f"{manifest}: valid ({len(spec.jobs)} job(s), {spec.n_calls:,} call(s))")
    _warn_placeholders(spec)
    _warn_report(spec)


@user_errors
def submit(
    manifest,
    local,
    endpoint,
    overrides,
    run_dir,
    output,
    reuse,
    reuse_by,
    detach,
    with_report,
    max_failures,
    quiet,
    verbose,
) -> None:
    """Run a manifest. Exit 0 all calls succeeded, 1 some failed, 2 invalid input, 130 interrupted."""
    from .api import prepare

    verbosity = _verbosity(quiet, verbose)
    if output:
        overrides = (*overrides, f"output={json.dumps(str(Path(output).absolute()))}")
    if detach and max_failures is not None:
        raise HogError(
            message="--max-failures does not go with --detach",
            hint="submit without --detach, or stop the detached run with `hog-batch cancel`",
        )
    if reuse_by != "script" and reuse is None:
        raise HogError(
            message="--reuse-by goes with --reuse",
            hint="name the earlier run: --reuse RUN_DIR --reuse-by function",
        )
    run = prepare(
        manifest,
        overrides,
        local=local,
        endpoint=endpoint,
        run_dir=run_dir,
        reuse=reuse,
        reuse_by=reuse_by,
    )
    _note(verbosity, f"run directory: {run.root}")
    if reuse is not None:
        _note(
            verbosity, f"reused {run.reused} of {sum(run.counts().values())} call(s) from {reuse}"
        )
    if detach:
        if with_report:
            raise HogError(
                message="--report does not go with --detach: the report is written when the run ends",
                hint=f"write it whenever you like, also while the run goes on: hog-batch report {run.root}",
            )
        _detach(run, verbosity)
    _drive(run, "submit", verbosity, max_failures, report=with_report)
