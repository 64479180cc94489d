"""The ``hog-batch`` command: each command a few lines over the Python API.

Any HogError becomes one readable block on stderr and its exit code; an
interrupted run exits 130 and says how to resume it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import cli_actions
from .cli_actions import (  # noqa: F401 - the steps the commands share, imported where they were
    EXIT_PIPE_CLOSED,
    _detach,
    _display,
    _drive,
    _note,
    _report_end,
    _verbosity,
    _write_report,
    user_errors,
)
from .errors import EXIT_INTERRUPTED, EXIT_OK, HogError, RunInUse


def _run_dir(run_dir: str | None, command: str) -> str:
    """The run named, or the latest under ./hog-runs, said on stderr so nobody guesses which."""
    if run_dir:
        return run_dir
    from .errors import RunError
    from .run_paths import RUNS_FOLDER, latest_run_dir

    latest = latest_run_dir()
    if latest is None:
        raise RunError(
            message=f"no run named, and no run under ./{RUNS_FOLDER} here to take the latest of",
            hint=f"name one: hog-batch {command} RUN_DIR (submit prints it; `hog-batch runs` in the folder "
            "you submitted from lists them)",
        )
    shown = os.path.relpath(latest)
    click.echo(f"the latest run: {shown} (another: hog-batch {command} RUN_DIR)", err=True)
    return str(latest)


def _is_call_ref(text: str) -> bool:
    """``17`` or ``JOB:17``: a call, not a run directory."""
    return text.rpartition(":")[2].isdigit()


def _pairs(values: tuple[str, ...], option: str, what: str) -> dict[str, str]:
    found = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise HogError(
                message=f"{option} {text!r} is not NAME={what}",
                hint=f"e.g. {option} 'omega0=ω₀ (rad/s)'"
                if option == "--label"
                else f"e.g. {option} result.loss=min",
            )
        found[key.strip()] = value.strip()
    return found


def _names(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for text in values for name in text.split(",") if name.strip()]


def _follow(run, verbosity) -> None:
    """Watch the live process that drives the run until it ends; Ctrl-C stops watching, never the run."""
    from .api import follow

    display = None
    try:
        from .run_view import holder_text

        _note(
            verbosity,
            f"following: {holder_text(run.holder() or {})}; Ctrl-C stops watching, not the run",
        )
        display = _display(run, verbosity)
        counts = follow(run, display)
    except KeyboardInterrupt:
        if display is not None:
            display.close()
        click.echo(
            f"stopped watching; the run goes on. Watch again with `hog-batch status --watch {run.root}`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if display is not None:
            display.close()
    _report_end(run, counts)


def _watch_detached(run) -> None:
    """Follow tasks that run without a submitter (a detached Slurm run) until they end; Ctrl-C stops watching only."""
    from .api import watch
    from .console import Verbosity

    display = _display(run, Verbosity.NORMAL)
    try:
        watch(run, display)
    except KeyboardInterrupt:
        display.close()
        click.echo(
            f"stopped watching; the run goes on. Watch again with `hog-batch status --watch {run.root}`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        display.close()


def running_options(command):
    """--quiet, --verbose and --max-failures, for every command that runs calls."""
    options = [
        click.option(
            "--max-failures",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Stop after N calls fail; the rest stays pending for `resume`.",
        ),
        click.option(
            "--quiet", "-q", is_flag=True, help="No progress; only errors and the final summary."
        ),
        click.option(
            "--verbose",
            "-v",
            is_flag=True,
            help="Also each failure as it happens, and progress lines.",
        ),
    ]
    for option in options:
        command = option(command)
    return command


class _Group(click.Group):
    """Bare ``hog-batch`` prints the help and exits 0."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # (shell completion parses resiliently)
            click.echo(ctx.get_help())
            ctx.exit(EXIT_OK)
        return super().parse_args(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hog-batch")
def main() -> None:
    """Run a Python function over a sweep of arguments, locally or on HPC through Globus Compute.

    Shell completion: eval "$(_HOG_BATCH_COMPLETE=bash_source hog-batch)" in ~/.bashrc (zsh_source, fish_source).
    """
    cli_actions.start()


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a manifest key (YAML value).",
)
def validate(manifest: str, overrides: tuple[str, ...]) -> None:
    """Check a manifest: schema, script metadata, paths, endpoints. Exit 0 valid, 2 invalid."""
    cli_actions.validate(manifest, overrides)


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a manifest key (YAML value).",
)
@click.option("--endpoint", default=None, help="Run every job on this endpoint instead.")
@click.option("--local", is_flag=True, help="Plan for local execution.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--render",
    "render_index",
    type=int,
    default=None,
    metavar="N",
    help="Print task N's shell script.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run N calls of each job here (spread over the sweep) and estimate the whole from them.",
)
@user_errors
def plan(
    manifest: str,
    overrides,
    endpoint,
    local,
    as_json: bool,
    render_index: int | None,
    sample: int | None,
) -> None:
    """Show what a manifest will run: jobs, calls, tasks, payload sizes, environments, and what it will cost
    (from earlier runs of the same script under ./hog-runs, or from --sample N calls run here)."""
    from .estimate import call_times, estimate, estimate_lines, remember_samples, sizing_call_times
    from .manifest import load_manifest
    from .plan import Plan
    from .plan_report import plan_report, render_task_and_wrapper, text_report

    spec = load_manifest(manifest, overrides, "local" if local else endpoint)
    if render_index is not None:
        from .console import write_exact

        # Tasks sized as `submit` would size them (by a call's time, where one is known).
        planned = Plan(spec, call_times=sizing_call_times(spec))
        script, wrapper = render_task_and_wrapper(planned, render_index)
        write_exact(script)  # the script that runs, byte for byte, on every backend
        if wrapper:
            click.echo(wrapper, nl=False, err=True)
        return
    if sample:
        _note(
            _verbosity(False, False),
            f"running {sample} call(s) of each job here to estimate the rest...",
        )
    estimates = estimate(spec, sample or 0)
    if sample:
        remember_samples(spec, estimates)  # a later `submit` sizes its tasks by it
    planned = Plan(spec, call_times=call_times(spec, estimates=estimates))
    report = plan_report(planned)
    if as_json:
        known = [e.as_dict() for e in estimates if e.source != "none"]
        # Without earlier runs or --sample there is nothing to estimate: the JSON plan stays as it was.
        for job in report["jobs"]:
            if job["name"] not in planned.call_times:
                del job["task_sizing"]
        click.echo(
            json.dumps({**report, **({"estimate": known} if known else {})}, indent=2, default=str)
        )
        return
    click.echo(text_report(report))
    for line in estimate_lines(estimates):
        click.echo(line)


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--local", is_flag=True, help="Run every job on this machine.")
@click.option("--endpoint", default=None, help="Run every job on this endpoint instead.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a manifest key (YAML value).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to keep the run's state.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also export the results here ({run} and {timestamp} are filled in).",
)
@click.option(
    "--reuse",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Take identical succeeded calls from this earlier run.",
)
@click.option(
    "--reuse-by",
    type=click.Choice(["script", "function"]),
    default="script",
    show_default=True,
    help="With --reuse: what of the code must be unchanged: the script's bytes, or the function's own code "
    "(it cannot see helpers or module-level state it uses).",
)
@click.option("--detach", is_flag=True, help="Return at once; the run goes on in the background.")
@click.option(
    "--report", "with_report", is_flag=True, help="Also write the HTML report, RUN_DIR/report.html."
)
@running_options
def submit(**params) -> None:
    """Run a manifest. Exit 0 all calls succeeded, 1 some failed, 2 invalid input, 130 interrupted."""
    cli_actions.submit(
        **params
    )  # the parameters click declares above, by name (launch.py reads the same)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option(
    "--detached-submit", is_flag=True, hidden=True
)  # the background process of `submit --detach`
@running_options
@user_errors
def resume(run_dir: str, detached_submit: bool, max_failures, quiet, verbose) -> None:
    """Finish what a run left unfinished; never re-runs a succeeded call.

    On a run another live hog-batch process drives (`submit --detach`), follow it instead until it ends.
    """
    from .api import Run

    run, verbosity = Run(_run_dir(run_dir, "resume")), _verbosity(quiet, verbose)
    if run.holder() is None:
        try:
            _drive(run, "submit" if detached_submit else "resume", verbosity, max_failures)
            return
        except RunInUse:  # taken in the meantime
            pass
    _follow(run, verbosity)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change a setting for the retried calls (timeout=600, retries=2, ...); recorded in run.json.",
)
@click.option("--job", default=None, help="Only this job's failed calls.")
@click.option(
    "--error",
    "error_type",
    default=None,
    metavar="TYPE",
    help="Only calls that failed with this error type (as `status` shows it: ValueError, TimeoutError, WorkerDied, TaskFailed, ...).",
)
@click.option(
    "--accept-changed-script",
    is_flag=True,
    help="Run them with the script as it is now; each row's script_sha256 says which version produced it.",
)
@running_options
@user_errors
def retry(
    run_dir: str, settings, job, error_type, accept_changed_script, max_failures, quiet, verbose
) -> None:
    """Run a run's failed calls again: all, or those --job and --error select, optionally with --set changes."""
    from .api import Run
    from .retry_selection import RetrySelection

    run, verbosity = Run(_run_dir(run_dir, "retry")), _verbosity(quiet, verbose)
    selection = RetrySelection(job, error_type, tuple(settings), accept_changed_script)
    _drive(run, "retry", verbosity, max_failures, selection)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option(
    "--all", "show_all", is_flag=True, help="Every failed call, not the first few of each error."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (complete with --all)."
)
@click.option(
    "--watch", is_flag=True, help="Follow a running run until it ends; then exit as submit would."
)
@user_errors
def status(run_dir: str, show_all: bool, as_json: bool, watch: bool) -> None:
    """Counts per job and state; failures grouped by error with counts."""
    from .api import Run, exit_code, refresh
    from .console import Verbosity
    from .status_report import status_json, status_text

    run = Run(_run_dir(run_dir, "status"))
    if watch and run.holder() is not None:
        _follow(run, Verbosity.NORMAL)  # exits
    if watch:
        _watch_detached(run)
    refresh(run)
    if as_json:
        click.echo(json.dumps(status_json(run, show_all), indent=2))
    else:
        for line in status_text(run, show_all):
            click.echo(line)
    if watch:
        sys.exit(exit_code(run.counts()))


