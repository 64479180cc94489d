"""Results pushed over AMQP, the way the SDK's own ``Executor`` receives them.

A submission asks the service for a result queue (``create_queue``); the
service then publishes every result of that request's task group to the
queue ``<queue_prefix><task_group_id>`` on its RabbitMQ broker, and
``GET /v2/get_amqp_result_connection_url`` hands out the credentials. This
consumes those queues on one connection, in the submitter's own thread (no
background thread: ``receive`` waits in pika's event loop, which a SIGTERM
ends at once).

- A message is a packed ``Result`` (globus-compute-common's messagepack):
  it becomes the same raw state a status answer gives
  (``{"status": "success", "result": ...}`` or ``{"status": "failed",
  "exception": ...}``), so one function makes reports of both.
- A message is acknowledged only once the ledger holds what it carried
  (``done``): a submitter killed in between gets it again next time.
- Memory: the broker sends at most ``prefetch`` unacknowledged messages,
  sized from the largest result seen (a few while that is unknown).
- Anything wrong with the broker (no credentials, refused, dropped) turns
  pushing off for the rest of the process: the backend polls instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MEMORY_BUDGET_BYTES = 64 * 1024 * 1024  # of results waiting unacknowledged in this process
FIRST_PREFETCH = 6  # while result sizes are unknown: 6 results of 10 MiB at most
MAX_PREFETCH = 1000
HEARTBEAT_S = 600  # the submitter may spend minutes submitting between two receives


def state_of(body: bytes) -> tuple[str, dict[str, Any]]:
    """(task id, raw state) of a pushed ``Result`` message."""
    from globus_compute_common.messagepack import unpack

    result = unpack(body)
    if result.is_error:
        return str(result.task_id), {"status": "failed", "exception": result.data}
    return str(result.task_id), {"status": "success", "result": result.data}


class ResultQueue:
    def __init__(self, credentials: Callable[[], dict]) -> None:
        self._credentials = credentials  # the service's connection URL and queue prefix
        self._connection = None
        self._channel = None
        self._prefix = ""
        self._groups: list[str] = []
        self._consuming: set[str] = set()
        self._prefetch = 0
        self._largest_bytes = 0
        self._received: list[tuple[int, bytes]] = []
        self._to_ack: list[int] = []
        self._generation = 0  # of the channel: delivery tags belong to one channel
        self.failure: str | None = None  # why pushing is off; None while it works
        self.missing: set[str] = set()  # groups whose queue the broker does not have

    @property
    def working(self) -> bool:
        return self.failure is None

    def _fail(self, why: str) -> None:
        self.failure = why
        self.close(ack=False)

    def connect(self) -> bool:
        """Connect (once); False, with ``failure`` set, when results cannot be pushed here."""
        if self._channel is not None or self.failure is not None:
            return self.failure is None
        try:
            import pika

            answer = self._credentials()
            self._prefix = str(answer.get("queue_prefix") or "")
            parameters = pika.URLParameters(str(answer["connection_url"]))
            parameters.heartbeat = HEARTBEAT_S
            parameters.connection_attempts = 2
            parameters.socket_timeout = 10
            self._connection = pika.BlockingConnection(parameters)
            self._new_channel()
            self._set_prefetch()
            self._consuming = set()
            for group in self._groups:
                self._consume(group)
        except Exception as exc:  # noqa: BLE001 - any failure means: poll instead
            self._fail(f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
            return False
        return True

    def _new_channel(self) -> None:
        """A fresh channel: what the old one delivered and we did not acknowledge comes again."""
        self._channel = self._connection.channel()
        self._generation += 1
        self._to_ack, self._received = [], []
        self._prefetch = 0
        self._set_prefetch()

    def _set_prefetch(self) -> None:
        wanted = (
            FIRST_PREFETCH
            if not self._largest_bytes
            else max(FIRST_PREFETCH, min(MAX_PREFETCH, MEMORY_BUDGET_BYTES // self._largest_bytes))
        )
        if wanted != self._prefetch and self._channel is not None:
            self._channel.basic_qos(prefetch_count=wanted, global_qos=True)
            self._prefetch = wanted

    def _consume(self, group: str) -> None:
        import pika.exceptions

        if group in self._consuming or group in self.missing:
            return
        try:
            self._channel.basic_consume(
                queue=self._prefix + group, on_message_callback=self._on_message
            )
        except pika.exceptions.ChannelClosedByBroker:  # no such queue: its tasks are polled
            self.missing.add(group)
            self._new_channel()
            consuming, self._consuming = self._consuming, set()
            for other in consuming:
                self._consume(other)
            return
        self._consuming.add(group)

    def watch(self, group: str) -> bool:
        """Consume the result queue of a task group; False when its results will not be pushed here."""
        if group not in self._groups:
            self._groups.append(group)
        if not self.connect():
            return False
        try:
            self._consume(group)
        except Exception as exc:  # noqa: BLE001
            self._fail(f"{type(exc).__name__}: {exc}")
            return False
        return group not in self.missing

    def _on_message(self, channel, deliver, properties, body: bytes) -> None:
        self._received.append((deliver.delivery_tag, body))

    def receive(self, timeout_s: float) -> list[tuple[tuple[int, int], str, dict]]:
        """Results pushed since the last call, waiting up to ``timeout_s`` for the first: (tag, task id, state)."""
        if not self.connect():
            time.sleep(max(timeout_s, 0))
            return []
        try:
            self._ack()
            if not self._received:
                self._connection.process_data_events(time_limit=max(timeout_s, 0))
            else:
                self._connection.process_data_events(time_limit=0)
        except Exception as exc:  # noqa: BLE001 - the broker went away: poll instead
            self._fail(f"{type(exc).__name__}: {exc}")
            return []
        received, self._received = self._received, []
        out = []
        for tag, body in received:
            self._largest_bytes = max(self._largest_bytes, len(body))
            try:
                task_id, state = state_of(body)
            except Exception:  # noqa: BLE001 - not a Result: dropped
                self._to_ack.append(tag)
                continue
            out.append(((self._generation, tag), task_id, state))
        self._set_prefetch()
        return out

    def done(self, tag: tuple[int, int]) -> None:
        """The ledger holds what message ``tag`` carried: acknowledge it (with the next receive)."""
        generation, delivery_tag = tag
        if generation == self._generation and self._channel is not None:
            self._to_ack.append(delivery_tag)

    def _ack(self) -> None:
        for tag in self._to_ack:
            self._channel.basic_ack(delivery_tag=tag)
        self._to_ack = []

    def close(self, ack: bool = True) -> None:
        """Acknowledge what the ledger holds (unless the connection broke), then close."""
        try:
            if ack and self._channel is not None:
                self._ack()
        except Exception:  # noqa: BLE001 - unacknowledged messages come again to the next consumer
            pass
        connection, self._connection, self._channel = self._connection, None, None
        self._to_ack, self._received = [], []
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


__all__ = ["ResultQueue", "state_of"]
