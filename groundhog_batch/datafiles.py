"""Reading the data files a sweep points at: tables for ``rows``, data for ``chunks``."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from .errors import HogError, RunError
from .type_names import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")
CHUNK_SUFFIXES = (*TABLE_SUFFIXES, ".npy")


class DataFileError(ValueError):
    """A data file that cannot be read; the message says why."""


class DataFileChanged(RunError):
    """A data file no longer holds what the run planned from: the run stops (resumable once it is restored)."""


def changed_error(path: Path, what: str) -> HogError:
    """A data file that no longer holds what the run planned from: its calls would mix old and new content."""
    return DataFileChanged(
        message=f"{path} changed while the run was going ({what}): its calls would mix the old "
        "content and the new, so no more of them are started",
        hint="put the file back as it was and `hog-batch resume` the run (what finished is kept), "
        "or submit the manifest again as a new run to use the new file",
    )


def read_table(path: Path, content: bytes | None = None):
    """A table file as a pandas DataFrame; from ``content`` (the file's bytes, read once) when given."""
    import pandas as pd

    suffix = path.suffix.lower()
    source: Any = path if content is None else io.BytesIO(content)
    try:
        if suffix in (".csv", ".tsv"):
            return _read_delimited(path, "\t" if suffix == ".tsv" else ",", content)
        if suffix == ".parquet":
            return pd.read_parquet(source)
        if suffix == ".jsonl":
            return pd.read_json(source, lines=True)
    except DataFileError:
        raise
    except Exception as exc:  # the reader's own message is the useful part
        raise DataFileError(f"cannot read {path.name}: {exc.__class__.__name__}: {exc}") from None
    raise DataFileError(
        f"{path.name}: unsupported table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}"
    )


def _read_delimited(path: Path, sep: str, content: bytes | None = None):
    """A CSV or TSV file, each row with at most the header's fields.

    pandas would take a first data row with one field too many as having an
    index column and shift every value by one; ``index_col=False`` stops that,
    and a row with extra fields is an error naming its line (the warning pandas
    gives for it becomes one).
    """
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(
                path if content is None else io.BytesIO(content), sep=sep, index_col=False
            )
        except (pd.errors.ParserWarning, pd.errors.ParserError):
            too_long = _row_with_extra_fields(path, sep, content)
            if too_long is None:
                raise
            line, fields, header = too_long
            raise DataFileError(
                f"{path.name} line {line} has {fields} fields, the header has {header}"
            ) from None


def _row_with_extra_fields(
    path: Path, sep: str, content: bytes | None = None
) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row with more fields than the header, if any."""
    import csv

    opened = (
        path.open(newline="", encoding="utf-8", errors="replace")
        if content is None
        else io.TextIOWrapper(io.BytesIO(content), newline="", encoding="utf-8", errors="replace")
    )
    with opened as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if len(row) > len(header):
                return reader.line_num, len(row), len(header)
    return None


def table_columns(path: Path, content: bytes | None = None) -> list[str]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path if content is None else io.BytesIO(content)).names)
        except Exception as exc:
            raise DataFileError(f"cannot read {path.name}: {exc}") from None
    return [str(c) for c in read_table(path, content).columns]


_PLAIN_TYPES = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """A table cell as a plain Python value, so that a call's environment needs neither NumPy nor pandas.

    NumPy scalars become numbers; arrays (a Parquet list column) lists; pandas
    timestamps ``datetime.datetime`` and timedeltas ``datetime.timedelta``;
    a missing time (NaT) None. Dates, Decimals and bytes stay as they are (the standard library's types).
    """
    if type(value) in _PLAIN_TYPES:
        return value
    if type(value).__name__ == "NaTType":
        return None
    to_python = getattr(value, "to_pydatetime", None) or getattr(value, "to_pytimedelta", None)
    if callable(to_python):
        return to_python()
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return plain(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "shape"):
        return plain(tolist())
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def table_rows(
    path: Path, columns: list[str] | None, content: bytes | None = None
) -> list[dict[str, Any]]:
    """The rows of a table, as plain-Python dicts, in file order (read from ``content`` when given)."""
    frame = read_table(path, content)
    if columns:
        frame = frame[columns]
    names = [str(c) for c in frame.columns]
    return [
        dict(zip(names, map(plain, row), strict=True))
        for row in frame.itertuples(index=False, name=None)
    ]


def count_rows(path: Path) -> int:
    """Rows (or first-axis length) of a chunkable data file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        import numpy as np

        try:
            return int(np.load(path, mmap_mode="r").shape[0])
        except Exception as exc:
            raise DataFileError(f"cannot read {path.name}: {exc}") from None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception as exc:
            raise DataFileError(f"cannot read {path.name}: {exc}") from None
    return len(read_table(path))


def load_chunkable(path: Path):
    """The whole data file: a DataFrame, or a NumPy array (memory-mapped) for .npy."""
    if path.suffix.lower() == ".npy":
        import numpy as np

        return np.load(path, mmap_mode="r")
    return read_table(path)


class VerifiedChunks:
    """A chunked data file as the run planned it: never a mix of the content it was planned from and a newer one.

    A table (or a .npy file that is not in C order) is read once, into
    memory, and the bytes read are checked against ``sha256``, the hash the
    run recorded when it was planned. A C-order .npy file stays
    memory-mapped: one pass over it checks the whole file against ``sha256``
    and keeps a digest of each chunk's bytes, and every chunk is checked
    against its digest as it is cut. Either way a change is an error, never
    a call given new data. With no ``sha256`` (``plan``, ``debug`` of a
    manifest) the file is read as it is.
    """

    def __init__(self, path: Path, bounds: tuple[tuple[int, int], ...], sha256: str | None) -> None:
        self.path, self.bounds, self.sha256 = path, bounds, sha256
        self._digests: dict[tuple[int, int], bytes] = {}
        self.data = self._load()
        n_rows = len(self.data)
        if bounds and n_rows != bounds[-1][1]:
            raise changed_error(path, f"it has {n_rows:,} rows, the run planned {bounds[-1][1]:,}")

    def _load(self) -> Any:
        if self.sha256 is None:
            return load_chunkable(self.path)
        if self.path.suffix.lower() == ".npy":
            mapped = self._mapped_npy()
            if mapped is not None:
                return mapped
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            raise changed_error(self.path, f"it cannot be read: {exc.strerror}") from None
        if hashlib.sha256(content).hexdigest() != self.sha256:
            raise changed_error(
                self.path, "its SHA-256 is not the one recorded when the run was planned"
            )
        if self.path.suffix.lower() == ".npy":
            import numpy as np

            return np.load(io.BytesIO(content))
        return read_table(self.path, content)

    def _mapped_npy(self) -> Any:
        """The memory-mapped array, its chunks' digests taken in the one pass that checks the whole file."""
        import numpy as np

        try:
            array = np.load(self.path, mmap_mode="r")
        except Exception as exc:
            raise changed_error(self.path, f"it cannot be read: {exc}") from None
        if not array.flags.c_contiguous or array.ndim == 0:
            return None
        row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        whole = hashlib.sha256()
        with self.path.open("rb") as handle:
            whole.update(handle.read(array.offset))
            position = 0
            for start, stop in self.bounds:
                if start != position:
                    return None
                piece = handle.read((stop - start) * row_bytes)
                whole.update(piece)
                self._digests[(start, stop)] = hashlib.blake2b(piece, digest_size=16).digest()
                position = stop
            for block in iter(lambda: handle.read(1 << 20), b""):
                whole.update(block)
        if whole.hexdigest() != self.sha256:
            raise changed_error(
                self.path, "its SHA-256 is not the one recorded when the run was planned"
            )
        return array

    def chunk(self, start: int, stop: int) -> Any:
        """Rows ``start:stop``, as an independent object, checked against the run's plan."""
        piece = slice_rows(self.data, start, stop)
        digest = self._digests.get((start, stop))
        if digest is not None:
            import numpy as np

            now = hashlib.blake2b(np.ascontiguousarray(piece).tobytes(), digest_size=16).digest()
            if now != digest:
                raise changed_error(
                    self.path,
                    f"rows {start} to {stop - 1} differ from those the run was planned with",
                )
        return piece


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is written: its inode, size, and modification and change times (None: gone)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns


def portable_frame(frame):
    """A DataFrame that unpickles with pandas and NumPy alone: no pyarrow-backed strings or columns."""
    frame = frame.copy()
    frame.columns = frame.columns.astype(object)
    for name in frame.columns:
        if frame[name].dtype != object and frame[name].dtype.kind not in "biufcmMb":
            frame[name] = frame[name].astype(object)
    if frame.index.dtype.kind not in "biufcmM":
        frame.index = frame.index.astype(object)
    return frame


def slice_rows(data: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a DataFrame, an array or a list, as an independent object."""
    if hasattr(data, "iloc"):
        return portable_frame(data.iloc[start:stop])
    if hasattr(data, "shape"):
        import numpy as np

        return np.array(data[start:stop])
    return list(data[start:stop])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
