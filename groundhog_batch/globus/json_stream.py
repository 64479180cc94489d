"""Read the entries of one JSON object inside a large answer, one at a time, without holding the answer.

A status answer carries up to 500 task states, each with a result of up to
10 MiB: ``{"response": "batch", "results": {"<task id>": {...}, ...}}``. This
reads the bytes as they arrive and yields ``(task_id, state)`` pairs; only the
entry being read (and at most as much again of buffer) is in memory at once.
Each value is decoded with the standard library's ``raw_decode``; when the
buffer ends inside a value, it is retried only once the buffer has doubled, so
a large value costs a few scans, not one per chunk.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK_BYTES = 1 << 20
WHITESPACE = " \t\n\r"


class JsonStreamError(ValueError):
    """The answer is not the JSON object it should be."""


class _Reader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0
        self.eof = False

    def _read(self, at_least_chars: int) -> bool:
        """Append at least ``at_least_chars`` more characters (fewer at the end); False at the end of the answer."""
        if self.pos > CHUNK_BYTES and self.pos * 2 > len(self.buffer):
            self.buffer, self.pos = self.buffer[self.pos :], 0
        parts, added = [], 0
        while added < at_least_chars and not self.eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.eof = True
                text = self._utf8.decode(b"", final=True)
            else:
                text = self._utf8.decode(chunk)
            parts.append(text)
            added += len(text)
        if parts:
            self.buffer += "".join(parts)
        return added > 0

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end)."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._read(1):
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise JsonStreamError(f"expected {char!r} at character {self.pos}, found {found!r}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise JsonStreamError(f"the answer ends inside a value: {exc}") from None
                self._read(max(len(self.buffer) - self.pos, CHUNK_BYTES))
                continue
            if (
                end == len(self.buffer)
                and not self.eof
                and not isinstance(value, (dict, list, str))
            ):
                self._read(1)  # a number may go on in the next chunk
                continue
            self.pos = end
            return value


def object_entries(chunks: Iterable[bytes], key: str) -> Iterator[tuple[str, Any]]:
    """The entries of the object at top-level ``key`` of the JSON object the chunks carry, as they arrive."""
    reader = _Reader(chunks)
    reader.expect("{")
    if reader.peek() == "}":
        return
    while True:
        name = reader.value()
        reader.expect(":")
        if name == key and reader.peek() == "{":
            reader.expect("{")
            if reader.peek() != "}":
                while True:
                    entry = reader.value()
                    reader.expect(":")
                    yield entry, reader.value()
                    if reader.peek() == ",":
                        reader.expect(",")
                        continue
                    break
            reader.expect("}")
        else:
            reader.value()
        if reader.peek() == ",":
            reader.expect(",")
            continue
        reader.expect("}")
        return


__all__ = ["JsonStreamError", "object_entries"]
