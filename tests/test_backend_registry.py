"""The registry of backend kinds: an endpoint resolves to a kind, the kind's limits reach the plan, and a new
backend is one module plus one registry line (shown with a fake kind that reads records from files only)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest
from click.testing import CliRunner

from groundhog_batch import api
from groundhog_batch.backends import registry
from groundhog_batch.backends.base import (
    Backend,
    BackendContext,
    BackendKind,
    Limits,
    TaskReport,
    TaskSubmission,
    parse_walltime_s,
)
from groundhog_batch.backends.records_file import RecordsFiles
from groundhog_batch.cli import main
from groundhog_batch.errors import BackendError, ManifestErrors
from groundhog_batch.manifest import load_manifest
from groundhog_batch.manifest.endpoint_config import resolve_endpoint
from groundhog_batch.plan import Plan
from groundhog_batch.render.runner import TIMEOUT_GRACE_S

UUID = "5AAFB4C1-27B2-40D8-A038-A0277611868F"
SCRIPT = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\ndef f(x):\n    return x + 1\n'


class FakeBackend(Backend):
    """Runs each task's script as a process whose stdout goes nowhere: records come only from the records file,
    as a batch system's would on a shared filesystem. Counts what it was asked to do."""

    name = "fake"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.records = RecordsFiles(context.scratch_dir)
        self.running: dict[str, subprocess.Popen] = {}
        self.submitted: list[str] = []

    def submit(self, tasks: list[TaskSubmission], on_ids) -> None:
        self.context.scratch_dir.mkdir(parents=True, exist_ok=True)
        for task in tasks:
            script = self.context.scratch_dir / f"{task.task_id}.sh"
            script.write_text(task.script)
            secret_fd = self.records.secret_pipe(task.task_id)
            try:
                self.running[task.task_id] = subprocess.Popen(
                    ["bash", str(script)],
                    cwd=self.context.working_dir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, **self.records.environment(task.task_id, secret_fd)},
                    pass_fds=(secret_fd,),
                )
            finally:
                os.close(secret_fd)
            self.submitted.append(task.task_id)
        self.context.meta.set("submitted", len(self.submitted))
        on_ids([(task.task_id, f"fake-{task.task_id}") for task in tasks], None)

    def poll(self, timeout_s: float) -> list[TaskReport]:
        reports = []
        for task_id, process in list(self.running.items()):
            ended = process.poll() is not None
            lines = self.records.read_new(task_id)
            if lines or ended:
                reports.append(
                    TaskReport(task_id, lines=lines, finished=ended, returncode=process.returncode)
                )
            if ended:
                del self.running[task_id]
        if not reports:
            import time

            time.sleep(min(timeout_s, 0.05))
        return reports

    def cancel(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            if task_id in self.running:
                self.running[task_id].terminate()

    def close(self) -> None:
        self.cancel(list(self.running))
        for process in self.running.values():
            process.wait(timeout=30)


class FakeKind(BackendKind):
    name = "fake"
    where = "on the fake"
    service = "the fake"
    opened: list[FakeBackend] = []

    def claims(self, target: str) -> bool:
        return target == "fake"

    def limits(self, config: Mapping[str, Any]) -> Limits:
        return Limits(
            default_parallelism=3,
            max_auto_calls_per_task=2,
            walltime=config.get("walltime"),
            walltime_s=parse_walltime_s(config.get("walltime")),
            task_walltime=True,
        )

    def config_problems(self, job, locate):
        if "queue" in job.endpoint.config and not isinstance(job.endpoint.config["queue"], str):
            return [locate("queue", "queue must be a name", "write e.g. queue: debug")]
        return []

    def open(self, context: BackendContext) -> FakeBackend:
        backend = FakeBackend(context)
        self.opened.append(backend)
        return backend


KIND = FakeKind()


@pytest.fixture
def fake_kind(monkeypatch):
    """The fake kind, registered with one line as a new backend would be."""
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setitem(registry.KINDS, "fake", f"{__name__}:KIND")
    FakeKind.opened.clear()
    return KIND


def fake_project(project, extra=""):
    project.write("work.py", SCRIPT)
    return project.manifest(
        "script: work.py\nfunction: f\nendpoint: box\nendpoints:\n  box:\n    endpoint: fake\n"
        f"    walltime: '00:05:00'\ntimeout: 10\n{extra}sweep:\n  product:\n    x: {{range: [0, 10]}}\n"
    )


def test_every_registered_kind_loads_under_its_own_name():
    assert [kind.name for kind in registry.kinds()] == list(registry.KINDS)
    assert list(registry.KINDS)[:2] == ["local", "globus"]


def test_an_unknown_kind_is_an_error_that_lists_the_kinds():
    with pytest.raises(BackendError) as raised:
        registry.kind("pbs")
    assert (
        "unknown backend kind 'pbs'" in raised.value.message
        and "local, globus" in raised.value.hint
    )


def test_each_endpoint_resolves_to_a_kind():
    assert resolve_endpoint("local", {}, {}, {}, {}, {}).kind == "local"
    direct = resolve_endpoint(UUID, {}, {}, {}, {}, {})
    assert (direct.kind, direct.endpoint_id) == ("globus", UUID.lower())
    named = resolve_endpoint("anvil", {}, {"anvil": {"endpoint": UUID, "account": "x"}}, {}, {}, {})
    assert (named.kind, named.endpoint_id, named.config) == (
        "globus",
        UUID.lower(),
        {"account": "x"},
    )
    here = resolve_endpoint("box", {"box": {"endpoint": "local", "walltime": 5}}, {}, {}, {}, {})
    assert (here.kind, here.endpoint_id, here.config) == ("local", None, {"walltime": 5})


def test_a_named_endpoint_of_a_new_kind_resolves_to_it_and_its_limits_reach_the_plan(
    project, fake_kind
):
    fake_project(project)
    result = CliRunner().invoke(main, ["plan", "--json", str(project.root / "sweep.yaml")])
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)["jobs"][0]
    assert job["max_parallel"] == 3  # the kind's default parallelism
    assert (
        job["calls_per_task"] == 2
    )  # auto: 10 calls over 3 slots, within the kind's largest auto task of 2
    assert job["n_tasks"] == 5 and job["endpoint_id"] is None and job["remote_limits"] is None
    spec = load_manifest(project.root / "sweep.yaml")
    plan = Plan(spec)
    task = next(plan.tasks(spec.jobs[0]))
    assert (
        plan.payload(task).walltime_s == 2 * (10 + TIMEOUT_GRACE_S) + 60
    )  # the kind asks tasks to carry a walltime


