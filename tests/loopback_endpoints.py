"""The loopback service's side of a real ``globus-compute-endpoint`` daemon: registration, commands, tasks, results over AMQP.

Modelled on what globus-compute-endpoint 4.x reads and sends (its
``cli._do_register_endpoint``, ``CoreEndpoint``, ``EndpointInterchange`` and
``rabbit_mq`` modules), not on hog-batch:

- **Registration**: ``globus-compute-endpoint start`` (the core endpoint)
  POSTs ``/v3/endpoints`` the first time and PUTs ``/v3/endpoints/<id>`` once
  its ``endpoint.json`` holds an id. The answer (``registration``) carries
  ``endpoint_id``, ``command_queue_info`` (``connection_url``, ``queue``) and
  ``heartbeat_queue_info`` (``connection_url``, ``exchange``, ``queue``,
  ``queue_publish_kwargs``), pointing at the private RabbitMQ. The endpoint
  then asks Auth's userinfo for its identity set (``/v2/oauth2/userinfo``).
- **Commands**: tasks for an endpoint go to a *user endpoint* chosen by the
  submission's ``user_endpoint_config`` (one per distinct config). The service
  asks the core endpoint to start it with a JSON ``cmd_start_endpoint`` message
  on its command queue (``content_type`` ``application/json``, an AMQP
  ``timestamp``: the endpoint ignores commands more than 180 s old) whose
  ``kwargs`` hold the user endpoint's ``name``, ``user_opts``, ``user_runtime``
  and ``amqp_creds`` (its ``endpoint_id``, ``task_queue_info``,
  ``result_queue_info``, ``heartbeat_queue_info``). The endpoint renders its
  own ``user_config_template.yaml.j2`` and forks ``_start-user-endpoint``.
- **Tasks**: a packed ``Task`` (function buffer + argument buffers) on the
  user endpoint's durable task queue, with the ``function_uuid`` and
  ``task_uuid`` headers the interchange requires. The interchange acknowledges
  a task once its engine has it: a task still queued survives a restart, a
  task already handed to an engine that dies is gone.
- **Results and heartbeats**: the user endpoint publishes packed ``Result``
  messages to the results exchange and ``EPStatusReport`` heartbeats to the
  heartbeats exchange; the core endpoint publishes heartbeats too, and a
  failure notice (a report whose ``global_state`` has ``error``) when it
  cannot start a user endpoint or ignores a stale command. The service turns
  a Result into the task's state (then pushed to the submitter's result queue
  as for every task), a failure notice into the failure of the user
  endpoint's outstanding tasks with that message.
- **Waking a user endpoint**: a start command is sent with the first task of
  a user endpoint that is not running, and again whenever the core endpoint's
  heartbeat arrives while one of its user endpoints with outstanding tasks is
  not running (after a restart, the queued tasks then run).

What this model cannot know, as the real service cannot: a task the engine
had taken when the endpoint died never reports; it stays ``waiting-for-ep``.

One thread owns the service's AMQP connection (pika's BlockingConnection is
not thread-safe): it consumes results and heartbeats and publishes what the
HTTP threads queue for it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import pika

RESULTS = "loopback.endpoints.results"
HEARTBEATS = "loopback.endpoints.heartbeats"
WAKE_AGAIN_S = 15.0  # three heartbeats of the endpoint's shortest period
USER_ENDPOINT_NAMESPACE = uuid.UUID("5d6b3c2e-8f1a-4a8e-9c1e-6b0f3c2d1a00")


def _publish_info(url: str, name: str) -> dict[str, Any]:
    """Where an endpoint publishes (its ResultPublisher checks the exchange and queue exist, passively)."""
    return {
        "connection_url": url,
        "exchange": name,
        "queue": name,
        "queue_publish_kwargs": {
            "exchange": name,
            "routing_key": name,
            "mandatory": True,
            "properties": {"delivery_mode": 2},
        },
    }


class EndpointBroker:
    """Registration answers, start commands, task publishing and result consumption for daemon endpoints."""

    def __init__(self, service, amqp_url: str) -> None:
        self.service, self.amqp_url = service, amqp_url
        self.lock = threading.RLock()
        self.registrations: list[dict] = []  # every registration request the endpoints sent
        self.commands: list[dict] = []  # every command sent to a core endpoint
        self.failure_notices: list[str] = []
        self.results = 0  # Result messages the endpoints published
        self.heartbeats: dict[
            str, float
        ] = {}  # endpoint id -> time.monotonic() of its last heartbeat
        self.user_endpoints: dict[str, dict] = {}  # user endpoint id -> its record
        # user endpoint id -> until when it counts as running (three heartbeat periods after the last)
        self._alive_until: dict[str, float] = {}
        self._woken_at: dict[
            str, float
        ] = {}  # user endpoint id -> when its last start command went
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="loopback-amqp")
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the loopback service could not set up its AMQP exchanges in 60 s")
        if self._error is not None:
            raise RuntimeError(f"the loopback service's AMQP side failed: {self._error!r}")

    # --- HTTP side ------------------------------------------------------------------

    def register(self, endpoint_id: str | None, body: dict) -> tuple[int, dict]:
        """``POST /v3/endpoints`` (``endpoint_id`` None) or ``PUT /v3/endpoints/<id>``: the queues' credentials."""
        endpoint_id = endpoint_id or str(uuid.uuid4())
        metadata = body.get("metadata") or {}
        with self.lock:
            self.registrations.append({"endpoint_id": endpoint_id, **body})
            record = self.service.endpoints.get(endpoint_id)
            if record is None:
                record = self.service.new_endpoint_record(endpoint_id)
            record.update(
                name=body.get("endpoint_name", record["name"]),
                daemon=True,
                multi_user=bool(body.get("multi_user")),
                user_config_schema=metadata.get("user_config_schema") or {},
                metadata=metadata,
            )
            for uep in (
                self.user_endpoints.values()
            ):  # a core endpoint (re)starting has no user endpoints yet
                if uep["endpoint"] == endpoint_id:
                    self._alive_until.pop(uep["id"], None)
                    self._woken_at.pop(uep["id"], None)
        self._send(("declare", f"loopback.commands.{endpoint_id}"))
        return 200, {
            "endpoint_id": endpoint_id,
            "command_queue_info": {
                "connection_url": self.amqp_url,
                "queue": f"loopback.commands.{endpoint_id}",
            },
            "heartbeat_queue_info": _publish_info(self.amqp_url, HEARTBEATS),
            "result_queue_info": _publish_info(self.amqp_url, RESULTS),
        }

    def user_endpoint(self, endpoint_id: str, user_opts: dict, user_runtime: dict) -> str:
        """The user endpoint that runs tasks with this config (one per endpoint and config), its queue declared."""
        key = json.dumps(user_opts, sort_keys=True, separators=(",", ":"))
        uep_id = str(uuid.uuid5(USER_ENDPOINT_NAMESPACE, f"{endpoint_id}/{key}"))
        with self.lock:
            if uep_id not in self.user_endpoints:
                self.user_endpoints[uep_id] = {
                    "id": uep_id,
                    "endpoint": endpoint_id,
                    "name": f"uep.{endpoint_id[:8]}.{uep_id[:8]}",
                    "user_opts": user_opts,
                    "user_runtime": user_runtime,
                    "queue": f"loopback.tasks.{uep_id}",
                }
                self._send(("declare", f"loopback.tasks.{uep_id}"))
        return uep_id

    def dispatch(self, task_id: str, task: dict, task_buffer: str) -> None:
        """Queue the task for its user endpoint; wake the user endpoint when it is not running."""
        from globus_compute_common.messagepack import pack
        from globus_compute_common.messagepack.message_types import Task

        uep = self.user_endpoints[task["uep"]]
        body = pack(Task(task_id=uuid.UUID(task_id), task_buffer=task_buffer))
        headers = {
            "function_uuid": task["function_id"],
            "task_uuid": task_id,
            "resource_specification": json.dumps(task.get("resource_specification") or None),
            "result_serializers": task.get("result_serializers") or [],
        }
        self._send(("task", uep["queue"], body, headers))
        self.wake(uep["id"])

    def running(self, uep_id: str) -> bool:
        with self.lock:
            return self._alive_until.get(uep_id, 0.0) > time.monotonic()

    def wake(self, uep_id: str) -> None:
        """Send a start command unless the user endpoint runs or was sent one within the last ``WAKE_AGAIN_S``."""
        with self.lock:
            now = time.monotonic()
            if (
                self.running(uep_id)
                or now - self._woken_at.get(uep_id, -WAKE_AGAIN_S) < WAKE_AGAIN_S
            ):
                return
            self._woken_at[uep_id] = now
        self.start_user_endpoint(uep_id)

    def start_user_endpoint(self, uep_id: str, timestamp: int | None = None) -> None:
        """A ``cmd_start_endpoint`` command on the core endpoint's queue (``timestamp``: when the service sent it)."""
        uep = self.user_endpoints[uep_id]
        client_id = self.service.client_id
        command = {
            "command": "cmd_start_endpoint",
            "args": [],
            "kwargs": {
                "name": uep["name"],
                "user_opts": uep["user_opts"],
                "user_runtime": uep["user_runtime"],
                "amqp_creds": {
                    "endpoint_id": uep_id,
                    "task_queue_info": {"connection_url": self.amqp_url, "queue": uep["queue"]},
                    "result_queue_info": _publish_info(self.amqp_url, RESULTS),
                    "heartbeat_queue_info": _publish_info(self.amqp_url, HEARTBEATS),
                },
            },
            "globus_effective_identity": client_id,
            "globus_identity_set": [{"sub": client_id}],
            "globus_username": f"{client_id}@clients.auth.globus.org",
        }
        with self.lock:
            self.commands.append(command)
        self._send(
            (
                "command",
                f"loopback.commands.{uep['endpoint']}",
                json.dumps(command).encode(),
                int(time.time()) if timestamp is None else timestamp,
            )
        )

    def outstanding(self, uep_id: str) -> list[str]:
        """The user endpoint's tasks that have no result yet."""
        with self.service.lock:
            return [
                task_id
                for task_id, task in self.service.tasks.items()
                if task.get("uep") == uep_id and task["status"] not in ("success", "failed")
            ]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # --- the AMQP thread --------------------------------------------------------------

    def _send(self, item: tuple) -> None:
        self._outbox.put(item)

    def _run(self) -> None:
        try:
            parameters = pika.URLParameters(self.amqp_url)
            connection = pika.BlockingConnection(parameters)
            channel = connection.channel()
            for name in (RESULTS, HEARTBEATS):
                channel.exchange_declare(exchange=name, exchange_type="direct", durable=True)
                channel.queue_declare(queue=name, durable=True)
                channel.queue_bind(queue=name, exchange=name, routing_key=name)
            channel.basic_consume(queue=RESULTS, on_message_callback=self._on_result)
            channel.basic_consume(queue=HEARTBEATS, on_message_callback=self._on_heartbeat)
        except BaseException as exc:  # noqa: BLE001 - reported by __init__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
                while True:
                    try:
                        item = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    self._publish(channel, item)
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - the broker may be gone first
                pass

    @staticmethod
    def _publish(channel, item: tuple) -> None:
        kind, name, *rest = item
        if kind == "declare":
            channel.queue_declare(queue=name, durable=True)
        elif kind == "task":
            body, headers = rest
            channel.basic_publish(
                exchange="",
                routing_key=name,
                body=body,
                properties=pika.BasicProperties(delivery_mode=2, headers=headers),
            )
        elif kind == "command":
            body, timestamp = rest
            channel.basic_publish(
                exchange="",
                routing_key=name,
                body=body,
                properties=pika.BasicProperties(
                    delivery_mode=2, content_type="application/json", timestamp=timestamp
                ),
            )

    def _on_result(self, channel, method, _properties, body: bytes) -> None:
        from globus_compute_common import messagepack

        try:
            result = messagepack.unpack(body)
            task_id = str(result.task_id)
            with self.lock:
                self.results += 1
            if result.is_error:
                self.service.endpoint_result(task_id, None, result.data, body)
            else:
                self.service.endpoint_result(task_id, result.data, None, body)
        finally:
            channel.basic_ack(method.delivery_tag)

    def _on_heartbeat(self, channel, method, _properties, body: bytes) -> None:
        from globus_compute_common import messagepack

        try:
            report = messagepack.unpack(body)
            self._heartbeat(str(report.endpoint_id), dict(report.global_state or {}))
        finally:
            channel.basic_ack(method.delivery_tag)

    def _heartbeat(self, endpoint_id: str, state: dict) -> None:
        now = time.monotonic()
        period = float(state.get("heartbeat_period") or 0)
        with self.lock:
            self.heartbeats[endpoint_id] = now
            uep = self.user_endpoints.get(endpoint_id)
        if (
            "error" in state
        ):  # a failure notice: the user endpoint did not start (or a command was ignored)
            message = str(state["error"])
            with self.lock:
                self.failure_notices.append(message)
                self._alive_until.pop(endpoint_id, None)
            for task_id in self.outstanding(endpoint_id):
                self.service.endpoint_failure(task_id, message)
            return
        if uep is not None:
            with self.lock:
                if period > 0 and state.get("active", True):
                    self._alive_until[endpoint_id] = now + 3 * period
                else:  # shutting down
                    self._alive_until.pop(endpoint_id, None)
            return
        if (
            period > 0
        ):  # a core endpoint is up: start its user endpoints that have work and are not running
            with self.lock:
                mine = [u for u in self.user_endpoints.values() if u["endpoint"] == endpoint_id]
            for record in mine:
                if self.outstanding(record["id"]):
                    self.wake(record["id"])
