"""Planning for a Globus Compute endpoint: the service's limits are known, in bytes, and kept before anything is sent."""

from __future__ import annotations

from groundhog_batch.backends.base import parse_walltime_s
from groundhog_batch.globus import transport
from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan

ENDPOINT = "5aafb4c1-27b2-40d8-a038-a0277611868f"


def test_auto_packs_every_remote_task_under_the_request_limit(project):
    project.write(
        "work.py",
        "# /// script\n# dependencies = []\n# ///\ndef f(items):\n    return len(items)\n",
    )
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\nsweep:\n  chunks:\n    items:\n"
        f"      values: {['x' * 1000] * 24000}\n      size: 2000\n"
    )
    plan = Plan(load_manifest(project.root / "sweep.yaml"))
    job = plan.jobs[0]
    tasks = list(plan.tasks(job))
    assert len(tasks) > 1 and sum(len(t.calls) for t in tasks) == 12
    for task in tasks:
        payload = plan.payload(task).encode()
        assert (
            transport.request_bytes(payload) + transport.REQUEST_FIXED_RESERVE_BYTES
            <= transport.REQUEST_LIMIT_BYTES
        )


def test_remote_jobs_default_to_many_tasks_in_flight(project):
    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\nsweep:\n  product:\n    x: {{range: [0, 10000]}}\n"
    )
    job = load_manifest(project.root / "sweep.yaml").jobs[0]
    assert job.max_parallel == 64
    assert Plan(load_manifest(project.root / "sweep.yaml")).calls_per_task(job) == 157


def test_walltimes_read_like_slurm():
    assert parse_walltime_s("01:00:00") == 3600
    assert parse_walltime_s("1-00:30:00") == 86400 + 1800
    assert parse_walltime_s("30") == 1800 and parse_walltime_s(30) == 1800
    assert parse_walltime_s("05:30") == 330
    assert parse_walltime_s("soon") is None and parse_walltime_s(None) is None


def test_auto_sizes_tasks_to_the_endpoint_walltime_and_each_task_stops_before_it(project):
    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\ntimeout: 60\nconfig: {{walltime: '00:30:00'}}\n"
        "sweep:\n  product:\n    x: {range: [0, 10000]}\n"
    )
    plan = Plan(load_manifest(project.root / "sweep.yaml"))
    job = plan.jobs[0]
    per_task = plan.calls_per_task(job)
    assert 20 <= per_task < 30
    assert plan.walltime_s(job, per_task) <= 30 * 60 - 60
    assert plan.walltime_warning(job) is None


def test_plan_warns_when_tasks_may_outlive_the_walltime(project):
    project.write("work.py", "def f(x):\n    return x\n")
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\ncalls_per_task: 1000\n"
        "config: {walltime: '00:30:00'}\nsweep:\n  product:\n    x: {range: [0, 10000]}\n"
    )
    shown = project.cli("plan", "sweep.yaml")
    assert shown.returncode == 0, shown.stderr
    assert (
        "warning" in shown.stdout
        and "timeout" in shown.stdout
        and "walltime 00:30:00" in shown.stdout
    )
