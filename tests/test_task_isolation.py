"""The task runner keeps its own channel: user code cannot forge records, hold a task open or shadow its imports,
and a task whose submitter is gone starts nothing more."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from groundhog_batch.api import open_run
from groundhog_batch.backends.local import secret_pipe
from groundhog_batch.render.payload import TaskPayload, iter_records, unframe_records
from groundhog_batch.render.renderer import runner_source
from groundhog_batch.render.runner import DELIMITER

HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


def submit(
    project,
    body: str,
    sweep: str,
    extra: str = "",
    script_name: str = "work.py",
    timeout: float = 300,
):
    project.write(script_name, HEAD + body)
    project.manifest(f"script: {json.dumps(script_name)}\nfunction: f\n{extra}sweep:\n{sweep}")
    done = project.cli(
        "submit", "sweep.yaml", "--run-dir", "run", "-o", "results.csv", timeout=timeout
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done, pd.read_csv(project.root / "results.csv")


@pytest.mark.parametrize("stem", ["random", "json", "math", "types"])
def test_a_script_named_like_a_standard_library_module_runs(project, stem):
    body = "import json as _json, random as _random\ndef f(x):\n    return x + 1\n"
    done, table = submit(project, body, "  product:\n    x: [1, 2]\n", script_name=f"{stem}.py")
    assert done.returncode == 0, done.stderr
    assert list(table["result"]) == [2, 3]


def test_user_code_writing_fake_records_into_every_descriptor_cannot_forge_another_calls_result(
    project,
):
    body = (
        "import json, os\n"
        "def f(x):\n"
        "    if x == 0:\n"
        "        for name in os.listdir('/proc/self/fd'):\n"
        "            for call in range(3):\n"
        "                fake = json.dumps({'call': call, 'ok': True, 'kind': 'json', 'value': 999})\n"
        "                try:\n"
        "                    os.write(int(name), ('R\\n' + fake + '\\n').encode())\n"
        "                except OSError:\n"
        "                    pass\n"
        "    return x\n"
    )
    done, table = submit(project, body, "  product:\n    x: [0, 1, 2]\n", "calls_per_task: 3\n")
    assert done.returncode == 0, done.stderr
    assert list(table["result"]) == [0, 1, 2]
    assert list(table["status"]) == ["succeeded"] * 3


@pytest.mark.parametrize("where", ["local task", "runner alone"])
def test_bytes_with_nuls_a_call_writes_into_every_descriptor_lose_no_record_across_mapped_windows(
    project, tmp_path, where
):
    """A worker stores its records through a mapping of the records file, window after window, and a reader
    takes the file up to its first NUL byte. Calls write zeros and junk into every descriptor they have, the
    records file's too, before, between and after windows: every record is read, in order, and none is lost
    or taken for another (4,000 records of about 130 bytes cross several 256 KiB windows)."""
    body = (
        "import os\n"
        "def f(x):\n"
        "    if x in (0, 1999, 3998):\n"
        "        for name in os.listdir('/proc/self/fd'):\n"
        "            try:\n"
        "                os.write(int(name), b'\\0' * 3000 + b'junk\\n' + b'\\0' * 10)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return x * 2\n"
    )
    n = 4000
    if where == "local task":
        done, table = submit(
            project, body, f"  product:\n    x: {{range: [0, {n}]}}\n", "calls_per_task: 4000\n"
        )
        assert done.returncode == 0, done.stderr
        assert list(table["result"]) == [2 * x for x in range(n)]
        assert set(table["status"]) == {"succeeded"}
    else:
        records = run_runner(tmp_path, body, n)
        assert [(r["call"], r["ok"], r["value"]) for r in records] == [
            (x, True, 2 * x) for x in range(n)
        ]


def test_a_call_does_not_see_how_its_records_are_written_nor_pass_it_on(tmp_path, monkeypatch):
    """The runner takes HOG_BATCH_RECORDS_MAPPED (and the secret's descriptor) out of the environment before
    any call runs: a call that submits a sweep of its own (a Slurm job inherits its environment) cannot make
    that job's runner map a file another machine reads."""
    monkeypatch.setenv("HOG_BATCH_RECORDS_FILE", str(tmp_path / "task.records"))
    monkeypatch.setenv("HOG_BATCH_RECORDS_MAPPED", "1")
    body = (
        "import os\n"
        "def f(x):\n"
        "    return [os.environ.get('HOG_BATCH_RECORDS_MAPPED'), os.environ.get('HOG_BATCH_RECORDS_SECRET_FD')]\n"
    )
    records = run_runner(tmp_path, body, 2)
    assert [r["value"] for r in records] == [[None, None], [None, None]]


def test_a_call_cannot_forge_records_with_anything_in_its_own_or_its_parents_environment(project):
    """Call 0 frames fake results (999) for calls 0-2 with every value in the environment of its process and of
    each of its parents (``/proc/PID/environ``) and appends them to the task's records file: none is taken."""
    body = (
        "import json, os\n"
        "def f(x):\n"
        "    if x == 0:\n"
        "        values, pid = set(), os.getpid()\n"
        "        while pid > 1:\n"
        "            try:\n"
        "                environ = open(f'/proc/{pid}/environ', 'rb').read()\n"
        "                pid = int(open(f'/proc/{pid}/stat', 'rb').read().rsplit(b')', 1)[1].split()[1])\n"
        "            except OSError:\n"
        "                break\n"
        "            values.update(item.partition(b'=')[2] for item in environ.split(b'\\0'))\n"
        "        targets = []\n"
        "        for fd in [int(n) for n in os.listdir('/proc/self/fd')]:\n"
        "            try:\n"
        "                if os.readlink(f'/proc/self/fd/{fd}').endswith('.records'):\n"
        "                    targets.append(fd)\n"
        "            except OSError:\n"
        "                pass\n"
        "        assert targets, 'the records file is open in the worker'\n"
        "        for value in values - {b''}:\n"
        "            for call in range(3):\n"
        "                fake = json.dumps({'call': call, 'ok': True, 'kind': 'json', 'value': 999}).encode()\n"
        "                for fd in targets:\n"
        "                    os.write(fd, value + b' %d ' % len(fake) + fake + b'\\n')\n"
        "    return x\n"
    )
    done, table = submit(project, body, "  product:\n    x: [0, 1, 2]\n", "calls_per_task: 3\n")
    assert done.returncode == 0, done.stderr
    assert list(table["result"]) == [0, 1, 2]


def test_fake_records_in_the_records_file_are_not_read_by_resume_after_a_killed_submitter(project):
    """User code writes fake records into every descriptor, the records file too; the submitter is killed;
    resume reads the file and takes only the runner's own framed lines."""
    started = project.root / "started.txt"
    body = (
        "import json, os, time\n"
        "def f(x):\n"
        "    if x == 0:\n"
        "        for name in os.listdir('/proc/self/fd'):\n"
        "            for call in range(3):\n"
        "                fake = json.dumps({'call': call, 'ok': True, 'kind': 'json', 'value': 999})\n"
        "                for line in ('R\\n' + fake + '\\n', '0123ABCD %d %s\\n' % (len(fake), fake), fake):\n"
        "                    try:\n"
        "                        os.write(int(name), line.encode())\n"
        "                    except OSError:\n"
        "                        pass\n"
        "    if x == 1:\n"
        f"        first = not os.path.exists({str(started)!r})\n"
        f"        open({str(started)!r}, 'a').write('1\\n')\n"
        "        time.sleep(300 if first else 0)\n"
        "    return x\n"
    )
    project.write("work.py", HEAD + body)
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 3\nsweep:\n  product:\n    x: [0, 1, 2]\n"
    )
    submitter = subprocess.Popen(
        [sys.executable, "-m", "groundhog_batch", "submit", "sweep.yaml", "--run-dir", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not started.exists():
        time.sleep(0.05)
    assert started.exists(), (
        submitter.stderr.read().decode() if submitter.poll() is not None else "call 1 never started"
    )
    os.killpg(submitter.pid, signal.SIGKILL)  # call 0 is on disk, call 1 is running
    submitter.wait()
    done = project.cli("resume", "run", timeout=120)
    assert done.returncode == 0, done.stderr
    table = open_run(project.root / "run").results()
    assert list(table["status"]) == ["succeeded"] * 3
    assert list(table["result"]) == [0, 1, 2]


def runner_command(tmp_path, body: str, payload: TaskPayload) -> list[str]:
    """The runner alone, as a task starts it: the script, the runner and the payload written to ``tmp_path``."""
    (tmp_path / "work.py").write_text(body)
    (tmp_path / "hog_runner.py").write_text(runner_source())
    (tmp_path / "payload.b64").write_text(payload.encode())
    return [
        sys.executable,
        *(str(tmp_path / name) for name in ("hog_runner.py", "work.py", "payload.b64")),
    ]


def run_runner(
    tmp_path, body: str, n: int, function: str = "f", swept: list[dict] | None = None, **limits
) -> list[dict]:
    """The runner alone on ``f(x)`` for x in 0..n-1 (or ``function`` on ``swept``): its records, in order."""
    payload = TaskPayload(
        function=function,
        call_indices=list(range(n)),
        swept_kwargs=swept if swept is not None else [{"x": i} for i in range(n)],
        args=[],
        kwargs={},
        **limits,
    )
    command = runner_command(tmp_path, body, payload)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return list(iter_records(done.stdout.splitlines()))


def test_a_process_the_call_forks_and_that_exits_does_not_become_a_second_worker(tmp_path):
    ran = tmp_path / "ran.txt"
    body = (
        "import os, sys\n"
        "def f(x):\n"
        f"    open({str(ran)!r}, 'a').write(f'{{x}} {{os.getpid()}}\\n')\n"
        "    if x == 1:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            sys.exit(0)\n"
        "        os.waitpid(pid, 0)\n"
        "    return x\n"
    )
    records = run_runner(tmp_path, body, 5)
    assert [(r["call"], r["ok"], r["value"]) for r in records] == [(x, True, x) for x in range(5)]
    assert sorted(int(line.split()[0]) for line in ran.read_text().splitlines()) == [
        0,
        1,
        2,
        3,
        4,
    ]  # each call once


def test_a_call_that_points_its_stdout_at_a_file_of_its_own_keeps_that_file(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier lines\n")
    body = (
        "import os\n"
        "def f(x):\n"
        "    if x == 0:\n"
        f"        fd = os.open({str(log)!r}, os.O_RDWR | os.O_APPEND)\n"
        "        os.dup2(fd, 1)\n"
        "        os.close(fd)\n"
        "    print('log line of call', x, flush=True)\n"
        "    return x\n"
    )
    records = run_runner(tmp_path, body, 3)
    assert [(r["call"], r["ok"]) for r in records] == [(0, True), (1, True), (2, True)]
    assert log.read_text() == "earlier lines\n" + "".join(
        f"log line of call {x}\n" for x in range(3)
    )


def test_a_record_too_large_for_any_remote_task_fails_its_call_instead_of_coming_back_for_ever(
    tmp_path,
):
    body = "def f(x):\n    if x == 0:\n        raise ValueError('y' * 200000)\n    return x\n"
    records = run_runner(
        tmp_path,
        body,
        3,
        max_stdout_bytes=100_000,
        max_result_bytes=50_000,
        max_output_bytes=10_000,
    )
    assert [(r["call"], r["ok"]) for r in records] == [(0, False), (1, True), (2, True)]
    assert records[0]["error"].startswith("RecordTooLarge: the call's record is")


def test_a_call_that_closes_every_descriptor_and_opens_files_never_gets_a_record_in_them(tmp_path):
    body = (
        "import os\n"
        "kept = []\n"
        "def f(x):\n"
        "    if x == 1:\n"
        "        os.closerange(3, 65536)\n"
        f"        for i in range(20):\n            kept.append(open(os.path.join({str(tmp_path)!r}, f'user{{i}}.txt'), 'w'))\n"
        "    return x\n"
    )
    records = run_runner(tmp_path, body, 4)
    assert [r["call"] for r in records] == [0, 1, 2, 3]
    assert (
        records[0]["ok"] and records[2]["ok"] and records[3]["ok"]
    )  # a fresh worker goes on after call 1
    assert all((tmp_path / f"user{i}.txt").read_text() == "" for i in range(20))


def test_a_background_child_or_a_daemon_does_not_hold_its_task_open(project):
    pid_file = project.root / "daemon.pid"
    body = (
        "import os, time\n"
        "def f(x):\n"
        "    os.system('sleep 300 &')\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        f"        open({str(pid_file)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
        "        time.sleep(300)\n"
        "        os._exit(0)\n"
        "    return x\n"
    )
    try:
        done, table = submit(
            project, body, "  product:\n    x: [0, 1]\n", "calls_per_task: 2\n", timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert list(table["result"]) == [0, 1]
    finally:
        for pid in pid_file.read_text().split() if pid_file.exists() else []:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_thread_that_never_ends_does_not_hold_its_task_open(project):
    body = (
        "import threading, time\n"
        "def f(x):\n"
        "    threading.Thread(target=time.sleep, args=(300,)).start()\n"
        "    return x\n"
    )
    done, table = submit(
        project, body, "  product:\n    x: [0, 1]\n", "calls_per_task: 2\n", timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert list(table["result"]) == [0, 1]


def test_a_task_whose_submitter_is_gone_starts_no_call_after_the_one_running(tmp_path):
    """The reader of the task's stdout goes away while call 1 runs: call 1 finishes and is kept, call 2 never starts."""
    side_effects = tmp_path / "ran.txt"
    reader_left = tmp_path / "reader-left"
    body = (
        "import os, time\n"
        "def f(x, log, reader_left):\n"
        "    if x == 1:\n"
        "        open(reader_left + '.call-1-started', 'w').close()\n"
        "    while x == 1 and not os.path.exists(reader_left):\n"
        "        time.sleep(0.01)\n"
        "    time.sleep(0.2)\n"
        "    with open(log, 'a') as handle:\n"
        "        handle.write(f'{x}\\n')\n"
        "    return x\n"
    )
    payload = TaskPayload(
        function="f",
        call_indices=list(range(20)),
        swept_kwargs=[{"x": i} for i in range(20)],
        args=[],
        kwargs={"log": str(side_effects), "reader_left": str(reader_left)},
    )
    records_file = tmp_path / "task.records"
    secret_fd = secret_pipe("s3cr3t")
    task = subprocess.Popen(
        runner_command(tmp_path, body, payload),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "HOG_BATCH_RECORDS_FILE": str(records_file),
            "HOG_BATCH_RECORDS_SECRET_FD": str(secret_fd),
        },
        pass_fds=(secret_fd,),
    )
    os.close(secret_fd)
    assert task.stdout.readline().decode().strip() == DELIMITER
    assert json.loads(task.stdout.readline())["call"] == 0
    call_1_started = tmp_path / "reader-left.call-1-started"
    deadline = time.monotonic() + 60
    while not call_1_started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    task.stdout.close()  # the submitter dies while call 1 runs
    reader_left.touch()
    task.wait(timeout=60)
    ran = [int(line) for line in side_effects.read_text().split()]
    on_disk = unframe_records(records_file.read_bytes(), "s3cr3t").decode()
    recorded = [record["call"] for record in iter_records([DELIMITER, *on_disk.splitlines()])]
    assert (
        ran == recorded == [0, 1]
    )  # the running call finished and was kept; nothing started after it


def test_sigterm_lets_the_running_call_finish_and_record_then_starts_nothing_more(tmp_path):
    side_effects = tmp_path / "ran.txt"
    body = (
        "import time\n"
        "def f(x, log):\n"
        "    time.sleep(0.2)\n"
        "    with open(log, 'a') as handle:\n"
        "        handle.write(f'{x}\\n')\n"
        "    return x\n"
    )
    payload = TaskPayload(
        function="f",
        call_indices=list(range(20)),
        swept_kwargs=[{"x": i} for i in range(20)],
        args=[],
        kwargs={"log": str(side_effects)},
    )
    task = subprocess.Popen(
        runner_command(tmp_path, body, payload),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert task.stdout.readline().decode().strip() == DELIMITER
    first = task.stdout.readline()
    task.send_signal(signal.SIGTERM)
    rest, _ = task.communicate(timeout=60)
    assert task.returncode == 128 + signal.SIGTERM
    recorded = [
        record["call"]
        for record in iter_records([DELIMITER, first.decode(), *rest.decode().splitlines()])
    ]
    ran = [int(line) for line in side_effects.read_text().split()]
    assert ran == recorded and len(ran) < 20


class _RecordsFileSoFar:
    """What a supervisor reads of a records file (its ``read_new``), and what it hands on to stdout."""

    def __init__(self, data: bytes):
        self.data, self.handed_on = data, b""

    def read_new(self) -> bytes:
        data, self.data = self.data, b""
        return data[: data.rfind(b"\n") + 1]

    def write(self, data: bytes) -> None:
        self.handed_on += data


@pytest.mark.parametrize(
    "garbage",
    [b"", b"xyz", b"\n", b"not ours\n", b"SECRET 1 {}"],
    ids=["none", "no-newline", "bare-newline", "a-line", "a-guess-at-the-frame"],
)
@pytest.mark.parametrize("where", [0, 1, 3])
def test_the_supervisor_hands_on_exactly_the_workers_records_whatever_a_call_wrote_between_them(
    garbage, where, monkeypatch
):
    from groundhog_batch.render import runner
    from groundhog_batch.render.runner import _Task, frame

    if not garbage:  # whole records only: taken at one go, no line looked at alone
        monkeypatch.setattr(runner, "unframe", None)

    secret = b"s3cr3t" * 6
    bodies = [
        b'{"call": %d, "ok": true, "kind": "json", "value": %d}' % (c, c * 2) for c in (7, 8, 9)
    ]
    lines = [frame(secret + b" ", body) for body in bodies]
    lines.insert(where, garbage)
    records = _RecordsFileSoFar(b"".join(lines))
    task = _Task("work.py", "payload", {"calls": [7, 8, 9]}, secret, records)
    task.take_records()
    assert task.position == 3
    assert records.handed_on == b"".join(body + b"\n" for body in bodies)
