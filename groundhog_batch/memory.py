"""A call's memory limit as the manifest gives it (``memory: 4G``), in MiB.

``512M``, ``4G``, ``2GiB``, ``1.5T`` or a bare number of MiB; K/M/G/T are
powers of 1024 (Slurm's reading of ``--mem``). Locally the runner sets it as
the worker's ``RLIMIT_AS`` (address space, which counts more than resident
memory: give headroom), so a call over it fails with ``MemoryError``; a
Slurm backend passes it on as ``--mem``.
"""

from __future__ import annotations

import re

PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGgTt]i?[Bb]?)?\s*$"
_UNITS = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory_mib(value: object) -> float | None:
    """``"4G"`` -> 4096.0; None for None or anything that is not a size."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    found = re.match(PATTERN, str(value))
    if not found:
        return None
    text = str(value).strip()
    number = float(re.match(r"[0-9.]+", text).group(0))
    unit = (found.group(2) or "m")[0].lower()
    mib = number * _UNITS[unit]
    return mib if mib > 0 else None


__all__ = ["PATTERN", "parse_memory_mib"]
