"""Bounded, column-selective access to one ROOT table (TTree or RNTuple) and its per-event entry ranges.

Two layouts are understood:

* flat: one entry per row (ACTS ``hits``: one entry per hit, sorted by ``event_id``);
* jagged: one entry per event, vector branches (ACTS ``particles``, ColliderML-style hit trees).

:class:`EventIndex` finds each event's entries by scanning only the ``event_id`` column in chunks of
``step_size`` entries, so selecting one event of a 10 GB file reads one branch plus that event's entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import awkward as ak
import numpy as np

from trackformers.errors import InputError

#: Default chunk (entries) for scans and batched reads: bounds memory to ~step_size x columns x 8 bytes.
STEP_SIZE = 500_000
#: Rows assumed per entry of a per-event (jagged) table when batching entries: one event may hold ~100k hits.
ROWS_PER_JAGGED_ENTRY = 100_000


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def open_file(path: Path):  # noqa: ANN201 - uproot.ReadOnlyDirectory
    """Open a ROOT file; InputError for a missing, truncated or non-ROOT file."""
    import uproot

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b"root"  # let uproot report it (missing file, permissions, ...)
    if head != b"root":
        raise InputError(f"{path}: not a ROOT file (it starts with {head!r}); expected the magic b'root'.")
    try:
        return uproot.open(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such ROOT file.") from None
    except Exception as err:  # noqa: BLE001 - uproot raises many types for broken files
        raise InputError(f"{path}: cannot open as a ROOT file ({first_line(err)}); expected an intact "
                         ".root file.") from None


class Table:
    """One TTree or RNTuple of an open file; reads columns over entry ranges as numpy/awkward."""

    def __init__(self, path: Path, file, name: str) -> None:  # noqa: ANN001
        self.path, self.name = path, name
        try:
            names = [k.split(";")[0] for k in file.keys(recursive=False)]
            if name not in names:
                raise InputError(f"{path}: no tree '{name}'; the file holds "
                                 f"{', '.join(names) or 'no objects'}.")
            self.obj = file[name]
            self.keys: list[str] = [str(k) for k in self.obj.keys()]
            self.num_entries = int(self.obj.num_entries)
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001
            raise InputError(f"{path}: cannot read tree '{name}' ({first_line(err)}); the file may be "
                             "truncated.") from None
        self.title = str(getattr(self.obj, "title", "") or "")
        self._jagged: dict[str, bool] = {}

    def where(self) -> str:
        return f"{self.path} (tree '{self.name}')"

    def require(self, columns: Sequence[str], why: str = "") -> None:
        missing = [c for c in columns if c not in self.keys]
        if missing:
            raise InputError(f"{self.where()}: missing branch(es) {', '.join(missing)}{why}; it has "
                             f"{', '.join(self.keys) or 'no branches'}.")

    def read(self, columns: Sequence[str], start: int, stop: int) -> dict[str, ak.Array]:
        """Columns over entries ``[start, stop)`` as awkward arrays (flat or one list per entry)."""
        try:
            arrays = self.obj.arrays(list(columns), entry_start=start, entry_stop=stop, library="ak")
        except Exception as err:  # noqa: BLE001 - truncated baskets, bad compression, ...
            what = f"entries {start}..{stop} of {', '.join(columns)}"
            raise InputError(f"{self.where()}: cannot read {what} ({first_line(err)}); the file may be "
                             "truncated.") from None
        return {c: arrays[c] for c in columns}

    def is_jagged(self, column: str) -> bool:
        """Whether ``column`` holds a list per entry (one entry per event) rather than one value."""
        if column not in self._jagged:
            import uproot

            # TTree branches say so in their interpretation; otherwise (RNTuple) look at the first entry
            interp = getattr(self.obj[column], "interpretation", None)
            if isinstance(interp, uproot.AsDtype | uproot.AsJagged):
                self._jagged[column] = isinstance(interp, uproot.AsJagged)
            elif self.num_entries == 0:
                self._jagged[column] = False
            else:
                self._jagged[column] = self.read([column], 0, 1)[column].ndim > 1
        return self._jagged[column]


def to_numpy(arr: ak.Array) -> np.ndarray:
    """Flat numpy array of an awkward array (lists are concatenated)."""
    if arr.ndim > 1:
        arr = ak.flatten(arr, axis=None)
    return np.asarray(ak.to_numpy(arr))


class EventIndex:
    """Entry ranges of each event in a table, found from the ``event_id`` column alone.

    Attributes:
        jagged: one entry per event (vector branches) instead of one entry per row.
        ranges: event id -> list of ``(start, stop)`` entry ranges, in order of first appearance.
    """

    def __init__(self, table: Table, row_column: str, *, event_column: str = "event_id",
                 step_size: int = STEP_SIZE) -> None:
        self.table, self.step_size = table, max(1, int(step_size))
        self.jagged = table.is_jagged(row_column)
        # entries per batched read: with one entry per event, a batch of step_size events could be huge
        self.batch = self.step_size if not self.jagged else max(1, self.step_size // ROWS_PER_JAGGED_ENTRY)
        self.ranges: dict[int, list[tuple[int, int]]] = {}
        n = table.num_entries
        if event_column not in table.keys:
            if self.jagged:  # no id branch: the entry number is the event id
                self.ranges = {i: [(i, i + 1)] for i in range(n)}
            elif n:
                self.ranges = {0: [(0, n)]}
            return
        for start in range(0, n, self.step_size):
            stop = min(n, start + self.step_size)
            ids = table.read([event_column], start, stop)[event_column]
            if ids.ndim > 1:  # a per-particle event_id vector: take its first element
                keep = ak.num(ids) > 0
                entries = np.arange(start, stop)[np.asarray(keep)]
                ids = ak.to_numpy(ak.firsts(ids[keep]))
            else:
                entries = np.arange(start, stop)
                ids = ak.to_numpy(ids)
            self._add_runs(np.asarray(ids, dtype=np.int64), entries)

    def _add_runs(self, ids: np.ndarray, entries: np.ndarray) -> None:
        if not len(ids):
            return
        # a new run starts where the id changes or entries are not consecutive
        cut = np.flatnonzero((np.diff(ids) != 0) | (np.diff(entries) != 1)) + 1
        starts = np.concatenate([[0], cut])
        stops = np.concatenate([cut, [len(ids)]])
        for a, b in zip(starts.tolist(), stops.tolist()):
            eid, lo, hi = int(ids[a]), int(entries[a]), int(entries[b - 1]) + 1
            runs = self.ranges.setdefault(eid, [])
            if runs and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], hi)  # the same run continued across a chunk boundary
            else:
                runs.append((lo, hi))

    def iter_events(self, event_ids: Sequence[int], columns: Sequence[str],
                    lengths_of: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(event_id, {column: flat numpy array})`` for the events, reading adjacent events in one
        bounded batch. ``lengths_of``: per-row columns whose vectors must have equal length per entry."""
        batch: list[int] = []
        span = (0, 0)
        for eid in event_ids:
            runs = self.ranges[eid]
            if len(runs) != 1:  # unsorted file: read its pieces one by one
                yield from self._flush(batch, span, columns, lengths_of)
                batch = []
                parts = [self._read_span(r, columns, lengths_of) for r in runs]
                yield eid, {c: np.concatenate([p[c] for p in parts]) for c in columns}
                continue
            lo, hi = runs[0]
            if batch and span[1] == lo and hi - span[0] <= self.batch:
                batch.append(eid)
                span = (span[0], hi)
            else:
                yield from self._flush(batch, span, columns, lengths_of)
                batch, span = [eid], (lo, hi)
        yield from self._flush(batch, span, columns, lengths_of)

    def _read_span(self, span: tuple[int, int], columns: Sequence[str],
                   lengths_of: Sequence[str]) -> dict[str, np.ndarray]:
        data = self._check(self.table.read(columns, *span), span, lengths_of)
        return {c: to_numpy(v) for c, v in data.items()}

    def _flush(self, batch: list[int], span: tuple[int, int], columns: Sequence[str],
               lengths_of: Sequence[str]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        if not batch:
            return
        data = self._check(self.table.read(columns, *span), span, lengths_of)
        for eid in batch:
            lo, hi = self.ranges[eid][0]
            a, b = lo - span[0], hi - span[0]
            yield eid, {c: to_numpy(v[a:b]) for c, v in data.items()}

    def _check(self, data: dict[str, ak.Array], span: tuple[int, int],
               lengths_of: Sequence[str]) -> dict[str, ak.Array]:
        if not self.jagged or len(lengths_of) < 2:
            return data
        ref = np.asarray(ak.num(data[lengths_of[0]]))
        for c in lengths_of[1:]:
            arr = data[c]
            n = np.asarray(ak.num(arr)) if arr.ndim > 1 else np.ones(len(arr), dtype=np.int64)
            bad = n != ref
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"{self.table.where()}: entry {span[0] + i} has {n[i]} values in branch "
                                 f"'{c}' but {ref[i]} in '{lengths_of[0]}'; expected equal vector lengths.")
        return data
