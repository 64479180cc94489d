"""What a sweep will cost before it runs: call time, wall time and core-hours, with their uncertainty.

Two sources, best first:

- **Earlier runs** of the same job (same script bytes, function, environment)
  under the current folder's ``hog-runs/``: a call that ran there before, with
  the same arguments, is counted at the time it took; the other calls at the
  mean of those.
- **A sample** (``plan --sample N``): N calls chosen evenly across each job's
  sweep (the first, the last, and evenly between) run here, one after another
  in one task with the job's environment and the real runner, and the job's
  total is extrapolated from them. Spreading the sample over the sweep's order
  follows a call time that changes with a parameter; the uncertainty is the
  standard error of that mean, times the number of calls.

A job's time per call (earlier runs first, else the last sample, which
``plan --sample`` remembers in ``hog-runs/call-times.json``) also sizes
``calls_per_task: auto`` tasks on a backend with a target task duration
(``call_times``; ``plan`` and ``submit`` use the same).

Wall time assumes ``max_parallel`` tasks at once and nothing else waiting
(a queue on a cluster adds its own wait). Core-hours are the calls' own
time: a call that uses several cores (threads, subprocesses) uses more, as
its ``cpu_s`` shows after a run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from .errors import HogError
from .manifest import RunSpec
from .manifest.spec import JobSpec
from .plan import CallTime, Plan, Task, iter_calls
from .render.payload import iter_records

SAMPLE_TIMEOUT_S = 3600.0
SAMPLES_FILE = "call-times.json"  # under hog-runs/: each job's last sampled time per call


@dataclass(frozen=True)
class JobEstimate:
    job: str
    n_calls: int
    call_s: float  # all calls' time, added up
    call_s_error: float  # one standard error of it
    wall_s: float
    core_hours: float
    source: str  # "sample", "earlier runs", or "none"
    measured: int  # calls measured (sampled, or found in earlier runs)
    failed: int = 0  # of the sampled calls
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "job": self.job,
            "n_calls": self.n_calls,
            "call_s": self.call_s,
            "call_s_error": self.call_s_error,
            "wall_s": self.wall_s,
            "core_hours": self.core_hours,
            "source": self.source,
            "measured": self.measured,
            "failed": self.failed,
            "notes": self.notes,
        }


def spread_indices(n_calls: int, n_sample: int) -> list[int]:
    """``n_sample`` call indices spread evenly over ``0..n_calls-1``, first and last included."""
    if n_sample <= 0 or n_calls <= 0:
        return []
    if n_sample >= n_calls:
        return list(range(n_calls))
    if n_sample == 1:
        return [n_calls // 2]
    return sorted({round(k * (n_calls - 1) / (n_sample - 1)) for k in range(n_sample)})


def _extrapolate(
    job: JobSpec, durations: list[float], n_known: int = 0, known_s: float = 0.0
) -> tuple[float, float]:
    """(total seconds, standard error) of all the job's calls, from a sample of ``durations``."""
    unknown = job.n_calls - n_known
    if not durations:
        return known_s, 0.0
    import statistics  # fractions and decimal behind it: only when there are times to estimate from

    mean = statistics.fmean(durations)
    spread = statistics.stdev(durations) if len(durations) > 1 else mean
    error = (
        unknown
        * spread
        / math.sqrt(len(durations))
        * math.sqrt(max(0.0, 1 - len(durations) / max(job.n_calls, 1)))
    )
    return known_s + unknown * mean, error


def _finish(
    job: JobSpec,
    total_s: float,
    error_s: float,
    source: str,
    measured: int,
    failed: int = 0,
    notes: list[str] | None = None,
) -> JobEstimate:
    parallel = max(1, min(job.max_parallel, job.n_calls))
    return JobEstimate(
        job.name,
        job.n_calls,
        total_s,
        error_s,
        total_s / parallel,
        total_s / 3600.0,
        source,
        measured,
        failed,
        notes or [],
    )


# --- from a sample run here -----------------------------------------------------------------


