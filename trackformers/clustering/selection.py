"""Track selection: a small classifier of track features that dissolves tracks unlikely to be one particle's.

A fake track (one that no particle matches by double majority) mixes hits of several particles or holds
hits of soft particles the filter let through; its helix fit, layer pattern and radii show it. The
:class:`TrackSelector` (an MLP over :func:`~trackformers.clustering.track_features.track_features`, inputs
standardised by stored means and widths) gives each track of >= ``min_hits`` (3) hits a probability of being
real; tracks below ``cut`` become singletons (fresh ids above the largest input id, as cleaning does). Trained by
:func:`fit_selector` on tracks labelled by the truth (``benchmarks/train_selector.py``); saved as tensors and
plain values, loaded with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from trackformers.clustering.track_features import FEATURES, hit_columns, track_features
from trackformers.errors import InputError, load_error, load_error_reason

#: Written into every selector file; a file without it is not one.
FORMAT = "trackformers-track-selector-1"


class TrackSelector(nn.Module):
    """MLP: standardised features (T, F) → logit of "a particle's track" (T,).

    Args:
        hidden: widths of the hidden layers (SiLU between them).
        cut: tracks with a probability below it are dissolved by :meth:`select`.
        field_t: solenoid field (T) used for the fitted pT feature.
        min_hits: tracks with fewer hits are not judged (kept as they are).
    """

    def __init__(self, hidden: tuple[int, ...] = (32, 32), *, cut: float = 0.5, field_t: float = 2.0,
                 min_hits: int = 3) -> None:
        super().__init__()
        if not field_t > 0.0:
            raise InputError(f"track selector field_t {field_t}: expected a positive field in T.")
        if int(min_hits) < 1:
            raise InputError(f"track selector min_hits {min_hits}: expected an integer >= 1.")
        self.hidden, self.field_t, self.min_hits = tuple(int(h) for h in hidden), float(field_t), int(min_hits)
        self.cut = cut
        self.meta: dict[str, Any] = {}  # where it was trained and measured (plain values; save / load)
        self.final_loss: float | None = None  # the training loss at the last epoch (fit_selector)
        widths = (len(FEATURES), *self.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        self.register_buffer("mean", torch.zeros(len(FEATURES)))
        self.register_buffer("scale", torch.ones(len(FEATURES)))

    @property
    def cut(self) -> float:
        """Tracks with a probability below it are dissolved; in [0, 1) (``--selector-cut``)."""
        return self._cut

    @cut.setter
    def cut(self, value: float) -> None:
        if not 0.0 <= float(value) < 1.0:
            raise InputError(f"track selector cut (--selector-cut) {value}: expected a probability in [0, 1).")
        self._cut = float(value)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (T,) of features (T, F) float32, columns in FEATURES order."""
        return self.net((features - self.mean) / self.scale).squeeze(-1)

    @torch.no_grad()
    def probability(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray,
                    track_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, p)``: every track of >= min_hits hits (ids ascending) and its probability of being real."""
        ids, feats = track_features(x, y, z, layer, track_id, min_hits=self.min_hits, field_t=self.field_t)
        logits = self(torch.from_numpy(feats)) if len(ids) else torch.zeros(0)
        return ids, torch.sigmoid(logits).numpy().astype(np.float64)

    def select(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray,
               track_id: np.ndarray) -> np.ndarray:
        """New track ids (int64, shape (N,)): every hit of a track below ``cut`` gets a fresh id of its own."""
        out = np.asarray(track_id).astype(np.int64).copy()
        ids, p = self.probability(x, y, z, layer, out)
        drop = np.isin(out, ids[p < self.cut])
        if drop.any():
            out[drop] = out.max() + 1 + np.arange(int(drop.sum()), dtype=np.int64)
        return out

    def save(self, path: str | Path, **meta: Any) -> None:
        """Write the weights, settings and ``meta`` (plain values: where it was trained and measured)."""
        from trackformers.io.atomic import atomic_path

        try:  # JSON's types only (str subclasses such as torch.__version__ made str): loadable weights_only
            meta = json.loads(json.dumps(meta))
        except (TypeError, ValueError) as err:
            raise InputError(f"track selector {path}: meta {err}; expected plain values (str, numbers, lists, "
                             "dicts).") from None
        payload = {"format": FORMAT, "features": list(FEATURES), "state_dict": self.state_dict(),
                   "config": {"hidden": list(self.hidden), "cut": self.cut, "field_t": self.field_t,
                              "min_hits": self.min_hits}, "meta": meta}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path, *, cut: float | None = None) -> TrackSelector:
        """A selector written by :meth:`save` (eval mode); ``cut`` overrides the stored one."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"track selector {path}: no such file; expected a file written by TrackSelector.save.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - whatever the unpickler trips on, the file is not a selector
            raise load_error(f"track selector {path}", err, "a file written by TrackSelector.save") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise InputError(f"track selector {path}: no format {FORMAT!r}; expected a file written by "
                             "TrackSelector.save.")
        if payload.get("features") != list(FEATURES):
            raise InputError(f"track selector {path}: features {payload.get('features')}; expected "
                             f"{list(FEATURES)} (written by another version of trackformers).")
        try:
            config = dict(payload["config"])
            hidden = tuple(config.pop("hidden"))
            selector = cls(hidden, **{**config, "cut": config["cut"] if cut is None else cut})
            selector.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            if isinstance(err, InputError):
                raise
            reason = load_error_reason(err)[:200]
            raise InputError(f"track selector {path}: its config or weights do not fit ({reason}); expected a file "
                             "written by TrackSelector.save.") from None
        selector.meta = dict(payload.get("meta", {}))
        return selector.eval()


def fit_selector(features: np.ndarray, real: np.ndarray, *, hidden: tuple[int, ...] = (32, 32),
                 epochs: int = 2000, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
                 cut: float = 0.5, field_t: float = 2.0) -> TrackSelector:
    """A TrackSelector trained full-batch (Adam, binary cross-entropy) on features (T, F) and labels (T,) bool.

    The means and widths of the training features are stored in the model (a feature that never varies gets
    width 1), so inputs need no scaling outside it.
    """
    if epochs < 1:
        raise InputError(f"track selector training: epochs {epochs}; expected >= 1.")
    if len(features) == 0 or np.all(real) or not np.any(real):
        raise InputError(f"track selector training: {len(features)} tracks, {int(np.sum(real))} real; expected "
                         "both real and fake tracks.")
    torch.manual_seed(seed)
    selector = TrackSelector(hidden, cut=cut, field_t=field_t)
    x = torch.as_tensor(np.asarray(features, np.float32))
    y = torch.as_tensor(np.asarray(real, np.float32))
    std = x.std(0)
    selector.mean.copy_(x.mean(0))
    selector.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
    opt = torch.optim.Adam(selector.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(selector(x), y)
        loss.backward()
        opt.step()
    selector.final_loss = float(loss.detach())
    return selector.eval()


def select_submission(hits: pd.DataFrame, submission: pd.DataFrame, selector: TrackSelector) -> pd.DataFrame:
    """``submission`` (DataFrame[hit_id, track_id]) with the tracks ``selector`` rejects dissolved; positions
    (mm) and layers (volume_id, layer_id) come from ``hits`` (an event's hits table), matched by hit id."""
    x, y, z, layer = hit_columns(hits, submission["hit_id"].to_numpy(), where="track selection", need_layer=True)
    ids = selector.select(x, y, z, layer, submission["track_id"].to_numpy(np.int64))
    return pd.DataFrame({"hit_id": submission["hit_id"].to_numpy(), "track_id": ids})
