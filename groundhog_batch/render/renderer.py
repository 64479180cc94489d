"""Render a task: the one place where values enter shell text.

The template is filled in one pass (``@@NAME@@`` placeholders, no second
templating layer). Words are quoted with ``shlex.quote``. A small script is a single-quoted
word bash's own printf writes (no process started for it); the runner, a
large script, the payload (which the endpoint fills in, of any size) and
what only a build needs go in quoted heredocs whose terminators are chosen
so no line of the content can end them. Call arguments never touch the shell text: they travel as base64.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from functools import cache
from pathlib import Path

from .. import __version__
from ..manifest.spec import EnvironmentSpec
from ..package_data import read_text
from ..type_names import Any
from .runner import DELIMITER

_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
PAYLOAD_SENTINEL = "HOG_BATCH_PAYLOAD_SENTINEL_7f3a"
UV_MIN_VERSION = (
    0,
    5,
)  # --relocatable, --no-config, venv --no-project; older uv on a node is passed over
UV_BOOTSTRAP_VERSION = "0.13.9"  # the uv a task installs with pip where it finds none new enough


@cache
def _template() -> str:
    return read_text("render/task.sh")


@cache
def runner_source() -> str:
    return read_text("render/runner.py")


def heredoc_terminator(base: str, text: str) -> str:
    """A terminator no line of ``text`` equals."""
    lines = set(text.splitlines())
    terminator, n = base, 0
    while terminator in lines:
        n += 1
        terminator = f"{base}_{n}"
    return terminator


@cache
def runner_id(runner_text: str) -> str:
    """Names the runner's bytecode kept in an environment: another runner text, another file."""
    return hashlib.sha256(runner_text.encode("utf-8")).hexdigest()[:16]


def bash_quoted(text: str) -> str:
    """``text`` as one bash word, byte for byte: single quotes, each ``'`` written ``'\\''``."""
    return "'" + text.replace("'", "'\\''") + "'"


SMALL_FILE_BYTES = (
    16 * 1024
)  # below this, printf (no process) is cheaper than cat; above, the heredoc is


def file_writer(path: str, text: str, terminator: str, small: bool = True) -> str:
    """The shell line(s) writing ``text`` and a newline to ``path`` (a shell word): bash's printf of the
    quoted text when it is small, else cat from a quoted heredoc no line of it can end."""
    if small and len(text) <= SMALL_FILE_BYTES:
        return f"printf '%s\\n' {bash_quoted(text)} > {path}"
    end = heredoc_terminator(terminator, text)
    return f"cat > {path} <<'{end}'\n{text}\n{end}"


def toml_value(value: Any) -> str:
    """A TOML inline value (strings as JSON strings, which TOML reads the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
            + "}"
        )
    return json.dumps(str(value))


def uv_toml(tool_uv: dict[str, Any]) -> str:
    return "\n".join(
        f"{json.dumps(str(key))} = {toml_value(value)}" for key, value in tool_uv.items()
    )


def script_file_name(script_path: Path) -> str:
    """The script's name in the task: its stem (the module name) plus .py."""
    return f"{script_path.stem}.py"


def render_task_script(
    job_name: str,
    script_path: Path,
    script_text: str,
    environment: EnvironmentSpec,
    payload_text: str,
    runner_text: str | None = None,
) -> str:
    """The bash script of one task (the same for every task of a job, but for its payload).

    ``runner_text`` replaces the runner (``hog-batch debug`` runs one call in the foreground with its own).
    """
    python_downloads = (
        "automatic"
        if environment.python_downloads
        else str(environment.tool_uv.get("python-downloads", "never"))
    )
    if python_downloads not in ("automatic", "manual", "never"):
        python_downloads = "never"
    contents = {
        "REQUIREMENTS": "\n".join(environment.dependencies),
        "UV_TOML": uv_toml(environment.tool_uv),
    }
    values = {
        "JOB_COMMENT": re.sub(r"[^A-Za-z0-9_.-]", "_", job_name),
        "VERSION": __version__,
        "ENV_ID": environment.env_id,
        "DELIMITER": DELIMITER,
        "SCRIPT_FILE": shlex.quote(script_file_name(script_path)),
        "REQUIRES_PYTHON": shlex.quote(environment.requires_python or ""),
        "PYTHON_DOWNLOADS": python_downloads,
        "UV_MIN_MAJOR": str(UV_MIN_VERSION[0]),
        "UV_MIN_MINOR": str(UV_MIN_VERSION[1]),
        "UV_BOOTSTRAP_VERSION": UV_BOOTSTRAP_VERSION,
        "WRITE_SCRIPT": file_writer(
            f'"$hog_tmp"/{shlex.quote(script_file_name(script_path))}',
            script_text.rstrip("\n"),
            "HOG_SCRIPT_EOF",
        ),
        "WRITE_RUNNER": file_writer(
            '"$hog_tmp/hog_runner.py"',
            (runner_text or runner_source()).rstrip("\n"),
            "HOG_RUNNER_EOF",
        ),
        "RUNNER_ID": runner_id(runner_text or runner_source()),
        # Always a heredoc: the endpoint fills the payload's place (PAYLOAD_SENTINEL) into the same text,
        # byte for byte the script run here, and a payload can be megabytes.
        "WRITE_PAYLOAD": file_writer(
            '"$hog_tmp/payload.b64"', payload_text, "HOG_PAYLOAD_EOF", small=False
        ),
    }
    for name, text in contents.items():
        values[f"{name}_TEXT"] = text
        values[f"{name}_EOF"] = heredoc_terminator(f"HOG_{name}_EOF", text)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template())


@cache
def _array_template() -> str:
    return read_text("render/array.sh")


def render_array_script(
    name: str, task_dir: Path, task_ids: list[str], secrets: list[str], worker_init: str
) -> str:
    """The batch script of one Slurm array: element i runs the rendered task script of ``task_ids[i]``.

    ``worker_init`` is the user's own shell, run as written before the task.
    """
    values = {
        "NAME": re.sub(r"[^A-Za-z0-9_.+-]", "_", name),
        "VERSION": __version__,
        "TASK_DIR": shlex.quote(str(task_dir)),
        "TASK_IDS": " ".join(shlex.quote(task_id) for task_id in task_ids),
        "SECRETS": " ".join(shlex.quote(secret) for secret in secrets),
        "WORKER_INIT": worker_init.rstrip("\n") or ":",
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _array_template())
