"""A task's calls travel as a span of the sweep's axes, and the task makes exactly the calls planning gives.

Where a job's sweep is one product of listed values (no exclusions, no chunks of a data file), its tasks carry
the axes once and a span (first call, length); the runner expands them. Whatever the shape, every call of
every span gets the keyword arguments planning gives it, in order; other sweeps carry their calls one by one.
"""

from __future__ import annotations

import pickle

import pytest

from groundhog_batch.call_span import CallSpan
from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan, iter_calls
from groundhog_batch.render.runner import expand_grid

SHAPES = {
    "one range": "  product:\n    x: {range: [0, 37]}\n",
    "a range with a step": "  product:\n    x: {range: [5, 80, 7]}\n",
    "a grid": "  product:\n    a: [1, 2, 3]\n    b: [x, y]\n    c: {range: [0, 5]}\n",
    "zip then product": "  zip:\n    p: [1, 2]\n    q: [u, v]\n  product:\n    c: [true, false, null]\n",
    "product then zip": "  product:\n    c: [0.5, 1.5, 2.5]\n  zip:\n    p: [1, 2]\n    q: [[1, 2], {k: 1}]\n",
    "rows": "  rows: {file: rows.csv}\n  product:\n    x: [10, 11, 12]\n",
    "linspace": "  product:\n    t: {linspace: [0, 1, 9]}\n    s: [a]\n",
    "one value": "  product:\n    only: 7\n",
    "a range counting down": "  product:\n    x: {range: [10, -11, -3]}\n    y: {geomspace: [1, 1000, 4]}\n",
    "values that are lists and dicts": "  product:\n    v: {values: [[1, 2], {a: 1}, null]}\n    w: [x]\n",
    "a date and big numbers": "  product:\n    d: [2024-02-29, 2025-01-01]\n    n: [12345678901234567890, -1.5e300]\n",
}


def job_of(project, sweep: str, per_task: int, extra: str = ""):
    project.write("s.py", "def f(**kwargs):\n    return kwargs\n")
    project.write("rows.csv", "a,b\n1,x\n2,y\n3,w\n4,z\n")
    path = project.manifest(
        f"script: s.py\nfunction: f\n{extra}calls_per_task: {per_task}\nsweep:\n{sweep}"
    )
    return Plan(load_manifest(path)), load_manifest(path).jobs[0]


@pytest.mark.parametrize("per_task", [1, 4, 7, 1000])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_span_expands_to_the_calls_planning_gives_in_order(project, shape, per_task):
    plan, job = job_of(project, SHAPES[shape], per_task)
    planned = [call.kwargs for call in iter_calls(job)]
    tasks = list(plan.tasks(plan.jobs[0]))
    made = []
    for task in tasks:
        payload = plan.payload(task)
        if isinstance(task.calls, CallSpan):
            grid = pickle.loads(pickle.dumps(payload.grid))  # as the task gets it
            assert payload.swept_kwargs == []
            made += expand_grid(grid)
        else:
            made += payload.swept_kwargs
        assert payload.call_indices == list(range(len(made) - len(task.calls), len(made)))
    assert made == planned
    assert [list(kwargs) for kwargs in made] == [
        list(kwargs) for kwargs in planned
    ]  # key order too


def test_a_job_with_no_sweep_is_one_call_with_no_swept_arguments(project):
    project.write("s.py", "def f():\n    return 1\n")
    plan = Plan(load_manifest(project.manifest("script: s.py\nfunction: f\n")))
    (task,) = plan.tasks(plan.jobs[0])
    payload = plan.payload(task)
    kwargs = expand_grid(payload.grid) if payload.grid is not None else payload.swept_kwargs
    assert kwargs == [{}] and payload.call_indices == [0]


def test_a_large_sweep_goes_as_spans_and_a_task_carries_its_axes_not_its_calls(project):
    plan, _ = job_of(
        project, "  product:\n    a: [1, 2, 3]\n    x: {range: [0, 200000]}\n", 100_000
    )
    tasks = list(plan.tasks(plan.jobs[0]))
    assert all(isinstance(task.calls, CallSpan) for task in tasks)
    assert len(tasks) == 6
    assert max(len(plan.payload(task).encode()) for task in tasks) < 2_000
    assert expand_grid(plan.payload(tasks[3]).grid)[:2] == [
        {"a": 2, "x": 100_000},
        {"a": 2, "x": 100_001},
    ]


@pytest.mark.parametrize(
    "sweep",
    [
        "  product:\n    a: [1, 2, 3]\n  exclude:\n    - {a: 2}\n",
        "  - product:\n      a: [1, 2]\n  - product:\n      a: [3]\n",
        "  chunks:\n    data: {file: d.csv, rows: 2}\n",
        "  chunks:\n    data: {file: d.csv, rows: 2, pass: path}\n",
        "  rows: {file: rows.csv}\n",  # more listed values than calls in a task
    ],
    ids=[
        "exclude",
        "a union",
        "chunks of a file",
        "chunks passed by path",
        "a table longer than a task",
    ],
)
def test_other_sweeps_carry_their_calls_one_by_one(project, sweep):
    project.write("d.csv", "v\n1\n2\n3\n")
    plan, job = job_of(project, sweep, 2, "dependencies: [pandas]\n")
    tasks = list(plan.tasks(plan.jobs[0]))
    assert not any(isinstance(task.calls, CallSpan) for task in tasks)
    assert [c for t in tasks for c in plan.payload(t).call_indices] == list(range(job.n_calls))


def test_each_call_of_a_submitted_span_receives_the_parameters_its_row_shows(project):
    import pandas as pd

    project.write("s.py", "def f(**kwargs):\n    return kwargs\n")
    project.write("rows.csv", "a,b\n1,x\n2,y\n3,w\n")
    project.manifest(
        "script: s.py\nfunction: f\ncalls_per_task: 5\nsweep:\n"
        "  product:\n    n: {range: [0, 4]}\n  zip:\n    p: [1.5, 2.5]\n    q: [u, v]\n"
        "  rows: {file: rows.csv}\n"
    )
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", "-o", "results.csv")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(project.root / "results.csv")
    assert len(table) == 4 * 2 * 3 and list(table["call"]) == list(range(24))
    for name in ("n", "p", "q", "a", "b"):
        assert list(table[f"result.{name}"]) == list(table[name]), name


def test_a_span_past_the_end_of_its_sweep_is_refused_not_wrapped_around():
    grid = {"axes": [["x", range(3)], ["y", ["a", "b"]]], "first": 4, "n": 3}
    with pytest.raises(ValueError, match="calls 4 to 6 are not in a sweep of 6"):
        expand_grid(grid)
    assert expand_grid({**grid, "n": 2}) == [{"x": 2, "y": "a"}, {"x": 2, "y": "b"}]
