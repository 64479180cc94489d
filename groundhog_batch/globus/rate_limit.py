"""The service's rate limit, kept on our side by every hog-batch process of a user together.

Globus Compute allows a user 20 requests in any 10 s, whichever process sends
them: two runs, or ``status --watch`` beside a ``resume``, share that budget.
So the limiter is one small file per user and service in the per-user state
directory, changed under an exclusive ``flock``: the times of the user's last
requests. A request takes a slot before it is sent, and its slot is stamped
with the time it *completes* (a 10 MB upload reaches the server a second or
two after it is sent): a slot is free again ``window_s`` after that stamp. A
slot of a process that died mid-request is freed after ``STALE_S``.

The waiting happens outside the lock, in short sleeps a signal ends at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path

from ..errors import BackendError

RATE_LIMIT_REQUESTS = 20
RATE_LIMIT_WINDOW_S = 10.0
STALE_S = 600.0  # a slot still "in flight" this long belongs to a process that died


def rate_limit() -> tuple[int, float]:
    """(requests, window_s): the service's limit; the tests' loopback may use a shorter window."""
    return (
        int(os.environ.get("HOG_BATCH_GLOBUS_RATE_REQUESTS", RATE_LIMIT_REQUESTS)),
        float(os.environ.get("HOG_BATCH_GLOBUS_RATE_WINDOW_S", RATE_LIMIT_WINDOW_S)),
    )


def user_state_dir() -> Path:
    """hog-batch's per-user state: ``$HOG_BATCH_STATE_DIR``, else ``$XDG_STATE_HOME/hog-batch``, else ``~/.local/state/hog-batch``.

    Created with mode 0700; it must be a directory owned by this user and not
    writable by others.
    """
    explicit = os.environ.get("HOG_BATCH_STATE_DIR")
    base = (
        Path(explicit)
        if explicit
        else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        / "hog-batch"
    )
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(base)
    except OSError as exc:
        raise BackendError(
            message=f"cannot use the state directory {base}: {exc.strerror or exc}",
            hint="set HOG_BATCH_STATE_DIR to a directory of yours",
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise BackendError(
            message=f"the state directory {base} is not a private directory of yours",
            hint=f"remove it, or `chmod go-w {base}`, or set HOG_BATCH_STATE_DIR",
        )
    return base


class SharedRateLimiter:
    """At most ``requests`` in any ``window_s`` across every process sharing ``path``."""

    def __init__(
        self, path: Path, requests: int | None = None, window_s: float | None = None
    ) -> None:
        default_requests, default_window_s = rate_limit()
        self.path = path
        self.requests = requests or default_requests
        self.window_s = window_s or default_window_s

    @classmethod
    def for_service(cls, service_url: str, identity: str) -> SharedRateLimiter:
        """The limiter of one user (identity) at one service: a file in the per-user state directory."""
        key = hashlib.sha256(f"{service_url}\n{identity}".encode()).hexdigest()[:16]
        return cls(user_state_dir() / f"globus-rate-{key}.json")

    def _locked(self, change):
        """Run ``change(slots) -> result`` on the file's slots, under an exclusive lock; write them back."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as handle:
                try:
                    slots = json.loads(handle.read() or "{}")
                except ValueError:
                    slots = {}
                result = change(slots)
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(slots))
            return result
        finally:
            os.close(fd)  # releases the lock

    def acquire(self) -> str:
        """Wait for a free slot and take it; returns the slot's token for ``release``."""
        token = uuid.uuid4().hex
        while True:

            def take(slots: dict) -> float:
                now = time.time()
                for key, (stamp, done) in list(slots.items()):
                    if (done and stamp <= now - self.window_s) or (
                        not done and stamp <= now - STALE_S
                    ):
                        del slots[key]
                if len(slots) < self.requests:
                    slots[token] = (now, False)
                    return 0.0
                done_stamps = sorted(stamp for stamp, done in slots.values() if done)
                return done_stamps[0] + self.window_s - now if done_stamps else 0.2

            wait_s = self._locked(take)
            if wait_s <= 0:
                return token
            time.sleep(min(max(wait_s, 0.01), 0.5))

    def release(self, token: str) -> None:
        """The request completed now: its slot frees ``window_s`` from now."""

        def stamp(slots: dict) -> None:
            slots[token] = (time.time(), True)

        self._locked(stamp)

    def wait(self) -> float:
        """Take a slot and stamp it at once (a request that completes as it is sent); returns the seconds waited."""
        started = time.monotonic()
        self.release(self.acquire())
        return time.monotonic() - started


__all__ = ["SharedRateLimiter", "rate_limit", "user_state_dir"]
