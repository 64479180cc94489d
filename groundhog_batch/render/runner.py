"""The hog-batch task runner: standard library only, shipped inside every task script.

Usage (from the task script)::

    python hog_runner.py SCRIPT.py PAYLOAD.b64

It prints a delimiter line, then one JSON record per call, in order, as each
call finishes. The calls run in a worker process that imports the script as a
module named after its stem (so ``if __name__ == "__main__"`` blocks never
run). This supervising process watches it: a call that kills the worker
(``os._exit``, a signal, a segfault) is recorded as failed with that reason
and the calls after it go on in a fresh worker; a call over its timeout gets a
TimeoutError raised inside it and, if it does not return within a short grace
(stuck in C code), its worker is killed.

It must run on any Python from 3.8 on, with nothing installed.
"""

import base64
import importlib.util
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback

DELIMITER = "__HOG_BATCH_RESULTS_V1__"
READY = b"R\n"
TIMEOUT_GRACE_S = 3.0


class CallTimeout(BaseException):
    """Raised inside a call that ran past its timeout (a BaseException: `except Exception` won't eat it)."""


class NotPlain(Exception):
    pass


def to_plain(value):
    """``value`` as JSON-able data, NumPy scalars and arrays as Python numbers and lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if type(value) in (int, float) else (float(value) if isinstance(value, float) else int(value))
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise NotPlain()
        return {key: to_plain(item) for key, item in value.items()}
    if type(value).__module__ == "numpy" and getattr(getattr(value, "dtype", None), "kind", "O") in "biufU":
        return to_plain(value.tolist())
    raise NotPlain()


def encode_result(value, max_bytes):
    """(kind, encoded): JSON-able data as itself, anything else pickled and base64-encoded."""
    try:
        plain = to_plain(value)  # only JSON types come out, so the record's own json.dumps cannot fail on it
        kind, encoded = "json", plain
        size = len(json.dumps(plain)) if max_bytes else 0
    except (NotPlain, RecursionError):
        try:
            data = pickle.dumps(value, protocol=4)
        except Exception as exc:
            raise TypeError("the result of type %s cannot be serialized: %s: %s"
                            % (type(value).__name__, type(exc).__name__, exc)) from None
        kind, encoded, size = "pickle", base64.b64encode(data).decode("ascii"), len(data)
    if max_bytes and size > max_bytes:
        raise ValueError("the result is %d bytes, over the limit of %d bytes; return less, or write it to a file"
                         % (size, max_bytes))
    return kind, encoded


def resolve(module, attribute_path):
    """Find ``name`` or ``Class.method``; a plain method is bound to an instance made with no arguments."""
    target = module
    parent = None
    for part in attribute_path.split("."):
        parent, target = target, getattr(target, part)
    if isinstance(parent, type):
        raw = parent.__dict__.get(attribute_path.rsplit(".", 1)[-1])
        if raw is not None and not isinstance(raw, (staticmethod, classmethod)) and callable(raw):
            target = getattr(parent(), attribute_path.rsplit(".", 1)[-1])
    return target


def import_script(path):
    name = os.path.splitext(os.path.basename(path))[0]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Capture:
    """One of the worker's file descriptors (1 or 2), redirected to a temporary file between calls."""

    def __init__(self, fd, limit):
        self.fd, self.limit = fd, limit
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), fd)

    def take(self):
        size = os.lseek(self.fd, 0, os.SEEK_END)
        if size == 0:
            return ""
        os.lseek(self.fd, max(0, size - self.limit) if self.limit else 0, os.SEEK_SET)
        data = b""
        while True:
            block = os.read(self.fd, 1 << 20)
            if not block:
                break
            data += block
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = data.decode("utf-8", "replace")
        if self.limit and size > self.limit:
            text = "[hog-batch: %d earlier bytes dropped]\n" % (size - self.limit) + text
        return text


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _on_alarm(signum, frame):
    raise CallTimeout()


def read_payload(path, with_body):
    """The payload file: a base64 JSON header line, then a base64 pickle of the arguments."""
    with open(path, "rb") as handle:
        header_line = handle.readline()
        header = json.loads(base64.b64decode(header_line))
        if with_body:
            header.update(pickle.loads(base64.b64decode(handle.read())))
    return header


