"""The Python API: everything the CLI does, as functions over manifests and run directories."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, inputs
from .backends import registry
from .backends.base import Backend, BackendContext, BackendKind, JobTarget, MetaSlice
from .datafiles import file_sha256
from .errors import EXIT_CALLS_FAILED, EXIT_OK, BackendError, HogError, RunError, RunInUse
from .executor import Executor, Interrupted, recover_abandoned, unreported_lines
from .ids import canonical_json
from .ledger import SUCCEEDED as SUCCEEDED_CODE
from .ledger import CallState, Ledger
from .manifest import RunSpec, load_manifest
from .plan import Plan, iter_calls
from .run_lock import RunLock
from .run_paths import (
    RUNS_FOLDER,
    RunPaths,
    fsync_file,
    make_private_dir,
    new_run_dir,
    write_atomic,
)
from .run_view import selected_failures
from .sweep import planning_from_run_records
from .tools import find_program
from .type_names import TYPE_CHECKING

if TYPE_CHECKING:
    from .retry_selection import RetrySelection

Progress = Callable[[dict[str, int]], None]


class Run:
    """A run directory: its plan, its ledger, its results."""

    def __init__(self, root: str | Path) -> None:
        self.paths = RunPaths(Path(root).absolute())
        if not self.paths.exists():
            raise RunError(
                message=f"{root} is not a hog-batch run directory (no {self.paths.run_info.name})",
                hint="`hog-batch runs` lists the runs under the current folder; a run stopped while it "
                "was being planned ran nothing: submit it again",
            )
        self.info = _read_run_info(self.paths)
        # A run directory the user cannot write (an archive, another user's) is still read: status, collect -o.
        self.ledger = Ledger(self.paths.ledger, read_only=not os.access(self.paths.root, os.W_OK))
        try:
            _check_ledger_jobs(self.paths, self.info, self.ledger)
        except RunError:
            self.ledger.close()
            raise
        self._spec: RunSpec | None = None
        self._sweep_spec: RunSpec | None = None
        self.reused = 0  # calls taken from an earlier run by ``prepare(..., reuse=...)``
        self.halted = False  # the last execute() stopped early at ``max_failures``
        self.retried = 0  # failed calls the last retry made pending again

    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def name(self) -> str:
        return self.info["name"]

    def counts(self) -> dict[str, int]:
        return self.ledger.counts()

    def results(self, objects: bool = False):
        """The results table as a pandas DataFrame, one row per call in plan order.

        Pickled results are shown as ``<type, pickled>`` and never unpickled,
        unless ``objects=True``: then the ``result`` column holds the returned
        objects themselves, and unpickling runs code from the run directory
        (trust it as you trust the script).
        """
        from .results import results_frame

        return results_frame(self, objects=objects)

    def report(self, path: str | Path | None = None, **options):
        """Write the run's HTML report (default ``RUN/report.html``); works while the run is still going.

        ``options`` take the keys of the manifest's ``report:`` (x, color, facet, replicates, log_x, log_y,
        labels, best, results) and win over it.
        """
        from .report import write_report

        return write_report(self, path if path is not None else self.paths.report, options)

    def figures(self, **options) -> dict[str, object]:
        """The report's Plotly figures by key, for a notebook (``results/<job>/<column>``, ``time/...``)."""
        from .report import figures

        return figures(self, options)

    def iter_rows(self, batch_size: int = 20_000):
        """The results table in batches (dicts of column lists), streamed: memory bounded by a batch."""
        from .results import iter_row_batches

        return iter_row_batches(self, batch_size)

    def export(self, path: str | Path | None = None) -> Path:
        """Write the results table (streamed, atomically) in the format the suffix names."""
        from .results import export_table

        target = Path(path) if path else self.paths.default_results()
        return export_table(self, target.absolute())

    def sweep_spec(self, live_files: bool = False) -> RunSpec:
        """The run's manifest as far as its calls go (the sweep), even if a script changed since.

        Its data files are read from the run's records (a copy of each rows file,
        the row counts of chunked files), so a finished run is still read after
        they moved; with ``live_files``, from the files themselves, unchanged.
        """
        if self._spec is not None:
            return self._spec
        if live_files:
            inputs.check_files(self.info.get("inputs"), self.root)
        if self._sweep_spec is None:
            rows_copies, chunk_rows = self._recorded_data()
            inputs.check_files(
                self.info.get("inputs"), self.root, recorded=[*rows_copies, *chunk_rows]
            )
            with planning_from_run_records(rows_copies, chunk_rows):
                spec = load_manifest(
                    self.info["manifest_path"],
                    self.info["overrides"],
                    self.info.get("endpoint"),
                    text=self._manifest_snapshot(),
                )
            self._check_calls(spec)
            self._sweep_spec = spec
        return self._sweep_spec

    def _recorded_data(self) -> tuple[dict[str, Path], dict[str, int]]:
        """The run's copies of its rows files (intact ones) and its chunked files' row counts, by original path."""
        copies: dict[str, Path] = {}
        for name, sha in (self.info.get("rows_copies") or {}).items():
            copy = self.paths.rows_snapshot(sha, Path(name).suffix)
            try:
                if file_sha256(copy) == sha:
                    copies[name] = copy
            except OSError:
                continue
        counts = {
            name: n for name, n in (self.info.get("chunk_rows") or {}).items() if isinstance(n, int)
        }
        return copies, counts

    def _check_calls(self, spec: RunSpec) -> None:
        """The sweep regenerates the run's calls: it must still have as many as the run planned."""
        planned = self.ledger.jobs()
        for job in spec.jobs:
            if job.name in planned and planned[job.name] != job.n_calls:
                raise RunError(
                    message=f"job {job.name!r} now expands to {job.n_calls:,} calls, but this run planned "
                    f"{planned[job.name]:,}: an input of its sweep (a rows or data file, the manifest) changed",
                    hint="restore the inputs the run started with, or submit the manifest again as a new run",
                )

    def failure_groups(self) -> list:
        """The failed calls grouped by job and type of error, largest group first (``status`` shows these)."""
        from .run_view import failure_groups

        return failure_groups(self.ledger)

    def logs(self, calls: Sequence[int | str] = (), job: str | None = None, failed: bool = False):
        """What calls printed and raised (``CallLog``: stdout, stderr, traceback, error), in plan order.

        ``calls`` are call numbers (of ``job``, or of the only job) or ``"JOB:N"``; none means every call.
        """
        from .run_view import call_logs, job_sizes, parse_call_refs

        sizes = job_sizes(self.ledger)
        if job is not None and job not in sizes:
            raise RunError(
                message=f"this run has no job {job!r}", hint=f"its jobs: {', '.join(sizes)}"
            )
        selected = parse_call_refs([str(call) for call in calls], sizes, job) if calls else None
        return call_logs(self, selected, job, failed)

    def spec(self) -> RunSpec:
        """The run's manifest (its snapshot), resolved again; the scripts must be unchanged."""
        if self._spec is None:
            self._spec = self._load_spec()
        return self._spec

    def _manifest_snapshot(self) -> str:
        try:
            text = self.paths.manifest_snapshot.read_text("utf-8")
            inputs.check_manifest(
                self.info.get("inputs"),
                text,
                self.info["overrides"],
                self.info.get("endpoint"),
                self.root,
            )
            return text
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(
                message=f"the run's manifest snapshot {self.paths.manifest_snapshot} cannot be read "
                f"({getattr(exc, 'strerror', None) or exc})",
                hint="the run's calls are planned from it: restore it (a copy of the manifest the run was "
                "submitted with), or submit the manifest again as a new run",
            ) from None

    def _load_spec(self) -> RunSpec:
        inputs.check_files(self.info.get("inputs"), self.root)
        inputs.check_helpers(self.info.get("inputs"), self.root)
        spec = load_manifest(
            self.info["manifest_path"],
            self.info["overrides"],
            self.info.get("endpoint"),
            text=self._manifest_snapshot(),
        )
        self._check_calls(spec)
        spec.recorded_inputs = dict((self.info.get("inputs") or {}).get("files") or {})
        for job in spec.jobs:  # the rows read now are the rows the run planned with
            for name, rows in job.sweep.rows_files.items():
                if spec.recorded_inputs.get(name, rows.sha256) != rows.sha256:
                    raise RunError(
                        message=f"{name} changed since this run started: the run's calls take their "
                        "arguments from it",
                        hint=f"restore the file as it was to go on with run {self.root}, "
                        "or submit the manifest again as a new run with the new file",
                    )
        recorded = {job["name"]: job for job in self.info["jobs"]}
        for job in spec.jobs:
            before = recorded.get(job.name)
            if before and before["script_sha256"] != job.script_sha256:
                raise RunError(
                    message=f"{job.script_path} changed since this run started (job {job.name!r})",
                    hint=f"restore it (the original is in {self.paths.script_snapshot(job.name)}), run the failed "
                    f"calls with the new script: `hog-batch retry {self.root} --accept-changed-script`, "
                    f"or start a new run with `hog-batch submit ... --reuse {self.root}`",
                )
        return spec

    def lock(self, action: str) -> RunLock:
        return RunLock(self.paths.lock).acquire(action)

    def holder(self) -> dict | None:
        return RunLock(self.paths.lock).holder()

    @property
    def output(self) -> Path | None:
        """Where each run of it exports the results table (``output:`` with ``{run}``/``{timestamp}`` filled in)."""
        return Path(self.info["output"]) if self.info.get("output") else None

    def output_written(self) -> bool:
        """Whether this run has written its ``output`` file already (so writing it again overwrites nothing else)."""
        return bool(self.ledger.get_meta("output_written", False))

    def close(self) -> None:
        self.ledger.close()


