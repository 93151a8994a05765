"""TrackML submissions: one row per hit, columns ``event_id, hit_id, track_id`` (int64).

In memory a submission is a DataFrame with ``hit_id, track_id`` (``event_id`` optional). Files are named
``<event>-submission.csv[.gz]`` (e.g. ``event000000001-submission.csv``) or hold many events in one CSV
with an ``event_id`` column. Parquet files (``.parquet``/``.pq``) hold the same columns: ``reconstruct --format
parquet`` writes the data set ``DIR/submission.parquet/<event>.parquet``; :func:`find_submission` finds an event's
file in either layout. :func:`check_submission` enforces "every hit exactly once".
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.io.atomic import atomic_path
from trackformers.io.csvtable import check_columns, read_table
from trackformers.io.magic import has_magic

SUBMISSION_COLUMNS: dict[str, str] = {"hit_id": "i", "track_id": "i"}
_DTYPES = {"event_id": "int64", "hit_id": "int64", "track_id": "int64"}
_NAME_RE = re.compile(r"^event(\d+)(-submission\.csv(\.gz)?|(-submission)?\.(parquet|pq))$")
#: The Parquet data set that ``reconstruct --format parquet`` writes into its output folder.
PARQUET_DATASET = "submission.parquet"


def is_parquet(path: Path) -> bool:
    """A ``.parquet``/``.pq`` file name, or a file that starts with the Parquet magic bytes."""
    return path.suffix in (".parquet", ".pq") or (path.is_file() and has_magic(path, b"PAR1"))


def submission_files(folder: str | Path, name: str) -> list[Path]:
    """Where the submission of event ``name`` (``event000000001``) may be, in order of preference: the CSV of
    ``reconstruct --format csv`` in ``folder``, or the Parquet file of ``--format parquet`` in ``folder``'s data
    set, or in ``folder`` when it is that data set."""
    folder = Path(folder)
    return [folder / f"{name}-submission.csv", folder / f"{name}-submission.csv.gz",
            folder / PARQUET_DATASET / f"{name}.parquet", folder / f"{name}.parquet"]


def find_submission(folder: str | Path, name: str) -> Path | None:
    """The first existing file of :func:`submission_files`, or None."""
    return next((p for p in submission_files(folder, name) if p.is_file()), None)


def read_submission(path: str | Path, *, event_id: int | None = None) -> pd.DataFrame:
    """Read a submission CSV or Parquet file into ``DataFrame[event_id, hit_id, track_id]`` (int64).

    Without an ``event_id`` column the id comes from ``event_id`` or from the file name
    (``event000000001-submission.csv``, ``event000000001.parquet``). With the column and ``event_id`` given, only
    that event's rows are returned. ``df.attrs["source"]`` names the file for later error messages.
    """
    path = Path(path)
    if is_parquet(path):
        df = check_columns(path, _read_parquet(path), SUBMISSION_COLUMNS, _DTYPES, {"event_id": "i"}, rows="row")
    else:
        df = read_table(path, SUBMISSION_COLUMNS, _DTYPES, {"event_id": "i"})
    if "event_id" not in df.columns:
        m = _NAME_RE.match(path.name)
        if event_id is None and m is None:
            raise InputError(f"{path}: no event_id column and no event id in the file name; expected an "
                             "event_id column or a name like event000000001-submission.csv or "
                             "event000000001.parquet.")
        df.insert(0, "event_id", np.int64(event_id if event_id is not None else int(m[1])))
    elif event_id is not None:
        ids = df["event_id"].to_numpy()
        if len(df) and not (ids == int(event_id)).any():
            others = " and others" if (ids != ids[0]).any() else ""
            raise InputError(f"{path}: no rows with event_id {event_id} (the file holds event_id {ids[0]}"
                             f"{others}); expected that event's tracks.")
        df = df[ids == int(event_id)].reset_index(drop=True)
    df = df[["event_id", "hit_id", "track_id"]].astype(_DTYPES)
    df.attrs["source"] = str(path)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    """One Parquet file as a DataFrame; InputError (one sentence) for a missing, unreadable or broken file."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for broken files
        from trackformers.io.parquet import error_reason

        raise InputError(f"{path}: cannot be read as Parquet ({error_reason(err)}); expected a Parquet file with "
                         f"columns {', '.join(SUBMISSION_COLUMNS)}.") from None


def write_submission(submission: pd.DataFrame, path: str | Path, *, event_id: int) -> Path:
    """Write ``submission[hit_id, track_id]`` as ``event_id, hit_id, track_id``, atomically (.gz: gzip)."""
    path = Path(path)
    missing = [c for c in ("hit_id", "track_id") if c not in submission.columns]
    if missing:
        raise InputError(f"submission for {path}: missing column(s) {', '.join(missing)}; "
                         "expected hit_id and track_id.")
    for col in ("hit_id", "track_id"):
        if submission[col].dtype.kind not in "iu":
            raise InputError(f"submission for {path}: column '{col}' has dtype {submission[col].dtype}; "
                             "expected integers.")
    if "event_id" in submission.columns:
        other = submission["event_id"].to_numpy() != int(event_id)
        if other.any():
            raise InputError(f"submission for {path}: event_id {submission['event_id'].to_numpy()[other][0]} "
                             f"differs from event_id={event_id}; expected one event per file.")
    out = pd.DataFrame({"event_id": np.full(len(submission), int(event_id), dtype=np.int64),
                        "hit_id": submission["hit_id"].to_numpy(np.int64),
                        "track_id": submission["track_id"].to_numpy(np.int64)})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, compression="gzip" if path.name.endswith(".gz") else None)
    return path


def check_submission(event: Event, submission: pd.DataFrame) -> None:
    """InputError unless every hit of ``event`` appears exactly once in ``submission`` (and nothing else).

    The message names the submission file (``submission.attrs["source"]``) and the offending hit_id.
    """
    where = submission.attrs.get("source", "submission")
    what = f"{where} (event {event.event_id})"
    missing = [c for c in ("hit_id", "track_id") if c not in submission.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {', '.join(missing)}; expected hit_id and track_id.")
    for col in ("hit_id", "track_id"):
        if submission[col].dtype.kind not in "iu":
            raise InputError(f"{what}: column '{col}' has dtype {submission[col].dtype}; expected integers.")
    sub_ids = submission["hit_id"].to_numpy()
    dup = pd.Index(sub_ids).duplicated()
    if dup.any():
        raise InputError(f"{what}: hit_id {sub_ids[np.argmax(dup)]} is assigned twice; expected every hit "
                         "exactly once.")
    hit_ids = event.hits["hit_id"].to_numpy()
    unknown = ~np.isin(sub_ids, hit_ids)
    if unknown.any():
        raise InputError(f"{what}: hit_id {sub_ids[np.argmax(unknown)]} is not a hit of {event.name}; "
                         "expected only hits of the event.")
    absent = ~np.isin(hit_ids, sub_ids)
    if absent.any():
        raise InputError(f"{what}: hit_id {hit_ids[np.argmax(absent)]} has no track ({int(absent.sum())} of "
                         f"{len(hit_ids)} hits missing); expected every hit exactly once.")