@main.command()
@click.argument("refs", nargs=-1, metavar="[RUN] [CALL]...")
@click.option("--job", default=None, help="Only this job's calls (a CALL is then its index).")
@click.option("--failed", is_flag=True, help="Only failed calls.")
@click.option(
    "--stream",
    type=click.Choice(["stdout", "stderr", "traceback"]),
    default=None,
    help="Only this, as it was printed (for pipes and files).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Control characters as printed, byte for byte, to a pipe or file (a terminal still gets them escaped).",
)
@user_errors
def logs(
    refs: tuple[str, ...], job: str | None, failed: bool, stream: str | None, raw: bool
) -> None:
    """What calls printed and raised, as plain text. CALL is an index (0, 17) or JOB:INDEX; default: every call.

    RUN defaults to the latest run under ./hog-runs. Control characters (terminal escapes, carriage
    returns) are shown escaped, as \\x1b, unless --raw writes to a pipe or a file.
    """
    from .api import Run
    from .console import write_exact
    from .run_paths import RunPaths
    from .status_report import format_call_log

    named = bool(refs) and (
        RunPaths(Path(refs[0]).absolute()).exists() or not _is_call_ref(refs[0])
    )
    run_dir = _run_dir(refs[0] if named else None, "logs")
    calls = refs[1:] if named else refs

    headers = stream is None or len(calls) != 1
    shown = 0
    for log in Run(run_dir).logs(calls, job, failed):
        text = format_call_log(log, stream, headers)
        if raw:
            write_exact(text)
        else:
            click.echo(text, nl=False)
        shown += 1
    if not shown:
        click.echo("no failed calls" if failed else "no calls", err=True)


