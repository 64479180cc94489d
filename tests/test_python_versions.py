"""The Python floors: hog-batch itself runs on 3.10 (tomli for tomllib), the task runner on 3.8."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from groundhog_batch.render.payload import TaskPayload, iter_records
from groundhog_batch.render.renderer import runner_source

PACKAGE = Path(__file__).resolve().parents[1] / "groundhog_batch"


def find_python(version: str) -> str | None:
    """An installed interpreter of ``version`` (uv cannot download one here): on PATH, or under pyenv."""
    for candidate in [
        shutil.which(f"python{version}"),
        *sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
        ),
    ]:
        if (
            candidate
            and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0
        ):
            return candidate
    return None


def test_every_module_parses_as_python_3_10():
    for path in PACKAGE.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


def test_the_task_runner_parses_as_python_3_8():
    ast.parse(runner_source(), feature_version=(3, 8))


def test_script_metadata_is_read_with_tomli_where_tomllib_is_missing(tmp_path):
    """What Python 3.10 does: no tomllib, so pep723 must take tomli."""
    script = tmp_path / "s.py"
    script.write_text(
        '# /// script\n# requires-python = ">=3.10"\n# dependencies = ["numpy>=2"]\n'
        "# [tool.uv]\n# exclude-newer = 2025-01-01T00:00:00Z\n# ///\n"
    )  # a [tool.uv] table: read by the TOML parser, not by the plain-lines reader
    probe = textwrap.dedent(f"""
        import sys
        sys.modules["tomllib"] = None  # import tomllib now fails, as on 3.10
        sys.version_info = (3, 10, 13, "final", 0)
        from pathlib import Path
        from groundhog_batch.manifest.pep723 import parse_script_metadata, toml_reader
        assert toml_reader().__name__ == "tomli", toml_reader().__name__
        path = Path({str(script)!r})
        metadata = parse_script_metadata(path.read_text(), path)
        print(metadata.dependencies, metadata.tool_uv)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == "('numpy>=2',) {'exclude-newer': datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)}"
    )


def test_the_task_runner_runs_calls_on_python_3_8(tmp_path):
    python = find_python("3.8")
    if python is None:
        pytest.skip("no Python 3.8 installed (the syntax check above still holds)")
    (tmp_path / "work.py").write_text(
        "def square(x, offset=0):\n    return x * x + offset\n"
        "def broken(x):\n    import hog_batch_missing_module\n"
    )
    (tmp_path / "hog_runner.py").write_text(runner_source())
    for function in ("square", "broken"):
        payload = TaskPayload(
            function=function,
            call_indices=[0, 1],
            swept_kwargs=[{"x": 2}, {"x": 3}],
            args=[],
            kwargs={},
        )
        (tmp_path / "payload.b64").write_text(payload.encode())
        done = subprocess.run(
            [
                python,
                str(tmp_path / "hog_runner.py"),
                str(tmp_path / "work.py"),
                str(tmp_path / "payload.b64"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        records = list(iter_records(done.stdout.splitlines()))
        assert done.returncode == 0, done.stderr
        if function == "square":
            assert [(r["call"], r["ok"], r["value"]) for r in records] == [
                (0, True, 4),
                (1, True, 9),
            ]
        else:
            assert [r["ok"] for r in records] == [False, False]
            assert 'add "hog-batch-missing-module" to the dependencies' in records[0]["error"]
