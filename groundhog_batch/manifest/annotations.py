"""What a parameter's annotation accepts, read from the script's text (never by running it).

Only annotations made of plain types are understood: ``int``, ``float``,
``str``, ``bool``, ``list``, ``dict`` (with or without item types), ``None``,
``Optional[...]``, ``Literal[...]``, ``Union[...]`` and ``X | Y`` of these,
also written as a string or through ``typing.``. Anything else (a class of
the script's, ``np.ndarray``, ``datetime.date``) is not checked: such values
go to the call as they are. A value fits ``float`` when it is an int or a
float (as for a type checker); ``bool`` is never taken for an ``int``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..type_names import Any

_KINDS = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list",
    "List": "list",
    "dict": "dict",
    "Dict": "dict",
    "None": "none",
    "NoneType": "none",
}
_CONTAINERS = {"list", "List", "dict", "Dict"}


@dataclass(frozen=True)
class PlainType:
    """The values an annotation of plain types accepts."""

    text: str  # the annotation as written
    kinds: frozenset[str]
    literals: tuple[Any, ...] = ()

    def accepts(self, value: Any) -> bool:
        kind = _kind_of(value)
        if kind in self.kinds or (kind == "int" and "float" in self.kinds):
            return True
        return any(_kind_of(literal) == kind and literal == value for literal in self.literals)


def _kind_of(value: Any) -> str | None:
    if value is None:
        return "none"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value)
    )


class _Unknown(Exception):
    """The annotation uses something other than plain types."""


def plain_type(node: ast.expr | None) -> PlainType | None:
    """What the annotation ``node`` accepts, or None when it is absent or not made of plain types only."""
    if node is None:
        return None
    try:
        kinds, literals = _read(node)
    except (_Unknown, SyntaxError, RecursionError):
        return None
    return PlainType(
        ast.unparse(node) if not isinstance(node, ast.Constant) else str(node.value),
        frozenset(kinds),
        tuple(literals),
    )


def _name(node: ast.expr) -> str | None:
    """``int``, ``typing.Optional``, ``t.Literal`` -> the last name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr
    return None


def _read(node: ast.expr) -> tuple[set[str], list[Any]]:
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"none"}, []
        if isinstance(node.value, str):  # a forward reference: "int | None"
            return _read(ast.parse(node.value, mode="eval").body)
        raise _Unknown()
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _read(node.left), _read(node.right)
        return left[0] | right[0], left[1] + right[1]
    name = _name(node)
    if name in _KINDS:
        return {_KINDS[name]}, []
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer in _CONTAINERS:
            return {_KINDS[outer]}, []
        if outer == "Optional" and len(items) == 1:
            kinds, literals = _read(items[0])
            return kinds | {"none"}, literals
        if outer == "Union":
            kinds, literals = set(), []
            for item in items:
                more = _read(item)
                kinds |= more[0]
                literals += more[1]
            return kinds, literals
        if outer == "Annotated" and items:
            return _read(items[0])
        if outer == "Literal":
            values = []
            for item in items:
                if not isinstance(item, ast.Constant) or type(item.value) not in (
                    bool,
                    int,
                    float,
                    str,
                    type(None),
                ):
                    raise _Unknown()
                values.append(item.value)
            return set(), values
    raise _Unknown()


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def fix_for(value: Any, annotation: PlainType, where: str) -> str:
    """How to give a value ``annotation`` accepts, from what the user wrote (``'1000,2000'``, ``'0.05'``)."""
    if isinstance(value, str) and annotation.kinds & {"int", "float"}:
        parts = [part.strip() for part in value.split(",")]
        if len(parts) > 1 and all(_number(part) is not None for part in parts):
            listed = "[" + ",".join(parts) + "]"
            return (
                f"to sweep several values, give a list: {where}: {listed} "
                f"(on the command line: --set '{where}={listed}')"
            )
        number = _number(value.strip())
        if number is not None and annotation.accepts(number):
            return (
                f"write the number without quotes: {value.strip()} (quoted, YAML reads it as text)"
            )
    kinds = " or ".join("None" if kind == "none" else kind for kind in sorted(annotation.kinds))
    wanted = kinds
    if annotation.literals:
        wanted = (
            "one of "
            + ", ".join(map(repr, annotation.literals))
            + (f", or {kinds}" if kinds else "")
        )
    return f"give {wanted}, or change the annotation if the function takes other values"


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def with_article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"
