"""A task's records file, as the host reads it: where it is, the secret that frames it, and its records.

The runner appends each call's record to ``HOG_BATCH_RECORDS_FILE``, framed
with a secret it reads from the descriptor ``HOG_BATCH_RECORDS_SECRET_FD``
(never the environment, which a call can read; ``render/runner.py`` writes the frames;
``render.payload.unframe_records`` takes them off). A backend whose tasks run
where this machine sees their files (a local process; a batch job on a shared
filesystem) reads the records from here: as they come (``read_new``), or once
the task's processes have let go of the file (``read_released``, after a kill).

The secret is derived from the run's own key (``records.key`` in the scratch
dir, private), so a later submitter that resumes the run knows it too.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import hmac
import os
import queue
import threading
import time
from pathlib import Path

from ..render.payload import unframe_records
from ..render.runner import read_written
from ..run_paths import write_atomic

RELEASE_WAIT_S = 5.0
KEY_FILE = "records.key"
SUFFIX = ".records"


class RecordsFiles:
    """The records files of a run's tasks, under the backend's scratch dir (or another folder the tasks write to,
    ``key_dir`` then holding the run's key: the private scratch dir)."""

    def __init__(self, scratch_dir: Path, key_dir: Path | None = None) -> None:
        self.scratch_dir = scratch_dir
        self.key_dir = key_dir or scratch_dir
        self._key: bytes | None = None
        self._offsets: dict[str, int] = {}
        self._removals: queue.SimpleQueue | None = (
            None  # records files to remove, for a thread of their own
        )

    def path(self, task_id: str) -> Path:
        return self.scratch_dir / f"{task_id}{SUFFIX}"

    def secret(self, task_id: str) -> str:
        """The secret that frames the task's lines in its records file."""
        if self._key is None:
            path = self.key_dir / KEY_FILE
            try:
                self._key = path.read_bytes()
            except FileNotFoundError:
                self.key_dir.mkdir(parents=True, exist_ok=True)
                self._key = os.urandom(32).hex().encode()
                write_atomic(path, self._key)
        return hmac.new(self._key, task_id.encode(), hashlib.sha256).hexdigest()[:32]

    def environment(self, task_id: str, secret_fd: int) -> dict[str, str]:
        """What the task's runner, on this machine, needs in its environment to write its records here;
        ``secret_fd`` is ``secret_pipe(task_id)``, passed to the task (``pass_fds``) and closed here once it
        started. Only this machine reads the file, so the worker may write it through a mapping
        (``runner.records_mapped``)."""
        return {
            "HOG_BATCH_RECORDS_FILE": str(self.path(task_id)),
            "HOG_BATCH_RECORDS_SECRET_FD": str(secret_fd),
            "HOG_BATCH_RECORDS_MAPPED": "1",
        }

    def secret_pipe(self, task_id: str) -> int:
        """The read end of a pipe holding the task's secret (see ``secret_pipe``)."""
        return secret_pipe(self.secret(task_id))

    def read_new(self, task_id: str) -> bytes:
        """The task's records that reached the file since the last call, as plain JSON lines (whole records only)."""
        start = self._offsets.get(task_id, 0)
        try:
            with self.path(task_id).open("rb") as handle:
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n") + 1
        self._offsets[task_id] = start + end
        return unframe_records(data[:end], self.secret(task_id))

    def read_released(self, task_id: str, wait_s: float = RELEASE_WAIT_S) -> bytes:
        """Every record of a stopped task, as plain JSON lines, once its processes have let go of the file."""
        return unframe_records(read_when_released(self.path(task_id), wait_s), self.secret(task_id))

    def remove(self, task_id: str) -> None:
        self.path(task_id).unlink(missing_ok=True)
        self._offsets.pop(task_id, None)

    def remove_soon(self, task_id: str) -> None:
        """``remove``, in a thread of its own: freeing a large records file takes the file system tens of
        milliseconds (a 15 MB one, 20 ms here), which the submitter's loop need not wait for; ``close`` waits
        for what is left."""
        self._offsets.pop(task_id, None)
        if self._removals is None:
            self._removals = queue.SimpleQueue()
            threading.Thread(target=_remove_each, args=(self._removals,), daemon=True).start()
            atexit.register(
                self.close
            )  # whoever forgets to close: the files are gone before the process
        self._removals.put(self.path(task_id))

    def close(self, wait_s: float = RELEASE_WAIT_S) -> None:
        """Wait (at most ``wait_s``) until the records files given to ``remove_soon`` are gone."""
        if self._removals is None:
            return
        done = threading.Event()
        self._removals.put(done)
        done.wait(wait_s)


def _remove_each(paths: queue.SimpleQueue) -> None:
    while True:
        path = paths.get()
        if isinstance(path, threading.Event):
            path.set()
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def secret_pipe(secret: str) -> int:
    """The read end of a pipe that holds ``secret``, at a number the task script's own redirections (8, 9) never
    take: the task's runner reads it and closes it, so the secret never sits in any process's environment."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, secret.encode() + b"\n")
        return fcntl.fcntl(read_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    finally:
        os.close(write_fd)
        os.close(read_fd)


def read_when_released(path: Path, wait_s: float = RELEASE_WAIT_S, mapped: bool = False) -> bytes:
    """A killed task's records file, once its runner and worker are gone: they hold a shared lock on it while
    they live (a worker killed with its supervisor may still be finishing the write of a record). A process the
    call forked may hold it for ever: after ``wait_s`` the file is read as it is. ``mapped``: a file a worker
    on this machine mapped (``environment``), whose records end at its first NUL byte."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        return read_written(fd, 0, mapped)
    finally:
        os.close(fd)


__all__ = ["RecordsFiles", "read_when_released", "secret_pipe"]
