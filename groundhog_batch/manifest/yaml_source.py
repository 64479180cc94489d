"""Safe YAML loading that remembers where every key came from.

YAML silently keeps the last of two equal keys; here that is an error.
Every mapping key and list item gets a 1-based line number, so later checks
can say ``sweep.yaml:12 at sweep.product.n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import KeyPath, ManifestError, format_key_path
from ..type_names import Any


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


MAX_INT_DIGITS = 100  # Python refuses to parse ints of over 4,300 digits; no parameter needs 100
MAX_DEPTH = 64  # levels of nesting; deeper breaks recursive consumers and never means anything here
MAX_EXPANDED_VALUES = (
    100_000  # values a document may reach through aliases (an alias bomb reaches 10**9)
)

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with integers bounded so a huge literal is an error, not a crash."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    digits = sum(character.isdigit() for character in node.value)
    if digits > MAX_INT_DIGITS:
        raise ManifestError(
            message=f"an integer of {digits:,} digits is too large (at most {MAX_INT_DIGITS})",
            hint="write a smaller number, or quote it to pass it as text",
            line=node.start_mark.line + 1,
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode):
    """An unquoted date (``2024-01-31``) is a ``datetime.date``; one that is no day (``2024-02-30``) is an error."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as exc:
        raise ManifestError(
            message=f"{node.value} looks like a date, but is none ({exc})",
            hint=f"write a real date, or quote it to pass it as text: '{node.value}'",
            line=node.start_mark.line + 1,
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node, what: str) -> None:
    """Refuse recursive, too deep or alias-exploding documents before anything walks them.

    Work is linear in the nodes written (each node is measured once), however
    many times aliases repeat them.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (values reached, depth)
    on_path: set[int] = set()
    written = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            size = 1 + sum(measured[id(child)][0] for child in children)
            depth = 1 + max((measured[id(child)][1] for child in children), default=0)
            measured[key] = (size, depth)
            line = node.start_mark.line + 1
            if depth > MAX_DEPTH:
                raise ManifestError(
                    message=f"{what} is nested more than {MAX_DEPTH} levels deep",
                    hint="flatten it: no manifest key needs that much nesting",
                    line=line,
                )
            if size > MAX_EXPANDED_VALUES and size > written:
                raise ManifestError(
                    message=f"aliases (*name) here expand to over {MAX_EXPANDED_VALUES:,} values",
                    hint="write the values out, or repeat an anchor fewer times",
                    line=line,
                )
            continue
        if key in measured:
            continue
        if key in on_path:
            raise ManifestError(
                message="an alias (*name) refers to a collection that contains it: the value would be infinite",
                hint="refer to an anchor (&name) from outside its own value",
                line=node.start_mark.line + 1,
            )
        on_path.add(key)
        written += 1
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)


def _index_nodes(node: yaml.Node, path: KeyPath, source: SourceMap, seen_nodes: set[int]) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen_nodes:  # an alias: its keys were indexed where it was defined
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise source.error(
                    path, "YAML merge keys (<<) are not supported", "write the keys out"
                )
            if isinstance(key_node, yaml.ScalarNode):
                # A key is the text written: YAML 1.1 would read `on:`, `yes:` or `no:` as booleans.
                key_node.tag = _STR_TAG
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


# PyYAML's own words for what it found, and plain ones.
_TOKEN_WORDS = {
    "<block end>": "the end of an indented block",
    "<stream end>": "the end of the text",
    "<block mapping start>": "an indented key",
    "<block sequence start>": "an indented list",
    "<scalar>": "a value",
    "<document start>": "'---'",
    "<flow mapping end>": "'}'",
    "<flow sequence end>": "']'",
}

_PLAIN_SYNTAX: list[tuple[str, str, str]] = [
    # (fragment of PyYAML's problem, what is wrong, how to fix it)
    (
        "expected <block end>, but found '?'",
        "this key is indented like the list items above, not like a key",
        "line it up with the key that holds the list, or make it a list item with '- '",
    ),
    (
        "expected <block end>",
        "this line is indented differently from the lines above it, or a value goes on after its closing quote or bracket",
        "keys of one mapping start in the same column, indented with spaces; quote a value that has its own quotes or brackets",
    ),
    (
        "mapping values are not allowed here",
        "a ':' where YAML cannot start a key: a value with ': ' in it, or a line indented under a plain value",
        "quote the value (key: \"a: b\"), or indent a nested key under a key that ends with ':'",
    ),
    (
        "sequence entries are not allowed here",
        "a list item ('- ') on the same line as its key",
        "put the items on the following lines, indented, or write the list as [a, b]",
    ),
    (
        "could not find expected ':'",
        "a line that is not `key: value` (a missing ':' or an unclosed quote above)",
        "add ': ' after the key, or close the quote",
    ),
    (
        "expected ',' or ']'",
        "a list opened with '[' is not closed with ']'",
        "close the list with ']' and separate items with ','",
    ),
    (
        "expected ',' or '}'",
        "a mapping opened with '{' is not closed with '}'",
        "close it with '}' and separate entries with ','",
    ),
    (
        "expected the node content",
        "a value is missing: the text ends, or a bracket or ',' comes where a value should be",
        "close every '[' with ']' and every '{' with '}', and give each key a value",
    ),
    (
        "found character '\\t'",
        "a tab character: YAML indents with spaces only",
        "replace the tabs with spaces",
    ),
    (
        "found undefined alias",
        "an alias (*name) refers to no anchor (&name) defined before it",
        "define the anchor first, or quote a value that starts with '*'",
    ),
    ("found unexpected end of stream", "a quote is opened but never closed", "close the quote"),
    (
        "found unhashable key",
        "a key that is a list or a mapping",
        "keys are plain names: write key: value",
    ),
    (
        "but found another document",
        "a second YAML document (after a '---' line)",
        "keep one document per manifest: remove the '---' line",
    ),
    (
        "found unknown escape character",
        'an unknown backslash escape in a "double-quoted" string',
        "use 'single quotes' for text with backslashes, or double the backslash",
    ),
    (
        "could not determine a constructor for the tag",
        "an unknown tag (!name)",
        "remove the tag: a manifest holds plain values",
    ),
    (
        "that cannot start any token",
        "a character that cannot start a plain value",
        "quote the value",
    ),
    (
        "did not find expected key",
        "this line is indented differently from the keys above it",
        "keys of one mapping start in the same column",
    ),
    (
        "did not find expected '-' indicator",
        "this list item is indented differently from the items above it",
        "start every item in the same column",
    ),
    (
        "found duplicate anchor",
        "an anchor name (&name) is used twice",
        "give each anchor its own name",
    ),
]


def _plain_syntax_error(exc: yaml.MarkedYAMLError) -> tuple[str, str, int | None]:
    """PyYAML's message in plain words, with a fix and the line to point at."""
    problem = exc.problem or exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    for fragment, message, hint in _PLAIN_SYNTAX:
        if fragment in problem or fragment in (exc.context or ""):
            if fragment.startswith("expected ','") and exc.context_mark is not None:
                message += f" (opened on line {exc.context_mark.line + 1})"
            return message, hint, line
    for token, words in _TOKEN_WORDS.items():
        problem = problem.replace(f"'{token}'", words).replace(token, words)
    return problem, "check indentation, colons and quotes around this line", line


