"""One process acts on a run at a time: an exclusive ``flock`` on the run's lock file.

The kernel releases the lock when its holder dies, however it dies, so a
lock left by a dead process is recovered by simply taking it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import RunInUse


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def holder(self) -> dict | None:
        """Who holds the lock now, or None when nobody does."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                return {}
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self, action: str) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder() or {}
            raise RunInUse(
                message=f"the run is in use by another hog-batch process (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, doing {holder.get('action', '?')} since {holder.get('since', '?')})",
                hint=f"wait for it to finish, follow it with `hog-batch status --watch {self.path.parent}`, "
                f"or stop it with `hog-batch cancel {self.path.parent}`",
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "action": action,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
