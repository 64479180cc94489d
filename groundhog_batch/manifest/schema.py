"""The manifest's JSON Schema: loading it, and turning its errors into readable ones."""

from __future__ import annotations

import functools
import json
import re

from ..errors import ManifestError, shorten
from ..package_data import read_text
from ..type_names import Any
from .yaml_source import SourceMap

SCHEMA_RESOURCE = "schemas/manifest.schema.json"


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """The packaged schema (the same file as ``schemas/`` in the repository)."""
    text = read_text(SCHEMA_RESOURCE)
    return json.loads(text)


@functools.cache
def _validator():
    """Draft 2020-12, except that an integer is an int: JSON Schema would take 10.0 as one."""
    import jsonschema

    strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=strict)
    return validator(manifest_schema())


@functools.cache
def _fast_check():
    """The jsonschema-free validity check (schema_check.py), or None if the schema is beyond it."""
    from .schema_check import SchemaCheck, Unsupported

    try:
        return SchemaCheck(manifest_schema())
    except (Unsupported, re.error):
        return None


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
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)


def _unknown_keys_error(error, source: SourceMap) -> list[ManifestError]:
    allowed = allowed_keys(error.schema)
    unknown = [key for key in error.instance if key not in allowed]
    found = []
    for key in unknown:
        import difflib  # only for a mistake: the did-you-mean

        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"allowed keys here: {', '.join(sorted(allowed))}"
        )
        found.append(
            source.error((*error.absolute_path, key), f"unknown key {shorten(repr(key))}", hint)
        )
    return found


IDENTIFIER_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
_ARTICLE = {
    "integer": "an integer",
    "object": "a mapping",
    "array": "a list",
    "mapping": "a mapping",
    "list": "a list",
}
_KEY_FIXES = {
    # Fixes a schema cannot state: what to write instead, by the key at fault.
    "function": "write the function's name as the script defines it, without parentheses: estimate_pi, or Sampler.run",
    "name": "use letters, digits, '_', '-' and '.', e.g. name: pi-sweep",
    "output": "name a file ending in .csv, .tsv, .parquet, .json or .jsonl, e.g. output: results.csv",
    "range": "range takes integers, as in Python's range(); for evenly spaced floats use linspace, e.g. {linspace: [0, 1, 11]}",
    "calls_per_task": "write a positive integer or auto, e.g. calls_per_task: 10",
}


def _flow(value: Any) -> str:
    """A value as one line of YAML, for "e.g." examples."""
    import yaml

    return (
        yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
        .strip()
        .removesuffix("\n...")
        .strip()
    )


def _key_of(error) -> str | None:
    """The manifest key an error is about (for a list item, the list's key)."""
    for part in reversed(list(error.absolute_path)):
        if isinstance(part, str):
            return part
    return None


def _example(error) -> Any:
    """The nearest example the schema gives for the place of ``error``."""
    while error is not None:
        examples = error.schema.get("examples") if isinstance(error.schema, dict) else None
        if examples:
            return examples[0]
        error = error.parent
    return None


def _fix(error, key: str | None) -> str:
    """What to write instead: from the failed constraint, the key, and the schema's example."""
    schema, value, validator = error.schema, error.instance, error.validator
    in_list = bool(error.absolute_path) and isinstance(list(error.absolute_path)[-1], int)
    if (
        validator == "type"
        and "integer" in schema["type"]
        and isinstance(value, float)
        and value.is_integer()
        and abs(value) < 1e18
    ):
        return f"write {int(value)}, without a decimal point"
    if key in _KEY_FIXES and (
        validator in ("pattern", "oneOf", "anyOf", "const") or key == "range"
    ):
        return _KEY_FIXES[key]
    example = _example(error)
    like = f", e.g. {key}: {_flow(example)}" if key and example is not None and not in_list else ""
    if validator == "type":
        expected = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if isinstance(value, str) and ("number" in expected or "integer" in expected):
            return "write the number without quotes or words" + like
        return "write " + " or ".join(_ARTICLE.get(t, f"a {t}") for t in expected) + like
    if validator == "minimum":
        return f"use {schema['minimum']} or more" + like
    if validator == "exclusiveMinimum":
        return f"use a number above {schema['exclusiveMinimum']}" + like
    if validator == "maximum":
        return f"use at most {schema['maximum']:,}" + like
    if validator in ("minItems", "maxItems", "prefixItems"):
        return (
            f"give {_ARTICLE.get('list')} like {_flow(example)}"
            if example is not None
            else "check the number of items"
        )
    if validator == "minLength":
        return "give a non-empty value" + like
    if validator == "minProperties":
        return "give at least one key" + like
    if validator == "enum":
        return "use one of: " + ", ".join(map(str, schema["enum"]))
    if validator == "required":
        missing = [
            name
            for name in schema.get("required", [])
            if isinstance(value, dict) and name not in value
        ]
        return f"add `{missing[0]}:`" + like if missing else "add the missing key" + like
    if validator in ("oneOf", "anyOf"):
        forms = [_flow(e) for e in (schema.get("examples") or [])]
        return (
            ("write one of the forms " + ", or ".join(forms))
            if forms
            else "see docs/manifest.md for the forms allowed here"
        )
    if validator == "pattern":
        return f"write a value matching {schema['pattern']}" + like
    return "see docs/manifest.md for what this key takes" + like


