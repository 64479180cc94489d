"""The manifest's JSON Schema: loading it, and turning its errors into readable ones."""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources
from typing import Any

from ..errors import ManifestError
from .yaml_source import SourceMap

SCHEMA_RESOURCE = "schemas/manifest.schema.json"


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """The packaged schema (the same file as ``schemas/`` in the repository)."""
    text = resources.files("groundhog_batch").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(manifest_schema())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return manifest_schema()["$defs"][ref.removeprefix("#/$defs/")]
    return node


def allowed_keys(node: dict[str, Any]) -> list[str]:
    """Property names a schema node accepts, following ``$ref`` and ``allOf``."""
    node = _resolve(node)
    keys = list(node.get("properties", {}))
    for part in node.get("allOf", []):
        keys += allowed_keys(part)
    return keys


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _unknown_keys_error(error, source: SourceMap) -> list[ManifestError]:
    allowed = allowed_keys(error.schema)
    unknown = [key for key in error.instance if key not in allowed]
    found = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys here: {', '.join(sorted(allowed))}"
        found.append(source.error((*error.absolute_path, key), f"unknown key {key!r}", hint))
    return found


IDENTIFIER_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
_ARTICLE = {"integer": "an integer", "object": "a mapping", "array": "a list", "mapping": "a mapping", "list": "a list"}


def _describe(error) -> tuple[str, str]:
    """A message and a hint for one schema error."""
    schema = error.schema
    description = schema.get("description", "")
    value = error.instance
    if error.validator in ("oneOf", "anyOf"):
        return (f"{_type_name(value)} {value!r} is not a valid value here", description)
    if error.validator == "type":
        expected = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        wanted = " or ".join(_ARTICLE.get(t, f"a {t}") for t in expected)
        return (f"expected {wanted}, got {_type_name(value)} {value!r}", description)
    if error.validator == "pattern" and isinstance(value, str):
        if schema["pattern"] == IDENTIFIER_PATTERN:
            return (f"{value!r} is not a valid parameter name", "use a Python identifier: letters, digits and _, not starting with a digit")
        return (f"{value!r} is not allowed here", description or f"it must match {schema['pattern']}")
    if error.validator == "required":
        return (error.message.replace("is a required property", "is required"), description)
    return (error.message, description)


def _nearest_description(error) -> str:
    while error is not None:
        if error.schema.get("description"):
            return error.schema["description"]
        error = error.parent
    return ""


def _most_specific(error):
    """Inside oneOf/anyOf, the failure of the alternative the user evidently meant (the deepest one)."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        deepest = max(error.context, key=lambda e: (len(e.absolute_path), e.validator not in ("type", "required", "const")))
        if len(deepest.absolute_path) == len(error.absolute_path) and deepest.validator in ("type", "required", "const"):
            return error
        error = deepest
    return error


def schema_errors(data: Any, source: SourceMap) -> list[ManifestError]:
    """Every schema violation in ``data``, each located and with a fix."""
    found: list[ManifestError] = []
    for outer in sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        error = _most_specific(outer)
        if error.validator in ("unevaluatedProperties", "additionalProperties") and isinstance(error.instance, dict):
            found += _unknown_keys_error(error, source)  # keys the schema knows are reported where they fail
            continue
        message, hint = _describe(error)
        found.append(source.error(tuple(error.absolute_path), message, hint or _nearest_description(error)))
    return _dedupe(found)


def _dedupe(errors: list[ManifestError]) -> list[ManifestError]:
    seen, unique = set(), []
    for error in errors:
        key = (error.key_path, error.message)
        if key not in seen:
            seen.add(key)
            unique.append(error)
    return unique
