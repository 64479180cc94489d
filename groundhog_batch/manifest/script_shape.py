"""What a script defines, found statically with ``ast``: the script is never run at plan time."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .annotations import PlainType, plain_type


@dataclass(frozen=True)
class Signature:
    """The parameters of a function, as far as its ``def`` says."""

    positional: tuple[str, ...]  # positional-only and positional-or-keyword, in order
    positional_only: tuple[str, ...]
    keyword_only: tuple[str, ...]
    required: frozenset[str]
    var_positional: bool
    var_keyword: bool
    annotations: tuple[
        tuple[str, PlainType], ...
    ] = ()  # parameters annotated with plain types only

    def annotation(self, name: str) -> PlainType | None:
        """What ``name``'s annotation accepts, when it is made of plain types (int, str, Optional, Literal...)."""
        return next((plain for param, plain in self.annotations if param == name), None)

    def problems(
        self, n_args: int, keywords: list[str], check_missing: bool = True
    ) -> list[tuple[str | None, str]]:
        """Why calling with ``n_args`` positional arguments and these keywords would fail.

        Each problem comes with the keyword at fault, or None when no single keyword is.
        ``check_missing=False`` skips required parameters no one gives (the keywords are incomplete).
        """
        found: list[tuple[str | None, str]] = []
        if n_args > len(self.positional) and not self.var_positional:
            found.append(
                (None, f"takes {len(self.positional)} positional arguments but args gives {n_args}")
            )
        filled = set(self.positional[:n_args])
        accepted = set(self.positional[n_args:]) - set(self.positional_only) | set(
            self.keyword_only
        )
        for name in keywords:
            if name in filled:
                found.append((name, f"argument {name!r} is given both in args and by name"))
            elif name not in accepted and not self.var_keyword:
                found.append((name, f"has no parameter {name!r}"))
        missing = sorted(self.required - filled - set(keywords))
        if missing and check_missing:
            found.append(
                (
                    None,
                    f"needs {', '.join(map(repr, missing))}, which no args, kwargs or sweep key gives",
                )
            )
        return found

    @property
    def names(self) -> list[str]:
        return [*self.positional, *self.keyword_only]


@dataclass(frozen=True)
class FunctionShape:
    line: int
    signature: Signature | None  # None when the attribute is not a plain def (assigned, imported)
    is_method: bool = False


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool) -> Signature:
    a = node.args
    posonly = [p.arg for p in a.posonlyargs]
    positional = posonly + [p.arg for p in a.args]
    if drop_first and positional:
        positional = positional[1:]
        posonly = posonly[1:] if posonly else []
    n_defaults = len(a.defaults)
    required_positional = positional[: len(positional) - n_defaults] if n_defaults else positional
    required_kwonly = [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
    params = [*a.posonlyargs, *a.args][1 if drop_first else 0 :] + list(a.kwonlyargs)
    annotations = tuple(
        (p.arg, plain) for p in params if (plain := plain_type(p.annotation)) is not None
    )
    return Signature(
        positional=tuple(positional),
        positional_only=tuple(posonly),
        keyword_only=tuple(p.arg for p in a.kwonlyargs),
        required=frozenset(required_positional + required_kwonly),
        var_positional=a.vararg is not None,
        var_keyword=a.kwarg is not None,
        annotations=annotations,
    )


def _is_static_or_class(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[bool, bool]:
    names = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
    return "staticmethod" in names, "classmethod" in names


def _defined_names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Top-level names bound in a body, the last binding winning (as at run time)."""
    names: dict[str, ast.AST] = {}
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = stmt
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign) and isinstance(stmt.target, ast.Name):
            names[stmt.target.id] = stmt
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                names[(alias.asname or alias.name).split(".")[0]] = stmt
        elif isinstance(stmt, ast.If | ast.Try | ast.With):
            nested = list(getattr(stmt, "body", []))
            for extra in ("orelse", "finalbody"):
                nested += getattr(stmt, extra, [])
            for handler in getattr(stmt, "handlers", []):
                nested += handler.body
            for name, node in _defined_names(nested).items():
                names.setdefault(name, node)
    return names


def find_function(tree: ast.Module, attribute_path: str) -> FunctionShape | None:
    """Find ``name`` or ``Class.method`` in a parsed script; None when it is not there."""
    parts = attribute_path.split(".")
    scope = _defined_names(tree.body)
    node = scope.get(parts[0])
    in_class = False
    for part in parts[1:]:
        if not isinstance(node, ast.ClassDef):
            # An attribute of something we cannot see into (an import, an instance): trust it.
            return FunctionShape(line=node.lineno, signature=None) if node is not None else None
        node = _defined_names(node.body).get(part)
        in_class = True
    if node is None:
        return None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        static, classmethod_ = _is_static_or_class(node)
        # A classmethod gets the class; a plain method is called on an instance made with no arguments.
        drop_first = in_class and not static
        shape = _signature(node, drop_first=drop_first)
        return FunctionShape(
            line=node.lineno, signature=shape, is_method=in_class and not (static or classmethod_)
        )
    if isinstance(node, ast.ClassDef):
        init = _defined_names(node.body).get("__init__")
        if isinstance(init, ast.FunctionDef):
            return FunctionShape(line=node.lineno, signature=_signature(init, drop_first=True))
        return FunctionShape(line=node.lineno, signature=None)
    return FunctionShape(line=getattr(node, "lineno", 1), signature=None)


def defined_callables(tree: ast.Module) -> list[str]:
    """Names a user might have meant, for "did you mean" hints."""
    found = []
    for name, node in _defined_names(tree.body).items():
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(name)
        elif isinstance(node, ast.ClassDef):
            found.append(name)
            found += [
                f"{name}.{m}"
                for m, sub in _defined_names(node.body).items()
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
    return found
