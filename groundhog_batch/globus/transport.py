"""How a rendered task script reaches an endpoint and runs there, and what it costs in bytes.

A ``ShellFunction`` runs its whole command as one ``bash -c`` argument, which
Linux caps at 128 KiB, and echoes the command back in every result. Instead,
each job registers one small Python function, as source text (the service
stores it with the SDK's ``PureSourceTextInspect``; nothing refers to code on
the submitting machine). Its source holds the job's rendered script around the
payload's place; each task's only argument is its payload. On the worker it
writes ``head + payload + tail`` (byte for byte the script the local backend
runs) into a private directory under the task's working directory, runs
``bash`` on that file with stdin closed, removes the directory, and returns
``{"returncode", "stdout", "stderr"}`` (stderr's tail only).

Sizes are computed here, exactly, so ``plan`` can keep every request under
the service's 10 MB (less a 100 kB margin) and every result under the endpoint's 10 MiB:

- arguments travel as the SDK's ``JSONData`` (``11\\n`` + JSON), packed with
  the SDK's length-prefixed buffer format, inside the JSON request body;
- results come back as the endpoint's default ``DillDataBase64`` (base64 with
  a newline every 76 characters) of the pickled dict.
"""

from __future__ import annotations

import json
import math

from ..render.renderer import PAYLOAD_SENTINEL

FUNCTION_NAME = "hog_batch_task"
REQUEST_LIMIT_BYTES = 10 * 1000 * 1000  # the web service refuses larger submissions
# Kept free under the limit: the service or a proxy in front of it may count it otherwise (headers, encoding).
# A request refused anyway (413) is split; a task refused alone fails its calls with the sizes.
REQUEST_MARGIN_BYTES = 100 * 1000
RESULT_LIMIT_BYTES = (
    10 * 1024 * 1024
)  # globus_compute_endpoint.engines.helper: a larger result fails its task
# A request's own fields beside its tasks: the SDK's user_runtime, the endpoint config, the ids.
REQUEST_FIXED_RESERVE_BYTES = 64 * 1024
STDERR_TAIL_BYTES = 64 * 1024  # what a result carries of the task's stderr
RESULT_FRAMING_BYTES = 4 * 1024  # the pickled dict's keys and opcodes, the serializer's header

FUNCTION_TEMPLATE = '''\
HEAD = {head}
TAIL = {tail}
STDERR_TAIL_BYTES = {stderr_tail}


def {name}(payload, records=None):
    """Run one hog-batch task: its script (HEAD + payload + TAIL) with bash, in a private directory.

    ``records``: {{"file", "secret"}} to stream each call's record to a folder the submitter sees too, when that
    folder is a private directory of this user here; else the result says why not (``records_stream``).
    """
    import os
    import shutil
    import stat
    import subprocess
    import sys
    import tempfile

    parent = os.environ.get("GC_TASK_SANDBOX_DIR") or os.getcwd()
    try:
        work = tempfile.mkdtemp(prefix=".hog-batch-task-", dir=parent)
    except OSError:
        work = tempfile.mkdtemp(prefix="hog-batch-task-")
    env = dict(os.environ, HOG_BATCH_ENDPOINT_PYTHON=sys.executable)  # a Python to install uv with
    env.pop("HOG_BATCH_RECORDS_FILE", None)
    env.pop("HOG_BATCH_RECORDS_SECRET_FD", None)
    env.pop("HOG_BATCH_RECORDS_MAPPED", None)  # this task's file may be read from another machine
    refused, fds = "", ()
    if records:
        folder = os.path.dirname(records["file"])
        try:
            info = os.lstat(folder)
        except OSError as exc:
            refused = "%s cannot be seen from the worker (%s)" % (folder, exc.strerror)
        else:
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                refused = "%s is not a private directory of uid %d on the worker" % (folder, os.getuid())
        if not refused:
            import fcntl

            read_end, write_end = os.pipe()
            os.write(write_end, records["secret"].encode() + b"\\n")
            os.close(write_end)
            secret_fd = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(read_end)
            fds = (secret_fd,)
            env["HOG_BATCH_RECORDS_FILE"] = records["file"]
            env["HOG_BATCH_RECORDS_SECRET_FD"] = str(secret_fd)
    try:
        script = os.path.join(work, "task.sh")
        with open(script, "wb") as handle:
            handle.write((HEAD + payload + TAIL).encode("utf-8"))
        with open(os.path.join(work, "stderr"), "w+b") as stderr:
            done = subprocess.run(["bash", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                  env=env, pass_fds=fds)
            size = stderr.seek(0, 2)
            stderr.seek(max(0, size - STDERR_TAIL_BYTES))
            tail = stderr.read()
        result = {{"returncode": done.returncode, "stdout": done.stdout.decode("utf-8", "replace"),
                  "stderr": tail.decode("utf-8", "replace")}}
        if records:
            result["records_stream"] = refused
        return result
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(work, ignore_errors=True)
'''


