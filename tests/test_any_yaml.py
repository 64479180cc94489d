"""Any YAML document gives a plan or a manifest error: never another exception, never a traceback."""

from __future__ import annotations

import yaml
from conftest import TRIVIAL_SCRIPT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundhog_batch.errors import HogError
from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan

KEYS = [
    "script",
    "function",
    "sweep",
    "product",
    "zip",
    "rows",
    "chunks",
    "exclude",
    "x",
    "offset",
    "range",
    "linspace",
    "geomspace",
    "values",
    "jobs",
    "name",
    "endpoint",
    "endpoints",
    "config",
    "args",
    "kwargs",
    "calls_per_task",
    "retries",
    "timeout",
    "file",
    "size",
    "parts",
    "pass",
    "python",
    "dependencies",
    "output",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["s.py", "square", "local", "auto", "x", "", "a.csv", ">=3.10", "anvil.gpu"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=documents)
def test_any_document_plans_or_fails_with_a_manifest_error(project, document):
    project.write("s.py", TRIVIAL_SCRIPT)
    path = project.manifest(yaml.safe_dump(document))
    try:
        spec = load_manifest(path)
        plan = Plan(spec)
        for job in spec.jobs:
            for _ in zip(range(50), plan.tasks(job), strict=False):
                pass
    except HogError as error:
        assert error.render()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}\n #'\"&*!|>%@`,?x1")), max_size=60))
def test_any_text_plans_or_fails_with_a_manifest_error(project, text):
    path = project.manifest(text)
    try:
        load_manifest(path)
    except HogError as error:
        assert error.render()


def test_cli_never_prints_a_traceback_for_odd_documents(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    for text in [
        "[",
        "script: 1\nfunction: [a]\n",
        "sweep: {product: {x: {range: [1, 2, 3, 4]}}}\n",
        "&a [*a]\n",
        "script: s.py\nfunction: square\nsweep: {product: {x: .nan}}\n",
    ]:
        project.manifest(text)
        done = project.cli("plan", "sweep.yaml")
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode in (0, 2)
