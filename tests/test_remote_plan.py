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


def slow_remote_project(project, n_calls=64_000, extra=""):
    project.write(
        "work.py",
        '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
        "import time\ndef f(x):\n    time.sleep(1.5)\n    return x\n",
    )
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {ENDPOINT}\n{extra}"
        f"sweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
    )


def test_auto_remote_tasks_last_about_ten_minutes_once_a_call_time_is_known(project):
    from groundhog_batch.plan import CallTime

    slow_remote_project(project)
    spec = load_manifest(project.root / "sweep.yaml")
    job = spec.jobs[0]
    assert Plan(spec).calls_per_task(job) == 1000  # no call time known: today's packing
    assert Plan(spec, call_times={"f": CallTime(60.0, "sample")}).calls_per_task(job) == 10
    assert (
        Plan(spec, call_times={"f": CallTime(0.01, "sample")}).calls_per_task(job) == 1000
    )  # never above the cap
    slow_remote_project(project, extra="calls_per_task: 500\n")
    spec = load_manifest(project.root / "sweep.yaml")
    assert (
        Plan(spec, call_times={"f": CallTime(60.0, "sample")}).calls_per_task(spec.jobs[0]) == 500
    )


def test_plan_says_what_task_sizes_rest_on_and_a_sample_sizes_the_next_submit(project):
    import json

    from groundhog_batch.estimate import sizing_call_times

    slow_remote_project(project)
    before = project.cli("plan", "sweep.yaml")
    assert before.returncode == 0, before.stderr
    assert "1,000 call(s)" in before.stdout and "no call time known" in before.stdout
    assert "plan --sample N" in before.stdout
    sampled = project.cli("plan", "sweep.yaml", "--sample", "2")
    assert sampled.returncode == 0, sampled.stderr
    assert "tasks of about 10 min at 1.5 s per call (sample)" in sampled.stdout
    shown = json.loads(project.cli("plan", "sweep.yaml", "--json").stdout)["jobs"][0]
    assert 300 <= shown["calls_per_task"] <= 400  # 600 s at about 1.5 s per call
    assert "an earlier plan --sample" in shown["task_sizing"]
    # submit sizes its tasks by the same call time (api.execute plans with sizing_call_times)
    spec = load_manifest(project.root / "sweep.yaml")
    assert (
        Plan(spec, call_times=sizing_call_times(spec, project.root)).calls_per_task(spec.jobs[0])
        == shown["calls_per_task"]
    )