def function_source(rendered_with_sentinel: str) -> str:
    """The registered function's source: the job's script split at the payload's place."""
    head, sentinel, tail = rendered_with_sentinel.partition(PAYLOAD_SENTINEL)
    if not sentinel:
        raise ValueError("the rendered script has no payload placeholder")
    return FUNCTION_TEMPLATE.format(
        head=repr(head), tail=repr(tail), stderr_tail=STDERR_TAIL_BYTES, name=FUNCTION_NAME
    )


def arguments(payload: str, records: dict[str, str] | None = None) -> tuple:
    """The task function's positional arguments: its payload, and where to stream its records (when it does)."""
    return (payload, records) if records else (payload,)


def packed_arguments(payload: str, records: dict[str, str] | None = None) -> str:
    """The task's arguments as the SDK sends them: ``JSONData`` of its positional arguments and of ``{}``, packed."""
    buffers = ["11\n" + json.dumps(list(arguments(payload, records))), "11\n" + json.dumps({})]
    return "".join(f"{len(buffer)}\n{buffer}" for buffer in buffers)


def request_bytes(payload: str, records: dict[str, str] | None = None) -> int:
    """What one task adds to a submission's JSON body (its packed arguments, quoted, and the separator).

    A records argument (a path and a secret) is small next to ``REQUEST_FIXED_RESERVE_BYTES``, which
    ``payload_limit_bytes`` keeps free: a task of the largest payload still fits with one.
    """
    return len(json.dumps(packed_arguments(payload, records)).encode()) + 2


def request_bytes_for_size(payload_bytes: int) -> int:
    """``request_bytes`` of a payload of this size (base64 text needs no escaping; its one newline takes 3 bytes)."""
    return request_bytes("A" * max(payload_bytes - 1, 0) + "\n" * min(payload_bytes, 1))


def request_budget_bytes() -> int:
    """What hog-batch puts in one submission: the service's limit less the margin."""
    return REQUEST_LIMIT_BYTES - REQUEST_MARGIN_BYTES


def payload_limit_bytes() -> int:
    """The largest payload one task may carry: a request holding only that task stays within the budget."""
    length_digits = 2 * len(
        str(REQUEST_LIMIT_BYTES)
    )  # the packed buffer's length prefixes grow with the payload
    return (
        request_budget_bytes() - REQUEST_FIXED_RESERVE_BYTES - request_bytes("\n") - length_digits
    )


def result_bytes(pickled_bytes: int) -> int:
    """The size of a result as the endpoint measures it: ``00\\n`` + base64 with a newline per 76 characters."""
    encoded = 4 * math.ceil(pickled_bytes / 3)
    return 3 + encoded + math.ceil(encoded / 76)


def stdout_limit_bytes() -> int:
    """How much a task may print (the records): what is left of the result limit after stderr and framing."""
    low, high = 0, RESULT_LIMIT_BYTES
    while low < high:  # the largest pickle whose encoding fits
        mid = (low + high + 1) // 2
        if result_bytes(mid) <= RESULT_LIMIT_BYTES:
            low = mid
        else:
            high = mid - 1
    return low - STDERR_TAIL_BYTES - RESULT_FRAMING_BYTES


__all__ = [
    "FUNCTION_NAME",
    "arguments",
    "function_source",
    "packed_arguments",
    "payload_limit_bytes",
    "request_budget_bytes",
    "request_bytes",
    "request_bytes_for_size",
    "result_bytes",
    "stdout_limit_bytes",
]
