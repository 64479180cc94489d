"""Safe YAML loading that remembers where every key came from.

YAML silently keeps the last of two equal keys; here that is an error.
Every mapping key and list item gets a 1-based line number, so later checks
can say ``sweep.yaml:12 at sweep.product.n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import KeyPath, ManifestError, format_key_path


@dataclass
class SourceMap:
    """Line numbers of the keys of one YAML document, by key path."""

    file: Path | None
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        """The line of ``key_path``, or of its nearest ancestor that has one."""
        path = tuple(key_path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, key_path: KeyPath, message: str, hint: str = "") -> ManifestError:
        return ManifestError(
            message=message,
            hint=hint,
            file=self.file,
            line=self.line_of(key_path),
            key_path=tuple(key_path),
        )


def _index_nodes(node: yaml.Node, path: KeyPath, source: SourceMap, seen_nodes: set[int]) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen_nodes:  # an alias: its keys were indexed where it was defined
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise source.error(path, "YAML merge keys (<<) are not supported", "write the keys out")
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ManifestError(
                    message=f"duplicate key {key!r} (first on line {seen[key]})",
                    hint="YAML keeps only the last of two equal keys: remove or rename one",
                    file=source.file,
                    line=line,
                    key_path=(*path, key),
                )
            seen[key] = line
            source.lines[(*path, key)] = line
            _index_nodes(value_node, (*path, key), source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            source.lines[(*path, index)] = item.start_mark.line + 1
            _index_nodes(item, (*path, index), source, seen_nodes)


def load_yaml_text(text: str, file: Path | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML document; return its data and the line of every key."""
    source = SourceMap(file=file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        _index_nodes(node, (), source, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ManifestError(
            message=f"not valid YAML: {exc.problem or exc.context}",
            hint="check indentation, colons and quotes around this line",
            file=file,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(message=f"not valid YAML: {exc}", file=file) from None
    except RecursionError:
        raise ManifestError(message="YAML nesting is too deep", file=file) from None
    finally:
        loader.dispose()
    return data, source


def load_yaml_file(path: Path) -> tuple[Any, SourceMap]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(
            message=f"manifest not found: {path}",
            hint="check the path; manifests are YAML files such as sweep.yaml",
        ) from None
    except IsADirectoryError:
        raise ManifestError(message=f"{path} is a directory, not a manifest file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            message=f"manifest is not UTF-8 text (byte {exc.start})",
            hint="save the file as UTF-8",
            file=path,
        ) from None
    return load_yaml_text(text, path)


def parse_yaml_value(text: str, what: str) -> Any:
    """A YAML scalar or flow collection from the command line (``--set k=[1,2]``)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ManifestError(
            message=f"{what}: {text!r} is not a YAML value ({exc.__class__.__name__})",
            hint="quote strings with special characters, e.g. --set 'name=\"a: b\"'",
        ) from None


__all__ = ["SourceMap", "format_key_path", "load_yaml_file", "load_yaml_text", "parse_yaml_value"]
