"""``--set KEY.PATH=VALUE`` overrides, applied to the manifest before validation."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import ManifestError, shorten
from ..type_names import Any
from .yaml_source import parse_yaml_value

HINT = (
    "write --set KEY.PATH=VALUE, e.g. --set sweep.product.n=[1,2] or --set config.walltime=01:00:00"
)
MAX_KEY_PARTS = 16  # the deepest manifest key (jobs.0.sweep.0.chunks.x.rows) has 7 parts


@dataclass(frozen=True)
class Override:
    text: str  # as given on the command line
    path: tuple[str | int, ...]
    value: Any


def parse_override(text: str) -> Override:
    key, sep, raw_value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ManifestError(message=f"--set {shorten(text)!r} has no KEY=VALUE", hint=HINT)
    parts = key.split(".")
    if len(parts) > MAX_KEY_PARTS:
        raise ManifestError(
            message=f"--set: the key path has {len(parts):,} parts; manifest keys have at most {MAX_KEY_PARTS}",
            hint=HINT,
        )
    if any(not part for part in parts):
        raise ManifestError(
            message=f"--set {shorten(text)!r}: empty part in key path {shorten(key)!r}", hint=HINT
        )
    path = tuple(int(p) if p.isdigit() and len(p) < 10 else p for p in parts)
    value = parse_yaml_value(raw_value, f"--set {key}")
    swept = _hydra_sweep(raw_value, value, key)
    if swept is not None:
        if "sweep" not in parts:
            param = parts[-1]
            prefix = f"{parts[0]}.{parts[1]}." if parts[0] == "jobs" and len(parts) > 2 else ""
            raise ManifestError(
                message=f"--set {shorten(text)!r} is Hydra's sweep syntax; here it would be the text "
                f"{shorten(raw_value.strip())!r}, not the values {', '.join(map(str, swept))}",
                hint=f"to sweep {param} over them: --set {prefix}sweep.product.{param}=[{','.join(map(str, swept))}] "
                "(a list is written [a,b]; text with a comma is quoted: --set 'KEY=\"a,b\"')",
            )
        value = swept  # under sweep: the values to sweep, as Hydra means them
    return Override(text, path, value)


def _hydra_sweep(raw_value: str, value: Any, key: str) -> list | None:
    """``1,2`` or ``fast,exact`` (unquoted, no brackets) as Hydra's ``-m`` sweep values, else None.

    Outside ``sweep`` only numbers and booleans count (``worker_init=module load a, b`` is text)."""
    raw = raw_value.strip()
    if not isinstance(value, str) or "," not in raw or raw[:1] in "[{'\"":
        return None
    pieces = [parse_yaml_value(piece, f"--set {key}") for piece in raw.split(",")]
    if any(piece in ("", None) or isinstance(piece, list | dict) for piece in pieces):
        return None
    numbers = all(isinstance(piece, int | float | bool) for piece in pieces)
    words = all(
        isinstance(piece, int | float | bool)
        or (isinstance(piece, str) and piece.strip() and " " not in piece.strip())
        for piece in pieces
    )
    if numbers or ("sweep" in key.split(".") and words):
        return [piece.strip() if isinstance(piece, str) else piece for piece in pieces]
    return None


def apply_overrides(
    data: Any, overrides: Iterable[Override], job_keys: Collection[str] = ()
) -> tuple[Any, dict[str, Any]]:
    """The manifest with overrides applied, and the top-priority config layer from ``config.*``.

    ``--set config.KEY=V`` goes to its own layer, above even a job's ``config``
    (see :mod:`groundhog_batch.manifest.endpoint_config`); every other key is
    written into the manifest itself. In a manifest with ``jobs:``, a job key
    (``job_keys``) a job sets for itself would hide the top-level value: the
    override is written into those jobs too (``--set timeout=3600`` reaches
    every job), except ``sweep``, which no two jobs share by intent: there a
    hidden override is an error naming the key paths that would work.
    """
    data = copy.deepcopy(data) if data is not None else {}
    cli_config: dict[str, Any] = {}
    for override in overrides:
        if override.path[0] == "config" and len(override.path) >= 2:
            _set_path(cli_config, override.path[1:], override.value, override)
            continue
        _set_path(data, override.path, override.value, override)
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if isinstance(jobs, list) and override.path[0] in job_keys:
            for i in _hiding_jobs(jobs, override):
                _set_path(jobs[i], override.path, copy.deepcopy(override.value), override)
    return data, cli_config


_MERGED_KEYS = (
    "kwargs",
    "endpoints",
)  # a job's own entries are merged over the top-level ones, key by key
_CONCATENATED_KEYS = ("dependencies",)  # a job's own are added to the top-level ones


def _hiding_jobs(jobs: list, override: Override) -> list[int]:
    """The jobs whose own keys would hide a top-level value set by ``override``; raises for a hidden sweep."""
    path = override.path
    key = path[0]
    if key in _CONCATENATED_KEYS:
        return []
    depth = 2 if key in _MERGED_KEYS and len(path) >= 2 else 1
    hiding = [
        i for i, job in enumerate(jobs) if isinstance(job, dict) and _has_path(job, path[:depth])
    ]
    if key == "sweep" and hiding:
        names = [str(jobs[i].get("name") or jobs[i].get("function") or f"job {i}") for i in hiding]
        value = override.text.partition("=")[2]
        working = " or ".join(
            f"--set 'jobs.{i}.{override.text.partition('=')[0].strip()}={value}' (job {name!r})"
            for i, name in zip(hiding, names, strict=True)
        )
        who = (
            "every job sweeps its own"
            if len(hiding) == len(jobs)
            else f"job{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))} sweep{'' if len(names) > 1 else 's'} its own"
        )
        raise ManifestError(
            message=f"--set {shorten(override.text)!r} would change the top-level sweep, but {who}: "
            "it would be ignored there",
            hint=f"set it in the job meant: {working}",
        )
    return hiding


def _has_path(target: Any, path: tuple[str | int, ...]) -> bool:
    for part in path:
        if isinstance(target, dict) and str(part) in target:
            target = target[str(part)]
        else:
            return False
    return True


def _set_path(target: Any, path: tuple[str | int, ...], value: Any, override: Override) -> None:
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(target, list) and isinstance(part, int):
            if part >= len(target):
                raise ManifestError(
                    message=f"--set {shorten(override.text)!r}: index {part} is past the end of a list of {len(target)}",
                    hint=HINT,
                )
            target = target[part]
        elif isinstance(target, dict):
            key = str(part)
            if not isinstance(target.get(key), dict | list):
                target[key] = [] if isinstance(following, int) else {}
            target = target[key]
        else:
            raise ManifestError(
                message=f"--set {shorten(override.text)!r}: cannot set a key inside a {type(target).__name__}",
                hint=HINT,
            )
    last = path[-1]
    if isinstance(target, list) and isinstance(last, int):
        if last >= len(target):
            raise ManifestError(
                message=f"--set {shorten(override.text)!r}: index {last} is past the end of a list of {len(target)}",
                hint=HINT,
            )
        target[last] = value
    elif isinstance(target, dict):
        target[str(last)] = value
    else:
        raise ManifestError(
            message=f"--set {shorten(override.text)!r}: cannot set a key inside a {type(target).__name__}",
            hint=HINT,
        )
