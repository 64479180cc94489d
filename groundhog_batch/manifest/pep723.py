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
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, published as tomli before it joined the standard library
    import tomli as tomllib

from ..errors import ManifestError

# The reference implementation's regex, from PEP 723.
BLOCK_REGEX = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


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
