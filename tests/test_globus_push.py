"""Results pushed over AMQP, as the SDK's Executor gets them: a real RabbitMQ broker the loopback service publishes to.

The broker is Debian's ``rabbitmq-server``, started here on free loopback
ports with private state (tests/rabbitmq_server.py), or the one ``.ci/run``
started (``HOG_BATCH_TEST_AMQP_URL``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import rabbitmq_server
from loopback_globus import LoopbackGlobus
from test_globus_backend import all_ids_committed, remote_project, results, side_effects, wait_for

ECHO = (
    "def hog_batch_task(payload):\n    return {'returncode': 0, 'stdout': payload, 'stderr': ''}\n"
)


@pytest.fixture(scope="module")
def broker():
    url = os.environ.get("HOG_BATCH_TEST_AMQP_URL")
    if url:
        yield url
        return
    why = rabbitmq_server.available()
    if why:
        pytest.skip(why)
    server = rabbitmq_server.RabbitMQ().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def pushing(broker, loopback_service):
    service = LoopbackGlobus(amqp_url=broker).start()
    yield service
    service.stop()


@pytest.fixture
def pushed(pushing, monkeypatch):
    """A loopback service that pushes results to the broker; the CLI and the SDK in this process point at it."""
    pushing.reset()
    for name, value in pushing.environment().items():
        monkeypatch.setenv(name, value)
    yield pushing
    pushing.reset()
    pushing.release()


def test_results_are_pushed_to_the_submitter_and_never_polled(project, pushed):
    log = remote_project(project, pushed, n_calls=12, calls_per_task=1, extra="max_parallel: 12\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12
    assert side_effects(log) == list(range(12))
    assert pushed.pushed == 12 and pushed.requests["amqp"] == 1
    assert pushed.requests["status"] == 0  # no poll at all


def test_results_the_queue_never_delivers_are_looked_up_once_it_has_been_silent(project, pushed):
    remote_project(project, pushed, n_calls=6, calls_per_task=1, extra="max_parallel: 6\n")
    pushed.push_results = False  # the queue stays empty: the results wait at the service
    done = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", env={"HOG_BATCH_GLOBUS_SWEEP_S": "2"}
    )
    assert done.returncode == 0, done.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 6
    assert (
        1 <= pushed.requests["status"] <= 4
    )  # a sweep after 2 s of silence, then after 4, 8...: no poll storm


def test_a_submitter_killed_mid_run_resumes_and_takes_what_was_pushed_meanwhile(project, pushed):
    log = remote_project(project, pushed, n_calls=12, calls_per_task=2, extra="max_parallel: 6\n")
    pushed.hold_tasks = True
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: all_ids_committed(project))
    submitter.kill()
    submitter.wait()
    pushed.release()
    pushed.wait_idle()
    assert pushed.pushed == 6  # in the queue, nobody listening
    amqp_before = pushed.requests["amqp"]
    status = project.cli(
        "status", "run", "--json"
    )  # asks the service once, never waits on the broker
    assert status.returncode == 0 and json.loads(status.stdout)["counts"]["succeeded"] == 12, (
        status.stderr
    )
    assert pushed.requests["amqp"] == amqp_before
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    assert list(results(project)["status"]) == ["succeeded"] * 12
    assert side_effects(log) == list(range(12)) and pushed.requests["submit"] == 1


def test_10000_outstanding_tasks_get_their_results_pushed_without_a_poll_storm(pushed):
    from groundhog_batch.globus.result_queue import ResultQueue
    from groundhog_batch.globus.service import ComputeService

    pushed.inline = (
        True  # the service's own threads run the function: the load is on the service and the queue
    )
    service = ComputeService()
    endpoint = pushed.add_endpoint()
    function_id = service.register_function(ECHO, "echo")
    pushed.hold_tasks = True
    groups, task_ids = [], []
    for start in range(0, 10_000, 2_500):
        groups.append(str(uuid.uuid4()))
        task_ids += service.submit(
            endpoint,
            function_id,
            [f"r{i}" for i in range(start, start + 2_500)],
            {},
            groups[-1],
            create_queue=True,
        )
    queue = ResultQueue(service.result_queue_credentials)
    assert all(queue.watch(group) for group in groups)
    pushed.release()  # 10,000 tasks outstanding, now finishing
    received: dict[str, dict] = {}
    deadline = time.monotonic() + 600
    while len(received) < len(task_ids) and time.monotonic() < deadline:
        for tag, task_id, state in queue.receive(1.0):
            received[task_id] = state
            queue.done(tag)
    last_received = time.monotonic()
    queue.close()
    assert len(received) == 10_000 and set(received) == set(task_ids)
    assert {service.deserialize(received[t]["result"])["stdout"] for t in task_ids[:3]} == {
        "r0",
        "r1",
        "r2",
    }
    assert pushed.requests["status"] == 0
    assert last_received - max(pushed.finish_times) < 30  # within seconds of the last task's end


def test_sigterm_while_waiting_for_pushed_results_ends_the_submitter_at_once(project, pushed):
    import signal

    log = remote_project(project, pushed, n_calls=4, calls_per_task=1, extra="max_parallel: 4\n")
    pushed.hold_tasks = True
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: all_ids_committed(project))
    time.sleep(1)  # now in the broker's event loop, waiting for a push
    submitter.send_signal(signal.SIGTERM)
    _, stderr = submitter.communicate(timeout=15)
    assert submitter.returncode == 143, stderr
    pushed.release()
    done = project.cli("resume", "run")
    assert done.returncode == 0, done.stderr
    assert side_effects(log) == list(range(4)) and pushed.requests["submit"] == 1


def test_results_pushed_close_together_free_their_slots_in_one_submission(
    project, pushed, monkeypatch
):
    # Short one-call tasks run by 8 service threads: without gathering, every result's slot went out in a
    # request of its own, up to the rate limit (20 per 10 s), leaving nothing for `status --watch` or another run.
    monkeypatch.setenv(
        "GC_TASK_SANDBOX_DIR", str(project.root)
    )  # the service threads' task folders
    pushed.inline = True
    pushed.set_workers(8)
    try:
        log = remote_project(
            project, pushed, n_calls=60, calls_per_task=1, extra="max_parallel: 8\n"
        )
        done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    finally:
        pushed.set_workers(2)
    assert done.returncode == 0, done.stderr
    assert side_effects(log) == list(range(60))
    assert pushed.requests["status"] == 0
    # submissions at least a second apart (HOG_BATCH_GLOBUS_SUBMIT_SPACING_S): at most 11 in any 10 s
    assert pushed.peak_requests(10.0, kind="submit") <= 11
    assert pushed.requests["submit"] < 30  # two tasks or more per request, on average