@main.command()
@click.argument("target", type=click.Path())
@click.argument("call_ref", required=False, metavar="[CALL]")
@click.option(
    "--call", "call_option", default=None, metavar="N", help="The call (an index, or JOB:INDEX)."
)
@click.option("--job", default=None, help="The job the call is of (when there are several).")
@click.option(
    "--pdb",
    "use_pdb",
    is_flag=True,
    help="Open the debugger where the call raises, in its environment.",
)
@click.option(
    "--record",
    is_flag=True,
    help="Keep the call's result in the run (RUN only; the run must be idle).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a manifest key (MANIFEST only).",
)
@user_errors
def debug(
    target: str,
    call_ref: str | None,
    call_option: str | None,
    job: str | None,
    use_pdb: bool,
    record: bool,
    overrides: tuple[str, ...],
) -> None:
    """Run one call here, in the foreground, in its own environment, with its real arguments.

    TARGET is a run directory (`hog-batch debug RUN 17`) or a manifest (`hog-batch debug sweep.yaml --call 17`,
    before any run). Output streams to the terminal; the result is printed, and kept in the run only with
    --record. Exit 0 if the call succeeded, 1 if it raised.
    """
    from .debug import debug_run_call, run_call
    from .run_paths import RunPaths

    ref = call_ref if call_ref is not None else call_option
    if ref is None or (call_ref is not None and call_option is not None):
        raise HogError(
            message="give one call: `hog-batch debug TARGET N` or `--call N`",
            hint="N is the call's index in the results table (JOB:N when there are several jobs)",
        )
    name, _, index_text = ref.rpartition(":")
    job = name or job
    try:
        index = int(index_text)
    except ValueError:
        raise HogError(
            message=f"{ref!r} is not a call number", hint="give the call's index, e.g. 17 or fit:17"
        ) from None
    if RunPaths(Path(target).absolute()).exists():
        from .api import Run

        if overrides:
            raise HogError(
                message="--set goes with a manifest, not a run",
                hint="a run's settings are its own: `hog-batch retry RUN --set ...` changes them",
            )
        done = debug_run_call(Run(target), job, index, use_pdb, record)
    else:
        from .manifest import load_manifest

        if record:
            raise HogError(
                message="--record needs a run: a manifest has nowhere to keep the result",
                hint=f"submit it first, then `hog-batch debug RUN {ref} --record`",
            )
        done = run_call(load_manifest(target, overrides, "local"), job, index, use_pdb)
    params = ", ".join(f"{key}={value!r}" for key, value in done.params.items())
    click.echo(
        f"{done.job} call {done.call} ({params}): " + ("returned" if done.ok else "raised"),
        err=True,
    )
    click.echo(done.shown if done.ok else done.record.get("error") or "")
    if record:
        click.echo(f"recorded in {target}", err=True)
    sys.exit(done.exit_code)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Export here (.csv .tsv .parquet .json .jsonl).",
)
@click.option(
    "--report", "with_report", is_flag=True, help="Also write the HTML report, RUN_DIR/report.html."
)
@user_errors
def collect(run_dir: str, output: str | None, with_report: bool) -> None:
    """Export a run's results table (default: RUN_DIR/results.parquet)."""
    from .api import Run, refresh

    run = Run(_run_dir(run_dir, "collect"))
    refresh(run)
    from .run_view import summary

    path = run.export(output)
    click.echo(f"{path} ({summary(run.counts())})")
    if with_report:
        _write_report(run)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the report here (default: RUN_DIR/report.html).",
)
@click.option("--x", "x", default=None, metavar="PARAM", help="The x axis of the result figures.")
@click.option(
    "--color",
    default=None,
    metavar="PARAM",
    help="One line (or heatmap row) per value of this parameter.",
)
@click.option(
    "--facet", default=None, metavar="PARAM", help="One panel per value of this parameter."
)
@click.option(
    "--replicates",
    multiple=True,
    metavar="PARAM[,PARAM]",
    help="Aggregate over these: mean with a 95% interval, single calls faint behind.",
)
@click.option(
    "--interval",
    type=click.Choice(["band", "bars"]),
    default=None,
    help="How the 95% interval is drawn.",
)
@click.option(
    "--log-x/--no-log-x",
    default=None,
    help="Logarithmic x axis (default: for a geomspace parameter).",
)
@click.option("--log-y/--no-log-y", default=None, help="Logarithmic y axis.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME=TEXT",
    help="A label with units: 'omega0=ω₀ (rad/s)'.",
)
@click.option(
    "--best", multiple=True, metavar="COLUMN=min|max", help="Name the best call in the summary."
)
@click.option(
    "--results",
    "result_names",
    multiple=True,
    metavar="COLUMN[,COLUMN]",
    help="Which results get a figure, in this order.",
)
@user_errors
def report(
    run_dir: str,
    output: str | None,
    x,
    color,
    facet,
    replicates,
    interval,
    log_x,
    log_y,
    labels,
    best,
    result_names,
) -> None:
    """One self-contained HTML report: a summary, results against parameters, failures, durations, task timeline,
    provenance.

    The options take the keys of the manifest's `report:` section and win over it. The report opens offline
    (the plotting code is inside the file) and works on a run still going.
    """
    from .api import Run, refresh

    best_pairs = _pairs(best, "--best", "min|max")
    wrong = {k: v for k, v in best_pairs.items() if v not in ("min", "max")}
    if wrong:
        raise HogError(
            message=f"--best {next(iter(wrong))}={next(iter(wrong.values()))}: say min or max",
            hint="e.g. --best result.loss=min",
        )
    options = {
        "x": x,
        "color": color,
        "facet": facet,
        "replicates": _names(replicates) or None,
        "interval": interval,
        "log_x": log_x,
        "log_y": log_y,
        "labels": _pairs(labels, "--label", "TEXT"),
        "best": best_pairs,
        "results": _names(result_names),
    }
    run = Run(_run_dir(run_dir, "report"))
    refresh(run)
    _write_report(run, output, options)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@user_errors
