"""Endpoint resolution and the configuration precedence of the spec."""

from __future__ import annotations

import pytest

from groundhog_batch.manifest.endpoint_config import EndpointNotFound, resolve_endpoint

UUID_A = "5aafb4c1-27b2-40d8-a038-a0277611868f"
UUID_B = "11111111-2222-3333-4444-555555555555"

SCRIPT_HOG = {
    "anvil": {
        "endpoint": UUID_A,
        "account": "script",
        "walltime": "00:10:00",
        "worker_init": "module load a",
        "gpu": {"partition": "gpu-script", "worker_init": "module load cuda", "big": {"nodes": 4}},
    },
}
MANIFEST_ENDPOINTS = {"anvil": {"account": "manifest", "gpu": {"partition": "gpu-manifest"}}}


def test_local_and_uuid_need_no_tables():
    assert resolve_endpoint("local", {}, {}, {}, {}, {}).kind == "local"
    assert resolve_endpoint(UUID_B.upper(), {}, {}, {"walltime": 5}, {}, {}).endpoint_id == UUID_B


def test_each_layer_overrides_the_one_below():
    resolved = resolve_endpoint(
        "anvil.gpu",
        SCRIPT_HOG,
        MANIFEST_ENDPOINTS,
        {"walltime": "01:00:00"},
        {"qos": "job"},
        {"qos": "cli"},
    )
    assert resolved.endpoint_id == UUID_A
    assert resolved.config["account"] == "manifest"  # manifest endpoints over script table
    assert resolved.config["partition"] == "gpu-manifest"  # manifest variant over script variant
    assert resolved.config["walltime"] == "01:00:00"  # manifest config over endpoint tables
    assert resolved.config["qos"] == "cli"  # --set over job config


def test_worker_init_is_concatenated_lower_layers_first():
    resolved = resolve_endpoint("anvil.gpu", SCRIPT_HOG, {}, {"worker_init": "export A=1"}, {}, {})
    assert resolved.config["worker_init"] == "module load a\nmodule load cuda\nexport A=1"


def test_nested_variants_apply_along_the_path_and_others_are_listed():
    resolved = resolve_endpoint("anvil.gpu.big", SCRIPT_HOG, {}, {}, {}, {})
    assert resolved.config["nodes"] == 4 and resolved.config["partition"] == "gpu-script"
    plain = resolve_endpoint("anvil", SCRIPT_HOG, {}, {}, {}, {})
    assert "partition" not in plain.config and plain.unused_variants == ("anvil.gpu",)


def test_a_variant_may_point_at_another_endpoint():
    resolved = resolve_endpoint(
        "anvil.other",
        {"anvil": {"endpoint": UUID_A, "other": {"endpoint": UUID_B}}},
        {},
        {},
        {},
        {},
    )
    assert resolved.endpoint_id == UUID_B


def test_unknown_variant_names_the_ones_defined():
    with pytest.raises(EndpointNotFound) as caught:
        resolve_endpoint("anvil.cpu", SCRIPT_HOG, {}, {}, {}, {})
    assert "anvil.gpu" in caught.value.hint
