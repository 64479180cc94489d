"""A run you can hold: submit without waiting, watch it, take results as they come, reattach from any process.

``submit(..., wait=False)`` plans the run, hands it to a background process
(what ``submit --detach`` starts: ``hog-batch resume RUN`` in
a session of its own) and returns at once. The run therefore outlives the
notebook's kernel. Everything the returned :class:`Run` answers is read from
the run directory (the ledger, the lock), so ``Run(path)`` in any process, a
restarted kernel included, gives the same object back.
"""

from __future__ import annotations

import builtins
import html
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import api
from .errors import EXIT_CALLS_FAILED, EXIT_OK, HogError
from .ledger import CANCELLED, FAILED, SUCCEEDED, CallRecord, Ledger, RecordText
from .manifest import RunSpec
from .python_manifest import Manifest, as_manifest
from .results import decode_result
from .run_lock import BACKGROUND_ENV
from .run_paths import RunPaths
from .run_view import Progress, RateMeter, error_type, progress_line, summary

POLL_S = 0.2
START_TIMEOUT_S = 30.0
_FINISHED_MASK = bytes(1 if code in (SUCCEEDED, FAILED, CANCELLED) else 0 for code in range(256))
_RECORD_LOOKUPS = 64  # more new calls than this in a job: read its records in one pass


@dataclass(frozen=True)
class CallResult(RecordText):
    """One finished call: where it is, its parameters and what it returned, raised or printed."""

    job: str
    call: int
    params: dict[str, Any]
    status: str  # succeeded | failed | cancelled
    attempts: int
    record: dict[str, Any] | None  # the runner's record (see ledger.CallRecord)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def value(self) -> Any:
        """What the call returned; a pickled object is unpickled (it runs code: trust it as the script)."""
        return decode_result(self.record, unpickle=True)

    def exception(self) -> BaseException | None:
        """The call's error as an exception to raise (see :class:`CallFailed`); None if it succeeded."""
        if self.ok:
            return None
        return call_error(self)

    def __repr__(self) -> str:
        shown = repr(self.value) if self.ok else (self.error or self.status)
        return f"CallResult({self.job}:{self.call} {self.params} {self.status}: {shown[:200]})"


class RemoteTraceback(Exception):
    """The call's traceback as the task printed it; the cause of a :class:`CallFailed` (as ProcessPoolExecutor does)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class CallFailed(Exception):
    """A call raised (or its task died). When the call raised a built-in error, this is also that type:
    ``except ValueError`` catches a call's ValueError. ``job``, ``call``, ``error_type`` and
    ``remote_traceback`` say which call and how; the remote traceback is also the exception's cause."""

    job: str = ""
    call: int = -1
    error_type: str = "error"
    remote_traceback: str = ""


_REMOTE_TYPES: dict[str, type[CallFailed]] = {}


def call_error(result: CallResult) -> CallFailed:
    name = "CancelledError" if result.status == "cancelled" else error_type(result.error)
    message = result.error or f"the call was {result.status}"
    if message.startswith(f"{name}: "):  # the type is the exception's own
        message = message[len(name) + 2 :]
    cls = _remote_type(name)
    try:
        error = cls(message)
    except TypeError:  # a built-in type that wants other arguments
        error = CallFailed(message)
    error.job, error.call, error.error_type = result.job, result.call, name
    error.remote_traceback = result.traceback or ""
    if error.remote_traceback:
        error.__cause__ = RemoteTraceback(error.remote_traceback)
    return error


def _remote_type(name: str) -> type[CallFailed]:
    builtin = getattr(builtins, name, None)
    if not (isinstance(builtin, type) and issubclass(builtin, Exception)) or issubclass(
        builtin, CallFailed
    ):
        return CallFailed
    if name not in _REMOTE_TYPES:
        try:
            _REMOTE_TYPES[name] = type(name, (CallFailed, builtin), {"__module__": __name__})
        except TypeError:  # a layout that cannot be combined
            _REMOTE_TYPES[name] = CallFailed
    return _REMOTE_TYPES[name]


class _Params:
    """A call's swept parameters, regenerated from the run's sweep (the ledger does not store them)."""

    def __init__(self, run: api.Run) -> None:
        self.jobs = {job.name: job for job in run.sweep_spec().jobs}
        self._walked: dict[str, list[dict]] = {}

    def of(self, job_name: str, call: int) -> dict[str, Any]:
        job = self.jobs.get(job_name)
        if job is None:
            return {}
        if job_name not in self._walked:
            columns = job.sweep.columns(call, call + 1)
            if columns is not None:
                return {
                    name: values[0] for name, values in columns.items() if values[0] is not None
                }
            from .plan import iter_calls

            self._walked[job_name] = [planned.params for planned in iter_calls(job)]
        walked = self._walked[job_name]
        return walked[call] if call < len(walked) else {}


