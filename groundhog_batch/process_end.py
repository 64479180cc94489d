"""The end of a command that ran calls: everything Python does at exit that anybody can see, not the teardown.

After a run, the submitter's heap holds the plan's and the ledger's objects;
freeing them one by one at interpreter exit, then closing SQLite from a
destructor, took 40-60 ms of every ``submit`` (a tenth of a short sweep's
time beyond its calls). ``exit_now`` does what is visible of Python's exit,
in Python's order (``threading``'s exit hooks, every non-daemon thread
joined, the ``atexit`` handlers; then the ledgers closed, which folds the
WAL into ``state.sqlite``, and the streams flushed), and then ends the
process without freeing what the kernel frees anyway.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_now(code: object = 0) -> None:
    """End the process with ``code`` as ``sys.exit(code)`` would, skipping only the interpreter's teardown."""
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown is None or threading.current_thread() is not threading.main_thread():
        raise SystemExit(code)
    status = _status(code)
    try:
        shutdown()  # threading's own exit hooks (a library's executor), then every non-daemon thread joined
        atexit._run_exitfuncs()
        from .ledger import close_all

        close_all()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more reaches it anyway
                pass
        os._exit(status)


def _status(code: object) -> int:
    """The exit status ``SystemExit(code)`` gives: None is 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


__all__ = ["exit_now"]
