"""``hog-batch init``: a starter manifest written from a function's signature, read statically.

The script is parsed with ``ast`` (as ``validate`` reads it), never run. Each
required parameter becomes a swept list of placeholder values chosen from
its annotation; each parameter with a simple default is swept over just that
default, so the file validates as written and shows where values go.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from ..columns import reserved
from ..errors import ManifestError
from ..type_names import Any
from .schema import SCHEMA_RESOURCE
from .script_shape import defined_callables, find_function

PLACEHOLDERS: dict[str, list[Any]] = {
    "int": [1, 2, 3],
    "float": [0.1, 1.0, 10.0],
    "str": ["a", "b"],
    "bool": [True, False],
    "list": [[1, 2]],
    "dict": [{"key": "value"}],
}


def schema_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("groundhog_batch").joinpath(SCHEMA_RESOURCE)))


def _public_functions(tree: ast.Module) -> list[str]:
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    ]


def _definition(tree: ast.Module, function: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The ``def`` a call runs (a class's ``__init__`` for a class), or None when it is not a plain def."""
    node: ast.AST | None = None
    scope: list[ast.stmt] = tree.body
    for part in function.split("."):
        node = next((n for n in reversed(scope) if getattr(n, "name", None) == part), None)
        if node is None:
            return None
        scope = getattr(node, "body", [])
    if isinstance(node, ast.ClassDef):
        node = next(
            (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
        )
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _annotation_name(annotation: ast.expr | None) -> str | None:
    if annotation is None:
        return None
    text = ast.unparse(annotation).replace("typing.", "")
    for name in PLACEHOLDERS:
        if text == name or text.lower().startswith(f"{name}[") or text.startswith(f"{name} |"):
            return name
    return text


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(node)
        json.dumps(value)
        return True, value
    except (ValueError, TypeError, SyntaxError):
        return False, None


def _yaml(value: Any) -> str:
    """A YAML flow value (JSON is YAML)."""
    return json.dumps(value)


def starter_manifest(script: Path, function: str | None, manifest_path: Path) -> str:
    """The text of a starter manifest for ``function`` in ``script``, to be saved at ``manifest_path``."""
    try:
        text = script.read_text("utf-8")
    except FileNotFoundError:
        raise ManifestError(
            message=f"script not found: {script}", hint="give the path of your Python script"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            message=f"cannot read {script}: {exc}", hint="give a UTF-8 Python script"
        ) from None
    try:
        tree = ast.parse(text, filename=str(script))
    except SyntaxError as exc:
        raise ManifestError(
            message=f"script does not parse: {exc.msg}",
            file=script,
            line=exc.lineno,
            hint="fix the syntax error; hog-batch reads the script without running it",
        ) from None
    if function is None:
        public = _public_functions(tree)
        if len(public) != 1:
            found = (
                f"it defines {', '.join(public)}"
                if public
                else "it defines no public top-level function"
            )
            raise ManifestError(
                message=f"which function of {script.name} should run? {found}",
                hint=f"name it: hog-batch init {script} FUNCTION",
            )
        function = public[0]
    shape = find_function(tree, function)
    if shape is None:
        candidates = defined_callables(tree)
        raise ManifestError(
            message=f"{script.name} defines no function {function!r}",
            hint=f"functions defined there: {', '.join(candidates)}"
            if candidates
            else "define it at the top level of the script",
        )
    definition = _definition(tree, function)
    relative = os.path.relpath(script.absolute(), manifest_path.absolute().parent)
    lines = [
        f"# yaml-language-server: $schema={schema_path()}",
        f"# A starter manifest for {function}() in {script.name}, written by `hog-batch init`.",
        "# Put the values to try in the lists under sweep.product: each combination is one call.",
        f"# Then: hog-batch validate {manifest_path.name} && hog-batch plan {manifest_path.name} && "
        f"hog-batch submit {manifest_path.name}",
        f"script: {_yaml(relative)}",
        f"function: {_yaml(function)}",
    ]
    n_positional = len(shape.signature.positional) if shape.signature is not None else None
    lines += _sweep_lines(definition, n_positional)
    lines += [
        "# calls_per_task: auto       # calls run one after another in one task",
        "# max_parallel: 4            # tasks at once",
        "# timeout: 600               # seconds per call",
        "# retries: 0",
        "# output: results-{run}.csv  # also export the results table ({run}, {timestamp} are filled in)",
    ]
    return "\n".join(lines) + "\n"


def _sweep_lines(
    definition: ast.FunctionDef | ast.AsyncFunctionDef | None, n_positional: int | None
) -> list[str]:
    """``n_positional``: how many positional parameters a call fills (a method's ``self`` is not one)."""
    if definition is None:
        return [
            "# its parameters could not be read from the script: add them below",
            "sweep:",
            "  product:",
            "    x: [1, 2, 3]  # replace with the function's parameters",
        ]
    a = definition.args
    positional = [*a.posonlyargs, *a.args]
    if n_positional is not None and len(positional) == n_positional + 1:
        positional = positional[1:]
    defaults: dict[str, ast.expr] = (
        dict(
            zip(
                [p.arg for p in positional[len(positional) - len(a.defaults) :]],
                a.defaults,
                strict=True,
            )
        )
        if a.defaults
        else {}
    )
    defaults.update(
        {p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None}
    )
    positional_only = {p.arg for p in a.posonlyargs}
    fixed_args: list[str] = []
    fixed_kwargs: list[str] = []
    swept: list[str] = []
    for parameter in [*positional, *a.kwonlyargs]:
        name = parameter.arg
        kind = _annotation_name(parameter.annotation)
        described = f"{name}: {kind}" if kind else name
        if (
            reserved(name) and name not in positional_only
        ):  # a column of the results table: a fixed value, not swept
            note = "named like a column of the results table, so the same in every call (kwargs), not swept"
            if name in defaults:
                fixed_kwargs.append(
                    f"  # {name}: ...  # {described} = {ast.unparse(defaults[name])} (its default); {note}"
                )
            else:
                placeholder = PLACEHOLDERS.get(kind or "", [1, 2, 3])[0]
                fixed_kwargs.append(
                    f"  {name}: {_yaml(placeholder)}  # {described}: REPLACE; {note}"
                )
            continue
        if name in defaults:
            ok, value = _literal(defaults[name])
            if name in positional_only:
                continue
            if ok:
                swept.append(
                    f"    {name}: [{_yaml(value)}]  # {described} = {_yaml(value)} (its default)"
                )
            else:
                swept.append(
                    f"    # {name}: [...]  # {described} = {ast.unparse(defaults[name])} (its default)"
                )
            continue
        values = PLACEHOLDERS.get(kind or "", [1, 2, 3])
        if name in positional_only:
            fixed_args.append(
                f"  - {_yaml(values[0])}  # {described}: positional-only, the same for every call"
            )
        else:
            swept.append(
                f"    {name}: {_yaml(values)}  # {described}: REPLACE with the values to try"
            )
    lines = (["args:", *fixed_args] if fixed_args else []) + (
        ["kwargs:", *fixed_kwargs]
        if any(not line.lstrip().startswith("#") for line in fixed_kwargs)
        else fixed_kwargs
    )
    if a.vararg is not None or a.kwarg is not None:
        lines.append("# it also takes *args/**kwargs: fixed values go under args: / kwargs:")
    if not any(not line.lstrip().startswith("#") for line in swept):
        return [
            *lines,
            "# it takes no parameters to sweep: one call",
            "sweep:",
            "  product: {}",
            *swept,
        ]
    return [*lines, "sweep:", "  product:", *swept]


def write_starter(
    script: str | Path, function: str | None, manifest_path: str | Path | None = None
) -> Path:
    """Write the starter manifest (default ``<script stem>.yaml`` here); never overwrite a file."""
    script = Path(script)
    target = Path(manifest_path) if manifest_path else Path(f"{script.stem}.yaml")
    if target.exists():
        raise ManifestError(
            message=f"{target} already exists; hog-batch init never overwrites a file",
            hint="pick another name with -o, or move the existing file away",
        )
    text = starter_manifest(script, function, target)
    from .loader import load_manifest

    load_manifest(target, text=text)  # what it writes validates
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise ManifestError(
            message=f"{target} already exists; hog-batch init never overwrites a file",
            hint="pick another name with -o, or move the existing file away",
        ) from None
    return target


_PLACEHOLDER_LINE = re.compile(r"^\s*-?\s*([A-Za-z_][\w]*)\s*:\s*(.+?)\s+#[^\n]*\bREPLACE\b")


def placeholders_left(text: str) -> list[tuple[int, str, str]]:
    """(line, name, value) of each value ``init`` wrote that still holds its placeholder (its line still says
    REPLACE and its value is still the one ``init`` chose): ``validate`` warns about these until replaced."""
    import yaml

    written = [*PLACEHOLDERS.values(), *(values[0] for values in PLACEHOLDERS.values())]
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _PLACEHOLDER_LINE.match(line)
        if not match:
            continue
        try:
            value = yaml.safe_load(match.group(2))
        except yaml.YAMLError:
            continue
        if any(
            value == placeholder and type(value) is type(placeholder) for placeholder in written
        ):
            found.append((number, match.group(1), match.group(2)))
    return found
