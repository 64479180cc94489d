"""A separate environment with the dependency floor pyproject.toml declares for globus-compute-sdk.

Building it (downloads and installs) and running the remote tests in it take minutes, so the suite starts both
in the background as soon as it knows the floor test will run (tests/conftest.py), and the test reads the
outcome. Run alone, ``python tests/floor_environment.py DIR`` builds it in DIR, runs ``FLOOR_TESTS`` there and
writes ``DIR/outcome.json``: the versions and the tests' exit code and output, or why the floor's packages
could not be had.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 1500
TESTS_TIMEOUT_S = 1200
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
    if match is None:
        raise SystemExit(f"pyproject.toml declares no floor for {package}")
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


def build(directory: Path) -> dict:
    """The floor environment in ``directory``: the SDK and its endpoint at the floor, then the lowest globus-sdk
    that floor allows; returns what was installed, or why it could not be."""
    from uv import find_uv_bin

    uv, floor = find_uv_bin(), declared_floor("globus-compute-sdk")
    python = directory / "venv" / "bin" / "python"
    subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(python.parent.parent)], check=True
    )
    overrides = directory / "overrides.txt"
    pins = [f"globus-compute-sdk=={floor}", f"globus-compute-endpoint=={floor}"]
    for attempt in range(2):  # then again with the lowest globus-sdk the floor allows
        overrides.write_text("\n".join(pins) + "\n")
        installed = subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), "-e", f"{ROOT}[test]"]
            + ["--override", str(overrides)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if installed.returncode != 0:
            unreachable = "Failed to fetch" in installed.stderr or "offline" in installed.stderr
            return {"floor": floor, "unreachable": unreachable, "error": installed.stderr[-2000:]}
        lowest = lowest_allowed(python, "globus-compute-sdk", "globus-sdk")
        if attempt or not lowest:
            break
        pins.append(f"globus-sdk=={lowest}")
    code = "import importlib.metadata as m; print(m.version('globus-compute-sdk'), m.version('globus-sdk'))"
    versions = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return {"floor": floor, "python": str(python), "sdk": versions[0], "globus_sdk": versions[1]}


def run_floor_tests(python: str) -> dict:
    """``FLOOR_TESTS`` run by the floor environment's interpreter, in a clean environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLOBUS_", "PYTEST_", "HOG_BATCH_")) or k == "HOG_BATCH_TEST_AMQP_URL"
    }
    ran = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLOOR_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TESTS_TIMEOUT_S,
        env=env,
    )
    return {"tests_exit": ran.returncode, "tests_output": ran.stdout[-3000:] + ran.stderr[-1000:]}


class BackgroundBuild:
    """The floor environment being built, and the remote tests run in it, by another process started once per
    test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.outcome_path = directory / "outcome.json"
        log = (directory / "build.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        )
        log.close()

    def outcome(self) -> dict:
        """What the build made (waits for it, at most ``BUILD_TIMEOUT_S`` more)."""
        try:
            self.process.wait(timeout=BUILD_TIMEOUT_S * 2 + TESTS_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            self.stop()
            return {"error": "the floor environment's build and tests did not end in time"}
        if not self.outcome_path.exists():
            log = (self.directory / "build.log").read_text(errors="replace")
            return {"error": f"the floor build exited {self.process.returncode}: {log[-2000:]}"}
        return json.loads(self.outcome_path.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(30)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    started = time.monotonic()
    result = build(target)
    result["build_s"] = round(time.monotonic() - started, 1)
    if "python" in result:
        result.update(run_floor_tests(result["python"]))
        result["tests_s"] = round(time.monotonic() - started - result["build_s"], 1)
    (target / "outcome.json.tmp").write_text(json.dumps(result))
    os.replace(target / "outcome.json.tmp", target / "outcome.json")
