"""Read ACTS-style ROOT files (``hits`` + ``particles`` trees, TTree or RNTuple) into :class:`Event` s.

Hits tree: one entry per hit (ACTS ``RootSimHitWriter``) or one entry per event with vector branches.
Positions come from ``x, y, z`` when present (our files), else from the true ``tx, ty, tz`` (ACTS), smeared
only with ``smear=True``. Detector ids come from ``volume_id, layer_id, sensitive_id`` (or ``module_id``),
else are decoded from ``geometry_id``. ``particle_id`` comes from the ``particle_id`` branch (older files) or
is packed from the ``barcode_*`` branches (see :mod:`trackformers.io.acts_ids`). ``hit_id`` is the ``hit_id``
branch, else 1..n in file order within the event. ``weight`` is the ``weight`` branch, else computed with
:func:`trackformers.metrics.hit_weights` on the whole event (before any volume selection).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event, conform
from trackformers.io.acts_ids import BARCODE_FIELDS, decode_geometry_id, pack_barcode
from trackformers.io.root_table import STEP_SIZE, EventIndex, Table, open_file, to_numpy

#: Title our writer gives its trees; only then are unknown branches read back as extra columns.
OUR_TITLE = "trackformers"
TRUTH_MOMENTA = ("tpx", "tpy", "tpz")
#: Per-hit resolution (sigma_u along r*phi, sigma_v along z in barrels / r in end caps), mm, by volume id.
RESOLUTION_MM: dict[int, tuple[float, float]] = {
    **{v: (0.015, 0.015) for v in (7, 8, 9)},   # pixel 50x50 um pitch / sqrt(12)
    **{v: (0.023, 0.35) for v in (12, 13, 14)},  # short strips 80 um x 1.2 mm / sqrt(12)
    **{v: (0.035, 3.1) for v in (16, 17, 18)},  # long strips 120 um x 10.8 mm / sqrt(12)
}
BARREL_VOLUMES = frozenset({8, 13, 17})
#: Branches of the ACTS schemas (and ours) that are not extra columns.
KNOWN_HIT_BRANCHES = frozenset(
    "event_id geometry_id particle_id tx ty tz tt tpx tpy tpz te deltapx deltapy deltapz deltae index "
    "volume_id boundary_id layer_id approach_id sensitive_id extra_id hit_id x y z module_id weight".split()
    + [f"barcode_{n}" for n, _, _ in BARCODE_FIELDS])
KNOWN_PARTICLE_BRANCHES = frozenset(
    "event_id particle_id particle_type process vx vy vz vt px py pz m q eta phi pt p e nhits "
    "number_of_hits nparticles particle_hash e_loss total_x0 total_l0 outcome".split()
    + [n for n, _, _ in BARCODE_FIELDS] + [f"barcode_{n}" for n, _, _ in BARCODE_FIELDS])
PARTICLE_REQUIRED = ("particle_type", "vx", "vy", "vz", "px", "py", "pz", "q")
#: Accepted names per Event column, first found wins (ACTS, ours, ColliderML-style per-event trees).
HIT_ALIASES: dict[str, tuple[str, ...]] = {"module_id": ("module_id", "sensitive_id", "surface_id")}
TRUE_POSITIONS = (("tx", "ty", "tz"), ("true_x", "true_y", "true_z"))
PARTICLE_ALIASES: dict[str, tuple[str, ...]] = {
    "particle_type": ("particle_type", "pdg_id"), "q": ("q", "charge"),
    "nhits": ("nhits", "number_of_hits", "num_tracker_hits"),
}
#: Names tried, in order, for the particles file beside a hits file.
PARTICLE_FILES = ("particles.root", "particles_simulation.root", "particles_final.root",
                  "particles_initial.root")


def resolutions() -> tuple[dict[int, tuple[float, float]], frozenset[int]]:
    """Per-volume (sigma_u, sigma_v) in mm and the barrel volumes: the simulator's detector table when it is
    importable (so reader and simulator smear alike), else :data:`RESOLUTION_MM` (the same values)."""
    try:
        from trackformers.simulation.geometry import LAYERS
    except ImportError:
        return RESOLUTION_MM, BARREL_VOLUMES
    table = {int(la.volume_id): (float(la.sigma_u), float(la.sigma_v)) for la in LAYERS}
    return table, frozenset(int(la.volume_id) for la in LAYERS if la.kind == "barrel")


def smear(x: np.ndarray, y: np.ndarray, z: np.ndarray, volume_id: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-smear true positions ``(N,)`` (mm) with :func:`resolutions`: along r*phi everywhere, along z
    in barrel volumes and along r in end caps; hits of other volumes are left as they are."""
    table, barrels = resolutions()
    su = np.zeros(len(x))
    sv = np.zeros(len(x))
    for vol, (a, b) in table.items():
        m = volume_id == vol
        su[m], sv[m] = a, b
    barrel = np.isin(volume_id, list(barrels))
    r = np.hypot(x, y)
    safe = np.where(r > 0, r, 1.0)
    cphi, sphi = np.where(r > 0, x / safe, 1.0), np.where(r > 0, y / safe, 0.0)
    du = rng.standard_normal(len(x)) * su
    dv = rng.standard_normal(len(x)) * sv
    dr = np.where(barrel, 0.0, dv)
    xs = x + cphi * dr - sphi * du
    ys = y + sphi * dr + cphi * du
    zs = z + np.where(barrel, dv, 0.0)
    return xs.astype(x.dtype), ys.astype(y.dtype), zs.astype(z.dtype)


