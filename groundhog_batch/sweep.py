"""A sweep spec, expanded into points: deterministic order, streamed.

A sweep object's groups (product, zip, rows, chunks) combine as a cartesian
product in the order they are written; inside ``product`` the last key varies
fastest. A list of sweep objects is their union, in order. Nothing here holds
all points at once: the points of a 1,000,000-call sweep are produced one by
one from a few short lists of values (the axes).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import math
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import datafiles
from .columns import meaning, reserved, reserved_names_text
from .errors import KeyPath, ManifestError, unreadable_file
from .type_names import TYPE_CHECKING, Any

if TYPE_CHECKING:  # made only by a sweep that reads a file or cuts a list in chunks
    from .sweep_data import ChunkSource, RowsFile

# A fragment of a point: (parameter name, value in the results table, value passed to the function).
Fragment = tuple[tuple[str, Any, Any], ...]
Locate = Callable[[KeyPath, str, str], ManifestError]
MAX_CALLS_PER_JOB = 100_000_000


# params: what the results table shows (a chunk's index for chunks); kwargs: what the function receives
# (ChunkRef for chunks passed by value). A plain namedtuple: typing's NamedTuple imports typing (type_names.py).
Point = namedtuple("Point", ["params", "kwargs"], module=__name__)


@dataclass
class SweepPart:
    """One sweep object: its axes, combined as a product, minus exclusions."""

    axes: list[Sequence[Fragment]]
    names: list[str]
    exclude: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[str, KeyPath] = field(default_factory=dict)  # where each parameter is swept

    def size_before_exclude(self) -> int:
        return math.prod(len(axis) for axis in self.axes)

    def count(self) -> int:
        """Points left after ``exclude``, without walking them.

        Whether a point is excluded depends only on the axes an entry names, and
        on each of those only through which entries its value satisfies. So the
        items of each such axis fall into a few classes (by the entries they
        satisfy), and the count is a sum over combinations of classes: work in
        the number of entries and of listed values, not in the number of points.
        """
        size = self.size_before_exclude()
        entries = [
            entry for entry in self.exclude if entry and all(key in self.names for key in entry)
        ]
        if not entries or size == 0:
            return size
        touched: list[list[tuple[frozenset[int], int]]] = []
        constrained_by: list[list[int]] = [
            [] for _ in entries
        ]  # entry -> the touched axes it names
        untouched = 1
        for axis in self.axes:
            names = _axis_names(axis)
            constraining = [i for i, entry in enumerate(entries) if names & entry.keys()]
            if not constraining:
                untouched *= len(axis)
                continue
            for i in constraining:
                constrained_by[i].append(len(touched))
            touched.append(_classes(axis, names, entries, constraining))
        if math.prod(len(classes) for classes in touched) > MAX_EXCLUDE_COMBINATIONS:
            raise ExcludeTooComplex()
        excluded = 0
        for combination in itertools.product(*touched):
            if any(
                all(i in combination[a][0] for a in constrained_by[i]) for i in range(len(entries))
            ):
                excluded += math.prod(count for _, count in combination)
        return size - excluded * untouched


@dataclass
class Sweep:
    parts: list[SweepPart]
    chunk_sources: dict[str, ChunkSource]
    rows_files: dict[str, RowsFile] = field(default_factory=dict)  # resolved path -> what was read

    @property
    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for part in self.parts:
            seen.update(dict.fromkeys(part.names))
        return list(seen)

    def origin(self, name: str) -> KeyPath | None:
        """Where the manifest sweeps ``name`` (its first place)."""
        for part in self.parts:
            if name in part.origins:
                return part.origins[name]
        return None

    def points(self) -> Iterator[Point]:
        for params, kwargs in self.pairs():
            yield Point(params, kwargs)

    def pairs(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """The points as plain ``(params, kwargs)`` tuples: what planning a million calls walks."""
        for part in self.parts:
            if any(len(axis) == 0 for axis in part.axes):
                continue
            *outer, last = part.axes or [[()]]
            for fragments in odometer(outer):
                base_params: dict[str, Any] = {}
                base_kwargs: dict[str, Any] = {}
                for fragment in fragments:
                    for name, shown, passed in fragment:
                        base_params[name] = shown
                        base_kwargs[name] = passed
                yield from _innermost(part, base_params, base_kwargs, last)

    def passed_values(self) -> Iterator[tuple[str, KeyPath, int | None, Any]]:
        """(parameter, where it is swept, its row in a rows file or None, a value the function receives), for
        every value the manifest or a rows file lists; a range gives its first value (all are ints); chunks none."""
        for part in self.parts:
            for axis in part.axes:
                if isinstance(axis, _LazyAxis):
                    if axis.name in self.chunk_sources:
                        continue
                    values = axis.values[:1] if isinstance(axis.values, range) else axis.values
                    for value in values:
                        yield axis.name, part.origins.get(axis.name, ()), None, value
                    continue
                for row, fragment in enumerate(axis):
                    for name, _, passed in fragment:
                        if name not in self.chunk_sources:
                            origin = part.origins.get(name, ())
                            yield (
                                name,
                                origin,
                                row if origin and origin[-1] == "rows" else None,
                                passed,
                            )

    def columns(self, start: int, stop: int) -> dict[str, list] | None:
        """The table values of points ``start``..``stop - 1``, one list per parameter (None where a point lacks it).

        Computed from the axes by position, without walking the points before
        ``start``; None when a part has exclusions (then walk ``points()``).
        """
        if any(part.exclude for part in self.parts):
            return None
        out: dict[str, list] = {name: [] for name in self.names}
        offset = 0
        for part in self.parts:
            size = part.size_before_exclude()
            first, last = max(start - offset, 0), min(stop - offset, size)
            offset += size
            if first >= last:
                continue
            found: dict[str, list] = {}
            stride = size
            for axis in part.axes:
                length = len(axis)
                stride //= length
                positions = [(i // stride) % length for i in range(first, last)]
                if isinstance(axis, _LazyAxis):
                    found[axis.name] = [axis.values[i] for i in positions]
                    continue
                fragments = [axis[i] for i in positions]
                for p, (name, _, _) in enumerate(axis[0]):
                    found[name] = [fragment[p][1] for fragment in fragments]
            for name, column in out.items():
                column.extend(found.get(name) or [None] * (last - first))
        return out

    def product_axes(self) -> list[list] | None:
        """The sweep as one product of axes a task can expand itself (``runner.expand_grid``): ``[name, values]``
        for one keyword, ``[None, entries]`` (dicts of keywords passed) for a group; None where it is not one
        (several sweep objects, exclusions, chunks of a data file, an empty axis)."""
        if len(self.parts) != 1 or self.chunk_sources:
            return None
        part = self.parts[0]
        if part.exclude or any(len(axis) == 0 for axis in part.axes):
            return None
        return [
            [axis.name, axis.values]
            if isinstance(axis, _LazyAxis)
            else [None, [{name: passed for name, _, passed in entry} for entry in axis]]
            for axis in part.axes
        ]

    def count(self) -> int:
        """The number of points, counted arithmetically: an exclude over 10**8 points takes no longer than over 10."""
        return sum(part.count() for part in self.parts)

    def why_empty(self) -> str:
        """Why a sweep gives no points, in a few words (for the error saying so)."""
        for part in self.parts:
            for axis in part.axes:
                if len(axis) == 0:
                    names = axis.name if isinstance(axis, _LazyAxis) else "a group"
                    return f" ({names} has no values)"
        excluded = sum(part.size_before_exclude() for part in self.parts)
        return f" (exclude drops all {excluded:,} points)" if excluded else ""


class ExcludeTooComplex(Exception):
    """So many exclude entries over so many values that counting the points would take too long."""


MAX_EXCLUDE_COMBINATIONS = 1_000_000


def _axis_names(axis: Sequence[Fragment]) -> set[str]:
    if isinstance(axis, _LazyAxis):
        return {axis.name}
    return {name for name, _, _ in axis[0]} if len(axis) else set()


def _classes(
    axis: Sequence[Fragment],
    names: set[str],
    entries: list[dict[str, Any]],
    constraining: list[int],
) -> list[tuple[frozenset[int], int]]:
    """The axis's items grouped by the set of entries (among ``constraining``) whose keys on this axis they satisfy."""
    counts: dict[frozenset[int], int] = {}
    if isinstance(axis, _LazyAxis) and isinstance(axis.values, range):
        matched: dict[int, set[int]] = {}  # value in the range -> entries it satisfies
        for i in constraining:
            wanted = entries[i][axis.name]
            if isinstance(wanted, float) and wanted.is_integer():
                wanted = int(wanted)
            if type(wanted) is int and wanted in axis.values:
                matched.setdefault(wanted, set()).add(i)
        for satisfied in matched.values():
            counts[frozenset(satisfied)] = counts.get(frozenset(satisfied), 0) + 1
        others = len(axis.values) - len(matched)
        if others:
            counts[frozenset()] = counts.get(frozenset(), 0) + others
        return list(counts.items())
    for position in range(len(axis)):
        shown = {name: value for name, value, _ in axis[position]}
        satisfied = frozenset(
            i
            for i in constraining
            if all(_same(shown[key], value) for key, value in entries[i].items() if key in names)
        )
        counts[satisfied] = counts.get(satisfied, 0) + 1
    return list(counts.items())


