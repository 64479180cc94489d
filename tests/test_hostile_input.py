"""Hostile or odd input to the real CLI: a located error with exit 2 within seconds, never a traceback or a hang."""

from __future__ import annotations

import random

import pytest
from conftest import TRIVIAL_SCRIPT

from groundhog_batch.sweep import Sweep, SweepPart, _LazyAxis

HEAD = "script: s.py\nfunction: square\n"
QUICK_S = 30  # a generous bound under load; each of these takes well under a second


def refused(project, *args: str, manifest: str | bytes | None = None):
    """Run the CLI on ``manifest``; it must refuse with exit 2 and a readable message."""
    project.write("s.py", TRIVIAL_SCRIPT)
    if isinstance(manifest, bytes):
        (project.root / "sweep.yaml").write_bytes(manifest)
    elif manifest is not None:
        (project.root / "sweep.yaml").write_text(manifest)
    done = project.cli(*args, timeout=QUICK_S)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    return done.stderr


def test_a_nul_byte_in_the_manifest_is_located(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=(HEAD + "kwargs: {x: 1}\nname: a\x00b\n").encode(),
    )
    assert "sweep.yaml:4: the control character NUL" in stderr
    assert "fix: remove it" in stderr


@pytest.mark.parametrize("bound", ["10.0", "1e20", "1.0e20"])
def test_a_range_bound_that_is_not_an_integer_is_located(project, bound):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD + f"sweep:\n  product:\n    x: {{range: [0, {bound}]}}\n",
    )
    assert "sweep.yaml:5 at sweep.product.x.range[1]: expected an integer" in stderr
    assert (
        "fix: write 10, without a decimal point" in stderr
        if bound == "10.0"
        else "use linspace" in stderr
    )


def test_a_range_too_long_to_count_with_len_is_over_the_limit(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD + "sweep:\n  product:\n    x: {range: [0, 100000000000000000000]}\n",
    )
    assert (
        "at sweep.product: this product has 100,000,000,000,000,000,000 points, over the limit"
        in stderr
    )


def test_yaml_1_1_boolean_words_as_keys_stay_the_words_written(project):
    stderr = refused(
        project, "validate", "sweep.yaml", manifest=HEAD + "on: 1\nkwargs: {x: 1, yes: 2}\n"
    )
    assert "sweep.yaml:3 at on: unknown key 'on'" in stderr
    assert "sweep.yaml:4 at kwargs.yes: square() has no parameter 'yes'" in stderr


def test_a_5000_character_script_name_is_located_and_shortened(project):
    stderr = refused(
        project, "validate", "sweep.yaml", manifest=f"script: {'a' * 5000}.py\nfunction: square\n"
    )
    assert "sweep.yaml:1 at script: script" in stderr and "File name too long" in stderr
    assert len(stderr) < 600


@pytest.mark.parametrize(
    "override, message",
    [
        ("kwargs.x=" + "9" * 5000, "--set kwargs.x: an integer of 5,000 digits is too large"),
        ("kwargs.x=" + "[" * 5000 + "]" * 5000, "--set kwargs.x: the value is nested"),
        (
            "kwargs.x=" + "[" * 70 + "]" * 70,
            "--set kwargs.x: the value is nested more than 64 levels deep",
        ),
        (".".join(["a"] * 3000) + "=1", "--set: the key path has 3,000 parts"),
    ],
    ids=["5000-digit int", "5000 nested brackets", "70 nested brackets", "3000-part key path"],
)
def test_hostile_set_values_are_refused(project, override, message):
    stderr = refused(
        project, "validate", "sweep.yaml", "--set", override, manifest=HEAD + "kwargs: {x: 1}\n"
    )
    assert message in stderr
    assert len(stderr) < 600


