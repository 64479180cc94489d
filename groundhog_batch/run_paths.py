"""The one object that knows every path inside a run directory."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import RunError

RUNS_FOLDER = "hog-runs"


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def manifest_snapshot(self) -> Path:
        return self.root / "manifest.yaml"

    @property
    def run_info(self) -> Path:
        """How to re-create the plan: manifest path, overrides, endpoint, provenance (JSON)."""
        return self.root / "run.json"

    @property
    def ledger(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def cancel_request(self) -> Path:
        return self.root / "cancel-requested"

    @property
    def submitter_log(self) -> Path:
        return self.root / "submitter.log"

    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    def script_snapshot(self, job_name: str) -> Path:
        return self.scripts / f"{job_name}.py"

    def script_version_snapshot(self, job_name: str, sha256: str) -> Path:
        """A later version of the job's script (``retry --accept-changed-script``), by its hash."""
        return self.scripts / f"{job_name}.{sha256[:12]}.py"

    def rows_snapshot(self, sha256: str, suffix: str) -> Path:
        """The run's copy of a rows file, by content: ``collect`` and ``logs`` plan the calls from it."""
        return self.root / "inputs" / f"{sha256}{suffix.lower()}"

    @property
    def task_scratch(self) -> Path:
        """Rendered task scripts while they run (removed afterwards)."""
        return self.root / "tasks"

    def call_dirs(self, job_name: str) -> Path:
        """With ``workdir: call``: the folder of job's call directories, RUN/calls/JOB (call N runs in N/ under it)."""
        return self.root / "calls" / job_name

    @property
    def report(self) -> Path:
        """The HTML report's default place."""
        return self.root / "report.html"

    def default_results(self, suffix: str = ".parquet") -> Path:
        return self.root / f"results{suffix}"

    def exists(self) -> bool:
        """A complete run directory: ``run.json`` is written last, after every call is in the ledger."""
        return self.run_info.is_file()


def new_run_dir(name: str, parent: Path | None = None) -> Path:
    """``hog-runs/<name>-<UTC timestamp>/`` under the current folder, unique."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    base = (parent or Path.cwd() / RUNS_FOLDER) / f"{safe}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def latest_run_dir(folder: Path | None = None) -> Path | None:
    """The run under ``folder/hog-runs`` (default: the current folder) that started last, or None.

    Its start is the one run.json records (a run directory's name holds its own
    name first, so names do not sort by time); the folder's change time breaks ties.
    """
    import json

    found = []
    for info in (folder or Path.cwd()).joinpath(RUNS_FOLDER).glob("*/run.json"):
        try:
            started = str(
                json.loads(info.read_text("utf-8")).get("provenance", {}).get("started_at") or ""
            )
            found.append((started, info.stat().st_mtime, info.parent))
        except (OSError, ValueError, AttributeError):
            continue
    return max(found)[2] if found else None


def make_private_dir(root: Path) -> None:
    """Create the run directory, mode 0700 whatever the umask: its ledger, task scripts (which carry the
    call arguments), task stderr and records are the user's alone, and nobody else can plant a file or
    symlink in it. An existing directory is taken only if it is the user's own and empty."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        root.mkdir(mode=0o700)
    except FileExistsError:
        found = os.lstat(root)
        if not stat.S_ISDIR(found.st_mode):
            raise RunError(
                message=f"{root} exists and is not a directory", hint="pick another --run-dir"
            ) from None
        if found.st_uid != os.getuid():
            raise RunError(
                message=f"{root} belongs to another user (uid {found.st_uid})",
                hint="pick a --run-dir of your own",
            ) from None
        if any(root.iterdir()):
            raise RunError(
                message=f"{root} already holds files; a run needs a new or empty directory",
                hint="pick another --run-dir, or leave it out (a new folder under ./hog-runs)",
            ) from None
    except OSError as exc:
        raise RunError(
            message=f"cannot create the run directory {root}: {exc.strerror}",
            hint="pick a --run-dir in a folder you can write to",
        ) from None
    os.chmod(root, 0o700)


def _private_temp(folder: Path, prefix: str) -> tuple[int, str]:
    """A new file of ours in ``folder`` (0600, created exclusively, no symlink followed), as tempfile.mkstemp
    makes one, without importing tempfile (and shutil, random) on every command's path."""
    flags = (
        os.O_RDWR
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    for _ in range(100):
        name = os.path.join(folder, prefix + os.urandom(4).hex())
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def fsync_file(path: Path) -> None:
    """``path``'s contents on disk before anything written after this call (as write_atomic's are)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, shared: bool = False) -> None:
    """Write, then rename: a reader never sees half a file. The file is private (0600): run-directory state;
    ``shared`` gives it the mode the umask gives any file the user writes (a report, to be passed around)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = _private_temp(path.parent, f".{path.name}.")
    try:
        if shared:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
