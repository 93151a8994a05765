"""The hit filter's vertex hypotheses on events with truth: where it loses tracks, and what the passes buy.

For each event of ``EVENTS`` (TrackML CSV with truth) the filter runs once per hypothesis z_v of the union of
``--sets`` (the event moved by −z_v, :class:`trackformers.filtering.HitFilter` with that one hypothesis).
Printed:

* ``--by-vz``: per single pass, the fraction of reconstructable particles (pT ≥ 0.9 GeV, ≥ 3 hits) of which
  the filter keeps no hit at 0.5, in bins of the particle's vertex z (mm) — the filter's bias to vertices
  near the origin, and how a hypothesis moves it;
* ``--lost``: per set and threshold, the fraction of reconstructable particles that keep at most half of their
  hits (a track of them can then not pass double majority), in bins of η, pT (GeV), hits and vz (mm);
* per hypothesis set (keep probability = the maximum over its passes), threshold and tracker clusterer:
  hits kept, then the two-stage result scored on the whole event (means over events), exactly what
  ``trackformers reconstruct EVENTS --filter F --filter-vertex-z=SET --filter-threshold T --checkpoint TRACKER
  --evaluate`` computes; with ``--clean`` each setting also with ``reconstruct --clean`` (helix-fit cleaning of the
  merged submission, default parameters).

Example (CPU)::

    python benchmarks/filter_vertices.py VAL_EVENTS --filter data/checkpoints/filter.ckpt \
        --tracker data/checkpoints/tracker_mu200.ckpt --by-vz --sets "0;0,40,-40,80,-80" --thresholds 0.5,0.7 \
        --hdbscan 3,3 4,3
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackformers.clustering import make_clusterer
from trackformers.clustering.cleaning import clean_submission
from trackformers.events import Event
from trackformers.filtering import HitFilter
from trackformers.io.trackml import prefixes, read_event
from trackformers.metrics import evaluate_event
from trackformers.training.module import TrackingModule

VZ_BINS = (-300.0, -100.0, -50.0, 0.0, 50.0, 100.0, 300.0)


LOST_BINS = {"eta": (-4.0, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 4.0), "pt": (0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 100.0),
             "hits": (2, 3, 4, 5, 6, 8, 40), "vz": VZ_BINS}


def particles_lost(event: Event, keep: np.ndarray) -> pd.DataFrame:
    """Reconstructable particles (pT ≥ 0.9 GeV, ≥ 3 hits): vz (mm), η, pT (GeV), hits; ``none`` = no hit kept,
    ``half`` = at most half of the hits kept."""
    pid = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy(), "particle_id"].to_numpy()
    hits = pd.DataFrame({"pid": pid, "keep": keep})[pid != 0]
    per = hits.groupby("pid")["keep"].agg(["size", "sum"]).join(event.particles.set_index("particle_id"))
    pt = np.hypot(per["px"], per["py"])
    per = per[(pt >= 0.9) & (per["size"] >= 3)]
    pt = np.hypot(per["px"], per["py"])
    return pd.DataFrame({"vz": per["vz"], "eta": np.arcsinh(per["pz"] / pt), "pt": pt, "hits": per["size"],
                         "none": per["sum"] == 0, "half": per["sum"] <= per["size"] / 2})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("events", help="folder of TrackML events with truth")
    p.add_argument("--filter", required=True, help="hit-filter checkpoint")
    p.add_argument("--tracker", required=True, help="tracker checkpoint (its default clusterer unless --hdbscan)")
    p.add_argument("--sets", default="0;0,40,-40,80,-80", help="hypothesis sets in mm, ';' between sets")
    p.add_argument("--thresholds", default="0.5", help="keep probability cuts, comma-separated")
    p.add_argument("--hdbscan", nargs="*", default=[], metavar="MCS,MS",
                   help="HDBSCAN min_cluster_size,min_samples settings (none: the tracker's own)")
    p.add_argument("--by-vz", action="store_true", help="print the per-pass loss in bins of vertex z")
    p.add_argument("--lost", action="store_true", help="print who keeps at most half of the hits, per set")
    p.add_argument("--clean", action="store_true", help="also each setting with reconstruct's --clean (defaults)")
    args = p.parse_args()
    hit_filter = HitFilter.load(args.filter, torch.device("cpu"))
    tracker = TrackingModule.load_checkpoint(args.tracker)
    sets = [tuple(float(z) for z in s.split(",")) for s in args.sets.split(";")]
    events = [read_event(prefix) for prefix in prefixes(Path(args.events))]
    passes: dict[tuple[int, float], np.ndarray] = {}
    for event in events:
        for z in sorted({z for s in sets for z in s}):
            hit_filter.vertex_z = (z,)
            passes[event.event_id, z] = hit_filter.probability(event)
            if args.by_vz:
                lost = particles_lost(event, passes[event.event_id, z] >= 0.5)
                rate = lost.groupby(pd.cut(lost["vz"], VZ_BINS), observed=False)["none"].mean()
                print(f"event {event.event_id} z_v {z:+.0f} mm: no hit kept, by vz bin {list(VZ_BINS)}:",
                      " ".join(f"{v:.2f}" for v in rate.to_numpy()), f"| all {lost['none'].mean():.3f}", flush=True)
    clusterers = [(make_clusterer("hdbscan", min_cluster_size=int(a), min_samples=int(b)), f"hdbscan {a},{b}")
                  for a, b in (h.split(",") for h in args.hdbscan)] or [(None, "tracker's own clusterer")]
    for s in sets:
        for threshold in (float(t) for t in args.thresholds.split(",")):
            if args.lost:
                lost = pd.concat([particles_lost(e, np.max([passes[e.event_id, z] for z in s], 0) >= threshold)
                                  for e in events])
                print(f"vertex_z {','.join(f'{z:g}' for z in s)} threshold {threshold}: at most half of the hits "
                      f"kept for {lost['half'].mean():.3f} of {len(lost)} particles", flush=True)
                for col, bins in LOST_BINS.items():
                    rate = lost.groupby(pd.cut(lost[col], bins), observed=False)["half"].agg(["mean", "size"])
                    print(f"  by {col}:", " ".join(f"{i}:{m:.2f}({n})" for i, (m, n) in rate.iterrows()), flush=True)
            for (clusterer, name), clean in itertools.product(clusterers, (False, True) if args.clean else (False,)):
                rows = []
                for event in events:
                    keep = np.max([passes[event.event_id, z] for z in s], 0) >= threshold
                    sub = HitFilter.merge(event, keep, tracker.reconstruct(HitFilter.subset(event, keep),
                                                                           clusterer=clusterer))
                    if clean:  # as `reconstruct --clean`: helix-fit cleaning of the merged tracks (defaults)
                        sub = clean_submission(event.hits, sub)
                    rows.append({**evaluate_event(event=event, submission=sub),
                                 "kept": int(keep.sum())})
                m = pd.DataFrame(rows).mean(numeric_only=True)
                setting = f"vertex_z {','.join(f'{z:g}' for z in s)} threshold {threshold} {name}{' + clean' * clean}"
                print(f"{setting}: kept {m['kept']:.0f} "
                      f"DM eff {m['dm_efficiency']:.3f} perfect {m['perfect_efficiency']:.3f} fake "
                      f"{m['fake_rate']:.3f} dup {m['duplicate_rate']:.3f} score {m['trackml_score']:.4f}", flush=True)


if __name__ == "__main__":
    main()
