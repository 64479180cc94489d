"""Run tasks as local subprocesses: the same rendered bash script a remote endpoint runs.

Each task is ``bash TASK.sh`` in its own process group, so cancelling it
stops everything it started. Its stdout is read as it comes: each call's
record reaches the ledger as soon as the call finishes.
"""

from __future__ import annotations

import os
import pwd
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ..render.payload import unreported_records
from ..render.runner import DELIMITER
from ..tools import find_program
from .base import (
    AbandonedTask,
    Backend,
    IdsCallback,
    TaskReport,
    TaskSubmission,
)
from .local_kind import (  # noqa: F401 - the kind, re-exported where it was
    KIND,
    MAX_AUTO_CALLS_PER_TASK,
    TASKS_PER_SLOT,
    LocalKind,
    default_parallelism,
)
from .records_file import RecordsFiles, read_when_released, secret_pipe  # noqa: F401 - secret_pipe re-exported

STDERR_TAIL_BYTES = 4000
GATHER_S = 0.01
DELIMITER_LINE = (DELIMITER + "\n").encode()
STOP_GRACE_S = 2.0  # the runner's own grace for the running call, and some


def find_uv() -> str | None:
    """The uv the ``uv`` package installed beside this Python (``uv.find_uv_bin()``), else uv on PATH.

    In a virtual environment on POSIX, find_uv_bin's first place is the environment's own ``bin``; that is
    looked at first without importing the package, which imports sysconfig (4 ms of every submit)."""
    if (
        sys.platform != "win32"
        and sys.version_info >= (3, 11)  # the `venv` install scheme: scripts are in {prefix}/bin
        and sys.prefix != sys.base_prefix
    ):
        import importlib.util

        candidate = os.path.join(sys.prefix, "bin", "uv")
        if os.path.isfile(candidate) and importlib.util.find_spec("uv") is not None:
            return candidate
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:
        import shutil

        return shutil.which("uv")


def env_quiet_s() -> float:
    """An environment build taking longer than this (HOG_BATCH_ENV_QUIET_S, default 1 s) is said on the terminal."""
    try:
        return max(float(os.environ.get("HOG_BATCH_ENV_QUIET_S", "1.0")), 0.0)
    except ValueError:
        return 1.0


def environment_ready(env_id: str, env: Mapping[str, str]) -> bool:
    """Whether a task started with ``env`` will find the environment ``env_id`` built and its folders private,
    looked up as the task script does (``render/task.sh``); False when in doubt: the task script decides."""
    root = env.get("HOG_BATCH_CACHE_DIR") or os.path.join(
        env.get("GROUNDHOG_CACHE_DIR") or env.get("SCRATCH") or env.get("TMPDIR") or "/tmp",
        env.get("USER") or pwd.getpwuid(os.getuid()).pw_name,
    )
    base = os.path.join(root, "hog-batch")
    uid = os.getuid()
    try:
        for folder in (base, os.path.join(base, "envs"), os.path.join(base, "envs", env_id)):
            info = os.lstat(folder)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
                return False
        return stat.S_ISREG(os.lstat(os.path.join(base, "envs", env_id, ".hog-complete")).st_mode)
    except (OSError, KeyError):
        return False


def _read_lines(n: int, process: subprocess.Popen, lines: queue.Queue) -> None:
    for raw in process.stderr:
        lines.put((n, raw.decode("utf-8", "replace").rstrip()))
    lines.put((n, None))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


