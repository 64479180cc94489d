"""A Globus Compute service on 127.0.0.1, for tests and benchmarks: stateful, real wire format, fault injection.

It answers the Auth and Compute HTTP routes the unmodified ``globus-compute-sdk``
client uses (reached through the SDK's own settings: ``GLOBUS_SDK_ENVIRONMENT=local``
points the Compute client at http://localhost:5000, and
``GLOBUS_SDK_SERVICE_URL_AUTH`` points Auth here too). Tasks run in worker
processes like an endpoint's: the function and arguments are decoded with the
SDK's own ``ComputeSerializer``, the function (a real ``ShellFunction``) is
called in a sandbox directory, and its result is serialized back.

Behaviour copied from the real service, because hog-batch must cope with it:

- requests over the rate limit (20 per 10 s per client) get 429;
- a submission over 10 MB gets 413; results over 10 MB fail their task;
- failed tasks are missing from ``/v2/batch_status`` answers (only ``/v2/tasks/ID``
  tells about them);
- ``user_endpoint_config`` is checked against the endpoint's ``user_config_schema``.

Faults: ``fail_next(kind, status)`` answers the next request of a kind with an
HTTP error; ``fail_tasks`` makes tasks fail at the endpoint; ``hold_tasks``
keeps tasks pending until ``release()``; ``after_submit`` runs a callback right
after a batch request has been answered (the tests kill the submitter there).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path

PORT = 5000  # the SDK's "local" environment: http://localhost:5000
MAX_REQUEST_BYTES = 10 * 1000 * 1000
MAX_RESULT_BYTES = 10 * 1000 * 1000
RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_S = 20, 10.0

SCHEMA = {
    "type": "object",
    "properties": {
        "account": {"type": "string"},
        "partition": {"type": "string"},
        "walltime": {"type": "string"},
        "nodes_per_block": {"type": "integer"},
        "worker_init": {"type": "string"},
        "endpoint_setup": {"type": "string"},
        "cores_per_node": {"type": "integer"},
    },
}


def run_task(function_buffer: str, args_buffer: str, sandbox: str, task_id: str) -> tuple[str, str | None]:
    """In a worker process: (serialized result, None) or ("", remote traceback text)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    serializer = ComputeSerializer()
    try:
        (function_part,) = serializer.unpack_buffers(function_buffer)
        function = serializer.deserialize(function_part)
        packed_args, packed_kwargs = serializer.unpack_buffers(args_buffer)
        args, kwargs = serializer.deserialize(packed_args), serializer.deserialize(packed_kwargs)
        os.environ["GC_TASK_SANDBOX_DIR"] = sandbox
        os.environ["GC_TASK_UUID"] = task_id
        cwd = os.getcwd()
        try:
            result = function(*args, **kwargs)
        finally:
            os.chdir(cwd)
        return serializer.serialize(result), None
    except Exception:
        return "", traceback.format_exc()


