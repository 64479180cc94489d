"""PEP 723 inline script metadata, parsed as the specification says.

The block is found with the specification's reference regular expression,
its comment prefixes removed, and the rest read as TOML. TOML errors are
reported at their line in the script, not in the extracted block.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ManifestError
from ..type_names import Any

# The reference implementation's regex, from PEP 723.
BLOCK_REGEX = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
# The lines almost every block is made of: `dependencies = [...]` of plain strings on one line, and
# `requires-python = "..."`. A plain string is a TOML basic string with no escape: any character but the
# quote, the backslash and the controls (tab too, here). A block of only such lines (each key once) and
# blank ones is read without tomllib, which is 3 ms of every start; any other goes to tomllib.
_STRING = r'"[^"\\\x00-\x1f\x7f]*"'
_BLANK = "[ \t]*"
_PLAIN_LINE = re.compile(
    rf"{_BLANK}(?:(?P<key>requires-python){_BLANK}={_BLANK}(?P<string>{_STRING})"
    rf"|(?P<list_key>dependencies){_BLANK}={_BLANK}\[{_BLANK}(?P<items>(?:{_STRING}{_BLANK},{_BLANK})*"
    rf"(?:{_STRING}{_BLANK},?{_BLANK})?)\]){_BLANK}"
)
_ITEM = re.compile(_STRING)


@dataclass(frozen=True)
class ScriptMetadata:
    """What a script's ``# /// script`` block declares."""

    requires_python: str | None = None
    dependencies: tuple[str, ...] = ()
    tool_uv: dict[str, Any] = field(default_factory=dict)
    tool_hog: dict[str, Any] = field(default_factory=dict)
    block_line: int | None = None


def parse_script_metadata(source: str, path: Path) -> ScriptMetadata:
    """Parse the script's metadata block; no block means no metadata."""
    openings = [i for i, line in enumerate(source.splitlines(), start=1) if line == "# /// script"]
    if len(openings) > 1:
        second_line = openings[1]
        raise ManifestError(
            message="more than one '# /// script' metadata block",
            hint="PEP 723 allows one block per script: merge them",
            file=path,
            line=second_line,
        )
    blocks = [m for m in BLOCK_REGEX.finditer(source) if m.group("type") == "script"]
    if not blocks:
        return ScriptMetadata()
    block = blocks[0]
    first_content_line = source.count("\n", 0, block.start("content")) + 1
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in block.group("content").splitlines(keepends=True)
    )
    table = plain_toml(content)
    if table is not None:
        return _metadata_from_table(table, path, first_content_line - 1)
    tomllib = toml_reader()
    try:
        table = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        position = _TOML_POSITION.search(text)
        line = first_content_line + int(position.group(1)) - 1 if position else first_content_line
        raise ManifestError(
            message=f"script metadata is not valid TOML: {_TOML_POSITION.sub('', text).strip()}",
            hint="fix the TOML inside the '# /// script' block (each line starts with '# ')",
            file=path,
            line=line,
        ) from None
    except (
        RecursionError,
        ValueError,
    ) as exc:  # nesting past the recursion limit; an integer of over 4,300 digits
        reason = (
            "it is nested too deeply"
            if isinstance(exc, RecursionError)
            else str(exc).split(":")[0].lower()
        )
        raise ManifestError(
            message=f"script metadata cannot be read: {reason}",
            hint="keep the '# /// script' block to plain tables, strings and lists",
            file=path,
            line=first_content_line,
        ) from None
    return _metadata_from_table(table, path, first_content_line - 1)


def toml_reader():
    """tomllib; on Python 3.10 tomli, the same parser, published before it joined the standard library."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli

    return tomli


def plain_toml(content: str) -> dict[str, Any] | None:
    """What tomllib reads ``content`` as, when it is blank lines and plain key lines only (``_PLAIN_LINE``);
    None for anything else (comments, tables, escapes, a key twice, ...): tomllib reads that."""
    table: dict[str, Any] = {}
    for line in content.split("\n"):
        if not line.strip(" \t"):
            continue
        found = _PLAIN_LINE.fullmatch(line)
        if found is None:
            return None
        key = found.group("key") or found.group("list_key")
        if key in table:
            return None
        if found.group("string") is not None:
            table[key] = found.group("string")[1:-1]
        else:
            table[key] = [item[1:-1] for item in _ITEM.findall(found.group("items"))]
    return table


def _metadata_from_table(table: dict[str, Any], path: Path, block_line: int) -> ScriptMetadata:
    def wrong(key: str, expected: str) -> ManifestError:
        return ManifestError(
            message=f"script metadata: {key} must be {expected}",
            hint="see https://packaging.python.org/specifications/inline-script-metadata/",
            file=path,
            line=block_line,
        )

    requires_python = table.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise wrong("requires-python", 'a string such as ">=3.11"')
    dependencies = table.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise wrong("dependencies", "a list of strings")
    tool = table.get("tool", {})
    if not isinstance(tool, dict):
        raise wrong("tool", "a table")
    tool_uv = tool.get("uv", {})
    tool_hog = tool.get("hog", {})
    if not isinstance(tool_uv, dict):
        raise wrong("[tool.uv]", "a table")
    if not isinstance(tool_hog, dict) or not all(isinstance(v, dict) for v in tool_hog.values()):
        raise wrong("[tool.hog]", "a table of endpoint tables, such as [tool.hog.anvil]")
    return ScriptMetadata(
        requires_python=requires_python,
        dependencies=tuple(dependencies),
        tool_uv=tool_uv,
        tool_hog=tool_hog,
        block_line=block_line,
    )