def test_an_output_that_is_a_folder_is_refused_before_any_call_runs(project):
    (project.root / "results.csv").mkdir()
    stderr = refused(
        project,
        "submit",
        "--local",
        "sweep.yaml",
        manifest=HEAD + "kwargs: {x: 1}\noutput: results.csv\n",
    )
    assert (
        "sweep.yaml:4 at output: output" in stderr
        and "results.csv is a folder, not a file" in stderr
    )
    assert not (project.root / "hog-runs").exists()


def test_an_output_under_a_file_is_refused(project):
    (project.root / "notes").write_text("a file, not a folder")
    stderr = refused(
        project,
        "submit",
        "--local",
        "sweep.yaml",
        "-o",
        "notes/results.csv",
        manifest=HEAD + "kwargs: {x: 1}\n",
    )
    assert "notes is a file, not a folder (a value given on the command line)" in stderr
    assert not (project.root / "hog-runs").exists()


def test_a_run_dir_under_a_file_is_refused(project):
    (project.root / "notes").write_text("a file, not a folder")
    stderr = refused(
        project,
        "submit",
        "--local",
        "sweep.yaml",
        "--run-dir",
        "notes/run",
        manifest=HEAD + "kwargs: {x: 1}\n",
    )
    assert "notes/run" in stderr and "notes is a file, not a folder" in stderr
    assert (project.root / "notes").read_text() == "a file, not a folder"


@pytest.mark.parametrize(
    "value, message",
    [
        (".inf", "inf is more than the maximum of 31,536,000"),
        (".nan", "timeout is not a number (nan)"),
    ],
)
def test_a_timeout_of_infinity_or_nan_is_located(project, value, message):
    stderr = refused(
        project, "validate", "sweep.yaml", manifest=HEAD + f"kwargs: {{x: 1}}\ntimeout: {value}\n"
    )
    assert f"sweep.yaml:4 at timeout: {message}" in stderr
    assert "e.g. timeout: 600" in stderr