def test_a_new_kind_runs_a_whole_run_reading_records_from_files_and_run_json_records_it(
    project, fake_kind
):
    fake_project(project)
    run = api.submit(project.root / "sweep.yaml", run_dir=project.root / "run")
    try:
        table = run.results()
        assert list(table["status"]) == ["succeeded"] * 10 and list(table["result"]) == [
            x + 1 for x in range(10)
        ]
        assert run.info["backend"] == "fake" and run.info["jobs"][0]["kind"] == "fake"
        (backend,) = fake_kind.opened
        assert len(backend.submitted) == 5  # one process per task, each task once
        assert (
            run.ledger.get_meta("fake_submitted") == 5
        )  # its slice of the run's metadata, under its prefix
    finally:
        run.close()


def test_a_new_kinds_config_check_points_at_the_manifest_line(project, fake_kind):
    fake_project(project, extra="config: {queue: 3}\n")
    with pytest.raises(ManifestErrors) as raised:
        load_manifest(project.root / "sweep.yaml")
    (error,) = raised.value.errors
    assert (error.message, error.line, error.key_path) == (
        "queue must be a name",
        9,
        ("config", "queue"),
    )
    assert error.hint == "write e.g. queue: debug"


def test_jobs_on_two_kinds_are_refused_naming_both(project):
    project.write("work.py", SCRIPT)
    project.manifest(
        f"script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\njobs:\n  - name: here\n"
        f"  - name: there\n    endpoint: {UUID}\n"
    )
    with pytest.raises(BackendError) as raised:
        api.create_run(load_manifest(project.root / "sweep.yaml"), project.root / "run")
    assert (
        raised.value.message
        == "job 'here' runs locally and job 'there' on Globus Compute; a run uses one backend"
    )
    assert not (project.root / "run").exists()


def test_plan_packs_against_the_limits_it_is_handed_and_names_them_in_its_error(project):
    project.write("work.py", SCRIPT)
    # An exclusion keeps the calls one by one in the payload (a plain sweep's tasks carry only its axes).
    project.manifest(
        "script: work.py\nfunction: f\nmax_parallel: 1\nsweep:\n  product:\n    x: {range: [0, 41]}\n"
        "  exclude:\n    - {x: 40}\n"
    )
    spec = load_manifest(project.root / "sweep.yaml")
    job = spec.jobs[0]
    small = Limits(
        default_parallelism=1,
        max_auto_calls_per_task=1000,
        payload_bytes=1200,
        payload_limit_text="one tiny task can carry",
        payload_limit_hint="use fewer bytes",
    )
    tasks = list(Plan(spec, {job.name: small}).tasks(job))
    assert len(tasks) > 1 and sum(len(t.calls) for t in tasks) == 40  # cut by bytes, not by calls
    assert (
        len(
            list(
                Plan(
                    spec, {job.name: Limits(default_parallelism=1, max_auto_calls_per_task=1000)}
                ).tasks(job)
            )
        )
        == 1
    )
    tiny = Limits(
        default_parallelism=1,
        max_auto_calls_per_task=1000,
        payload_bytes=10,
        payload_limit_text="one tiny task can carry",
        payload_limit_hint="use fewer bytes",
    )
    with pytest.raises(Exception) as raised:
        list(Plan(spec, {job.name: tiny}).tasks(job))
    assert (
        "over the 10 bytes one tiny task can carry" in raised.value.message
        and raised.value.hint == "use fewer bytes"
    )


def test_a_run_directory_from_before_kinds_were_recorded_still_opens_its_backend(project):
    project.write("work.py", SCRIPT)
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    run = api.prepare(project.root / "sweep.yaml", run_dir=project.root / "run")
    info = json.loads(run.paths.run_info.read_text())
    run.close()
    del info["backend"]
    for job in info["jobs"]:
        del job["kind"]
    run.paths.run_info.write_text(json.dumps(info))
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    old = api.open_run(project.root / "run")
    try:
        assert api.run_kind(old).name == "local" and list(old.results()["result"]) == [2, 3]
    finally:
        old.close()


def test_validate_and_plan_on_a_globus_endpoint_need_no_network(project, monkeypatch):
    project.write("work.py", SCRIPT)
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {UUID}\nconfig: {{walltime: '00:30:00'}}\ntimeout: 5\n"
        "sweep:\n  product:\n    x: {range: [0, 10]}\n"
    )
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("planning reached for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for command in (["validate"], ["plan", "--json"]):
        result = CliRunner().invoke(main, [*command, str(project.root / "sweep.yaml")])
        assert result.exit_code == 0, result.output
    job = json.loads(result.output)["jobs"][0]
    assert (
        job["remote_limits"]["request_bytes"] == 10_000_000
        and job["payload_bytes"]["limit_per_task"] > 0
    )
