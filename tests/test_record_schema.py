"""The shipped runner writes exactly the record shapes of render/record_schema.py, for every way a call ends."""

from __future__ import annotations

from test_task_isolation import run_runner

from groundhog_batch.render.record_schema import SHAPES, problems, shape_of

SCRIPT = """\
import os, time

class Opaque:
    pass

def f(x):
    if x == 0:
        return 7                      # succeeded-short: an int, nothing printed
    if x == 1:
        print("hello")                # finished: printed something
        return {"a": [1.5, None]}
    if x == 2:
        return Opaque()               # finished: a pickled result
    if x == 3:
        raise KeyError("missing")     # finished: raised
    if x == 4:
        time.sleep(30)                # finished: over its timeout
    if x == 5:
        os._exit(3)                   # lost: the worker died under it
    return "x" * 4000                 # deferred: past the task's output budget
"""


def runner_records(tmp_path, n: int, **limits) -> list[dict]:
    tmp_path.mkdir(exist_ok=True)
    return run_runner(tmp_path, SCRIPT, n, **limits)


def test_every_record_the_runner_writes_has_one_of_the_documented_shapes(tmp_path):
    records = runner_records(tmp_path, 8, timeout_s=1, max_stdout_bytes=6000)
    assert records, "the runner wrote no records"
    for record in records:
        assert problems(record) == [], record
    by_call = {record["call"]: shape_of(record) for record in records}
    assert by_call[0] == "succeeded-short"
    assert by_call[1] == by_call[2] == by_call[3] == by_call[4] == "finished"
    assert by_call[5] == "lost"
    assert "deferred" in {by_call[6], by_call.get(7)}
    in_own_directory = runner_records(
        tmp_path / "own",
        2,
        context={
            "run_dir": str(tmp_path),
            "job": "f",
            "attempts": [1, 1],
            "workdir": str(tmp_path / "calls"),
        },
    )
    assert [shape_of(record) for record in in_own_directory] == ["finished-with-files"] * 2
    assert all(problems(record) == [] for record in in_own_directory)
    shapes = {*by_call.values(), *(shape_of(record) for record in in_own_directory)}
    assert shapes == set(SHAPES), "a shape the runner never writes is documented, or the reverse"


def test_the_docs_table_every_shape_and_field():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "running.md").read_text()
    for name, fields in SHAPES.items():
        assert f"`{name}`" in text, f"docs/running.md does not describe the {name} record"
        for field in fields:
            assert f"`{field}`" in text, (
                f"docs/running.md does not describe the record field {field}"
            )


def test_a_record_with_an_extra_or_a_missing_field_is_not_taken_for_a_documented_one():
    assert (
        shape_of(
            {"call": 1, "ok": True, "kind": "json", "value": 1, "t0": 0.0, "t1": 1.0, "extra": 1}
        )
        == "unknown"
    )
    assert problems({"call": 1, "ok": True, "kind": "json", "value": 1, "t0": 0.0}) != []
    assert problems({"call": "1", "deferred": True, "reason": "walltime"}) != []
