"""One process acts on a run at a time: an exclusive ``flock`` on the run's lock file.

The kernel releases the lock when its holder dies, however it dies, so a
lock left by a dead process is recovered by simply taking it again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from .errors import RunError, RunInUse

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC  # never through a planted symlink, never into a task


BACKGROUND_ENV = "HOG_BATCH_BACKGROUND"  # set to 1 for a submitter that runs in the background


# How long a held lock's file may stay empty: its holder writes it just after the flock.
HOLDER_INFO_WAIT_S = 1.0


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def holder(self) -> dict | None:
        """Who holds the lock now (pid, host, action, since), or None when nobody does (read-only: works on a
        read-only run directory).

        A holder takes the lock, then writes who it is, and empties the file before it lets go: a look that
        finds the lock held and the file empty or half written looks again (for up to
        ``HOLDER_INFO_WAIT_S``), rather than answer "held by nobody knows whom"; {} if it never says.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._cannot_open(exc) from None
        deadline = time.monotonic() + HOLDER_INFO_WAIT_S
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return None
                try:
                    info = json.loads(os.pread(fd, 4096, 0))
                    if isinstance(info, dict) and info:
                        return info
                except (OSError, ValueError):
                    pass
                if time.monotonic() >= deadline:
                    return {}
                time.sleep(0.01)
        finally:
            os.close(fd)

    def acquire(self, action: str) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise self._cannot_open(exc) from None
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
        info = {
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "action": action,
            "background": os.environ.get(BACKGROUND_ENV)
            == "1",  # a detached submitter, or hb.submit(wait=False)
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def _cannot_open(self, exc: OSError) -> RunError:
        if exc.errno == errno.ELOOP:
            return RunError(
                message=f"the run's lock file {self.path} is a symbolic link; hog-batch does not follow it",
                hint="someone may have planted it: remove it (rm) after checking where it points, and keep "
                "run directories private",
            )
        return RunError(
            message=f"cannot open the run's lock file {self.path}: {exc.strerror}",
            hint="acting on a run needs write access to its directory; status and collect -o ELSEWHERE "
            "work on a read-only one",
        )

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
