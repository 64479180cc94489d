"""The backend kinds, listed once: an endpoint resolves to one of these, and run.json records its name.

A new backend is one module defining a ``BackendKind`` instance ``KIND`` and one
line here. Modules are imported when a kind is first asked for, so listing a
kind costs nothing (and heavy SDKs stay behind their own seams).
"""

from __future__ import annotations

from importlib import import_module

from ..errors import BackendError
from ..type_names import TYPE_CHECKING
from .base import BackendKind, Limits

if TYPE_CHECKING:
    from ..manifest.spec import JobSpec, RunSpec

KINDS: dict[str, str] = {
    "local": "groundhog_batch.backends.local_kind:KIND",
    "globus": "groundhog_batch.globus.kind:KIND",
    "slurm": "groundhog_batch.backends.slurm:KIND",
}

_loaded: dict[str, BackendKind] = {}


def kind(name: str) -> BackendKind:
    """The kind registered as ``name``."""
    if name not in _loaded:
        if name not in KINDS:
            raise BackendError(
                message=f"unknown backend kind {name!r}", hint=f"the kinds are: {', '.join(KINDS)}"
            )
        module, _, attribute = KINDS[name].partition(":")
        found = getattr(import_module(module), attribute)
        if found.name != name:
            raise BackendError(
                message=f"{KINDS[name]} registers kind {found.name!r} as {name!r}",
                hint="make the registry line and the kind's name agree",
            )
        _loaded[name] = found
    return _loaded[name]


def kinds() -> list[BackendKind]:
    return [kind(name) for name in KINDS]


def claiming(target: str) -> BackendKind | None:
    """The kind that serves an endpoint written as ``target`` (first in the registry's order), if any."""
    for name in KINDS:  # each kind imported only when the ones before it did not claim the target
        candidate = kind(name)
        if candidate.claims(target):
            return candidate
    return None


def of_job(job: JobSpec) -> BackendKind:
    return kind(job.endpoint.kind)


def job_limits(job: JobSpec) -> Limits:
    return of_job(job).limits(job.endpoint.config)


def limits_for(spec: RunSpec) -> dict[str, Limits]:
    """Each job's limits, by job name: what a ``Plan`` of the spec packs against."""
    return {job.name: job_limits(job) for job in spec.jobs}


def sized_by_call_times(spec: RunSpec) -> bool:
    """Whether some job's ``auto`` tasks are sized by a call's time (its kind sets a target task length): only
    then are earlier runs read for one (``estimate.sizing_call_times``)."""
    limits = limits_for(spec)
    return any(job.calls_per_task == "auto" and limits[job.name].target_task_s for job in spec.jobs)


def of_run(spec: RunSpec) -> BackendKind:
    """The one kind a run's jobs run on; jobs on two kinds are refused (a run has one backend)."""
    by_kind: dict[str, list[str]] = {}
    for job in spec.jobs:
        by_kind.setdefault(job.endpoint.kind, []).append(job.name)
    if len(by_kind) > 1:
        (first, first_jobs), (second, second_jobs) = list(by_kind.items())[:2]
        raise BackendError(
            message=f"job {first_jobs[0]!r} runs {kind(first).where} and job {second_jobs[0]!r} "
            f"{kind(second).where}; a run uses one backend",
            hint="give every job an endpoint of one kind (or run them all here with --local), "
            "or split the manifest in two",
        )
    return kind(next(iter(by_kind), "local"))


__all__ = ["KINDS", "claiming", "kind", "kinds", "limits_for", "job_limits", "of_job", "of_run"]
