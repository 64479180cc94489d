"""What a sweep costs: CPU time and peak memory per call, a memory limit per call, and estimates before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_task_isolation import run_runner

import groundhog_batch as hb
from groundhog_batch.render.record_schema import problems

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'

WORK = (
    HEAD
    + """\
import time

def work(mib=0, spin_s=0.0, fail=False, talk=False):
    block = bytearray(int(mib * 1024 * 1024))
    started = time.process_time()
    while time.process_time() - started < spin_s:
        pass
    if talk:
        print("talking")
    if fail:
        raise ValueError("asked to fail")
    return len(block)
"""
)


def _runner_records(tmp_path, swept: list[dict], **limits) -> list[dict]:
    return run_runner(tmp_path, WORK, len(swept), function="work", swept=swept, **limits)


def test_every_record_of_a_call_that_ran_has_its_cpu_time_and_memory(tmp_path):
    records = _runner_records(tmp_path, [{}, {"talk": True}, {"fail": True}, {"mib": 1}])
    assert [r["call"] for r in records] == [0, 1, 2, 3]
    for record in records:
        assert problems(record) == [], record
        assert {"cpu_s", "max_rss_mib"} <= set(record)
    assert records[1]["out"] == "talking\n" and records[2]["error"] == "ValueError: asked to fail"


def test_each_call_reports_its_cpu_time_and_peak_memory(tmp_path):
    records = _runner_records(
        tmp_path, [{"spin_s": 0.3}, {"mib": 200, "spin_s": 0.02}, {"spin_s": 0.02}]
    )
    spin, big, small = records
    assert spin["cpu_s"] >= 0.25 and small["cpu_s"] < spin["cpu_s"]
    assert (
        big["max_rss_mib"] >= 200 and spin["max_rss_mib"] < 200
    )  # before the big call, the worker was small
    if Path(
        "/proc/self/clear_refs"
    ).exists():  # Linux: a call after a slow one gets its own peak, not the worker's
        assert small["max_rss_mib"] < 150


def test_a_call_over_its_memory_limit_fails_with_memory_error_and_the_next_call_goes_on(tmp_path):
    records = _runner_records(tmp_path, [{"mib": 10}, {"mib": 2000}, {"mib": 10}], memory_mib=400)
    assert [r["ok"] for r in records] == [True, False, True]
    assert (
        records[1]["error"].startswith("MemoryError")
        and "memory limit of 400 MiB" in records[1]["error"]
    )


@pytest.mark.slow
def test_the_table_has_cpu_and_memory_and_the_report_compares_them_with_what_was_asked(project):
    project.write("work.py", WORK)
    project.manifest(
        "script: work.py\nfunction: work\ntimeout: 100\nmemory: 1G\ncalls_per_task: 3\n"
        "sweep:\n  product:\n    mib: [1, 50, 5000]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "--report")
    assert done.returncode == 1  # 5000 MiB is over the limit
    table = hb.Run(project.root / "run").results()
    assert list(table["status"]) == ["succeeded", "succeeded", "failed"]
    assert table["error"][2].startswith("MemoryError")
    assert table["max_rss_mib"][1] >= 50 and table["cpu_s"].notna().all()
    summary = (project.root / "run" / "report.html").read_text()  # the report's summary, at the top
    assert "job work: timeout 100 s requested, longest call" in summary
    assert "3 of 3 calls used less than 10% of it" in summary  # of the timeout
    assert "job work: memory 1024 MiB requested, highest peak" in summary


def test_a_memory_limit_that_is_not_a_size_is_a_located_error(project):
    project.write("work.py", WORK)
    project.manifest(
        "script: work.py\nfunction: work\nmemory: lots\nsweep:\n  product:\n    mib: [1]\n"
    )
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2 and "sweep.yaml:3 at memory" in done.stderr


GROWING = HEAD + "import time\n\ndef f(k):\n    time.sleep(0.005 * k)\n    return k\n"


@pytest.mark.slow
def test_plan_sample_estimates_a_growing_sweep_within_30_percent_of_what_it_took(project):
    project.write("grow.py", GROWING)
    project.manifest(
        "script: grow.py\nfunction: f\ncalls_per_task: 10\nmax_parallel: 2\n"
        "sweep:\n  product:\n    k: {range: [0, 40]}\n"
    )
    planned = project.cli("plan", "sweep.yaml", "--sample", "10", "--json")
    assert planned.returncode == 0, planned.stderr
    import json

    (estimate,) = json.loads(planned.stdout)["estimate"]
    assert estimate["source"] == "sample" and estimate["measured"] == 10
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    measured = float(hb.Run(project.root / "run").results()["duration_s"].sum())
    assert abs(estimate["call_s"] - measured) <= 0.3 * measured, (estimate, measured)
    assert estimate["call_s_error"] > 0 and estimate["core_hours"] == pytest.approx(
        estimate["call_s"] / 3600
    )


@pytest.mark.slow
def test_plan_estimates_from_an_earlier_run_of_the_same_script(project):
    project.write("grow.py", GROWING)
    project.manifest("script: grow.py\nfunction: f\nsweep:\n  product:\n    k: [1, 2, 3, 4]\n")
    assert project.cli("submit", "sweep.yaml").returncode == 0  # under ./hog-runs
    planned = project.cli("plan", "sweep.yaml")
    assert (
        "f: calls " in planned.stdout
        and "(4 calls, from 4 measured call(s), earlier runs)" in planned.stdout
    )
    assert "4 of 4 calls ran before with these arguments" in planned.stdout


NAP = (
    HEAD
    + """\
import time

def nap(s, mib=0):
    block = bytearray(int(mib * 1048576))
    time.sleep(max(s, 0))
    if s < 0:
        raise ValueError("negative")
    return len(block)
"""
)


@pytest.mark.slow
def test_retries_escalate_time_and_memory_per_attempt_and_only_for_the_errors_named(project):
    project.write("slow.py", NAP)
    project.manifest(
        "script: slow.py\nfunction: nap\ntimeout: 1\nmemory: 200M\ncalls_per_task: 1\n"
        "retries: {max: 3, on: [TimeoutError, MemoryError], timeout: 2x, memory: 2x}\n"
        "sweep:\n  zip:\n    s: [0.01, 1.4, 3.0, -1, 0.01]\n    mib: [1, 1, 1, 1, 300]\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 1
    run = hb.Run(project.root / "run")
    table = run.results()
    assert list(table["status"]) == ["succeeded", "succeeded", "succeeded", "failed", "succeeded"]
    assert list(table["attempts"]) == [
        1,
        2,
        3,
        1,
        2,
    ]  # 1 s, then 2 s, then 4 s; 200 MiB, then 400 MiB
    assert table["error"][3] == "ValueError: negative"  # not in `on`: never retried
    recorded = run.ledger.get_meta("escalations")
    assert sorted((e["attempt"], e["timeout_s"], e["memory_mib"]) for e in recorded) == [
        (2, 2.0, 400.0),
        (2, 2.0, 400.0),
        (2, 2.0, 400.0),
        (3, 4.0, 800.0),
    ]


def test_a_retry_policy_with_an_unknown_key_is_a_located_error(project):
    project.write("slow.py", NAP)
    project.manifest(
        "script: slow.py\nfunction: nap\nretries: {max: 2, timeot: 2x}\nsweep:\n  product:\n    s: [0]\n"
    )
    done = project.cli("validate", "sweep.yaml")
    assert done.returncode == 2 and "retries.timeot" in done.stderr and "timeout" in done.stderr