@dataclass
class HitPlan:
    """Which branches of a hits table give which Event column."""

    position: tuple[str, str, str]
    ids: tuple[str, ...]  # (volume, layer, module) branch names, or ("geometry_id",)
    true_position: tuple[str, ...] = ()
    momenta: bool = False  # per-hit tpx, tpy, tpz present (else the particle's momentum is used)
    particle_id: tuple[str, ...] = ()  # ("particle_id",) or the barcode branches; () if no truth
    truth: bool = False
    hit_id: bool = False
    weight: bool = False
    extras: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        cols = [*self.position, *self.ids, *self.particle_id]
        if self.truth:
            cols += [c for c in (*self.true_position, *TRUTH_MOMENTA * self.momenta) if c not in cols]
        cols += ["hit_id"] * self.hit_id + ["weight"] * self.weight + self.extras
        return cols


def hit_plan(table: Table) -> HitPlan:
    keys = set(table.keys)
    true_position = next((t for t in TRUE_POSITIONS if set(t) <= keys), ())
    if {"x", "y", "z"} <= keys:
        position = ("x", "y", "z")
    else:
        table.require(true_position or ("tx", "ty", "tz"), " (hit positions: x, y, z, tx, ty, tz or true_x, "
                      "true_y, true_z)")
        position = true_position
    module = next((c for c in HIT_ALIASES["module_id"] if c in keys), None)
    if {"volume_id", "layer_id"} <= keys and module:
        ids = ("volume_id", "layer_id", module)
    else:
        table.require(("geometry_id",), " (detector ids: volume_id, layer_id, sensitive_id or geometry_id)")
        ids = ("geometry_id",)
    barcodes = tuple(f"barcode_{n}" for n, _, _ in BARCODE_FIELDS)
    pid = ("particle_id",) if "particle_id" in keys else barcodes if set(barcodes) <= keys else ()
    truth = bool(pid) and bool(true_position)
    extras = ([k for k in table.keys if k not in KNOWN_HIT_BRANCHES and not k.startswith("n")]
              if table.title == OUR_TITLE else [])
    return HitPlan(position, ids, true_position, set(TRUTH_MOMENTA) <= keys, pid if truth else (), truth,
                   "hit_id" in keys, "weight" in keys, extras)


def particle_plan(table: Table) -> tuple[list[str], tuple[str, ...]]:
    """(columns to read, particle-id branches) of a particles table."""
    keys = set(table.keys)
    for prefix in ("", "barcode_"):
        names = tuple(f"{prefix}{n}" for n, _, _ in BARCODE_FIELDS)
        if "particle_id" not in keys and set(names) <= keys:
            pid = names
            break
    else:
        table.require(("particle_id",), " (or the barcode branches vertex_primary ... sub_particle)")
        pid = ("particle_id",)
    required = [next((a for a in PARTICLE_ALIASES.get(c, (c,)) if a in keys), c) for c in PARTICLE_REQUIRED]
    table.require(required)
    nhits = [c for c in PARTICLE_ALIASES["nhits"] if c in keys][:1]
    extras = ([k for k in table.keys if k not in KNOWN_PARTICLE_BRANCHES and not k.startswith("n")]
              if table.title == OUR_TITLE else [])
    return [*pid, *required, *nhits, *extras], pid


