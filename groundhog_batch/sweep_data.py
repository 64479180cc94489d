"""A sweep's parameters taken from data: a chunked parameter (its source, a chunk of it) and a rows file.

Their own module: only a sweep with ``chunks`` or ``rows`` makes them, so a plain sweep's validate and
submit never make these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import KeyPath
from .type_names import Any


@dataclass(frozen=True)
class ChunkRef:
    """Piece ``index`` of a chunked parameter; the data is read when the payload is built."""

    param: str
    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class ChunkSource:
    """Where a chunked parameter's data comes from and how it is cut."""

    param: str
    file: Path | None  # None: an inline list
    inline_values: tuple[Any, ...] | None
    bounds: tuple[tuple[int, int], ...]
    pass_as: str  # value | path
    key_path: KeyPath = ()  # where the manifest defines it


@dataclass(frozen=True)
class RowsFile:
    """A rows file as the sweep read it: the calls' arguments come from exactly these bytes."""

    sha256: str
    content: bytes


__all__ = ["ChunkRef", "ChunkSource", "RowsFile"]
