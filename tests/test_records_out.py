"""How a worker's records reach the records file (``runner.Channel``), tested directly: stored through a
mapped window of the file, or written where it cannot be mapped; every reader takes the file up to its
first NUL. Whatever happens to the file meanwhile (a full disk, a file system that cannot set space aside,
bytes a call writes into the worker's descriptor), the records read back are exactly the records put, in
order."""

from __future__ import annotations

import errno
import os

import pytest

from groundhog_batch.render import runner
from groundhog_batch.render.runner import MAP_WINDOW_BYTES, STRAY_OFFSET, Channel, Records

SECRET = b"0123456789abcdef" * 2


@pytest.fixture(autouse=True)
def fresh_runner(monkeypatch):
    """Each test is a task of its own: the runner reads whether it may map the file once a task."""
    monkeypatch.setattr(runner, "_records_mapped", [None])


@pytest.fixture
def records_file(tmp_path, monkeypatch):
    """A task's records file on this machine (the local backend's environment: the worker may map it)."""
    path = tmp_path / "task.records"
    monkeypatch.setenv("HOG_BATCH_RECORDS_FILE", str(path))
    monkeypatch.setenv("HOG_BATCH_RECORDS_MAPPED", "1")
    return path


def open_channel(path) -> Channel:
    """A worker's channel, as ``_Worker.start`` makes it: the records file as the supervisor opened it."""
    records_fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    messages_r, messages_w = os.pipe()
    control_r, control_w = os.pipe()
    os.write(control_w, SECRET + b"\n")
    channel = Channel(messages_w, control_r, records_fd)
    os.close(messages_r)
    return channel


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [
        b'{"call": %d, "ok": true, "kind": "json", "value": %d, "pad": "%s"}'
        % (i, i, b"x" * (i % 97))
        for i in range(start, start + n)
    ]


def read_back(path) -> list[bytes]:
    """What the supervisor hands on from the file (its own reader, up to the first NUL)."""
    reader = Records(SECRET + b" ")
    reader.offset = 0
    data = reader.read_new()
    text = runner.clean_records(data, SECRET + b" ")
    assert text is not None, "whole records, in order, and nothing else"
    return text.splitlines()


def put_all(channel: Channel, records: list[bytes]) -> None:
    for body in records:
        assert channel.room_for(len(body) + 64)
        channel.put(runner.frame(channel.prefix, body))


def test_records_stored_through_mapped_windows_read_back_exactly_in_order(records_file):
    channel = open_channel(records_file)
    records = bodies(6000)  # about 700 KB: several windows
    put_all(channel, records)
    assert channel.view is not None, "the records went through a mapping"
    assert sum(len(body) for body in records) > 2 * MAP_WINDOW_BYTES
    assert read_back(records_file) == records
    assert records_file.stat().st_size > channel.end, "the window past the records holds zeros"
    assert (
        records_file.read_bytes()[channel.end :].count(b"\0")
        == records_file.stat().st_size - channel.end
    )


def test_bytes_a_call_writes_into_the_workers_descriptor_land_far_past_the_records_and_are_cut_off(
    records_file,
):
    channel = open_channel(records_file)
    records = bodies(4000)
    put_all(channel, records[:100])
    os.write(channel.records_fd, b"\0junk\nmore junk" * 100)  # a stray write, by a call
    assert os.fstat(channel.records_fd).st_size > STRAY_OFFSET
    put_all(channel, records[100:])  # through the next windows: the junk is cut off
    assert os.fstat(channel.records_fd).st_size < STRAY_OFFSET
    assert read_back(records_file) == records


def test_where_space_cannot_be_set_aside_each_record_is_written_at_the_end_of_the_records(
    records_file, monkeypatch
):
    def cannot(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "not here")

    monkeypatch.setattr(os, "posix_fallocate", cannot)
    channel = open_channel(records_file)
    records = bodies(3000)
    put_all(channel, records[:10])
    os.write(channel.records_fd, b"junk\n" * 10)  # lands past the records, not among them
    put_all(channel, records[10:])
    assert channel.view is None and channel.mapper is None
    assert read_back(records_file) == records


def test_a_full_disk_refuses_room_for_the_next_record_instead_of_losing_it(
    records_file, monkeypatch
):
    channel = open_channel(records_file)
    records = bodies(50)
    put_all(channel, records)
    real = os.posix_fallocate

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert not channel.room_for(2 * MAP_WINDOW_BYTES)  # no window can be set aside: no call starts
    monkeypatch.setattr(os, "posix_fallocate", real)
    assert os.fstat(channel.records_fd).st_size == channel.end, "no zeros left past the records"
    assert read_back(records_file) == records


def test_a_file_another_machine_reads_gets_one_appended_write_per_record(tmp_path, monkeypatch):
    path = tmp_path / "task.records"
    monkeypatch.setenv("HOG_BATCH_RECORDS_FILE", str(path))
    monkeypatch.delenv(
        "HOG_BATCH_RECORDS_MAPPED", raising=False
    )  # a Slurm job's, on a shared file system
    channel = open_channel(path)
    records = bodies(500)
    put_all(channel, records)
    assert channel.view is None and not channel.positioned
    assert path.stat().st_size == channel.end, "no window, no zeros: each record appended"
    assert read_back(path) == records