RUN_INFO_FIELDS = {"name": str, "manifest_path": str, "overrides": list, "jobs": list}
RUN_INFO_JOB_FIELDS = {"name": str, "endpoint": str, "script_sha256": str, "n_calls": int}


def _read_run_info(paths: RunPaths) -> dict:
    """``run.json``, checked: a damaged one is an error naming the file, never a traceback."""
    try:
        info = json.loads(paths.run_info.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(
            message=f"{paths.run_info} cannot be read ({getattr(exc, 'strerror', None) or exc})",
            hint="the run cannot be used without it; submit the manifest again as a new run",
        ) from None
    problems = (
        [] if isinstance(info, dict) else [f"it holds a JSON {type(info).__name__}, not an object"]
    )
    for key, kind in RUN_INFO_FIELDS.items():
        if not problems and not isinstance(info.get(key), kind):
            problems.append(f"{key!r} is missing or not a {kind.__name__}")
    if not problems and not all(
        isinstance(job, dict) and isinstance(job.get("name"), str) for job in info["jobs"]
    ):
        problems.append("'jobs' does not list the run's jobs")
    for i, job in enumerate(info["jobs"] if not problems else []):
        for key, kind in RUN_INFO_JOB_FIELDS.items():
            if not problems and (
                not isinstance(job.get(key), kind) or isinstance(job.get(key), bool)
            ):
                problems.append(f"job {i} ({job['name']!r}) has no {key!r} ({kind.__name__})")
    if problems:
        raise RunError(
            message=f"the run directory is damaged: {paths.run_info}: {problems[0]}",
            hint="the run cannot be used without it; submit the manifest again as a new run",
        )
    return info


def _check_ledger_jobs(paths: RunPaths, info: dict, ledger: Ledger) -> None:
    """The ledger holds the jobs run.json lists, with as many calls: else one of them was damaged or replaced."""
    try:
        planned = ledger.jobs()
    except sqlite3.DatabaseError as exc:
        raise RunError(
            message=f"the run directory is damaged: its ledger {paths.ledger} cannot be read ({exc})",
            hint="it cannot be trusted: submit the manifest again into a new run directory",
        ) from None
    recorded = {job["name"]: job["n_calls"] for job in info["jobs"]}
    if planned != recorded:
        missing = [name for name in recorded if name not in planned]
        what = (
            f"its ledger {paths.ledger} has no job {missing[0]!r}, which {paths.run_info.name} lists"
            if missing
            else f"its ledger {paths.ledger} and {paths.run_info.name} disagree on the jobs and their calls "
            f"({planned} against {recorded})"
        )
        raise RunError(
            message=f"the run directory is damaged: {what}",
            hint="it cannot be trusted: submit the manifest again into a new run directory",
        )


def _platform_name() -> str:
    """What ``platform.platform()`` says on Linux ("Linux-6.1.0-18-amd64-x86_64-with-glibc2.36"), without
    the ``uname -p`` process it starts to ask for a processor name it then leaves out."""
    if not sys.platform.startswith("linux"):
        import platform

        return platform.platform()
    system, _, release, _, machine = os.uname()
    try:
        libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").replace(" ", "")
    except (ValueError, OSError, AttributeError):  # not glibc, or no confstr
        libc = ""
    return f"{system}-{release}-{machine}" + (f"-with-{libc}" if libc else "")


def _may_be_in_git(folder: Path) -> bool:
    """Whether git could find a repository for ``folder``: a ``.git`` (or a bare repository) in it or a parent,
    or GIT_DIR set. Where none is, git would only fail: its two processes are not started."""
    if os.environ.get("GIT_DIR"):
        return True
    for place in (folder, *folder.parents):
        if os.path.lexists(place / ".git") or (
            os.path.isfile(place / "HEAD") and os.path.isdir(place / "objects")
        ):
            return True
    return False


def _provenance(spec: RunSpec) -> dict:
    def git_commit(folder: Path) -> str | None:
        if not _may_be_in_git(folder.absolute()):
            return None
        try:
            git = find_program("git")
            done = subprocess.run(
                [git, "-C", str(folder), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            if done.returncode != 0:
                return None
            dirty = subprocess.run(
                [git, "-C", str(folder), "status", "--porcelain"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            return done.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
        except (OSError, subprocess.TimeoutExpired):
            return None

    data_files = {}
    for job in spec.jobs:
        for source in job.sweep.chunk_sources.values():
            if source.file is not None:
                data_files[str(source.file)] = file_sha256(source.file)
    return {
        "hog_batch_version": __version__,
        "python": sys.version.split()[0],
        "platform": _platform_name(),
        "host": os.uname().nodename,
        "user": getpass.getuser(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "scripts": {
            job.name: {
                "path": str(job.script_path),
                "sha256": job.script_sha256,
                "git_commit": git_commit(job.script_path.parent),
            }
            for job in spec.jobs
        },
        "environments": {
            job.name: {
                "env_id": job.environment.env_id,
                "requires_python": job.environment.requires_python,
                "dependencies": list(job.environment.dependencies),
            }
            for job in spec.jobs
        },
        "data_files": data_files,
    }


def call_keyer(
    job,
    script_sha256: str | None = None,
    file_hashes: dict[str, str] | None = None,
    helpers: dict[str, str] | None = None,
) -> Callable:
    """Identity of a job's calls across runs: same script, function, arguments and environment.

    The job's part is hashed once; each call adds only its own parameters,
    and for a chunk, the content of its data file. ``script_sha256`` and
    ``file_hashes`` are what a run recorded (default: the files as they are now);
    ``helpers`` the helper modules its scripts import, with their hashes.
    """
    job_part = canonical_json(
        {
            "script": script_sha256 or job.script_sha256,
            "function": job.function,
            "env": job.environment.env_id,
            "args": job.args,
            "kwargs": job.kwargs,
            "helpers": helpers or {},
        }
    ).encode()
    sources = job.sweep.chunk_sources
    file_hashes = dict(file_hashes or {})
    for source in sources.values():
        if source.file is not None and str(source.file.resolve()) not in file_hashes:
            file_hashes[str(source.file.resolve())] = file_sha256(source.file)

    def key(call) -> str:
        digest = hashlib.sha256(job_part)
        chunks = (
            {
                name: [
                    file_hashes.get(str(source.file.resolve()))
                    if source.file is not None
                    else None,
                    source.bounds[call.params[name]],
                ]
                for name, source in sources.items()
                if name in call.params
            }
            if sources
            else {}
        )
        digest.update(canonical_json([call.params, chunks]).encode())
        return digest.hexdigest()[:32]

    return key


def create_run(
    spec: RunSpec, run_dir: str | Path | None = None, endpoint: str | None = None
) -> Run:
    """Make the run directory: snapshot, provenance, and every planned call in the ledger."""
    kind = registry.of_run(spec)
    plan = Plan(spec)
    for job in spec.jobs:  # payload limits are checked before anything exists
        if plan.payload_budget_bytes(job):
            for _ in plan.tasks(job):
                pass
    root = Path(run_dir).absolute() if run_dir else new_run_dir(spec.name)
    paths = RunPaths(root)
    if paths.exists():
        raise RunError(
            message=f"{root} already holds a run",
            hint=f"resume it with `hog-batch resume {root}`, or pick another --run-dir",
        )
    make_private_dir(root)
    write_atomic(paths.manifest_snapshot, spec.manifest_text)
    recorded_inputs = inputs.record(spec, endpoint)
    chunk_rows = {
        str(source.file): source.bounds[-1][1]
        for job in spec.jobs
        for source in job.sweep.chunk_sources.values()
        if source.file is not None
    }
    rows_copies = {
        name: sha for name, sha in recorded_inputs["files"].items() if name not in chunk_rows
    }
    read = {name: rows.content for job in spec.jobs for name, rows in job.sweep.rows_files.items()}
    for (
        name,
        sha,
    ) in rows_copies.items():  # collect and logs plan the calls from these copies: the bytes read
        write_atomic(
            paths.rows_snapshot(sha, Path(name).suffix),
            read[name] if name in read else Path(name).read_bytes(),
        )
    spec.recorded_inputs = dict(
        recorded_inputs["files"]
    )  # chunks are cut from data checked against these
    for job in spec.jobs:
        write_atomic(paths.script_snapshot(job.name), job.script_text)
    info = {
        "name": spec.name,
        "manifest_path": str(spec.manifest_path),
        "overrides": spec.overrides,
        "endpoint": endpoint,  # --local / --endpoint, applied again when the run is resumed
        "backend": kind.name,  # the kind every job's endpoint resolved to (backends.registry)
        "jobs": [
            {
                "name": job.name,
                "script_sha256": job.script_sha256,
                "n_calls": job.n_calls,
                "endpoint": job.endpoint.reference,
                "kind": job.endpoint.kind,
                "env_id": job.environment.env_id,
            }
            for job in spec.jobs
        ],
        "output": fill_output_template(spec.output, root) if spec.output else None,
        "inputs": recorded_inputs,  # checked whenever the run's calls are planned again
        "rows_copies": rows_copies,  # rows file -> SHA-256 of its copy in the run directory
        "chunk_rows": chunk_rows,  # chunked data file -> its row count (all collect and logs need of it)
        "provenance": _provenance(spec),
    }
    ledger = Ledger(
        paths.ledger, create=True
    )  # the plan itself is not stored: the sweep regenerates it
    try:
        ledger.add_jobs((job.name, job.n_calls) for job in spec.jobs)
    finally:
        ledger.close()  # its WAL folded into state.sqlite, which is made durable now, whole, before run.json
    fsync_file(paths.ledger)
    write_atomic(
        paths.run_info, json.dumps(info, indent=2, default=str)
    )  # last: its presence marks a complete run dir
    run = Run(root)
    run._spec = spec
    return run


def fill_output_template(output: Path, root: Path) -> str:
    """``output:`` with ``{run}`` (the run directory's name) and ``{timestamp}`` (UTC, like 20261121T121748Z)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return str(output).replace("{run}", root.name).replace("{timestamp}", stamp)


def run_kind(run: Run) -> BackendKind:
    """The backend kind the run's jobs were planned for, as run.json records it.

    A run directory from before kinds were recorded ran locally, or (any job
    not local) on Globus Compute.
    """
    name = run.info.get("backend")
    if not isinstance(name, str):
        name = "globus" if any(job["endpoint"] != "local" for job in run.info["jobs"]) else "local"
    return registry.kind(name)


def backend_context(run: Run, kind: BackendKind, plan: Plan | None = None) -> BackendContext:
    """What the run's backend receives: its scratch and working dirs, its slice of the run's metadata, its jobs."""

    def load_jobs() -> dict[str, JobTarget]:
        planned = plan or Plan(run.spec())
        return {
            job.name: JobTarget(
                job.name,
                job.endpoint,
                planned.script_template(job),
                planned.limits(job),
                job.max_parallel,
            )
            for job in planned.jobs
        }

    return BackendContext(
        scratch_dir=run.paths.task_scratch,
        working_dir=Path(run.info["manifest_path"]).parent,
        meta=MetaSlice(run.ledger, f"{kind.name}_"),
        load_jobs=load_jobs,
    )


def make_backend(run: Run, plan: Plan | None = None) -> Backend:
    """The backend the run's jobs were planned for (recorded in run.json)."""
    kind = run_kind(run)
    return kind.open(backend_context(run, kind, plan))


def refresh(run: Run) -> bool:
    """Take in results of remote tasks a run left in flight, when no submitter is following them; True if it did.

    ``status`` and ``collect`` call this, so a detached or killed remote run
    shows every result the service holds, any day later.
    """
    kind = run_kind(run)
    if (
        not kind.tasks_outlive_submitter
        or run.holder() is not None
        or not run.ledger.tasks_in_flight()
    ):
        return False
    try:
        lock = run.lock("refresh")
    except RunError:  # a submitter took it in the meantime: it is following the tasks
        return False
    with lock:
        plan = Plan(run.spec())
        try:
            Executor(plan, run.ledger, make_backend(run, plan), run.paths).harvest()
        except BackendError as exc:  # the ledger still answers; say why it may be behind
            import sys

            print(
                f"hog-batch: could not ask {kind.service} for results ({exc.message}); "
                "showing what the run directory holds",
                file=sys.stderr,
            )
            return False
    return True


def execute(
    run: Run,
    on_progress: Progress | None = None,
    action: str = "submit",
    *,
    max_failures: int | None = None,
    selection: RetrySelection | None = None,
) -> dict[str, int]:
    """Run what the ledger says is pending, holding the run's lock; return the final counts.

    ``action`` is submit, resume (cancelled calls are pending again) or retry
    (the failed calls ``selection`` picks are pending again, with its settings
    recorded in run.json); the reset happens under the lock. With
    ``max_failures`` it stops early (``run.halted``) once that many calls failed.
    """
    try:
        with run.lock(action):
            if action == "retry" and selection is not None and selection.accept_changed_script:
                from .script_versions import accept_changed_scripts

                accept_changed_scripts(run)
            spec = run.spec()  # every check first: a refused command leaves the run as it was
            if action == "resume":
                run.ledger.reset_cancelled()
            elif action == "retry":
                from .retry_selection import RetrySelection

                _reset_for_retry(run, selection or RetrySelection())
                spec = run.spec()  # with the retry's settings
            if on_progress is not None:  # where this execution starts from, after the reset
                on_progress(run.counts())
            # `auto` tasks sized by a call's time where one is known (earlier runs here, a `plan --sample`);
            # a kind without a target task length (local) needs none, nor the estimate module
            call_times = {}
            if registry.sized_by_call_times(spec):
                from .estimate import sizing_call_times

                call_times = sizing_call_times(spec)
            plan = Plan(spec, call_times=call_times)
            backend = make_backend(run, plan)
            try:
                if hasattr(
                    backend, "build_environments"
                ):  # local: said while built, not a bar stuck at 0
                    backend.build_environments(
                        environment_builds(plan, run), say=getattr(on_progress, "say", None)
                    )
                    getattr(on_progress, "environments_ready", lambda: None)()
                executor = Executor(plan, run.ledger, backend, run.paths, on_progress, max_failures)
                counts = executor.run()
                run.halted = executor.halted
                plan.check_data_passed_by_path()  # calls read those files themselves, until the last one ended
            finally:
                backend.close()
            if run.output is not None:
                run.export(run.output)
                run.ledger.set_meta("output_written", True)
            return counts
    except KeyboardInterrupt:
        raise Interrupted(run.root) from None
    except (
        BackendError
    ) as exc:  # e.g. the service paused the run: its hint names this run directory
        exc.hint = exc.hint.replace("RUN_DIR", shlex.quote(str(run.root)))
        raise


def environment_builds(plan: Plan, run: Run) -> list[tuple[str, str, str, str]]:
    """(job, what its environment installs, a task script with no calls, the environment's id) for each
    environment a job with calls to run needs, once per environment."""
    from .plan import Task

    pending = {
        job: counts.get(CallState.PENDING.value, 0)
        for job, counts in run.ledger.counts_by_job().items()
    }
    builds, seen = [], set()
    for job in plan.spec.jobs:
        if not pending.get(job.name) or job.environment.env_id in seen:
            continue
        seen.add(job.environment.env_id)
        what = ", ".join(job.environment.dependencies) or "Python only, no dependencies"
        builds.append((job.name, what, plan.render(Task(job, [])), job.environment.env_id))
    return builds


def _reset_for_retry(run: Run, selection: RetrySelection) -> None:
    """Record the retry (and its settings) in run.json, then make the selected failed calls pending."""
    if selection.job is not None and selection.job not in {job["name"] for job in run.info["jobs"]}:
        raise RunError(
            message=f"this run has no job {selection.job!r}",
            hint=f"its jobs: {', '.join(job['name'] for job in run.info['jobs'])}",
        )
    if selection.error_type is not None and not selected_failures(
        run.ledger, selection.job, selection.error_type
    ):
        from .run_view import failure_groups

        types = sorted(
            {
                group.error_type
                for group in failure_groups(run.ledger)
                if selection.job is None or group.job == selection.job
            }
        )
        raise RunError(
            message=f"no failed call matches --error {selection.error_type}"
            + (f" (types here: {', '.join(types)})" if types else " (no call failed)"),
            hint="use a type `hog-batch status` shows, or leave out --error to retry every failed call",
        )
    if selection.settings:
        overrides = [*run.info["overrides"], *selection.settings]
        snapshot = run._manifest_snapshot()
        changed = load_manifest(
            run.info["manifest_path"], overrides, run.info.get("endpoint"), text=snapshot
        )
        _require_same_calls(run, changed, selection)
        run.info["overrides"] = overrides
        if isinstance(run.info.get("inputs"), dict) and "manifest" in run.info["inputs"]:
            run.info["inputs"]["manifest"] = inputs.manifest_digest(
                snapshot, overrides, run.info.get("endpoint")
            )
        run._spec = None
    run.retried = run.ledger.reset_failed(selection.job, selection.error_type)
    run.info.setdefault("retries", []).append(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "set": list(selection.settings),
            "job": selection.job,
            "error_type": selection.error_type,
            "calls": run.retried,
        }
    )
    write_atomic(run.paths.run_info, json.dumps(run.info, indent=2, default=str))


def _require_same_calls(run: Run, changed: RunSpec, selection: RetrySelection) -> None:
    """New settings may change how calls run (timeout, retries, resources), never which calls there are."""
    before = {job.name: job for job in run.spec().jobs}
    failed = selected_failures(run.ledger, selection.job, selection.error_type)
    for job in changed.jobs:
        old = before.get(job.name)
        wanted = failed.get(job.name, set())
        same = old is not None and old.n_calls == job.n_calls
        if same and wanted:
            old_key, new_key = call_keyer(old), call_keyer(job)
            same = all(
                old_key(a) == new_key(b)
                for a, b in zip(iter_calls(old), iter_calls(job), strict=True)
                if a.index in wanted
            )
        if not same:
            raise RunError(
                message=f"--set {' '.join(selection.settings)} changes the calls of job {job.name!r}; "
                "a retry may change settings (timeout, retries, resources), not the calls themselves",
                hint=f"start a new run with those changes and take what succeeded: "
                f"`hog-batch submit MANIFEST --set ... --reuse {run.root}`",
            )


def exit_code(counts: dict[str, int]) -> int:
    unfinished = sum(
        counts.get(s.value, 0)
        for s in (
            CallState.FAILED,
            CallState.CANCELLED,
            CallState.PENDING,
            CallState.SUBMITTED,
            CallState.RUNNING,
        )
    )
    return EXIT_OK if unfinished == 0 else EXIT_CALLS_FAILED


def submit(
    manifest: str | Path | RunSpec,
    overrides: Sequence[str] = (),
    local: bool = False,
    endpoint: str | None = None,
    run_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    reuse: str | Path | None = None,
    max_failures: int | None = None,
    reuse_by: str = "script",
) -> Run:
    """Plan the manifest into a new run directory and run it to the end."""
    run = prepare(manifest, overrides, local, endpoint, run_dir, reuse, reuse_by)
    execute(run, on_progress, "submit", max_failures=max_failures)
    return run


def prepare(
    manifest: str | Path | RunSpec,
    overrides: Sequence[str] = (),
    local: bool = False,
    endpoint: str | None = None,
    run_dir: str | Path | None = None,
    reuse: str | Path | None = None,
    reuse_by: str = "script",
) -> Run:
    """Create the run directory without running anything (``submit --detach`` runs it in the background).

    With ``reuse``, ``run.reused`` says how many calls were taken from the earlier run; ``reuse_by``
    (script or function) is what of the code must be the same (see ``code_identity``).
    """
    endpoint = "local" if local else endpoint
    spec = (
        manifest if isinstance(manifest, RunSpec) else load_manifest(manifest, overrides, endpoint)
    )
    registry.of_run(spec).check(spec)
    earlier = Run(reuse) if reuse is not None else None
    if earlier is not None:
        _earlier_jobs(earlier)  # refused before the new run directory exists
    run = create_run(spec, run_dir, endpoint)
    if earlier is not None:
        run.reused = reuse_results(run, earlier, reuse_by)
    return run


def _earlier_jobs(earlier: Run) -> list:
    """The jobs of a run to reuse, whose calls must still regenerate as they ran (its files unchanged)."""
    try:
        return earlier.sweep_spec(live_files=True).jobs
    except RunError as exc:
        raise RunError(
            message=f"cannot reuse the results of {earlier.root}: {exc.message}",
            hint="its calls cannot be told apart without the files it started with: restore them, "
            "or submit without --reuse",
        ) from None


def reuse_results(run: Run, earlier: Run, by: str = "script") -> int:
    """Take succeeded calls of an earlier run that are identical (code, function, arguments, environment).

    Both runs' calls are regenerated from their sweeps; the earlier run's keys
    use the script that produced each call (its recorded versions), so a
    script changed since then matches nothing. ``by="function"`` compares
    only the function's own code, not the whole script (``code_identity``).
    """
    from .code_identity import REUSE_BY, code_identity
    from .script_versions import version_of, versions

    if by not in REUSE_BY:
        raise HogError(
            message=f"--reuse-by {by!r} is not one of {', '.join(REUSE_BY)}",
            hint="script (the default: the script's bytes) or function (the function's own code)",
        )
    earlier_files = (earlier.info.get("inputs") or {}).get("files")
    earlier_helpers = (earlier.info.get("inputs") or {}).get("helpers") or {}
    helpers = (run.info.get("inputs") or {}).get("helpers") or {}
    earlier_states = earlier.ledger.states()
    done: dict[str, tuple[str, int, str | None]] = {}
    for job in _earlier_jobs(earlier):
        state, job_versions = earlier_states.get(job.name), versions(earlier.info, job.name)
        if state is None or SUCCEEDED_CODE not in state:
            continue
        keys: dict[str | None, Callable] = {}
        made_by = {
            call: version_of(record, job_versions)
            for call, record in earlier.ledger.succeeded_records(job.name)
        }
        for call in iter_calls(job):
            if state[call.index] == SUCCEEDED_CODE:
                sha = made_by.get(call.index)
                if sha not in keys:
                    text = _script_version_text(earlier, job.name, sha)
                    keys[sha] = call_keyer(
                        job,
                        code_identity(by, sha, text, job.function),
                        earlier_files,
                        earlier_helpers,
                    )
                done[keys[sha](call)] = (job.name, call.index, sha)
    reused = 0
    for job in run.spec().jobs:
        key = call_keyer(
            job,
            code_identity(by, job.script_sha256, job.script_text, job.function),
            helpers=helpers,
        )
        wanted: dict[tuple[str, int], tuple[int, str | None]] = {}
        for call in iter_calls(job):
            found = done.get(key(call))
            if found is not None:
                wanted[found[:2]] = (call.index, found[2])
        for earlier_job in {name for name, _ in wanted}:
            records = []
            for call, record in earlier.ledger.succeeded_records(earlier_job):
                if (earlier_job, call) in wanted:
                    index, sha = wanted[(earlier_job, call)]
                    records.append({**record, "call": index, "script_sha256": sha})
            run.ledger.store_record_dicts(job.name, f"reused-from:{earlier.name}", records, {}, 0.0)
            reused += len(records)
    return reused


def _script_version_text(run: Run, job: str, sha: str | None) -> str | None:
    """The text of a script version the run ran (its snapshots), None if the run kept no copy of it."""
    for path in (run.paths.script_version_snapshot(job, sha or ""), run.paths.script_snapshot(job)):
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if sha is None or hashlib.sha256(text.encode()).hexdigest() == sha:
            return text
    return None


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)


def resume(
    run_dir: str | Path, on_progress: Progress | None = None, max_failures: int | None = None
) -> Run:
    """Finish what the run left: calls never started, calls in flight when the submitter died."""
    run = Run(run_dir)
    execute(run, on_progress, "resume", max_failures=max_failures)
    return run


def retry(
    run_dir: str | Path,
    on_progress: Progress | None = None,
    selection: RetrySelection | None = None,
    max_failures: int | None = None,
) -> Run:
    """Run the failed calls again: all of them, or those ``selection`` picks, optionally with changed settings."""
    run = Run(run_dir)
    execute(run, on_progress, "retry", max_failures=max_failures, selection=selection)
    return run


def follow(run: Run, on_progress: Progress | None = None, poll_s: float = 1.0) -> dict[str, int]:
    """Watch a run another process drives until it lets go of the run; return the final counts.

    Reads the ledger only (again from disk each time): stopping the watcher (Ctrl-C) never touches the run.
    """
    from .run_view import progress

    while run.holder() is not None:
        if on_progress is not None:
            on_progress(progress(run.ledger, fresh=True).counts)
        time.sleep(poll_s)
    counts = progress(run.ledger, fresh=True).counts
    if on_progress is not None:
        on_progress(counts)
    return counts


def cancel(run_dir: str | Path, wait_s: float = 30.0) -> dict[str, int]:
    """Stop the run: a running submitter stops its tasks; pending calls become cancelled."""
    run = Run(run_dir)
    deadline = time.time() + wait_s
    while True:
        try:
            lock = run.lock("cancel")
            break
        except (
            RunInUse
        ):  # a submitter holds the run (perhaps one `submit --detach` just started): ask it to stop
            if time.time() >= deadline:
                raise
            write_atomic(run.paths.cancel_request, str(os.getpid()))
            while run.holder() is not None and time.time() < deadline:
                time.sleep(0.2)
    with lock:
        if run.ledger.tasks_in_flight():  # left by a submitter that died: keep what they recorded
            backend = make_backend(run)
            try:
                followed = recover_abandoned(run.ledger, backend, retries={})
                if (
                    followed
                ):  # still running without a submitter (a batch queue's arrays): stop them first
                    _stop_followed(run, backend, followed)
            finally:
                backend.close()
        run.ledger.cancel_unfinished()
        run.paths.cancel_request.unlink(missing_ok=True)
    return run.counts()


def _stop_followed(run: Run, backend: Backend, followed: list[tuple[str, str, list[int]]]) -> None:
    """Cancel tasks that run on without a submitter; keep the records they wrote before they stopped."""
    jobs = {task_id: job for task_id, job, _ in followed}
    backend.cancel(list(jobs))
    reports = [report for report in backend.poll(0) if report.lines and report.task_id in jobs]
    with run.ledger.transaction():
        for report in reports:
            job = jobs[report.task_id]
            lines = unreported_lines(report.lines, run.ledger.states()[job])
            run.ledger.store_records(job, report.task_id, lines, {}, 0.0)


def dispatch(run: Run) -> int | None:
    """Submit the run's ready calls and return once the backend accepted them: the number of tasks.

    Only for a backend whose tasks run on without this process and which
    queues them itself (Slurm's arrays): ``submit --detach`` then leaves
    nothing running here. None for any other backend (it needs a submitter).
    """
    kind = run_kind(run)
    if not kind.tasks_outlive_submitter:
        return None
    with run.lock("submit"):
        plan = Plan(run.spec())
        backend = make_backend(run, plan)
        try:
            if not backend.queues_tasks:
                return None
            return Executor(plan, run.ledger, backend, run.paths).dispatch()
        finally:
            backend.close()


def watch(run: Run, on_progress: Progress | None = None) -> dict[str, int] | None:
    """Follow the tasks a detached (or killed) submitter left running, to their end; submit nothing.

    None when there is nothing to follow this way (a live submitter drives the
    run, or the backend's tasks died with their submitter). Stopping the watch
    (Ctrl-C) leaves the tasks running.
    """
    if (
        not run_kind(run).tasks_outlive_submitter
        or run.holder() is not None
        or not run.ledger.tasks_in_flight()
    ):
        return None
    try:
        lock = run.lock("watch")
    except RunError:
        return None
    with lock:
        plan = Plan(run.spec())
        backend = make_backend(run, plan)
        try:
            return Executor(plan, run.ledger, backend, run.paths, on_progress).follow()
        finally:
            backend.close()


def list_runs(folder: str | Path | None = None) -> list[dict]:
    """The runs under ``folder/hog-runs`` (default: the current folder), oldest first.

    A damaged run is listed with its ``error`` rather than breaking the list.
    """
    base = Path(folder or Path.cwd()) / RUNS_FOLDER
    found = []
    for info_path in sorted(base.glob("*/run.json")):
        try:
            run = Run(info_path.parent)
            try:
                found.append(
                    {
                        "run_dir": str(run.root),
                        "name": run.name,
                        "started_at": (run.info.get("provenance") or {}).get("started_at"),
                        "counts": run.counts(),
                        "active": run.holder() is not None,
                    }
                )
            finally:
                run.close()
        except (HogError, sqlite3.Error) as exc:
            found.append(
                {
                    "run_dir": str(info_path.parent),
                    "name": None,
                    "started_at": None,
                    "counts": {},
                    "active": False,
                    "error": exc.message if isinstance(exc, HogError) else f"the ledger: {exc}",
                }
            )
    return found


__all__ = [
    "Run",
    "cancel",
    "create_run",
    "dispatch",
    "execute",
    "exit_code",
    "follow",
    "list_runs",
    "open_run",
    "prepare",
    "refresh",
    "resume",
    "retry",
    "submit",
    "watch",
]