def _same(a: Any, b: Any) -> bool:
    """Equal, without YAML's true matching 1."""
    return (isinstance(a, bool) == isinstance(b, bool)) and a == b


def _matches(params: dict[str, Any], entry: dict[str, Any]) -> bool:
    return all(key in params and _same(params[key], value) for key, value in entry.items())


def _innermost(
    part: SweepPart,
    base_params: dict[str, Any],
    base_kwargs: dict[str, Any],
    axis: Sequence[Fragment],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The points along the fastest axis, the other axes' values fixed: the hot loop of planning."""
    exclude = part.exclude
    if (
        isinstance(axis, _LazyAxis) and not exclude
    ):  # one name, shown as passed: no per-point fragment
        name = axis.name
        for value in axis.values:
            params = base_params.copy()
            params[name] = value
            kwargs = base_kwargs.copy()
            kwargs[name] = value
            yield params, kwargs
        return
    for fragment in axis:
        params = base_params.copy()
        kwargs = base_kwargs.copy()
        for name, shown, passed in fragment:
            params[name] = shown
            kwargs[name] = passed
        if exclude and any(_matches(params, entry) for entry in exclude):
            continue
        yield params, kwargs


def odometer(axes: Sequence[Sequence[Fragment]]) -> Iterator[tuple[Fragment, ...]]:
    """The cartesian product of indexable axes, last axis fastest, without copying them."""
    if any(len(axis) == 0 for axis in axes):
        return
    if not axes:
        yield ()
        return
    lengths = [len(axis) for axis in axes]
    indices = [0] * len(axes)
    current = [axis[0] for axis in axes]
    last = len(axes) - 1
    while True:
        yield tuple(current)
        position = last
        while position >= 0:
            indices[position] += 1
            if indices[position] < lengths[position]:
                current[position] = axes[position][indices[position]]
                break
            indices[position] = 0
            current[position] = axes[position][0]
            position -= 1
        if position < 0:
            return


class _LazyAxis(Sequence):
    """An axis over a range (or other sequence) of values, built on demand."""

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        self.name, self.values = name, values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index):  # type: ignore[override]
        value = self.values[index]
        return ((self.name, value, value),)


