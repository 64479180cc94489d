"""The transport of a task to an endpoint: the same script as locally, byte for byte, sized exactly."""

from __future__ import annotations

import json
import os

from globus_compute_sdk.serialize import ComputeSerializer, JSONData
from globus_compute_sdk.serialize.concretes import PureSourceTextInspect

from groundhog_batch.backends.local import find_uv
from groundhog_batch.globus import transport
from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan
from groundhog_batch.render.payload import iter_records

SCRIPT = (
    "# /// script\n# dependencies = []\n# ///\n"
    "# " + "π" * 6000 + "\n"
    "HOG_SCRIPT_EOF = '{not a format field}'\ndef f(x):\n    return {'x': x, 'text': HOG_SCRIPT_EOF}\n"
)
ENDPOINT = "5aafb4c1-27b2-40d8-a038-a0277611868f"


def planned(project, endpoint=ENDPOINT):
    project.write("work.py", SCRIPT)
    project.manifest(
        f"script: work.py\nfunction: f\nendpoint: {endpoint}\n"
        "sweep:\n  product:\n    x: ['{x}', '${HOME}']\ncalls_per_task: 2\n"
    )
    plan = Plan(load_manifest(project.root / "sweep.yaml"))
    return plan, next(plan.all_tasks())


def registered_function(plan, job):
    """The function as an endpoint gets it: the source, stored and loaded with PureSourceTextInspect."""
    stored = (
        PureSourceTextInspect.identifier
        + transport.FUNCTION_NAME
        + ":"
        + transport.function_source(plan.script_template(job))
    )
    return ComputeSerializer().deserialize(stored)


def test_the_endpoint_runs_byte_for_byte_the_script_the_local_backend_runs(project):
    plan, task = planned(project)
    payload = plan.payload(task).encode()
    namespace: dict = {}
    exec(transport.function_source(plan.script_template(task.job)), namespace)
    assert (namespace["HEAD"] + payload + namespace["TAIL"]).encode() == plan.render(
        task, payload
    ).encode()


def test_the_registered_function_runs_the_task_and_leaves_nothing_in_the_task_directory(
    project, monkeypatch, tmp_path
):
    plan, task = planned(project)
    function = registered_function(plan, task.job)
    monkeypatch.setenv("HOG_BATCH_UV", find_uv())
    task_dir = tmp_path / "task dir"
    task_dir.mkdir()
    monkeypatch.chdir(task_dir)
    result = function(plan.payload(task).encode())
    assert result["returncode"] == 0, result["stderr"]
    records = list(iter_records(result["stdout"].splitlines()))
    assert [r["value"]["x"] for r in records] == ["{x}", "${HOME}"]
    assert records[0]["value"]["text"] == "{not a format field}"
    assert os.listdir(task_dir) == []


def test_request_sizes_are_the_bytes_the_sdk_sends(project):
    plan, task = planned(project)
    payload = plan.payload(task).encode()
    serializer = ComputeSerializer(strategy_data=JSONData())
    packed = serializer.pack_buffers([serializer.serialize((payload,)), serializer.serialize({})])
    assert packed == transport.packed_arguments(payload)
    assert transport.request_bytes(payload) == len(json.dumps([packed, packed]).encode()) - len(
        json.dumps([packed]).encode()
    )
    assert transport.request_bytes_for_size(len(payload)) == transport.request_bytes(payload)


def test_the_result_limit_is_the_endpoint_serializers_bytes():
    serializer = ComputeSerializer()
    stdout = "x" * (transport.stdout_limit_bytes())
    tail = "e" * transport.STDERR_TAIL_BYTES
    result = serializer.serialize({"returncode": 0, "stdout": stdout, "stderr": tail})
    assert len(result) <= transport.RESULT_LIMIT_BYTES
    assert transport.RESULT_LIMIT_BYTES - len(result) < 8 * 1024  # and little is wasted