def run_worker(script_path, payload_path, start, channel_fd):
    """Import the script and run calls from position ``start``; one record per call on ``channel_fd``."""
    payload = read_payload(payload_path, with_body=False)
    out = Capture(1, payload.get("max_output_bytes", 0))
    err = Capture(2, payload.get("max_output_bytes", 0))
    timeout_s = payload.get("timeout_s")
    max_result_bytes = payload.get("max_result_bytes", 0)
    call_indices = payload["calls"]
    if timeout_s:
        signal.signal(signal.SIGALRM, _on_alarm)
    try:
        module = import_script(script_path)  # first: the arguments may be instances of its classes
        function = resolve(module, payload["function"])
        payload = read_payload(payload_path, with_body=True)
        swept_kwargs, fixed_args, fixed_kwargs = payload["swept"], payload["args"], payload["kwargs"]
        setup_error = None
    except BaseException as exc:
        function, setup_error = None, (exc, traceback.format_exc())
    write_all(channel_fd, READY)
    for position in range(start, len(call_indices)):
        call_index = call_indices[position]
        started = time.time()
        record = {"call": call_index, "ok": False, "kind": None, "value": None, "error": None, "tb": None}
        try:
            if setup_error is not None:
                exc, text = setup_error
                record["error"] = "%s: %s (while loading %s or its arguments)" % (type(exc).__name__, exc, os.path.basename(script_path))
                record["tb"] = text
            else:
                kwargs = dict(fixed_kwargs)
                kwargs.update(swept_kwargs[position])
                if timeout_s:
                    signal.setitimer(signal.ITIMER_REAL, timeout_s)
                try:
                    value = function(*fixed_args, **kwargs)
                finally:
                    if timeout_s:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                record["kind"], record["value"] = encode_result(value, max_result_bytes)
                record["ok"] = True
        except CallTimeout:
            record["error"] = "TimeoutError: the call exceeded its timeout of %g s" % timeout_s
            record["tb"] = traceback.format_exc()
        except BaseException as exc:
            record["error"] = "%s: %s" % (type(exc).__name__, exc)
            record["tb"] = traceback.format_exc()
        finished = time.time()
        sys.stdout.flush()
        sys.stderr.flush()
        record["out"], record["err"] = out.take(), err.take()
        record["t0"], record["t1"] = started, finished
        write_all(channel_fd, (json.dumps(record) + "\n").encode())


