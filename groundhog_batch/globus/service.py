"""The Globus Compute web service, behind one seam, with the service's limits and failure modes kept on our side.

- **Rate**: at most 20 requests in any 10 s (the service's limit) for all of
  a user's hog-batch processes together (``rate_limit``): the client waits
  rather than being told 429.
- **Retries**: 429, 5xx and network errors are retried with capped,
  jittered exponential backoff (``backoff``; ``Retry-After`` honoured).
  A submitter's requests ride out an outage of up to
  ``HOG_BATCH_GLOBUS_OUTAGE_S`` (a day by default, at most
  ``HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S`` between tries), then the run pauses
  (``ServicePaused``, exit 2, resumable); the endpoint lookup before a run and
  ``status`` give up after 8 tries or about a minute.
- **Exactly once**: a submission is sent again only when the service surely
  did not take it (429, 503, or no connection made). Any other failure
  raises ``SubmitUncertain``: the caller looks the task group up instead. A
  413 raises ``RequestTooLarge``: the caller splits the request.
- **Raw answers**: task states are read from the service's JSON, not through
  ``Client.get_batch_result``, which logs a traceback for every failed task,
  leaves failed tasks out, and keeps every result in memory for the life of
  the process. A status answer is read as it arrives (``json_stream``), one
  task's state at a time: an answer of 500 results of 10 MiB never sits in memory.
- The SDK's own transport retries are off (every request on the wire passes
  the rate limiter once), except its refresh of an expired access token on 401.
- ``GLOBUS_SDK_SERVICE_URL_COMPUTE``, globus-sdk's own way to point a client
  at another Compute service, is honoured (the Compute SDK's ``Client``
  ignores it): a proxy, another deployment, or the tests' loopback service.

The SDK is imported only here and in ``auth``, and only when a remote endpoint is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import BackendError
from .backoff import Backoff
from .json_stream import object_entries
from .rate_limit import SharedRateLimiter
from .transport import FUNCTION_NAME

MAX_ATTEMPTS = 8  # of a quick request (the endpoint lookup, ``status``), within QUICK_BUDGET_S
QUICK_BUDGET_S = 60.0
QUICK_LONGEST_WAIT_S = 15.0
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
SURELY_NOT_TAKEN_STATUSES = frozenset({429, 503})  # the service refused before doing anything
# Always sent, as Groundhog does: endpoint templates written as in Globus's docs use them.
CONFIG_DEFAULTS = {"worker_init": "", "endpoint_setup": ""}
DEFAULT_SERVICE_URL = "https://compute.api.globus.org"
ANSWER_CHUNK_BYTES = 1 << 20

T = TypeVar("T")


def retry_base_s() -> float:
    return float(os.environ.get("HOG_BATCH_GLOBUS_RETRY_S", "1.0"))


def outage_budget_s() -> float:
    """How long a submitter's requests keep trying through an outage before the run pauses (it resumes later)."""
    return float(os.environ.get("HOG_BATCH_GLOBUS_OUTAGE_S", str(24 * 3600)))


def outage_longest_wait_s() -> float:
    return float(os.environ.get("HOG_BATCH_GLOBUS_OUTAGE_MAX_WAIT_S", "300"))


def patient_backoff() -> Backoff:
    """The backoff of a submitter's requests: through an outage of up to ``outage_budget_s``."""
    return Backoff(retry_base_s(), outage_longest_wait_s(), outage_budget_s())


def quick_backoff() -> Backoff:
    """The backoff of a request someone waits for (the endpoint lookup, ``status``): about a minute."""
    return Backoff(
        retry_base_s(),
        QUICK_LONGEST_WAIT_S,
        float(os.environ.get("HOG_BATCH_GLOBUS_QUICK_S", QUICK_BUDGET_S)),
    )


