"""ACTS ROOT format (``NAME = "root"``): detection, lazy reading, TTree writing.

Reading: :mod:`trackformers.io.root_read` (ACTS hits/particles schemas, flat or per-event jagged, TTree or
RNTuple, bounded streaming). Writing: :mod:`trackformers.io.root_write`. Id codecs:
:mod:`trackformers.io.acts_ids`. See ``docs/io.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.io.magic import has_magic
from trackformers.io.root_read import read_file
from trackformers.io.root_table import STEP_SIZE
from trackformers.io.root_write import write

__all__ = ["NAME", "detect", "read", "write"]

NAME = "root"
MAGIC = b"root"
OPTIONS = ("smear", "seed", "step_size", "hits_tree", "particles_tree")


def _is_root_file(path: Path) -> bool:
    return path.suffix == ".root" or has_magic(path, MAGIC)


def detect(path: Path) -> bool:
    """A ``.root`` file, a file starting with the ROOT magic bytes, or a folder holding ``.root`` files."""
    path = Path(path)
    if path.is_dir():
        return any(p.suffix == ".root" for p in path.iterdir() if p.is_file())
    return path.is_file() and _is_root_file(path)


def _companion(path: Path) -> bool:
    """A particles file read together with a hits file beside it (so a glob like ``*.root`` may name it)."""
    if not path.name.startswith("particles"):
        return False
    i = path.name.find("particles")
    named = path.with_name(path.name[:i] + "hits" + path.name[i + 9:])
    return named.is_file() or (path.parent / "hits.root").is_file()


def hit_files(path: Path) -> list[Path]:
    """The hits files of ``path``: the file itself (none for a particles file that has its hits file beside
    it), or a folder's ``.root`` files except particle files."""
    path = Path(path)
    if not path.is_dir():
        return [] if _companion(path) else [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".root"
                   and not p.name.startswith("particles"))
    if not files:
        raise InputError(f"{path}: no hits .root file in this folder; expected e.g. hits.root.")
    return files


def read(path: Path, *, volumes: Sequence[int] | None = None, events: Iterable[int] | None = None,
         smear: bool = False, seed: int = 0, step_size: int = STEP_SIZE, hits_tree: str = "hits",
         particles_tree: str = "particles", **options: object) -> Iterator[Event]:
    """Yield events of an ACTS-style ROOT file or folder lazily (see :mod:`trackformers.io.root_read`).

    Args:
        volumes: keep hits of these volume ids only (None: all).
        events: keep these event ids only (None: all); others' hit entries are never read.
        smear: smear true positions with the detector resolutions (default False: true positions as x, y, z).
        seed: smearing seed (the event id is mixed in, so events differ and reruns agree).
        step_size: entries per bounded read (memory ~ step_size x branches x 8 bytes).
    """
    if options:
        raise InputError(f"unknown ROOT reader option(s) {', '.join(options)}; "
                         f"expected {', '.join(OPTIONS)}.")
    wanted = None if events is None else {int(e) for e in events}
    vols = None if volumes is None else sorted(int(v) for v in volumes)
    for file in hit_files(Path(path)):
        yield from read_file(file, volumes=vols, events=wanted, smear_hits=bool(smear), seed=int(seed),
                             step_size=int(step_size), hits_tree=hits_tree, particles_tree=particles_tree)
