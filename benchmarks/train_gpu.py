"""Train one head on on-the-fly simulated pixel events with a plain Lightning Trainer, then evaluate it.

No jsonargparse needed (the GPU image lacks it): builds the same ``TrackingModule`` / ``TrackDataModule`` as
the Lightning CLI from command-line flags. Training runs in phases of (μ, seconds), a pile-up curriculum,
with bf16 mixed precision; a callback records the validation curve (``val/dm_efficiency``,
``val/fake_rate`` vs step). At the end the clusterer's radius is chosen on validation events (seed never used in
training) and the model is evaluated on test events of another seed at each requested μ: DM efficiency
(pT > 0.9 GeV, |η| < 4), perfect efficiency, fake and duplicate rate, TrackML score and latency per event.

    PYTHONPATH=. python benchmarks/train_gpu.py --task embedding --phases 0:60,20:240 --out $OUT/emb
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from trackformers.training import pl
from trackformers.training.datamodule import TrackDataModule
from trackformers.training.module import TrackingModule
from trackformers.training.prefilter import Prefilter

TASKS = {
    "embedding": ("EmbeddingTask", {"dim": 16, "temperature": 0.1, "window": 32, "n_random": 16}),
    "condensation": ("CondensationTask", {"dim": 8, "q_min": 0.1, "noise_weight": 1.0}),
    "hit_filter": ("HitFilterTask", {"dim": 16, "keep_pt_min": 0.5, "threshold": 0.5}),
    "regression": ("RegressionTask", {"min_pt": 0.5}),
    "classification": ("ClassificationTask", {"min_pt": 0.5}),
}
#: Radius scans per clusterer (embedding units): chosen on validation events.
SCANS = {
    "dbscan": ("eps", [0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4]),
    "condensation": ("t_d", [0.2, 0.3, 0.5, 0.8]),
}


class Curve(pl.Callback):
    """Validation metrics after each validation run, with the global step and wall time."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.t0 = time.time()
        self.step_offset = 0
        self.best_score = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None  # weights at the best validation TrackML score
        self.best_step = -1

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        if trainer.sanity_checking:
            return
        row = {"step": self.step_offset + trainer.global_step, "wall_s": round(time.time() - self.t0, 1)}
        for k, v in trainer.callback_metrics.items():
            if k.startswith(("val/", "train/loss")):
                row[k] = float(v)
        self.rows.append(row)
        print("curve", json.dumps(row), flush=True)
        score = row.get("val/trackml_score", float("nan"))
        if score == score and score > self.best_score:  # long runs at a constant rate can fall apart (run G)
            self.best_score, self.best_step = score, row["step"]
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class DataWait(pl.Callback):
    """Seconds the training loop waited for the next batch (gap between one step's end and the next start).

    A large share means the run is bound by the data workers (simulation + packing on the host CPU).
    """

    def __init__(self) -> None:
        self.wait = self.busy = 0.0
        self.steps = 0
        self._end: float | None = None
        self._start = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._end is not None:
            self.wait += now - self._end
        self._start = now

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._end = time.perf_counter()
        self.busy += self._end - self._start
        self.steps += 1

    def on_validation_start(self, trainer: Any, module: Any) -> None:
        self._end = None  # validation time is neither data wait nor a training step

    def summary(self) -> dict[str, float]:
        total = self.wait + self.busy
        return {"steps": self.steps, "data_wait_s": round(self.wait, 1), "step_s": round(self.busy, 1),
                "data_wait_share": round(self.wait / total, 3) if total else float("nan")}


def clusterer_json(text: str) -> dict[str, Any]:
    """``--val-clusterer`` value: a JSON object with a "name" key."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"name\": \"gpu\"}}': {err}") from None
    if not isinstance(spec, dict) or "name" not in spec:
        raise argparse.ArgumentTypeError("expected a JSON object with a \"name\" key, e.g. '{\"name\": \"gpu\"}'")
    return spec


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Task hyper-parameters set from the command line (also applied to a resumed model)."""
    out: dict[str, Any] = {}
    if args.temperature is not None:
        out["temperature"] = args.temperature
    if args.neg_window is not None:
        out["window"] = args.neg_window
    if args.anchor_pt is not None:
        out["pt_min"] = args.anchor_pt
    if args.object_pt is not None:
        out["object_pt_min"] = args.object_pt
    if args.neg_eta_slices is not None:
        out["neg_eta_slices"] = args.neg_eta_slices
    out.update(dict(args.task_arg))
    return out


