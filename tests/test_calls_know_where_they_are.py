"""Each call knows where it is: HOG_BATCH_* in its environment, and with workdir: call its own directory,
whose files the results table lists and the report links."""

from __future__ import annotations

import json
import re

from conftest import SCRIPT_HEAD as HEAD

import groundhog_batch as hb

WHERE = (
    HEAD
    + """\
import os
def f(x):
    if x == 2 and os.environ["HOG_BATCH_ATTEMPT"] == "1":
        raise ValueError("first attempt fails")
    with open("out.txt", "w") as handle:
        handle.write(f"x={x}")
    os.makedirs("plots", exist_ok=True)
    open(os.path.join("plots", f"p{x}.txt"), "w").close()
    return {k: os.environ[k] for k in ("HOG_BATCH_RUN_DIR", "HOG_BATCH_JOB", "HOG_BATCH_CALL", "HOG_BATCH_ATTEMPT")} | {
        "cwd": os.getcwd()}
"""
)


def test_each_call_sees_its_run_job_call_and_attempt_and_runs_in_its_own_directory(project):
    project.write("work.py", WHERE)
    project.manifest(
        "name: where\nscript: work.py\nfunction: f\nworkdir: call\nretries: 1\n"
        "sweep: {product: {x: [0, 1, 2]}}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run")
    assert done.returncode == 0, done.stderr
    run = project.root / "run"
    table = hb.Run(run).results()
    assert list(table["result.HOG_BATCH_RUN_DIR"]) == [str(run)] * 3
    assert list(table["result.HOG_BATCH_JOB"]) == ["f"] * 3
    assert list(table["result.HOG_BATCH_CALL"]) == ["0", "1", "2"]
    assert list(table["result.HOG_BATCH_ATTEMPT"]) == [
        "1",
        "1",
        "2",
    ]  # call 2 ran again after its first attempt failed
    assert list(table["result.cwd"]) == [str(run / "calls" / "f" / str(x)) for x in range(3)]
    for x in range(3):
        assert (
            run / "calls" / "f" / str(x) / "out.txt"
        ).read_text() == f"x={x}"  # nobody overwrote anybody
    assert [json.loads(files) for files in table["files"]] == [
        ["out.txt", f"plots/p{x}.txt"] for x in range(3)
    ]


def test_without_workdir_calls_share_the_manifest_folder_and_the_table_has_no_files_column(project):
    project.write(
        "work.py",
        HEAD
        + "import os\ndef f(x):\n    return {'call': os.environ['HOG_BATCH_CALL'], 'cwd': os.getcwd()}\n",
    )
    project.manifest("script: work.py\nfunction: f\nsweep: {product: {x: [5, 6]}}\n")
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    table = hb.Run(project.root / "run").results()
    assert list(table["result.call"]) == ["0", "1"] and set(table["result.cwd"]) == {
        str(project.root)
    }
    assert "files" not in table.columns


def test_the_report_links_the_files_each_call_wrote(project):
    project.write("work.py", WHERE)
    project.manifest(
        "script: work.py\nfunction: f\nworkdir: call\nretries: 1\nsweep: {product: {x: [0, 1, 2]}}\n"
    )
    assert project.cli("submit", "sweep.yaml", "--run-dir", "run").returncode == 0
    assert project.cli("report", "run").returncode == 0
    html = (project.root / "run" / "report.html").read_text()
    assert "Files the calls wrote" in html
    links = re.findall(r'<a href="(calls/f/\d/[^"]+)">', html)
    assert "calls/f/1/out.txt" in links and "calls/f/2/plots/p2.txt" in links
    assert all((project.root / "run" / link).is_file() for link in links)
    csv = project.cli("collect", "run", "-o", "t.csv")
    assert csv.returncode == 0 and "files" in (project.root / "t.csv").read_text().splitlines()[0]


def test_a_call_that_changes_or_drops_its_variables_leaves_the_next_call_its_own_and_a_child_sees_them(
    tmp_path,
):
    """The runner sets a variable only when it changes (a setenv per call and variable was most of a trivial
    call's cost): what one call does to them never reaches the next, and a process a call starts sees them."""
    from test_task_isolation import run_runner

    body = (
        "import os, subprocess, sys\n"
        "def f(x):\n"
        "    child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"HOG_BATCH_CALL\"),"
        ' os.environ.get("HOG_BATCH_JOB"), os.environ.get("HOG_BATCH_ATTEMPT"))\'],'
        " capture_output=True, text=True).stdout.split()\n"
        "    seen = [os.environ.get(k) for k in ('HOG_BATCH_RUN_DIR', 'HOG_BATCH_JOB', 'HOG_BATCH_ATTEMPT')]\n"
        "    os.environ['HOG_BATCH_JOB'] = 'spoiled'\n"
        "    os.environ.pop('HOG_BATCH_RUN_DIR')\n"
        "    os.environ['HOG_BATCH_ATTEMPT'] = '99'\n"
        "    if x % 3 == 1:\n"
        "        os.environ.pop('HOG_BATCH_CALL')\n"
        "    elif x % 3 == 2:\n"
        "        os.environ['HOG_BATCH_CALL'] = 'spoiled'\n"
        "    saved = dict(os.environ)\n"  # as mock.patch.dict restores it: cleared, then the same values set
        "    os.environ.clear()\n"
        "    os.environ.update(saved)\n"
        "    return seen + child\n"
    )
    context = {"run_dir": "/runs/r", "job": "j", "attempts": [1, 1, 3, 3, 3, 3], "workdir": None}
    records = run_runner(tmp_path, body, 6, context=context)
    assert [r["value"] for r in records] == [
        ["/runs/r", "j", "1", "0", "j", "1"],
        ["/runs/r", "j", "1", "1", "j", "1"],
        ["/runs/r", "j", "3", "2", "j", "3"],
        ["/runs/r", "j", "3", "3", "j", "3"],
        ["/runs/r", "j", "3", "4", "j", "3"],
        ["/runs/r", "j", "3", "5", "j", "3"],
    ]
