"""Planning for a Globus Compute endpoint: payload limits are known, and kept, before anything is sent."""

from __future__ import annotations

from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import SHELL_COMMAND_LIMIT_BYTES, Plan

ENDPOINT = "5aafb4c1-27b2-40d8-a038-a0277611868f"


def test_auto_packs_every_remote_task_under_the_shell_function_command_limit(project):
    project.write("work.py", "# /// script\n# dependencies = []\n# ///\ndef f(items):\n    return len(items)\n")
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\nsweep:\n  chunks:\n    items:\n"
                     f"      values: {['x' * 100] * 6000}\n      size: 20\n")
    plan = Plan(load_manifest(project.root / "sweep.yaml"))
    job = plan.jobs[0]
    tasks = list(plan.tasks(job))
    assert len(tasks) > 1 and sum(len(t.calls) for t in tasks) == 300
    for task in tasks:
        assert len(plan.render(task)) <= SHELL_COMMAND_LIMIT_BYTES
    command = plan.shell_function_command(job)
    payload = plan.payload(tasks[0]).encode()
    assert command.format(payload=payload) == plan.render(tasks[0], payload)


def test_remote_jobs_default_to_many_tasks_in_flight(project):
    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest(f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\nsweep:\n  product:\n    x: {{range: [0, 10000]}}\n")
    job = load_manifest(project.root / "sweep.yaml").jobs[0]
    assert job.max_parallel == 64
    assert Plan(load_manifest(project.root / "sweep.yaml")).calls_per_task(job) == 157
