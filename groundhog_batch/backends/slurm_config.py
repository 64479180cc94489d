"""A Slurm endpoint's configuration: its JSON Schema, its offline check, and the sbatch options it becomes.

The keys (``schemas/slurm-endpoint.schema.json``) are merged like any
endpoint's (``manifest.endpoint_config``): the script's ``[tool.hog.NAME]``,
its variants, the manifest, the job, then ``--set``. The check runs offline
(``validate``, ``plan``): an unknown key gets a did-you-mean, a malformed
walltime or memory is an error, and options hog-batch sets itself (the array,
the job name, the output files, the signal) are refused in ``sbatch_args``.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..memory import parse_memory_mib
from ..package_data import read_text
from .base import parse_walltime_s

SCHEMA_RESOURCE = "schemas/slurm-endpoint.schema.json"
MEMORY_PATTERN = re.compile(
    r"^[0-9]+[KMGT]?B?$", re.IGNORECASE
)  # sbatch takes no fractions ("1.5G")
OWNED_OPTIONS = {
    "--array": "the array",
    "-a": "the array",
    "--parsable": "how sbatch answers",
    "--job-name": "the job name (it carries the run and its tasks)",
    "-J": "the job name",
    "--output": "where elements write",
    "-o": "where elements write",
    "--error": "where elements write",
    "-e": "where elements write",
    "--signal": "the walltime warning signal",
    "--wrap": "the batch script",
    "--wait": "submit, then return",
    "-W": "submit, then return",
    "--test-only": "what is submitted",
    "--chdir": "the working directory",
    "-D": "the working directory",
}
JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "array": "a list",
    "object": "a mapping",
}

# locate(config key, message, hint) -> an error pointing at the line that set the key
Locate = Callable[[str, str, str], Exception]


@functools.cache
def schema() -> dict[str, Any]:
    text = read_text(SCHEMA_RESOURCE)
    return json.loads(text)


def known_keys() -> list[str]:
    return list(schema()["properties"])


def config_problems(config: Mapping[str, Any], locate: Locate) -> list:
    """Every problem of a Slurm endpoint's merged config, each located at the key that set it."""
    problems = []
    keys = known_keys()
    for key in config:
        if key not in schema()["properties"]:
            close = difflib.get_close_matches(key, keys, n=1)
            problems.append(
                locate(
                    key,
                    f"a Slurm endpoint has no config key {key!r}",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"its keys: {', '.join(sorted(k for k in keys if k != 'endpoint'))}",
                )
            )
    known = {key: value for key, value in config.items() if key in schema()["properties"]}
    for key, value in known.items():
        node = schema()["properties"][key]
        problem = _value_problem(value, node)
        if problem:
            example = (
                f"for example: {key}: {json.dumps(node['examples'][0])}"
                if node.get("examples")
                else "change the value in the manifest or the script's [tool.hog] table, or override it with --set"
            )
            problems.append(
                locate(key, f"Slurm config key {key!r} is {value!r}; {problem}", example)
            )
    known = {
        key: value
        for key, value in known.items()
        if not _value_problem(value, schema()["properties"][key])
    }
    walltime = known.get("walltime")
    if (
        isinstance(walltime, str | int)
        and not isinstance(walltime, bool)
        and parse_walltime_s(walltime) is None
    ):
        problems.append(
            locate(
                "walltime",
                f"walltime {walltime!r} is not a Slurm time",
                'write HH:MM:SS, MM:SS, D-HH:MM:SS, D-HH or a number of minutes, e.g. "00:30:00"',
            )
        )
    memory = known.get("mem")
    if isinstance(memory, str) and not MEMORY_PATTERN.match(memory.strip()):
        problems.append(
            locate(
                "mem",
                f"mem {memory!r} is not a Slurm memory size",
                'write a whole number with K, M, G or T ("4G", "1536M"; sbatch takes no fractions); a bare number is megabytes',
            )
        )
    if isinstance(memory, int) and not isinstance(memory, bool) and memory <= 0:
        problems.append(
            locate("mem", f"mem {memory!r} must be a positive number of megabytes", "e.g. mem: 4G")
        )
    for argument in known.get("sbatch_args") or []:
        if not isinstance(argument, str):
            continue
        option = argument.split("=", 1)[0]
        if option in OWNED_OPTIONS or any(
            option.startswith(short) and len(option) > 2 and not option.startswith("--")
            for short in ("-a", "-J", "-o", "-e", "-W", "-D")
        ):
            owned = OWNED_OPTIONS.get(option, "this option")
            problems.append(
                locate(
                    "sbatch_args",
                    f"sbatch_args sets {argument!r}, which hog-batch sets itself ({owned})",
                    "remove it: hog-batch submits the tasks as an array with --parsable, names the job "
                    "after the run, and writes element output under the run directory",
                )
            )
    return problems