def cancel(run_dir: str) -> None:
    """Stop a run: running tasks are stopped, pending calls become cancelled."""
    from .api import cancel as cancel_run
    from .api import open_run
    from .run_view import Progress, summary

    run_dir = _run_dir(run_dir, "cancel")
    run = open_run(run_dir)
    try:
        before, held = run.counts(), run.holder() is not None
    finally:
        run.close()
    if not held and not before["pending"] and not Progress(before).in_flight:
        click.echo(f"nothing to cancel: the run had already finished ({summary(before)})")
        return
    counts = cancel_run(run_dir)
    click.echo(f"cancelled: {summary(counts)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def runs(as_json: bool) -> None:
    """List the runs under ./hog-runs, with their progress and age."""
    from .api import list_runs
    from .status_report import runs_lines

    found = list_runs()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no runs under ./hog-runs")
    for run in found:
        for line in (
            [f"{run['run_dir']}  damaged: {run['error']}"]
            if run.get("error")
            else runs_lines([run])
        ):
            click.echo(line)


@main.command()
@click.argument("script", type=click.Path(dir_okay=False))
@click.argument("function", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the manifest (default: the script's name with .yaml, here).",
)
@user_errors
def init(script: str, function: str | None, output: str | None) -> None:
    """Write a starter manifest for FUNCTION in SCRIPT, from its signature; never overwrites a file."""
    from .manifest.starter import write_starter

    path = write_starter(script, function, output)
    click.echo(
        f"wrote {path}: put the values to try under sweep.product, then `hog-batch validate {path}`"
    )


@main.command()
@user_errors
def login() -> None:
    """Log in to Globus (for Globus Compute endpoints)."""
    from .globus.auth import login as do_login

    click.echo(do_login())


@main.command()
@user_errors
def logout() -> None:
    """Forget the stored Globus tokens."""
    from .globus.auth import logout as do_logout

    click.echo(do_logout())


@main.command()
@user_errors
def whoami() -> None:
    """Show the Globus identity hog-batch uses."""
    from .globus.auth import whoami as do_whoami

    click.echo(do_whoami())


if __name__ == "__main__":
    sys.exit(main())
