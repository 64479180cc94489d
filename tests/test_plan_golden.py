"""``plan --json`` on every manifest under configs/ is byte for byte what it was before the backend boundary.

The goldens (tests/golden/plan_json/) were captured from the code before backends
gave their own limits: locally, on a Globus Compute endpoint, and on one with a
walltime and a timeout (tasks sized to it). Paths are written as <ROOT>, and the
machine is pinned to 2 cores (the local default parallelism). The local goldens were
taken again when local ``auto`` became one task per core (issue 21): only their task
counts and payload sizes changed; and all of them when a payload's header came to name its calls
as ranges (issue 21): only payload sizes changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from groundhog_batch.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "plan_json"
UUID = "2a2d5f8e-52d4-4a2b-9e4c-0f5c8e3b1d11"
VARIANTS = {
    "as-is": [],
    "globus": ["--endpoint", UUID],
    "globus-walltime": [
        "--endpoint",
        UUID,
        "--set",
        "config.walltime=00:30:00",
        "--set",
        "timeout=20",
    ],
    "local-flag": ["--local"],
}
MANIFESTS = sorted(path.parent.name for path in (ROOT / "configs").glob("*/sweep.yaml"))


def test_every_manifest_under_configs_has_goldens():
    assert MANIFESTS and {p.name.split(".")[0] for p in GOLDEN.glob("*.json")} == set(MANIFESTS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_plan_json_is_byte_identical_to_its_golden(manifest, variant, monkeypatch, tmp_path):
    # No earlier runs under ./hog-runs (the README's example makes one), so plan adds no estimate.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    result = CliRunner().invoke(
        main,
        ["plan", "--json", str(ROOT / "configs" / manifest / "sweep.yaml"), *VARIANTS[variant]],
    )
    shown = f"exit {result.exit_code}\n" + result.output.replace(str(ROOT), "<ROOT>")
    assert shown == (GOLDEN / f"{manifest}.{variant}.json").read_text()
