"""The Globus Compute web service, behind one seam, with the service's limits and failure modes kept on our side.

- **Rate**: at most 20 requests in any 10 s (the service's limit): the client
  waits rather than being told 429.
- **Retries**: 429, 5xx and network errors are retried with capped
  exponential backoff (``Retry-After`` honoured), then reported with a fix.
  A submitter's requests ride out a long outage (``HOG_BATCH_GLOBUS_OUTAGE_S``,
  a day by default, at most ``HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S`` between
  tries) so a run survives a service maintenance window; the endpoint lookup
  before a run and ``status`` give up after a few tries.
- **Exactly once**: a submission is sent again only when the service surely
  did not take it (429, 503, or no connection made). Any other failure
  raises ``SubmitUncertain``: the caller looks the task group up instead.
- **Raw answers**: task states are read from the service's JSON, not through
  ``Client.get_batch_result``, which logs a traceback for every failed task,
  leaves failed tasks out, and keeps every result in memory for the life of
  the process.
- The SDK's own transport retries are off (every request on the wire passes
  the rate limiter once), except its refresh of an expired access token on 401.
- ``GLOBUS_SDK_SERVICE_URL_COMPUTE``, globus-sdk's own way to point a client
  at another Compute service, is honoured (the Compute SDK's ``Client``
  ignores it): a proxy, another deployment, or the tests' loopback service.

The SDK is imported only here and in ``auth``, and only when a remote endpoint is used.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import BackendError
from .transport import FUNCTION_NAME

RATE_LIMIT_REQUESTS = 20
RATE_LIMIT_WINDOW_S = 10.0
MAX_ATTEMPTS = 8
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
SURELY_NOT_TAKEN_STATUSES = frozenset({429, 503})  # the service refused before doing anything
LONGEST_RETRY_S = 60.0
# Always sent, as Groundhog does: endpoint templates written as in Globus's docs use them.
CONFIG_DEFAULTS = {"worker_init": "", "endpoint_setup": ""}

T = TypeVar("T")


def retry_base_s() -> float:
    return float(os.environ.get("HOG_BATCH_GLOBUS_RETRY_S", "1.0"))


def outage_budget_s() -> float:
    """How long status requests keep trying through an outage before the run stops (it resumes later)."""
    return float(os.environ.get("HOG_BATCH_GLOBUS_OUTAGE_S", str(24 * 3600)))


def outage_longest_wait_s() -> float:
    return float(os.environ.get("HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S", "300"))


class SubmitUncertain(Exception):
    """The submission may or may not have been taken: the answer was lost (e.g. 502/504, connection reset)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


def _only_refresh_on_401(api) -> None:
    """Turn off the SDK transport's retries, but keep its token refresh on 401 (one retry, after refreshing)."""
    from globus_sdk.transport import RetryCheckCollection
    from globus_sdk.transport.default_retry_checks import check_expired_authorization

    config = getattr(api, "retry_config", None)
    if config is None:
        return
    checks = RetryCheckCollection()
    checks.register_check(check_expired_authorization)
    config.checks = checks
    config.max_retries = 1
    config.max_sleep = 0


def connection_never_made(exc: Exception) -> bool:
    """True when a network error happened before any byte of the request was sent (refused, no route, DNS)."""
    from globus_sdk import GlobusConnectionTimeoutError

    if isinstance(exc, GlobusConnectionTimeoutError):
        return True
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, ConnectionRefusedError) or name in ("NewConnectionError", "NameResolutionError"):
            return True
        stack += [getattr(current, "exc", None), current.__cause__, current.__context__,
                  *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)],
                  getattr(current, "reason", None) if isinstance(getattr(current, "reason", None), BaseException) else None]
    return False