def alias_bomb(levels: int = 9) -> str:
    text = (
        HEAD
        + "args: [1]\nkwargs:\n  offset: 0\nconfig:\n  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    )
    for level in range(1, levels):
        text += f"  a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]\n"
    return text


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(project):
    stderr = refused(project, "plan", "sweep.yaml", manifest=alias_bomb())
    assert "aliases (*name) here expand to over 100,000 values" in stderr


def test_a_recursive_alias_is_refused(project):
    stderr = refused(project, "validate", "sweep.yaml", manifest=HEAD + "args: &a [1, *a]\n")
    assert "sweep.yaml:3: an alias (*name) refers to a collection that contains it" in stderr


def test_a_linspace_of_a_billion_points_is_refused_without_making_them(project):
    stderr = refused(
        project,
        "plan",
        "sweep.yaml",
        manifest=HEAD + "sweep:\n  product:\n    x: {linspace: [0, 1, 1000000000]}\n",
    )
    assert (
        "sweep.yaml:5 at sweep.product.x.linspace[2]: 1,000,000,000 is more than the maximum of 1,000,000"
        in stderr
    )
    assert "fix: use at most 1,000,000" in stderr


def test_a_product_over_the_call_limit_is_refused_before_its_values_are_made(project):
    stderr = refused(
        project,
        "plan",
        "sweep.yaml",
        manifest=HEAD + "sweep:\n  product:\n    x: {linspace: [0, 1, 1000000]}\n"
        "    offset: {range: [0, 1000]}\n",
    )
    assert (
        "sweep.yaml:4 at sweep.product: this product has 1,000,000,000 points, over the limit of 100,000,000"
        in stderr
    )


def test_an_exclude_over_a_hundred_million_points_is_counted_not_walked(project):
    project.write("s.py", TRIVIAL_SCRIPT)
    project.manifest(
        HEAD + "sweep:\n  product:\n    x: {range: [0, 10000]}\n    offset: {range: [0, 10000]}\n"
        "  exclude:\n    - {x: 1}\n    - {offset: 2.0}\n    - {x: 1, offset: 2}\n    - {x: true}\n"
    )
    done = project.cli("validate", "sweep.yaml", timeout=QUICK_S)
    assert done.returncode == 0, done.stderr
    assert "99,980,001 call(s)" in done.stdout  # 10**8 - 10,000 - 10,000 + 1 (the point both drop)


def test_a_sweep_of_zero_calls_is_an_error(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD
        + "sweep:\n  product:\n    x: [1, 2]\n  exclude:\n    - {x: 1}\n    - {x: 2}\n",
    )
    assert "sweep.yaml:3 at sweep: this sweep gives no calls (exclude drops all 2 points)" in stderr


def test_a_rows_file_with_no_rows_is_located(project):
    project.write("params.csv", "x,offset\n")
    stderr = refused(
        project, "validate", "sweep.yaml", manifest=HEAD + "sweep:\n  rows: {file: params.csv}\n"
    )
    assert "sweep.yaml:4 at sweep.rows.file: params.csv has no rows" in stderr


def test_an_empty_list_of_values_is_a_sweep_of_zero_calls(project):
    stderr = refused(
        project, "validate", "sweep.yaml", manifest=HEAD + "sweep:\n  product:\n    x: []\n"
    )
    assert "this sweep gives no calls (x has no values)" in stderr


def test_schema_errors_and_the_later_checks_are_reported_together(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD
        + "retries: many\nmax_parallel: -3\nsweep:\n  zip: {x: [1, 2], offset: [1]}\n",
    )
    assert stderr.count("error: ") == 3, stderr
    assert "sweep.yaml:3 at retries: expected an integer or a mapping, got string 'many'" in stderr
    assert "sweep.yaml:4 at max_parallel: -3 is less than the minimum of 1" in stderr
    assert "sweep.yaml:6 at sweep.zip: zip lists differ in length: x has 2, offset has 1" in stderr


def test_a_schema_error_does_not_cascade_into_the_later_checks(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD + "sweep:\n  product:\n    x: {range: [0, 1.5]}\n",
    )
    assert stderr.count("error: ") == 1, stderr  # not also "square() needs 'x'"


def test_fix_lines_say_what_to_write_not_what_the_key_means(project):
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD + "kwargs: {x: 1}\nretries: many\ntimeout: -1\ncalls_per_task: lots\n",
    )
    assert "fix: write the number without quotes or words, e.g. retries: 2" in stderr
    assert "fix: use a number above 0, e.g. timeout: 600" in stderr
    assert "fix: write a positive integer or auto, e.g. calls_per_task: 10" in stderr
    assert "Re-runs of a failed call" not in stderr and "Seconds per call" not in stderr


@pytest.mark.parametrize(
    "text, message",
    [
        (
            HEAD + "sweep:\n  product:\n    x: [1, 2]\n   offset: [1]\n",
            "this line is indented differently from the lines above",
        ),
        (HEAD + "kwargs:\n  x: 1\n  offset: a: b\n", "a ':' where YAML cannot start a key"),
        (
            HEAD + "sweep: {product: {x: [1, 2}}\n",
            "a list opened with '[' is not closed with ']' (opened on line 3)",
        ),
        (HEAD + "kwargs:\n\tx: 1\n", "a tab character: YAML indents with spaces only"),
        (HEAD + "kwargs: {x: 'one}\n", "a quote is opened but never closed"),
        (HEAD + "args: *nothing\n", "an alias (*name) refers to no anchor"),
        (HEAD + "kwargs: {x: 1}\n---\nretries: 2\n", "a second YAML document"),
    ],
    ids=[
        "indentation",
        "colon in value",
        "unclosed bracket",
        "tab",
        "open quote",
        "undefined alias",
        "two documents",
    ],
)
def test_yaml_syntax_errors_are_said_in_plain_words(project, text, message):
    stderr = refused(project, "validate", "sweep.yaml", manifest=text)
    assert "not valid YAML: " + message in stderr
    assert "<block" not in stderr and "<stream" not in stderr and "<scalar>" not in stderr