def _reader_error(exc: yaml.reader.ReaderError, text: str) -> ManifestError:
    """A character YAML does not allow (a NUL byte, a control character), at its line."""
    position = min(exc.position, len(text))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    name = "NUL" if exc.character == 0 else f"U+{exc.character:04X}"
    return ManifestError(
        message=f"the control character {name} (code {exc.character}) at column {column} is not allowed",
        hint="remove it: a manifest is plain text (a NUL often means a binary file or a bad copy)",
        line=line,
    )


def _parse(text: str, file: Path | None, what: str) -> tuple[Any, SourceMap]:
    source = SourceMap(file=file)
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, source
        _check_size(node, what)
        _index_nodes(node, (), source, set())
        data = loader.construct_document(node)
    except ManifestError as exc:
        exc.file = exc.file or file
        raise
    except yaml.reader.ReaderError as exc:
        error = _reader_error(exc, text)
        error.file = file
        raise error from None
    except yaml.MarkedYAMLError as exc:
        message, hint, line = _plain_syntax_error(exc)
        raise ManifestError(
            message=f"not valid YAML: {message}", hint=hint, file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(message=f"not valid YAML: {exc}", file=file) from None
    except RecursionError:
        raise ManifestError(
            message=f"{what} is nested too deep", hint="flatten it", file=file
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, source


def load_yaml_text(text: str, file: Path | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML document; return its data and the line of every key.

    Keys are always the text written, integers are bounded, and a document
    that is recursive, nested too deep or multiplied by aliases is refused
    before anything walks it: bad input is an error in bounded time.
    """
    return _parse(text, file, "the manifest")


def load_yaml_file(path: Path) -> tuple[Any, SourceMap]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(
            message=f"manifest not found: {path}",
            hint="check the path; manifests are YAML files such as sweep.yaml",
        ) from None
    except IsADirectoryError:
        raise ManifestError(
            message=f"{path} is a directory, not a manifest file",
            hint="give the path of a YAML file inside it",
        ) from None
    except OSError as exc:
        raise ManifestError(
            message=f"cannot read the manifest {path}: {exc.strerror}",
            hint="check the path and its permissions",
        ) from None
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
    if not text.strip():
        return ""
    try:
        value, _ = _parse(text, None, "the value")
    except ManifestError as exc:
        raise ManifestError(
            message=f"{what}: {exc.message}",
            hint=exc.hint or "quote strings with special characters, e.g. --set 'name=\"a: b\"'",
        ) from None
    return value


__all__ = ["SourceMap", "format_key_path", "load_yaml_file", "load_yaml_text", "parse_yaml_value"]
