"""Read one CSV table safely: every pandas/gzip failure and every bad column becomes one InputError sentence.

Shared by the TrackML event reader and the submission reader (whose Parquet files go through the same column
checks, :func:`check_columns`). Column specs map a column name to a dtype
kind: ``"i"`` (integer, stored as int64) or ``"f"`` (finite number, stored as given by ``dtypes``).
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError

#: Exceptions pandas (or the gzip layer under it) raises for unreadable, truncated or garbage files.
_PARSE_ERRORS = (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, gzip.BadGzipFile,
                 EOFError, zlib.error, ValueError)


def read_table(path: Path, columns: dict[str, str], dtypes: dict[str, str],
               optional: dict[str, str] | None = None) -> pd.DataFrame:
    """Read ``path`` (``.csv`` or ``.csv.gz``) and check ``columns``; cast them to ``dtypes``.

    ``optional`` columns are checked and cast like ``columns`` when the file has them.

    Extra columns are kept as pandas reads them. Raises :class:`InputError` naming the file, the column,
    the line and the value for: a missing or unreadable file, an empty file, a parse error, a missing
    column, a non-numeric value, a non-integer value in an integer column, or a NaN/inf.
    """
    try:
        with warnings.catch_warnings():
            # A row longer than the header would otherwise become an implicit index or be cut silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, compression="infer", index_col=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file.") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; expected a CSV header with columns "
                         f"{', '.join(columns)}.") from None
    except _PARSE_ERRORS as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: cannot be read as CSV ({reason}); expected a TrackML CSV file "
                         f"with columns {', '.join(columns)}.") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err}).") from None
    return check_columns(path, df, columns, dtypes, optional)


def check_columns(path: Path, df: pd.DataFrame, columns: dict[str, str], dtypes: dict[str, str],
                  optional: dict[str, str] | None = None, *, rows: str = "line") -> pd.DataFrame:
    """Check ``columns`` (and the ``optional`` ones present) of a table read from ``path``; cast to ``dtypes``.

    ``rows="line"`` names a bad value by its CSV file line (the header is line 1); ``rows="row"`` by its
    0-based row (tables without lines, e.g. Parquet). Raises :class:`InputError` as :func:`read_table`.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns)) or "none"
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; found {found}.")
    where = _line if rows == "line" else _row
    columns = columns | {c: k for c, k in (optional or {}).items() if c in df.columns}
    casts = {}
    for col, kind in columns.items():
        _check_column(path, df[col], col, kind, where)
        casts[col] = dtypes.get(col, "int64" if kind == "i" else "float64")
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf is reported just below
        df = df.astype(casts)
    for col, kind in columns.items():
        if kind == "f":
            _check_finite(path, df[col], col, "after conversion to " + casts[col], "a finite number", where)
    return df


#: What an integer column holds: int64, the dtype every integer column is stored as.
_INT64 = "an integer from -2**63 to 2**63 - 1"


def _line(i: int) -> str:
    """Where data row ``i`` of a CSV file is: its file line (the header is line 1)."""
    return f"on line {i + 2}"


def _row(i: int) -> str:
    """Where row ``i`` of a table without lines (Parquet) is."""
    return f"at row {i}"


def _out_of_int64(value: object) -> bool:
    """True for an integer (or integer text) outside int64, which pandas leaves as a Python object."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return False
    return isinstance(value, int | np.integer) and not -2**63 <= int(value) < 2**63


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_column(path: Path, series: pd.Series, col: str, kind: str, where: Callable[[int], str]) -> None:
    values = series.to_numpy()
    if not len(values):  # a header-only file (an empty event): pandas types its columns as object
        return
    dkind = series.dtype.kind
    want = "an integer" if kind == "i" else "a number"
    if dkind not in "iuf":
        # Strings (or booleans, or integers beyond int64, which pandas keeps as Python ints): report the first
        # entry that is not a number, or, in an integer column, not an int64.
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna().to_numpy() | (dkind == "b")
        huge = np.array([_out_of_int64(v) for v in values]) if kind == "i" else np.zeros(len(values), bool)
        i = int(np.argmax(bad | huge)) if (bad | huge).any() else 0
        raise InputError(f"{path}: column '{col}' has value {_fmt(values[i])} {where(i)}; "
                         f"expected {_INT64 if huge[i] else want}.")
    if dkind == "u" and len(values) and values.max() > np.iinfo(np.int64).max:
        i = int(np.argmax(values > np.iinfo(np.int64).max))
        raise InputError(f"{path}: column '{col}' has value {values[i]} {where(i)}; expected {_INT64}.")
    if dkind == "f":
        _check_finite(path, series, col, "", "an integer" if kind == "i" else "a finite number", where)
        if kind == "i":
            frac = values != np.round(values)
            i = int(np.argmax(frac)) if frac.any() else 0
            # in a CSV file an integer column is read as floats when a value has a decimal point; a Parquet
            # column is floats by its type, whole numbers or not
            how = " (written without a decimal point)" if where is _line else " (an integer column, not floats)"
            raise InputError(f"{path}: column '{col}' has value {_fmt(values[i])} {where(i)}; "
                             f"expected an integer{how}.")


def _check_finite(path: Path, series: pd.Series, col: str, note: str, want: str,
                  where: Callable[[int], str] = _line) -> None:
    values = series.to_numpy()
    if values.dtype.kind != "f" or not len(values):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        what = "missing/NaN value" if np.isnan(values[i]) else f"value {values[i]}"
        extra = f" {note}" if note else ""
        raise InputError(f"{path}: column '{col}' has {what} {where(i)}{extra}; "
                         f"expected {want}.")


def require_unique(path: Path, df: pd.DataFrame, col: str) -> None:
    """InputError naming the first repeated value of ``col``."""
    dup = df[col].duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(f"{path}: duplicate {col} {df[col].iloc[i]} {_line(i)}; "
                         f"expected each {col} once.")
