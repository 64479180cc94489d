"""The Globus Compute service, behind one seam, with the service's limits kept on our side.

- **Rate**: at most 20 requests in any 10 s (the service's limit): the client
  waits rather than being told 429.
- **Retries**: 429 and 5xx answers and network errors are retried with
  exponential backoff (``Retry-After`` honoured), then reported with a fix.
  The SDK's own transport retries are turned off, so every request on the
  wire passes the rate limiter once.

The SDK is imported only here and in ``auth``, and only when a remote
endpoint is used.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import BackendError

RATE_LIMIT_REQUESTS = 20
RATE_LIMIT_WINDOW_S = 10.0
MAX_ATTEMPTS = 8
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


def retry_base_s() -> float:
    return float(os.environ.get("HOG_BATCH_GLOBUS_RETRY_S", "1.0"))


class RateLimiter:
    """At most ``requests`` in any ``window_s``: ``wait()`` sleeps until one more may go."""

    def __init__(self, requests: int = RATE_LIMIT_REQUESTS, window_s: float = RATE_LIMIT_WINDOW_S) -> None:
        self.requests, self.window_s = requests, window_s
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = time.monotonic()
                while self._sent and self._sent[0] <= now - self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.requests:
                    self._sent.append(now)
                    return waited
                pause = self._sent[0] + self.window_s - now + 0.01
                time.sleep(pause)
                waited += pause


class ComputeService:
    """The SDK's ``Client``, logged in, rate limited and retried."""

    def __init__(self, client: Any = None, limiter: RateLimiter | None = None) -> None:
        self._client = client
        self.limiter = limiter or RateLimiter()

    @property
    def client(self):
        if self._client is None:
            from globus_compute_sdk import Client

            from .auth import ensure_logged_in

            self._client = Client(app=ensure_logged_in(), do_version_check=False)
            web = getattr(self._client, "_compute_web_client", None)
            for api in (getattr(web, "v2", None), getattr(web, "v3", None)):
                if api is not None and hasattr(api, "retry_config"):
                    api.retry_config.max_retries = 0  # ours, below, passes the rate limiter each time
        return self._client

    def call(self, kind: str, request: Callable[[], T]) -> T:
        """Send one request (with retries); ``kind`` names it in the counts and in errors."""
        from globus_sdk import GlobusAPIError, NetworkError

        _ = self.client  # log in before the first request is timed
        delay_s = retry_base_s()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.limiter.wait()
            try:
                return request()
            except GlobusAPIError as exc:
                if exc.http_status not in RETRYABLE_STATUSES or attempt == MAX_ATTEMPTS:
                    raise self._failure(kind, exc) from None
                retry_after = _retry_after_s(exc)
                time.sleep(max(delay_s, retry_after))
            except NetworkError as exc:
                if attempt == MAX_ATTEMPTS:
                    raise self._failure(kind, exc) from None
                time.sleep(delay_s)
            delay_s = min(delay_s * 2, 60.0)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _failure(kind: str, exc: Exception) -> BackendError:
        status = getattr(exc, "http_status", None)
        detail = getattr(exc, "message", None) or str(exc)
        if status in (401, 403):
            return BackendError(message=f"Globus Compute refused the {kind} request ({status}): {detail}",
                                hint="log in again with `hog-batch login` (or check GLOBUS_COMPUTE_CLIENT_ID and "
                                "GLOBUS_COMPUTE_CLIENT_SECRET); the run resumes with `hog-batch resume`")
        where = f"HTTP {status}" if status else "no answer"
        return BackendError(message=f"Globus Compute {kind} request failed after retries ({where}): {detail}",
                            hint="the run keeps its state: `hog-batch resume RUN_DIR` when the service is reachable")

    # --- the requests hog-batch makes -------------------------------------------------

    def register_shell_function(self, command: str, snippet_lines: int, name: str) -> str:
        from globus_compute_sdk import ShellFunction

        function = ShellFunction(command, snippet_lines=snippet_lines, name=name)
        return str(self.call("function registration", lambda: self.client.register_function(function)))

    def endpoint_metadata(self, endpoint_id: str) -> dict:
        return dict(self.call("endpoint lookup", lambda: self.client.get_endpoint_metadata(endpoint_id)))

    def submit(self, endpoint_id: str, function_id: str, payloads: list[str], config: dict[str, Any],
               group_id: str | None) -> tuple[str, list[str]]:
        """One batch request: (task group id, one task id per payload, in order)."""

        def send():
            batch = self.client.create_batch(task_group_id=group_id, user_endpoint_config=config or None)
            for payload in payloads:
                batch.add(function_id, kwargs={"payload": payload})
            return self.client.batch_run(endpoint_id, batch)

        answer = self.call("submission", send)
        return str(answer["task_group_id"]), [str(task_id) for task_id in answer["tasks"][function_id]]

    def statuses(self, task_ids: list[str]) -> dict[str, dict]:
        """Status of many tasks at once; failed tasks are missing from the answer (the service leaves them out)."""
        return self.call("status", lambda: self.client.get_batch_result(task_ids))

    def task(self, task_id: str) -> dict:
        """One task's status: ``{"pending": ..., "result": ...}``, or ``{"exception": text}`` when it failed."""
        from globus_compute_sdk.errors import TaskExecutionFailed
        from globus_sdk import GlobusAPIError

        def ask():
            try:
                return self.client.get_task(task_id)
            except TaskExecutionFailed as exc:
                return {"pending": False, "status": "failed", "exception": str(exc.remote_data)}
            except GlobusAPIError as exc:
                if exc.http_status == 404:
                    return {"pending": False, "status": "unknown", "missing": True}
                raise

        return self.call("task status", ask)


def _retry_after_s(exc: Exception) -> float:
    try:
        return float(exc.headers.get("Retry-After", 0))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return 0.0


__all__ = ["ComputeService", "RateLimiter"]
