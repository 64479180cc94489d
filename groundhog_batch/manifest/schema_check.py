"""A yes/no check of a manifest against its JSON Schema, without importing jsonschema.

Most manifests are valid, and importing ``jsonschema`` (with ``referencing``,
``attrs`` and ``rpds``) costs more than everything else ``validate`` does. This
module decides validity for the subset of Draft 2020-12 the manifest schema
uses; only when it says "invalid" does ``schema.py`` ask jsonschema for the
located errors. It must never accept what jsonschema rejects: a keyword it does
not know makes the whole schema unsupported, and every check then goes to
jsonschema (a test holds the shipped schema to the supported subset and
compares the two verdicts on generated manifests).
"""

from __future__ import annotations

import re

from ..type_names import Any

# Keywords that only annotate: they never make a value invalid.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "markdownDescription",
        "format",
        "$defs",
    }
)
_ASSERTIONS = frozenset(
    {
        "type",
        "const",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "properties",
        "patternProperties",
        "additionalProperties",
        "unevaluatedProperties",
        "required",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    }
)
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = (
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "items",
    "not",
    "if",
    "then",
    "else",
)


class Unsupported(Exception):
    """The schema uses something this checker does not decide."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        isinstance(v, int) and not isinstance(v, bool)
    ),  # 10.0 is not an integer (schema.py)
    "number": _is_number,
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality, as JSON Schema's const and enum see it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class SchemaCheck:
    """The schema, checked once for supported keywords; ``valid(value)`` decides."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        self._patterns: dict[str, re.Pattern] = {}
        self._audit(schema)

    def _audit(self, node: Any) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, dict):
            raise Unsupported(f"schema node {node!r}")
        for key, value in node.items():
            if key not in _ANNOTATIONS and key not in _ASSERTIONS:
                raise Unsupported(key)
            if key == "$ref" and not (isinstance(value, str) and value.startswith("#/$defs/")):
                raise Unsupported(f"$ref {value!r}")
            if key in ("pattern",):
                self._patterns[value] = re.compile(value)
            if key == "patternProperties":
                for pattern in value:
                    self._patterns[pattern] = re.compile(pattern)
        for key in _SUBSCHEMA_MAPS:
            for child in node.get(key, {}).values():
                self._audit(child)
        for key in _SUBSCHEMA_LISTS:
            for child in node.get(key, []):
                self._audit(child)
        for key in _SUBSCHEMAS:
            if key in node:
                self._audit(node[key])

    def valid(self, value: Any) -> bool:
        return self._check(self.root, value) is not None

    def _ref(self, ref: str) -> Any:
        return self.root["$defs"][ref.removeprefix("#/$defs/")]

    def _check(self, node: Any, value: Any) -> set | None:
        """None when ``value`` fails ``node``; else the property names it evaluated (for unevaluatedProperties)."""
        if node is True:
            return set()
        if node is False:
            return None
        evaluated: set = set()
        get = node.get
        kinds = get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            if not any(_TYPES[kind](value) for kind in kinds):
                return None
        if "const" in node and not _json_equal(value, node["const"]):
            return None
        if "enum" in node and not any(_json_equal(value, option) for option in node["enum"]):
            return None
        if isinstance(value, str) and not self._string(node, value):
            return None
        if _is_number(value) and not _number(node, value):
            return None
        if isinstance(value, list) and not self._array(node, value):
            return None
        if isinstance(value, dict):
            own = self._object(node, value)
            if own is None:
                return None
            evaluated |= own
        for key in ("$ref", "allOf", "anyOf", "oneOf", "not", "if"):
            if key not in node:
                continue
            found = self._applicator(node, key, value)
            if found is None:
                return None
            evaluated |= found
        unevaluated = get("unevaluatedProperties")
        if unevaluated is not None and isinstance(value, dict):
            for name in value.keys() - evaluated:
                if self._check(unevaluated, value[name]) is None:
                    return None
            evaluated |= value.keys()
        return evaluated

    def _applicator(self, node: dict, key: str, value: Any) -> set | None:
        if key == "$ref":
            return self._check(self._ref(node["$ref"]), value)
        if key == "allOf":
            evaluated: set = set()
            for part in node["allOf"]:
                found = self._check(part, value)
                if found is None:
                    return None
                evaluated |= found
            return evaluated
        if key in ("anyOf", "oneOf"):
            passed = [
                found
                for found in (self._check(part, value) for part in node[key])
                if found is not None
            ]
            if not passed or (key == "oneOf" and len(passed) != 1):
                return None
            return set().union(*passed)
        if key == "not":
            return None if self._check(node["not"], value) is not None else set()
        # if / then / else
        condition = self._check(node["if"], value)
        branch = node.get("then") if condition is not None else node.get("else")
        if branch is None:
            return condition or set()
        found = self._check(branch, value)
        return None if found is None else found | (condition or set())

    def _string(self, node: dict, value: str) -> bool:
        if "minLength" in node and len(value) < node["minLength"]:
            return False
        if "maxLength" in node and len(value) > node["maxLength"]:
            return False
        return "pattern" not in node or self._patterns[node["pattern"]].search(value) is not None

    def _array(self, node: dict, value: list) -> bool:
        if "minItems" in node and len(value) < node["minItems"]:
            return False
        if "maxItems" in node and len(value) > node["maxItems"]:
            return False
        prefix = node.get("prefixItems", [])
        for item, part in zip(value, prefix, strict=False):
            if self._check(part, item) is None:
                return False
        items = node.get("items")
        return items is None or all(
            self._check(items, item) is not None for item in value[len(prefix) :]
        )

    def _object(self, node: dict, value: dict) -> set | None:
        for name in node.get("required", ()):
            if name not in value:
                return None
        if "minProperties" in node and len(value) < node["minProperties"]:
            return None
        if "maxProperties" in node and len(value) > node["maxProperties"]:
            return None
        for name, needs in node.get("dependentRequired", {}).items():
            if name in value and any(other not in value for other in needs):
                return None
        names = node.get("propertyNames")
        if names is not None and any(self._check(names, name) is None for name in value):
            return None
        evaluated: set = set()
        properties = node.get("properties", {})
        patterns = node.get("patternProperties", {})
        for name, item in value.items():
            matched = False
            if name in properties:
                matched = True
                if self._check(properties[name], item) is None:
                    return None
            for pattern, part in patterns.items():
                if self._patterns[pattern].search(name):
                    matched = True
                    if self._check(part, item) is None:
                        return None
            if matched:
                evaluated.add(name)
            elif "additionalProperties" in node:
                if self._check(node["additionalProperties"], item) is None:
                    return None
                evaluated.add(name)
        return evaluated


def _number(node: dict, value: int | float) -> bool:
    if "minimum" in node and value < node["minimum"]:
        return False
    if "maximum" in node and value > node["maximum"]:
        return False
    if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
        return False
    return not ("exclusiveMaximum" in node and value >= node["exclusiveMaximum"])
