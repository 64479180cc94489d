"""Content-addressed ids: sha256 of canonical JSON (sorted keys, fixed separators)."""

from __future__ import annotations

import hashlib
import json

from .type_names import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)


def content_id(value: Any, length: int = 16) -> str:
    """A short stable id for a JSON-able value."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]
