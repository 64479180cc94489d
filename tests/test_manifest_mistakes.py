"""User mistakes in manifests: each is reported with its file, line, key path and a fix."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from conftest import TRIVIAL_SCRIPT

from groundhog_batch.errors import ManifestErrors
from groundhog_batch.manifest import load_manifest


@dataclass
class Mistake:
    name: str
    manifest: str
    message: str  # a fragment of the message
    hint: str  # a fragment of the fix
    line: int | None = None  # in the file named by `file`
    key_path: str | None = None
    file: str = "sweep.yaml"
    script: str = TRIVIAL_SCRIPT
    files: dict[str, str] = field(default_factory=dict)


HEAD = "script: s.py\nfunction: square\n"

MISTAKES = [
    Mistake(
        "unknown top-level key",
        HEAD + "sweeep: {}\n",
        "unknown key 'sweeep'",
        "did you mean 'sweep'",
        3,
        "sweeep",
    ),
    Mistake(
        "unknown key in a sweep",
        HEAD + "sweep:\n  prodct: {x: [1]}\n",
        "unknown key 'prodct'",
        "did you mean 'product'",
        4,
        "sweep.prodct",
    ),
    Mistake(
        "duplicate key",
        HEAD + "retries: 1\nretries: 2\n",
        "duplicate key 'retries'",
        "keeps only the last",
        4,
        "retries",
    ),
    Mistake(
        "invalid YAML", HEAD + "sweep: {product: [\n", "a value is missing", "close every '['", 4
    ),
    Mistake("manifest is a list", "- a\n- b\n", "mapping of keys", "example"),
    Mistake(
        "script missing",
        "script: nope.py\nfunction: square\n",
        "script not found",
        "relative to the manifest",
        1,
        "script",
    ),
    Mistake(
        "function missing",
        "script: s.py\nfunction: sqare\n",
        "defines no function 'sqare'",
        "did you mean 'square'",
        2,
        "function",
    ),
    Mistake(
        "function path invalid",
        "script: s.py\nfunction: 'square()'\n",
        "is not allowed here",
        "without parentheses",
        2,
        "function",
    ),
    Mistake(
        "script syntax error",
        HEAD,
        "does not parse",
        "syntax",
        2,
        None,
        file="s.py",
        script="x = 1\ndef f(:\n",
    ),
    Mistake(
        "swept name not a parameter",
        HEAD + "sweep:\n  product:\n    offsett: [1, 2]\n    x: [1]\n",
        "has no parameter 'offsett'",
        "did you mean 'offset'? its parameters are (x, offset)",
        5,
        "sweep.product.offsett",
    ),
    Mistake(
        "fixed kwarg not a parameter",
        HEAD + "kwargs: {y: 1}\nsweep:\n  product:\n    x: [1]\n",
        "has no parameter 'y'",
        "parameters are (x, offset)",
        3,
        "kwargs.y",
    ),
    Mistake(
        "required parameter not given",
        HEAD + "sweep:\n  product:\n    offset: [1]\n",
        "needs 'x'",
        "parameters are",
        2,
        "function",
    ),
    Mistake(
        "too many positional args",
        HEAD + "args: [1, 2, 3]\n",
        "takes 2 positional arguments",
        "parameters are",
        2,
        "function",
    ),
    Mistake(
        "zip lengths differ",
        HEAD + "sweep:\n  zip:\n    x: [1, 2, 3]\n    offset: [1, 2]\n",
        "zip lists differ in length",
        "same number",
        4,
        "sweep.zip",
    ),
    Mistake(
        "range step zero",
        HEAD + "sweep:\n  product:\n    x: {range: [0, 10, 0]}\n",
        "step must not be 0",
        "positive or negative step",
        5,
        "sweep.product.x.range",
    ),
    Mistake(
        "range empty",
        HEAD + "sweep:\n  product:\n    x: {range: [5, 0]}\n",
        "is empty",
        "negative step",
        5,
        "sweep.product.x.range",
    ),
    Mistake(
        "linspace wrong arity",
        HEAD + "sweep:\n  product:\n    x: {linspace: [0, 1]}\n",
        "is too short",
        "[0, 1, 11]",
        5,
        "sweep.product.x.linspace",
    ),
    Mistake(
        "geomspace through zero",
        HEAD + "sweep:\n  product:\n    x: {geomspace: [0, 10, 3]}\n",
        "non-zero start and stop",
        "linspace",
        5,
        "sweep.product.x.geomspace",
    ),
    Mistake(
        "range with floats",
        HEAD + "sweep:\n  product:\n    x: {range: [0, 1.5]}\n",
        "expected an integer",
        "use linspace",
        5,
        "sweep.product.x.range[1]",
    ),
    Mistake(
        "rows file missing",
        HEAD + "sweep:\n  rows: {file: params.csv}\n",
        "rows file not found",
        "relative to the manifest",
        4,
        "sweep.rows.file",
    ),
    Mistake(
        "rows column missing",
        HEAD + "sweep:\n  rows: {file: p.csv, columns: [x, z]}\n",
        "no column 'z'",
        "its columns are: x, offset",
        4,
        "sweep.rows.columns",
        files={"p.csv": "x,offset\n1,2\n"},
    ),
    Mistake(
        "chunks file missing",
        HEAD + "dependencies: [pandas]\nsweep:\n  chunks:\n    x: {file: d.parquet, rows: 10}\n",
        "data file not found",
        "relative",
        6,
        "sweep.chunks.x.file",
    ),
    Mistake(
        "chunks without sizing",
        HEAD + "sweep:\n  chunks:\n    x: {values: [1, 2, 3]}\n",
        "exactly one of rows, size or parts",
        "rows: N",
        5,
        "sweep.chunks.x",
    ),
    Mistake(
        "chunk of table without pandas",
        HEAD + "sweep:\n  chunks:\n    x: {file: d.csv, rows: 1}\n",
        "pandas is not among the dependencies",
        "add pandas",
        5,
        "sweep.chunks.x.file",
        files={"d.csv": "a\n1\n2\n"},
    ),
    Mistake(
        "exclude names unswept key",
        HEAD + "sweep:\n  product: {x: [1, 2]}\n  exclude:\n    - {y: 1}\n",
        "exclude names 'y'",
        "swept parameters: x",
        6,
        "sweep.exclude[0].y",
    ),
    Mistake(
        "unknown endpoint",
        HEAD + "endpoint: anvil\n",
        "unknown endpoint 'anvil'",
        "endpoints:",
        3,
        "endpoint",
    ),
    Mistake(
        "unknown endpoint variant",
        HEAD
        + "endpoint: anvil.gpu\nendpoints:\n  anvil:\n    endpoint: 5aafb4c1-27b2-40d8-a038-a0277611868f\n    cpu: {partition: shared}\n",
        "has no variant 'anvil.gpu'",
        "variants defined: anvil.cpu",
        3,
        "endpoint",
    ),
    Mistake(
        "endpoint without uuid",
        HEAD + "endpoint: anvil\nendpoints:\n  anvil: {account: abc}\n",
        "no valid endpoint UUID",
        "endpoint = ",
        3,
        "endpoint",
    ),
    Mistake(
        "duplicate job names",
        "script: s.py\njobs:\n  - {name: a, function: square}\n  - {name: a, function: square}\n",
        "job name 'a' is used twice",
        "unique name",
        4,
        "jobs[1].name",
    ),
    Mistake(
        "job without function",
        "script: s.py\njobs:\n  - {name: a}\n",
        "no function is given",
        "add `function:`",
        3,
        "jobs[0]",
    ),
    Mistake(
        "calls_per_task zero",
        HEAD + "calls_per_task: 0\n",
        "less than the minimum of 1",
        "use 1 or more, e.g. calls_per_task: 10",
        3,
        "calls_per_task",
    ),
    Mistake(
        "negative retries",
        HEAD + "retries: -1\n",
        "less than the minimum",
        "use 0 or more, e.g. retries: 2",
        3,
        "retries",
    ),
    Mistake(
        "timeout as text",
        HEAD + "timeout: ten\n",
        "expected a number",
        "without quotes or words, e.g. timeout: 600",
        3,
        "timeout",
    ),
    Mistake(
        "output unknown format",
        HEAD + "output: results.xlsx\n",
        "is not allowed here",
        "ending in .csv, .tsv, .parquet",
        3,
        "output",
    ),
    Mistake(
        "parameter name not identifier",
        HEAD + "sweep:\n  product:\n    2x: [1]\n",
        "not a valid parameter name",
        "Python identifier",
        4,
        "sweep.product",
    ),
    Mistake(
        "bad dependency",
        HEAD + "dependencies: ['numpy >>> 2']\n",
        "not a valid requirement",
        "PEP 508",
        3,
        "dependencies[0]",
    ),
    Mistake(
        "bad python specifier",
        HEAD + "python: 'three'\n",
        "not a Python version specifier",
        ">=3.11",
        3,
        "python",
    ),
    Mistake(
        "bad PEP 723 TOML",
        HEAD,
        "not valid TOML",
        "'# /// script' block",
        3,
        None,
        file="s.py",
        script="# /// script\n# dependencies = [\n# requires-python = 1\n# ///\ndef square(x):\n    return x\n",
    ),
    Mistake(
        "two PEP 723 blocks",
        HEAD,
        "more than one",
        "merge them",
        4,
        None,
        file="s.py",
        script="# /// script\n# dependencies = []\n# ///\n# /// script\n# dependencies = []\n# ///\ndef square(x):\n    return x\n",
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_mistake_is_reported_with_place_and_fix(project, mistake: Mistake):
    project.write("s.py", mistake.script)
    for name, text in mistake.files.items():
        project.write(name, text)
    path = project.manifest(mistake.manifest)
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    matching = [e for e in caught.value.errors if mistake.message in e.message]
    assert matching, f"no error says {mistake.message!r}; got:\n{caught.value.render()}"
    error = matching[0]
    assert mistake.hint in error.hint, error.render()
    assert error.file is not None and str(error.file).endswith(mistake.file)
    if mistake.line is not None:
        assert error.line == mistake.line, error.render()
    if mistake.key_path is not None:
        assert error.where.endswith(mistake.key_path), error.render()


def test_every_problem_is_reported_not_only_the_first(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    path = project.manifest(
        HEAD + "endpoint: nowhere\nsweep:\n  product:\n    y: [1]\n  zip: {a: [1], b: [1, 2]}\n"
    )
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    messages = caught.value.render()
    assert (
        "unknown endpoint" in messages
        and "has no parameter 'y'" in messages
        and "zip lists differ" in messages
    )


def test_validate_exits_2_with_readable_errors_and_no_traceback(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    project.manifest(HEAD + "sweeep: {}\n")
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2
    assert "sweep.yaml:3 at sweeep: unknown key 'sweeep'" in done.stderr
    assert "fix: did you mean 'sweep'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_a_missing_manifest_exits_2(project):
    done = project.cli("validate", "nothing.yaml")
    assert (
        done.returncode == 2
        and "manifest not found" in done.stderr
        and "Traceback" not in done.stderr
    )


def test_set_override_with_bad_syntax_is_a_clear_error(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    project.manifest(HEAD)
    done = project.cli("validate", "sweep.yaml", "--set", "sweep.product.x")
    assert done.returncode == 2 and "has no KEY=VALUE" in done.stderr


def test_a_valid_manifest_validates(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    project.manifest(HEAD + "sweep:\n  product:\n    x: {range: [0, 10]}\n")
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    assert "10 call(s)" in done.stdout
