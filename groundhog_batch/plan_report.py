"""What ``hog-batch plan`` shows: a summary per job, as data (``--json``) or as text."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from .backends import registry
from .errors import HogError
from .plan import Plan, iter_calls

SAMPLE_CALLS = 5
MEASURED_CALLS = (
    1_000_000  # a local job with more calls has its payload sizes estimated from its first task
)


def _size(n_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes} B"


def payload_sizes(plan: Plan, job) -> tuple[int, dict[str, Any]]:
    """(tasks, payload bytes: min, max, total, measured). Every task is packed and measured, except in a
    local job of over MEASURED_CALLS calls, which has no byte limit: its tasks are counted and the first
    one measured, so that planning 10^8 calls takes a second, not minutes."""
    if plan.payload_budget_bytes(job) or job.n_calls <= MEASURED_CALLS:
        sizes = [len(plan.payload(task).encode()) for task in plan.tasks(job)]
        return len(sizes), {
            "min": min(sizes, default=0),
            "max": max(sizes, default=0),
            "total": sum(sizes),
            "measured": True,
        }
    n_tasks = -(-job.n_calls // plan.calls_per_task(job))
    first = len(plan.payload(next(plan.tasks(job))).encode())
    return n_tasks, {"min": first, "max": first, "total": first * n_tasks, "measured": False}


def plan_report(plan: Plan) -> dict[str, Any]:
    jobs = []
    for job in plan.jobs:
        n_tasks, sizes = payload_sizes(plan, job)
        signature = f"({', '.join(job.signature.names)})" if job.signature else "(...)"
        jobs.append(
            {
                "name": job.name,
                "script": str(job.script_path),
                "function": job.function + signature,
                "endpoint": job.endpoint.reference,
                "endpoint_id": job.endpoint.endpoint_id,
                "config": job.endpoint.config,
                "unused_variants": list(job.endpoint.unused_variants),
                "environment": {
                    "env_id": job.environment.env_id,
                    "requires_python": job.environment.requires_python,
                    "dependencies": list(job.environment.dependencies),
                    "tool.uv": job.environment.tool_uv,
                },
                "swept": job.sweep.names,
                "n_calls": job.n_calls,
                "n_tasks": n_tasks,
                "calls_per_task": plan.calls_per_task(job),
                "task_sizing": plan.task_sizing(job),
                "max_parallel": job.max_parallel,
                "retries": job.retries,
                "timeout_s": job.timeout_s,
                "payload_bytes": {**sizes, "limit_per_task": plan.payload_budget_bytes(job)},
                "remote_limits": registry.of_job(job).limits_report(plan.limits(job), sizes["max"]),
                "warnings": [w for w in [plan.walltime_warning(job)] if w],
                "first_calls": [call.params for call in islice(iter_calls(job), SAMPLE_CALLS)],
            }
        )
    return {
        "name": plan.spec.name,
        "manifest": str(plan.spec.manifest_path),
        "n_calls": plan.spec.n_calls,
        "n_tasks": sum(j["n_tasks"] for j in jobs),
        "output": str(plan.spec.output) if plan.spec.output else None,
        "jobs": jobs,
    }


def text_report(report: dict[str, Any]) -> str:
    lines = [
        f"run {report['name']}: {len(report['jobs'])} job(s), {report['n_calls']:,} call(s) in {report['n_tasks']:,} task(s)"
    ]
    for job in report["jobs"]:
        env = job["environment"]
        deps = ", ".join(env["dependencies"]) or "no dependencies"
        payload = job["payload_bytes"]
        lines += [
            "",
            f"job {job['name']}",
            f"  script       {job['script']}",
            f"  function     {job['function']}",
            f"  endpoint     {job['endpoint']}"
            + (
                f" ({job['endpoint_id']})"
                if job["endpoint_id"] and job["endpoint_id"] != job["endpoint"]
                else ""
            ),
            f"  calls        {job['n_calls']:,}"
            + (f", swept: {', '.join(job['swept'])}" if job["swept"] else ""),
            f"  tasks        {job['n_tasks']:,} of up to {job['calls_per_task']:,} call(s); {job['max_parallel']} at once",
            f"  sizing       {job['task_sizing']}",
            f"  payload      {_size(payload['min'])} to {_size(payload['max'])} per task, {_size(payload['total'])} in all"
            + (
                f"; limit {payload['limit_per_task']:,} bytes per task"
                if payload["limit_per_task"]
                else ""
            )
            + ("" if payload["measured"] else " (estimated from the first task)"),
            f"  environment  {env['env_id']}: python {env['requires_python'] or '(any)'}; {deps}",
            f"  retries      {job['retries']}; timeout {str(job['timeout_s']) + ' s' if job['timeout_s'] else 'none'}",
        ]
        if job["remote_limits"]:
            limits = job["remote_limits"]
            lines.append(
                f"  request      at most {limits['largest_request_bytes']:,} of {limits['request_bytes']:,} bytes "
                "per submission (one task alone)"
            )
            lines.append(
                f"  result       at most {limits['result_bytes']:,} bytes per task (10 MiB); records get "
                f"{limits['records_bytes_per_task']:,}, calls that would not fit run in another task"
            )
        for warning in job["warnings"]:
            lines.append(f"  warning      {warning}")
        if job["config"]:
            lines.append(f"  config       {json.dumps(job['config'])}")
        if job["unused_variants"]:
            lines.append(f"  variants     not selected: {', '.join(job['unused_variants'])}")
        lines.append("  first calls")
        for i, params in enumerate(job["first_calls"]):
            shown = " ".join(f"{k}={v!r}" for k, v in params.items()) or "(no swept parameters)"
            lines.append(f"    {i:>4}  {shown}")
    if report["output"]:
        lines += ["", f"results will also be exported to {report['output']}"]
    return "\n".join(lines)


def render_task(plan: Plan, index: int) -> str:
    """Task ``index`` (0-based, over all jobs in order) as its bash script."""
    return render_task_and_wrapper(plan, index)[0]


def render_task_and_wrapper(plan: Plan, index: int) -> tuple[str, str | None]:
    """Task ``index`` as its bash script, and what its backend runs it with, if anything (a Slurm array's
    batch script and sbatch options)."""
    from .backends import registry

    if index < 0:
        raise HogError(message=f"--render takes a task number from 0, got {index}")
    for i, task in enumerate(plan.all_tasks()):
        if i == index:
            return plan.render(task), registry.of_job(task.job).render_wrapper(
                task.job, f"{task.job.name}-t{index}"
            )
    raise HogError(
        message=f"there is no task {index}: the plan has {i + 1 if index >= 0 else 0} task(s)",
        hint="`hog-batch plan MANIFEST` shows how many tasks there are; they are numbered from 0",
    )
