"""Records streamed back during a remote task, through a directory the submitter and the workers both see.

When a Globus Compute endpoint's config names ``shared_records_dir`` (a
folder on a filesystem shared by the login node that submits and the nodes
that run the tasks), each task's runner appends every finished call's framed
record to ``<shared_records_dir>/hog-batch-<run key>/<task id>.records`` as it
goes, exactly as a local or Slurm task does (``backends/records_file.py``).
The submitter reads those files while the tasks run, so the ledger holds
each call as it finishes; a task whose worker dies keeps its finished calls,
the call it was running fails, and the calls it never started run again. The
task's result still carries every record (the final word; calls already
read from the file are not stored twice).

Nothing in the shared folder is trusted unless it is ours: the named folder
must be the user's own and not writable by others (it may be a symlink to
one); the run's folder in it is created 0700 and must be a real directory,
owned by the user, that nobody else can enter. A worker checks the same
before it writes there, and streams nothing otherwise (its result then says
why, and the submitter warns once). The records' framing secret comes with
the task's arguments and reaches the runner on a pipe, never in an
environment.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backends.records_file import RecordsFiles
from ..errors import BackendError

CONFIG_KEY = "shared_records_dir"  # hog-batch's own: never sent to the endpoint
RUN_KEY_META = "records_run_key"
READ_INTERVAL_S = 2.0  # how often the files of running tasks are read
CALL_OF_RECORD = re.compile(rb'^\{"call": (\d+)', re.M)


def endpoint_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config the endpoint receives: the job's, less hog-batch's own keys."""
    return {key: value for key, value in config.items() if key != CONFIG_KEY}


def named_dir(config: Mapping[str, Any]) -> Path | None:
    value = config.get(CONFIG_KEY)
    if not value:
        return None
    return Path(os.path.expandvars(os.path.expanduser(str(value)))).absolute()


def _refuse(path: Path, why: str, fix: str) -> BackendError:
    return BackendError(
        message=f"{CONFIG_KEY} {path}: {why}; hog-batch streams no records through a folder it cannot trust",
        hint=fix,
    )


def check_named_dir(base: Path) -> None:
    """The named folder exists (created 0700 if not), is the user's own and not writable by others."""
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.stat(base)  # a symlink is fine: what it leads to must be ours
    except OSError as exc:
        raise _refuse(
            base, f"cannot be created or read ({exc.strerror})", "name a folder you can write to"
        ) from None
    mine = f"name a folder of your own (e.g. /scratch/$USER/hog-batch), or run chmod go-w on {base}"
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(base, "is not a directory", mine)
    if info.st_uid != os.getuid():
        raise _refuse(base, f"belongs to another user (uid {info.st_uid})", mine)
    if info.st_mode & 0o022:
        raise _refuse(
            base, f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})", mine
        )


def prepare_run_dir(base: Path, run_key: str) -> Path:
    """The run's private folder under the named one, created and checked (``BackendError`` if not trustworthy)."""
    check_named_dir(base)
    run_dir = base / f"hog-batch-{run_key}"
    try:
        run_dir.mkdir(mode=0o700)
        os.chmod(run_dir, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refuse(
            run_dir, f"cannot be created ({exc.strerror})", "name a folder you can write to"
        ) from None
    info = os.lstat(run_dir)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise _refuse(
            run_dir,
            "is not a private directory of yours (a symlink, another user's, or open to others)",
            f"remove {run_dir}; hog-batch creates it again, mode 0700",
        )
    return run_dir


class SharedRecords:
    """The submitter's side: each streaming task's file, what was read of it, and the argument its worker gets."""

    def __init__(self, key_dir: Path, meta) -> None:
        self.key_dir, self.meta = key_dir, meta
        self._dirs: dict[Path, Path] = {}  # named folder -> the run's folder in it
        self._files: dict[Path, RecordsFiles] = {}
        self.tasks: dict[str, Path] = {}  # streaming task -> its run folder
        self.reported: dict[
            str, set[int]
        ] = {}  # task -> calls whose records were read from its file
        self.warned = False

    def run_key(self) -> str:
        key = self.meta.get(RUN_KEY_META)
        if key is None:
            key = os.urandom(6).hex()
            self.meta.set(RUN_KEY_META, key)
        return key

    def run_dir(self, config: Mapping[str, Any]) -> Path | None:
        base = named_dir(config)
        if base is None:
            return None
        if base not in self._dirs:
            self._dirs[base] = prepare_run_dir(base, self.run_key())
        return self._dirs[base]

    def _records(self, run_dir: Path) -> RecordsFiles:
        if run_dir not in self._files:
            self._files[run_dir] = RecordsFiles(run_dir, key_dir=self.key_dir)
        return self._files[run_dir]

    def follow(self, task_id: str, config: Mapping[str, Any]) -> dict[str, str] | None:
        """Start following the task's file; the argument its worker needs to write it (None: no streaming)."""
        run_dir = self.run_dir(config)
        if run_dir is None:
            return None
        self.tasks[task_id] = run_dir
        self.reported.setdefault(task_id, set())
        records = self._records(run_dir)
        return {"file": str(records.path(task_id)), "secret": records.secret(task_id)}

    def read_new(self, task_id: str) -> bytes:
        """The task's records written since the last read (plain JSON lines); their calls count as reported."""
        run_dir = self.tasks.get(task_id)
        if run_dir is None:
            return b""
        lines = self._records(run_dir).read_new(task_id)
        if lines:
            self.reported[task_id].update(int(c) for c in CALL_OF_RECORD.findall(lines))
        return lines

    def started(self, task_id: str) -> bool:
        """Whether the task's runner began (it creates its records file before the first call)."""
        run_dir = self.tasks.get(task_id)
        return run_dir is not None and self._records(run_dir).path(task_id).exists()

    def unreported(self, task_id: str, records: list[dict]) -> list[dict]:
        """The records of a task's result whose calls were not read from its file already."""
        seen = self.reported.get(task_id)
        if not seen:
            return records
        return [r for r in records if r.get("call") not in seen]

    def warn_unused(self, reason: str) -> None:
        """A worker could not write its records to the shared folder: say so once (records come at task end)."""
        if not self.warned:
            self.warned = True
            print(
                f"hog-batch: warning: a task could not stream its records through {CONFIG_KEY} ({reason}); "
                "its records come back when it ends. Is the folder on a filesystem the workers share, "
                "and do they run as you?",
                file=sys.stderr,
            )

    def forget(self, task_id: str) -> None:
        run_dir = self.tasks.pop(task_id, None)
        self.reported.pop(task_id, None)
        if run_dir is not None:
            self._records(run_dir).remove(task_id)

    def close(self) -> None:
        """The run's folders go once no task is followed (a task still queued or running keeps its folder)."""
        if self.tasks:
            return
        for run_dir in self._dirs.values():
            try:
                run_dir.rmdir()
            except OSError:
                pass


def lost_call_record(call: int, error: str) -> dict[str, Any]:
    """The record of a call that was running when its task's worker was lost (the shape of the host's own)."""
    return {
        "call": call,
        "ok": False,
        "kind": None,
        "value": None,
        "tb": None,
        "error": error,
        "out": "",
        "err": "",
        "t0": None,
        "t1": None,
        "lost": True,
    }


__all__ = [
    "CONFIG_KEY",
    "SharedRecords",
    "check_named_dir",
    "endpoint_config",
    "lost_call_record",
    "named_dir",
    "prepare_run_dir",
]
