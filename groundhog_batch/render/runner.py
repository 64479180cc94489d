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

The worker runs one call per go-ahead from the supervisor, which gives it only
once the previous call's record is on disk (``HOG_BATCH_RECORDS_FILE``) and
the submitter still reads the task's stdout: a task whose submitter died stops
after the call it was running, and nothing runs without its record being kept.
The records channel is not inheritable (a background child cannot hold the
task open) and each record carries a secret the supervisor sent the worker, so
bytes the user's code writes to a stray descriptor are not taken as a record;
the call a record belongs to is the supervisor's own count, never the record's.

It must run on any Python from 3.8 on, with nothing installed.
"""

import sys

if __name__ == "__main__" and sys.path and not getattr(sys.flags, "safe_path", False):
    # sys.path[0] is this file's folder, which also holds the user's script: a script named
    # random.py or json.py must not stand in for the standard library module.
    del sys.path[0]

import base64  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

DELIMITER = "__HOG_BATCH_RESULTS_V1__"
READY = b"R"
GO = b"g"
TIMEOUT_GRACE_S = 3.0
WORKER_CHECK_S = 0.25
WORKER_EXIT_GRACE_S = 5.0
STOP_GRACE_S = 1.0  # on SIGTERM, how long the running call may take to finish and be recorded


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


def module_name_for(path):
    """The script's stem, unless that names another module (``random``, ``json``, an installed package).

    The script is imported under this name (so its classes pickle as
    ``stem.Class``); a stem that would stand in for a real module gets
    ``hog_script_<stem>`` instead, and every import of the real one still works.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    if not stem.isidentifier():
        return stem
    if stem in sys.modules or stem in sys.builtin_module_names or importlib.util.find_spec(stem) is not None:
        return "hog_script_" + stem
    return stem


# Import names whose distribution on PyPI is called something else.
DISTRIBUTION_OF = {
    "sklearn": "scikit-learn", "skimage": "scikit-image", "cv2": "opencv-python", "PIL": "pillow",
    "yaml": "pyyaml", "bs4": "beautifulsoup4", "dateutil": "python-dateutil", "Bio": "biopython",
    "attr": "attrs", "jwt": "pyjwt", "serial": "pyserial", "dotenv": "python-dotenv", "docx": "python-docx",
    "Crypto": "pycryptodome", "OpenSSL": "pyopenssl", "mpl_toolkits": "matplotlib", "google": "protobuf",
    "magic": "python-magic", "zmq": "pyzmq", "usb": "pyusb", "git": "gitpython", "fitz": "pymupdf",
}


def describe_error(exc, context=""):
    """``Type: message`` for a call's error; a missing module also says which dependency to declare."""
    try:
        message = str(exc)
    except BaseException:  # its __str__ raises: the call still fails with a record, the worker goes on
        message = "<unprintable %s>" % type(exc).__name__
    text = "%s: %s%s" % (type(exc).__name__, message, context)
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if name:
        top = name.split(".")[0]
        distribution = DISTRIBUTION_OF.get(top, top.replace("_", "-"))
        text += ('; if it is a package, add "%s" to the dependencies in the script\'s "# /// script" block'
                 " (or to the manifest's dependencies:)" % distribution)
    return text


def import_script(path):
    name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Capture:
    """One of the worker's file descriptors (1 or 2), redirected to a temporary file between calls.

    The supervisor made the file (``source``, a descriptor passed to the worker)
    and keeps it open: if the worker dies during a call, what the call printed
    is still there for the failure's record.
    """

    def __init__(self, fd, limit, source=None):
        self.fd, self.limit = fd, limit
        if source is None:
            source = temp_fd()
        os.dup2(source, fd)
        os.close(source)

    def take(self):
        text = read_tail(self.fd, self.limit)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        return text


def temp_fd():
    """A descriptor of a new anonymous temporary file (deleted when its last descriptor closes)."""
    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


