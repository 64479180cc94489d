"""The ``hog-batch`` command: each command a few lines over the Python API.

Any HogError becomes one readable block on stderr and its exit code; an
interrupted run exits 130 and says how to resume it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import click

from .errors import EXIT_INTERRUPTED, EXIT_OK, HogError, os_error


def _fail(error: HogError) -> None:
    click.echo(error.render(), err=True)
    sys.exit(error.exit_code)


def user_errors(command):
    """Turn user errors into messages and exit codes, never tracebacks."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from .executor import Interrupted

        try:
            return command(*args, **kwargs)
        except HogError as error:
            _fail(error)
        except OSError as error:  # a path the user gave that cannot be made or written (--run-dir under a file, a full disk)
            _fail(os_error(error))
        except (KeyboardInterrupt, Interrupted) as stop:
            run_dir = getattr(stop, "run_dir", None)
            hint = f"; resume it with `hog-batch resume {run_dir}`" if run_dir else ""
            click.echo(f"interrupted: running tasks were stopped, finished results are kept{hint}", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


class ProgressBar:
    """Counts and ETA on a terminal; a short line now and then otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task(label, total=total, failed=0)
            self.bar.start()

    def __call__(self, counts: dict[str, int]) -> None:
        if self.bar is not None:
            done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
            self.bar.update(self.task, completed=done, failed=counts["failed"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary(counts: dict[str, int]) -> str:
    shown = [f"{counts[k]} {k}" for k in ("succeeded", "failed", "cancelled", "pending") if counts.get(k)]
    in_flight = counts.get("submitted", 0) + counts.get("running", 0)
    if in_flight:
        shown.append(f"{in_flight} in flight")
    return ", ".join(shown) or "no calls"


def _run_and_report(run, action, *, detach: bool = False) -> None:
    from .api import execute, exit_code

    click.echo(f"run directory: {run.root}", err=True)
    if detach:
        log = run.paths.submitter_log.open("ab")
        subprocess.Popen([sys.executable, "-m", "groundhog_batch", "resume", str(run.root)], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, cwd=os.getcwd())
        click.echo(f"detached: follow it with `hog-batch status {run.root}`", err=True)
        sys.exit(EXIT_OK)
    counts = run.counts()
    bar = ProgressBar(sum(counts.values()), run.name)
    try:
        counts = execute(run, bar, action)
    finally:
        bar.close()
    click.echo(f"{run.name}: {_summary(counts)}", err=True)
    failures = run.ledger.failures(limit=5)
    for job, call, error in failures:
        click.echo(f"  failed: {job} call {call}: {error}", err=True)
    if failures:
        click.echo(f"  details: hog-batch status {run.root}; re-run them: hog-batch retry {run.root}", err=True)
    if run.info.get("output"):
        click.echo(f"results: {run.info['output']}", err=True)
    sys.exit(exit_code(counts))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hog-batch")
def main() -> None:
    """Run a Python function over a sweep of arguments, locally or on HPC through Globus Compute."""


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a manifest key (YAML value).")
@user_errors
def validate(manifest: str, overrides: tuple[str, ...]) -> None:
    """Check a manifest: schema, script metadata, paths, endpoints. Exit 0 valid, 2 invalid."""
    from .manifest import load_manifest

    spec = load_manifest(manifest, overrides)
    click.echo(f"{manifest}: valid ({len(spec.jobs)} job(s), {spec.n_calls:,} call(s))")


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a manifest key (YAML value).")
@click.option("--endpoint", default=None, help="Run every job on this endpoint instead.")
@click.option("--local", is_flag=True, help="Plan for local execution.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--render", "render_index", type=int, default=None, metavar="N", help="Print task N's shell script.")
@user_errors
def plan(manifest: str, overrides, endpoint, local, as_json: bool, render_index: int | None) -> None:
    """Show what a manifest will run: jobs, calls, tasks, payload sizes, environments."""
    from .manifest import load_manifest
    from .plan import Plan
    from .plan_report import plan_report, render_task, text_report

    spec = load_manifest(manifest, overrides, "local" if local else endpoint)
    planned = Plan(spec)
    if render_index is not None:
        click.echo(render_task(planned, render_index), nl=False)
        return
    report = plan_report(planned)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else text_report(report))


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--local", is_flag=True, help="Run every job on this machine.")
@click.option("--endpoint", default=None, help="Run every job on this endpoint instead.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a manifest key (YAML value).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="Where to keep the run's state.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Also export the results here.")
@click.option("--reuse", type=click.Path(file_okay=False, exists=True), default=None,
              help="Take identical succeeded calls from this earlier run.")
@click.option("--detach", is_flag=True, help="Return at once; the run goes on in the background.")
@user_errors
def submit(manifest, local, endpoint, overrides, run_dir, output, reuse, detach) -> None:
    """Run a manifest. Exit 0 all calls succeeded, 1 some failed, 2 invalid input, 130 interrupted."""
    from .api import prepare

    if output:
        overrides = (*overrides, f"output={json.dumps(str(Path(output).absolute()))}")
    run = prepare(manifest, overrides, local=local, endpoint=endpoint, run_dir=run_dir, reuse=reuse)
    _run_and_report(run, "submit", detach=detach)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@user_errors
def resume(run_dir: str) -> None:
    """Finish what a run left unfinished; never re-runs a succeeded call."""
    from .api import Run

    _run_and_report(Run(run_dir), "resume")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@user_errors
def retry(run_dir: str) -> None:
    """Run a run's failed calls again."""
    from .api import Run

    _run_and_report(Run(run_dir), "retry")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def status(run_dir: str, as_json: bool) -> None:
    """Counts per state, and the failures with their first error line."""
    from .api import Run, refresh

    run = Run(run_dir)
    refresh(run)
    counts, by_job, failures, holder = run.counts(), run.ledger.counts_by_job(), run.ledger.failures(), run.holder()
    if as_json:
        click.echo(json.dumps({"run_dir": str(run.root), "name": run.name, "counts": counts, "jobs": by_job,
                               "active": holder, "failures": [{"job": j, "call": c, "error": e} for j, c, e in failures]}, indent=2))
        return
    click.echo(f"run {run.name} ({run.root})")
    if holder:
        click.echo(f"  running: pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                   f"{holder.get('action', '?')} since {holder.get('since', '?')}")
    else:
        click.echo("  not running")
    for job, job_counts in by_job.items():
        click.echo(f"  {job}: {_summary(job_counts)}")
    for job, call, error in failures:
        click.echo(f"  failed: {job} call {call}: {error}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Export here (.csv .tsv .parquet .json .jsonl).")
@user_errors
def collect(run_dir: str, output: str | None) -> None:
    """Export a run's results table (default: RUN_DIR/results.parquet)."""
    from .api import Run, refresh

    run = Run(run_dir)
    refresh(run)
    path = run.export(output)
    click.echo(f"{path} ({_summary(run.counts())})")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@user_errors
def cancel(run_dir: str) -> None:
    """Stop a run: running tasks are stopped, pending calls become cancelled."""
    from .api import cancel as cancel_run

    counts = cancel_run(run_dir)
    click.echo(f"cancelled: {_summary(counts)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def runs(as_json: bool) -> None:
    """List the runs under ./hog-runs."""
    from .api import list_runs

    found = list_runs()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no runs under ./hog-runs")
    for run in found:
        state = "running" if run["active"] else "idle"
        click.echo(f"{run['run_dir']}  {run['name']}  {run['started_at']}  {state}  {_summary(run['counts'])}")


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