# --- value specs -------------------------------------------------------------------------


def linspace(start: float, stop: float, num: int) -> list[float]:
    """NumPy's ``linspace``, to the last bit (what a scientist compares against)."""
    import numpy as np

    return [float(v) for v in np.linspace(start, stop, num)]


def geomspace(start: float, stop: float, num: int) -> list[float]:
    """NumPy's ``geomspace``, to the last bit."""
    import numpy as np

    return [float(v) for v in np.geomspace(start, stop, num)]


def range_length(bounds: Sequence[int]) -> int:
    """len(range(*bounds)), for any integers (len() fails past 2**63)."""
    start, stop, step = (
        (0, bounds[0], 1)
        if len(bounds) == 1
        else (bounds[0], bounds[1], bounds[2] if len(bounds) == 3 else 1)
    )
    if step > 0:
        return max(0, (stop - start + step - 1) // step)
    return max(0, (start - stop - step - 1) // -step)


def value_spec_length(spec: Any) -> int:
    """How many values a (schema-valid) value spec gives, without making them."""
    if isinstance(spec, list):
        return len(spec)
    if not isinstance(spec, dict):
        return 1
    if "values" in spec:
        return len(spec["values"])
    if "range" in spec:
        return (
            range_length(spec["range"])
            if not (len(spec["range"]) == 3 and spec["range"][2] == 0)
            else 0
        )
    return spec.get("linspace", spec.get("geomspace", [0, 0, 0]))[2]


def _check_axis_length(n_values: int, where: KeyPath, locate: Locate) -> None:
    if n_values > MAX_CALLS_PER_JOB:
        raise locate(
            where,
            f"this gives {n_values:,} values, over the limit of {MAX_CALLS_PER_JOB:,} calls per job",
            "sweep fewer values, or chunk the data so one call handles many points",
        )


def expand_value_spec(spec: Any, where: KeyPath, locate: Locate) -> Sequence[Any]:
    """The values of one swept parameter, as a sequence (a range stays lazy)."""
    if isinstance(spec, list):
        return spec
    if not isinstance(spec, dict):
        return [spec]
    if "values" in spec:
        return spec["values"]
    if "range" in spec:
        bounds = spec["range"]
        if len(bounds) == 3 and bounds[2] == 0:
            raise locate(
                (*where, "range"),
                "range step must not be 0",
                "use a positive or negative step, e.g. {range: [0, 10, 2]}",
            )
        if range_length(bounds) == 0:
            raise locate(
                (*where, "range"),
                f"range {bounds} is empty",
                "for counting down give a negative step, e.g. {range: [10, 0, -1]}",
            )
        _check_axis_length(range_length(bounds), (*where, "range"), locate)
        return range(*bounds)
    kind = "linspace" if "linspace" in spec else "geomspace"
    start, stop, num = spec[kind]
    _check_axis_length(num, (*where, kind), locate)
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise locate(
            (*where, kind),
            f"{kind} needs finite start and stop, got {start} and {stop}",
            f"give numbers, e.g. {{{kind}: [1, 1000, 4]}}",
        )
    if kind == "geomspace" and (start == 0 or stop == 0 or (start > 0) != (stop > 0)):
        raise locate(
            (*where, kind),
            f"geomspace needs non-zero start and stop of the same sign, got {start} and {stop}",
            "use linspace for ranges through zero",
        )
    return linspace(start, stop, num) if kind == "linspace" else geomspace(start, stop, num)


# --- groups --------------------------------------------------------------------------------


def _chunk_bounds(n_items: int, spec: dict[str, Any]) -> list[tuple[int, int]]:
    if "parts" in spec:
        parts = min(spec["parts"], n_items) or 1
        base, extra = divmod(n_items, parts)
        bounds, start = [], 0
        for i in range(parts):
            stop = start + base + (1 if i < extra else 0)
            bounds.append((start, stop))
            start = stop
        return bounds
    size = spec.get("rows") or spec.get("size")
    return [(start, min(start + size, n_items)) for start in range(0, n_items, size)]


_RECORDED: contextvars.ContextVar[tuple[dict[str, Path], dict[str, int]]] = contextvars.ContextVar(
    "recorded_data_files", default=({}, {})
)


@contextlib.contextmanager
def planning_from_run_records(
    rows_copies: dict[str, Path], chunk_rows: dict[str, int]
) -> Iterator[None]:
    """Build sweeps from what a run recorded instead of the live data files (keys: resolved paths).

    A rows file is read from the run's copy (``rows_copies``); a chunked file
    is not read at all, its row count (``chunk_rows``) is all a call's
    parameter (the chunk's index) needs. So ``collect`` and ``logs`` work after
    the files moved or changed.
    """
    token = _RECORDED.set((rows_copies, chunk_rows))
    try:
        yield
    finally:
        _RECORDED.reset(token)


def _resolved(name: str, base_dir: Path) -> Path:
    path = base_dir / name
    with contextlib.suppress(
        OSError, ValueError
    ):  # a name too long or with a NUL is reported as unreadable
        path = path.resolve()
    return path


def _data_file(
    name: str, base_dir: Path, where: KeyPath, locate: Locate, kind: str, suffixes: tuple[str, ...]
) -> Path:
    """A data file named in the manifest (or the run's copy of it): it exists and has a format hog-batch reads."""
    path = _resolved(name, base_dir)
    path = _RECORDED.get()[0].get(str(path), path)
    problem = unreadable_file(path)
    if problem:
        raise locate(
            (*where, "file"), f"{kind} {problem}", "paths are relative to the manifest's folder"
        )
    if path.suffix.lower() not in suffixes:
        raise locate(
            (*where, "file"),
            f"cannot read a {kind} with suffix {path.suffix or '(none)'}",
            f"use one of {', '.join(suffixes)}",
        )
    return path


def _chunk_source(
    name: str, spec: dict[str, Any], base_dir: Path, where: KeyPath, locate: Locate
) -> ChunkSource:
    from .sweep_data import ChunkSource

    sizing = [key for key in ("rows", "size", "parts") if key in spec]
    if len(sizing) != 1:
        raise locate(
            where,
            "a chunked parameter needs exactly one of rows, size or parts"
            + (f" (got {', '.join(sizing)})" if sizing else ""),
            "rows: N for N rows per chunk, or parts: K for K near-equal chunks",
        )
    if ("file" in spec) == ("values" in spec):
        raise locate(
            where,
            "a chunked parameter needs either file or values",
            "file: data.parquet, or values: [1, 2, 3]",
        )
    pass_as = spec.get("pass", "value")
    if "values" in spec:
        if pass_as == "path":
            raise locate(
                (*where, "pass"),
                "pass: path needs a file, not inline values",
                "remove pass, or put the values in a file",
            )
        values = tuple(spec["values"])
        if not values:
            raise locate(
                (*where, "values"),
                "there is nothing to chunk: values is empty",
                "give at least one value",
            )
        return ChunkSource(
            name, None, values, tuple(_chunk_bounds(len(values), spec)), "value", where
        )
    recorded_rows = _RECORDED.get()[1].get(str(_resolved(spec["file"], base_dir)))
    if recorded_rows is not None:
        path, n_rows = _resolved(spec["file"], base_dir), recorded_rows
    else:
        path = _data_file(
            spec["file"], base_dir, where, locate, "data file", datafiles.CHUNK_SUFFIXES
        )
        try:
            n_rows = datafiles.count_rows(path)
        except datafiles.DataFileError as exc:
            raise locate((*where, "file"), str(exc), "check the file's format") from None
    if n_rows == 0:
        raise locate(
            (*where, "file"), f"{path.name} has no rows to chunk", "point at a file with data"
        )
    return ChunkSource(name, path, None, tuple(_chunk_bounds(n_rows, spec)), pass_as, where)


def _chunk_axis(source: ChunkSource) -> list[Fragment]:
    from .sweep_data import ChunkRef

    axis: list[Fragment] = []
    for index, (start, stop) in enumerate(source.bounds):
        if source.pass_as == "path":
            passed: Any = {"path": str(source.file), "start": start, "stop": stop}
        else:
            passed = ChunkRef(source.param, index, start, stop)
        axis.append(((source.param, index, passed),))
    return axis


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows_axis(
    spec: dict[str, Any],
    base_dir: Path,
    where: KeyPath,
    locate: Locate,
    rows_files: dict[str, RowsFile],
) -> tuple[list[Fragment], list[str]]:
    from .sweep_data import RowsFile

    path = _data_file(spec["file"], base_dir, where, locate, "rows file", datafiles.TABLE_SUFFIXES)
    try:
        content = (
            path.read_bytes()
        )  # read once: what is hashed, copied into the run and parsed is one version
    except OSError as exc:
        raise locate(
            (*where, "file"),
            f"cannot read {path.name}: {exc.strerror}",
            "check the file's permissions",
        ) from None
    rows_files[str(_resolved(spec["file"], base_dir))] = RowsFile(
        hashlib.sha256(content).hexdigest(), content
    )
    try:
        available = datafiles.table_columns(path, content)
        columns = spec.get("columns")
        missing = [c for c in columns or [] if c not in available]
        if missing:
            import difflib  # only for a mistake: the did-you-mean

            close = [difflib.get_close_matches(c, available, n=1, cutoff=0.6) for c in missing]
            meant = [f"{c!r} -> {m[0]!r}" for c, m in zip(missing, close, strict=True) if m]
            hint = (
                f"did you mean {', '.join(meant)}? " if meant else ""
            ) + f"its columns are: {', '.join(available)}"
            raise locate(
                (*where, "columns"),
                f"{path.name} has no column {', '.join(map(repr, missing))}",
                hint,
            )
        rows = datafiles.table_rows(path, columns, content)
    except datafiles.DataFileError as exc:
        raise locate((*where, "file"), str(exc), "check the file's format") from None
    if not rows:
        raise locate(
            (*where, "file"),
            f"{path.name} has no rows: the sweep would give no calls",
            "add rows below the header line, or point at another file",
        )
    names = list(columns or available)
    for number, row in enumerate(rows):
        blank = next((name for name, value in row.items() if _is_blank(value)), None)
        if blank is not None:
            where_in_file = (
                f"line {number + 2}"
                if path.suffix.lower() in (".csv", ".tsv")
                else f"row {number + 1}"
            )
            raise locate(
                (*where, "file"),
                f"{path.name} {where_in_file}, column {blank!r}: the value is missing "
                "(blank, NA or NaN); hog-batch does not pass missing values to calls",
                "fill it in, or drop the row (or pick other columns with columns: [...])",
            )
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise locate(
            (*where, "file"),
            f"column {bad[0]!r} of {path.name} is not a valid parameter name",
            "rename the column, or pick others with columns: [...]",
        )
    return [tuple((k, v, v) for k, v in row.items()) for row in rows], names


def _reserved_name_error(
    name: str, at: KeyPath, per_key: bool, rows_file: str | None, locate: Locate
) -> ManifestError:
    """A swept parameter named like a column of the results table (``status``, ``result``): refused, never merged."""
    what = f"column {name!r} of {rows_file}" if rows_file else f"parameter {name!r}"
    fix = (
        "rename the column in the file, or pick the others with columns: [...]"
        if rows_file
        else "rename the parameter here and in the function; a fixed value under kwargs: is not a column"
    )
    return locate(
        (*at, name) if per_key else (*at, "file"),
        f"{what} has the name of a column the results table already has ({meaning(name)})",
        f"{fix} (names the table uses: {reserved_names_text()})",
    )


def build_part(
    raw: dict[str, Any],
    base_dir: Path,
    where: KeyPath,
    locate: Locate,
    chunk_sources: dict[str, ChunkSource],
    errors: list[ManifestError],
    rows_files: dict[str, RowsFile] | None = None,
) -> SweepPart:
    """One sweep object -> its axes. Problems are appended to ``errors``, not raised."""
    axes: list[Sequence[Fragment]] = []
    names: list[str] = []
    origins: dict[str, KeyPath] = {}

    def add_names(
        new: list[str], at: KeyPath, per_key: bool = True, rows_file: str | None = None
    ) -> None:
        for name in new:
            if reserved(name):
                errors.append(_reserved_name_error(name, at, per_key, rows_file, locate))
            if name in names:
                errors.append(
                    locate(
                        at,
                        f"parameter {name!r} is swept twice in one sweep",
                        "sweep each parameter in one group only",
                    )
                )
            names.append(name)
            origins.setdefault(name, (*at, name) if per_key else at)

    for group, body in raw.items():
        at = (*where, group)
        try:
            if group == "product":
                add_names(list(body), at)
                n_points = math.prod(value_spec_length(spec) for spec in body.values())
                if n_points > MAX_CALLS_PER_JOB:
                    raise locate(
                        at,
                        f"this product has {n_points:,} points, over the limit of {MAX_CALLS_PER_JOB:,} calls per job",
                        "sweep fewer values, split the sweep into several runs, or chunk the data so one call handles many points",
                    )
                for name, spec in body.items():
                    axes.append(_LazyAxis(name, expand_value_spec(spec, (*at, name), locate)))
            elif group == "zip":
                lengths = {name: len(values) for name, values in body.items()}
                if len(set(lengths.values())) > 1:
                    raise locate(
                        at,
                        "zip lists differ in length: "
                        + ", ".join(f"{k} has {v}" for k, v in lengths.items()),
                        "give every list under zip the same number of values",
                    )
                add_names(list(body), at)
                axes.append(
                    [
                        tuple((name, body[name][i], body[name][i]) for name in body)
                        for i in range(min(lengths.values(), default=0))
                    ]
                )
            elif group == "rows":
                axis, row_names = _rows_axis(
                    body, base_dir, at, locate, rows_files if rows_files is not None else {}
                )
                add_names(row_names, at, per_key=False, rows_file=Path(str(body["file"])).name)
                axes.append(axis)
            elif group == "chunks":
                add_names(list(body), at)
                for name, spec in body.items():
                    source = _chunk_source(name, spec, base_dir, (*at, name), locate)
                    chunk_sources[name] = source
                    axes.append(_chunk_axis(source))
        except ManifestError as exc:
            errors.append(exc)
    exclude = raw.get("exclude", [])
    for i, entry in enumerate(exclude):
        for key in entry:
            if key not in names:
                errors.append(
                    locate(
                        (*where, "exclude", i, key),
                        f"exclude names {key!r}, which is not swept here",
                        f"swept parameters: {', '.join(names) or 'none'}",
                    )
                )
    return SweepPart(axes=axes, names=names, exclude=list(exclude), origins=origins)


def build_sweep(
    raw: Any, base_dir: Path, where: KeyPath, locate: Locate, errors: list[ManifestError]
) -> Sweep:
    """A sweep spec (one object, a list of them, or nothing) -> a Sweep."""
    chunk_sources: dict[str, ChunkSource] = {}
    rows_files: dict[str, RowsFile] = {}
    if raw is None:
        return Sweep([SweepPart(axes=[], names=[])], chunk_sources)
    objects = raw if isinstance(raw, list) else [raw]
    parts = []
    for i, body in enumerate(objects):
        at = (*where, i) if isinstance(raw, list) else where
        parts.append(build_part(body, base_dir, at, locate, chunk_sources, errors, rows_files))
    sweep = Sweep(parts, chunk_sources, rows_files)
    total = sum(part.size_before_exclude() for part in parts)
    if total > MAX_CALLS_PER_JOB:
        errors.append(
            locate(
                where,
                f"the sweep expands to {total:,} calls, over the limit of {MAX_CALLS_PER_JOB:,}",
                "split it into several runs, or chunk the data so one call handles many points",
            )
        )
        return sweep
    try:
        sweep.count()
    except ExcludeTooComplex:
        errors.append(
            locate(
                where,
                "exclude has too many entries over too many values to count the calls",
                "exclude fewer points, or split the sweep into several sweeps (a list) that leave them out",
            )
        )
    return sweep
