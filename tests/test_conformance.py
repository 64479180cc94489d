"""One conformance suite that every backend passes: submit -> poll -> finished, failure, cancel,
reattach after the submitter dies, exactly once.

Each backend is one fixture, ``<kind>_target``, listed in ``BACKENDS``: it gives the
manifest's ``endpoint`` (and any ``endpoints:`` table) for that kind, and how to wait
until nothing it started is still running. A new backend adds its fixture and its name.

Two levels, both against the real thing:
- the contract itself (``Backend`` from ``make_backend``: submit, poll, reattach by a new backend);
- the run, through the CLI: exit codes, the results table, side effects counted per call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import SCRIPT_HEAD

from groundhog_batch.api import make_backend, open_run, prepare
from groundhog_batch.backends.base import TaskReport, TaskSubmission
from groundhog_batch.plan import Plan
from groundhog_batch.render.payload import iter_records
from groundhog_batch.render.runner import DELIMITER

WAIT_S = 120.0
# f(x) sleeps ``pause``, fails when x == fail, else appends x to LOG (one line per call that really ran); from
# x == held_from on, a call first waits (up to 2 minutes) for the file ``go``: a run stopped part-way surely runs.
WORK = SCRIPT_HEAD + (
    "import os, time\n"
    "LOG = {log!r}\n"
    "def f(x, pause=0.0, fail=-1, held_from=None, go=None):\n"
    "    time.sleep(pause)\n"
    "    deadline = time.monotonic() + 120\n"
    "    while held_from is not None and x >= held_from and not os.path.exists(go):\n"
    "        if time.monotonic() > deadline:\n"
    "            raise TimeoutError('the test never created ' + go)\n"
    "        time.sleep(0.05)\n"
    "    if x == fail:\n"
    "        raise ValueError(f'call {{x}} fails')\n"
    "    with open(LOG, 'a') as log:\n"
    "        log.write(f'{{x}}\\n')\n"
    "    return x * x\n"
)


@dataclass
class Target:
    """Where the conformance suite sends its runs: one backend kind."""

    kind: str
    endpoint: str  # the manifest's `endpoint:` value
    endpoints: str = ""  # manifest lines defining it, if it is a named table
    settle: Callable[[], None] = field(
        default=lambda: None
    )  # wait until nothing the backend started still runs


@pytest.fixture
def local_target():
    return Target("local", "local")


@pytest.fixture
def globus_target(globus):
    return Target("globus", globus.add_endpoint(), settle=globus.wait_idle)


@pytest.fixture
def slurm_target(slurm):
    return Target(
        "slurm", "cluster", "endpoints:\n  cluster:\n    endpoint: slurm\n", settle=slurm.idle
    )


BACKENDS = ["local", "globus", "slurm"]


@pytest.fixture(params=BACKENDS)
def target(request) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


def write_project(project, target: Target, n_calls: int, rest: str = "") -> object:
    log = project.root / "side-effects.txt"
    project.write("work.py", WORK.format(log=str(log)))
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {target.endpoint}\n{target.endpoints}{rest}"
        f"sweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
    )
    return log


def ran(log) -> Counter:
    return Counter(int(x) for x in log.read_text().split()) if log.exists() else Counter()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def table(project, run_dir="run"):
    run = open_run(project.root / run_dir)
    try:
        return run.results(), run.info
    finally:
        run.close()


# --- the contract, directly ------------------------------------------------------------------


def submissions(run, backend) -> list[TaskSubmission]:
    plan = Plan(run.spec())
    found = []
    for number, task in enumerate(plan.all_tasks()):
        payload = plan.payload(task).encode()
        script = plan.render(task, payload) if backend.needs_script else ""
        found.append(
            TaskSubmission(
                f"{task.job.name}-t{number}",
                task.job.name,
                [c.index for c in task.calls],
                script,
                payload,
            )
        )
    return found


def records_of(report: TaskReport) -> list[dict]:
    decoded = list(report.records)
    if report.lines:
        decoded += list(iter_records([DELIMITER, *report.lines.decode().splitlines()]))
    return [record for record in decoded if "ok" in record]


def poll_until_finished(backend, task_ids: set[str]) -> dict[str, list[TaskReport]]:
    reports: dict[str, list[TaskReport]] = {}
    finished: set[str] = set()
    deadline = time.monotonic() + WAIT_S
    while finished != task_ids:
        assert time.monotonic() < deadline, f"tasks never finished: {sorted(task_ids - finished)}"
        for report in backend.poll(0.5):
            assert report.task_id not in finished, f"a report after {report.task_id} finished"
            reports.setdefault(report.task_id, []).append(report)
            if report.finished:
                finished.add(report.task_id)
    return reports


def test_the_backend_reports_every_call_once_and_finishes_every_task(project, target):
    log = write_project(project, target, 12, "calls_per_task: 4\nkwargs: {fail: 5}\n")
    run = prepare(project.root / "sweep.yaml", run_dir=project.root / "run")
    backend = make_backend(run)
    try:
        tasks = submissions(run, backend)
        given: list[tuple[str, str]] = []
        backend.submit(tasks, lambda ids, group: given.extend(ids))
        assert sorted(task_id for task_id, _ in given) == sorted(t.task_id for t in tasks)
        assert all(external for _, external in given)
        reports = poll_until_finished(backend, {t.task_id for t in tasks})
    finally:
        backend.close()
        run.close()
    records = [
        record
        for task_reports in reports.values()
        for report in task_reports
        for record in records_of(report)
    ]
    assert sorted(record["call"] for record in records) == list(range(12))  # each call exactly once
    failed = [record for record in records if not record["ok"]]
    assert [record["call"] for record in failed] == [5] and "call 5 fails" in failed[0][
        "error"
    ]  # failure: the call's own
    assert all(record["ok"] for record in records if record["call"] != 5)
    assert sorted(ran(log)) == [x for x in range(12) if x != 5]


def test_a_new_backend_reattaches_to_tasks_a_dead_submitter_left_and_nothing_is_reported_twice(
    project, target
):
    log = write_project(project, target, 6, "calls_per_task: 3\nkwargs: {pause: 0.3}\n")
    run = prepare(project.root / "sweep.yaml", run_dir=project.root / "run")
    first = make_backend(run)
    tasks = submissions(run, first)
    given: dict[str, str] = {}
    first.submit(tasks, lambda ids, group: given.update(ids))
    wait_until(lambda: sum(ran(log).values()) >= 1, "a first call to run")
    second = make_backend(run)  # the first submitter is gone: it is never polled again
    try:
        reports = second.reattach([(t.task_id, t.job, given[t.task_id], t.calls) for t in tasks])
        assert [r.task_id for r in reports] == [t.task_id for t in tasks]
        unfinished = {r.task_id for r in reports if not r.finished}
        later = poll_until_finished(second, unfinished) if unfinished else {}
    finally:
        second.close()
        first.close()
        run.close()
    recorded = Counter(
        rec["call"]
        for r in [*reports, *(x for v in later.values() for x in v)]
        for rec in records_of(r)
    )
    assert all(count == 1 for count in recorded.values()), recorded
    target.settle()
    assert set(recorded) <= set(
        ran(log)
    )  # a recorded call ran; an unrecorded one runs again (the executor requeues it)
    if unfinished:  # a backend whose tasks outlive the submitter follows them to the end
        assert sorted(recorded) == list(range(6))


# --- the run, through the CLI ------------------------------------------------------------------


def test_submit_runs_every_call_once_and_run_json_records_the_kind(project, target):
    log = write_project(project, target, 12, "calls_per_task: 4\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    results, info = table(project)
    assert list(results["status"]) == ["succeeded"] * 12 and list(results["result"]) == [
        x * x for x in range(12)
    ]
    assert info["backend"] == target.kind and {job["kind"] for job in info["jobs"]} == {target.kind}
    assert ran(log) == Counter(range(12))
    again = project.cli("resume", "run")  # a finished run: resume runs nothing
    assert again.returncode == 0, again.stderr
    assert ran(log) == Counter(range(12))


def test_a_failing_call_fails_alone_with_its_error_and_exit_1(project, target):
    log = write_project(project, target, 6, "calls_per_task: 3\nkwargs: {fail: 4}\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1, done.stderr
    results, _ = table(project)
    assert list(results["status"]) == ["succeeded"] * 4 + ["failed", "succeeded"]
    assert results["error"][4].startswith("ValueError: call 4 fails")
    assert ran(log) == Counter([0, 1, 2, 3, 5])


def test_cancel_mid_run_keeps_finished_calls_and_cancels_the_rest(project, target):
    go = project.root / "go"  # calls 2 on wait for it: the cancel surely lands mid-run
    log = write_project(
        project,
        target,
        20,
        "calls_per_task: 1\nmax_parallel: 1\n"
        f"kwargs: {{pause: 0.3, held_from: 2, go: {json.dumps(str(go))}}}\n",
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--detach")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: sum(ran(log).values()) >= 2, "two calls to run")
    cancelled = project.cli("cancel", "run")
    assert cancelled.returncode == 0, cancelled.stderr
    go.touch()  # a held call the cancel left running finishes now (and must not count as succeeded)
    results, _ = table(project)
    statuses = Counter(results["status"])
    assert set(statuses) <= {"succeeded", "cancelled"} and statuses["cancelled"] > 0, statuses
    succeeded = set(results.loc[results["status"] == "succeeded", "call"])
    target.settle()
    assert succeeded <= set(ran(log))  # every result kept is a call that ran
    assert (
        json.loads(project.cli("status", "run", "--json").stdout)["counts"].get("cancelled")
        == statuses["cancelled"]
    )


def test_a_submitter_killed_mid_run_then_resume_runs_every_call_exactly_once(project, target):
    log = write_project(
        project, target, 12, "calls_per_task: 2\nmax_parallel: 2\nkwargs: {pause: 0.2}\n"
    )
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: sum(ran(log).values()) >= 2, "two calls to run")
    finally:
        os.killpg(submitter.pid, signal.SIGKILL)
        submitter.wait()
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    results, _ = table(project)
    assert list(results["status"]) == ["succeeded"] * 12 and list(results["result"]) == [
        x * x for x in range(12)
    ]
    target.settle()
    assert ran(log) == Counter(range(12))  # exactly once
