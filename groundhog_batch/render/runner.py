"""The hog-batch task runner: standard library only, shipped inside every task script.

Usage (from the task script)::

    python hog_runner.py SCRIPT.py PAYLOAD.b64

It prints a delimiter line, then one JSON record per call, in order, as calls
finish. The calls run in a worker process (a fork of this one) that imports the
script as a module named after its stem (so ``if __name__ == "__main__"``
blocks never run). This supervising process watches it: a call that kills the
worker (``os._exit``, a signal, a segfault) is recorded as failed with that
reason and the calls after it go on in a fresh worker; a call over its timeout
gets a TimeoutError raised inside it and, if it does not return within a short
grace (stuck in C code), its worker is killed.

The worker puts each call's record into the records file
(``HOG_BATCH_RECORDS_FILE``, or an anonymous one) before it starts the next
call, stored through a mapping of the file where only this machine reads it
and appended with one write where another does (``Channel.put``), so nothing
runs without the record of what ran before it being in the file;
it needs nobody's go-ahead, so a call that returns at once costs a few
microseconds. Before each call it looks at its control pipe: the supervisor
says stop there when it is told to (SIGTERM) or when the submitter stops
reading the task's stdout, and the pipe closes if the supervisor dies, so a
task whose submitter died stops after the call it was running. The supervisor
follows the records file and hands each record on to stdout; it decides which
call a record belongs to (its own count, never the record's). Each line of the
file is framed with a secret the worker got on its control pipe, and a line a
kill cut short is marked (``CUT``), so bytes user code writes to a stray
descriptor, or a cut line, are never taken for a record; the worker's
descriptors are not inherited by what the call starts (a background child cannot hold the
task open).

It must run on any Python from 3.8 on, with nothing installed.
"""

import sys

if __name__ == "__main__" and sys.path and not getattr(sys.flags, "safe_path", False):
    # sys.path[0] is this file's folder, which also holds the user's script: a script named
    # random.py or json.py must not stand in for the standard library module.
    del sys.path[0]

import binascii  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

# The supervisor imports only what it needs; the worker (a fork of it) imports pickle, importlib.util
# and traceback when it needs them. A task's start costs what starting one Python costs.

DELIMITER = "__HOG_BATCH_RESULTS_V1__"
READY = b"R"
OVER_BUDGET = b"B"
DISK_FULL = (
    b"F"  # no room in the records file for the next call's record: the worker started no call
)
STARTED = b"S"  # a call starts (sent only when calls have a timeout): "S<position> <Unix seconds>"
STOP = b"s"
NEWS = b"N"  # a record is in the file now: look (sent after a slow call, so its record is handed on at once)
TIMEOUT_GRACE_S = 3.0
WORKER_CHECK_S = 0.25
WORKER_EXIT_GRACE_S = 5.0
STOP_GRACE_S = 1.0  # on SIGTERM, how long the running call may take to finish and be recorded
RECORDS_FULL_EXIT = (
    74  # EX_IOERR: the records file could not take a record (a full disk); no call is lost
)
ROOM_MIN_BYTES = 64 * 1024  # room kept in the records file for the next call's record, at least
DRAIN_REASON = "the batch job's walltime is near (its warning signal came before this call started)"


class CallTimeout(BaseException):
    """Raised inside a call that ran past its timeout (a BaseException: `except Exception` won't eat it)."""


class NotPlain(Exception):
    pass


def to_plain(value):
    """``value`` as JSON-able data, NumPy scalars and arrays as Python numbers and lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return (
            value
            if type(value) in (int, float)
            else (float(value) if isinstance(value, float) else int(value))
        )
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise NotPlain()
        return {key: to_plain(item) for key, item in value.items()}
    if (
        type(value).__module__ == "numpy"
        and getattr(getattr(value, "dtype", None), "kind", "O") in "biufU"
    ):
        return to_plain(value.tolist())
    raise NotPlain()


def encode_result(value, max_bytes):
    """(kind, encoded): JSON-able data as itself, anything else pickled and base64-encoded."""
    try:
        plain = to_plain(
            value
        )  # only JSON types come out, so the record's own json.dumps cannot fail on it
        kind, encoded = "json", plain
        size = len(json.dumps(plain)) if max_bytes else 0
    except (NotPlain, RecursionError):
        try:
            import pickle

            data = pickle.dumps(value, protocol=4)
        except Exception as exc:
            raise TypeError(
                "the result of type %s cannot be serialized: %s: %s"
                % (type(value).__name__, type(exc).__name__, exc)
            ) from None
        kind, encoded, size = (
            "pickle",
            binascii.b2a_base64(data, newline=False).decode("ascii"),
            len(data),
        )
    if max_bytes and size > max_bytes:
        raise ValueError(
            "the result is %d bytes, over the limit of %d bytes; return less, or write it to a file"
            % (size, max_bytes)
        )
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
    import importlib.util

    if (
        stem in sys.modules
        or stem in sys.builtin_module_names
        or importlib.util.find_spec(stem) is not None
    ):
        return "hog_script_" + stem
    return stem


# Import names whose distribution on PyPI is called something else.
DISTRIBUTION_OF = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "Bio": "biopython",
    "attr": "attrs",
    "jwt": "pyjwt",
    "serial": "pyserial",
    "dotenv": "python-dotenv",
    "docx": "python-docx",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyopenssl",
    "mpl_toolkits": "matplotlib",
    "google": "protobuf",
    "magic": "python-magic",
    "zmq": "pyzmq",
    "usb": "pyusb",
    "git": "gitpython",
    "fitz": "pymupdf",
}


def describe_error(exc, context=""):
    """``Type: message`` for a call's error; a missing module also says which dependency to declare."""
    try:
        message = str(exc)
    except (
        BaseException
    ):  # its __str__ raises: the call still fails with a record, the worker goes on
        message = "<unprintable %s>" % type(exc).__name__
    text = "%s: %s%s" % (type(exc).__name__, message, context)
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if name:
        top = name.split(".")[0]
        distribution = DISTRIBUTION_OF.get(top, top.replace("_", "-"))
        text += (
            '; if it is a package, add "%s" to the dependencies in the script\'s "# /// script" block'
            " (or to the manifest's dependencies:)" % distribution
        )
    return text


def import_script(path):
    import importlib.util

    name = module_name_for(path)
    if name == os.path.splitext(os.path.basename(path))[0]:
        # Last on the path (a stem that names a real module was renamed above): a process the script
        # starts with multiprocessing's spawn or forkserver imports the script by this name.
        sys.path.append(os.path.dirname(os.path.abspath(path)))
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
        self.limit = limit
        if source is None:
            source = temp_fd()
        os.dup2(source, fd)
        # Its own descriptor of the file (same offset as ``fd``): a call that closes ``fd`` or points it at
        # a file of its own neither crashes the worker nor gets that file read and truncated.
        self.fd = _move_away(source)

    def take(self):
        if not os.lseek(self.fd, 0, os.SEEK_END):
            return ""  # the call printed nothing here (the usual case): one system call
        text = read_tail(self.fd, self.limit)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        return text


def temp_fd():
    """A descriptor of a new anonymous temporary file in the temp dir (deleted when its last descriptor closes)."""
    flags = getattr(os, "O_TMPFILE", 0)
    if flags:
        try:
            return os.open(
                os.environ.get("TMPDIR") or "/tmp",
                flags | os.O_RDWR | os.O_EXCL | os.O_CLOEXEC,
                0o600,
            )
        except OSError:
            pass  # a file system without O_TMPFILE
    import tempfile

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
        view = view[os.write(fd, view) :]