class _Finished:
    """Notices calls that finished since the last look, reading the ledger again each time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seen: dict[str, bytes] = {}

    def new(self) -> list[CallRecord]:
        self.ledger.reload()
        found: list[CallRecord] = []
        for job, state in self.ledger.states().items():
            mask = state.translate(_FINISHED_MASK)
            before = self.seen.get(job, bytes(len(mask)))
            if mask == before:
                continue
            calls = [m.start() for m in re.finditer(b"\x01", mask) if not before[m.start()]]
            self.seen[job] = mask
            found.extend(self._records(job, calls))
        return found

    def _records(self, job: str, calls: list[int]) -> list[CallRecord]:
        if len(calls) <= _RECORD_LOOKUPS:
            return [
                record
                for record in (self.ledger.call_record(job, call) for call in calls)
                if record is not None
            ]
        wanted, found = set(calls), []
        for window in self.ledger.iter_windows(job):
            found.extend(record for record in window.records() if record.call in wanted)
        return found

    def all_seen(self) -> bool:
        return (
            bool(self.seen)
            and all(all(mask) for mask in self.seen.values())
            and len(self.seen) == len(self.ledger.states())
        )


class Run(api.Run):
    """A run directory you can hold: wait for it, watch it, take its results as they come.

    ``Run(path)`` opens any run, from any process. Every answer is read again
    from the run directory, so it is current while another process drives it.
    """

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self._driver: subprocess.Popen | None = None
        self._params: _Params | None = None
        self._executing = (
            False  # this process drives it: the ledger in memory is the executor's, keep it
        )

    def _fresh(self) -> None:
        """Read the ledger again from disk: another process may be writing the run."""
        if not self._executing:
            self.ledger.reload()

    # --- state ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        self._fresh()
        return super().counts()

    def done(self) -> bool:
        """No process drives the run any more (it ended, was cancelled, or its driver died).

        Calls left unfinished then stay so until ``hb.resume`` (``counts()`` shows them).
        """
        if self._driver is not None:
            self._driver.poll()  # reaps it once it has exited
        return self.holder() is None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is done (see :meth:`done`); False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(
                POLL_S if deadline is None else max(min(POLL_S, deadline - time.monotonic()), 0.0)
            )
        self._fresh()
        return True

    def cancel(self) -> dict[str, int]:
        """Stop the run: its tasks are stopped, calls not finished become cancelled; returns the counts."""
        counts = api.cancel(self.root)
        self._fresh()
        return counts

    def results(self, all: bool = False, objects: bool = False):  # noqa: A002 - the name users expect
        """The results table so far: finished calls only (succeeded, failed, cancelled), every call with ``all``.

        ``objects=True`` puts the returned objects themselves in ``result`` (it unpickles: trust the run).
        """
        self._fresh()
        table = super().results(objects=objects)
        if all:
            return table
        return table[table["status"] != "pending"].reset_index(drop=True)

    def report(self, path: str | Path | None = None, **options):
        """Write the run's HTML report (default ``RUN/report.html``); works while the run is still going.
        ``options`` as ``api.Run.report`` takes them (the keys of the manifest's ``report:``)."""
        whole = api.Run(self.root)  # the report shows every call, finished or not
        try:
            return whole.report(path, **options)
        finally:
            whole.close()

    def figures(self, **options) -> dict[str, object]:
        whole = api.Run(self.root)
        try:
            return whole.figures(**options)
        finally:
            whole.close()

    # --- results as they come ---------------------------------------------------------------

    def as_completed(self, timeout: float | None = None) -> Iterator[CallResult]:
        """Yield each call as it finishes (those finished already first); stops when every call has finished
        or nothing drives the run any more. ``timeout`` (seconds) raises ``TimeoutError``, as
        ``concurrent.futures.as_completed`` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = _Finished(self.ledger)
        while True:
            driven = not self.done()
            for record in finished.new():
                yield self._result(record)
            if finished.all_seen() or not driven:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"calls of {self.name} still unfinished after {timeout} s")
            time.sleep(POLL_S)

    def futures(self) -> list[Future]:
        """One ``concurrent.futures.Future`` per call, in plan order (jobs one after another).

        Each resolves to the call's value, or raises its error (a :class:`CallFailed`, also of the
        call's built-in error type, whose cause is the remote traceback); a cancelled call's future is
        cancelled. A thread of this process watches the run while any is unresolved. Cancelling a
        future stops only the waiting: use ``run.cancel()`` to stop calls.
        """
        jobs = self.ledger.jobs()
        futures = {(job, call): Future() for job, n in jobs.items() for call in range(n)}
        watcher = threading.Thread(
            target=_resolve_futures,
            args=(self.paths, futures),
            daemon=True,
            name=f"hog-batch futures {self.name}",
        )
        watcher.start()
        return list(futures.values())

    def _result(self, record: CallRecord) -> CallResult:
        if self._params is None:
            self._params = _Params(self)
        return CallResult(
            record.job,
            record.call,
            self._params.of(record.job, record.call),
            record.state.public,
            record.attempts,
            record.record,
        )

    def call(self, call: int | str, job: str | None = None) -> Call:
        """One call of the run: ``run.call(17)``, ``run.call("fit:17")`` or ``run.call(17, job="fit")``."""
        from .run_view import parse_call_refs

        ((job_name, index),) = parse_call_refs([str(call)], self.ledger.jobs(), job)
        return Call(self, job_name, index)

    # --- watching ---------------------------------------------------------------------------

    def progress(self, wait: bool = False) -> None:
        """Show how far the run is. In Jupyter: a display updated in place until the run is done (from a
        thread, so the notebook goes on; ``wait=True`` updates it here until then). Elsewhere: one plain
        line (``wait=True``: a line whenever the counts change, until the run is done). Interrupting
        stops the watching, never the run."""
        if _in_jupyter():
            _jupyter_progress(self, wait)
        elif wait:
            _print_progress_until_done(self)
        else:
            now = Progress(self.counts())
            state = "done" if self.done() else "running"
            print(
                f"{self.name}: {now.finished}/{now.total} finished ({summary(now.counts)}), {state}"
            )

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<hog-batch Run {self.name} ({state}: {summary(self.counts())}) at {self.root}>"

    def _repr_html_(self) -> str:
        return progress_html(self.name, Progress(self.counts()), not self.done(), self.root)


@dataclass(frozen=True)
class Call:
    """One call of a run: what the run recorded for it, and running it again here."""

    run: Run
    job: str
    index: int

    def result(self) -> CallResult | None:
        """What the run recorded for the call (None if it has no record yet)."""
        self.run._fresh()
        record = self.run.ledger.call_record(self.job, self.index)
        return None if record is None or record.record is None else self.run._result(record)

    def run_here(self, record: bool = False, pdb: bool = False) -> Any:
        """Run the call here, in the foreground, in its job's environment, with its real arguments and the
        script as it is now; return its value or raise its error (as a future would). Its output is shown
        as it comes. Nothing is recorded unless ``record=True`` (the run must be idle)."""
        from .debug import debug_run_call

        streams = (sys.stdout, sys.stderr) if _in_jupyter() else (None, None)
        done = debug_run_call(self.run, self.job, self.index, pdb, record, *streams)
        if record:
            self.run._fresh()
        if done.ok:
            return done.value
        raise call_error(CallResult(done.job, done.call, done.params, "failed", 1, done.record))


def _resolve_futures(paths: RunPaths, futures: dict[tuple[str, int], Future]) -> None:
    run = Run(paths.root)  # its own ledger connection: this thread only
    try:
        finished = _Finished(run.ledger)
        unresolved = len(futures)
        while unresolved:
            driven = not run.done()
            for record in finished.new():
                future = futures.get((record.job, record.call))
                if future is None or future.done():
                    continue
                result = run._result(record)
                if result.status == "cancelled":
                    future.cancel()
                elif result.ok:
                    try:
                        future.set_result(result.value)
                    except Exception as exc:  # the value could not be unpickled here
                        future.set_exception(exc)
                else:
                    future.set_exception(call_error(result))
                unresolved -= 1
            time.sleep(
                POLL_S if driven else 1.0
            )  # an idle run may be resumed later: keep looking, slowly
    finally:
        run.close()


# --- progress displays ------------------------------------------------------------------


def progress_html(name: str, now: Progress, running: bool, root: Path | None = None) -> str:
    """A bar with the run's counts: green succeeded, red failed, grey cancelled, over the whole run."""
    total = max(now.total, 1)
    counts = now.counts

    def share(state: str) -> float:
        return 100.0 * counts.get(state, 0) / total

    bars = "".join(
        f'<div style="width:{share(state):.2f}%;background:{color}"></div>'
        for state, color in (("succeeded", "#2e9e44"), ("failed", "#d64541"), ("cancelled", "#999"))
    )
    state = "running" if running else "done"
    where = f'<div style="color:#666;font-size:85%">{html.escape(str(root))}</div>' if root else ""
    return (
        f'<div class="hog-batch-progress" style="font-family:sans-serif;max-width:40em">'
        f"<b>{html.escape(name)}</b>: {now.finished}/{now.total} finished ({html.escape(summary(counts))}), "
        f"<i>{state}</i>"
        f'<div style="display:flex;height:0.8em;background:#e8e8e8;border-radius:3px;overflow:hidden;'
        f'margin:0.3em 0">{bars}</div>{where}</div>'
    )


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _jupyter_progress(run: Run, wait: bool) -> None:
    from IPython.display import HTML, display

    shown = display(HTML(run._repr_html_()), display_id=True)

    def update(watched: Run) -> None:
        last = None
        while True:
            running = not watched.done()
            now = Progress(watched.counts())
            if (now.counts, running) != last:
                shown.update(HTML(progress_html(watched.name, now, running, watched.root)))
                last = (now.counts, running)
            if not running:
                return
            time.sleep(0.5)

    if wait:
        try:
            update(run)
        except KeyboardInterrupt:
            print("stopped watching; the run goes on")
        return

    def in_thread() -> None:
        watched = Run(run.root)
        try:
            update(watched)
        finally:
            watched.close()

    # Updates go out by display id: the front end (and nbclient) applies them to this cell's output
    # whichever cell is running then.
    threading.Thread(target=in_thread, daemon=True, name=f"hog-batch progress {run.name}").start()


def _print_progress_until_done(run: Run) -> None:
    meter, last = RateMeter(Progress(run.counts()).finished), None
    try:
        while True:
            running = not run.done()
            now = Progress(run.counts())
            if now.counts != last or not running:
                print(progress_line(run.name, now, meter), flush=True)
                last = now.counts
            if not running:
                return
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopped watching; the run goes on")


# --- submitting ---------------------------------------------------------------------------


def drive_in_background(run: api.Run, max_failures: int | None = None) -> subprocess.Popen:
    """Start the process that drives the run (``resume``, in its own session; its log: submitter.log);
    return once it holds the run.

    It runs what is pending as ``submit`` does (``--detached-submit``): it never makes cancelled calls pending
    again, so a ``cancel`` that came before it took the run's lock sticks.
    """
    # Not `python -m`: that puts the current folder first on sys.path, where a json.py (or another user's
    # file in a shared folder) would be imported in place of the module of that name.
    code = "import sys; del sys.path[0]; from groundhog_batch.cli import main; main(prog_name='hog-batch')"
    command = [sys.executable, "-c", code, "resume", str(run.root), "--detached-submit"]
    if max_failures is not None:
        command += ["--max-failures", str(max_failures)]
    with run.paths.submitter_log.open("ab") as log:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=os.getcwd(),
            env={**os.environ, BACKGROUND_ENV: "1"},
        )  # status: "in the background"
    deadline = time.monotonic() + START_TIMEOUT_S
    while run.holder() is None and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if child.poll() not in (None, EXIT_OK, EXIT_CALLS_FAILED):
        raise HogError(
            message=f"the background submitter stopped at once (exit {child.returncode})",
            hint=f"its log says why: {run.paths.submitter_log}",
        )
    return child


