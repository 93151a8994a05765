"""Write events as ACTS-schema ROOT TTrees (``hits``: one entry per hit; ``particles``: one entry per event).

``out`` ending in ``.root`` gives one file holding both trees; any other ``out`` is a folder receiving the
ACTS pair ``hits.root`` + ``particles.root``. Trees are TTrees made with ``mktree`` + ``extend`` (in uproot
5.7, ``file[name] = dict`` would write an RNTuple); the particles tree has ``std::vector<T>`` branches
(:mod:`trackformers.io.root_vector`) with ACTS's names and element types, as ACTS's C++ readers bind them.
Beside the ACTS branches the hits tree carries ``hit_id``, the measured ``x, y, z`` and the TrackML
``weight``, so a round trip through our reader is lossless. Events are buffered into batches of about
``BATCH_ROWS`` hits (``BATCH_EVENTS`` events), so memory stays bounded for any number of events. A third
small tree ``events`` lists the event ids in order, so events without hits survive too. Files are written
under temporary names and renamed at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import HIT_COLUMNS, PARTICLE_COLUMNS, Event
from trackformers.io.acts_ids import BARCODE_FIELDS, encode_geometry_id, unpack_barcode
from trackformers.io.atomic import atomic_path
from trackformers.io.root_read import OUR_TITLE
from trackformers.io.root_vector import VECTOR_CLASSES, VectorTreeWriter

BATCH_ROWS = 200_000
BATCH_EVENTS = 1000  # particles-tree entries per basket at most
ZEROS = ("tt", "deltapx", "deltapy", "deltapz", "deltae")
GEO_FIELDS = ("volume_id", "boundary_id", "layer_id", "approach_id", "sensitive_id")


def _hit_types(event: Event) -> dict[str, str]:
    types = {"event_id": "uint32", "geometry_id": "uint64"}
    if event.truth is not None:
        types |= {f"barcode_{n}": "uint32" for n, _, _ in BARCODE_FIELDS}
        types |= {c: "float32" for c in ("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "te",
                                         "deltapx", "deltapy", "deltapz", "deltae")}
        types["index"] = "int32"
    types |= {c: "uint32" for c in GEO_FIELDS}
    types |= {"hit_id": "int64", "x": "float32", "y": "float32", "z": "float32"}
    if event.truth is not None:
        types["weight"] = "float32"
    types |= {c: _dtype(event, "hits", event.hits[c]) for c in event.hits.columns if c not in HIT_COLUMNS}
    return types


#: ACTS RootParticleWriter vector branches and element types (readers of 2024 bind ``particle_id``, newer ones
#: ``particle_hash`` and the barcode parts); columns not in the event are written as 0.
ACTS_PARTICLE_TYPES: dict[str, str] = {
    "particle_id": "uint64", "particle_hash": "uint64", "particle_type": "int32", "process": "uint32",
    **{c: "float32" for c in ("vx", "vy", "vz", "vt", "px", "py", "pz", "m", "q", "eta", "phi", "pt", "p")},
    **{name: "uint32" for name, _, _ in BARCODE_FIELDS},
    "e_loss": "float32", "total_x0": "float32", "total_l0": "float32", "number_of_hits": "int32",
    "outcome": "uint32",
}


def _particle_types(event: Event) -> dict[str, str]:
    extra = {c: _dtype(event, "particles", event.particles[c]) for c in event.particles.columns
             if c not in PARTICLE_COLUMNS and c not in ACTS_PARTICLE_TYPES}
    return ACTS_PARTICLE_TYPES | extra


def _dtype(event: Event, table: str, col: pd.Series) -> str:
    if col.dtype.kind not in "iufb" or (table == "particles" and col.dtype not in VECTOR_CLASSES):
        raise InputError(f"{event.source} (event {event.event_id}, {table}): column '{col.name}' has dtype "
                         f"{col.dtype}; the ROOT writer stores only bool, (u)int8..64 and float32/64 columns.")
    return str(col.dtype)


def _hit_columns(event: Event, types: dict[str, str]) -> dict[str, np.ndarray]:
    h = event.hits
    n = len(h)
    ids = {"volume_id": h["volume_id"].to_numpy(), "layer_id": h["layer_id"].to_numpy(),
           "sensitive_id": h["module_id"].to_numpy()}
    try:
        geo = encode_geometry_id(**ids)
    except InputError as err:
        raise InputError(f"{event.source} (event {event.event_id}, hits): {err}") from None
    cols = {"event_id": np.full(n, event.event_id), "geometry_id": geo, "boundary_id": np.zeros(n),
            "approach_id": np.zeros(n), **ids, "hit_id": h["hit_id"].to_numpy(),
            "x": h["x"].to_numpy(), "y": h["y"].to_numpy(), "z": h["z"].to_numpy()}
    if event.truth is not None:
        t = event.truth.set_index("hit_id")
        if len(t) != n:
            raise InputError(f"{event.source} (event {event.event_id}, truth): {len(t)} truth rows for {n} "
                             "hits; the ROOT format stores truth per hit, so every hit needs one.")
        t = t.reindex(h["hit_id"].to_numpy())
        pid = t["particle_id"].to_numpy()
        cols |= {f"barcode_{k}": v for k, v in unpack_barcode(pid).items()}
        cols |= {c: t[c].to_numpy() for c in ("tx", "ty", "tz", "tpx", "tpy", "tpz", "weight")}
        cols |= {c: np.zeros(n) for c in ZEROS}
        cols["te"] = np.sqrt(cols["tpx"] ** 2 + cols["tpy"] ** 2 + cols["tpz"] ** 2)
        cols["index"] = pd.Series(pid).groupby(pid).cumcount().to_numpy()  # hit order along each particle
    cols |= {c: h[c].to_numpy() for c in types if c in h.columns and c not in cols}
    return {c: np.asarray(cols[c]).astype(dt) for c, dt in types.items()}


def _particle_columns(event: Event, types: dict[str, str]) -> dict[str, np.ndarray]:
    p = event.particles
    n = len(p)
    cols = {c: p[c].to_numpy() if c in p.columns else np.zeros(n) for c in types}
    pid = p["particle_id"].to_numpy().astype(np.int64)
    # the same 64 bits as particle_id (ACTS's own particle_hash is a boost hash; its readers ignore the value)
    cols["particle_id"] = cols["particle_hash"] = pid.view(np.uint64)
    cols |= unpack_barcode(pid)
    # an event written without a particles table gets an empty stand-in table (no nhits column)
    cols["number_of_hits"] = p["nhits"].to_numpy() if "nhits" in p.columns else np.zeros(n, np.int64)
    px, py, pz = (p[c].to_numpy().astype(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    cols |= {"pt": pt, "p": np.sqrt(pt**2 + pz**2), "phi": np.arctan2(py, px),
             "eta": np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))}
    return {c: np.asarray(cols[c]).astype(dt) for c, dt in types.items()}


class _Writer:
    """Buffered TTree writer for hits and particles (schemas fixed by the first event)."""

    def __init__(self, hits_file, open_particles: Callable[[], object]) -> None:  # noqa: ANN001
        self.hits_file, self.open_particles = hits_file, open_particles
        self.hit_types: dict[str, str] | None = None
        self.part_types: dict[str, str] | None = None
        self.hits_tree = self.part_tree = None
        self.hbuf: list[dict[str, np.ndarray]] = []
        self.pbuf: list[tuple[int, dict[str, np.ndarray]]] = []
        self.rows = 0
        self.seen: set[int] = set()
        self.order: list[int] = []

    def add(self, event: Event) -> None:
        if not 0 <= event.event_id < 2**32:
            raise InputError(f"{event.source}: event id {event.event_id} does not fit "
                             "ACTS's uint32 event_id.")
        if event.event_id in self.seen:
            raise InputError(f"{event.source}: event id {event.event_id} appears twice; expected unique ids.")
        self.seen.add(event.event_id)
        self.order.append(event.event_id)
        if self.hit_types is None:
            self.hit_types = _hit_types(event)
            self.hits_tree = self.hits_file.mktree("hits", self.hit_types, title=OUR_TITLE)
            if event.particles is not None:
                self.part_types = _particle_types(event)
                self.part_tree = VectorTreeWriter(self.open_particles(), "particles", {"event_id": "uint32"},
                                                  self.part_types, title=OUR_TITLE)
        elif (event.truth is None) != ("weight" not in self.hit_types):
            raise InputError(f"{event.source} (event {event.event_id}): truth is "
                             f"{'missing' if event.truth is None else 'present'} unlike in the first event; "
                             "one ROOT file holds events of one kind.")
        self.hbuf.append(_hit_columns(event, self.hit_types))
        if self.part_types is not None:
            if event.particles is None:
                empty = pd.DataFrame({c: np.zeros(0, dtype=t) for c, t in self.part_types.items()})
                event = Event(event.event_id, event.hits, event.truth, empty, source=event.source)
            self.pbuf.append((event.event_id, _particle_columns(event, self.part_types)))
        self.rows += len(event.hits)
        if self.rows >= BATCH_ROWS or len(self.pbuf) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self.hbuf:
            self.hits_tree.extend({c: np.concatenate([b[c] for b in self.hbuf]) for c in self.hit_types})
        if self.pbuf:
            counts = np.array([len(b["particle_id"]) for _, b in self.pbuf])
            cols = {c: np.concatenate([b[c] for _, b in self.pbuf]) for c in self.part_types}
            cols["event_id"] = np.array([e for e, _ in self.pbuf], dtype=np.uint32)
            self.part_tree.extend(counts, cols)
        self.hbuf, self.pbuf, self.rows = [], [], 0


def write(events: Iterable[Event], out: Path) -> list[Path]:
    """Write ``events`` to ``out`` (``*.root``: one file, both trees; else a folder with ``hits.root`` and
    ``particles.root``); returns the written paths. Nothing is left at ``out`` if writing fails."""
    import uproot

    out = Path(out)
    single = out.suffix == ".root"
    finals = [out] if single else [out / "hits.root"]
    with contextlib.ExitStack() as stack:
        hits_file = stack.enter_context(uproot.recreate(stack.enter_context(atomic_path(finals[0]))))

        def open_particles():  # noqa: ANN202 - only when some event has particles
            if single:
                return hits_file
            finals.append(out / "particles.root")
            return stack.enter_context(uproot.recreate(stack.enter_context(atomic_path(finals[-1]))))

        writer = _Writer(hits_file, open_particles)
        for event in events:
            writer.add(event)
        writer.flush()
        if writer.hits_tree is None:  # no events: still write a valid, empty hits tree
            types = {"event_id": "uint32", "geometry_id": "uint64", **{c: "uint32" for c in GEO_FIELDS},
                     "hit_id": "int64", "x": "float32", "y": "float32", "z": "float32"}
            hits_file.mktree("hits", types, title=OUR_TITLE)
        # event ids in order, so that events without hits survive (ACTS readers ignore this tree)
        events_tree = hits_file.mktree("events", {"event_id": "uint32"}, title=OUR_TITLE)
        if writer.order:
            events_tree.extend({"event_id": np.array(writer.order, dtype=np.uint32)})
    return finals