class LoopbackGlobus:
    def __init__(self, port: int = PORT, workers: int = 2) -> None:
        self.port = port
        self.lock = threading.RLock()
        self.functions: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self.groups: dict[str, list[str]] = {}
        self.endpoints: dict[str, dict] = {}
        self.requests: Counter[str] = Counter()
        self.rate_limited = 0
        self._recent: deque[float] = deque()
        self._faults: dict[str, list[int]] = {}
        self.fail_tasks = False
        self.hold_tasks = False
        self._held: list[str] = []
        self.after_submit = None
        self.sandbox = Path(tempfile.mkdtemp(prefix="hog-loopback-"))
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- control ----------------------------------------------------------------------

    def start(self) -> LoopbackGlobus:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def environment(self) -> dict[str, str]:
        """Environment variables that point the SDK (and so hog-batch) at this service."""
        return {
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": f"http://127.0.0.1:{self.port}/",
            "GLOBUS_COMPUTE_CLIENT_ID": "8a4bd1cf-0000-4000-8000-00000000c11e",
            "GLOBUS_COMPUTE_CLIENT_SECRET": "loopback-secret",
        }

    def add_endpoint(self, schema: dict | None = None) -> str:
        endpoint_id = str(uuid.uuid4())
        self.endpoints[endpoint_id] = {"uuid": endpoint_id, "name": f"loopback-{endpoint_id[:8]}",
                                       "status": "online", "user_config_schema": schema if schema is not None else SCHEMA}
        return endpoint_id

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.rate_limited = 0
            self._faults.clear()
            self.fail_tasks = self.hold_tasks = False
            self.after_submit = None
            self._recent.clear()

    def fail_next(self, kind: str, *statuses: int) -> None:
        """Answer the next requests of ``kind`` (submit, status, task, function, endpoint, token) with these errors."""
        with self.lock:
            self._faults.setdefault(kind, []).extend(statuses)

    def release(self) -> None:
        """Run the tasks held by ``hold_tasks``."""
        with self.lock:
            self.hold_tasks = False
            held, self._held = self._held, []
        for task_id in held:
            self._start(task_id)

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self.lock:
                if all(task["status"] in ("success", "failed") for task in self.tasks.values()):
                    return
            time.sleep(0.05)

    def executed(self) -> int:
        return sum(1 for task in self.tasks.values() if task["status"] in ("success", "failed"))

    # --- the service ------------------------------------------------------------------

    def _start(self, task_id: str) -> None:
        task = self.tasks[task_id]
        task["status"] = "running"
        if self.fail_tasks:
            self._finish(task_id, None, "Traceback (most recent call last):\nWorkerLost: the worker running this task was lost")
            return
        sandbox = str(self.sandbox / task_id)
        future = self.pool.submit(run_task, self.functions[task["function_id"]]["function_code"], task["args"], sandbox, task_id)
        future.add_done_callback(lambda f: self._finish(task_id, *self._outcome(f)))

    @staticmethod
    def _outcome(future) -> tuple[str | None, str | None]:
        try:
            return future.result()
        except Exception as exc:  # the worker process died, as an endpoint worker can
            return None, f"WorkerLost: {type(exc).__name__}: {exc}"

    def _finish(self, task_id: str, result: str | None, exception: str | None) -> None:
        with self.lock:
            task = self.tasks[task_id]
            if exception is None and len(result) > MAX_RESULT_BYTES:
                exception = f"MaxResultSizeExceeded: task result of {len(result)} bytes is over {MAX_RESULT_BYTES}"
            task.update(status="failed" if exception else "success", result=None if exception else result,
                        exception=exception, completion_t=str(time.time()))

    def _answer(self, kind: str, method: str, path: str, body: dict) -> tuple[int, dict]:
        if kind == "token":
            return 200, {"access_token": uuid.uuid4().hex, "expires_in": 172800, "token_type": "Bearer",
                         "resource_server": "funcx_service", "scope": body.get("scope", ""),
                         "refresh_token": None, "other_tokens": []}
        if path == "/v2/version":
            return 200, {"api": "1.0.0", "min_sdk_version": "1.0.0", "min_ep_version": "1.0.0", "routes": {}}
        if method == "POST" and path in ("/v3/functions", "/v2/functions"):
            function_id = str(uuid.uuid4())
            self.functions[function_id] = body
            return 200, {"function_uuid": function_id}
        if match := re.fullmatch(r"/v2/endpoints/([0-9a-f-]+)(/status)?", path):
            endpoint = self.endpoints.get(match.group(1))
            if endpoint is None:
                return 404, {"code": "ENDPOINT_NOT_FOUND", "reason": f"no endpoint {match.group(1)}"}
            return 200, ({"status": endpoint["status"]} if match.group(2) else endpoint)
        if match := re.fullmatch(r"/v3/endpoints/([0-9a-f-]+)/submit", path):
            return self._submit(match.group(1), body)
        if path == "/v2/batch_status":
            results = {}
            for task_id in body.get("task_ids", []):
                task = self.tasks.get(task_id)
                if task is None or task["status"] == "failed":
                    continue  # like the real service: failed tasks are left out
                results[task_id] = self._task_view(task_id)
            return 200, {"response": "batch", "results": results}
        if match := re.fullmatch(r"/v2/tasks/([0-9a-f-]+)", path):
            if match.group(1) not in self.tasks:
                return 404, {"code": "TASK_NOT_FOUND", "reason": f"unknown task {match.group(1)}"}
            return 200, self._task_view(match.group(1))
        if match := re.fullmatch(r"/v2/taskgroup/([0-9a-f-]+)", path):
            return 200, {"taskgroup_id": match.group(1), "tasks": [{"id": t} for t in self.groups.get(match.group(1), [])]}
        return 404, {"code": "NOT_FOUND", "reason": f"the loopback service does not serve {method} {path}"}

    def _task_view(self, task_id: str) -> dict:
        task = self.tasks[task_id]
        view = {"task_id": task_id, "status": task["status"] if task["status"] in ("success", "failed") else "waiting-for-ep"}
        if task["status"] == "success":
            view.update(result=task["result"], completion_t=task["completion_t"])
        elif task["status"] == "failed":
            view.update(exception=task["exception"], completion_t=task["completion_t"])
        return view

    def _submit(self, endpoint_id: str, body: dict) -> tuple[int, dict]:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return 404, {"code": "ENDPOINT_NOT_FOUND", "reason": f"no endpoint {endpoint_id}"}
        config = body.get("user_endpoint_config") or {}
        allowed = endpoint["user_config_schema"].get("properties", {})
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            return 422, {"code": "INVALID_USER_ENDPOINT_CONFIG", "reason": f"unknown keys {unknown}"}
        group = body.get("task_group_id")
        if group is not None and group not in self.groups:
            return 404, {"code": "TASK_GROUP_NOT_FOUND", "reason": f"no task group {group}"}
        group = group or str(uuid.uuid4())
        self.groups.setdefault(group, [])
        answer: dict[str, list[str]] = {}
        started = []
        for function_id, entries in body["tasks"].items():
            if function_id not in self.functions:
                return 404, {"code": "FUNCTION_NOT_FOUND", "reason": f"no function {function_id}"}
            for args in entries:
                task_id = str(uuid.uuid4())
                self.tasks[task_id] = {"function_id": function_id, "args": args, "status": "waiting-for-ep",
                                       "endpoint": endpoint_id, "group": group}
                self.groups[group].append(task_id)
                answer.setdefault(function_id, []).append(task_id)
                started.append(task_id)
        if self.hold_tasks:
            self._held += started
        else:
            for task_id in started:
                self._start(task_id)
        return 200, {"request_id": str(uuid.uuid4()), "task_group_id": group, "endpoint_id": endpoint_id, "tasks": answer}

    @staticmethod
    def kind_of(method: str, path: str) -> str:
        if path.endswith("/oauth2/token"):
            return "token"
        if path.endswith("/submit"):
            return "submit"
        if path == "/v2/batch_status":
            return "status"
        if path.startswith("/v2/tasks/"):
            return "task"
        if "/functions" in path:
            return "function"
        if path.startswith("/v2/endpoints/"):
            return "endpoint"
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
                        while service._recent and service._recent[0] < now - RATE_LIMIT_WINDOW_S:
                            service._recent.popleft()
                        if len(service._recent) >= RATE_LIMIT_REQUESTS:
                            service.rate_limited += 1
                            return 429, {"code": "RATE_LIMITED", "reason": "over 20 requests in 10 s"}, None
                        service._recent.append(now)
                    faults = service._faults.get(kind)
                    if faults:
                        status = faults.pop(0)
                        return status, {"code": "INJECTED_FAULT", "reason": f"injected {status}"}, None
                    if len(raw) > MAX_REQUEST_BYTES:
                        return 413, {"code": "PAYLOAD_TOO_LARGE", "reason": f"{len(raw)} bytes"}, None
                    if raw and self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                        from urllib.parse import parse_qsl

                        body = dict(parse_qsl(raw.decode()))
                    else:
                        body = json.loads(raw) if raw else {}
                    status, answer = service._answer(kind, method, path, body)
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
