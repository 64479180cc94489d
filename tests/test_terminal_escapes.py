"""Text from user code and file names never drives the terminal (issue 22): errors, printed output and
run names are shown with their control characters escaped everywhere; only `logs --raw` to a pipe
keeps the bytes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from conftest import SCRIPT_HEAD

CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"  # OSC 52: write "pwned" to the clipboard
CLEAR = "\x1b[2J\x1b[H"  # CSI: clear the screen, cursor home
HOSTILE = f"bad{CLIPBOARD}{CLEAR}\x1b[1;31mred\rcover\u202eevil\x9b2J"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")
NAME = f"sweep{CLEAR}"  # a run name taken from a file name

SCRIPT = SCRIPT_HEAD + (f"def f(x):\n    print({HOSTILE!r})\n    raise ValueError({HOSTILE!r})\n")


def hostile_run(project):
    project.write("work.py", SCRIPT)
    project.manifest(
        "script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n", name=f"{NAME}.yaml"
    )
    return f"{NAME}.yaml"


def assert_shown_safely(text: str) -> None:
    assert not UNSAFE.search(text), repr(text)


def on_a_terminal(project, *args) -> str:
    """What the CLI writes to a terminal (a pseudo-terminal), newlines as the terminal got them."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", *args],
        cwd=project.root,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=os.environ.copy(),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_safe_text_escapes_every_control_but_tab_and_newline():
    from groundhog_batch.console import safe_text

    assert safe_text(f"a\tb\nc\r\nd{CLIPBOARD}\rz\u202e\x9b\udce9") == (
        "a\tb\nc\nd\\x1b]52;c;cHduZWQ=\\x07\\x0dz\\u202e\\x9b\\udce9"
    )


def test_ascii_text_is_escaped_as_the_whole_pattern_escapes_it_and_other_text_by_that_pattern():
    """ASCII text goes through a short pattern (the whole one is compiled on the first other text): the same
    characters are escaped either way, controls and surrogates among them."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from groundhog_batch import console

    whole = re.compile(console._UNSAFE_TEXT)
    wanted = "\n\r\t\x00\x1b\x7f\x80\x9b\x9f\xa0\u061c\u200e\u202e\u2066\u2069\ud800\udce9\udfff\U0001f600a"

    @settings(max_examples=400, deadline=None)
    @given(st.text(st.sampled_from(wanted) | st.characters(codec=None), max_size=30))
    def same(text):
        expected = whole.sub(console._escaped, text.replace("\r\n", "\n"))
        assert console.safe_text(text) == expected

    same()


def test_ascii_output_never_compiles_the_unicode_pattern():
    script = (
        "import sys\n"
        "from groundhog_batch import console\n"
        "print(console.safe_text('plain \\x1b[2J text\\r\\n'))\n"
        "print(console._unsafe is None)\n"
        "console.safe_text('caf\\u00e9')\n"
        "print(console._unsafe is None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["plain \\x1b[2J text", "", "True", "False"]


def test_the_submit_summary_and_progress_lines_show_escapes_not_act_on_them(project):
    manifest = hostile_run(project)
    done = project.cli("submit", manifest, "-v", env={"HOG_BATCH_PROGRESS_S": "0"})
    assert done.returncode == 1
    assert_shown_safely(done.stderr + done.stdout)
    assert (
        "  failed: f call 0: ValueError: bad\\x1b]52;c;cHduZWQ=\\x07" in done.stderr
    )  # the summary
    assert (
        "\nfailed: f call 0: ValueError: bad\\x1b]52;c;cHduZWQ=\\x07" in done.stderr
    )  # as it happened (-v)
    assert (
        "sweep\\x1b[2J\\x1b[H: 0/1 finished" in done.stderr
    )  # a progress line, with the run's name


def test_status_and_runs_show_escapes_not_act_on_them(project):
    manifest = hostile_run(project)
    project.cli("submit", manifest, "--run-dir", "run")
    for args in (("status", "run"), ("status", "run", "--all")):
        status = project.cli(*args)
        assert status.returncode == 0 and "ValueError: bad\\x1b]52" in status.stdout
        assert_shown_safely(status.stdout + status.stderr)
    (project.root / "hog-runs").mkdir()
    (project.root / "run").rename(
        project.root / "hog-runs" / f"run{CLIPBOARD}"
    )  # a name anyone could give a folder
    runs = project.cli("runs")
    assert runs.returncode == 0 and "run\\x1b]52;c;cHduZWQ=\\x07" in runs.stdout
    assert_shown_safely(runs.stdout + runs.stderr)


def test_logs_show_escapes_on_a_terminal_and_in_a_pipe(project):
    manifest = hostile_run(project)
    project.cli("submit", manifest, "--run-dir", "run")
    piped = project.cli("logs", "run")
    assert piped.returncode == 0 and "bad\\x1b]52;c;cHduZWQ=\\x07" in piped.stdout
    assert_shown_safely(piped.stdout)
    for args in (("logs", "run"), ("logs", "run", "--raw"), ("status", "run")):
        shown = on_a_terminal(project, *args)
        assert "\\x1b]52" in shown, shown
        assert_shown_safely(shown)


def test_logs_raw_to_a_pipe_keeps_the_bytes_as_printed(project):
    manifest = hostile_run(project)
    project.cli("submit", manifest, "--run-dir", "run")
    raw = subprocess.run(
        [
            sys.executable,
            "-m",
            "groundhog_batch",
            "logs",
            "run",
            "0",
            "--stream",
            "stdout",
            "--raw",
        ],
        cwd=project.root,
        capture_output=True,
        timeout=120,
    )
    assert raw.returncode == 0
    assert raw.stdout == (HOSTILE + "\n").encode()
