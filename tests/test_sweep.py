"""Sweep expansion: the order, the value specs, every group, unions, exclusions."""

from __future__ import annotations

import tracemalloc

import pytest

from groundhog_batch.manifest import load_manifest
from groundhog_batch.plan import Plan, iter_calls
from groundhog_batch.sweep import geomspace, linspace

SCRIPT = "def f(**kwargs):\n    return kwargs\n"


def params(project, sweep_yaml: str, extra: str = "") -> list[dict]:
    project.write("s.py", SCRIPT)
    path = project.manifest("script: s.py\nfunction: f\n" + extra + "sweep:\n" + sweep_yaml)
    job = load_manifest(path).jobs[0]
    return [call.params for call in iter_calls(job)]


def test_product_varies_the_last_key_fastest(project):
    got = params(project, "  product:\n    a: [1, 2]\n    b: [x, y]\n")
    assert got == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_value_specs_range_linspace_geomspace_values_and_scalar(project):
    got = params(
        project, "  product:\n    r: {range: [0, 6, 2]}\n    one: 7\n    v: {values: [[1, 2]]}\n"
    )
    assert [p["r"] for p in got] == [0, 2, 4]
    assert all(p["one"] == 7 and p["v"] == [1, 2] for p in got)
    assert linspace(0.001, 0.1, 5)[0] == 0.001 and linspace(0.001, 0.1, 5)[-1] == 0.1
    assert geomspace(1, 1000, 4) == [1.0, 10.0, 100.0, 1000.0]


def test_groups_combine_as_a_product_in_the_order_written(project):
    got = params(
        project, "  zip:\n    a: [1, 2]\n    b: [x, y]\n  product:\n    c: [true, false]\n"
    )
    assert got == [
        {"a": 1, "b": "x", "c": True},
        {"a": 1, "b": "x", "c": False},
        {"a": 2, "b": "y", "c": True},
        {"a": 2, "b": "y", "c": False},
    ]


def test_rows_give_one_point_per_row_with_chosen_columns(project):
    project.write("p.csv", "alpha,beta,gamma\n1,0.5,a\n2,1.5,b\n")
    got = params(project, "  rows: {file: p.csv, columns: [alpha, gamma]}\n")
    assert got == [{"alpha": 1, "gamma": "a"}, {"alpha": 2, "gamma": "b"}]
    assert type(got[0]["alpha"]) is int


def test_chunks_of_an_inline_list_by_size_and_of_a_file_by_parts(project):
    project.write("d.csv", "v\n" + "".join(f"{i}\n" for i in range(10)))
    project.write("s.py", SCRIPT)
    path = project.manifest(
        "script: s.py\nfunction: f\ndependencies: [pandas]\ncalls_per_task: 3\nsweep:\n  chunks:\n"
        "    items: {values: [1, 2, 3, 4, 5], size: 2}\n    data: {file: d.csv, parts: 3}\n"
    )
    spec = load_manifest(path)
    plan = Plan(spec)
    job = spec.jobs[0]
    calls = list(iter_calls(job))
    assert [c.params for c in calls][:4] == [
        {"items": 0, "data": 0},
        {"items": 0, "data": 1},
        {"items": 0, "data": 2},
        {"items": 1, "data": 0},
    ]
    task = next(plan.tasks(job, calls[:3]))
    payload = plan.payload(task)
    assert payload.swept_kwargs[0]["items"] == [1, 2]
    assert [len(kw["data"]) for kw in payload.swept_kwargs] == [4, 3, 3]


def test_chunks_by_path_pass_bounds_not_data(project):
    project.write("d.csv", "v\n1\n2\n3\n")
    got = params(project, "  chunks:\n    data: {file: d.csv, rows: 2, pass: path}\n")
    assert got == [{"data": 0}, {"data": 1}]


def test_a_list_of_sweeps_is_their_union_in_order(project):
    got = params(project, "  - product: {a: [1, 2]}\n  - product: {b: [3]}\n")
    assert got == [{"a": 1}, {"a": 2}, {"b": 3}]


def test_exclude_drops_points_matching_every_key(project):
    got = params(
        project,
        "  product:\n    n: [1, 2]\n    mode: [fast, exact]\n  exclude:\n    - {n: 1, mode: exact}\n",
    )
    assert {"n": 1, "mode": "exact"} not in got and len(got) == 3


def test_same_manifest_gives_same_calls_in_same_order(project):
    yaml = "  product:\n    a: {range: [0, 50]}\n    b: {linspace: [0, 1, 7]}\n"
    assert params(project, yaml) == params(project, yaml)


def test_fixed_args_and_set_overrides_apply(project):
    project.write("s.py", SCRIPT)
    path = project.manifest("script: s.py\nfunction: f\nsweep:\n  product:\n    n: [1]\n")
    spec = load_manifest(path, ["sweep.product.n=[5, 6, 7]", "kwargs.k=hello"])
    job = spec.jobs[0]
    assert [c.params["n"] for c in iter_calls(job)] == [5, 6, 7] and job.kwargs == {"k": "hello"}


def test_a_million_call_sweep_streams_without_holding_the_calls(project):
    project.write("s.py", SCRIPT)
    path = project.manifest(
        "script: s.py\nfunction: f\nsweep:\n  product:\n    a: {range: [0, 1000]}\n    b: {range: [0, 1000]}\n"
    )
    job = load_manifest(path).jobs[0]
    assert job.n_calls == 1_000_000
    tracemalloc.start()
    count = sum(1 for _ in iter_calls(job))
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 1_000_000
    assert peak_bytes < 5_000_000  # a few calls at a time, not a million


@pytest.mark.parametrize("per_task,expected", [(3, [3, 3, 1]), (10, [7])])
def test_calls_are_packed_into_tasks_in_order(project, per_task, expected):
    project.write("s.py", SCRIPT)
    path = project.manifest(
        f"script: s.py\nfunction: f\ncalls_per_task: {per_task}\nsweep:\n  product:\n    a: {{range: [0, 7]}}\n"
    )
    plan = Plan(load_manifest(path))
    tasks = list(plan.all_tasks())
    assert [len(t.calls) for t in tasks] == expected
    assert [c.index for t in tasks for c in t.calls] == list(range(7))


def test_sweep_columns_by_position_agree_with_walking_the_points(tmp_path):
    """The results table computes parameters from the axes by position; it must match the points, in order."""
    from groundhog_batch.manifest import load_manifest

    (tmp_path / "rows.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    (tmp_path / "work.py").write_text("def f(**kw):\n    return 0\n")
    (tmp_path / "m.yaml").write_text(
        "script: work.py\nfunction: f\nsweep:\n"
        "  - product:\n      x: {range: [0, 7]}\n      y: [u, v]\n    zip:\n      p: [1, 2]\n      q: [3, 4]\n"
        "  - rows:\n      file: rows.csv\n    product:\n      x: [10, 11]\n"
    )
    sweep = load_manifest(tmp_path / "m.yaml").jobs[0].sweep
    points = [point.params for point in sweep.points()]
    for start, stop in [(0, len(points)), (5, 31), (27, 34), (28, 29)]:
        columns = sweep.columns(start, stop)
        walked = {name: [p.get(name) for p in points[start:stop]] for name in sweep.names}
        assert columns == walked
