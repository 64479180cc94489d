"""The rendered task: one substitution pass, and the same artifact locally and as a Globus ShellFunction."""

from __future__ import annotations

import os

from groundhog_batch.backends.local import find_uv
from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan
from groundhog_batch.render.payload import iter_records
from groundhog_batch.render.renderer import (
    PAYLOAD_SENTINEL,
    heredoc_terminator,
    runner_source,
    shell_function_command,
)

SCRIPT = ("# /// script\n# dependencies = []\n# ///\n"
          "HOG_SCRIPT_EOF = '{not a format field}'\ndef f(x):\n    return {'x': x, 'text': HOG_SCRIPT_EOF}\n")


def planned(project):
    project.write("work.py", SCRIPT)
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: ['{x}', '${HOME}']\ncalls_per_task: 2\n")
    plan = Plan(load_manifest(project.root / "sweep.yaml"))
    return plan, next(plan.all_tasks())


def test_every_placeholder_is_filled_once(project):
    plan, task = planned(project)
    script = plan.render(task)
    assert "@@" not in script
    assert script.count("hog_runner.py") >= 2


def test_heredoc_terminators_never_match_a_line_of_their_content():
    assert heredoc_terminator("HOG_SCRIPT_EOF", "a\nHOG_SCRIPT_EOF\nb") == "HOG_SCRIPT_EOF_1"
    assert "HOG_RUNNER_EOF" not in runner_source().splitlines()


def test_the_shell_function_command_formats_back_to_the_local_script(project):
    plan, task = planned(project)
    payload = plan.payload(task).encode()
    command = shell_function_command(plan.render(task, PAYLOAD_SENTINEL))
    assert command.format(payload=payload) == plan.render(task, payload)


def test_the_real_shell_function_runs_the_rendered_task(project, monkeypatch):
    from globus_compute_sdk import ShellFunction

    plan, task = planned(project)
    payload = plan.payload(task).encode()
    function = ShellFunction(shell_function_command(plan.render(task, PAYLOAD_SENTINEL)), snippet_lines=100)
    monkeypatch.setenv("HOG_BATCH_UV", find_uv())
    monkeypatch.setenv("GC_TASK_SANDBOX_DIR", str(project.root / "sandbox"))
    cwd = os.getcwd()
    try:
        result = function(payload=payload)
    finally:
        os.chdir(cwd)
    assert result.returncode == 0, result.stderr
    records = list(iter_records(result.stdout.splitlines()))
    assert [r["value"]["x"] for r in records] == ["{x}", "${HOME}"]
    assert records[0]["value"]["text"] == "{not a format field}"
