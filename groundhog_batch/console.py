"""What a person sees: text other programs produced, made safe to show; and the progress display.

**Safe text.** Errors, printed output, parameter values and run names come
from user code and file names. Shown raw, their control characters would
drive the terminal: OSC 52 writes the clipboard, CSI sequences move the
cursor or clear the screen, a bare carriage return overwrites what a line
said, bidirectional overrides reorder it. ``safe_text`` is the one function
that neutralises them; the CLI writes everything through ``SafeStream``
(``install``), so no command can forget it. Only ``logs --raw`` to a pipe or
a file gets the bytes as they were printed (``write_exact``), and so does
``plan --render``, whose script must be the one that runs.

**Progress.** The same display serves a run this process drives and a run it
only follows (another process holds the lock): both feed it the ledger's
counts. Without a terminal (a batch job, CI, ``nohup``, a detached
submitter's ``submitter.log``) it writes one line every
``HOG_BATCH_PROGRESS_S`` seconds (default 30) with counts, rate and ETA.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from enum import Enum

from .type_names import TYPE_CHECKING, BinaryIO, TextIO

if (
    TYPE_CHECKING
):  # the progress display imports them when a run is shown: validate and --help never do
    from .ledger import Ledger
    from .run_view import Progress

DEFAULT_LINE_INTERVAL_S = 30.0

# Every C0 control but tab and newline, DEL, C1 controls (8-bit CSI and OSC among them), the
# bidirectional marks, overrides and isolates, and lone surrogates (undecodable bytes).
_UNSAFE_TEXT = (
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# In ASCII text only those below 0x80 can occur. This pattern compiles at once; the whole one is compiled on
# the first text that is not ASCII (its Unicode ranges take re half a millisecond of every start).
_UNSAFE_ASCII = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_unsafe: re.Pattern | None = None


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` with every character that could drive a terminal shown as an escape (``\\x1b``, ``\\r``).

    Tabs and newlines stay (a Windows line end becomes a newline); everything else is printed as is.
    """
    global _unsafe
    text = text.replace("\r\n", "\n")
    if text.isascii():
        return _UNSAFE_ASCII.sub(_escaped, text)
    if _unsafe is None:
        _unsafe = re.compile(_UNSAFE_TEXT)
    return _unsafe.sub(_escaped, text)