def _note(text):
    """Say ``text`` on stderr, if it can be said: stderr may be a file on the very disk that is full, and a
    note that cannot be written must not turn a clean stop into a crash."""
    try:
        sys.stderr.flush()
        write_all(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def _on_alarm(signum, frame):
    raise CallTimeout()


def encode_ranges(calls):
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``: call indices, compactly (a payload's header, the ledger's tasks)."""
    if not calls:
        return ""
    if calls[-1] - calls[0] + 1 == len(calls) and calls == list(range(calls[0], calls[-1] + 1)):
        return "%d-%d" % (calls[0], calls[-1])
    parts, start, prev = [], calls[0], calls[0]
    for call in calls[1:]:
        if call != prev + 1:
            parts.append("%d-%d" % (start, prev) if prev > start else str(start))
            start = call
        prev = call
    parts.append("%d-%d" % (start, prev) if prev > start else str(start))
    return ",".join(parts)


def decode_ranges(text):
    """``"0-2,5"`` -> ``[(0, 3), (5, 6)]`` (half-open)."""
    spans = []
    for part in text.split(",") if text else ():
        first, _, last = part.partition("-")
        spans.append((int(first), int(last or first) + 1))
    return spans


def expand_ranges(text):
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``."""
    return [call for start, stop in decode_ranges(text) for call in range(start, stop)]


def read_header(path):
    """The payload file's first line: its base64 JSON header (function, calls, limits); nothing unpickled.

    The header names its calls as ranges (``"0-49999"``); here they become the list of call indices.
    """
    with open(path, "rb") as handle:
        header = json.loads(binascii.a2b_base64(handle.readline()))
    if isinstance(header.get("calls"), str):
        header["calls"] = expand_ranges(header["calls"])
    return header


def read_arguments(path):
    """The payload file's second line: the base64 pickle of the arguments (``args``, ``kwargs``, and the swept
    keyword arguments of each call: ``swept``, a list, or ``grid``, the sweep's axes, expanded here)."""
    import pickle

    with open(path, "rb") as handle:
        handle.readline()
        arguments = pickle.loads(binascii.a2b_base64(handle.read()))
    if "swept" not in arguments:
        arguments["swept"] = expand_grid(arguments["grid"])
    return arguments


def expand_grid(grid):
    """The swept keyword arguments of calls ``first`` .. ``first + n - 1`` of a product of axes, the last axis
    fastest: what planning gives those calls (``call_span.py``), made here rather than carried one by one.

    An axis is ``[name, values]`` (one keyword, a value each) or ``[None, entries]`` (each entry a dict of
    keywords: a zip group, a table's rows). A task of a million calls carries a few short lists.
    """
    axes, first, n = grid["axes"], grid["first"], grid["n"]
    if not axes:
        return [{} for _ in range(n)]
    sizes, total = [len(values) for _, values in axes], 1
    for size in sizes:
        total *= size
    if first < 0 or first + n > total:
        raise ValueError("calls %d to %d are not in a sweep of %d" % (first, first + n - 1, total))
    digits, rest = [], first
    for size in reversed(sizes):
        rest, digit = divmod(rest, size)
        digits.append(digit)
    digits.reverse()
    *outer, (last_name, last_values) = axes
    out = []
    while len(out) < n:
        base = {}
        for position, (name, values) in enumerate(outer):
            if name is None:
                base.update(values[digits[position]])
            else:
                base[name] = values[digits[position]]
        run = last_values[digits[-1] : digits[-1] + n - len(out)]
        if last_name is None:
            for entry in run:
                kwargs = base.copy()
                kwargs.update(entry)
                out.append(kwargs)
        else:
            for value in run:
                kwargs = base.copy()
                kwargs[last_name] = value
                out.append(kwargs)
        digits[-1] = 0
        position = len(outer) - 1
        while position >= 0:
            digits[position] += 1
            if digits[position] < sizes[position]:
                break
            digits[position] = 0
            position -= 1
    return out


class Channel:
    """The worker's ends of its channels to the supervisor.

    Records go to the records file (``put``: stored into a mapped window of it,
    or one write each), framed with the task's secret: a record is in the file
    before the next call starts, and bytes user code writes into the file are
    never taken for one. Short
    messages (ready, a call's start, over budget, news) go through a pipe. The
    supervisor says stop on the control pipe (a read end: user code cannot
    write into it), whose other end also closes if the supervisor dies; it
    also sets ``stop_flag``, a byte of memory shared with the worker, which the
    worker reads before each call at no cost, while it looks at the pipe (a
    system call) only every ``look_every_s`` and after any call of a millisecond
    or more. Every descriptor is made non-inheritable and moved off the number
    the supervisor passed, before any user code runs.
    """

    def __init__(self, messages_fd, control_fd, records_fd, stop_flag=None):
        self.messages_fd, self.control_fd = _move_away(messages_fd), _move_away(control_fd)
        self.records_fd = _move_away(records_fd)
        self.prefix = _read_line(self.control_fd) + b" "
        self.control = select.poll()
        self.control.register(self.control_fd, select.POLLIN)
        # Without a shared flag, the pipe before every call.
        self.stop_flag = stop_flag if stop_flag is not None else b"\0"
        self.look_every_s = CONTROL_LOOK_S if stop_flag is not None else 0.0
        self.end = self.room_to = os.lseek(self.records_fd, 0, os.SEEK_END)
        self.reserve = _space_reserver()
        # The window of the records file mapped for the records (see put), while there is one: ``view`` of
        # bytes base..limit - 1 of the file. Where none can be mapped, ``limit`` stays -1 and each record is
        # one write.
        self.mapper = _file_mapper() if records_mapped() else None
        self.view, self.base, self.limit, self.unmap = None, 0, -1, None
        self.positioned = self.mapper is not None and self._own_description()
        if not self.positioned:
            self.mapper = None

    def room_for(self, n_bytes):
        """Whether ``n_bytes`` more fit in the records file: space is reserved there (not written) ahead of the
        records, so a call starts only when its record will have room, and a full disk stops the task between
        calls instead of losing a record. Where space cannot be reserved, there is always room."""
        if self.end + n_bytes + 64 <= self.room_to:
            return True
        if self.mapper is not None:
            mapped = self.map_window(n_bytes)
            if mapped is not None:
                return mapped
        if not self.positioned:
            self.end = os.lseek(self.records_fd, 0, os.SEEK_END)
        for ahead in (4 * n_bytes, n_bytes):
            try:
                self.reserve(self.records_fd, self.end, ahead + 64)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    continue
                self.reserve, self.room_to = (
                    None,
                    float("inf"),
                )  # the file system cannot reserve: never mind
                return True
            self.room_to = self.end + ahead + 64
            return True
        return False

    def _own_description(self):
        """Make the worker's descriptor of the records file one of its own, positioned far past any record
        (``STRAY_OFFSET``), where it was the supervisor's (appending at the end of the file). A call that
        writes into it by mistake (a stray descriptor) writes there, never among the records nor into the
        window they are stored into; the next window, or the supervisor, cuts those bytes off. It takes its
        own shared lock (``_hold_shared_lock``): the file is not read as final while the worker lives."""
        try:
            fd = os.open("/proc/self/fd/%d" % self.records_fd, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.lseek(fd, STRAY_OFFSET, os.SEEK_SET)
            _hold_shared_lock(fd)
            os.dup2(fd, self.records_fd, inheritable=False)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def map_window(self, n_bytes):
        """Map a new window of the records file, from the end of the records, with room for ``n_bytes`` at
        least: True, or False on a full disk; None where the file cannot be mapped (a ``pwrite`` per record
        then). The window is allocated before it is mapped, so a store into it never meets a full disk, and
        it holds zeros until records fill it. Bytes past the records that are not theirs (stray writes, see
        ``_own_description``) are cut off first."""
        fd = self.records_fd
        mapped_to = max(self.limit, self.end)
        if self.view is not None:
            self.unmap()
            self.view, self.limit = None, -1
        if os.fstat(fd).st_size > mapped_to:
            os.ftruncate(fd, self.end)
        self.room_to = self.end
        for length in (max(MAP_WINDOW_BYTES, 4 * n_bytes), n_bytes + 64):
            try:
                os.posix_fallocate(fd, self.end, length)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    os.ftruncate(fd, self.end)  # what a failed allocation may have added
                    continue
                self.mapper = None
                return None
            mapped = self.mapper(fd, self.end, length)
            if mapped is None:
                # The window allocated, not mapped: no zeros left past the records.
                os.ftruncate(fd, self.end)
                self.mapper = None
                return None
            self.view, self.base, self.unmap = mapped
            self.limit = self.room_to = self.end + length
            return True
        return False

    def put(self, framed):
        """Add a framed record to the records file: stored into the mapped window, else written.

        A store into a shared mapping of the file is in the file once made: the kernel keeps it if the
        worker is killed the next instant, as it keeps a ``write``, and the supervisor reading the file sees
        it, for no system call. A reader takes the file up to its first NUL byte, which no record holds,
        so it reads only bytes already stored, whatever the order they became visible in.
        """
        end = self.end + len(framed)
        if end > self.limit and not (self.mapper is not None and self.map_window(len(framed))):
            # The supervisor's descriptor appends; the worker's own (mapped mode) writes where it is told.
            n = (
                os.pwrite(self.records_fd, framed, self.end)
                if self.positioned
                else os.write(self.records_fd, framed)
            )
            if n != len(framed):
                raise OSError("the records file took only part of a record")
            self.end += len(framed)
            return
        self.view[self.end - self.base : end - self.base] = framed
        self.end = end

    def stopped(self):
        """True when the supervisor said stop, or is gone: start nothing more."""
        return bool(self.stop_flag[0] or self.control.poll(0))

    def tell(self, message):
        write_all(self.messages_fd, self.prefix + message + b"\n")


CUT = b"\x01\n"  # ends a line a killed worker left cut short, and marks it: no record holds the byte (JSON escapes it)
# How much of the records file a worker maps at a time, ahead of its records: the pages it stores into count in
# its resident memory, which a call's max_rss_mib reports, so a small window.
MAP_WINDOW_BYTES = 256 << 10
# Where the worker's descriptor of its records file writes, if a call writes into it.
STRAY_OFFSET = 1 << 40


def records_mapped():
    """Whether this task's worker may write its records through a mapping of the file: when only this
    machine reads the file (a file of the task's own, or one the submitter here reads, which says so with
    ``HOG_BATCH_RECORDS_MAPPED=1``). A file another machine reads over a shared file system gets one
    ``write`` per record: a mapping's stores reach such a machine only when the kernel writes them back.

    Read once, by the supervisor, which takes the variable out of the environment before any call runs:
    a call that submits a sweep of its own (a Slurm job that inherits its environment) never passes it on.
    """
    if _records_mapped[0] is None:
        said = os.environ.pop("HOG_BATCH_RECORDS_MAPPED", None) == "1"
        _records_mapped[0] = said or not os.environ.get("HOG_BATCH_RECORDS_FILE")
    return _records_mapped[0]


_records_mapped = [None]  # records_mapped(), once read


def read_written(fd, offset, mapped):
    """A records file's bytes from ``offset`` on: to its end, or, where a worker maps it (``mapped``), to its
    first NUL byte: past its records, the window it maps holds zeros, and no record holds one."""
    chunks = []
    while True:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            break
        zero = block.find(b"\0") if mapped else -1
        if zero >= 0:
            chunks.append(block[:zero])
            break
        chunks.append(block)
        offset += len(block)
    return b"".join(chunks)


def _file_mapper():
    """``map(fd, offset, length)``: a shared, writable mapping of that part of the file, as (a memoryview of
    its bytes from the page boundary at or before ``offset``, that boundary, a function that unmaps it), or
    None where the mapping fails; None itself where nothing can be mapped. Through libc, not the mmap module,
    which keeps a descriptor of its own: a call that closes every descriptor and opens files of its own could
    get that number, and the worker would close the call's file when it unmaps."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import mmap

        libc = ctypes.CDLL(None, use_errno=True)
        c_mmap, c_munmap = libc.mmap, libc.munmap
        c_mmap.restype = ctypes.c_void_p
        c_mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        c_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        page = mmap.PAGESIZE
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED
    except Exception:
        return None

    def map_file(fd, offset, length):
        base = offset - offset % page
        size = offset + length - base
        address = c_mmap(None, size, prot, flags, fd, base)
        if not address or address == ctypes.c_void_p(-1).value:
            return None
        view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")

        def unmap():
            view.release()
            c_munmap(address, size)

        return view, base, unmap

    return map_file


def frame(prefix, body):
    """A record's line in the records file: ``SECRET BODY``, put whole before the next call. A line a kill cut
    short never ends in a newline of its own: the supervisor ends it with ``CUT``, whose first byte marks it."""
    return prefix + body + b"\n"


def unframe(line, prefix):
    """The record in one line of a records file (without its newline), or None (not ours, or cut short).

    Reads the frame of earlier runners too, ``SECRET LENGTH BODY`` (a run resumed by a newer submitter)."""
    at = line.rfind(prefix)
    if at < 0 or b"\x01" in line:
        return None
    start = at + len(prefix)
    if line[start : start + 1] == b"{":
        return line[start:]
    space = line.find(b" ", start)
    if space < 0:
        return None
    body = line[space + 1 :]
    try:
        return body if int(line[start:space]) == len(body) else None
    except ValueError:
        return None


def clean_records(data, prefix, calls=None, position=0, n=None):
    """The records in ``data`` (lines of a records file) as plain lines, when it is nothing but whole records
    (of ``calls[position:]``, in order, if given); else None: look at each line with ``unframe``. ``n``: the
    lines in ``data``, where the caller has counted them.

    Whole records: every line starts with ``prefix`` and holds it once, and none was cut short (``CUT``); in
    order: the first and last lines name the calls expected there (a worker writes its records in call order).
    """
    if n is None:
        n = data.count(b"\n")
    sep = b"\n" + prefix
    if (
        not n
        or (calls is not None and position + n > len(calls))
        or not data.endswith(b"\n")
        or not data.startswith(prefix)
        or data.count(prefix) != n
        or data.count(sep) != n - 1
        or b"\x01" in data
    ):
        return None
    text = data[len(prefix) :].replace(sep, b"\n")
    if not text.startswith(b"{") or text.count(b"\n{") != n - 1:
        return None  # a line framed as earlier runners framed them (``unframe`` reads those)
    if calls is None:
        return text
    last = text.rfind(b"\n", 0, -1) + 1
    if not (
        text.startswith(b'{"call": %d, ' % calls[position])
        and text.startswith(b'{"call": %d, ' % calls[position + n - 1], last)
    ):
        return None
    return text


def _move_away(fd):
    """A non-inheritable copy of ``fd`` at a high number, and ``fd`` closed.

    High, so that a call which closes every descriptor and opens files of its
    own gets low numbers back, never the runner's: a record then fails to be
    written (the worker dies, the call is reported) rather than landing in the
    user's file.
    """
    moved = None
    try:
        import fcntl
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        floor = max(64, min(soft if soft > 0 else 1024, 4096) - 64)
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    if moved is None:
        moved = os.dup(fd)  # os.dup makes a non-inheritable copy
    os.close(fd)
    return moved


def _space_reserver():
    """``reserve(fd, offset, length)``: fallocate with FALLOC_FL_KEEP_SIZE (Linux), which sets disk space aside
    for the file without changing its contents; it raises OSError (ENOSPC on a full disk, EOPNOTSUPP where the
    file system cannot)."""

    def cannot(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "no fallocate here")

    if not sys.platform.startswith("linux"):
        return cannot
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = getattr(libc, "fallocate64", None) or libc.fallocate
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    except Exception:
        return cannot

    def reserve(fd, offset, length):
        if fallocate(fd, 1, offset, length) != 0:  # 1: FALLOC_FL_KEEP_SIZE
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return reserve


def _read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        block = os.read(fd, 1)
        if not block:
            os._exit(0)  # the supervisor is gone before the first call
        data += block
    return data[:-1]


SLOW_CALL_S = 0.1  # a call at least this long tells the supervisor at once that its record is there
CONTROL_LOOK_S = 0.01  # how often a worker running short calls looks at its control pipe (it reads its flag always)


SUCCESS_LINE = (
    b'{"call": %d, "ok": true, "kind": "json", "value": %s, "t0": %.6f, "t1": %.6f, "cpu_s": %.6f, '
    b'"max_rss_mib": %.1f}'
)


def success_line(call_index, plain_text, started, finished, cpu_s, rss_mib):
    """The record of a call that returned JSON-able data and printed nothing: the common case, made short
    (``SUCCESS_LINE``). A reader takes a missing ``error``, ``tb``, ``out`` or ``err`` for none; times are
    to the microsecond."""
    return SUCCESS_LINE % (call_index, plain_text, started, finished, cpu_s, rss_mib)


def _rss_unit():
    """ru_maxrss per MiB: kilobytes on Linux, bytes on macOS."""
    return 1048576.0 if sys.platform == "darwin" else 1024.0


EXACT_PEAK_S = 0.01  # after a call this long, the worker's peak is reset before each call: its own peak, exactly


def _can_reset_peak():
    """Whether this Linux lets the process reset its peak RSS (``/proc/self/clear_refs``, then VmHWM)."""
    try:
        _reset_peak()
        return _peak_kib() is not None
    except (OSError, ValueError):
        return False


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_kib():
    with open("/proc/self/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return None


def _limit_memory(memory_mib):
    """Each call's memory limit, as the worker's address-space limit: a call over it gets a MemoryError."""
    import resource

    limit = int(memory_mib * 1048576)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


MAX_FILES_LISTED = 200


class CallPlace:
    """Where each call is: its HOG_BATCH_* variables and, with ``workdir: call``, its own directory.

    A variable is set only when its value changes (the run and the job never
    do; the attempt seldom): each set is a ``setenv``, which costs about a
    microsecond and whose string glibc never frees. One changed by a call is
    set again before the next. HOG_BATCH_CALL, new for every call, lives in a
    buffer of this process that the C environment points at (``putenv``: the
    string becomes part of the environment, and changing it changes the
    environment): a call's own code, C code and child processes read it there.
    """

    def __init__(self, context):
        self.attempts = context.get("attempts") or []
        self.base = context.get("workdir")
        # os.environ's own store of encoded names and values (POSIX): a look there costs no encoding.
        data = getattr(os.environ, "_data", None)
        self.data = data if isinstance(data, dict) and os.name == "posix" else None
        self.fixed = {
            "HOG_BATCH_RUN_DIR": context.get("run_dir") or "",
            "HOG_BATCH_JOB": context.get("job") or "",
        }
        self.attempt = None  # the HOG_BATCH_ATTEMPT set last (an int)
        # What this process last put in os.environ's store for the run, the job and the attempt: a call that
        # sets, restores or drops one leaves another object there (or none), which a look by identity sees.
        self.put = None
        self.call = None  # the HOG_BATCH_CALL value set last (bytes)
        self.call_buffer = self.putenv = None
        if self.data is not None and sys.platform.startswith("linux"):
            try:
                import ctypes

                self.putenv = ctypes.CDLL(None).putenv
                self.putenv.argtypes = [ctypes.c_char_p]
                self.call_buffer = ctypes.create_string_buffer(
                    64
                )  # kept as long as the process lives
                _CALL_BUFFERS.append(self.call_buffer)
            except Exception:
                self.call_buffer = self.putenv = None

    def _set_fixed(self, attempt):
        environ = os.environ
        environ.update(self.fixed)
        environ["HOG_BATCH_ATTEMPT"] = str(attempt)
        self.attempt = attempt
        if self.data is not None:
            get = self.data.get
            self.put = (get(b"HOG_BATCH_RUN_DIR"), get(b"HOG_BATCH_JOB"), get(b"HOG_BATCH_ATTEMPT"))

    def enter(self, position, call_index):
        """Set the call's variables; with ``workdir: call``, make its directory and go there. Returns it, or None."""
        attempts = self.attempts
        attempt = attempts[position] if position < len(attempts) else 1
        data, put = self.data, self.put
        if data is None:
            self._set_fixed(attempt)
            os.environ["HOG_BATCH_CALL"] = str(call_index)
        else:
            get = data.get
            if (
                put is None
                or attempt != self.attempt
                or get(b"HOG_BATCH_RUN_DIR") is not put[0]
                or get(b"HOG_BATCH_JOB") is not put[1]
                or get(b"HOG_BATCH_ATTEMPT") is not put[2]
            ):
                self._set_fixed(attempt)
            buffer = self.call_buffer
            if buffer is None:
                os.environ["HOG_BATCH_CALL"] = str(call_index)
            else:
                value = b"%d" % call_index  # a new object: no two-digit bytes is shared
                if call_index < 10:
                    # One-byte bytes are shared: one a call sets may be this very object.
                    value = _OwnValue(value)
                buffer.value = b"HOG_BATCH_CALL=" + value
                if self.call is None or get(b"HOG_BATCH_CALL") is not self.call:
                    # First, or a call set the variable (even to the same value: os.environ holds another
                    # object then, and the C environment a copy) or dropped it: the environment points at
                    # the buffer again.
                    self.putenv(buffer)
                data[b"HOG_BATCH_CALL"] = self.call = value
        if not self.base:
            return None
        call_dir = os.path.join(os.path.expanduser(os.path.expandvars(self.base)), str(call_index))
        os.makedirs(call_dir, exist_ok=True)
        os.chdir(call_dir)
        return call_dir


_CALL_BUFFERS = []  # the environment points into these: never freed


class _OwnValue(bytes):
    """A value the runner put in os.environ: never the same object as one anybody else put there."""


def files_in(call_dir):
    """What a call left in its directory, as paths relative to it (at most MAX_FILES_LISTED)."""
    found = []
    for folder, _, names in os.walk(call_dir):
        for name in names:
            found.append(os.path.relpath(os.path.join(folder, name), call_dir))
            if len(found) > MAX_FILES_LISTED:
                return sorted(found[:MAX_FILES_LISTED]) + ["..."]
    return sorted(found)


def run_worker(script_path, payload_path, payload, start, written, channel, out_fd, err_fd):
    """Import the script and run calls from position ``start`` until done or told to stop.

    ``written``: bytes of the task's stdout already spent; a record that would
    take it past the payload's ``max_stdout_bytes`` is not written, and the
    supervisor defers that call and the rest.
    """
    out = Capture(1, payload.get("max_output_bytes", 0), out_fd)
    err = Capture(2, payload.get("max_output_bytes", 0), err_fd)
    timeout_s = payload.get("timeout_s")
    memory_mib = payload.get("memory_mib")
    max_result_bytes = payload.get("max_result_bytes", 0)
    budget = payload.get("max_stdout_bytes") or 0
    call_indices = payload["calls"]
    context = payload.get(
        "context"
    )  # where each call is: HOG_BATCH_* variables, and its own directory
    if timeout_s:
        signal.signal(signal.SIGALRM, _on_alarm)
    try:
        module = import_script(script_path)  # first: the arguments may be instances of its classes
        function = resolve(module, payload["function"])
        arguments = read_arguments(payload_path)
        swept_kwargs, fixed_args, fixed_kwargs = (
            arguments["swept"],
            arguments["args"],
            arguments["kwargs"],
        )
        setup_error = None
    except BaseException as exc:
        function, setup_error = None, (exc, _format_traceback())
    if memory_mib and setup_error is None:
        _limit_memory(memory_mib)  # after the import: the limit is for the calls
    channel.tell(READY)
    # The loop below runs a million times in a big sweep: what it calls is looked up once, here, and a call
    # that returns at once costs what its record costs: the clock, one getrusage, two lseeks, one store.
    dumps, now, lseek = json.dumps, time.time, os.lseek
    stop_flag, look_every_s, look_at_control = channel.stop_flag, channel.look_every_s, 0.0
    prefix = channel.prefix
    room = ROOM_MIN_BYTES  # what the next record may need (twice the largest yet)
    place = CallPlace(context) if context else None
    forked = _forked
    from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage

    rss_unit = _rss_unit()
    out_fd, err_fd, seek_end, slow_call_s = out.fd, err.fd, os.SEEK_END, SLOW_CALL_S
    success_template = SUCCESS_LINE
    can_reset_peak, exact_peak = _can_reset_peak(), False
    # One reading between calls serves as one call's end and the next one's start. Children (a call's
    # subprocesses) are read only after calls of a millisecond or more: no shorter call starts and waits for one.
    before, children_before = getrusage(RUSAGE_SELF), getrusage(RUSAGE_CHILDREN)
    me = os.getpid()
    for position in range(start, len(call_indices)):
        if stop_flag[0]:
            os._exit(0)
        if channel.end + room + 64 > channel.room_to and not channel.room_for(room):
            channel.tell(DISK_FULL)  # a full disk: no call starts whose record could not be kept
            os._exit(0)
        call_index = call_indices[position]
        if exact_peak:
            _reset_peak()
        started = now()
        if started >= look_at_control:
            # The pipe itself, now and then (every call where there is no shared flag): it also closes when
            # the supervisor dies.
            if channel.stopped():
                os._exit(0)
            look_at_control = started + look_every_s
        if (
            timeout_s
        ):  # the supervisor kills a call stuck past its timeout (in C code, deaf to the alarm)
            channel.tell(STARTED + b"%d %r" % (position, started))
        ok, kind, value, text, error, tb = False, None, None, None, None, None
        call_dir = place.enter(position, call_index) if place is not None else None
        try:
            if setup_error is not None:
                exc, tb = setup_error
                error = describe_error(
                    exc, " (while loading %s or its arguments)" % os.path.basename(script_path)
                )
            else:
                if fixed_kwargs:
                    kwargs = dict(fixed_kwargs)
                    kwargs.update(swept_kwargs[position])
                else:
                    kwargs = swept_kwargs[position]
                if timeout_s:
                    signal.setitimer(signal.ITIMER_REAL, timeout_s)
                try:
                    value = function(*fixed_args, **kwargs)
                finally:
                    if timeout_s:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                if type(value) is int and not max_result_bytes:
                    text = b"%d" % value  # the commonest result, encoded without a look at its type
                else:
                    kind, value = encode_result(value, max_result_bytes)
                ok = True
        except CallTimeout:
            error = "TimeoutError: the call exceeded its timeout of %g s" % timeout_s
            tb = _format_traceback()
        except BaseException as exc:
            if forked[0] or os.getpid() != me:
                _exit_forked(exc)
            over = isinstance(exc, MemoryError) and memory_mib
            error = describe_error(
                exc, " (over the call's memory limit of %g MiB)" % memory_mib if over else ""
            )
            tb = _format_traceback()
        if forked[
            0
        ]:  # a process the call forked came back here (the flag is set in every fork's child)
            _exit_forked(None)
        finished = now()
        after = getrusage(RUSAGE_SELF)
        cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        # The call's own peak (reset before it), or the worker's high-water mark so far (exact for a call that
        # raised it); a child's, if the call waited for one that set a new high.
        rss_mib = _peak_kib() / 1024.0 if exact_peak else after.ru_maxrss / rss_unit
        if finished - started >= 0.001:
            children_after = getrusage(RUSAGE_CHILDREN)
            cpu_s += (
                children_after.ru_utime
                - children_before.ru_utime
                + children_after.ru_stime
                - children_before.ru_stime
            )
            if children_after.ru_maxrss > children_before.ru_maxrss:
                rss_mib = max(rss_mib, children_after.ru_maxrss / rss_unit)
            children_before = children_after
            exact_peak = can_reset_peak and finished - started >= EXACT_PEAK_S
            look_at_control = (
                0.0  # after a call of a millisecond or more, the pipe is looked at before the next
            )
        else:
            exact_peak = False
        before = after
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            streams_open = not (sys.stdout.closed or sys.stderr.closed)
        except BaseException:
            streams_open = False
        if not streams_open:
            _reopen_streams()
        printed = out.take() if lseek(out_fd, 0, seek_end) else ""
        complained = err.take() if lseek(err_fd, 0, seek_end) else ""
        if text is not None and not printed and not complained and call_dir is None:
            # success_line(), inlined: once per call
            line = success_template % (call_index, text, started, finished, cpu_s, rss_mib)
        elif ok and kind == "json" and not printed and not complained and call_dir is None:
            line = success_line(
                call_index, dumps(value).encode(), started, finished, cpu_s, rss_mib
            )
        else:
            if text is not None:
                kind = "json"
            record = {
                "call": call_index,
                "ok": ok,
                "kind": kind,
                "value": value if ok else None,
                "error": error,
                "tb": tb,
            }
            if call_dir is not None:
                record["files"] = files_in(call_dir)
            record["out"], record["err"] = printed, complained
            record["t0"], record["t1"] = started, finished
            record["cpu_s"], record["max_rss_mib"] = round(cpu_s, 6), round(rss_mib, 1)
            line = dumps(record).encode()
        if budget and len(DELIMITER) + len(line) + 2 > budget:
            # Too big for any task (deferred, it would come back for ever): the call fails, with what fits.
            line = dumps(
                {
                    "call": call_index,
                    "ok": False,
                    "kind": None,
                    "value": None,
                    "error": "RecordTooLarge: the call's record is %d bytes, more than a task may report"
                    " (%d bytes); return, print or raise less" % (len(line), budget),
                    "tb": None,
                    "out": printed[-4096:],
                    "err": complained[-4096:],
                    "t0": started,
                    "t1": finished,
                    "cpu_s": cpu_s,
                    "max_rss_mib": rss_mib,
                }
            ).encode()
        if budget and written + len(line) + 1 > budget:
            channel.tell(OVER_BUDGET)
            os._exit(0)
        if len(line) * 2 > room:
            room = len(line) * 2
            if not channel.room_for(
                len(line) + len(prefix) + 24
            ):  # larger than the room kept: what fits of it
                line = dumps(
                    {
                        "call": call_index,
                        "ok": False,
                        "kind": None,
                        "value": None,
                        "error": "DiskFull: the call ran, but its record (%d bytes) did not fit on the full disk"
                        " of the task's records file; what it printed is cut to its end"
                        % len(line),
                        "tb": None,
                        "out": printed[-1024:],
                        "err": complained[-1024:],
                        "t0": started,
                        "t1": finished,
                    }
                ).encode()
        framed = prefix + line + b"\n"  # frame(), inlined: once per call
        at = channel.end
        end = at + len(framed)
        if end <= channel.limit:  # put(), inlined: a store into the mapped window
            channel.view[at - channel.base : end - channel.base] = framed
            channel.end = end
        else:
            channel.put(framed)
        written += len(line) + 1
        if finished - started >= slow_call_s:
            channel.tell(NEWS)


def _exit_forked(exc):
    """A process the call forked came back out of it (``sys.exit`` in the child, or a plain return): it
    ends here, as it would have in a script of its own, and never runs the worker's next calls."""
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def _format_traceback():
    import traceback

    return traceback.format_exc()


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
        setattr(
            sys,
            name,
            open(
                fd,
                "w",
                buffering=1 if name == "stderr" else -1,
                encoding="utf-8",
                errors="backslashreplace",
                closefd=False,
            ),
        )


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
    return {
        "call": call_index,
        "ok": False,
        "kind": None,
        "value": None,
        "error": error,
        "tb": None,
        "out": out,
        "err": err,
        "t0": started,
        "t1": now,
        "lost": True,
    }


class RecordsFull(Exception):
    """The disk of the records file is full: the worker started no call whose record would not fit."""


class SubmitterGone(Exception):
    """Nobody reads the task's stdout any more: the submitter that started it died."""


class Records:
    """The task's records file (HOG_BATCH_RECORDS_FILE, or an anonymous one) and its stdout.

    The worker puts its records into the file; this process appends only the
    ones it makes itself (a call whose worker died, deferred calls), and hands
    every record on to stdout, in order, as it follows the file.
    """

    def __init__(self, prefix):
        self.prefix = prefix
        path = os.environ.get("HOG_BATCH_RECORDS_FILE")
        if path:
            flags = (
                os.O_RDWR
                | os.O_APPEND
                | os.O_CREAT
                | getattr(os, "O_CLOEXEC", 0)
                | getattr(os, "O_NOFOLLOW", 0)
            )
            self.fd = os.open(path, flags, 0o600)
            _hold_shared_lock(self.fd)
        else:
            self.fd = temp_fd()
        self.stdout_fd = sys.stdout.fileno()
        self.offset = os.fstat(self.fd).st_size  # what was read of the file (complete lines only)
        self.mapped = records_mapped()  # the worker's records end at the first NUL (Channel.put)

    def read_new(self):
        """The complete lines appended since the last read."""
        data = read_written(self.fd, self.offset, self.mapped)
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end]

    def seal(self):
        """Once no worker runs: cut off the zeros a mapped worker left unwritten past its records, and end a
        line a killed worker left cut short with ``CUT``, which marks it and skips it. The next record (this
        process's own, or the next worker's) starts a line of its own, right after the records."""
        rest = read_written(self.fd, self.offset, self.mapped)
        end = self.offset + len(rest)
        if os.fstat(self.fd).st_size > end:
            os.ftruncate(self.fd, end)
        if rest:
            if not rest.endswith(b"\n"):
                write_all(self.fd, CUT)
                end += len(CUT)
            self.offset = end

    def write(self, data):
        try:
            write_all(self.stdout_fd, data)
        except (BrokenPipeError, ConnectionResetError):
            raise SubmitterGone() from None

    def write_own(self, body):
        """A record this process made: into the records file first, then to stdout."""
        self.seal()
        write_all(self.fd, frame(self.prefix, body))
        self.offset = os.fstat(self.fd).st_size
        self.write(body + b"\n")


def _hold_shared_lock(fd):
    """A shared lock on the records file, held as long as this process or its worker (which shares this open
    file) lives: ``resume`` takes it exclusively before it reads the file, so no record is still on its way."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except (ImportError, OSError):
        pass


_current_worker = [None]
_current_control = [None]  # the supervisor's end of the running worker's control pipe
_current_flag = [None]  # the running worker's stop flag (memory shared with it), if there is one
_forked = [False]  # in a process a call forked from the worker: never run the worker's next calls
_stopping = [
    0,
    0.0,
]  # the exit status a SIGTERM or SIGINT asked for, and when the running call is killed
_draining = [False]  # SIGUSR1 came: the running call finishes, no call starts after it


def _on_drain(signum, frame):
    """Finish the running call, start no new one (a batch job's warning that its walltime is near).

    Unlike SIGTERM, the running call is given all the time it needs: the
    batch system's own kill at the walltime is the limit. The calls not
    started are reported deferred (they run again, no attempt counted).
    """
    _draining[0] = True
    _tell_stop()


def _on_terminate(signum, frame):
    """Stop: no call starts any more; the running one has STOP_GRACE_S to finish and be recorded."""
    if not _stopping[0]:
        _stopping[0], _stopping[1] = 128 + signum, time.time() + STOP_GRACE_S
    _tell_stop()


def _tell_stop():
    """Tell the running worker to start no more calls."""
    if _current_flag[0] is not None:
        _current_flag[0][0] = 1
    if _current_control[0] is not None:
        try:
            os.write(_current_control[0], STOP)
        except OSError:
            pass


def _kill_worker():
    worker = _current_worker[0]
    if worker is not None:
        worker.kill()


class _Worker:
    """A worker: a fork of this process, in a session of its own, that imports the script and runs the calls.

    A fork costs a millisecond where starting a Python costs tens; the worker
    shares nothing with this process but the descriptors it is given, and it
    never returns into this process's code.
    """

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    @classmethod
    def start(
        cls,
        script_path,
        payload_path,
        payload,
        start,
        written,
        messages_w,
        control_r,
        records_fd,
        captured,
        stop_flag=None,
    ):
        die_with_parent = _prctl_pdeathsig()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        pid = os.fork()
        if pid:
            return cls(pid)
        code = 70  # EX_SOFTWARE: the worker itself failed
        try:
            # SIGTERM/SIGINT sent to every process of the job (Slurm's scancel, a walltime): the supervisor
            # stops the worker (STOP, then SIGKILL after STOP_GRACE_S), so the running call may finish and be
            # recorded. A handler, not SIG_IGN: what the call execs gets the default back.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _ignore_signal)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            if hasattr(signal, "SIGUSR1"):
                signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            if hasattr(
                os, "register_at_fork"
            ):  # a process the call forks (a multiprocessing pool) dies on SIGTERM, and knows it is a fork
                os.register_at_fork(after_in_child=_in_forked_child)
            os.setsid()
            die_with_parent()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            _close_all_but({messages_w, control_r, records_fd, *captured})
            channel = Channel(messages_w, control_r, records_fd, stop_flag)
            run_worker(
                script_path,
                payload_path,
                payload,
                start,
                written,
                channel,
                captured[0],
                captured[1],
            )
            code = 0
            _finish_like_exit()
        except BaseException:
            try:
                _reopen_streams()
                sys.stderr.write(_format_traceback())
                sys.stderr.flush()
            except BaseException:
                pass
        finally:
            os._exit(code)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = (
                    -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )
        return self.returncode

    def wait(self, timeout_s=None):
        """The exit status; None if it still runs after ``timeout_s``."""
        if timeout_s is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = (
                -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            )
            return self.returncode
        deadline = time.time() + timeout_s
        while self.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        return self.returncode

    def kill(self):
        """SIGKILL the worker's whole session (whatever the call started, too)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # it may not lead its session yet
            except OSError:
                pass
        try:
            os.killpg(
                self.pid, signal.SIGKILL
            )  # its group outlives it while a child of it lives: no pid reuse
        except OSError:
            pass


def _ignore_signal(signum, frame):
    pass


def _in_forked_child():
    _forked[0] = True
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _shared_flag():
    """One byte of memory a worker forked after this shares with this process (None where there is no mmap)."""
    try:
        import mmap

        return mmap.mmap(-1, 1)
    except (ImportError, OSError, ValueError):
        return None


def _finish_like_exit():
    """What Python does on a normal exit: wait for the script's non-daemon threads, run its atexit functions."""
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    import atexit

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is not None:
        run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _close_all_but(keep):
    """Close every descriptor from 3 up but those in ``keep`` (what a fresh process would not have)."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = range(3, min(os.sysconf("SC_OPEN_MAX"), 65536))
    for fd in open_fds:
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


_PDEATHSIG = []


def _prctl_pdeathsig():
    """A function that makes the calling process get SIGKILL when its parent dies (Linux; elsewhere it does nothing)."""
    if not _PDEATHSIG:
        action = lambda: None  # noqa: E731
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                prctl = ctypes.CDLL(None, use_errno=True).prctl
                action = lambda: prctl(1, signal.SIGKILL)  # noqa: E731  PR_SET_PDEATHSIG
            except Exception:
                pass
        _PDEATHSIG.append(action)
    return _PDEATHSIG[0]


def _deferred(call_index, reason):
    """A call this task will not report on: the submitter runs it again in another task, with no attempt counted."""
    return {"call": call_index, "deferred": True, "reason": reason}


class TaskStop(Exception):
    """The task must stop early (walltime, output budget, a signal); ``returncode`` is its exit status."""

    def __init__(self, returncode):
        Exception.__init__(self, returncode)
        self.returncode = returncode


def _task_secret():
    """The secret that frames the task's records: the submitter's, or new.

    The submitter passes it on a descriptor (``HOG_BATCH_RECORDS_SECRET_FD``,
    the read end of a pipe holding it), never in the environment: a call can
    read its own and its parents' environment (``/proc/PID/environ``) but not
    a pipe this process has emptied and closed before any user code runs.
    """
    secret = b""
    fd_text = os.environ.pop("HOG_BATCH_RECORDS_SECRET_FD", "")
    if fd_text.isdigit():
        try:
            secret = os.read(int(fd_text), 256).split(b"\n")[0]
        except OSError:
            pass
        try:
            os.close(int(fd_text))
        except OSError:
            pass
    if not secret or not secret.isalnum():
        secret = binascii.hexlify(os.urandom(16)).upper()
    return secret


def supervise(script_path, payload_path):
    """Run every call of the payload through workers; print the records after the delimiter.

    Two task-wide limits come in the payload header: ``walltime_s`` (past it,
    the worker is killed, the running call fails, the rest are deferred, and
    the task exits 124) and ``max_stdout_bytes`` (a record that would not fit
    is deferred with every call after it, so a remote result stays under the
    service's size limit).
    """
    payload = read_header(payload_path)
    records_mapped()  # read, and taken out of the environment, before any call
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGINT, _on_terminate)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _on_drain)
    secret = _task_secret()
    records = Records(secret + b" ")
    task = _Task(script_path, payload_path, payload, secret, records)
    try:
        records.write((DELIMITER + "\n").encode())
        task.written = len(DELIMITER) + 1
        task.run()
        returncode = 0
    except TaskStop as stop:
        returncode = stop.returncode
    except SubmitterGone:
        returncode = 141  # as if killed by SIGPIPE; the records file holds every finished call
    except RecordsFull:
        _note(
            "hog-batch runner stopped: no space left on the device of the task's records file; "
            "every call that ran is recorded, the others did not start\n"
        )
        returncode = RECORDS_FULL_EXIT
    except OSError as exc:  # the records file cannot be written (a full disk): start nothing whose record is lost
        _note("hog-batch runner stopped: %s\n" % exc)
        returncode = RECORDS_FULL_EXIT
    finally:
        _kill_worker()
    return _stopping[0] or returncode


class _Task:
    """The supervisor's state: which call comes next, how much of stdout is spent, the worker running the calls."""

    def __init__(self, script_path, payload_path, payload, secret, records):
        self.script_path, self.payload_path, self.secret, self.records = (
            script_path,
            payload_path,
            secret,
            records,
        )
        self.prefix = secret + b" "
        self.payload = (
            payload  # the header; a worker (a fork) has it already and reads only the arguments
        )
        self.calls = payload["calls"]
        self.timeout_s = payload.get("timeout_s")
        self.walltime_s = payload.get("walltime_s")
        self.deadline = time.time() + self.walltime_s if self.walltime_s else None
        self.output_limit = payload.get("max_output_bytes", 0)
        self.budget = payload.get("max_stdout_bytes") or 0
        self.position = 0  # the next call to report on
        self.written = 0  # bytes of stdout spent
        self.reader_gone = False
        self.last_finished = (
            None  # the last record handed on (the next call started when it finished)
        )

    def emit_own(self, record):
        line = json.dumps(record).encode()
        if (
            self.budget
            and self.written + len(line) + 1 > self.budget
            and not record.get("deferred")
        ):
            self.defer_rest("output budget of the task spent")
            raise TaskStop(0)
        self.records.write_own(line)
        self.written += len(line) + 1
        self.position += 1

    def defer_rest(self, reason):
        for call_index in self.calls[self.position :]:
            self.emit_own(_deferred(call_index, reason))

    def take_records(self):
        """Hand on, in order, the worker's records that reached the records file since the last look."""
        data = self.records.read_new()
        if not data:
            return False
        text = self.clean_run(data)
        if text is None:
            out = []
            calls, prefix = self.calls, self.prefix
            for line in data.split(b"\n")[:-1]:
                body = unframe(line, prefix)
                position = self.position
                if (
                    body is None
                    or position >= len(calls)
                    or not body.startswith(b'{"call": %d, ' % calls[position])
                ):
                    continue  # not the runner's (bytes user code wrote into the file), or cut short by a kill
                out.append(body + b"\n")
                self.position = position + 1
            text = b"".join(out)
        if not text:
            return False
        self.last_finished = text[text.rfind(b"\n", 0, -1) + 1 : -1]
        if not self.reader_gone:
            try:
                self.records.write(text)
            except SubmitterGone:
                self.reader_left()
            self.written += len(text)
        return True

    def clean_run(self, data):
        """The records in ``data`` at one go, as plain lines, when it is nothing but whole records of the next
        calls, in order (the usual case); None otherwise, and the caller looks at each line.

        Every line starts with the frame's prefix (the task's secret, which no call knows) and holds it once,
        and no line was cut short (``CUT``), so every line is one the worker wrote whole, with one ``write``,
        in call order; the first and last name the calls expected there. Counted and cut in C, a few passes
        over the block: no object per record.
        """
        n = data.count(b"\n")
        text = clean_records(data, self.prefix, self.calls, self.position, n)
        if text is not None:
            self.position += n
        return text

    def reader_left(self):
        self.reader_gone = True
        _tell_stop()  # the call running now is the last: its record reaches the records file

    def run(self):
        while self.position < len(self.calls) and not _stopping[0]:
            if _draining[0]:
                self.defer_rest(DRAIN_REASON)
                return
            self.run_worker()

    def run_worker(self):
        """One worker, from the current position until it is done, stops or dies; then what it left unsaid."""
        self.records.seal()  # its records start right after the last one's
        messages_r, messages_w = os.pipe()
        control_r, control_w = os.pipe()
        captured = [temp_fd(), temp_fd()]  # the worker's stdout and stderr
        flag = _shared_flag()
        worker = _Worker.start(
            self.script_path,
            self.payload_path,
            self.payload,
            self.position,
            self.written,
            messages_w,
            control_r,
            self.records.fd,
            captured,
            flag,
        )
        _current_worker[0] = worker
        os.close(messages_w)
        os.close(control_r)
        try:
            write_all(control_w, self.secret + b"\n")
        except OSError:
            pass
        _current_control[0], _current_flag[0] = control_w, flag
        if _stopping[0] or self.reader_gone or _draining[0]:
            _tell_stop()
        watch = _Watch(self, worker, messages_r)
        try:
            watch.follow()
        finally:
            _current_control[0] = _current_flag[0] = None
            os.close(control_w)
            os.close(messages_r)
        returncode = worker.wait(WORKER_EXIT_GRACE_S)
        if returncode is None:  # done with every call, yet it lingers (a thread that never ends)
            _kill_worker()
            returncode = worker.wait()
        _kill_worker()  # anything the call left behind
        printed = [
            read_tail(fd, self.output_limit) for fd in captured
        ]  # by a call that did not report: kept below
        for fd in captured:
            os.close(fd)
        self.take_records()
        if self.reader_gone:
            raise SubmitterGone()
        if _stopping[0]:
            raise TaskStop(_stopping[0])
        if _draining[0] and self.position < len(self.calls) and watch.ready and returncode == 0:
            self.defer_rest(DRAIN_REASON)
            return
        if watch.over_budget:
            self.defer_rest("output budget of the task spent")
            raise TaskStop(0)
        if watch.disk_full:
            raise RecordsFull()
        if self.position >= len(self.calls):
            return
        started = watch.started_of(self.position)
        if watch.killed_at_walltime:
            error = (
                "TimeoutError: the task ran past its walltime of %g s while this call ran"
                % self.walltime_s
            )
            self.emit_own(_synthetic(self.calls[self.position], error, started))
            self.defer_rest("the task ran past its walltime")
            raise TaskStop(124)
        if watch.killed_for_timeout:
            error = (
                "TimeoutError: the call exceeded its timeout of %g s and was killed after %g s more"
                % (self.timeout_s, TIMEOUT_GRACE_S)
            )
        elif not watch.ready:
            error = "WorkerDied: the worker died while importing the script: " + _death_reason(
                returncode
            )
        else:
            error = "WorkerDied: " + _death_reason(returncode)
        self.emit_own(_synthetic(self.calls[self.position], error, started, *printed))
        if not watch.ready:
            while self.position < len(self.calls):
                self.emit_own(_synthetic(self.calls[self.position], error, started))


TAIL_MIN_S = 0.05  # how often the supervisor looks at the records file while records come in; idle, up to WORKER_CHECK_S


class _Watch:
    """Follow one worker: its messages, its records as they reach the file, its time limits."""

    def __init__(self, task, worker, messages_r):
        self.task, self.worker, self.messages_r = task, worker, messages_r
        self.ready = self.over_budget = self.disk_full = self.killed_for_timeout = (
            self.killed_at_walltime
        ) = False
        self.ready_at = time.time()
        self.running, self.running_since = (
            -1,
            None,
        )  # the call the worker said it started (calls with a timeout)

    def started_of(self, position):
        """When the call at ``position`` started, as well as this process knows."""
        if self.running == position and self.running_since is not None:
            return self.running_since
        last = self.task.last_finished
        if last is not None:
            try:
                return max(
                    float(json.loads(last)["t1"]), self.ready_at
                )  # the last record may be another worker's
            except (ValueError, KeyError, TypeError):
                pass
        return self.ready_at

    def follow(self):
        task = self.task
        poller = select.poll()
        poller.register(self.messages_r, select.POLLIN)
        stdout_fd = task.records.stdout_fd
        if not task.reader_gone:
            poller.register(
                stdout_fd, 0
            )  # only its errors: the reader of the task's stdout went away
        buffer, exited, tail_s = b"", False, TAIL_MIN_S
        while True:
            limit_s = 0.0 if exited else tail_s
            now = time.time()
            timeout_at = None
            if task.timeout_s and self.running >= task.position and self.running_since is not None:
                timeout_at = self.running_since + task.timeout_s + TIMEOUT_GRACE_S
                limit_s = min(limit_s, max(0.0, timeout_at - now))
            if task.deadline is not None:
                limit_s = min(limit_s, max(0.0, task.deadline - now))
            if _stopping[0]:
                limit_s = min(limit_s, max(0.0, _stopping[1] - now))
            events = poller.poll(limit_s * 1000)
            tail_s = TAIL_MIN_S if task.take_records() else min(tail_s * 2, WORKER_CHECK_S)
            if task.position >= len(task.calls):
                return  # every call reported: the worker has WORKER_EXIT_GRACE_S to exit (a thread may never end)
            if not events:
                if exited:
                    return
                now = time.time()
                if _stopping[0] and now >= _stopping[1]:
                    _kill_worker()
                    exited = True
                elif task.deadline is not None and now >= task.deadline:
                    _kill_worker()
                    self.killed_at_walltime = exited = True
                elif timeout_at is not None and now >= timeout_at:
                    _kill_worker()
                    self.killed_for_timeout = exited = True
                elif tail_s >= WORKER_CHECK_S:
                    # A process the call forked (a daemon) may hold the pipe open after the worker is gone:
                    # look at the worker itself now and then rather than wait for the pipe to close.
                    exited = self.worker.poll() is not None
                continue
            for fd, _flags in events:
                if fd == stdout_fd:
                    poller.unregister(stdout_fd)
                    task.reader_left()
                    continue
                block = os.read(self.messages_r, 1 << 16)
                if not block:
                    return
                buffer = self.take_messages(buffer + block)

    def take_messages(self, data):
        lines = data.split(b"\n")
        rest = lines.pop()
        prefix = self.task.prefix
        for line in lines:
            at = line.rfind(prefix)
            if at < 0:
                continue  # not from the runner: bytes the user's code wrote into the pipe
            body = line[at + len(prefix) :]
            if not self.ready:
                self.ready = body == READY
                self.ready_at = time.time()
            elif body.startswith(STARTED):
                try:
                    position, started = body[len(STARTED) :].split(b" ")
                    self.running, self.running_since = int(position), float(started)
                except ValueError:
                    pass
            elif body == OVER_BUDGET:
                self.over_budget = True
            elif body == DISK_FULL:
                self.disk_full = True
        return rest


def keep_compiled(source_path, compiled_path):
    """This runner's bytecode at ``compiled_path`` (the task script passes a file in the environment, which is
    private to you and checked): the next tasks there run it without compiling these lines again. Written
    elsewhere and renamed (py_compile does), so no task runs half a file; a failure only costs the next
    task the compile."""
    if os.path.exists(compiled_path) or not os.access(os.path.dirname(compiled_path), os.W_OK):
        return  # kept already, or nowhere to keep it (a read-only cache): never compiled twice for nothing
    try:
        import py_compile

        # dfile: tracebacks name the runner, not the temporary folder of the task that compiled it
        py_compile.compile(source_path, cfile=compiled_path, dfile="hog_runner.py", doraise=True)
    except Exception:
        pass


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write("usage: hog_runner.py SCRIPT.py PAYLOAD.b64 [RUNNER.pyc to write]\n")
        return 2
    returncode = supervise(argv[1], argv[2])
    if len(argv) == 4 and returncode == 0:  # after the last record: the calls never wait for it
        keep_compiled(argv[0], argv[3])
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
