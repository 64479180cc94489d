"""Sweeps through the real ``globus-compute-endpoint`` daemon: registered, fed and answered over a real RabbitMQ.

The daemon (tests/endpoint_daemon.py) is the unmodified endpoint package:
``globus-compute-endpoint start`` registers with the loopback service
(tests/loopback_globus.py, its AMQP side in tests/loopback_endpoints.py),
consumes start commands, forks a user endpoint from its template, which
consumes Task messages and publishes Result messages and heartbeats. The
service pushes results to the run's result queue as for every task. The
daemon, the broker, the service and the hog-batch CLI share a private
network namespace (tests/netns.py): the daemon's Compute client only knows
``http://localhost:5000``.

One namespace, broker, service and daemon serve the whole module; each test
has its own endpoint config (``config: {tag: ...}``), hence its own user
endpoint and task queue.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid

import endpoint_daemon
import netns
import pytest
import rabbitmq_server
from loopback_globus import LoopbackGlobus
from test_globus_backend import results, side_effects

WAIT_S = 150.0
STRANDED_S = 40  # above the time the calls wait at the gate before the kill, however loaded the machine  # the longest any step may take on a loaded machine
SCRIPT = (
    '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
    "import os, time\n"
    "GATE, LOG, STARTED = {gate!r}, {log!r}, {started!r}\n"
    "def f(x):\n"
    "    with open(STARTED, 'a') as started:\n"
    "        started.write(f'{{x}}\\n')\n"
    "    deadline = time.time() + 300\n"
    "    while not os.path.exists(GATE) and time.time() < deadline:\n"
    "        time.sleep(0.05)\n"
    "    with open(LOG, 'a') as log:\n"
    "        log.write(f'{{x}}\\n')\n"
    "    return {{'x': x, 'square': x * x}}\n"
)


@pytest.fixture(scope="module")
def daemon_world(loopback_service):
    """(namespace, service, daemon): the endpoint daemon running against the loopback service, in a namespace."""
    for why in (netns.available(), rabbitmq_server.available(), endpoint_daemon.available()):
        if why:
            pytest.skip(why)
    namespace = netns.NetNamespace()
    broker = service = daemon = None
    try:
        broker = namespace.call(lambda: rabbitmq_server.RabbitMQ().start())
        service = namespace.call(lambda: LoopbackGlobus(port=5000, amqp_url=broker.url).start())
        daemon = endpoint_daemon.EndpointDaemon(service).configure()
        namespace.call(daemon.start)
        yield namespace, service, daemon
    finally:
        if daemon is not None:
            daemon.close()
        if service is not None:
            service.stop()
        if broker is not None:
            broker.stop()
        namespace.close()


class Sweep:
    """A project whose calls wait at a gate, run by hog-batch inside the namespace."""

    def __init__(self, project, world, n_calls: int, calls_per_task: int, config: str = "") -> None:
        self.project, (self.namespace, self.service, self.daemon) = project, world
        self.tag = "t" + uuid.uuid4().hex[:8]  # never all digits, which YAML would read as a number
        self.gate = project.root / "gate"
        self.log = project.root / "side-effects.txt"
        self.started = project.root / "started.txt"
        project.write(
            "work.py",
            SCRIPT.format(gate=str(self.gate), log=str(self.log), started=str(self.started)),
        )
        project.manifest(
            f"script: work.py\nfunction: f\nendpoint: {self.daemon.endpoint_id}\n"
            f"config:\n  tag: {self.tag}\n{config}"  # its own user endpoint and task queue
            f"calls_per_task: {calls_per_task}\nmax_parallel: {n_calls}\n"
            f"sweep:\n  product:\n    x: {{range: [0, {n_calls}]}}\n"
        )
        self.n_calls = n_calls

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.service.environment(),
            "HOG_BATCH_GLOBUS_SWEEP_S": "5",
            # a task the killed endpoint had taken never reports: looked up after this much silence
            "HOG_BATCH_GLOBUS_STRANDED_S": str(STRANDED_S),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.namespace.call(
            subprocess.run,
            [sys.executable, "-m", "groundhog_batch", *args],
            cwd=self.project.root,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            env=self.env(),
        )

    def submit_in_background(self) -> subprocess.Popen:
        return self.namespace.call(
            subprocess.Popen,
            [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
            cwd=self.project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def started_calls(self) -> list[int]:
        return (
            sorted(int(x) for x in self.started.read_text().split())
            if self.started.exists()
            else []
        )

    def wait_started(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.started_calls()) < count:
            assert time.monotonic() < deadline, (
                f"no {count} calls started\n{self.daemon.log_tail()}"
            )
            time.sleep(0.1)

    def wait_acknowledged(self, count: int) -> None:
        """Until the user endpoint has acknowledged ``count`` tasks to the broker (its debug log says so)."""
        line = f"Acknowledged through message: {count}\n"
        deadline = time.monotonic() + WAIT_S
        while True:
            names = [
                u["name"]
                for u in self.service.endpoint_broker().user_endpoints.values()
                if u["user_opts"].get("tag") == self.tag
            ]
            logs = [self.daemon.compute_dir / name / "endpoint.log" for name in names]
            if any(log.exists() and line in log.read_text(errors="replace") for log in logs):
                return
            assert time.monotonic() < deadline, (
                f"no {count} tasks acknowledged\n{self.daemon.log_tail()}"
            )
            time.sleep(0.1)

    def open_gate(self) -> None:
        self.gate.write_text("go")

    def assert_every_call_finished_once(self) -> None:
        table = results(self.project)
        assert list(table["status"]) == ["succeeded"] * self.n_calls
        assert list(table["result.square"]) == [x * x for x in range(self.n_calls)]
        assert (
            list(table["attempts"]) == [1] * self.n_calls
        )  # a rerun the endpoint caused is no attempt
        assert side_effects(self.log) == list(range(self.n_calls))  # each call ran to its end once


def finish(submitter: subprocess.Popen, daemon) -> tuple[int, str]:
    try:
        _, stderr = submitter.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        submitter.kill()
        _, stderr = submitter.communicate()
        raise AssertionError(
            f"the submitter did not finish\n{stderr}\n{daemon.log_tail()}"
        ) from None
    return submitter.returncode, stderr


def test_a_sweep_on_an_endpoint_run_by_the_daemon_brings_every_result_back_once(
    project, daemon_world
):
    sweep = Sweep(project, daemon_world, n_calls=20, calls_per_task=2)
    sweep.open_gate()
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr + sweep.daemon.log_tail()
    sweep.assert_every_call_finished_once()
    broker = sweep.service.endpoint_broker()
    assert broker.results >= 10  # each task's Result came from the daemon's user endpoint
    assert [c["command"] for c in broker.commands] == ["cmd_start_endpoint"]


def test_the_daemon_killed_mid_run_and_restarted_finishes_every_call_once_with_no_retry(
    project, daemon_world
):
    sweep = Sweep(project, daemon_world, n_calls=20, calls_per_task=1, config="  debug: true\n")
    submitter = sweep.submit_in_background()
    sweep.wait_started(2)  # two calls at the gate; the user endpoint's engine holds the rest
    sweep.wait_acknowledged(20)  # taken off the broker: no redelivery will come
    sweep.daemon.kill()  # the host lost: daemon, user endpoint and running calls
    # Every PID file gone (an administrator's clean-up, or a restart long after): the user endpoint starts
    # cleanly, and the tasks the killed one had taken are gone without a word. Only the silence says so.
    sweep.daemon.remove_stale_pid_files(user_endpoints=True)
    sweep.namespace.call(sweep.daemon.start)
    sweep.open_gate()
    returncode, stderr = finish(submitter, sweep.daemon)
    assert returncode == 0, stderr
    sweep.assert_every_call_finished_once()
    assert not sweep.service.endpoint_broker().failure_notices


def test_the_daemon_stopped_mid_run_and_started_again_finishes_every_call_once_with_no_retry(
    project, daemon_world
):
    # The engine real endpoints run (the shipped template's): parsl's HighThroughputExecutor, workers in blocks.
    sweep = Sweep(project, daemon_world, n_calls=12, calls_per_task=1, config="  engine: globus\n")
    submitter = sweep.submit_in_background()
    sweep.wait_started(2)
    # `globus-compute-endpoint stop`: the busy user endpoint outlives stop's 10 s (exit 255), then is killed.
    sweep.daemon.stop()
    sweep.daemon.remove_stale_pid_files()  # the core endpoint's, as its refusal to start asks
    sweep.namespace.call(sweep.daemon.start)
    sweep.open_gate()
    returncode, stderr = finish(submitter, sweep.daemon)
    assert returncode == 0, stderr
    sweep.assert_every_call_finished_once()


def test_a_templated_endpoint_renders_each_users_config_and_its_schema_names_a_misspelt_key(
    project, daemon_world
):
    setup_ran = project.root / "endpoint-setup-ran"
    sweep = Sweep(
        project,
        daemon_world,
        n_calls=4,
        calls_per_task=2,
        config=f"  endpoint_setup: {json.dumps(f'touch {shlex.quote(str(setup_ran))}')}\n"
        "  max_workers: 1\n",
    )
    sweep.open_gate()
    # The schema the daemon published at registration: hog-batch refuses before anything is submitted.
    misspelt = sweep.cli("submit", "sweep.yaml", "--run-dir", "run", "--set", "config.max_worker=2")
    assert misspelt.returncode == 2, misspelt.stderr
    assert "'max_worker'" in misspelt.stderr and "did you mean 'max_workers'" in misspelt.stderr
    assert not (project.root / "run").exists()
    done = sweep.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr + sweep.daemon.log_tail()
    sweep.assert_every_call_finished_once()
    assert (
        setup_ran.exists()
    )  # the user's endpoint_setup, rendered into the template, ran as it started