def simulation_json(text: str) -> dict[str, Any]:
    """``--simulation`` / ``--prefilter`` value: a JSON object (simulator options; Prefilter arguments)."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object (option names to values): {err}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError("expected a JSON object (option names to values) in braces {...}")
    return spec


def rotary_pairs(text: str) -> tuple[int, int]:
    """'6,6' → (6, 6): rotary φ and η pairs per attention head."""
    try:
        phi, eta = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rotary expects two integers PHI,ETA (e.g. 6,6); got {text!r}") from None
    return phi, eta


def task_arg(text: str) -> tuple[str, Any]:
    """``--task-arg`` value ``KEY=JSON`` → (key, value), e.g. ``dim=0`` or ``clusterer={"name": "hdbscan"}``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=JSON, e.g. dim=0")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON ({err}); e.g. dim=0 or "
                                         "'clusterer={\"name\": \"hdbscan\"}'") from None


def one_cycle(args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up over 10 % of ``--one-cycle`` steps to ``--lr``, cosine decay to lr / 1000 at the end; the run
    must stop by then (``--max-steps`` is set to it), since OneCycleLR refuses to step past its total."""
    lr = 1e-3 if args.lr is None else args.lr
    return {"class_path": "torch.optim.lr_scheduler.OneCycleLR",
            "init_args": {"max_lr": lr, "total_steps": args.one_cycle, "pct_start": 0.1}}


def build(args: argparse.Namespace) -> TrackingModule:
    if args.resume:
        module = TrackingModule.load_checkpoint(args.resume, backend=args.backend)
        if args.new_task:  # keep the trained encoder, start a fresh head of --task (e.g. a hit filter)
            from trackformers.training.module import instantiate

            name, init = TASKS[args.task]
            spec = {"class_path": f"trackformers.models.tasks.{name}", "init_args": {**init, **overrides(args)}}
            module.task = instantiate(spec, kind="task", d_model=module.encoder.d_model)
            module.hparams["task"] = spec
        for key, value in overrides(args).items():
            # the task keeps its clusterer argument as ``clusterer_spec`` (``clusterer`` is a method)
            setattr(module.task, "clusterer_spec" if key == "clusterer" else key, value)
            module.hparams["task"]["init_args"][key] = value
        if args.encoder_window is not None:  # the attention half-width is a layout choice, not a weight
            module.encoder.window = args.encoder_window
            module.hparams["encoder"]["init_args"]["window"] = args.encoder_window
        if args.eta_slices is not None:  # so is the η-slicing of the attention (no weights depend on it)
            module.encoder.eta_slices = args.eta_slices
            module.hparams["encoder"]["init_args"]["eta_slices"] = args.eta_slices
        if args.grow_layers:  # deeper: new blocks start as the identity (Encoder.add_blocks)
            module.encoder.add_blocks(args.grow_layers)
            module.hparams["encoder"]["init_args"]["n_layers"] = len(module.encoder.blocks)
        if args.val_clusterer:
            module.hparams["val_clusterer"] = args.val_clusterer
        if args.lr is not None:
            module.hparams["optimizer"]["init_args"]["lr"] = args.lr
        if args.one_cycle:
            module.hparams["scheduler"] = one_cycle(args)
        elif args.decay_steps:  # fine-tuning: linear decay of the learning rate to 10 % over decay_steps
            module.hparams["scheduler"] = {
                "class_path": "torch.optim.lr_scheduler.LinearLR",
                "init_args": {"start_factor": 1.0, "end_factor": 0.1, "total_iters": args.decay_steps},
            }
        module.train()
        return module
    name, init = TASKS[args.task]
    init = {**init, **overrides(args)}
    return TrackingModule(
        encoder={
            "class_path": "trackformers.models.encoder.Encoder",
            "init_args": {
                "d_model": args.d_model,
                "n_heads": args.heads,
                "n_layers": args.layers,
                "mlp_ratio": 2.0,
                "activation": "swiglu",
                "norm": "rmsnorm",
                "backend": args.backend,
                "window": args.window,
                "eta_slices": args.eta_slices or 0,
                "rotary_phi": args.rotary[0],
                "rotary_eta": args.rotary[1],
            },
        },
        task={"class_path": f"trackformers.models.tasks.{name}", "init_args": dict(init)},
        optimizer={"class_path": "torch.optim.AdamW",
                   "init_args": {"lr": 1e-3 if args.lr is None else args.lr, "weight_decay": 0.01}},
        scheduler=one_cycle(args) if args.one_cycle else {
            "class_path": "torch.optim.lr_scheduler.LinearLR",
            "init_args": {"start_factor": 0.05, "total_iters": 300},
        },
        features={},
        pt_min=0.9,
        eta_max=4.0,
        val_clusterer=args.val_clusterer,
    )


def preflight(module: TrackingModule, args: argparse.Namespace) -> str:
    """One forward + backward on a μ=20 event with the requested backend; else falls back to flex, dense."""
    from trackformers.features import pack_events

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = pack_events(simulate(1, seed=5, pileup=20.0)).to(device)
    module.to(device)
    for backend in dict.fromkeys([args.backend, "flex", "dense"]):
        module.encoder.backend = backend
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision.startswith("bf16")):
                loss = module.task.loss(module(batch), batch)["loss"]
            loss.backward()
            module.zero_grad(set_to_none=True)
            module.hparams["backend"] = backend
            print(f"preflight: backend {backend} ok (loss {float(loss):.3f})", flush=True)
            return backend
        except Exception as err:  # noqa: BLE001 - report and try the next backend
            print(f"preflight: backend {backend} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
    raise SystemExit("no attention backend works")


def train(module: TrackingModule, args: argparse.Namespace, curve: Curve, wait: DataWait) -> int:
    steps = 0
    for phase in args.phases.split(","):
        # "20:300" trains 300 s at μ = 20; "0+20:300" alternates μ = 0 and μ = 20 events in the stream.
        mix, seconds_text = phase.split(":")
        mus = [float(x) for x in mix.split("+")]
        seconds = float(seconds_text)
        mu = mus[-1]
        data = TrackDataModule(
            volumes=[7, 8, 9],
            pileup=mus if len(mus) > 1 else mu,
            train_seed=args.train_seed + int(mu * 1000),
            val_seed=args.val_seed,
            n_val_events=args.val_events,
            max_hits_per_batch=args.max_hits,
            num_workers=args.workers,
            simulation=args.simulation,
        )
        trainer = pl.Trainer(
            accelerator="gpu" if torch.cuda.is_available() else "cpu",
            devices=1,
            precision=args.precision,
            max_steps=args.max_steps,
            max_time={"seconds": seconds},
            val_check_interval=args.val_every,
            check_val_every_n_epoch=None,
            limit_val_batches=args.val_events,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            callbacks=[curve, wait, *([Prefilter(**args.prefilter)] if args.prefilter else [])],
            gradient_clip_val=1.0,
        )
        curve.step_offset = steps
        t0 = time.time()
        trainer.fit(module, datamodule=data)
        steps += trainer.global_step
        print(f"phase mu={mix}: {trainer.global_step} steps in {time.time() - t0:.0f} s; "
              f"{json.dumps(wait.summary())}", flush=True)
    return steps


def simulate(n: int, *, seed: int, pileup: float) -> list[Any]:
    from trackformers.simulation import simulate as sim

    return list(sim(n, seed=seed, pileup=pileup, volumes=(7, 8, 9), first_event_id=seed))


def evaluate(module: TrackingModule, events: list[Any], clusterer: Any) -> dict[str, Any]:
    from trackformers.metrics import evaluate_event, summarize

    per_event, latency = [], []
    for event in events:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sub = module.reconstruct(event, clusterer=clusterer)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        latency.append(time.perf_counter() - t0)
        per_event.append(evaluate_event(event=event, submission=sub, pt_min=0.9, eta_max=4.0))
    summary = summarize(per_event)
    summary.pop("per_event", None)
    latency.sort()
    summary["latency_median_s"] = latency[len(latency) // 2]
    summary["hits_per_event"] = sum(len(e.hits) for e in events) / max(len(events), 1)
    return summary


def choose_clusterer(module: TrackingModule, events: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The radius maximising the TrackML score on validation events."""
    base = dict(module.task.default_clusterer if module.task.clusterer_spec is None else module.task.clusterer_spec)
    if base["name"] not in SCANS:
        return base, []
    if base["name"] == "dbscan":
        base["n_jobs"] = 4  # scikit-learn threads: μ = 200 events hold 60k hits
    key, values = SCANS[base["name"]]
    scan = []
    for v in values:
        spec = {**base, key: v}
        s = evaluate(module, events, spec)
        scan.append({key: v, "dm_efficiency": s["dm_efficiency"], "fake_rate": s["fake_rate"],
                     "trackml_score": s["trackml_score"]})
        print("scan", json.dumps(scan[-1]), flush=True)

    def merit(r: dict[str, Any]) -> float:
        # The TrackML score, not DM eff − fake rate: the difference prefers a radius that finds almost
        # nothing at a low fake rate (run F: 0.01 / 0.31 over 0.30 / 0.61) to one that finds tracks.
        score = r["trackml_score"]
        return score if not math.isnan(score) else 0.0

    best = max(scan, key=merit)
    return {**base, key: best[key]}, scan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="embedding")
    p.add_argument("--phases", default="0:60,20:180", help="comma list of mu:seconds (mu may be a mix: 0+20)")
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--rotary", type=rotary_pairs, default=(0, 0), metavar="PHI,ETA",
                   help="new models: rotary (φ, η) dimension pairs per head, e.g. 6,6 (default 0,0: off)")
    p.add_argument("--eta-slices", type=int, default=None,
                   help="attention within η-slices (0 = whole events; default 0, or the checkpoint's on resume)")
    p.add_argument("--val-clusterer", default=None, type=clusterer_json,
                   help='validation clusterer as JSON, e.g. \'{"name": "gpu", "radius": 0.2}\' (default: the task\'s)')
    p.add_argument("--new-task", action="store_true",
                   help="with --resume: keep the encoder's weights, replace the head by a fresh --task head")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=JSON", type=task_arg,
                   help="task hyper-parameter, e.g. dim=0 (also on resume)")
    p.add_argument("--simulation", type=simulation_json, default=None,
                   help='extra simulator options of the training and validation events, e.g. '
                        '\'{"pt_min": 0.8, "multiplicity": 10.17}\' (hard particles at their minimum-bias rate)')
    p.add_argument("--prefilter", type=simulation_json, default=None, metavar="JSON",
                   help='train on what a frozen hit filter keeps: trackformers.training.prefilter.Prefilter '
                        'arguments, e.g. \'{"checkpoint": "filter.ckpt", "threshold": 0.6}\'')
    p.add_argument("--neg-eta-slices", type=int, default=None, help="contrastive negatives within η-slices")
    p.add_argument("--backend", default="local")
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3; also on resume)")
    p.add_argument("--one-cycle", type=int, default=0, help="steps of a one-cycle schedule (one phase only)")
    p.add_argument("--keep-best", action="store_true", help="evaluate/export the best-validated weights")
    p.add_argument("--max-hits", type=int, default=60_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--val-events", type=int, default=2)
    p.add_argument("--train-seed", type=int, default=11)
    p.add_argument("--val-seed", type=int, default=1_000_003)
    p.add_argument("--test-seed", type=int, default=2_000_003)
    p.add_argument("--eval-pileups", default="0,20")
    p.add_argument("--eval-events", type=int, default=10)
    p.add_argument("--resume", default=None)
    p.add_argument("--decay-steps", type=int, default=0, help="with --resume: LR decays linearly to 10%%")
    p.add_argument("--temperature", type=float, default=None, help="contrastive temperature (also on resume)")
    p.add_argument("--neg-window", type=int, default=None, help="contrastive φ-neighbour negatives per side")
    p.add_argument("--encoder-window", type=int, default=None, help="with --resume: new attention half-width")
    p.add_argument("--grow-layers", type=int, default=0, help="with --resume: append N identity-initialised blocks")
    p.add_argument("--eval-windows", default="", help="extra attention half-widths to evaluate (largest μ only)")
    p.add_argument("--anchor-pt", type=float, default=None, help="GeV, contrastive anchors' pT cut")
    p.add_argument("--object-pt", type=float, default=None, help="GeV, condensation objects' pT cut")
    p.add_argument("--save-ckpt", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.resume and args.rotary != (0, 0):
        p.error("--rotary builds new models; a resumed model keeps the rotary encoding of its checkpoint")
    if args.grow_layers < 0:
        p.error(f"--grow-layers appends N >= 0 blocks; got {args.grow_layers}")
    if args.grow_layers and not args.resume:
        p.error("--grow-layers deepens a resumed model; a new one takes --layers")
    try:  # a wrong key fails here, not when the first phase starts
        _ = args.prefilter and Prefilter(**args.prefilter)
    except TypeError as err:
        p.error(f"--prefilter: {err}; expected keys of trackformers.training.prefilter.Prefilter (checkpoint, ...)")
    if args.one_cycle:
        if len(args.phases.split(",")) != 1:
            p.error("--one-cycle needs a single phase (each phase builds a new optimiser)")
        args.max_steps = args.one_cycle if args.max_steps < 0 else min(args.max_steps, args.one_cycle)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.train_seed)
    torch.set_float32_matmul_precision("high")

    module = build(args)
    backend = preflight(module, args)
    curve, wait = Curve(), DataWait()
    t0 = time.time()
    steps = train(module, args, curve, wait)
    train_s = time.time() - t0
    if args.keep_best and curve.best_state is not None:
        module.load_state_dict(curve.best_state)
        print(f"keep-best: weights of step {curve.best_step} (val TrackML score {curve.best_score:.4f})", flush=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = module.to(device).eval()

    n_params = sum(p.numel() for p in module.parameters())
    info: dict[str, Any] = {
        "task": args.task, "args": vars(args), "backend": backend, "steps": steps,
        "train_seconds": round(train_s, 1), "params": n_params, "curve": curve.rows, "data_wait": wait.summary(),
        "kept_best_step": curve.best_step if args.keep_best else None,
        "results": {},
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }

    def save() -> None:  # after every stage, so that a run cut short still leaves its results
        Path(f"{args.out}.json").write_text(json.dumps(info, indent=1, default=float))
        if args.save_ckpt:
            module.export_checkpoint(
                f"{args.out}.ckpt",
                # the volumes of every event here (pixel detector): reconstruct notes hits outside them
                extra={"steps": steps, "train_seconds": round(train_s, 1), "task": args.task, "volumes": [7, 8, 9]},
            )

    save()
    val_mu = min(float(x) for x in args.eval_pileups.split(",")[-2:])
    best, scan = (
        ({"name": "dbscan"}, [])
        if args.task == "classification"
        else choose_clusterer(module, simulate(3, seed=args.val_seed + 7, pileup=min(val_mu, 20.0)))
    )
    info["clusterer"], info["scan"] = best, scan
    # The chosen clusterer becomes the task's default in the exported checkpoint; ship with backend "auto":
    # the fused kernel on a GPU, a backend that runs on the CPU elsewhere.
    module.hparams["task"]["init_args"]["clusterer"] = best
    module.task.clusterer_spec = best
    module.hparams["backend"] = "auto"
    save()
    for mu in (float(x) for x in args.eval_pileups.split(",")):
        n = args.eval_events if mu <= 20 else max(2, args.eval_events // 3)
        r = evaluate(module, simulate(n, seed=args.test_seed, pileup=mu), best)
        info["results"][f"mu{mu:g}"] = r
        save()
        print(
            f"eval mu={mu:g}: dm_eff {r['dm_efficiency']:.4f} fake {r['fake_rate']:.4f} dup "
            f"{r['duplicate_rate']:.4f} perfect {r['perfect_efficiency']:.4f} score {r['trackml_score']:.4f} "
            f"latency {r['latency_median_s'] * 1e3:.1f} ms ({r['hits_per_event']:.0f} hits)",
            flush=True,
        )
    trained_window = module.encoder.window
    for w in (int(x) for x in args.eval_windows.split(",") if x):
        module.encoder.window = w  # inference with a wider φ reach; the checkpoint keeps the trained window
        for mu in [max(float(x) for x in args.eval_pileups.split(","))]:  # the densest events only
            n = args.eval_events if mu <= 20 else max(2, args.eval_events // 3)
            r = evaluate(module, simulate(n, seed=args.test_seed, pileup=mu), best)
            info["results"][f"mu{mu:g}_window{w}"] = r
            print(f"eval window={w} mu={mu:g}: dm_eff {r['dm_efficiency']:.4f} fake {r['fake_rate']:.4f} "
                  f"latency {r['latency_median_s'] * 1e3:.1f} ms", flush=True)
        module.encoder.window = trained_window
        save()
    print("done", json.dumps({"steps": steps, "params": n_params, "clusterer": best}), flush=True)


if __name__ == "__main__":
    main()
