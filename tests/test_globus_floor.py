"""The floor pyproject declares for globus-compute-sdk really runs the remote path (issue 18).

globus-compute-sdk 4.0-4.6 pull in globus-sdk 3.x, where every remote
command died with ``ImportError: cannot import name 'RetryCheckCollection'``.
This builds a separate environment with the declared floor of the SDK, its
own endpoint package (the loopback service runs the endpoint's code) and the
lowest globus-sdk that floor allows, and runs a few remote tests in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR_TESTS = [
    "tests/test_globus_backend.py::test_a_sweep_runs_on_the_endpoint_and_every_result_comes_back",
    "tests/test_globus_backend.py::test_429_and_503_answers_are_retried",
    "tests/test_globus_service.py",
    "tests/test_globus_limits.py::test_lost_submit_answers_back_off_then_pause_resumably_with_a_bounded_request_count",
    "tests/test_globus_push.py::test_results_are_pushed_to_the_submitter_and_never_polled",
]


def declared_floor(package: str) -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{re.escape(package)}>=([0-9][0-9.]*)"', text)
    assert match, f"pyproject.toml declares no floor for {package}"
    return match.group(1)


def lowest_allowed(python: Path, package: str, dependency: str) -> str | None:
    """The lower bound ``package``'s installed metadata puts on ``dependency``."""
    code = (
        "import importlib.metadata as m, re, sys; reqs = m.requires(sys.argv[1]) or [];"
        "found = [re.search(r'>=\\s*([0-9][0-9.]*)', r) for r in reqs if re.match(sys.argv[2] + r'\\b', r)];"
        "print(next((f.group(1) for f in found if f), ''))"
    )
    done = subprocess.run(
        [str(python), "-c", code, package, dependency], capture_output=True, text=True, check=True
    )
    return done.stdout.strip() or None


@pytest.mark.slow
def test_the_declared_sdk_floor_passes_the_remote_tests(tmp_path):
    from uv import find_uv_bin

    uv, floor = find_uv_bin(), declared_floor("globus-compute-sdk")
    venv = tmp_path / "floor"
    python = venv / "bin" / "python"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    overrides = tmp_path / "overrides.txt"
    pins = [f"globus-compute-sdk=={floor}", f"globus-compute-endpoint=={floor}"]
    for attempt in range(2):  # then again with the lowest globus-sdk the floor allows
        overrides.write_text("\n".join(pins) + "\n")
        installed = subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "-e",
                f"{ROOT}[test]",
                "--override",
                str(overrides),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if installed.returncode != 0 and (
            "Failed to fetch" in installed.stderr or "offline" in installed.stderr
        ):
            pytest.skip(
                f"the floor's packages cannot be had here: {installed.stderr.strip()[-300:]}"
            )
        assert installed.returncode == 0, installed.stderr
        lowest = lowest_allowed(python, "globus-compute-sdk", "globus-sdk")
        if attempt or not lowest:
            break
        pins.append(f"globus-sdk=={lowest}")
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('globus-compute-sdk'),"
            " m.version('globus-sdk'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    from packaging.version import Version

    assert Version(versions[0]) == Version(floor)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLOBUS_", "PYTEST_", "HOG_BATCH_")) or k == "HOG_BATCH_TEST_AMQP_URL"
    }
    ran = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLOOR_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert ran.returncode == 0, (
        f"globus-compute-sdk {versions[0]} with globus-sdk {versions[1]}:\n{ran.stdout[-3000:]}"
    )