def _particle_ids(data: dict[str, np.ndarray], pid: Sequence[str], where: str = "particles") -> np.ndarray:
    for c in pid:  # float id branches must hold whole numbers: a cast would merge or invent particles
        v = data[c]
        if v.dtype.kind == "f" and (bad := ~np.isfinite(v) | (v != np.round(v))).any():
            raise InputError(f"{where}: branch '{c}' has value {v[np.argmax(bad)]}; "
                             "expected whole-number ids.")
    if pid == ("particle_id",):
        v = data["particle_id"]
        return v.view(np.int64) if v.dtype == np.uint64 else v.astype(np.int64)
    return pack_barcode(**{n: data[c] for (n, _, _), c in zip(BARCODE_FIELDS, pid)})


def _ints(values: np.ndarray, column: str, source: str, eid: int) -> np.ndarray:
    """int64 ids; a float branch must hold whole numbers (a cast would silently change the ids)."""
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise InputError(f"{source} (event {eid}): branch '{column}' has value {values[np.argmax(bad)]}; "
                             "expected whole-number ids.")
    return values.astype(np.int64)


def build_event(eid: int, data: dict[str, np.ndarray], plan: HitPlan, particles: pd.DataFrame | None, *,
                source: str, volumes: Sequence[int] | None, smear_hits: bool, seed: int) -> Event:
    """Assemble (and validate) one event from its hit columns and particle table."""
    n = len(data[plan.position[0]])
    if plan.ids == ("geometry_id",):
        dec = decode_geometry_id(data["geometry_id"])
        vol, lay, mod = dec["volume_id"], dec["layer_id"], dec["sensitive_id"]
    else:
        vol, lay, mod = (_ints(data[c], c, source, eid) for c in plan.ids)
    x, y, z = (data[c] for c in plan.position)
    if smear_hits:
        x, y, z = smear(x, y, z, vol, np.random.default_rng([int(seed), int(eid)]))
    hit_id = (_ints(data["hit_id"], "hit_id", source, eid) if plan.hit_id
              else np.arange(1, n + 1, dtype=np.int64))
    hits = pd.DataFrame({"hit_id": hit_id, "x": x, "y": y, "z": z, "volume_id": vol, "layer_id": lay,
                         "module_id": mod, **{c: data[c] for c in plan.extras}})
    truth = None
    if plan.truth:
        pid = _particle_ids(data, plan.particle_id, f"{source} (event {eid})")
        truth = pd.DataFrame({"hit_id": hit_id, "particle_id": pid,
                              **{c: data[s] for c, s in zip(("tx", "ty", "tz"), plan.true_position)}})
        if plan.momenta:
            for c in TRUTH_MOMENTA:
                truth[c] = data[c]
        else:  # no per-hit momentum in the file: the particle's (production) momentum, 0 for noise
            table = pd.DataFrame(columns=["px", "py", "pz"], dtype=np.float32)
            if particles is not None:  # duplicates are reported by validate() below
                table = particles.drop_duplicates("particle_id").set_index("particle_id")
            for c, src in zip(TRUTH_MOMENTA, ("px", "py", "pz")):
                truth[c] = truth["particle_id"].map(table[src]).fillna(0.0).to_numpy(np.float32)
        if particles is not None and "nhits" not in particles:
            counts = truth["particle_id"].value_counts()
            particles["nhits"] = particles["particle_id"].map(counts).fillna(0).astype(np.int64)
        truth["weight"] = data["weight"] if plan.weight else _weights(truth, particles)
    if volumes is not None:
        keep = np.isin(vol, volumes)
        hits = hits[keep].reset_index(drop=True)
        truth = None if truth is None else truth[keep].reset_index(drop=True)
    event = Event(int(eid), conform(hits), None if truth is None else conform(truth),
                  None if particles is None else conform(particles), source=source)
    return event.validate()


def _weights(truth: pd.DataFrame, particles: pd.DataFrame | None) -> np.ndarray:
    try:
        from trackformers.metrics import hit_weights
    except ImportError:  # metrics not available: uniform weights over non-noise hits, sum 1
        w = (truth["particle_id"].to_numpy() != 0).astype(np.float64)
        return (w / w.sum()) if w.sum() else w
    return np.asarray(hit_weights(truth=truth, particles=particles), dtype=np.float32)