class SubmitUncertain(Exception):
    """The submission may or may not have been taken: the answer was lost (e.g. 502/504, connection reset)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RequestTooLarge(Exception):
    """The service refused a submission for its size (413): nothing of it was taken."""

    def __init__(self, request_bytes: int, detail: str) -> None:
        super().__init__(f"HTTP 413 for a {request_bytes:,}-byte request: {detail}")
        self.request_bytes, self.detail = request_bytes, detail


class ServiceUnreachable(BackendError):
    """A quick request (the endpoint lookup, ``status``) got no usable answer within its few tries."""


class ServicePaused(BackendError):
    """The service did not answer within the retry budget: the run stops, resumable, with nothing lost."""


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
        if isinstance(current, ConnectionRefusedError) or name in (
            "NewConnectionError",
            "NameResolutionError",
        ):
            return True
        stack += [
            getattr(current, "exc", None),
            current.__cause__,
            current.__context__,
            *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)],
            getattr(current, "reason", None)
            if isinstance(getattr(current, "reason", None), BaseException)
            else None,
        ]
    return False


class ComputeService:
    """The SDK's web client, logged in, rate limited and retried; answers as plain dicts."""

    def __init__(self, client: Any = None, limiter: SharedRateLimiter | None = None) -> None:
        self._client = client
        self._limiter = limiter

    @property
    def limiter(self) -> SharedRateLimiter:
        """The user's one limiter at this service, shared by every hog-batch process (a file in the state directory)."""
        if self._limiter is None:
            url = (os.environ.get("GLOBUS_SDK_SERVICE_URL_COMPUTE") or DEFAULT_SERVICE_URL).rstrip(
                "/"
            )
            self._limiter = SharedRateLimiter.for_service(
                url, os.environ.get("GLOBUS_COMPUTE_CLIENT_ID") or "user"
            )
        return self._limiter

    @property
    def client(self):
        if self._client is None:
            from globus_compute_sdk import Client
            from globus_compute_sdk.serialize import JSONData

            from .auth import ensure_logged_in

            app = ensure_logged_in()
            self._client = Client(
                app=app, do_version_check=False, data_serialization_strategy=JSONData()
            )
            url = os.environ.get("GLOBUS_SDK_SERVICE_URL_COMPUTE")
            if url:
                from globus_compute_sdk.sdk.client import _ComputeWebClient

                self._client.web_service_address = url.rstrip("/")
                self._client._compute_web_client = _ComputeWebClient(
                    base_url=url.rstrip("/"), app=app
                )
            web = self._client._compute_web_client
            for api in (web.v2, web.v3):
                _only_refresh_on_401(api)
        return self._client

    @property
    def web(self):
        return self.client._compute_web_client

    def call(
        self,
        kind: str,
        request: Callable[[], T],
        *,
        submission: bool = False,
        patient: bool = False,
    ) -> T:
        """Send one request, retried with backoff; ``kind`` names it in errors.

        ``submission``: retry only what the service surely did not take; raise
        ``SubmitUncertain`` otherwise. ``patient`` (a submitter's requests):
        keep trying through an outage of up to ``outage_budget_s``, then raise
        ``ServicePaused``; else give up after ``MAX_ATTEMPTS`` tries or about a
        minute. Each request holds a slot of the user's rate limit until it completes.
        """
        from globus_sdk import GlobusAPIError, NetworkError

        _ = self.client  # log in before the first request is timed
        backoff = patient_backoff() if patient else quick_backoff()
        attempt = 0
        while True:
            attempt += 1
            token = self.limiter.acquire()
            try:
                return request()
            except GlobusAPIError as exc:
                status = exc.http_status
                if (
                    submission
                    and status in RETRYABLE_STATUSES
                    and status not in SURELY_NOT_TAKEN_STATUSES
                ):
                    raise SubmitUncertain(f"HTTP {status}") from None
                if status not in RETRYABLE_STATUSES:
                    raise self._failure(kind, exc, final=True) from None
                failure: Exception = exc
                at_least_s = _retry_after_s(exc)
            except NetworkError as exc:
                if submission and not connection_never_made(exc):
                    raise SubmitUncertain(f"{type(exc).__name__}: {exc}") from None
                failure, at_least_s = exc, 0.0
            finally:
                self.limiter.release(token)
            if (not patient and attempt >= MAX_ATTEMPTS) or not backoff.wait(at_least_s):
                raise self._failure(kind, failure, backoff if patient else None) from None

    @staticmethod
    def _failure(
        kind: str, exc: Exception, backoff: Backoff | None = None, final: bool = False
    ) -> BackendError:
        status = getattr(exc, "http_status", None)
        detail = api_detail(exc)
        if status in (401, 403):
            return BackendError(
                message=f"Globus Compute refused the {kind} request ({status}): {detail}",
                hint="log in again with `hog-batch login` (or check GLOBUS_COMPUTE_CLIENT_ID and "
                "GLOBUS_COMPUTE_CLIENT_SECRET); the run resumes with `hog-batch resume`",
            )
        where = f"HTTP {status}" if status else "no answer"
        if backoff is not None:
            return ServicePaused(
                message=f"paused: Globus Compute has not answered the {kind} request for "
                f"{backoff.elapsed_s():.0f} s ({backoff.waits + 1} tries; last: {where}: {detail})",
                hint="nothing is lost: `hog-batch resume RUN_DIR` goes on where the run stopped once "
                "the service answers (HOG_BATCH_GLOBUS_OUTAGE_S sets how long a run waits)",
            )
        error = BackendError if final else ServiceUnreachable
        return error(
            message=f"Globus Compute {kind} request failed{'' if final else ' after retries'} ({where}): {detail}",
            hint="the run keeps its state: `hog-batch resume RUN_DIR` when the service is reachable",
        )

    # --- the requests hog-batch makes -------------------------------------------------

    def register_function(self, source: str, description: str) -> str:
        """Register the task function as source text (the service stores it with ``PureSourceTextInspect``)."""
        answer = self.call(
            "function registration",
            lambda: self.client.register_source_code(
                source, FUNCTION_NAME, description=description
            ),
            patient=True,
        )
        return str(answer)

    def endpoint_metadata(self, endpoint_id: str) -> dict:
        """The endpoint's record (its ``user_config_schema`` among it); 403/404 raise ``BackendError`` with the status."""
        from globus_sdk import GlobusAPIError

        def ask():
            try:
                return dict(self.web.v2.get_endpoint(endpoint_id).data)
            except GlobusAPIError as exc:
                if exc.http_status in (403, 404):
                    raise EndpointUnreadable(
                        exc.http_status, getattr(exc, "message", "") or str(exc)
                    ) from None
                raise

        return self.call("endpoint lookup", ask)

    def submit(
        self,
        endpoint_id: str,
        function_id: str,
        payloads: list[str | tuple],
        config: dict[str, Any],
        group_id: str,
        create_queue: bool = False,
    ) -> list[str]:
        """One batch request into task group ``group_id``: one task id per payload, in order.

        Each of ``payloads`` is a task's payload, or all its arguments as a tuple.

        ``create_queue``: the service pushes the group's results to a queue
        (``result_queue_credentials``). Raises ``SubmitUncertain`` when the
        service may have taken it, ``RequestTooLarge`` on 413.
        """
        batch = self.client.create_batch(
            task_group_id=group_id,
            user_endpoint_config={**CONFIG_DEFAULTS, **config},
            create_websocket_queue=create_queue,
        )
        for payload in payloads:
            batch.add(function_id, args=payload if isinstance(payload, tuple) else (payload,))
        body = batch.prepare()

        def send():
            from globus_sdk import GlobusAPIError

            try:
                return self.web.v3.submit(endpoint_id, body).data
            except GlobusAPIError as exc:
                if exc.http_status == 413:
                    raise RequestTooLarge(len(json.dumps(body).encode()), api_detail(exc)) from None
                raise

        answer = self.call("submission", send, submission=True, patient=True)
        return [str(task_id) for task_id in answer["tasks"][function_id]]

    def request_fixed_bytes(self, config: dict[str, Any], group_id: str) -> int:
        """The bytes of a submission's body besides its tasks (user runtime, config, ids)."""
        batch = self.client.create_batch(
            task_group_id=group_id, user_endpoint_config={**CONFIG_DEFAULTS, **config}
        )
        body = batch.prepare()
        body["tasks"] = {"00000000-0000-0000-0000-000000000000": []}
        return len(json.dumps(body).encode())

    def group_tasks(self, group_id: str, patient: bool = True) -> list[str] | None:
        """The ids of the tasks in a task group, in the order the service lists them; None if it has no such group."""
        from globus_sdk import GlobusAPIError

        def ask():
            try:
                return self.web.v2.get_task_group(group_id).data
            except GlobusAPIError as exc:
                if exc.http_status == 404:
                    return None
                raise

        answer = self.call("task group lookup", ask, patient=patient)
        if answer is None:
            return None
        return [str(task["id"]) for task in answer.get("tasks", [])]

    def statuses(self, task_ids: list[str], patient: bool = True) -> dict[str, dict]:
        """Raw states of many tasks at once: ``{task_id: {"status", "result"?, "exception"?, "reason"?}}``.

        A result is fetched once: the service deletes a finished task when it
        has answered with its result. A task it does not know comes back as
        ``{"status": "failed", "reason": "Unknown task id"}`` (or is missing).
        """
        return dict(self.status_stream(task_ids, patient))

    def status_stream(
        self, task_ids: list[str], patient: bool = True
    ) -> Iterator[tuple[str, dict]]:
        """The raw states of ``statuses``, one task at a time as the answer arrives, never the whole answer in memory."""
        response = self.call(
            "status",
            lambda: self.web.v2.request(
                "POST", "/v2/batch_status", data={"task_ids": list(task_ids)}, stream=True
            ),
            patient=patient,
        )
        raw = (
            response._raw_response
        )  # globus-sdk keeps the requests.Response unread when asked to stream
        try:
            for task_id, state in object_entries(raw.iter_content(ANSWER_CHUNK_BYTES), "results"):
                yield (
                    str(task_id),
                    dict(state) if isinstance(state, dict) else {"status": "unknown"},
                )
        finally:
            raw.close()

    def result_queue_credentials(self) -> dict:
        """Where results are pushed: ``{"connection_url": "amqps://...", "queue_prefix": ...}`` (new credentials each time)."""
        return dict(
            self.call("result queue credentials", lambda: self.web.v2.get_result_amqp_url().data)
        )

    def deserialize(self, data: str) -> Any:
        return self.client.fx_serializer.deserialize(data)


class EndpointUnreadable(Exception):
    """The service would not show the endpoint's record (403: not yours to read; 404: unknown)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def api_detail(exc: Exception) -> str:
    """What the service said, in its own words (its JSON's ``reason`` or ``message``), else the error's text."""
    answer = getattr(exc, "raw_json", None)
    if isinstance(answer, dict):
        for key in ("reason", "message", "detail"):
            if isinstance(answer.get(key), str) and answer[key]:
                return answer[key]
    return getattr(exc, "message", None) or str(exc)


def _retry_after_s(exc: Exception) -> float:
    try:
        return float(exc.headers.get("Retry-After", 0))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return 0.0


__all__ = [
    "CONFIG_DEFAULTS",
    "ComputeService",
    "EndpointUnreadable",
    "RequestTooLarge",
    "ServicePaused",
    "ServiceUnreachable",
    "SubmitUncertain",
]
