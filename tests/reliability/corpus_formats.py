"""Raw table access per format for the malformed-input corpus: read a valid written event's tables
as DataFrames with the format's own library, and write mutated tables back, bypassing our writers."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from corpus import Case, file_mutations, table_mutations

from trackformers.events import Event
from trackformers.io import write_events

CSV_TABLES = ("hits", "truth", "particles")


def _copy_case(base: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(base, target)
    return target


def csv_cases(event: Event, root: Path, *, gz: bool) -> list[Case]:
    fmt = "csv.gz" if gz else "csv"
    base = root / f"{fmt}-valid"
    write_events([event], base, format="csv")
    suffix = ".csv.gz" if gz else ".csv"
    if gz:
        for table in CSV_TABLES:
            src = base / f"{event.name}-{table}.csv"
            with open(src, "rb") as f, gzip.open(src.with_suffix(".csv.gz"), "wb") as g:
                shutil.copyfileobj(f, g)
            src.unlink()
    raw = {t: pd.read_csv(base / f"{event.name}-{t}{suffix}") for t in CSV_TABLES}
    cols = {t: list(df.columns) for t, df in raw.items()}
    floats = {"hits": ("x", "y", "z"), "truth": ("tx", "ty", "tz", "tpx", "tpy", "tpz"),
              "particles": ("vx", "vy", "vz", "px", "py", "pz")}
    cases = []
    for name, mutate, expect in table_mutations(cols, floats, strings=True):
        if name in ("particles-drop-particle_type", "particles-rename-particle_type"):
            expect = "ok"  # the TrackML challenge's own particles files have no particle_type
        tables = {t: df.copy() for t, df in raw.items()}
        mutate(tables)
        folder = root / f"{fmt}-{name}"
        folder.mkdir()
        for t, df in tables.items():
            df.to_csv(folder / f"{event.name}-{t}{suffix}", index=False,
                      compression="gzip" if gz else None)
        cases.append(Case(f"{fmt}-{name}", folder, expect))
    for table in CSV_TABLES:
        for damage, fn in file_mutations(base):
            folder = _copy_case(base, root, f"{fmt}-{table}-{damage}")
            fn(folder / f"{event.name}-{table}{suffix}")
            cases.append(Case(folder.name, folder, "error"))
        folder = _copy_case(base, root, f"{fmt}-{table}-missing-file")
        (folder / f"{event.name}-{table}{suffix}").unlink()
        # Real data has no truth: an event without truth/particles files is valid for reconstruct.
        cases.append(Case(folder.name, folder, {"hits": "error", "truth": "no-truth", "particles": "ok"}[table]))
    return cases


def parquet_cases(event: Event, root: Path) -> list[Case]:
    base = root / "parquet-valid"
    write_events([event], base, format="parquet")
    files = {t: base / f"{t}.parquet" for t in CSV_TABLES}
    raw = {t: pq.read_table(p) for t, p in files.items()}
    meta = {t: pq.ParquetFile(p).metadata.metadata for t, p in files.items()}  # keeps the event list
    frames = {t: tab.to_pandas() for t, tab in raw.items()}
    cols = {t: list(df.columns) for t, df in frames.items()}
    floats = {"hits": ("x", "y", "z"), "truth": ("tx", "ty", "tz", "tpx", "tpy", "tpz"),
              "particles": ("vx", "vy", "vz", "px", "py", "pz")}
    cases = []

    def write(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
        folder.mkdir()
        for t, df in tables.items():
            tab = pa.Table.from_pandas(df, preserve_index=False)
            keep = {k: v for k, v in (meta[t] or {}).items() if k == b"trackformers.events"}
            pq.write_table(tab.replace_schema_metadata(keep), folder / f"{t}.parquet")

    for name, mutate, expect in table_mutations(cols, floats, strings=True):
        tables = {t: df.copy() for t, df in frames.items()}
        mutate(tables)
        write(root / f"parquet-{name}", tables)
        cases.append(Case(f"parquet-{name}", root / f"parquet-{name}", expect))
    tables = {t: df.copy() for t, df in frames.items()}
    tables["truth"]["event_id"] = tables["truth"]["event_id"] + 1
    write(root / "parquet-mismatched-event-ids", tables)
    cases.append(Case("parquet-mismatched-event-ids", root / "parquet-mismatched-event-ids", "error"))
    for table in CSV_TABLES:
        for damage, fn in file_mutations(base):
            folder = _copy_case(base, root, f"parquet-{table}-{damage}")
            fn(folder / f"{table}.parquet")
            cases.append(Case(folder.name, folder, "error"))
    return cases


def _read_trees(path: Path) -> dict[str, dict[str, object]]:
    import awkward as ak
    import uproot

    out = {}
    with uproot.open(path) as f:
        for key, cls in f.classnames(recursive=False).items():
            if cls == "TTree":
                out[key.split(";")[0]] = dict(zip(f[key].keys(), ak.unzip(f[key].arrays())))
    return out


def _write_trees(path: Path, trees: dict[str, dict[str, object]]) -> None:
    import uproot

    with uproot.recreate(path) as f:
        for name, branches in trees.items():
            tree = f.mktree(name, {k: v.type if hasattr(v, "type") else v.dtype for k, v in branches.items()},
                            title="trackformers")
            tree.extend(branches)


# ACTS hits files may lack our extra branches: the reader falls back (true positions for x, y, z; detector ids
# decoded from geometry_id; hit ids from the entry order; weights computed; momenta from the particles), and
# truth needs the particle barcodes and the true positions. See docs/io.md.
ROOT_FALLBACK = {"geometry_id", "tt", "te", "tpx", "tpy", "tpz", "deltapx", "deltapy", "deltapz", "deltae",
                 "index", "volume_id", "boundary_id", "layer_id", "approach_id", "sensitive_id", "hit_id",
                 "x", "y", "z", "weight"}
ROOT_TRUTH = {"tx", "ty", "tz", "barcode_vertex_primary", "barcode_vertex_secondary", "barcode_particle",
              "barcode_generation", "barcode_sub_particle"}
ROOT_PARTICLES_REQUIRED = {"particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q"}
UNUSED_IDS = {"geometry_id", "index", "boundary_id", "approach_id"}
ROOT_BARCODES = ("vertex_primary", "vertex_secondary", "particle", "generation", "sub_particle")


def _root_expectation(name: str, default: str) -> str:
    kind, _, branch = name.removeprefix("hits-").partition("-")
    if kind in ("drop", "rename") and branch in ROOT_FALLBACK:
        return "ok"
    if kind in ("drop", "rename") and branch in ROOT_TRUTH:
        return "no-truth"
    if kind == "fraction" and branch.startswith("barcode_"):
        return "error"
    if kind == "fraction" and default != "skip":
        return "ok" if branch in UNUSED_IDS else "error"
    return default


def root_cases(event: Event, root: Path) -> list[Case]:
    import awkward as ak

    base = root / "root-valid"
    write_events([event], base, format="root")
    trees = {p.name: _read_trees(p) for p in sorted(base.glob("*.root"))}
    hits = pd.DataFrame({k: ak.to_numpy(v) for k, v in trees["hits.root"]["hits"].items()})
    floats = {"hits": tuple(c for c in ("x", "y", "z", "tx", "ty", "tz", "tpx", "tpy", "tpz") if c in hits)}
    cases = []

    def write(folder: Path, new_hits: pd.DataFrame, particles: dict | None = None) -> None:
        folder.mkdir()
        for fname, content in trees.items():
            content = dict(content)
            if fname == "hits.root":
                content["hits"] = {c: new_hits[c].to_numpy() for c in new_hits.columns}
            if particles is not None and fname == "particles.root":
                content["particles"] = particles
            _write_trees(folder / fname, content)

    for name, mutate, expect in table_mutations({"hits": list(hits.columns)}, floats, strings=False):
        expect = _root_expectation(name, expect)
        if expect == "skip":
            continue
        tables = {"hits": hits.copy()}
        mutate(tables)
        if name == "empty-event":
            continue  # an empty event in ROOT is an event id with no hit entries: built below
        write(root / f"root-{name}", tables["hits"])
        cases.append(Case(f"root-{name}", root / f"root-{name}", expect))
    shifted = hits.copy()
    shifted["event_id"] = shifted["event_id"] + 1
    write(root / "root-mismatched-event-ids", shifted)
    cases.append(Case("root-mismatched-event-ids", root / "root-mismatched-event-ids", "error"))
    parts = dict(trees["particles.root"]["particles"])
    for branch in [b for b in parts if b != "event_id"]:
        reduced = {k: v for k, v in parts.items() if k != branch}
        name = f"root-particles-drop-{branch}"
        write(root / name, hits, reduced)
        # the ids also come from the five barcode branches (written beside particle_id, as newer ACTS has them)
        by_barcode = branch == "particle_id" and set(ROOT_BARCODES) <= set(reduced)
        cases.append(Case(name, root / name, "error" if branch in ROOT_PARTICLES_REQUIRED and not by_barcode
                          else "ok"))
    short = dict(parts)
    short["px"] = ak.Array([np.asarray(x)[:-1] for x in ak.to_list(parts["px"])])
    write(root / "root-particles-mismatched-vector-lengths", hits, short)
    cases.append(Case("root-particles-mismatched-vector-lengths", root / "root-particles-mismatched-vector-lengths",
                      "error"))
    for fname in trees:
        for damage, fn in file_mutations(base):
            folder = _copy_case(base, root, f"root-{fname.split('.')[0]}-{damage}")
            fn(folder / fname)
            cases.append(Case(folder.name, folder, "error"))
    return cases


def all_cases(event: Event, root: Path) -> list[Case]:
    """The whole corpus (several hundred cases) under ``root``."""
    cases = csv_cases(event, root, gz=False) + csv_cases(event, root, gz=True)
    cases += parquet_cases(event, root) + root_cases(event, root)
    (root / "cases.json").write_text(json.dumps([[c.name, str(c.input), c.expect] for c in cases]))
    return cases
