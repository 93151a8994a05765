"""``TrackingModule``: the one LightningModule for every head.

The encoder, the task (head), the optimiser and the scheduler are given as ``{"class_path": ...,
"init_args": {...}}`` dictionaries and built here, so the hyper-parameters stored in a checkpoint are plain
dicts, strings and numbers: :meth:`TrackingModule.load_checkpoint` rebuilds the run from them with
``torch.load(weights_only=True)``, and only classes under allow-listed module prefixes can be named.
Validation and test run the task's hits → tracks step and log the real tracking metrics
(``val/dm_efficiency``, ``val/fake_rate``, ``val/trackml_score``, ...) from :mod:`trackformers.metrics`.
"""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from trackformers.batch import PackedBatch
from trackformers.errors import InputError, load_error
from trackformers.features import FeatureConfig, pack_events
from trackformers.training import pl

#: Module prefixes a checkpoint's class paths may name (anything else is refused).
ALLOWED = {
    "model": ("trackformers.models.",),
    "task": ("trackformers.models.tasks.",),
    "optimizer": ("torch.optim.",),
    "scheduler": ("torch.optim.lr_scheduler.",),
}
DEFAULT_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 0.01}}
#: Metrics logged per epoch (keys of trackformers.metrics.evaluate_event).
LOGGED_METRICS = ("trackml_score", "dm_efficiency", "perfect_efficiency", "fake_rate", "duplicate_rate")


def instantiate(spec: dict[str, Any], *, kind: str, **extra: Any) -> Any:
    """Build ``spec["class_path"](**extra, **spec["init_args"])`` if ``kind`` allows that class path."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
        raise InputError(f"{kind}: {spec!r} is not a {{class_path, init_args}} mapping; expected one.")
    path = spec["class_path"]
    if not path.startswith(ALLOWED[kind]):
        raise InputError(
            f"{kind}: class_path '{path}' is not allowed; expected one under {', '.join(ALLOWED[kind])}."
        )
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise InputError(f"{kind}: class_path '{path}' does not name a class; check the spelling.") from None
    # The prefix alone is not enough: 'trackformers.models.encoder.torch' would reach an imported module.
    if not isinstance(cls, type) or not f"{cls.__module__}.".startswith(ALLOWED[kind]):
        raise InputError(f"{kind}: class_path '{path}' is not a class defined under {', '.join(ALLOWED[kind])}.")
    args = {k: v for k, v in dict(spec.get("init_args") or {}).items() if k not in extra}
    return cls(**extra, **args)


def normalize_spec(spec: Any) -> Any:
    """``{class_path, init_args}`` with any other top-level key moved into ``init_args``.

    jsonargparse applies a command-line override like ``--model.encoder.init_args.window=8`` to a dict-typed
    argument as a top-level key (``encoder.window``); merging makes such overrides take effect.
    """
    if not isinstance(spec, dict) or "class_path" not in spec:
        return spec
    extra = {k: v for k, v in spec.items() if k not in ("class_path", "init_args")}
    return {"class_path": spec["class_path"], "init_args": {**dict(spec.get("init_args") or {}), **extra}}


def _plain(value: Any) -> Any:
    """Hyper-parameters as builtin types only (dict/list/str/float/int/bool/None), for weights_only loads."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"hyper-parameter value {value!r} of type {type(value).__name__} is not a plain value.")


def _check_backend(path: Path, module: TrackingModule) -> None:
    """InputError unless the encoder's attention backend is a registered one (or ``auto``)."""
    from trackformers.attention import api

    name = getattr(module.encoder, "backend", "auto")
    if name != "auto" and name not in api.backends():
        raise InputError(f"checkpoint {path}: attention backend {name!r} is unknown; expected auto or one of "
                         f"{', '.join(api.backends())}.")


class TrackingModule(pl.LightningModule):
    """Encoder + task, trained and evaluated through Lightning.

    Args:
        encoder: class_path/init_args of the encoder (``in_features`` is set from ``features``).
        task: class_path/init_args of the head (``d_model`` is set from the encoder).
        optimizer: class_path/init_args of a ``torch.optim`` optimiser (default AdamW lr 1e-3).
        scheduler: class_path/init_args of a ``torch.optim.lr_scheduler`` (stepped every step), or None.
        features: :class:`~trackformers.features.FeatureConfig` fields (normalisation constants).
        backend: overrides the encoder's attention backend (e.g. ``dense`` for CPU inference of a model
            trained with ``local``).
        pt_min / eta_max: GeV / |η| cuts of the reconstructable particles in the validation metrics.
        val_clusterer: clusterer spec ``{"name": ..., **params}`` for validation (None = the task's).
    """

    #: detector volume ids the model was trained on, from the checkpoint's metadata (:meth:`load_checkpoint`);
    #: None when unknown
    trained_volumes: list[int] | None = None

    def __init__(
        self,
        encoder: dict[str, Any],
        task: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
        backend: str | None = None,
        pt_min: float = 0.9,
        eta_max: float = 4.0,
        val_clusterer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        encoder, task, optimizer, scheduler = (normalize_spec(x) for x in (encoder, task, optimizer, scheduler))
        hp = _plain(
            {
                "encoder": encoder,
                "task": task,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "features": features,
                "backend": backend,
                "pt_min": pt_min,
                "eta_max": eta_max,
                "val_clusterer": val_clusterer,
            }
        )
        self.save_hyperparameters(hp)
        self.feature_config = FeatureConfig(**(features or {}))
        self.encoder = instantiate(encoder, kind="model", in_features=self.feature_config.num_features)
        if backend:
            self.encoder.backend = backend
        self.task = instantiate(task, kind="task", d_model=self.encoder.d_model)
        self.last_timings: dict[str, float] = {}
        self._results: dict[str, list[dict[str, float]]] = {}

    # ------------------------------------------------------------------ forward / losses
    def forward(self, batch: PackedBatch) -> dict[str, torch.Tensor]:
        return self.task(self.encoder(batch), batch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch.to(device, non_blocking=True) if isinstance(batch, PackedBatch) else batch

    def training_step(self, batch: PackedBatch, batch_idx: int) -> torch.Tensor:
        losses = self.task.loss(self(batch), batch)
        self._log_losses("train", losses, batch)
        return losses["loss"]

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], batch: PackedBatch) -> None:
        for key, value in losses.items():
            self.log(
                f"{stage}/{key}",
                value.detach().float(),
                batch_size=batch.num_events,
                prog_bar=key == "loss",
                on_step=stage == "train",
                on_epoch=stage != "train",
            )

    # ------------------------------------------------------------------ validation / test metrics
    def validation_step(self, batch: PackedBatch, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: PackedBatch, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _evaluate(self, stage: str, batch: PackedBatch) -> None:
        outputs = self(batch)
        if batch.has_truth:
            self._log_losses(stage, self.task.loss(outputs, batch), batch)
            for key, value in self.task.metrics(outputs, batch).items():
                self.log(f"{stage}/{key}", value, batch_size=batch.num_events, on_epoch=True)
        if batch.events is None or not batch.has_truth:
            return
        from trackformers.metrics import evaluate_event

        track_ids = self.task.tracks(outputs, batch, self._clusterer()).cpu()
        for (start, end), event in zip(batch.bounds(), batch.events):
            sub = pd.DataFrame(
                {"hit_id": batch.hit_ids[start:end].cpu().numpy(), "track_id": track_ids[start:end].numpy()}
            )
            result = evaluate_event(
                event=event, submission=sub, pt_min=self.hparams.pt_min, eta_max=self.hparams.eta_max
            )
            self._results.setdefault(stage, []).append(
                {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
            )

    def _clusterer(self) -> Any:
        return self.task.clusterer(self.hparams.val_clusterer)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        per_event = self._results.pop(stage, [])
        if not per_event:
            return
        from trackformers.metrics import summarize

        summary = summarize(per_event)
        for key in LOGGED_METRICS:
            value = summary.get(key)
            if isinstance(value, int | float) and not math.isnan(value):
                self.log(f"{stage}/{key}", float(value), prog_bar=key == "dm_efficiency")

    # ------------------------------------------------------------------ prediction / inference
    def predict_step(self, batch: PackedBatch, batch_idx: int) -> list[pd.DataFrame]:
        """One submission ``DataFrame[event_id, hit_id, track_id]`` per event of the batch."""
        track_ids = self.task.tracks(self(batch), batch, self._clusterer()).cpu()
        subs = []
        for e, (start, end) in enumerate(batch.bounds()):
            subs.append(
                pd.DataFrame(
                    {
                        "event_id": int(batch.event_ids[e]),
                        "hit_id": batch.hit_ids[start:end].cpu().numpy(),
                        "track_id": track_ids[start:end].numpy(),
                    }
                )
            )
        return subs

    @torch.no_grad()
    def pack_event(self, event: Any) -> PackedBatch:
        """One Event packed with this model's features (rows in ``event.hits`` order, no truth targets), on its
        device; ``self.last_timings["features"]`` holds the packing time in seconds."""
        t0 = time.perf_counter()
        batch = pack_events([event], self.feature_config, targets=False).to(self.device)
        self.last_timings = {"features": time.perf_counter() - t0}
        return batch

    def event_outputs(self, event: Any, *, forward: Any = None) -> tuple[PackedBatch, dict[str, torch.Tensor]]:
        """One Event packed (:meth:`pack_event`) and the model's outputs on it, in eval mode (the previous mode
        restored). ``forward`` runs the model instead of ``self(batch)``."""
        batch = self.pack_event(event)
        return batch, self.batch_outputs(batch, forward=forward)

    @torch.no_grad()
    def batch_outputs(self, batch: PackedBatch, *, forward: Any = None) -> dict[str, torch.Tensor]:
        """The model's outputs on a packed batch already on this module's device, in eval mode (the previous
        mode restored); ``forward`` runs the model instead of ``self(batch)``."""
        was_training = self.training
        self.eval()
        try:
            return self(batch) if forward is None else forward(batch)
        finally:
            self.train(was_training)

    def reconstruct(self, event: Any, *, clusterer: Any = None, forward: Any = None) -> pd.DataFrame:
        """``DataFrame[hit_id, track_id]`` (int64, one row per hit, hits-table order) for one Event.

        ``clusterer``: a callable Clusterer, a spec ``{"name": ..., **params}``, a registered name, or None
        (the task's default). ``forward``: runs the model instead of ``self(batch)`` (e.g. a
        :class:`~trackformers.cuda_graph.GraphedForward`). ``self.last_timings["features"]`` holds the
        feature time in seconds.
        """
        batch, outputs = self.event_outputs(event, forward=forward)
        if isinstance(clusterer, str):
            clusterer = {"name": clusterer}
        if clusterer is None or isinstance(clusterer, dict):
            clusterer = self.task.clusterer(clusterer)
        track_ids = self.task.tracks(outputs, batch, clusterer)
        return pd.DataFrame(
            {"hit_id": batch.hit_ids.cpu().numpy(), "track_id": track_ids.cpu().numpy().astype("int64")}
        )

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        opt = instantiate(
            self.hparams.optimizer or DEFAULT_OPTIMIZER, kind="optimizer", params=self.parameters()
        )
        if not self.hparams.scheduler:
            return opt
        sched = instantiate(self.hparams.scheduler, kind="scheduler", optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The random generators (random negatives in the losses, dropout) are part of the training state:
        # a run resumed from this checkpoint draws what an uninterrupted run would have drawn.
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        # the detector volumes of the training data, so that reconstruct can say when its input holds others
        volumes = getattr(getattr(self._trainer, "datamodule", None), "volumes", None)
        if volumes:
            checkpoint.setdefault("trackformers", {})["volumes"] = [int(v) for v in volumes]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states") or {}
        if isinstance(states.get("torch"), torch.Tensor):
            torch.set_rng_state(states["torch"])
        cuda = states.get("cuda")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

    @classmethod
    def load_checkpoint(
        cls, path: str | Path, *, map_location: Any = "cpu", backend: str | None = None
    ) -> TrackingModule:
        """Rebuild a module from a checkpoint with ``torch.load(weights_only=True)`` (eval mode).

        A file that needs arbitrary unpickling (tampered or not ours) or names a class outside the allow list
        is refused with :class:`InputError`. ``backend`` overrides the attention backend (e.g. ``dense``).
        """
        path = Path(path)
        if backend is not None:  # the caller's choice, not the file's: say so before blaming the file
            from trackformers.attention.api import check_backend_name

            check_backend_name(backend, f"attention backend override {backend!r}")
        if not path.is_file():
            raise InputError(f"checkpoint {path}: no such file; expected a .ckpt written by trackformers.")
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # noqa: BLE001 - whatever the unpickler trips on, the file is not one of ours
            raise load_error(f"checkpoint {path}", err, "a trackformers checkpoint of tensors and plain values"
                             ) from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
            raise InputError(
                f"checkpoint {path}: no state_dict/hyper_parameters; expected a Lightning checkpoint "
                "of a TrackingModule."
            )
        state = ckpt["state_dict"]
        if not isinstance(ckpt["hyper_parameters"], dict) or not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise InputError(
                f"checkpoint {path}: hyper_parameters / state_dict are not mappings of plain values / tensors; "
                "expected a checkpoint of a TrackingModule."
            )
        hp = {k: v for k, v in dict(ckpt["hyper_parameters"]).items() if not str(k).startswith("_")}
        if backend is not None:
            hp["backend"] = backend
        for kind in ("optimizer", "scheduler"):  # not built for inference, but never trusted either
            spec = hp.get(kind)
            if spec is not None and not str((spec or {}).get("class_path", "")).startswith(ALLOWED[kind]):
                raise InputError(f"checkpoint {path}: {kind} {spec!r} is not allowed; expected a class "
                                 f"under {', '.join(ALLOWED[kind])}.")
        try:
            module = cls(**hp)
        except InputError as err:  # e.g. a class_path outside the allow list: say which file named it
            raise InputError(f"checkpoint {path}: {err}") from None
        except Exception as err:  # noqa: BLE001 - any failure to build from the file's values is the file's
            raise InputError(
                f"checkpoint {path}: hyper-parameters do not fit TrackingModule ({type(err).__name__}: {err})."
            ) from None
        _check_backend(path, module)
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except (RuntimeError, TypeError, ValueError) as err:
            first = str(err).strip().splitlines()[-1].strip()[:200]
            raise InputError(f"checkpoint {path}: weights do not fit the model ({first}).") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise InputError(f"checkpoint {path}: weights {bad[:3]} hold NaN or infinite values; "
                             "expected finite weights.")
        if missing or unexpected:
            raise InputError(
                f"checkpoint {path}: weights do not match the model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})."
            )
        module.trained_volumes = _trained_volumes(ckpt.get("trackformers"))
        return module.to(map_location if isinstance(map_location, str | torch.device) else "cpu").eval()

    def export_checkpoint(
        self, path: str | Path, *, half: bool = False, extra: dict[str, Any] | None = None
    ) -> Path:
        """Write a small inference checkpoint (weights + hyper-parameters, no optimiser state), atomically.

        ``half`` stores floating weights as float16 (half the size; loaded back as float32).
        """
        from trackformers.io.atomic import atomic_path

        state = {
            k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
            for k, v in self.state_dict().items()
        }
        payload = {
            "state_dict": state,
            "hyper_parameters": _plain(dict(self.hparams)),
            "trackformers": _plain(extra or {}),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path


def _trained_volumes(info: Any) -> list[int] | None:
    """The detector volume ids a checkpoint's ``trackformers`` metadata says the model was trained on (e.g.
    ``[7, 8, 9]``, the pixel detector), or None when it does not say (or says it in another shape)."""
    volumes = info.get("volumes") if isinstance(info, dict) else None
    if isinstance(volumes, list) and volumes and all(isinstance(v, int) and not isinstance(v, bool) for v in volumes):
        return volumes
    return None