_PYTHON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _value_problem(value: Any, node: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` by its schema node (the subset of JSON Schema the Slurm schema uses)."""
    if "const" in node and value != node["const"]:
        return f"it must be {node['const']!r}"
    types = node.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(_PYTHON_TYPES[t](value) for t in types):
            return f"it must be {' or '.join(JSON_TYPES.get(t, t) for t in types)}"
    if "minimum" in node and isinstance(value, int) and value < node["minimum"]:
        return f"it must be at least {node['minimum']}"
    if "minLength" in node and isinstance(value, str) and len(value) < node["minLength"]:
        return "it must not be empty"
    items = node.get("items")
    if items and isinstance(value, list):
        for item in value:
            problem = _value_problem(item, items)
            if problem:
                return f"each item {problem.removeprefix('it ')} ({item!r} is not)"
    return None


def slurm_time(seconds: float) -> str:
    """``seconds`` as an sbatch ``--time``, rounded up to whole minutes (Slurm's granularity): 90 -> 00:02:00."""
    minutes = max(1, math.ceil(round(seconds, 6) / 60))
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00" if days else f"{hours:02d}:{minutes:02d}:00"


def element_memory(config: Mapping[str, Any], memory_mib: float | None) -> str | None:
    """An element's ``--mem``: the job's per-call ``memory:`` (escalated on retries) in whole MiB, or the
    endpoint's ``mem:`` as written when that is more (or the only one); None: Slurm's default applies.

    A task runs one call at a time, each held to ``memory_mib`` (its address
    space, which is never less than its resident memory), so that is what
    an element needs.
    """
    site = config.get("mem")
    site = None if site in (None, "") else site
    if not memory_mib:
        return None if site is None else str(site)
    asked = math.ceil(round(memory_mib, 6))
    site_mib = parse_memory_mib(site)
    if site_mib is not None and site_mib > asked:
        return str(site)
    return f"{asked}M"


def sbatch_options(
    config: Mapping[str, Any], walltime_s: float | None = None, memory_mib: float | None = None
) -> list[str]:
    """The resource options of a job's elements, in sbatch's own spelling: the config's, with a walltime
    a retry escalated (``walltime_s``) and the job's ``memory:`` (``memory_mib``) when given."""
    options = []
    for key, flag in (
        ("partition", "--partition"),
        ("account", "--account"),
        ("qos", "--qos"),
        ("cpus_per_task", "--cpus-per-task"),
        ("gres", "--gres"),
        ("constraint", "--constraint"),
    ):
        if config.get(key) not in (None, ""):
            options.append(f"{flag}={config[key]}")
    if walltime_s:
        options.append(f"--time={slurm_time(walltime_s)}")
    elif config.get("walltime") not in (None, ""):
        options.append(f"--time={config['walltime']}")
    memory = element_memory(config, memory_mib)
    if memory is not None:
        options.append(f"--mem={memory}")
    options += [str(argument) for argument in config.get("sbatch_args") or []]
    return options


def warning_signal_s(walltime_s: float | None) -> int | None:
    """How long before the walltime Slurm's warning signal is asked for; None for short walltimes.

    Slurm sends it up to a minute early, so a walltime under ten minutes gets
    none (the runner's own deadline and Slurm's TIMEOUT handle those).
    """
    if walltime_s is None or walltime_s < 600:
        return None
    return int(min(max(60.0, walltime_s * 0.05), 300.0))


def config_key_path(job_index: int, reference: str, key: str) -> list[tuple]:
    """Where in a manifest a job's config key may be set, highest layer first."""
    name, *variants = reference.split(".")
    paths: list[tuple] = [("jobs", job_index, "config", key), ("config", key)]
    paths += [("endpoints", name, *variants[:depth], key) for depth in range(len(variants), -1, -1)]
    return paths


__all__ = [
    "config_problems",
    "element_memory",
    "known_keys",
    "sbatch_options",
    "schema",
    "slurm_time",
    "warning_signal_s",
]
