"""The jsonschema-free validity check agrees with jsonschema, and `validate` of a valid manifest never imports it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundhog_batch.manifest.schema import _fast_check, _validator

REPO = Path(__file__).resolve().parent.parent

# A manifest that uses much of the schema: every sweep form, jobs, endpoints with variants, config.
RICH = yaml.safe_load("""
name: rich-sweep
script: s.py
function: Sampler.run
endpoint: anvil.gpu
endpoints:
  anvil:
    endpoint: 5aafb4c1-27b2-40d8-a038-a0277611868f
    account: abc
    gpu: {partition: gpu-debug}
config: {walltime: "00:30:00", worker_init: module load gcc}
python: ">=3.10"
dependencies: ["numpy>=2"]
args: [1, "two"]
kwargs: {precision: 64}
sweep:
  product:
    n: [1000, 10000]
    seed: {range: [0, 8]}
    lr: {linspace: [0.001, 0.1, 5]}
    scale: {geomspace: [1, 1000, 4]}
    mode: {values: [fast, exact]}
  zip: {a: [1, 2, 3], b: [x, y, z]}
  rows: {file: params.csv, columns: [alpha, beta]}
  chunks:
    data: {file: points.parquet, rows: 100, pass: path}
    items: {values: [1, 2, 3, 4, 5], size: 2}
  exclude:
    - {n: 1000, mode: exact}
calls_per_task: auto
max_parallel: 4
retries: 1
timeout: 600
output: results/pi.parquet
jobs:
  - name: small
    sweep: {product: {n: [10, 20]}}
  - name: other
    function: other_fn
    sweep: [{product: {x: [1]}}, {zip: {y: [1, 2]}}]
""")


def shipped_manifests() -> list[dict]:
    found = [RICH]
    for path in sorted(REPO.glob("configs/*/*.yaml")):
        found.append(yaml.safe_load(path.read_text()))
    return found


def jsonschema_says_valid(data) -> bool:
    return not any(True for _ in _validator().iter_errors(data))


def test_the_shipped_schema_is_within_what_the_fast_check_decides():
    assert _fast_check() is not None, (
        "the schema uses a keyword schema_check.py does not decide: teach it, or "
        "every validate pays for importing jsonschema"
    )


def test_every_shipped_and_example_manifest_is_valid_on_both_paths():
    for manifest in shipped_manifests():
        assert jsonschema_says_valid(manifest), manifest
        assert _fast_check().valid(manifest), manifest


REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            10.0,
            0,
            -1,
            "",
            "auto",
            "x y",
            "12:00",
            "00:30:00",
            "local",
            "1e3",
            [],
            {},
            [1],
            ["a"],
            {"range": [0, 3]},
            {"linspace": [0, 1]},
            {"values": []},
            {"file": "f.csv"},
        ]
    ),
    st.text(max_size=8),
    st.lists(st.integers(0, 5), max_size=3),
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def replacement(draw):
    """A value to put into a manifest: a copy, since ``sampled_from`` hands out the same list or dict each time,
    and a later mutation would otherwise put that object inside itself (a cycle, a RecursionError)."""
    return copy.deepcopy(draw(REPLACEMENTS))


@st.composite
def mutated_manifests(draw):
    manifest = copy.deepcopy(draw(st.sampled_from(shipped_manifests())))
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path in _paths(manifest) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = manifest
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add_key", "rename"]))
        last = path[-1]
        if action == "replace":
            parent[last] = replacement(draw)
        elif action == "delete":
            del parent[last]
        elif action == "add_key" and isinstance(parent, dict):
            parent[
                draw(
                    st.sampled_from(["extra", "partition", "rows", "size", "pass", "endpoint", "x"])
                )
            ] = replacement(draw)
        elif action == "rename" and isinstance(parent, dict):
            parent[str(last) + draw(st.sampled_from(["s", "_", "X"]))] = parent.pop(last)
    return manifest


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_manifests())
def test_the_fast_check_and_jsonschema_agree_on_mutated_manifests(manifest):
    assert _fast_check().valid(manifest) == jsonschema_says_valid(manifest), json.dumps(
        manifest, default=str
    )[:2000]


def test_validate_of_a_valid_manifest_imports_no_jsonschema_and_no_heavy_library():
    code = (
        "import sys\n"
        "from groundhog_batch.cli import main\n"
        "try:\n"
        "    main(['validate', sys.argv[1]], standalone_mode=False)\n"
        "finally:\n"
        "    heavy = ['jsonschema', 'pandas', 'pyarrow', 'plotly', 'numpy', 'globus_compute_sdk', 'globus_sdk', 'rich']\n"
        "    print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "configs/01-grid/sweep.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_cli_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from groundhog_batch.cli import main\n"
        "try:\n"
        "    main(['--help'], standalone_mode=False)\n"
        "finally:\n"
        "    heavy = ['jsonschema', 'pandas', 'pyarrow', 'plotly', 'numpy', 'globus_compute_sdk', 'yaml']\n"
        "    print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