def read_tail(fd, limit):
    """The text in the file open at ``fd``, its last ``limit`` bytes (0: all) with a note of what was dropped."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return ""
    os.lseek(fd, max(0, size - limit) if limit else 0, os.SEEK_SET)
    data = b""
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            break
        data += block
    text = data.decode("utf-8", "replace")
    if limit and size > limit:
        text = "[hog-batch: %d earlier bytes dropped]\n" % (size - limit) + text
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


class Channel:
    """The worker's end of the records channel: records framed with the supervisor's secret.

    Both descriptors are made non-inheritable and moved off the numbers the
    supervisor passed, before any user code runs.
    """

    def __init__(self, records_fd, control_fd):
        self.records_fd, self.control_fd = _move_away(records_fd), _move_away(control_fd)
        self.secret = _read_line(self.control_fd)

    def send(self, data):
        write_all(self.records_fd, self.secret + b" " + data + b"\n")

    def wait_for_go(self):
        """True when the supervisor says run the next call; False when it is gone."""
        try:
            return os.read(self.control_fd, 1) == GO
        except OSError:
            return False


def _move_away(fd):
    moved = os.dup(fd)  # os.dup makes a non-inheritable copy
    os.close(fd)
    return moved


def _read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        block = os.read(fd, 1)
        if not block:
            os._exit(0)  # the supervisor is gone before the first call
        data += block
    return data[:-1]


def run_worker(script_path, payload_path, start, channel, out_fd=None, err_fd=None):
    """Import the script and run calls from position ``start``, each when the supervisor says go."""
    payload = read_payload(payload_path, with_body=False)
    out = Capture(1, payload.get("max_output_bytes", 0), out_fd)
    err = Capture(2, payload.get("max_output_bytes", 0), err_fd)
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
    channel.send(READY)
    for position in range(start, len(call_indices)):
        if not channel.wait_for_go():
            os._exit(0)  # the supervisor is gone: start nothing more
        call_index = call_indices[position]
        started = time.time()
        record = {"call": call_index, "ok": False, "kind": None, "value": None, "error": None, "tb": None}
        try:
            if setup_error is not None:
                exc, text = setup_error
                record["error"] = describe_error(exc, " (while loading %s or its arguments)" % os.path.basename(script_path))
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
            record["error"] = describe_error(exc)
            record["tb"] = traceback.format_exc()
        finished = time.time()
        _reopen_streams()
        record["out"], record["err"] = out.take(), err.take()
        record["t0"], record["t1"] = started, finished
        channel.send(json.dumps(record).encode())


def _reopen_streams():
    """Flush sys.stdout and sys.stderr; one the call closed (or replaced by a broken object) is opened again
    on its file descriptor, so the next call still prints and the worker goes on."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        try:
            stream.flush()
            if not stream.closed:
                continue
        except BaseException:
            pass
        setattr(sys, name, open(fd, "w", buffering=1 if name == "stderr" else -1, encoding="utf-8",
                                errors="backslashreplace", closefd=False))