def submit(
    manifest: str | Path | RunSpec | dict | Manifest,
    overrides: Sequence[str] = (),
    local: bool = False,
    endpoint: str | None = None,
    run_dir: str | Path | None = None,
    on_progress: api.Progress | None = None,
    reuse: str | Path | None = None,
    max_failures: int | None = None,
    wait: bool = True,
    reuse_by: str = "script",
) -> Run:
    """Plan a manifest (a file, a dict, ``hb.sweep(...)``) into a new run directory and run it.

    ``wait=True`` runs it here, to the end. ``wait=False`` returns at once: a
    background process drives the run, which goes on if this process (a
    notebook's kernel) ends; ``hb.Run(run.root)`` picks it up again anywhere.
    """
    if not wait and on_progress is not None:
        raise HogError(
            message="on_progress needs wait=True: with wait=False another process drives the run",
            hint="watch it with run.progress() or run.as_completed()",
        )
    if isinstance(manifest, dict | Manifest):
        manifest = as_manifest(manifest).spec(overrides, "local" if local else endpoint)
    prepared = api.prepare(manifest, overrides, local, endpoint, run_dir, reuse, reuse_by)
    run = Run(prepared.root)
    run.reused, run._spec = prepared.reused, prepared._spec
    prepared.close()
    if wait:
        run._executing = True
        try:
            api.execute(run, on_progress, "submit", max_failures=max_failures)
        finally:
            run._executing = False
    else:
        run._driver = drive_in_background(run, max_failures)
    return run


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)


__all__ = [
    "CallFailed",
    "CallResult",
    "RemoteTraceback",
    "Run",
    "drive_in_background",
    "open_run",
    "progress_html",
    "submit",
]
