"""The rendered task: one substitution pass, heredocs no content line can end."""

from __future__ import annotations

from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan
from groundhog_batch.render.renderer import heredoc_terminator, runner_source

SCRIPT = (
    "# /// script\n# dependencies = []\n# ///\n"
    "HOG_SCRIPT_EOF = '{not a format field}'\ndef f(x):\n    return {'x': x, 'text': HOG_SCRIPT_EOF}\n"
)


def planned(project):
    project.write("work.py", SCRIPT)
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  product:\n    x: ['{x}', '${HOME}']\ncalls_per_task: 2\n"
    )
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