class LocalBackend(Backend):
    name = "local"
    submits_each_at_once = (
        True  # a process started: nothing gained by waiting for the next task's packing
    )

    def __init__(
        self, scratch_dir: Path, working_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.scratch_dir = scratch_dir
        self.working_dir = working_dir
        self.env = dict(os.environ)
        uv = find_uv()
        if uv and "HOG_BATCH_UV" not in self.env:
            self.env["HOG_BATCH_UV"] = uv
        # The Python a script without requires-python gets (uv is always told which; never a .python-version).
        self.env.setdefault("HOG_BATCH_ENDPOINT_PYTHON", sys.executable)
        self.env.update(extra_env or {})
        self._reports: queue.Queue[TaskReport] = queue.Queue()
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.records = RecordsFiles(scratch_dir)

    def submit(self, tasks: list[TaskSubmission], on_ids: IdsCallback) -> None:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        ids: list[tuple[str, str]] = []
        for task in tasks:
            script_path = self.scratch_dir / f"{task.task_id}.sh"
            stderr_path = self.scratch_dir / f"{task.task_id}.stderr"
            script_path.write_text(task.script)
            secret_fd = self.records.secret_pipe(task.task_id)
            env = dict(self.env, **self.records.environment(task.task_id, secret_fd))
            try:
                with stderr_path.open("wb") as stderr:
                    process = subprocess.Popen(
                        [find_program("bash"), str(script_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        cwd=self.working_dir,
                        env=env,
                        start_new_session=True,
                        pass_fds=(secret_fd,),
                    )
            finally:
                os.close(secret_fd)
            with self._lock:
                self._processes[task.task_id] = process
            threading.Thread(
                target=self._follow,
                args=(task.task_id, task.calls, process, script_path, stderr_path),
                daemon=True,
            ).start()
            ids.append((task.task_id, str(process.pid)))
        on_ids(ids, None)

    def _follow(
        self,
        task_id: str,
        calls: list[int],
        process: subprocess.Popen,
        script_path: Path,
        stderr_path: Path,
    ) -> None:
        """Hand on the record lines as they come, undecoded: every complete line read in one report.

        Once the task has ended, its records file says what became of the calls
        it did not report on stdout (its runner was killed after a record reached
        the file, before it handed the record on): those records come with the
        last report, so no call that finished runs again or is taken for killed.
        """
        saw_delimiter = False
        pending = b""
        reported = 0
        fd = process.stdout.fileno()
        while True:
            block = os.read(fd, 1 << 16)
            if not block:
                break
            pending += block
            if not saw_delimiter:
                at = _find_line(pending, DELIMITER_LINE)
                if at < 0:
                    pending = pending[
                        -len(DELIMITER_LINE) - 1 :
                    ]  # what came before the runner is not ours
                    continue
                saw_delimiter = True
                pending = pending[at + len(DELIMITER_LINE) :]
            cut = pending.rfind(b"\n") + 1
            if cut:
                reported += pending.count(b"\n", 0, cut)
                self._reports.put(TaskReport(task_id, lines=pending[:cut]))
                pending = pending[cut:]
        process.stdout.close()
        returncode = process.wait()
        left = b""
        if reported < len(calls):
            data = read_when_released(self.records.path(task_id), mapped=True)
            left = unreported_records(data, self.records.secret(task_id), calls, reported)
        with self._lock:
            self._processes.pop(task_id, None)
        tail = _tail(stderr_path)
        for path in (script_path, stderr_path):
            path.unlink(missing_ok=True)
        self._reports.put(
            TaskReport(
                task_id,
                lines=left,
                finished=True,
                returncode=returncode,
                stderr_tail=tail,
                saw_delimiter=saw_delimiter,
            )
        )

    def build_environments(
        self, builds: list[tuple[str, str, str, str]], say=None, quiet_s: float | None = None
    ) -> None:
        """Get the jobs' environments ready before their tasks start, all at once: (job, what it installs,
        a task script with no calls, the environment's id). A build still going after ``quiet_s`` is said
        (``say``), with what it prints (uv, the environment lock), and when it is ready; otherwise the tasks
        would wait on its lock while the progress bar sits at 0. A failed build is left to the tasks, which
        report it per call. An environment the cache holds complete, in private folders, is not looked at
        again by a task of its own (starting bash and Python for nothing took 0.15 s of every submit): the
        tasks check it as they start."""
        builds = [build for build in builds if not environment_ready(build[3], self.env)]
        quiet_s = env_quiet_s() if quiet_s is None else quiet_s
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
        started = time.monotonic()
        running = []
        try:
            for n, (job, what, script, _) in enumerate(builds):
                path = self.scratch_dir / f"environment-{n}.sh"
                path.write_text(script)
                process = subprocess.Popen(
                    [find_program("bash"), str(path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    cwd=self.working_dir,
                    env={**self.env, "HOG_BATCH_ENV_PROGRESS": "1"},
                    start_new_session=True,
                )
                running.append((job, what, path, process))
                threading.Thread(target=_read_lines, args=(n, process, lines), daemon=True).start()
            said: set[int] = set()
            early: dict[int, list[str]] = {}

            def tag(m: int) -> str:  # whose line it is, when several environments are built at once
                return f"{running[m][0]}: " if len(running) > 1 else ""

            done = 0
            while done < len(running):
                late = time.monotonic() - started >= quiet_s
                if late:  # say each build still going, before waiting for more of it
                    for m, (job, what, _, process) in enumerate(running):
                        if m not in said and process.poll() is None:
                            said.add(m)
                            if say is not None:
                                say(
                                    f"building the environment for {job}: {what} (once: later runs reuse it)"
                                )
                                for before in early.pop(m, []):
                                    say(f"  {tag(m)}{before}")
                try:
                    n, line = lines.get(
                        timeout=None if late else max(quiet_s - (time.monotonic() - started), 0.01)
                    )
                except queue.Empty:
                    n, line = -1, ""
                if n < 0:
                    continue
                job, _, _, process = running[n]
                if line is None:
                    done += 1
                    if n in said and say is not None and process.wait() == 0:
                        say(f"environment for {job} ready ({time.monotonic() - started:.0f} s)")
                elif line and n in said and say is not None:
                    say(f"  {tag(n)}{line}")
                elif line:
                    early.setdefault(n, []).append(line)
            for *_, process in running:
                process.wait()
        except BaseException:  # Ctrl-C: the builds stop with the submitter
            for *_, process in running:
                _kill_group(process.pid)
            raise
        finally:
            for _, _, path, _ in running:
                path.unlink(missing_ok=True)

    def forget(self, task_id: str) -> None:
        self.records.remove_soon(task_id)

    def reattach(self, tasks: list[AbandonedTask]) -> list[TaskReport]:
        reports = []
        for task_id, _job, external_id, calls in tasks:
            if external_id and external_id.isdigit():
                _kill_leftover(int(external_id), task_id)
            data = read_when_released(self.records.path(task_id), mapped=True)
            reports.append(
                TaskReport(
                    task_id,
                    lines=unreported_records(data, self.records.secret(task_id), calls),
                    finished=True,
                )
            )
            for suffix in (".sh", ".stderr"):
                (self.scratch_dir / f"{task_id}{suffix}").unlink(missing_ok=True)
        return reports

    def poll(self, timeout_s: float) -> list[TaskReport]:
        reports: list[TaskReport] = []
        try:
            reports.append(self._reports.get(timeout=timeout_s))
        except queue.Empty:
            return reports
        if not reports[0].finished:  # a finished task frees a slot: hand it on at once
            time.sleep(GATHER_S)  # let the tasks say more: fewer, larger blocks for the ledger
        while True:
            try:
                reports.append(self._reports.get_nowait())
            except queue.Empty:
                return reports

    def cancel(self, task_ids: list[str]) -> None:
        with self._lock:
            processes = [self._processes.get(task_id) for task_id in task_ids]
        _stop_groups([process for process in processes if process is not None])

    def close(self) -> None:
        with self._lock:
            running = list(self._processes.values())
        _stop_groups(running)
        for process in running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.records.close()


def _stop_groups(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every task's process group at once, then SIGKILL what is left after a grace.

    On SIGTERM the runner starts no more calls and gives the running one a
    second to finish and be recorded; bash then cleans its temporary folder.
    """
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_leftover(pid: int, task_id: str) -> None:
    """Kill the process group of a task a dead submitter started, if that process is still that task."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return
    if task_id in cmdline:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - STDERR_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _find_line(data: bytes, line: bytes) -> int:
    """Where ``line`` starts a line of ``data`` (-1: nowhere)."""
    at = data.find(line)
    while at > 0 and data[at - 1 : at] != b"\n":
        at = data.find(line, at + 1)
    return at
