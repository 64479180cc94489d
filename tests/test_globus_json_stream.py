"""A status answer read entry by entry as its bytes arrive, whatever the chunk boundaries."""

from __future__ import annotations

import json

import pytest

from groundhog_batch.globus.json_stream import JsonStreamError, object_entries

ANSWER = {
    "response": "batch",
    "results": {
        "t1": {"status": "success", "result": "00\n" + "QUJD" * 5000 + "\n", "completion_t": "1.5"},
        "t2": {"status": "failed", "exception": 'Traceback ... π ✓ "quoted"'},
        "t3": {
            "status": "waiting-for-ep",
            "n": 12345,
            "ok": True,
            "nothing": None,
            "list": [1, [2, {"a": 3}]],
        },
    },
    "after": [1.25, -3e5],
}


def chunks(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
def test_entries_come_out_as_json_loads_reads_them_whatever_the_chunk_size(size):
    for separators in [(",", ":"), (", ", ": ")]:
        data = json.dumps(ANSWER, separators=separators, indent=None if size % 2 else 1).encode()
        assert list(object_entries(chunks(data, size), "results")) == list(
            ANSWER["results"].items()
        )


def test_an_empty_answer_and_one_without_the_key_give_no_entries():
    assert list(object_entries([b'{"results": {}}'], "results")) == []
    assert list(object_entries([b"{}"], "results")) == []
    assert list(object_entries([b'{"other": {"a": 1}}'], "results")) == []


def test_a_cut_answer_is_an_error_after_the_entries_it_holds():
    data = json.dumps(ANSWER).encode()
    cut = data[: data.index(b'"t3"') + 20]
    entries = object_entries(chunks(cut, 5), "results")
    assert next(entries)[0] == "t1" and next(entries)[0] == "t2"
    with pytest.raises(JsonStreamError):
        next(entries)