class SafeStream(io.TextIOBase):
    """A text stream that passes everything written to it through ``safe_text``."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(safe_text(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return self.raw.encoding

    @property
    def errors(self) -> str | None:
        return self.raw.errors


def install() -> None:
    """From now on, what this process prints to stdout and stderr is safe to show."""
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)


# click's own pattern for the ANSI codes its echo strips from text not going to a terminal
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def echo(text: str, err: bool = False, nl: bool = True) -> None:
    """``click.echo(text, err=err, nl=nl)``: click's own once click is loaded (every command but the plain
    ``validate`` and ``submit`` that ``launch.py`` runs without it); otherwise the same bytes written the same
    way (``plain_streams`` holds: no stream click would wrap): ANSI codes stripped unless to a terminal
    (``SafeStream`` escapes any other control), then written and flushed."""
    click = sys.modules.get("click")
    if click is not None:
        click.echo(text, err=err, nl=nl)
        return
    stream = sys.stderr if err else sys.stdout
    out = text + "\n" if nl else text
    if not out:
        stream.flush()
        return
    try:
        terminal = stream.isatty()
    except Exception:
        terminal = False
    if not terminal:
        out = _ANSI.sub("", out)
    stream.write(out)
    stream.flush()


def plain_streams() -> bool:
    """Whether stdout and stderr are text streams click's ``echo`` writes to as they are (not missing, not
    ASCII, which click rewraps as UTF-8): then ``echo`` without click prints what click would."""
    import codecs

    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is None or codecs.lookup(stream.encoding or "ascii").name == "ascii":
                return False
            if stream.errors is None:
                return False
        except (LookupError, AttributeError):
            return False
    return True


def unwrapped(stream: TextIO) -> TextIO:
    """The stream under a ``SafeStream`` (for a progress bar's own cursor moves), else ``stream``."""
    return stream.raw if isinstance(stream, SafeStream) else stream


def write_exact(text: str) -> None:
    """``text`` to standard output byte for byte when that is a pipe or a file; escaped on a terminal."""
    if sys.stdout.isatty():
        sys.stdout.write(safe_text(text))
        return
    stream = unwrapped(sys.stdout)
    stream.flush()
    buffer: BinaryIO = stream.buffer
    buffer.write(text.encode(stream.encoding or "utf-8", "surrogateescape"))
    buffer.flush()


class Verbosity(int, Enum):
    QUIET = 0  # nothing while it runs; errors and the final summary only
    NORMAL = 1  # a bar on a terminal, a plain line now and then otherwise
    VERBOSE = 2  # also every failure as it is recorded, and plain lines on a terminal too


def line_interval_s() -> float:
    try:
        return max(float(os.environ.get("HOG_BATCH_PROGRESS_S", DEFAULT_LINE_INTERVAL_S)), 0.0)
    except ValueError:
        return DEFAULT_LINE_INTERVAL_S


class ProgressDisplay:
    """Called with the run's counts whenever the driver (or the follower) has news."""

    def __init__(
        self,
        name: str,
        start: Progress,
        verbosity: Verbosity = Verbosity.NORMAL,
        ledger: Ledger | None = None,
        stream: TextIO | None = None,
    ) -> None:
        from .run_view import RateMeter, failed_calls, progress_line

        self.name, self.verbosity, self.ledger = safe_text(name), verbosity, ledger
        self.stream = stream or sys.stderr
        self.meter = RateMeter(start.finished)
        self.interval_s = line_interval_s()
        self._line_at = time.monotonic()
        self._failed_seen = start.failed
        self._failures_known: set[tuple[str, int]] = (
            set()
        )  # verbose: failures from before, and those printed
        if verbosity is Verbosity.VERBOSE and ledger is not None:
            self._failures_known = {(job, call) for job, call, _ in failed_calls(ledger)}
        self.bar = None
        if verbosity is not Verbosity.QUIET and self.stream.isatty():
            self._start_bar(start)
        elif verbosity is not Verbosity.QUIET:  # a log says when the run (or the watching) began
            self._write(progress_line(self.name, start, self.meter))

    def _start_bar(self, start: Progress) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeRemainingColumn(),
            console=Console(file=unwrapped(self.stream)),
            transient=False,
        )
        self.task = self.bar.add_task(
            self.name, total=start.total, completed=start.finished, failed=start.failed
        )
        self.bar.start()

    def __call__(self, counts: dict[str, int]) -> None:
        from .run_view import Progress, failed_calls, progress_line

        now = Progress(counts)
        if self.verbosity is Verbosity.VERBOSE and now.failed > self._failed_seen:
            self._new_failures()
        elif (
            self.verbosity is Verbosity.VERBOSE
            and now.failed < self._failed_seen
            and self.ledger is not None
        ):
            self._failures_known = {
                (job, call) for job, call, _ in failed_calls(self.ledger)
            }  # a retry reset some
        self._failed_seen = now.failed
        if self.bar is not None:
            self.bar.update(self.task, total=now.total, completed=now.finished, failed=now.failed)
        if self.verbosity is Verbosity.QUIET or (
            self.bar is not None and self.verbosity is not Verbosity.VERBOSE
        ):
            return
        if time.monotonic() - self._line_at >= self.interval_s:
            self._line_at = time.monotonic()
            self._write(progress_line(self.name, now, self.meter))

    def _new_failures(self) -> None:
        """The failures not printed yet, in plan order."""
        from .run_view import failed_calls

        if self.ledger is None:
            return
        for job, call, error in failed_calls(self.ledger):
            if (job, call) not in self._failures_known:
                self._failures_known.add((job, call))
                self._write(f"failed: {job} call {call}: {error}")

    def environments_ready(self) -> None:
        """The calls start now: the rate and time left count from here, not from the environment builds."""
        from .run_view import RateMeter

        self.meter = RateMeter(self.meter.started_finished)

    def say(self, line: str) -> None:
        """A line about the run (an environment being built), above the bar; nothing with --quiet."""
        if self.verbosity is not Verbosity.QUIET:
            self._write(line)

    def _write(self, line: str) -> None:
        line = safe_text(line)
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
