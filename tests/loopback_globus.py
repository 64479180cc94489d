"""A Globus Compute service on 127.0.0.1 whose endpoints run tasks with globus-compute-endpoint's own code.

The unmodified ``globus-compute-sdk`` client reaches it through globus-sdk's
own settings: ``GLOBUS_SDK_SERVICE_URL_COMPUTE`` and
``GLOBUS_SDK_SERVICE_URL_AUTH`` name this service (hog-batch's seam honours
the first, which the Compute SDK's ``Client`` ignores), on a free port, so
concurrent test runs never share one.

What runs is the real endpoint package (pinned in the test extra to the SDK's version):

- **The user endpoint's config**: each submission's ``user_endpoint_config``
  and ``user_runtime`` are rendered into the endpoint's template by
  ``globus_compute_endpoint.endpoint.config.utils.render_config_user_template``
  (jsonschema validation against the ``user_config_schema``, Jinja
  ``StrictUndefined``), then loaded by ``load_config_yaml``. By default the
  template and schema are the ones ``globus-compute-endpoint configure``
  ships. A failure fails the submission's tasks with the message the
  endpoint manager sends (``Unable to start user endpoint process ...``).
- **The worker**: every task is a real ``Task`` message (function buffer +
  argument buffers, as the service combines them) executed in a fresh worker
  process by ``globus_compute_endpoint.engines.helper.execute_task``, which
  deserializes, runs, applies the 10 MiB result cap and packs the
  ``Result``. The worker is started like a ``LocalProvider`` block: ``bash
  -c`` with the rendered ``worker_init``, then the worker. (The shipped
  template's ``worker_init`` builds the endpoint's own venv with ``curl`` and
  ``uv pip install globus-compute-endpoint``: the tests' Python already is
  that environment, so that one is not run; a test's own template's is.)
- **A lost worker** (``kill_workers()``) is reported as
  ``GlobusComputeEngine`` reports it: parsl's ``WorkerLost``, packed by the
  engine's ``_handle_task_exception``.

Service behaviour copied because hog-batch must cope with it: 20 requests per
10 s (429 past it; ``rate_limit_requests``, ``rate_window_s``); submissions over
10 MB get 413 (``max_request_bytes``); a client-minted task
group id is taken (and created); a finished task is deleted once its result
has been fetched, after which it is an ``Unknown task id``.

Faults: ``fail_next(kind, *statuses)`` answers the next requests of a kind
with HTTP errors; ``fail_next_tasks(n, message)`` fails the next tasks
before they run, as the endpoint's machinery does (``Ignoring command from
server``); ``lose_next_answer(kind, status)`` does the request, then
answers with an error; ``hold_tasks``/``release()``; ``strand_held()`` (held tasks never run nor report); ``after_submit`` runs a
callback right after a submission has been answered; ``kill_workers()``;
``forget_tasks()`` drops every task record (the service's expiry).

Results pushed: with ``amqp_url`` (a broker from tests/rabbitmq_server.py), a
submission with ``create_queue`` gets a queue ``<queue_prefix><task group>``
on the broker, every result of its tasks is published there as the
endpoint's packed ``Result`` (they stay fetchable by status too), and
``/v2/get_amqp_result_connection_url`` hands out the broker's URL;
``push_results = False`` loses the pushes, ``delete_queues()`` drops the
queues. ``inline = True`` runs pure-Python functions in the service's own
threads (no worker process) for load tests of the service and the queue.

Real endpoints: an endpoint that ``globus-compute-endpoint start`` registered
(``POST``/``PUT /v3/endpoints``, with ``amqp_url``) runs its tasks itself. The
service then sends it start commands and Task messages over RabbitMQ and
takes its Results and heartbeats (tests/loopback_endpoints.py); the daemon is
run by tests/endpoint_daemon.py, in a private network namespace
(tests/netns.py) where this service listens on ``localhost:5000``, the only
address the daemon's Compute client knows besides Globus's own.
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

PORT = 0  # a free ephemeral port
MAX_REQUEST_BYTES = 10 * 1000 * 1000
RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S = 20, 10.0
TESTS_DIR = str(pathlib.Path(__file__).resolve().parent)
# What a restarted multi-user endpoint sends for a command it refuses (core_endpoint.py's failure notice).
IGNORED_COMMAND = (
    "Ignoring command from server\nCommand too old or skew between system clocks is too large.\n"
    "  Command timestamp:  1700000000\n  Endpoint timestamp: 1700000900"
)
# What a user endpoint sends when it refuses to start (cli.py's _pidfile_check inside _SendMessageOnErrorExit):
# after a kill its PID file, touched every 15 s, looks alive for three heartbeats.
PID_FILE_NOTICE = (
    "Failed to start or unexpected error:\n  (MessageSystemExit) \n        PID path: "
    "/home/u/.globus_compute/uep.x/daemon.pid (PID: 4242)\n\nAnother instance of this endpoint is "
    "running.  (Perhaps on another login node?)  Refusing to start.  If this is not correct, then "
    "remove the PID file before starting again."
)
# core_endpoint.py counts its start-up steps in ``exit_code``; rendering the template is its 8th step.
RENDER_STEP_EXIT_CODE = 8
CLIENT_ID = "8a4bd1cf-0000-4000-8000-00000000c11e"  # the client credentials' identity (GLOBUS_COMPUTE_CLIENT_ID)


def shipped(name: str) -> str:
    """A file globus-compute-endpoint ships for ``configure`` (the default endpoint's schema and template)."""
    return resources.files("globus_compute_endpoint.endpoint.config").joinpath(name).read_text()


SHIPPED_SCHEMA = json.loads(shipped("user_config_schema.json"))
SHIPPED_TEMPLATE = shipped("user_config_template.yaml.j2")
# A template written as in Globus's docs: every variable used bare, under StrictUndefined.
STRICT_TEMPLATE = """\
endpoint_setup: {{ endpoint_setup }}
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 1
  provider:
    type: LocalProvider
    init_blocks: 1
    worker_init: {{ worker_init }}
"""


def worker_main() -> None:
    """In a worker process: one packed Task on stdin, the endpoint's packed Result on stdout."""
    from globus_compute_endpoint.engines.helper import execute_task

    task_body = sys.stdin.buffer.read()
    task_id, endpoint_id, run_dir = sys.argv[1:4]
    result = execute_task(task_body, uuid.UUID(task_id), uuid.UUID(endpoint_id), run_dir=run_dir)
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()


def failed_result(task_id: str, message: str) -> bytes:
    """A packed error Result, as the endpoint sends when it cannot run a task (its user endpoint did not start)."""
    from globus_compute_common.messagepack import pack
    from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails

    return pack(
        Result(
            task_id=uuid.UUID(task_id),
            data=message,
            error_details=ResultErrorDetails(code="RemoteExecutionError", user_message=message),
        )
    )


def lost_worker_result(task_id: str) -> bytes:
    """What GlobusComputeEngine sends for a task whose worker died: parsl's WorkerLost, packed by the engine."""
    import time as _time

    from globus_compute_common.messagepack import pack
    from globus_compute_common.messagepack.message_types import TaskTransition
    from globus_compute_common.tasks import ActorName, TaskState
    from globus_compute_endpoint.engines.base import GlobusComputeEngineBase
    from parsl.executors.high_throughput.errors import WorkerLost

    try:
        raise WorkerLost(0, socket.gethostname())
    except WorkerLost as exc:
        lost = exc
    begin = TaskTransition(
        timestamp=_time.time_ns(), actor=ActorName.INTERCHANGE, state=TaskState.WAITING_FOR_LAUNCH
    )
    result = GlobusComputeEngineBase._handle_task_exception(None, uuid.UUID(task_id), begin, [lost])  # type: ignore[arg-type]
    return pack(result)


class UserEndpoint:
    """A rendered user endpoint config: its worker_init, or why it could not start."""

    def __init__(self, endpoint: dict, user_opts: dict, user_runtime: dict) -> None:
        try:
            from globus_compute_endpoint.endpoint.config import CoreEndpointConfig
        except ImportError:  # older globus-compute-endpoint (the SDK floor's own) names it so
            from globus_compute_endpoint.endpoint.config import (
                ManagerEndpointConfig as CoreEndpointConfig,
            )
        from globus_compute_endpoint.endpoint.config.utils import (
            load_config_yaml,
            render_config_user_template,
        )
        from globus_compute_endpoint.endpoint.identity_mapper import MappedPosixIdentity

        self.worker_init, self.failure = "", None
        user = pwd.getpwuid(os.getuid())
        try:
            rendered = render_config_user_template(
                CoreEndpointConfig(),
                endpoint["template"],
                endpoint["template_path"],
                MappedPosixIdentity(user, [], None),
                endpoint["user_config_schema"],
                user_opts,
                user_runtime,
            )
            config = load_config_yaml(rendered)
            if endpoint["run_worker_init"]:
                self.worker_init = str(getattr(config.engine.provider, "worker_init", "") or "")
        except Exception as exc:  # exactly what the endpoint manager reports to the service
            self.failure = (
                f"Unable to start user endpoint process for {user.pw_name}"
                f" [exit code: {RENDER_STEP_EXIT_CODE}; ({type(exc).__name__}) {exc}]"
            )


class LoopbackGlobus:
    def __init__(self, port: int = PORT, workers: int = 2, amqp_url: str | None = None) -> None:
        self.port = port
        self.amqp_url = (
            amqp_url  # a RabbitMQ broker to push results to (tests/rabbitmq_server.py), or None
        )
        self.queue_prefix = "loopback.results."
        self.push_results = (
            True  # False: results of tasks submitted with create_queue are not pushed (lost)
        )
        self.inline = False  # True: run functions in this process, no worker (load tests of the service and queue)
        self.finish_times: list[float] = []  # time.monotonic() of each task's end
        self._machinery_failures: list[str] = []
        self.pushed = 0
        self._amqp_lock = threading.Lock()
        self._amqp_channel = None
        self.lock = threading.RLock()
        self.functions: dict[str, str] = {}  # function id -> packed function buffer
        self.tasks: dict[str, dict] = {}
        self.groups: dict[str, list[str]] = {}
        self.endpoints: dict[str, dict] = {}
        self.requests: Counter[str] = Counter()
        self.finished = 0
        self.rate_limited = 0
        self.largest_request_bytes = 0
        self.max_request_bytes = MAX_REQUEST_BYTES
        self.rate_limit_requests, self.rate_window_s = RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S
        self.arrivals: list[
            float
        ] = []  # when each request (but token requests) arrived, time.monotonic()
        self.refused_too_large = 0
        self.submit_arrivals: list[float] = []  # when each submission arrived, time.monotonic()
        self._recent: deque[float] = deque()
        self._faults: dict[str, list[int]] = {}
        self._lost_answers: dict[str, list[int]] = {}
        self.hold_tasks = False
        self._held: list[str] = []
        self._workers: dict[str, subprocess.Popen] = {}
        self._killed: set[str] = set()
        self.after_submit = None
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="hog-loopback-"))
        self.client_id = CLIENT_ID
        self._endpoint_broker = (
            None  # the AMQP side of daemon endpoints (tests/loopback_endpoints.py)
        )
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- control ----------------------------------------------------------------------

    def start(self) -> LoopbackGlobus:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.kill_workers()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._endpoint_broker is not None:
            self._endpoint_broker.stop()
        with self._amqp_lock:
            if self._amqp_channel is not None:
                try:
                    self._amqp_channel.connection.close()
                except Exception:
                    pass
                self._amqp_channel = None

    # --- results pushed over AMQP, as the service does for a submission with ``create_queue`` ---

    def _amqp(self):
        """The service's one channel to the broker (used under ``_amqp_lock``)."""
        import pika

        if self._amqp_channel is None or self._amqp_channel.is_closed:
            parameters = pika.URLParameters(self.amqp_url)
            parameters.heartbeat = 0  # publishes come from worker threads at any time
            self._amqp_channel = pika.BlockingConnection(parameters).channel()
        return self._amqp_channel

    def _declare_queue(self, group: str) -> str:
        name = self.queue_prefix + group
        with self._amqp_lock:
            self._amqp().queue_declare(queue=name, durable=True)
        return name

    def _push(self, queue: str, packed: bytes) -> None:
        import pika

        with self._amqp_lock:
            self._amqp().basic_publish(
                exchange="",
                routing_key=queue,
                body=packed,
                properties=pika.BasicProperties(delivery_mode=2, timestamp=int(time.time())),
            )
            self.pushed += 1

    def delete_queues(self) -> None:
        """Drop every result queue (the service's expiry of an unused queue)."""
        with self.lock:
            queues = {task.get("queue") for task in self.tasks.values()} - {None}
        with self._amqp_lock:
            for queue in queues:
                self._amqp().queue_delete(queue=queue)

    def environment(self) -> dict[str, str]:
        """Environment variables that point the SDK (and so hog-batch) at this service."""
        return {
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_COMPUTE": f"http://127.0.0.1:{self.port}",
            "GLOBUS_SDK_SERVICE_URL_AUTH": f"http://127.0.0.1:{self.port}/",
            "GLOBUS_COMPUTE_CLIENT_ID": self.client_id,
            "GLOBUS_COMPUTE_CLIENT_SECRET": "loopback-secret",
        }

    def add_endpoint(
        self,
        schema: dict | None = None,
        template: str | None = None,
        metadata_status: int = 200,
        worker_env: dict[str, str | None] | None = None,
    ) -> str:
        """An endpoint as ``globus-compute-endpoint configure`` makes it, unless given another schema or template.

        ``worker_env`` changes the workers' environment (None removes a variable).
        """
        endpoint_id = str(uuid.uuid4())
        record = self.new_endpoint_record(endpoint_id, template)
        record.update(
            user_config_schema=SHIPPED_SCHEMA if schema is None else schema,
            metadata_status=metadata_status,
            worker_env=worker_env or {},
        )
        return endpoint_id

    def new_endpoint_record(self, endpoint_id: str, template: str | None = None) -> dict:
        """An endpoint's record as the service keeps it (loopback workers run its tasks unless ``daemon``)."""
        directory = self.root / endpoint_id
        (directory / "tasks_working_dir").mkdir(parents=True, exist_ok=True)
        template_path = directory / "user_config_template.yaml.j2"
        template_path.write_text(template if template is not None else SHIPPED_TEMPLATE)
        record = self.endpoints[endpoint_id] = {
            "uuid": endpoint_id,
            "name": f"loopback-{endpoint_id[:8]}",
            "status": "online",
            "user_config_schema": SHIPPED_SCHEMA,
            "template": template_path.read_text(),
            "template_path": template_path,
            "run_worker_init": template is not None,
            "metadata_status": 200,
            "worker_env": {},
            "tasks_dir": directory / "tasks_working_dir",
            "daemon": False,  # True once a real globus-compute-endpoint registered it
        }
        return record

    def endpoint_broker(self):
        """The AMQP side of daemon endpoints, set up on the first registration (needs ``amqp_url``)."""
        from loopback_endpoints import EndpointBroker

        with self.lock:
            if self._endpoint_broker is None:
                if not self.amqp_url:
                    raise RuntimeError("a daemon endpoint needs a loopback service with amqp_url")
                self._endpoint_broker = EndpointBroker(self, self.amqp_url)
            return self._endpoint_broker

    def endpoint_result(
        self, task_id: str, result: str | None, exception: str | None, packed: bytes
    ) -> None:
        """A Result a daemon endpoint published; one for a task already finished (or unknown) is dropped."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task["status"] in ("success", "failed"):
                return
        self._finish(task_id, result, exception, packed)

    def endpoint_failure(self, task_id: str, message: str) -> None:
        """The endpoint's failure notice fails the task with its message, as the service does."""
        self.endpoint_result(task_id, None, message, failed_result(task_id, message))

    def task_dir(self, endpoint_id: str) -> pathlib.Path:
        """The endpoint's task working directory (the workers' current directory)."""
        return self.endpoints[endpoint_id]["tasks_dir"]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.rate_limited = 0
            self.largest_request_bytes = 0
            self.max_request_bytes = MAX_REQUEST_BYTES
            self.rate_limit_requests, self.rate_window_s = RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S
            self.arrivals.clear()
            self.submit_arrivals.clear()
            self.refused_too_large = 0
            self.push_results = True
            self.pushed = 0
            self.inline = False
            self.finish_times.clear()
            self._machinery_failures.clear()
            self._faults.clear()
            self._lost_answers.clear()
            self.hold_tasks = False
            self.after_submit = None
            self._recent.clear()

    def set_workers(self, workers: int) -> None:
        """Run up to ``workers`` tasks at once from now on (tasks already started finish in the old pool)."""
        old, self.pool = self.pool, ThreadPoolExecutor(max_workers=workers)
        old.shutdown(wait=False)

    def fail_next(self, kind: str, *statuses: int) -> None:
        """Answer the next requests of ``kind`` (submit, status, task, group, function, endpoint, token) with errors."""
        with self.lock:
            self._faults.setdefault(kind, []).extend(statuses)

    def fail_next_tasks(self, count: int, message: str = IGNORED_COMMAND) -> None:
        """The next ``count`` tasks fail before they run, with the endpoint's ``message`` (its machinery failed)."""
        with self.lock:
            self._machinery_failures.extend([message] * count)

    def lose_next_answer(self, kind: str, status: int = 504) -> None:
        """Do the next request of ``kind``, then answer it with ``status`` (a gateway that lost the answer)."""
        with self.lock:
            self._lost_answers.setdefault(kind, []).append(status)

    def release(self) -> None:
        """Run the tasks held by ``hold_tasks``."""
        with self.lock:
            self.hold_tasks = False
            held, self._held = self._held, []
        for task_id in held:
            self._start(task_id)

    def strand_held(self) -> None:
        """Drop the held tasks unrun, pending for ever: an endpoint took them and died without a word."""
        with self.lock:
            self.hold_tasks = False
            self._held = []

    def kill_workers(self) -> int:
        """SIGKILL every running worker (a node lost, an OOM kill); returns how many."""
        with self.lock:
            running = dict(self._workers)
            self._killed |= set(running)
        for process in running.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(running)

    def running_workers(self) -> int:
        with self.lock:
            return len(self._workers)

    def forget_tasks(self) -> None:
        """Drop every task record, as the service does when tasks expire."""
        with self.lock:
            self.tasks.clear()

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self.lock:
                if not self._held and all(
                    task["status"] in ("success", "failed") for task in self.tasks.values()
                ):
                    return
            time.sleep(0.05)

    def executed(self) -> int:
        return self.finished

    def peak_requests(self, window_s: float | None = None, kind: str | None = None) -> int:
        """The most requests (token requests aside; or only submissions, ``kind="submit"``) that arrived in any
        window of ``window_s``."""
        window_s = window_s or self.rate_window_s
        with self.lock:
            times = sorted(self.submit_arrivals if kind == "submit" else self.arrivals)
        peak, start = 0, 0
        for end, t in enumerate(times):
            while times[start] < t - window_s:
                start += 1
            peak = max(peak, end - start + 1)
        return peak

    # --- the endpoint -----------------------------------------------------------------

    def _start(self, task_id: str) -> None:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:  # forgotten by the service before it ran
                return
            task["status"] = "running"
        with self.lock:
            machinery = self._machinery_failures.pop(0) if self._machinery_failures else None
        if machinery is not None:  # the endpoint's machinery fails the task before it runs
            self._finish(task_id, None, machinery, failed_result(task_id, machinery))
            return
        if task["uep"] is not None:  # a real endpoint daemon runs it
            self.endpoint_broker().dispatch(
                task_id, task, self.functions[task["function_id"]] + task["args"]
            )
            return
        if task["user_endpoint"].failure:
            self._finish(
                task_id,
                None,
                task["user_endpoint"].failure,
                failed_result(task_id, task["user_endpoint"].failure),
            )
            return
        self.pool.submit(self._run_inline if self.inline else self._run, task_id)

    def _run(self, task_id: str) -> None:
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Task

        with self.lock:
            task = self.tasks.get(task_id)
        if task is None:
            return
        endpoint = self.endpoints[task["endpoint"]]
        body = messagepack.pack(
            Task(
                task_id=uuid.UUID(task_id),
                task_buffer=self.functions[task["function_id"]] + task["args"],
            )
        )
        env = dict(os.environ)
        for name, value in endpoint["worker_env"].items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env["PYTHONPATH"] = TESTS_DIR
        launch = (
            f"{task['user_endpoint'].worker_init}\n"
            f"exec {sys.executable} -c 'import loopback_globus; loopback_globus.worker_main()' "
            f"{task_id} {task['endpoint']} {endpoint['tasks_dir']}"
        )
        log = self.root / f"worker-{task_id}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                ["bash", "-c", launch],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=endpoint["tasks_dir"],
                start_new_session=True,
            )
            with self.lock:
                self._workers[task_id] = process
            output, _ = process.communicate(body)
        with self.lock:
            self._workers.pop(task_id, None)
            killed = task_id in self._killed
        if killed or process.returncode != 0 or not output:
            packed = lost_worker_result(task_id)
        else:
            packed = output
        result = messagepack.unpack(packed)
        if result.is_error:
            self._finish(task_id, None, result.data, packed)
        else:
            self._finish(task_id, result.data, None, packed)

    def _run_inline(self, task_id: str) -> None:
        """A pure-Python function run in this thread (no worker, no sandbox), its Result packed as the endpoint does."""
        from globus_compute_common.messagepack import pack
        from globus_compute_common.messagepack.message_types import Result
        from globus_compute_sdk.serialize import ComputeSerializer

        with self.lock:
            task = self.tasks.get(task_id)
        if task is None:
            return
        serializer = ComputeSerializer()
        function, args, kwargs = serializer.unpack_and_deserialize(
            self.functions[task["function_id"]] + task["args"]
        )
        data = serializer.serialize(function(*args, **kwargs))
        self._finish(task_id, data, None, pack(Result(task_id=uuid.UUID(task_id), data=data)))

    def _finish(
        self, task_id: str, result: str | None, exception: str | None, packed: bytes
    ) -> None:
        with self.lock:
            self.finished += 1
            self.finish_times.append(time.monotonic())
            task = self.tasks.get(task_id)
            if task is None:
                return
            task.update(
                status="failed" if exception is not None else "success",
                result=result,
                exception=exception,
                completion_t=str(time.time()),
            )
            queue = task.get("queue") if self.push_results else None
        if queue is not None:
            self._push(queue, packed)

    # --- the service ------------------------------------------------------------------

    def _answer(self, kind: str, method: str, path: str, body: dict) -> tuple[int, dict]:
        if kind == "token":
            return 200, self._token(body.get("scope", ""))
        if (
            kind == "userinfo"
        ):  # Auth's view of the client identity (the endpoint trusts commands from its set)
            return 200, {
                "sub": self.client_id,
                "preferred_username": f"{self.client_id}@clients.auth.globus.org",
                "identity_set": [
                    {
                        "sub": self.client_id,
                        "username": f"{self.client_id}@clients.auth.globus.org",
                    }
                ],
            }
        if (
            kind == "register"
        ):  # globus-compute-endpoint start: POST the first time, then PUT with its id
            match = re.fullmatch(r"/v3/endpoints/([0-9a-f-]+)", path)
            return self.endpoint_broker().register(match.group(1) if match else None, body)
        if path == "/v2/get_amqp_result_connection_url":
            if not self.amqp_url:
                return 404, {
                    "code": "NOT_FOUND",
                    "reason": "this loopback service pushes no results",
                }
            return 200, {"connection_url": self.amqp_url, "queue_prefix": self.queue_prefix}
        if path == "/v2/version":
            return 200, {
                "api": "1.0.0",
                "min_sdk_version": "1.0.0",
                "min_ep_version": "1.0.0",
                "routes": {},
            }
        if method == "POST" and path in ("/v3/functions", "/v2/functions"):
            return self._register(body)
        if match := re.fullmatch(r"/v2/endpoints/([0-9a-f-]+)(/status)?", path):
            endpoint = self.endpoints.get(match.group(1))
            if endpoint is None:
                return 404, {
                    "code": "ENDPOINT_NOT_FOUND",
                    "reason": f"no endpoint {match.group(1)}",
                }
            if endpoint["metadata_status"] != 200:
                return endpoint["metadata_status"], {
                    "code": "FORBIDDEN",
                    "reason": "not allowed to read this endpoint",
                }
            record = {k: endpoint[k] for k in ("uuid", "name", "status", "user_config_schema")}
            return 200, ({"status": endpoint["status"]} if match.group(2) else record)
        if match := re.fullmatch(r"/v3/endpoints/([0-9a-f-]+)/submit", path):
            return self._submit(match.group(1), body)
        if path == "/v2/batch_status":
            return 200, {
                "response": "batch",
                "results": {t: self._fetch(t) for t in body.get("task_ids", [])},
            }
        if match := re.fullmatch(r"/v2/tasks/([0-9a-f-]+)", path):
            if match.group(1) not in self.tasks:
                return 404, {"code": "TASK_NOT_FOUND", "reason": f"unknown task {match.group(1)}"}
            return 200, self._fetch(match.group(1))
        if match := re.fullmatch(r"/v2/taskgroup/([0-9a-f-]+)", path):
            if match.group(1) not in self.groups:
                return 404, {
                    "code": "TASK_GROUP_NOT_FOUND",
                    "reason": f"no task group {match.group(1)}",
                }
            return 200, {
                "taskgroup_id": match.group(1),
                "tasks": [{"id": t} for t in self.groups[match.group(1)]],
            }
        return 404, {
            "code": "NOT_FOUND",
            "reason": f"the loopback service does not serve {method} {path}",
        }

    @staticmethod
    def _token(scope: str) -> dict:
        """Client-credential tokens: one for Compute, one for Auth when its scopes are asked (as Auth answers)."""

        def is_auth(name: str) -> bool:
            return name in ("openid", "profile", "email") or name.startswith(
                "urn:globus:auth:scope:auth.globus.org:"
            )

        compute = [name for name in scope.split() if not is_auth(name)]
        auth = [name for name in scope.split() if is_auth(name)]

        def token(resource_server: str, scopes: list[str]) -> dict:
            return {
                "access_token": uuid.uuid4().hex,
                "expires_in": 172800,
                "token_type": "Bearer",
                "resource_server": resource_server,
                "scope": " ".join(scopes),
                "refresh_token": None,
            }

        tokens = [token("funcx_service", compute)] if compute or not auth else []
        tokens += [token("auth.globus.org", auth)] if auth else []
        return {**tokens[0], "other_tokens": tokens[1:]}

    def _register(self, body: dict) -> tuple[int, dict]:
        from globus_compute_sdk.serialize import ComputeSerializer
        from globus_compute_sdk.serialize.concretes import PureSourceTextInspect

        code = body["function_code"]
        if not body.get(
            "serialized", True
        ):  # source text: stored the way register_source_code documents
            code = ComputeSerializer.pack_buffers(
                [PureSourceTextInspect.identifier + body["function_name"] + ":" + code]
            )
        function_id = str(uuid.uuid4())
        self.functions[function_id] = code
        return 200, {"function_uuid": function_id}

    def _fetch(self, task_id: str) -> dict:
        """A task's state; a finished task is deleted once its result has been handed out."""
        task = self.tasks.get(task_id)
        if task is None:
            return {"task_id": task_id, "status": "failed", "reason": "Unknown task id"}
        view = {
            "task_id": task_id,
            "status": task["status"]
            if task["status"] in ("success", "failed")
            else "waiting-for-ep",
        }
        if task["status"] == "success":
            view.update(result=task["result"], completion_t=task["completion_t"])
        elif task["status"] == "failed":
            view.update(exception=task["exception"], completion_t=task["completion_t"])
        if task["status"] in ("success", "failed"):
            del self.tasks[task_id]
        return view

    def _submit(self, endpoint_id: str, body: dict) -> tuple[int, dict]:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return 404, {"code": "ENDPOINT_NOT_FOUND", "reason": f"no endpoint {endpoint_id}"}
        for function_id in body["tasks"]:
            if function_id not in self.functions:
                return 404, {"code": "FUNCTION_NOT_FOUND", "reason": f"no function {function_id}"}
        user_opts, user_runtime = (
            body.get("user_endpoint_config") or {},
            body.get("user_runtime") or {},
        )
        if endpoint["daemon"]:  # the real endpoint renders its template itself
            user_endpoint = None
            uep = self.endpoint_broker().user_endpoint(endpoint_id, user_opts, user_runtime)
        else:
            user_endpoint, uep = UserEndpoint(endpoint, user_opts, user_runtime), None
        group = body.get("task_group_id") or str(uuid.uuid4())
        self.groups.setdefault(group, [])
        queue = self._declare_queue(group) if body.get("create_queue") and self.amqp_url else None
        answer: dict[str, list[str]] = {}
        started = []
        for function_id, entries in body["tasks"].items():
            for args in entries:
                task_id = str(uuid.uuid4())
                self.tasks[task_id] = {
                    "function_id": function_id,
                    "args": args,
                    "status": "waiting-for-ep",
                    "endpoint": endpoint_id,
                    "group": group,
                    "user_endpoint": user_endpoint,
                    "uep": uep,
                    "resource_specification": body.get("resource_specification"),
                    "result_serializers": body.get("result_serializers"),
                    "queue": queue,
                }
                self.groups[group].append(task_id)
                answer.setdefault(function_id, []).append(task_id)
                started.append(task_id)
        if self.hold_tasks:
            self._held += started
        else:
            for task_id in started:
                self._start(task_id)
        return 200, {
            "request_id": str(uuid.uuid4()),
            "task_group_id": group,
            "endpoint_id": endpoint_id,
            "tasks": answer,
        }

    @staticmethod
    def kind_of(method: str, path: str) -> str:
        if path.endswith("/oauth2/token"):
            return "token"
        if path.endswith("/oauth2/userinfo"):
            return "userinfo"
        if (method == "POST" and path == "/v3/endpoints") or (
            method == "PUT" and re.fullmatch(r"/v3/endpoints/[0-9a-f-]+", path)
        ):
            return "register"
        if path.endswith("/submit"):
            return "submit"
        if path == "/v2/batch_status":
            return "status"
        if path.startswith("/v2/tasks/"):
            return "task"
        if path.startswith("/v2/taskgroup/"):
            return "group"
        if "/functions" in path:
            return "function"
        if path.startswith("/v2/endpoints/"):
            return "endpoint"
        if path == "/v2/get_amqp_result_connection_url":
            return "amqp"
        return "other"

    def _handler(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                kind = service.kind_of(method, path)
                status, answer, after = self._decide(method, path, kind, raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if after is not None:
                    after()

            def _decide(self, method, path, kind, raw):
                with service.lock:
                    service.requests[kind] += 1
                    if kind != "token":
                        now = time.monotonic()
                        service.arrivals.append(now)
                        if kind == "submit":
                            service.submit_arrivals.append(now)
                        while service._recent and service._recent[0] < now - service.rate_window_s:
                            service._recent.popleft()
                        if len(service._recent) >= service.rate_limit_requests:
                            service.rate_limited += 1
                            return (
                                429,
                                {
                                    "code": "RATE_LIMITED",
                                    "reason": f"over {service.rate_limit_requests} "
                                    f"requests in {service.rate_window_s:g} s",
                                },
                                None,
                            )
                        service._recent.append(now)
                    faults = service._faults.get(kind)
                    if faults:
                        status = faults.pop(0)
                        return (
                            status,
                            {"code": "INJECTED_FAULT", "reason": f"injected {status}"},
                            None,
                        )
                    if kind == "submit":
                        service.largest_request_bytes = max(service.largest_request_bytes, len(raw))
                    if len(raw) > service.max_request_bytes:
                        service.refused_too_large += 1
                        return (
                            413,
                            {
                                "code": "PAYLOAD_TOO_LARGE",
                                "reason": f"a request of {len(raw):,} bytes is over "
                                f"the limit of {service.max_request_bytes:,} bytes",
                            },
                            None,
                        )
                    if raw and self.headers.get("Content-Type", "").startswith(
                        "application/x-www-form-urlencoded"
                    ):
                        from urllib.parse import parse_qsl

                        body = dict(parse_qsl(raw.decode()))
                    else:
                        body = json.loads(raw) if raw else {}
                    status, answer = service._answer(kind, method, path, body)
                    lost = service._lost_answers.get(kind)
                    if status == 200 and lost:
                        status = lost.pop(0)
                        answer = {
                            "code": "GATEWAY_TIMEOUT",
                            "reason": f"the answer was lost ({status})",
                        }
                    after = service.after_submit if kind == "submit" and status == 200 else None
                    return status, answer, after

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler
