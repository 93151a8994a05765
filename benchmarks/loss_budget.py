"""Where the two-stage μ = 200 pipeline loses reconstructable particles: filter, tracker, cleaning, selection.

For each event of ``EVENTS`` (TrackML CSV with truth) the pipeline of ``trackformers reconstruct --filter F
--checkpoint TRACKER --clean --selector S`` runs stage by stage (the same calls: the filter's keep mask, the
tracker on the kept hits, the merge, ``clean_submission``, ``select_submission``), and every reconstructable
particle (pT ≥ 0.9 GeV, |η| < 4, ≥ 3 hits) that no final track matches by double majority is charged to the
first stage after which it could not, or did not, match again:

* ``filter``: the filter kept at most half of its hits (no track can then hold more than half of them);
  split into ``filter: none kept`` and ``filter: some kept``;
* ``tracker``: more than half kept, but neither the tracker's tracks nor the cleaned ones match it;
* ``cleaning``: a tracker track matched it, the cleaned tracks do not;
* ``selection``: a cleaned track matched it and the selector dissolved it.

Printed: the counts (pooled over events) as fractions of the reconstructable particles, the final tracks'
fake rate (pooled: tracks of >= 3 hits that no particle matches by double majority), and the counts per stage in
bins of |η|, number of hits, pT and |vz|.

    python benchmarks/loss_budget.py EVENTS --filter data/checkpoints/filter.ckpt \
        --tracker data/checkpoints/tracker_mu200.ckpt --selector data/checkpoints/selector_mu200.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trackformers.clustering.cleaning import clean_submission
from trackformers.clustering.selection import TrackSelector, select_submission
from trackformers.commands.reconstruct import parse_vertex_z
from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.filtering import HitFilter
from trackformers.inference import StageTimer, load_module, reconstruct_event
from trackformers.io.trackml import prefixes, read_event
from trackformers.metrics import evaluate_event
from trackformers.metrics.matching import match_event
from trackformers.metrics.rates import reconstructable

STAGES = ("found", "filter: none kept", "filter: some kept", "tracker", "cleaning", "selection")


def charge(kept: np.ndarray, nhits: np.ndarray, raw: np.ndarray, clean: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Stage name per particle (shape (P,)) from its kept-hit count, hit count and whether the tracker's,
    the cleaned and the final tracks match it (bool arrays of shape (P,))."""
    out = np.full(len(nhits), "tracker", dtype=object)
    out[clean & ~final] = "selection"
    out[raw & ~clean] = "cleaning"
    out[2 * kept <= nhits] = "filter: some kept"
    out[kept == 0] = "filter: none kept"
    out[final] = "found"
    return out


def event_budget(event: Event, hit_filter: HitFilter, tracker: Any, selector: TrackSelector) -> pd.DataFrame:
    """One row per reconstructable particle of ``event`` (with truth; ``tracker`` a TrackingModule): particle_id,
    pt (GeV), eta, vz (mm, its production vertex), nhits, kept (hits the filter kept), raw / clean (matched by the
    tracker's tracks / the cleaned ones), stage. ``attrs["fake"]`` / ``attrs["tracks"]``: the final submission's
    fake tracks and tracks of >= 3 hits (the fake-rate counts)."""
    keep = hit_filter.keep(event)
    sub = reconstruct_event(tracker, hit_filter.subset(event, keep), None, StageTimer())
    raw = hit_filter.merge(event, keep, sub)
    clean = clean_submission(event.hits, raw)
    final = select_submission(event.hits, clean, selector)
    parts = match_event(event=event, submission=final).particles
    parts = parts[reconstructable(parts)].set_index("particle_id")
    matched = {name: match_event(event=event, submission=s).particles.set_index("particle_id")
               .loc[parts.index, "dm_matched"].to_numpy(bool) for name, s in (("raw", raw), ("clean", clean))}
    kept_pid = event.truth.set_index("hit_id").loc[event.hits["hit_id"].to_numpy()[keep], "particle_id"]
    kept = kept_pid.value_counts().reindex(parts.index, fill_value=0).to_numpy()
    nhits = parts["nhits"].to_numpy()
    stage = charge(kept, nhits, matched["raw"], matched["clean"], parts["dm_matched"].to_numpy(bool))
    vz = event.particles.set_index("particle_id")["vz"].reindex(parts.index).to_numpy(np.float64)
    table = pd.DataFrame({"particle_id": parts.index.to_numpy(), "pt": parts["pt"].to_numpy(),
                          "eta": parts["eta"].to_numpy(), "vz": vz, "nhits": nhits, "kept": kept,
                          "raw": matched["raw"], "clean": matched["clean"], "stage": stage})
    metrics = evaluate_event(event=event, submission=final)
    table.attrs.update(fake=int(metrics["n_fake"]), tracks=int(metrics["n_tracks_min_hits"]))
    return table


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except InputError as err:  # bad input: one sentence, exit 2
        print(f"loss_budget: error: {err}", file=sys.stderr)
        return 2


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("events", help="folder of TrackML events with truth")
    p.add_argument("--filter", required=True, help="hit filter checkpoint (its own vertex hypotheses, threshold)")
    p.add_argument("--tracker", required=True, help="tracker checkpoint for the kept hits")
    p.add_argument("--selector", required=True, help="track selector file")
    p.add_argument("--filter-vertex-z", help="vertex hypotheses (mm, comma-separated) instead of the filter's own")
    p.add_argument("--filter-threshold", type=float, help="keep probability cut instead of the filter's own")
    p.add_argument("--device", default="cpu", help="where the filter and the tracker run: cpu or cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    hit_filter = HitFilter.load(args.filter, device, vertex_z=parse_vertex_z(args.filter_vertex_z),
                                threshold=args.filter_threshold)
    tracker = load_module(args.tracker, device)
    selector = TrackSelector.load(args.selector)
    found = prefixes(Path(args.events))
    if not found:
        raise InputError(f"{args.events}: no TrackML events found; expected a folder of event files with truth.")
    rows = [event_budget(read_event(prefix, cells=False), hit_filter, tracker, selector) for prefix in found]
    fake, tracks = sum(r.attrs["fake"] for r in rows), sum(r.attrs["tracks"] for r in rows)
    table = pd.concat(rows, ignore_index=True)
    total = len(table)
    print(f"{len(rows)} events, {total} reconstructable particles (pT >= 0.9 GeV, |eta| < 4, >= 3 hits); filter "
          f"passes at {list(hit_filter.vertex_z)} mm, threshold {hit_filter.threshold}")
    print(f"{'stage':<20} {'particles':>9} {'fraction':>9}")
    for stage in STAGES:
        n = int((table["stage"] == stage).sum())
        print(f"{stage:<20} {n:>9} {n / max(total, 1):>9.4f}")
    print(f"final tracks of >= 3 hits: {tracks}, fake {fake} (fake rate {fake / max(tracks, 1):.4f}, pooled)")
    for name, col, bins in (("|eta|", table["eta"].abs(), [0, 1, 1.5, 2, 2.5, 4]),
                            ("hits", table["nhits"], [2, 3, 4, 6, 100]),
                            ("pT (GeV)", table["pt"], [0.9, 1.2, 2, 5, 1000]),
                            ("|vz| (mm)", table["vz"].abs(), [0, 30, 60, 100, 150, 1000])):
        counts = pd.crosstab(pd.Categorical(table["stage"], STAGES), pd.cut(col, bins, include_lowest=True),
                             rownames=["stage"], dropna=False)
        counts.loc["reconstructable"] = counts.sum()
        print(f"\nparticles by {name} (lost ones per stage; the efficiency is found / reconstructable)")
        print(counts.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
