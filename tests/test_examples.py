"""The example manifests in configs/ are valid as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundhog_batch.manifest import load_manifest

EXAMPLES = sorted((Path(__file__).parent.parent / "configs").glob("*/sweep.yaml"))


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_manifest_is_valid(manifest):
    spec = load_manifest(manifest)
    assert spec.n_calls > 0


def test_the_schema_in_schemas_is_the_packaged_one():
    root = Path(__file__).parent.parent
    assert (root / "schemas/manifest.schema.json").read_text() == (
        root / "groundhog_batch/schemas/manifest.schema.json"
    ).read_text()


@pytest.mark.slow
def test_the_chunked_example_runs_with_dataframes_in_a_real_pandas_environment(project):
    import shutil

    import pandas as pd

    source = Path(__file__).parent.parent / "configs" / "03-chunked-data"
    for name in ("sweep.yaml", "count_inside.py", "points.csv"):
        shutil.copy(source / name, project.root / name)
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "out.csv")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(project.root / "out.csv")
    unit = table[table["job"] == "unit"]
    assert list(unit["result.rows"]) == [250] * 4 and list(unit["result.first_row"]) == [
        0,
        250,
        500,
        750,
    ]
