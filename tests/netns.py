"""A private network namespace whose loopback only this test's processes use (root only).

Why: the endpoint daemon's Compute client takes its URL from
``GLOBUS_SDK_ENVIRONMENT`` alone (globus_compute_sdk's
``get_web_service_url``: ``local`` is ``http://localhost:5000``; the
``GLOBUS_SDK_SERVICE_URL_COMPUTE`` override is not read there). In a namespace
of its own, port 5000 is ours whatever runs on the machine or in another
worktree.

How: ``unshare --net sleep`` holds the namespace, ``ip link set lo up`` wakes
its loopback, and one thread of this process joins it with ``setns(2)``
(a network namespace is per thread). ``call(fn)`` runs ``fn`` in that thread:
sockets it opens, threads it starts and processes it spawns are in the
namespace; the rest of the test process is not.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000


def available() -> str | None:
    """None when a private network namespace can be made here, else why not."""
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed (util-linux, iproute2)"
    if os.geteuid() != 0:
        return "a private network namespace needs root"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


class NetNamespace:
    def __init__(self) -> None:
        self._holder = subprocess.Popen(
            ["unshare", "--net", "sleep", "86400"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.path = f"/proc/{self._holder.pid}/ns/net"
        for _ in range(100):  # unshare has made the namespace once its net link differs from ours
            if os.path.exists(self.path) and os.readlink(self.path) != os.readlink(
                "/proc/self/ns/net"
            ):
                break
            subprocess.run(["sleep", "0.05"])
        subprocess.run(
            ["nsenter", f"--net={self.path}", "ip", "link", "set", "lo", "up"], check=True
        )
        self._thread = ThreadPoolExecutor(max_workers=1, initializer=self._join)
        self._thread.submit(lambda: None).result()

    def _join(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test's network namespace failed")
        finally:
            os.close(fd)

    def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run in the namespace (blocking)."""
        return self._thread.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        self._holder.kill()
        self._holder.wait()