def build_particles(data: dict[str, np.ndarray], pid: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame({"particle_id": _particle_ids(data, pid),
                       **{c: data[c] for c in columns if c not in pid}})
    df = df.rename(columns={a: c for c, names in PARTICLE_ALIASES.items() for a in names[1:]})
    df["q"] = np.rint(df["q"].to_numpy()).astype(np.int64)
    return df


def particles_file(hits_path: Path, hits_file, tree: str) -> tuple[Path, object] | None:  # noqa: ANN001
    """The file holding the particles tree for ``hits_path``: the same file, or a sibling by name."""
    if tree in [k.split(";")[0] for k in hits_file.keys(recursive=False)]:
        return hits_path, hits_file
    names = []
    if "hits" in hits_path.name:
        i = hits_path.name.rfind("hits")
        names.append(hits_path.name[:i] + "particles" + hits_path.name[i + 4:])
    for name in [*names, *PARTICLE_FILES]:
        cand = hits_path.with_name(name)
        if cand != hits_path and cand.is_file():
            return cand, open_file(cand)
    return None


def event_order(path: Path, file, index: EventIndex) -> list[int]:  # noqa: ANN001
    """Event ids in file order: our ``events`` tree (which also lists events without hits) when present,
    else the order of first appearance in the hits table."""
    if "events" in [k.split(";")[0] for k in file.keys(recursive=False)]:
        table = Table(path, file, "events")
        if table.title == OUR_TITLE and "event_id" in table.keys:
            ids = to_numpy(table.read(["event_id"], 0, table.num_entries)["event_id"]).astype(np.int64)
            listed = set(ids.tolist())
            unlisted = [e for e in index.ranges if e not in listed]
            if unlisted:  # our writer lists every event: the trees of this file do not belong together
                raise InputError(f"{path}: the hits tree has event {unlisted[0]}, which the events tree does "
                                 f"not list; expected the events {sorted(listed)[:5]}.")
            return ids.tolist()
    return list(index.ranges)


def read_file(path: Path, *, volumes: Sequence[int] | None, events: set[int] | None, smear_hits: bool = False,
              seed: int = 0, step_size: int = STEP_SIZE, hits_tree: str = "hits",
              particles_tree: str = "particles") -> Iterator[Event]:
    """Yield the (selected) events of one hits file lazily, reading bounded batches of entries."""
    f = open_file(path)
    table = Table(path, f, hits_tree)
    plan = hit_plan(table)
    if smear_hits:  # smearing always starts from the true positions, never from already measured ones
        if not plan.true_position:
            raise InputError(f"{table.where()}: smear=True needs true positions (tx, ty, tz or true_x, "
                             f"true_y, true_z); the tree has {', '.join(table.keys)}.")
        plan.position = plan.true_position
    index = EventIndex(table, plan.position[0], step_size=step_size)
    wanted = [e for e in event_order(path, f, index) if events is None or e in events]
    if not wanted:
        return
    piter, pindex, pcols, pid = None, None, [], ()
    found = particles_file(path, f, particles_tree)
    if found is not None:
        ptable = Table(found[0], found[1], particles_tree)
        pcols, pid = particle_plan(ptable)
        pindex = EventIndex(ptable, "px", step_size=step_size)
        piter = pindex.iter_events([e for e in wanted if e in pindex.ranges], pcols, lengths_of=pcols)
    lengths = plan.columns if index.jagged else ()
    hits_iter = index.iter_events([e for e in wanted if e in index.ranges], plan.columns, lengths_of=lengths)
    for eid in wanted:
        if eid in index.ranges:
            _, data = next(hits_iter)
        else:  # listed in our 'events' tree but without hits
            data = {c: np.zeros(0, dtype=np.float32) for c in plan.columns}
        particles = None
        if piter is not None:
            if eid in pindex.ranges:
                _, pdata = next(piter)
                particles = build_particles(pdata, pid, pcols)
            elif plan.truth and len(data[plan.position[0]]):
                raise InputError(f"{found[0]}: no particles of event {eid}, which {path.name} has hits of; "
                                 "expected the particles of the same events as the hits.")
            else:
                particles = build_particles({c: np.zeros(0) for c in pcols}, pid, pcols)
        yield build_event(eid, data, plan, particles, source=str(path), volumes=volumes,
                          smear_hits=smear_hits, seed=seed)
