"""The service seam in-process: the SDK's scopes, raw answers, and the endpoint's own result cap."""

from __future__ import annotations

import time

from groundhog_batch.globus.backend import report_from_status
from groundhog_batch.globus.service import ComputeService

BIG_RESULT = "def hog_batch_task(payload):\n    return 'x' * (11 * 1024 * 1024)\n"
ECHO = (
    "def hog_batch_task(payload):\n    return {'returncode': 0, 'stdout': payload, 'stderr': ''}\n"
)


def finished(service, task_ids, timeout_s=120.0):
    """Raw states of the tasks, asked until none is pending (each result is handed out once)."""
    states: dict[str, dict] = {}
    deadline = time.time() + timeout_s
    while len(states) < len(task_ids) and time.time() < deadline:
        answer = service.statuses([t for t in task_ids if t not in states])
        states.update({t: s for t, s in answer.items() if s.get("status") in ("success", "failed")})
        time.sleep(0.2)
    return states


def test_login_asks_for_the_scopes_the_endpoint_cli_asks_for(globus, monkeypatch):
    from globus_compute_endpoint.auth import get_globus_app_with_scopes

    from groundhog_batch.globus.auth import globus_app

    ours, theirs = globus_app(), get_globus_app_with_scopes()
    assert {rs: sorted(map(str, s)) for rs, s in ours.scope_requirements.items()} == {
        rs: sorted(map(str, s)) for rs, s in theirs.scope_requirements.items()
    }


def test_results_are_read_raw_and_the_sdk_keeps_nothing_in_memory(globus):
    service = ComputeService()
    endpoint = globus.add_endpoint()
    function_id = service.register_function(ECHO, "echo")
    task_ids = service.submit(
        endpoint, function_id, ["a", "b"], {}, "5d4c8a6e-1b2f-4c3d-9e8f-000000000001"
    )
    states = finished(service, task_ids)
    assert [service.deserialize(states[t]["result"])["stdout"] for t in task_ids] == ["a", "b"]
    assert service.client._task_status_table == {}
    again = service.statuses(task_ids)  # the service deleted them once fetched
    assert all(again[t].get("reason") == "Unknown task id" for t in task_ids)
    assert all(report_from_status(t, again[t], service.deserialize).lost for t in task_ids)


def test_a_result_over_10_mib_fails_its_task_as_the_endpoint_packs_it(globus):
    service = ComputeService()
    endpoint = globus.add_endpoint()
    function_id = service.register_function(BIG_RESULT, "too big")
    (task_id,) = service.submit(
        endpoint, function_id, ["x"], {}, "5d4c8a6e-1b2f-4c3d-9e8f-000000000002"
    )
    state = finished(service, [task_id])[task_id]
    assert "MaxResultSizeExceeded" in state["exception"] and "10485760" in state["exception"]
    report = report_from_status(task_id, state, service.deserialize)
    assert report.failure.startswith("the endpoint reported: MaxResultSizeExceeded")