def sample_durations(plan: Plan, job: JobSpec, n_sample: int) -> tuple[list[float], int]:
    """Run ``n_sample`` spread calls of the job here, in one task with its environment; (durations, failed)."""
    wanted = set(spread_indices(job.n_calls, n_sample))
    calls = (
        [call for call in islice(iter_calls(job), max(wanted) + 1) if call.index in wanted]
        if wanted
        else []
    )
    if not calls:
        return [], 0
    script = plan.render(Task(job, calls))
    env = dict(os.environ)
    env.pop("HOG_BATCH_RECORDS_FILE", None)  # the records come back on stdout
    if "HOG_BATCH_UV" not in env:
        from .backends.local import find_uv

        uv = find_uv()
        if uv:
            env["HOG_BATCH_UV"] = uv
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hog-sample.") as folder:
        path = Path(folder) / "task.sh"
        path.write_text(script)
        try:
            done = subprocess.run(
                ["bash", str(path)],
                cwd=plan.spec.manifest_path.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SAMPLE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise HogError(
                message=f"the sample calls of job {job.name!r} took over {SAMPLE_TIMEOUT_S:.0f} s",
                hint="sample fewer calls (--sample 3), or estimate from an earlier run",
            ) from None
    records = [
        r for r in iter_records(done.stdout.splitlines()) if "call" in r and not r.get("deferred")
    ]
    if not records:
        tail = done.stderr.strip().splitlines()[-3:]
        raise HogError(
            message=f"the sample task of job {job.name!r} ran no call (exit {done.returncode})",
            hint="what it said: " + (" | ".join(tail) or "nothing"),
        )
    durations = [
        r["t1"] - r["t0"] for r in records if r.get("t0") is not None and r.get("t1") is not None
    ]
    return durations, sum(1 for r in records if not r.get("ok"))


def estimate_by_sample(spec: RunSpec, n_sample: int) -> list[JobEstimate]:
    plan = Plan(spec)
    found = []
    for job in spec.jobs:
        durations, failed = sample_durations(plan, job, n_sample)
        total, error = _extrapolate(job, durations)
        notes = (
            [
                f"{failed} of the {len(durations)} sampled calls failed: their time may not be the real one's"
            ]
            if failed
            else []
        )
        found.append(_finish(job, total, error, "sample", len(durations), failed, notes))
    return found


# --- from earlier runs -----------------------------------------------------------------------


def _earlier_runs(folder: Path) -> list[Path]:
    from .run_paths import RUNS_FOLDER

    return sorted(info.parent for info in (folder / RUNS_FOLDER).glob("*/run.json"))


def estimate_from_earlier(spec: RunSpec, folder: Path | None = None) -> list[JobEstimate] | None:
    """Estimates from earlier runs of the same jobs (None when no job has any)."""
    from .api import Run, call_keyer
    from .ledger import CallState

    runs = _earlier_runs(folder or Path.cwd())
    found, any_known = [], False
    for job in spec.jobs:
        key = call_keyer(job)
        durations: dict[str, float] = {}
        for root in runs:
            try:
                run = Run(root)
            except HogError:
                continue
            try:
                recorded = next(
                    (
                        j
                        for j in run.info["jobs"]
                        if j.get("script_sha256") == job.script_sha256
                        and j.get("env_id") == job.environment.env_id
                    ),
                    None,
                )
                if recorded is None or not run.ledger.counts()["succeeded"]:
                    continue
                earlier = next(
                    (j for j in run.sweep_spec().jobs if j.name == recorded["name"]), None
                )
                if earlier is None or earlier.function != job.function:
                    continue
                earlier_key = call_keyer(
                    earlier, recorded["script_sha256"], (run.info.get("inputs") or {}).get("files")
                )
                for planned, record in zip(
                    iter_calls(earlier), run.ledger.iter_calls(earlier.name), strict=False
                ):
                    r = record.record or {}
                    if (
                        record.state is CallState.SUCCEEDED
                        and r.get("t0") is not None
                        and r.get("t1") is not None
                    ):
                        durations[earlier_key(planned)] = r["t1"] - r["t0"]
            except (HogError, OSError, ValueError):
                continue
            finally:
                run.close()
        if not durations:
            found.append(
                _finish(
                    job,
                    0.0,
                    0.0,
                    "none",
                    0,
                    notes=["no earlier run of this script; try --sample N"],
                )
            )
            continue
        any_known = True
        known = [durations[k] for k in map(key, iter_calls(job)) if k in durations]
        total, error = _extrapolate(job, list(durations.values()), len(known), sum(known))
        notes = [f"{len(known):,} of {job.n_calls:,} calls ran before with these arguments"]
        found.append(_finish(job, total, error, "earlier runs", len(durations), notes=notes))
    return found if any_known else None


def estimate(spec, sample: int = 0, folder: Path | None = None) -> list[JobEstimate]:
    """``sample`` > 0: run that many calls of each job here and extrapolate; else from earlier runs (if any).

    ``spec``: a manifest file, a dict, ``hb.sweep(...)`` or a loaded ``RunSpec``.
    """
    if not isinstance(spec, RunSpec):
        from .manifest import load_manifest
        from .python_manifest import Manifest, as_manifest

        spec = (
            as_manifest(spec).spec() if isinstance(spec, dict | Manifest) else load_manifest(spec)
        )
    if sample > 0:
        return estimate_by_sample(spec, sample)
    return estimate_from_earlier(spec, folder) or [
        _finish(job, 0.0, 0.0, "none", 0, notes=["no earlier run of this script; try --sample N"])
        for job in spec.jobs
    ]


# --- a call's time, for sizing tasks --------------------------------------------------------


def _job_key(job: JobSpec) -> str:
    """What makes calls of two runs comparable: the script's bytes, the function, the environment."""
    return f"{job.script_sha256}:{job.function}:{job.environment.env_id}"


def _samples_path(folder: Path | None) -> Path:
    from .run_paths import RUNS_FOLDER

    return (folder or Path.cwd()) / RUNS_FOLDER / SAMPLES_FILE


def remember_samples(
    spec: RunSpec, estimates: list[JobEstimate], folder: Path | None = None
) -> None:
    """Keep each sampled job's time per call for a later ``submit``, for the jobs whose tasks it sizes (best
    effort: a folder we cannot write is fine)."""
    from .backends.registry import limits_for
    from .run_paths import write_atomic

    limits = limits_for(spec)
    estimates = [e for e in estimates if e.job in limits and limits[e.job].target_task_s]
    if not estimates:
        return
    path = _samples_path(folder)
    try:
        kept = json.loads(path.read_text("utf-8"))
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    jobs = {job.name: job for job in spec.jobs}
    for e in estimates:
        if e.source == "sample" and e.measured and e.n_calls and e.job in jobs:
            kept[_job_key(jobs[e.job])] = {"call_s": e.call_s / e.n_calls, "measured": e.measured}
    try:
        write_atomic(path, json.dumps(kept, indent=1, sort_keys=True))
    except OSError:
        pass


def call_times(
    spec: RunSpec, folder: Path | None = None, estimates: list[JobEstimate] | None = None
) -> dict[str, CallTime]:
    """Each job's expected time per call, where known: from ``estimates`` (or earlier runs), else the last sample."""
    found: dict[str, CallTime] = {}
    for e in estimates if estimates is not None else (estimate_from_earlier(spec, folder) or []):
        if e.source != "none" and e.n_calls and e.call_s > 0:
            found[e.job] = CallTime(e.call_s / e.n_calls, e.source)
    missing = [job for job in spec.jobs if job.name not in found]
    if missing:
        try:
            kept = json.loads(_samples_path(folder).read_text("utf-8"))
        except (OSError, ValueError):
            kept = {}
        for job in missing:
            sampled = kept.get(_job_key(job)) if isinstance(kept, dict) else None
            if isinstance(sampled, dict) and isinstance(sampled.get("call_s"), int | float):
                if sampled["call_s"] > 0:
                    found[job.name] = CallTime(float(sampled["call_s"]), "an earlier plan --sample")
    return found


def sizing_call_times(spec: RunSpec, folder: Path | None = None) -> dict[str, CallTime]:
    """``call_times`` for the jobs whose ``auto`` tasks are sized by them (none: nothing is read)."""
    from .backends.registry import sized_by_call_times

    if not sized_by_call_times(spec):
        return {}
    try:
        return call_times(spec, folder)
    except (
        HogError,
        OSError,
        ValueError,
    ):  # sizing is a nicety: an unreadable earlier run never stops a run
        return {}


# --- showing it -------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    from .run_view import duration_text

    return "0s" if seconds < 0.5 else duration_text(seconds)


def estimate_lines(estimates: list[JobEstimate]) -> list[str]:
    lines = ["", "estimate"]
    for e in estimates:
        if e.source == "none":
            lines.append(f"  {e.job}: unknown ({'; '.join(e.notes)})")
            continue
        spread = f" ± {_duration(e.call_s_error)}" if e.call_s_error >= 0.5 else ""
        lines.append(
            f"  {e.job}: calls {_duration(e.call_s)}{spread} in all ({e.n_calls:,} calls, from "
            f"{e.measured} {'sampled' if e.source == 'sample' else 'measured'} call(s), {e.source}); "
            f"wall ~{_duration(e.wall_s)}; {e.core_hours:.3g} core-hours"
        )
        lines.extend(f"    note: {note}" for note in e.notes)
    if len(estimates) > 1:
        lines.append(
            f"  all: calls {_duration(sum(e.call_s for e in estimates))}, "
            f"{sum(e.core_hours for e in estimates):.3g} core-hours"
        )
    return lines


def estimate_json(estimates: list[JobEstimate]) -> str:
    return json.dumps([e.as_dict() for e in estimates])


__all__ = [
    "JobEstimate",
    "call_times",
    "remember_samples",
    "sizing_call_times",
    "estimate",
    "estimate_by_sample",
    "estimate_from_earlier",
    "estimate_lines",
    "spread_indices",
]
