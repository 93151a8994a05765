"""Event readers and writers behind one entry point, with format detection.

Each format module (``trackml``, ``root``, ``parquet``) provides ``NAME``, ``detect(path) -> bool``,
``read(path, *, volumes, events) -> Iterator[Event]`` and ``write(events, out) -> list[Path]``.
``path`` may be a file, an event prefix (``.../event000001000``) or a folder of one format.
"""

from __future__ import annotations

import glob
import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

from trackformers.errors import InputError
from trackformers.events import Event

#: Format modules in detection order.
FORMAT_MODULES: tuple[str, ...] = ("trackml", "root", "parquet")

PathLike = str | os.PathLike[str]


def formats() -> dict[str, ModuleType]:
    """Available format modules by name."""
    found = {}
    for name in FORMAT_MODULES:
        try:
            found[name] = importlib.import_module(f"trackformers.io.{name}")
        except ModuleNotFoundError as err:
            # A format whose library is missing (e.g. uproot/awkward on a bare GPU node) is left out, so the
            # other formats still work; detect() names what is missing.
            UNAVAILABLE[name] = err.name or "?"
    return found


#: Format name -> the missing module that keeps it from loading.
UNAVAILABLE: dict[str, str] = {}


def detect(path: PathLike) -> str:
    """Name of the format of ``path`` (extension first, then content); InputError if none fits."""
    for name, module in formats().items():
        if module.detect(Path(path)):
            return name
    missing = "".join(f"; {n} needs the missing module {m}" for n, m in UNAVAILABLE.items())
    raise InputError(f"{path}: not a TrackML CSV, ROOT or Parquet event file or folder "
                     f"(known formats: {', '.join(formats())}{missing}).")


def expand(inputs: PathLike | Sequence[PathLike]) -> list[Path]:
    """Expand globs; keep files, folders and TrackML event prefixes; InputError for what matches nothing."""
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"{text}: the pattern matches no file.")
            out.extend(Path(m) for m in matches)
        elif Path(text).exists() or glob.glob(text + "-hits.csv*"):
            out.append(Path(text))
        else:
            raise InputError(f"{text}: no such file or folder.")
    return out


def read_events(inputs: PathLike | Sequence[PathLike], *, volumes: Iterable[int] | None = None,
                events: Iterable[int] | None = None, format: str | None = None,
                **options: object) -> Iterator[Event]:
    """Yield validated events lazily from files, folders, prefixes or globs of any supported format.

    Args:
        inputs: one path/glob or a list of them.
        volumes: keep only hits of these TrackML volume ids (e.g. ``(7, 8, 9)`` for the pixel detector).
        events: keep only these event ids.
        format: force a format instead of detecting it.
        options: format-specific reader options (e.g. ``smear=True`` for ACTS ROOT files).
    """
    mods = formats()
    vols = None if volumes is None else sorted({int(v) for v in volumes})
    wanted = None if events is None else {int(e) for e in events}
    seen: set[int] = set()
    for path in expand(inputs):
        name = format or detect(path)
        if name not in mods:
            raise InputError(f"unknown format '{name}'; expected one of {', '.join(mods)}.")
        for event in mods[name].read(path, volumes=vols, events=wanted, **options):
            seen.add(event.event_id)
            yield event
    if wanted is not None and wanted - seen:  # an unknown event id is bad input, not an empty result
        missing = ", ".join(map(str, sorted(wanted - seen)[:10]))
        found = ", ".join(map(str, sorted(seen)[:10])) or "none of the requested ones"
        raise InputError(f"event id(s) {missing} not found in {inputs}; the input holds {found}.")


def write_events(events: Iterable[Event], out: PathLike, *, format: str = "csv") -> list[Path]:
    """Write events to ``out`` (a folder, or a file for single-file formats); returns the written paths."""
    name = "trackml" if format == "csv" else format
    mods = formats()
    if name not in mods:
        raise InputError(f"unknown output format '{format}'; expected one of csv, "
                         f"{', '.join(n for n in mods if n != 'trackml')}.")
    return mods[name].write(events, Path(out))
