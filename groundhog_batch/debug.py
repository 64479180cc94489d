"""One call, in front of you: Groundhog's ``.local()`` for a sweep.

The call runs in the foreground, in its job's own environment (the task's
rendered bash script builds or reuses it, as any task does), with its real
arguments (data chunks included), from the script as it is now. What it
prints goes straight to the terminal; its result (or error) comes back as a
record. Nothing is written to the run unless asked (``record=True``), and then
as any task's record would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import IO, Any

from .errors import EXIT_CALLS_FAILED, EXIT_OK, HogError, RunError
from .manifest import RunSpec
from .manifest.spec import JobSpec
from .plan import Plan, Task, iter_calls
from .render.renderer import render_task_script, runner_source
from .results import decode_result

_RUNNER_PLACEHOLDER = "RUNNER_SOURCE = None  # the runner's text, filled in by the host"


@cache
def debug_runner_text() -> str:
    text = resources.files("groundhog_batch.render").joinpath("debug_runner.py").read_text("utf-8")
    if _RUNNER_PLACEHOLDER not in text:
        raise AssertionError("render/debug_runner.py lost its RUNNER_SOURCE placeholder")
    return text.replace(_RUNNER_PLACEHOLDER, f"RUNNER_SOURCE = {runner_source()!r}")


@dataclass(frozen=True)
class DebugResult:
    """What the call did: its record (as a task's), and the exit status of its task script."""

    job: str
    call: int
    params: dict[str, Any]
    record: dict[str, Any] | None
    returncode: int
    script_sha256: str | None = None  # the script the call ran (as it is now)

    @property
    def ok(self) -> bool:
        return bool(self.record and self.record.get("ok"))

    @property
    def value(self) -> Any:
        """The returned value; a pickled object is unpickled (it runs code: trust it as the script)."""
        return decode_result(self.record, unpickle=True)

    @property
    def shown(self) -> str:
        """The value as the call itself would print it (its repr in the call's own environment)."""
        if not self.record:
            return ""
        return self.record.get("repr") or repr(decode_result(self.record))

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_CALLS_FAILED


def pick_job(spec: RunSpec, job: str | None) -> JobSpec:
    names = [j.name for j in spec.jobs]
    if job is None:
        if len(spec.jobs) != 1:
            raise HogError(
                message=f"which job? this manifest has {len(names)}: {', '.join(names)}",
                hint=f"name it: --job {names[0]}, or JOB:N as the call",
            )
        return spec.jobs[0]
    for candidate in spec.jobs:
        if candidate.name == job:
            return candidate
    raise HogError(message=f"there is no job {job!r}", hint=f"its jobs: {', '.join(names)}")


def run_call(
    spec: RunSpec,
    job_name: str | None,
    call: int,
    pdb: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> DebugResult:
    """Run call ``call`` of the job in the foreground, in its environment; nothing is recorded.

    Without ``stdout``/``stderr`` the call writes to this process's own
    terminal (and ``pdb`` works there); with them (a notebook), its output is
    copied to them as it comes.
    """
    job = pick_job(spec, job_name)
    if not 0 <= call < job.n_calls:
        raise HogError(
            message=f"job {job.name!r} has no call {call}",
            hint=f"its calls are numbered 0 to {job.n_calls - 1} (the results table's `call` column)",
        )
    if pdb and stdout is not None:
        raise HogError(
            message="the debugger needs a terminal",
            hint=f"run `hog-batch debug ... {job.name}:{call} --pdb` in one",
        )
    planned = next(islice(iter_calls(job), call, None))
    plan = Plan(spec)
    payload = plan.payload(Task(job, [planned]))
    script = render_task_script(
        job.name,
        job.script_path,
        job.script_text,
        job.environment,
        payload.encode(),
        runner_text=debug_runner_text(),
    )
    with tempfile.TemporaryDirectory(prefix="hog-debug.") as folder:
        script_path, result_path = Path(folder) / "task.sh", Path(folder) / "record.json"
        script_path.write_text(script)
        env = dict(
            os.environ,
            HOG_BATCH_DEBUG_RESULT=str(result_path),
            HOG_BATCH_DEBUG_PDB="1" if pdb else "0",
        )
        if "HOG_BATCH_UV" not in env:
            from .backends.local import find_uv

            uv = find_uv()
            if uv:
                env["HOG_BATCH_UV"] = uv
        returncode = _foreground(
            ["bash", str(script_path)], spec.manifest_path.parent, env, stdout, stderr
        )
        record = None
        if result_path.exists():
            import json

            record = json.loads(result_path.read_text("utf-8"))
    if record is None:
        raise HogError(
            message=f"the call's task ended (exit {returncode}) before the call did",
            hint="its messages above say why (an environment that could not be built, a crash)",
        )
    return DebugResult(job.name, call, planned.params, record, returncode, job.script_sha256)


def _foreground(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: IO[str] | None,
    stderr: IO[str] | None,
) -> int:
    if stdout is None and stderr is None:
        return subprocess.run(command, cwd=cwd, env=env).returncode
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    copiers = [
        threading.Thread(target=_copy, args=(source, target or sys.stderr), daemon=True)
        for source, target in ((process.stdout, stdout), (process.stderr, stderr))
    ]
    for copier in copiers:
        copier.start()
    returncode = process.wait()
    for copier in copiers:
        copier.join(timeout=5)
    return returncode


def _copy(source: IO[str], target: IO[str]) -> None:
    for line in source:
        target.write(line)
        target.flush()


def record_result(run, result: DebugResult) -> None:
    """Keep the call's record in the run, as a task's record would be kept (the run must be idle)."""
    record = {key: value for key, value in (result.record or {}).items() if key != "repr"}
    record["script_sha256"] = result.script_sha256
    try:
        lock = run.lock("debug --record")
    except RunError as exc:
        raise RunError(
            message=f"cannot record the call: {exc.message}",
            hint="wait until the run is done (or cancel it), then debug --record again",
        ) from None
    with lock:
        run.ledger.store_record_dicts(result.job, f"debug-{os.getpid()}", [record], {}, 0.0)


def debug_run_call(
    run,
    job: str | None,
    call: int,
    pdb: bool = False,
    record: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> DebugResult:
    """Call ``call`` of a run, run again here with the script as it is now (``record``: kept in the run)."""
    result = run_call(run.sweep_spec(), job, call, pdb, stdout, stderr)
    if record:
        record_result(run, result)
    return result


__all__ = ["DebugResult", "debug_run_call", "pick_job", "record_result", "run_call"]