def _death_reason(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return "process killed by signal %d (%s)" % (-returncode, name)
    return "process exited with code %d before the call returned" % returncode


def _synthetic(call_index, error, started):
    now = time.time()
    return {"call": call_index, "ok": False, "kind": None, "value": None, "error": error, "tb": None,
            "out": "", "err": "", "t0": started, "t1": now, "lost": True}


class Output:
    """The task's stdout, and a copy of every record in HOG_BATCH_RECORDS_FILE when it is set.

    The copy is written first: if the submitter dies and takes stdout with it,
    the records of finished calls are still on disk for ``resume``.
    """

    def __init__(self):
        self.stdout = sys.stdout.buffer
        path = os.environ.get("HOG_BATCH_RECORDS_FILE")
        self.copy = open(path, "ab") if path else None

    def write(self, data):
        if self.copy is not None:
            self.copy.write(data)
            self.copy.flush()
        self.stdout.write(data)

    def flush(self):
        self.stdout.flush()


_current_worker = [None]


def _on_terminate(signum, frame):
    worker = _current_worker[0]
    if worker is not None:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(128 + signum)


def _die_with_parent():
    """Linux: the worker gets SIGKILL when its supervisor dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _deferred(call_index, reason):
    """A call this task will not report on: the submitter runs it again in another task, with no attempt counted."""
    return {"call": call_index, "deferred": True, "reason": reason}


class TaskStop(Exception):
    """The task must stop early (walltime, output budget); ``returncode`` is its exit status."""

    def __init__(self, returncode):
        Exception.__init__(self, returncode)
        self.returncode = returncode


def supervise(script_path, payload_path):
    """Run every call of the payload through workers; print the records after the delimiter.

    Two task-wide limits come in the payload header: ``walltime_s`` (past it,
    the worker is killed, the running call fails, the rest are deferred, and
    the task exits 124) and ``max_stdout_bytes`` (a record that would not fit
    is deferred with every call after it, so a remote result stays under the
    service's size limit).
    """
    payload = read_payload(payload_path, with_body=False)
    calls = payload["calls"]
    timeout_s = payload.get("timeout_s")
    walltime_s = payload.get("walltime_s")
    deadline = time.time() + walltime_s if walltime_s else None
    budget = payload.get("max_stdout_bytes") or 0
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGINT, _on_terminate)
    stdout = Output()
    stdout.stdout.write((DELIMITER + "\n").encode())
    stdout.flush()
    state = {"position": 0, "written": 0}

    def emit(line, position):
        if budget and state["written"] + len(line) + 1 > budget:
            for call_index in calls[position:]:
                stdout.write((json.dumps(_deferred(call_index, "output budget of the task spent")) + "\n").encode())
            stdout.flush()
            raise TaskStop(0)
        stdout.write(line + b"\n")
        state["written"] += len(line) + 1

    try:
        _supervise_calls(script_path, payload_path, calls, timeout_s, deadline, walltime_s, emit, state, stdout)
    except TaskStop as stop:
        worker = _current_worker[0]
        if worker is not None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        stdout.flush()
        return stop.returncode
    return 0


def _supervise_calls(script_path, payload_path, calls, timeout_s, deadline, walltime_s, emit, state, stdout):
    while state["position"] < len(calls):
        read_fd, write_fd = os.pipe()
        worker = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", script_path, payload_path, str(state["position"]), str(write_fd)],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, start_new_session=True,
        )
        _current_worker[0] = worker
        os.close(write_fd)
        ready, buffer, call_started, killed_for_timeout = False, b"", None, False
        while True:
            wait_s = None
            if timeout_s and call_started is not None:
                wait_s = max(0.0, call_started + timeout_s + TIMEOUT_GRACE_S - time.time())
            if deadline is not None:
                wait_s = max(0.0, min(wait_s if wait_s is not None else deadline, deadline - time.time()))
            readable, _, _ = select.select([read_fd], [], [], wait_s)
            if not readable:
                os.killpg(worker.pid, signal.SIGKILL)
                if deadline is not None and time.time() >= deadline:
                    _stop_at_walltime(calls, state["position"], call_started, walltime_s, emit)
                killed_for_timeout = True
                break
            block = os.read(read_fd, 1 << 20)
            if not block:
                break
            buffer += block
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            for line in lines:
                if not ready and line + b"\n" == READY:
                    ready = True
                    call_started = time.time()
                    continue
                emit(line, state["position"])
                state["position"] += 1
                call_started = time.time()
            stdout.flush()
        os.close(read_fd)
        returncode = worker.wait()
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # anything the call left behind
        except (ProcessLookupError, PermissionError):
            pass
        position = state["position"]
        if position >= len(calls):
            break
        started = call_started or time.time()
        if killed_for_timeout:
            error = "TimeoutError: the call exceeded its timeout of %g s and was killed after %g s more" % (timeout_s, TIMEOUT_GRACE_S)
        elif not ready:
            error = "the worker died while importing the script: " + _death_reason(returncode)
        else:
            error = _death_reason(returncode)
        if not ready and not killed_for_timeout:
            for offset, call_index in enumerate(calls[position:]):
                emit(json.dumps(_synthetic(call_index, error, started)).encode(), position + offset)
            stdout.flush()
            break
        emit(json.dumps(_synthetic(calls[position], error, started)).encode(), position)
        stdout.flush()
        state["position"] += 1


def _stop_at_walltime(calls, position, call_started, walltime_s, emit):
    """The task's walltime is up: the running call fails, the others are deferred, the task exits 124."""
    error = "TimeoutError: the task ran past its walltime of %g s while this call ran" % walltime_s
    emit(json.dumps(_synthetic(calls[position], error, call_started or time.time())).encode(), position)
    for offset, call_index in enumerate(calls[position + 1:]):
        emit(json.dumps(_deferred(call_index, "the task ran past its walltime")).encode(), position + 1 + offset)
    raise TaskStop(124)


def main(argv):
    if len(argv) >= 2 and argv[1] == "--worker":
        _die_with_parent()
        script_path, payload_path, start, channel_fd = argv[2], argv[3], int(argv[4]), int(argv[5])
        run_worker(script_path, payload_path, start, channel_fd)
        return 0
    if len(argv) != 3:
        sys.stderr.write("usage: hog_runner.py SCRIPT.py PAYLOAD.b64\n")
        return 2
    return supervise(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