def _describe(error) -> tuple[str, str]:
    """A message and a fix for one schema error."""
    schema = error.schema
    value = error.instance
    key = _key_of(error)
    if error.validator in ("oneOf", "anyOf"):
        return (
            f"{_type_name(value)} {shorten(repr(value))} is not a valid value here",
            _fix(error, key),
        )
    if error.validator == "type":
        expected = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        wanted = " or ".join(_ARTICLE.get(t, f"a {t}") for t in expected)
        return (
            f"expected {wanted}, got {_type_name(value)} {shorten(repr(value))}",
            _fix(error, key),
        )
    if error.validator == "pattern" and isinstance(value, str):
        if schema["pattern"] == IDENTIFIER_PATTERN:
            return (
                f"{shorten(repr(value))} is not a valid parameter name",
                "use a Python identifier: letters, digits and _, not starting with a digit",
            )
        return (f"{shorten(repr(value))} is not allowed here", _fix(error, key))
    if error.validator == "required":
        return (error.message.replace("is a required property", "is required"), _fix(error, key))
    if error.validator in ("maximum", "minimum", "exclusiveMinimum") and isinstance(
        value, int | float
    ):
        bound = schema[error.validator]
        relation = {
            "maximum": "more than the maximum of",
            "minimum": "less than the minimum of",
            "exclusiveMinimum": "not above",
        }[error.validator]
        shown = (
            f"{value:,}" if isinstance(value, int) and abs(value) < 10**30 else shorten(repr(value))
        )
        return (f"{shown} is {relation} {bound:,}", _fix(error, key))
    return (shorten(error.message, 200), _fix(error, key))


def _most_specific(error) -> list:
    """Inside oneOf/anyOf, the failures of the alternative the user evidently meant (the one failing deepest)."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    alternatives: dict[Any, list] = {}
    for failure in error.context:
        alternatives.setdefault(failure.relative_schema_path[0], []).append(failure)

    def rank(failures: list) -> tuple[int, bool]:
        return max(
            (len(f.absolute_path), f.validator not in ("type", "required", "const"))
            for f in failures
        )

    meant = max(alternatives.values(), key=rank)
    depth, specific = rank(meant)
    if depth == len(error.absolute_path) and not specific:
        return [error]
    return [found for failure in meant for found in _most_specific(failure)]


def schema_errors(data: Any, source: SourceMap) -> list[ManifestError]:
    """Every schema violation in ``data``, each located and with a fix."""
    fast = _fast_check()
    if fast is not None and fast.valid(data):
        return []
    found: list[ManifestError] = []
    outers = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    for error in (specific for outer in outers for specific in _most_specific(outer)):
        if error.validator in ("unevaluatedProperties", "additionalProperties") and isinstance(
            error.instance, dict
        ):
            found += _unknown_keys_error(
                error, source
            )  # keys the schema knows are reported where they fail
            continue
        message, hint = _describe(error)
        found.append(source.error(tuple(error.absolute_path), message, hint))
    return _dedupe(found)


def _dedupe(errors: list[ManifestError]) -> list[ManifestError]:
    seen, unique = set(), []
    for error in errors:
        key = (error.key_path, error.message)
        if key not in seen:
            seen.add(key)
            unique.append(error)
    return unique