def test_a_missing_rows_column_gets_did_you_mean_and_no_cascade(project):
    project.write("params.csv", "x,offest\n1,2\n3,4\n")
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest=HEAD + "sweep:\n  rows: {file: params.csv, columns: [x, offset]}\n",
    )
    assert "sweep.yaml:4 at sweep.rows.columns: params.csv has no column 'offset'" in stderr
    assert "fix: did you mean 'offset' -> 'offest'? its columns are: x, offest" in stderr
    assert stderr.count("error: ") == 1, stderr


# --- counting a sweep with exclusions, checked against walking it -------------------------------


def _walked(sweep: Sweep) -> int:
    return sum(1 for _ in sweep.points())


def test_counting_with_exclude_agrees_with_walking_the_points():
    rng = random.Random(11)
    for _ in range(300):
        axes, names = [], []
        for n, name in enumerate(rng.sample(["a", "b", "c", "d"], rng.randint(1, 3))):
            if rng.random() < 0.4:
                axes.append(_LazyAxis(name, range(rng.randint(-3, 0), rng.randint(0, 5))))
                names.append(name)
            elif rng.random() < 0.5:
                values = [
                    rng.choice([0, 1, 2, 1.0, True, "x", None]) for _ in range(rng.randint(0, 4))
                ]
                axes.append(_LazyAxis(name, values))
                names.append(name)
            else:  # a zip-like axis of two parameters
                other = f"{name}{n}"
                axes.append(
                    [
                        ((name, rng.randint(0, 2), None), (other, rng.randint(0, 2), None))
                        for _ in range(rng.randint(1, 4))
                    ]
                )
                names += [name, other]
        pool = [0, 1, 2, 1.0, True, "x", None, -1]
        exclude = [
            {key: rng.choice(pool) for key in rng.sample(names, rng.randint(1, min(2, len(names))))}
            for _ in range(rng.randint(0, 4))
        ]
        sweep = Sweep([SweepPart(axes=axes, names=names, exclude=exclude)], {})
        assert sweep.count() == _walked(sweep), (axes, exclude)


@pytest.mark.parametrize(
    "script, message",
    [
        (
            "def f():\n    return 1\x00\n",
            "script does not parse: source code string cannot contain null bytes",
        ),
        (
            "def f():\n    return " + "-" * 100_000 + "1\n",
            "script is nested too deeply for Python's parser",
        ),
        (
            "# /// script\n# dependencies = "
            + "[" * 5000
            + "]" * 5000
            + "\n# ///\ndef f():\n    return 1\n",
            "script metadata cannot be read: it is nested too deeply",
        ),
        (
            "# /// script\n# x = " + "9" * 5000 + "\n# ///\ndef f():\n    return 1\n",
            "script metadata cannot be read: exceeds the limit",
        ),
    ],
    ids=["NUL byte", "deep expression", "deep PEP 723 list", "5000-digit PEP 723 int"],
)
def test_a_hostile_script_is_an_error_in_the_script_not_a_crash(project, script, message):
    project.write("t.py", script)
    stderr = refused(project, "validate", "sweep.yaml", manifest="script: t.py\nfunction: f\n")
    assert "t.py" in stderr and message in stderr


def test_a_misspelt_rows_column_is_one_error_per_column_with_did_you_mean(project):
    project.write("f.py", "def f(x, offset):\n    return x + offset\n")
    project.write("params.csv", "X,ofset\n1,2\n")
    stderr = refused(
        project,
        "validate",
        "sweep.yaml",
        manifest="script: f.py\nfunction: f\nsweep:\n  rows: {file: params.csv}\n",
    )
    assert "at sweep.rows: f() has no parameter 'X'\n  fix: did you mean 'x'?" in stderr
    assert "at sweep.rows: f() has no parameter 'ofset'\n  fix: did you mean 'offset'?" in stderr
    assert "needs" not in stderr and stderr.count("error: ") == 2