def _death_reason(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return "process killed by signal %d (%s)" % (-returncode, name)
    return "process exited with code %d before the call returned" % returncode


def _synthetic(call_index, error, started, out="", err=""):
    now = time.time()
    return {"call": call_index, "ok": False, "kind": None, "value": None, "error": error, "tb": None,
            "out": out, "err": err, "t0": started, "t1": now, "lost": True}


class SubmitterGone(Exception):
    """Nobody reads the task's stdout any more: the submitter that started it died."""


class Output:
    """The task's stdout, and a copy of every record in HOG_BATCH_RECORDS_FILE when it is set.

    The copy is written first: if the submitter dies and takes stdout with it,
    the records of finished calls are still on disk for ``resume``.
    """

    def __init__(self):
        path = os.environ.get("HOG_BATCH_RECORDS_FILE")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        self.copy_fd = os.open(path, flags, 0o600) if path else None
        self.stdout_fd = sys.stdout.fileno()

    def write(self, data, copy=True):
        if copy and self.copy_fd is not None:
            write_all(self.copy_fd, data)
        try:
            write_all(self.stdout_fd, data)
        except (BrokenPipeError, ConnectionResetError):
            raise SubmitterGone() from None

    def reader_gone(self):
        """True when the read end of stdout is closed (a pipe whose reader died)."""
        try:
            poller = select.poll()
            poller.register(self.stdout_fd, select.POLLOUT)
            return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
        except (AttributeError, OSError, ValueError):
            return False


_current_worker = [None]
_stopping = [0, 0.0]  # the exit status a SIGTERM or SIGINT asked for, and when the running call is killed


def _on_terminate(signum, frame):
    """Stop: no call starts any more; the running one has STOP_GRACE_S to finish and be recorded."""
    if not _stopping[0]:
        _stopping[0], _stopping[1] = 128 + signum, time.time() + STOP_GRACE_S


def _kill_worker():
    worker = _current_worker[0]
    if worker is not None:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except OSError:
            pass


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
    """The task must stop early (walltime, output budget, a signal); ``returncode`` is its exit status."""

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
    state = {"position": 0, "written": 0}

    def emit(line, position):
        if budget and state["written"] + len(line) + 1 > budget:
            stdout.write(b"".join((json.dumps(_deferred(call_index, "output budget of the task spent")) + "\n").encode()
                                  for call_index in calls[position:]))
            raise TaskStop(0)
        stdout.write(line + b"\n")
        state["written"] += len(line) + 1

    try:
        stdout.write((DELIMITER + "\n").encode(), copy=False)
        _supervise_calls(script_path, payload_path, calls, timeout_s, deadline, walltime_s, emit, state, stdout)
        returncode = 0
    except TaskStop as stop:
        returncode = stop.returncode
    except SubmitterGone:
        returncode = 141  # as if killed by SIGPIPE; the records file holds every finished call
    except OSError as exc:  # the records file cannot be written (a full disk): start nothing whose record is lost
        sys.stderr.write("hog-batch runner stopped: %s\n" % exc)
        returncode = 74  # EX_IOERR
    finally:
        _kill_worker()
    return _stopping[0] or returncode


def _go(stdout, control_fd):
    """Let the worker start its next call, if the submitter still listens; the time it started."""
    if _stopping[0]:
        return None
    if stdout.reader_gone():
        raise SubmitterGone()
    try:
        os.write(control_fd, GO)
    except OSError:
        pass  # the worker died: its end of the records channel closes next
    return time.time()


def _supervise_calls(script_path, payload_path, calls, timeout_s, deadline, walltime_s, emit, state, stdout):
    output_limit = read_payload(payload_path, with_body=False).get("max_output_bytes", 0)
    while state["position"] < len(calls) and not _stopping[0]:
        records_r, records_w = os.pipe()
        control_r, control_w = os.pipe()
        captured = [temp_fd(), temp_fd()]  # the worker's stdout and stderr
        secret = base64.b16encode(os.urandom(16))
        worker = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", script_path, payload_path, str(state["position"]),
             str(records_w), str(control_r), str(captured[0]), str(captured[1])],
            pass_fds=(records_w, control_r, *captured), stdin=subprocess.DEVNULL, start_new_session=True,
        )
        _current_worker[0] = worker
        os.close(records_w)
        os.close(control_r)
        if _stopping[0]:
            _kill_worker()
        try:
            write_all(control_w, secret + b"\n")
        except OSError:
            pass
        prefix = secret + b" "
        ready, buffer, call_started, killed_for_timeout, exited = False, b"", None, False, False
        running = False  # a call was given the go and has not reported yet
        while state["position"] < len(calls):
            wait_s = None
            if timeout_s and call_started is not None:
                wait_s = max(0.0, call_started + timeout_s + TIMEOUT_GRACE_S - time.time())
            if deadline is not None:
                wait_s = max(0.0, min(wait_s if wait_s is not None else deadline, deadline - time.time()))
            # A process the call forked (a daemon) may hold the channel open after the worker is gone:
            # look at the worker itself now and then rather than wait for the channel to close.
            limit_s = 0.0 if exited else WORKER_CHECK_S
            limit_s = limit_s if wait_s is None else min(wait_s, limit_s)
            if _stopping[0]:
                if not running or time.time() >= _stopping[1]:
                    _kill_worker()
                    break
                limit_s = min(limit_s, max(0.0, _stopping[1] - time.time()))
            readable, _, _ = select.select([records_r], [], [], limit_s)
            if not readable:
                if exited:
                    break
                if wait_s is not None and wait_s <= limit_s:
                    _kill_worker()
                    if deadline is not None and time.time() >= deadline:
                        _stop_at_walltime(calls, state["position"], call_started, walltime_s, emit)
                    killed_for_timeout = True
                    break
                exited = worker.poll() is not None
                continue
            block = os.read(records_r, 1 << 20)
            if not block:
                break
            buffer += block
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            for line in lines:
                at = line.rfind(prefix)
                if at < 0:
                    continue  # not from the runner: bytes the user's code wrote into the channel
                body = line[at + len(prefix):]
                if not ready:
                    ready = body == READY
                    call_started = _go(stdout, control_w) if ready else None
                    running = call_started is not None
                    continue
                position = state["position"]
                if position >= len(calls) or not body.startswith(b'{"call": %d, ' % calls[position]):
                    continue
                emit(body, position)
                state["position"] = position + 1
                running = False
                if state["position"] < len(calls):
                    call_started = _go(stdout, control_w)
                    running = call_started is not None
        os.close(records_r)
        os.close(control_w)
        try:
            returncode = worker.wait(timeout=WORKER_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:  # done with every call, yet it lingers (a thread that never ends)
            _kill_worker()
            returncode = worker.wait()
        _kill_worker()  # anything the call left behind
        printed = [read_tail(fd, output_limit) for fd in captured]  # by a call that did not report: kept below
        for fd in captured:
            os.close(fd)
        if _stopping[0]:
            raise TaskStop(_stopping[0])
        position = state["position"]
        if position >= len(calls):
            break
        started = call_started or time.time()
        if killed_for_timeout:
            error = "TimeoutError: the call exceeded its timeout of %g s and was killed after %g s more" % (timeout_s, TIMEOUT_GRACE_S)
        elif not ready:
            error = "WorkerDied: the worker died while importing the script: " + _death_reason(returncode)
        else:
            error = "WorkerDied: " + _death_reason(returncode)
        if not ready and not killed_for_timeout:
            for offset, call_index in enumerate(calls[position:]):
                emit(json.dumps(_synthetic(call_index, error, started, *(printed if offset == 0 else ()))).encode(),
                     position + offset)
            break
        emit(json.dumps(_synthetic(calls[position], error, started, *printed)).encode(), position)
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
        script_path, payload_path, start = argv[2], argv[3], int(argv[4])
        channel = Channel(int(argv[5]), int(argv[6]))
        run_worker(script_path, payload_path, start, channel, int(argv[7]), int(argv[8]))
        return 0
    if len(argv) != 3:
        sys.stderr.write("usage: hog_runner.py SCRIPT.py PAYLOAD.b64\n")
        return 2
    return supervise(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
