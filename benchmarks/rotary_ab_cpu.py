"""CPU A/B of the rotary (φ, η) attention encoding: a fresh small embedding model trained at low pile-up.

A 3-layer, d_model 64, 4-head encoder (``dense`` attention over whole events), contrastive head (16 dims,
τ = 0.05, ±128 φ-neighbour negatives, anchors pT ≥ 0.5 GeV), AdamW lr 1e-3, 4 built-in events per step
(pixel volumes; training seed 21), evaluated every 50 steps on 4 test events (seed 2 000 003) with DBSCAN at the eps
of {0.1, 0.2, 0.3, 0.4} that maximises the TrackML score. One thread; one line of JSON per evaluation.

    PYTHONPATH=. python benchmarks/rotary_ab_cpu.py --rotary 4,4 --pileup 5 --steps 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from trackformers.features import pack_events
from trackformers.metrics import evaluate_event, summarize
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rotary", default="0,0", help="rotary φ, η pairs per head (0,0: off)")
    p.add_argument("--pileup", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    rp, re_ = (int(x) for x in args.rotary.split(","))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    module = TrackingModule(
        encoder={"class_path": "trackformers.models.encoder.Encoder", "init_args": dict(
            d_model=64, n_heads=4, n_layers=3, mlp_ratio=2.0, activation="swiglu", norm="rmsnorm",
            backend="dense", window=None, rotary_phi=rp, rotary_eta=re_)},
        task={"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": dict(
            dim=16, temperature=0.05, window=128, n_random=16, pt_min=0.5)},
        features={}, pt_min=0.9, eta_max=4.0)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.01)
    vol = (7, 8, 9)
    test = list(simulate(4, seed=2_000_003, pileup=args.pileup, volumes=vol, first_event_id=1))
    stream = simulate(10**6, seed=21, pileup=args.pileup, volumes=vol)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        batch = pack_events([next(stream) for _ in range(4)])
        loss = module.task.loss(module(batch), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        if step % 50:
            continue
        module.eval()
        best = None
        with torch.no_grad():
            for eps in (0.1, 0.2, 0.3, 0.4):
                spec = {"name": "dbscan", "eps": eps, "min_samples": 2}
                s = summarize([evaluate_event(event=e, submission=module.reconstruct(e, clusterer=spec),
                                              pt_min=0.9, eta_max=4.0) for e in test])
                row = {"eps": eps, "dm_eff": round(s["dm_efficiency"], 3), "fake": round(s["fake_rate"], 3),
                       "score": round(s["trackml_score"], 3)}
                best = row if best is None or row["score"] > best["score"] else best
        module.train()
        print(json.dumps({"rotary": [rp, re_], "step": step, "loss": round(loss.item(), 3), **best,
                          "s": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