class ComputeService:
    """The SDK's web client, logged in, rate limited and retried; answers as plain dicts."""

    def __init__(self, client: Any = None, limiter: RateLimiter | None = None) -> None:
        self._client = client
        self.limiter = limiter or RateLimiter()

    @property
    def client(self):
        if self._client is None:
            from globus_compute_sdk import Client
            from globus_compute_sdk.serialize import JSONData

            from .auth import ensure_logged_in

            app = ensure_logged_in()
            self._client = Client(app=app, do_version_check=False, data_serialization_strategy=JSONData())
            url = os.environ.get("GLOBUS_SDK_SERVICE_URL_COMPUTE")
            if url:
                from globus_compute_sdk.sdk.client import _ComputeWebClient

                self._client.web_service_address = url.rstrip("/")
                self._client._compute_web_client = _ComputeWebClient(base_url=url.rstrip("/"), app=app)
            web = self._client._compute_web_client
            for api in (web.v2, web.v3):
                _only_refresh_on_401(api)
        return self._client

    @property
    def web(self):
        return self.client._compute_web_client

    def call(self, kind: str, request: Callable[[], T], *, submission: bool = False, patient: bool = False) -> T:
        """Send one request (with retries); ``kind`` names it in errors.

        ``submission``: retry only what the service surely did not take; raise
        ``SubmitUncertain`` otherwise. ``patient``: keep trying through an
        outage of up to ``outage_budget_s`` (status requests).
        """
        from globus_sdk import GlobusAPIError, NetworkError

        _ = self.client  # log in before the first request is timed
        delay_s = retry_base_s()
        longest_s = outage_longest_wait_s() if patient else LONGEST_RETRY_S
        give_up_at = time.monotonic() + outage_budget_s() if patient else None
        attempt = 0
        while True:
            attempt += 1
            last = give_up_at is None and attempt >= MAX_ATTEMPTS or give_up_at is not None and time.monotonic() > give_up_at
            self.limiter.wait()
            try:
                return request()
            except GlobusAPIError as exc:
                status = exc.http_status
                if submission and status in RETRYABLE_STATUSES and status not in SURELY_NOT_TAKEN_STATUSES:
                    raise SubmitUncertain(f"HTTP {status}") from None
                if status not in RETRYABLE_STATUSES or last:
                    raise self._failure(kind, exc) from None
                time.sleep(min(max(delay_s, _retry_after_s(exc)), longest_s))
            except NetworkError as exc:
                if submission and not connection_never_made(exc):
                    raise SubmitUncertain(f"{type(exc).__name__}: {exc}") from None
                if last:
                    raise self._failure(kind, exc) from None
                time.sleep(delay_s)
            delay_s = min(delay_s * 2, longest_s)

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

    def register_function(self, source: str, description: str) -> str:
        """Register the task function as source text (the service stores it with ``PureSourceTextInspect``)."""
        answer = self.call("function registration",
                           lambda: self.client.register_source_code(source, FUNCTION_NAME, description=description),
                           patient=True)
        return str(answer)

    def endpoint_metadata(self, endpoint_id: str) -> dict:
        """The endpoint's record (its ``user_config_schema`` among it); 403/404 raise ``BackendError`` with the status."""
        from globus_sdk import GlobusAPIError

        def ask():
            try:
                return dict(self.web.v2.get_endpoint(endpoint_id).data)
            except GlobusAPIError as exc:
                if exc.http_status in (403, 404):
                    raise EndpointUnreadable(exc.http_status, getattr(exc, "message", "") or str(exc)) from None
                raise

        return self.call("endpoint lookup", ask)

    def submit(self, endpoint_id: str, function_id: str, payloads: list[str], config: dict[str, Any],
               group_id: str) -> list[str]:
        """One batch request into task group ``group_id``: one task id per payload, in order.

        Raises ``SubmitUncertain`` when the service may have taken it.
        """
        batch = self.client.create_batch(task_group_id=group_id, user_endpoint_config={**CONFIG_DEFAULTS, **config})
        for payload in payloads:
            batch.add(function_id, args=(payload,))
        body = batch.prepare()
        answer = self.call("submission", lambda: self.web.v3.submit(endpoint_id, body).data, submission=True,
                           patient=True)
        return [str(task_id) for task_id in answer["tasks"][function_id]]

    def request_fixed_bytes(self, config: dict[str, Any], group_id: str) -> int:
        """The bytes of a submission's body besides its tasks (user runtime, config, ids)."""
        import json

        batch = self.client.create_batch(task_group_id=group_id, user_endpoint_config={**CONFIG_DEFAULTS, **config})
        body = batch.prepare()
        body["tasks"] = {"00000000-0000-0000-0000-000000000000": []}
        return len(json.dumps(body).encode())

    def group_tasks(self, group_id: str) -> list[str] | None:
        """The ids of the tasks in a task group, in the order the service lists them; None if it has no such group."""
        from globus_sdk import GlobusAPIError

        def ask():
            try:
                return self.web.v2.get_task_group(group_id).data
            except GlobusAPIError as exc:
                if exc.http_status == 404:
                    return None
                raise

        answer = self.call("task group lookup", ask, patient=True)
        if answer is None:
            return None
        return [str(task["id"]) for task in answer.get("tasks", [])]

    def statuses(self, task_ids: list[str], patient: bool = True) -> dict[str, dict]:
        """Raw states of many tasks at once: ``{task_id: {"status", "result"?, "exception"?, "reason"?}}``.

        A result is fetched once: the service deletes a finished task when it
        has answered with its result. A task it does not know comes back as
        ``{"status": "failed", "reason": "Unknown task id"}`` (or is missing).
        """
        answer = self.call("status", lambda: self.web.v2.get_task_batch(task_ids).data, patient=patient)
        return dict(answer.get("results") or {})

    def deserialize(self, data: str) -> Any:
        return self.client.fx_serializer.deserialize(data)


class EndpointUnreadable(Exception):
    """The service would not show the endpoint's record (403: not yours to read; 404: unknown)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def _retry_after_s(exc: Exception) -> float:
    try:
        return float(exc.headers.get("Retry-After", 0))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return 0.0


__all__ = ["CONFIG_DEFAULTS", "ComputeService", "EndpointUnreadable", "RateLimiter", "SubmitUncertain"]
