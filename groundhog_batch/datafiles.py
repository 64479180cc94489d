"""Reading the data files a sweep points at: tables for ``rows``, data for ``chunks``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")
CHUNK_SUFFIXES = (*TABLE_SUFFIXES, ".npy")


class DataFileError(ValueError):
    """A data file that cannot be read; the message says why."""


def read_table(path: Path):
    """A table file as a pandas DataFrame."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
    except DataFileError:
        raise
    except Exception as exc:  # the reader's own message is the useful part
        raise DataFileError(f"cannot read {path.name}: {exc.__class__.__name__}: {exc}") from None
    raise DataFileError(f"{path.name}: unsupported table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")


def _read_delimited(path: Path, sep: str):
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
            return pd.read_csv(path, sep=sep, index_col=False)
        except (pd.errors.ParserWarning, pd.errors.ParserError):
            too_long = _row_with_extra_fields(path, sep)
            if too_long is None:
                raise
            line, fields, header = too_long
            raise DataFileError(f"{path.name} line {line} has {fields} fields, the header has {header}") from None


def _row_with_extra_fields(path: Path, sep: str) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row with more fields than the header, if any."""
    import csv

    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if len(row) > len(header):
                return reader.line_num, len(row), len(header)
    return None


def table_columns(path: Path) -> list[str]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise DataFileError(f"cannot read {path.name}: {exc}") from None
    return [str(c) for c in read_table(path).columns]


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


def table_rows(path: Path, columns: list[str] | None) -> list[dict[str, Any]]:
    """The rows of a table, as plain-Python dicts, in file order."""
    frame = read_table(path)
    if columns:
        frame = frame[columns]
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, map(plain, row), strict=True)) for row in frame.itertuples(index=False, name=None)]


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
