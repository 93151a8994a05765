"""Hit filter: the first stage of two-stage reconstruction (keep hits → track the kept ones → merge).

At pile-up μ = 200 most hits belong to soft particles (pT < 0.9 GeV) and noise; a tracker that sees only the
hits of hard particles does far better (benchmarks/results/oracle_filter_cpu.log). A :class:`HitFilter`
wraps a TrackingModule whose task outputs ``keep_logit`` per hit (a
:class:`~trackformers.models.tasks.HitFilterTask`): :meth:`HitFilter.keep` says which hits of an event to
keep, :meth:`HitFilter.subset` cuts the event down to them, and :meth:`HitFilter.merge` turns the tracker's
submission of the subset back into one for the whole event (every dropped hit its own new track id).

**Vertex hypotheses.** A filter trained on events whose interactions spread along the beam (σ_z ≈ 55 mm) learns
to keep the tracks that point back to z ≈ 0 and drops many from vertices at |z| ≳ 50 mm (measured on the
shipped filter: docs/models.md). ``vertex_z`` runs it once per hypothesis z_v (mm) on the event moved by
−z_v along the beam, so that tracks from a vertex near z_v point back to the origin, and keeps a hit if any
pass keeps it (its probability is the maximum over the passes). The default is the filter task's own
``vertex_z`` (``(0.0,)``: one pass on the event as it is).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trackformers.errors import InputError
from trackformers.events import Event


class HitFilter:
    """Keep/drop decision per hit from a filter model.

    Args:
        module: a TrackingModule whose task has a ``keep_logit`` output (a HitFilterTask), on its device.
        threshold: keep probability cut in (0, 1); None = the task's own ``threshold``.
        source: where the module came from (checkpoint path), for error messages.
        min_hits: events with fewer hits keep all of them without running the filter (a filter trained on
            dense events, e.g. the shipped μ = 200 one, drops too much of a sparse event).
        vertex_z: z positions (mm) of the vertex hypotheses, one filter pass each (module docstring); None =
            the task's own ``vertex_z``.

    ``hits_seen`` / ``hits_kept`` count the hits passed through :meth:`keep` (for run summaries).
    """

    def __init__(self, module: Any, threshold: float | None = None, *, source: str = "<memory>",
                 min_hits: int = 0, vertex_z: Sequence[float] | None = None) -> None:
        from trackformers.models.tasks.hit_filter import HitFilterTask

        task = getattr(module, "task", None)
        if not isinstance(task, HitFilterTask):
            raise InputError(f"checkpoint {source}: its task is {type(task).__name__}, which has no keep_logit "
                             "output; expected a hit filter (trackformers.models.tasks.HitFilterTask).")
        threshold = float(task.threshold if threshold is None else threshold)
        if not 0.0 < threshold < 1.0:
            raise InputError(f"filter threshold {threshold}: expected a keep probability in (0, 1).")
        if min_hits < 0:
            raise InputError(f"filter min_hits {min_hits}: expected a number of hits >= 0.")
        vertex_z = tuple(float(z) for z in (getattr(task, "vertex_z", (0.0,)) if vertex_z is None else vertex_z))
        if not vertex_z or not all(math.isfinite(z) for z in vertex_z):
            raise InputError(f"filter vertex_z {list(vertex_z)}: expected one or more finite z positions (mm) of "
                             "vertex hypotheses, e.g. -80,-40,0,40,80.")
        self.module, self.threshold, self.source, self.min_hits = module, threshold, source, int(min_hits)
        self.vertex_z = vertex_z
        self.hits_seen = 0
        self.hits_kept = 0

    @classmethod
    def load(cls, checkpoint: Any, device: torch.device, *, threshold: float | None = None,
             backend: str | None = None, min_hits: int = 0,
             vertex_z: Sequence[float] | None = None) -> HitFilter:
        """Load a filter checkpoint for inference (see :func:`trackformers.inference.load_module`)."""
        from trackformers.inference import load_module

        return cls(load_module(checkpoint, device, backend=backend), threshold, source=str(checkpoint),
                   min_hits=min_hits, vertex_z=vertex_z)

    @torch.no_grad()
    def probability(self, event: Event, *, forward: Callable[..., Any] | None = None) -> np.ndarray:
        """(N,) float32 keep probability per hit, row i for ``event.hits`` row i: the maximum over the vertex
        hypotheses (one filter pass each, on the event moved by −z_v along the beam).

        The event is packed once, exactly as ``TrackingModule.reconstruct`` packs it, and each pass moves the
        packed batch (:func:`trackformers.features.moved_along_beam`: equal to packing the moved event, at a
        fraction of the cost); the rows are in the hits-table order (the encoder φ-sorts internally and
        returns its states unsorted). ``forward`` runs the module instead of ``module(batch)`` (e.g. a
        :class:`~trackformers.cuda_graph.GraphedForward`).
        """
        n = len(event.hits)
        if n == 0:
            return np.zeros(0, np.float32)
        from trackformers.attention.api import BackendUnavailable

        batch = self.module.pack_event(event)  # packed once; each pass moves it along the beam
        try:
            best = self.batch_probability(batch, forward=forward)
        except BackendUnavailable as err:  # e.g. a dense-trained filter on a 500k-hit event
            raise InputError(f"{event.source}: event {event.event_id} ({n} hits): the hit filter "
                             f"{self.source}: {err}; expected a backend that scales to it, e.g. --backend "
                             "auto.") from None
        return best.cpu().numpy().reshape(n)

    @torch.no_grad()
    def batch_probability(self, batch: Any, *, forward: Callable[..., Any] | None = None) -> torch.Tensor:
        """(N,) float32 keep probability per hit of a packed batch (original row order, on its device): the
        maximum over the vertex hypotheses, each pass on the batch moved by −z_v along the beam."""
        from trackformers.features import moved_along_beam

        config = self.module.feature_config
        best: torch.Tensor | None = None
        for z in self.vertex_z:
            outputs = self.module.batch_outputs(moved_along_beam(batch, -z, config), forward=forward)
            p = torch.sigmoid(outputs["keep_logit"].float())
            best = p if best is None else torch.maximum(best, p)
        assert best is not None
        return best

    def keep(self, event: Event, *, forward: Callable[..., Any] | None = None) -> np.ndarray:
        """(N,) bool: True for the hits of ``event.hits`` (same row order) to hand to the tracker; all True
        for events of fewer than ``min_hits`` hits."""
        if len(event.hits) < self.min_hits:
            keep = np.ones(len(event.hits), dtype=bool)
        else:
            keep = self.probability(event, forward=forward) >= self.threshold
        self.hits_seen += int(keep.size)
        self.hits_kept += int(keep.sum())
        return keep

    @staticmethod
    def subset(event: Event, keep: np.ndarray) -> Event:
        """The event with only the kept hits (hits-table order kept), their truth and cells rows.

        The particles table is kept whole: a particle's properties (``nhits`` included) do not change
        because some of its hits were dropped, and the tracker never reads it.
        """
        keep = _checked(event, keep)
        hits = event.hits.loc[keep].reset_index(drop=True)
        ids = hits["hit_id"].to_numpy()

        def rows(table: pd.DataFrame | None) -> pd.DataFrame | None:
            if table is None:
                return None
            return table.loc[np.isin(table["hit_id"].to_numpy(), ids)].reset_index(drop=True)

        return dataclasses.replace(event, hits=hits, truth=rows(event.truth), cells=rows(event.cells)).validate()

    @staticmethod
    def merge(event: Event, keep: np.ndarray, sub_submission: pd.DataFrame) -> pd.DataFrame:
        """``DataFrame[hit_id, track_id]`` (int64, ``event.hits`` order) for the whole event.

        Kept hits take the tracker's ids from ``sub_submission`` (one row per kept hit); dropped hits take
        fresh ids above the tracker's largest, one each, so no dropped hit joins a track.
        """
        keep = _checked(event, keep)
        hit_ids = event.hits["hit_id"].to_numpy(np.int64)
        kept_ids = hit_ids[keep]
        sub_ids = sub_submission["hit_id"].to_numpy(np.int64)
        if len(sub_ids) != len(kept_ids) or not np.array_equal(np.sort(sub_ids), np.sort(kept_ids)):
            raise InputError(f"{event.source} (event {event.event_id}): the tracker's submission has "
                             f"{len(sub_ids)} rows that do not match the {len(kept_ids)} kept hits; expected "
                             "exactly one row per kept hit.")
        track = np.empty(len(hit_ids), np.int64)
        sub_tracks = sub_submission["track_id"].to_numpy(np.int64)
        # map the tracker's rows to the kept rows by hit id (its row order need not be the hits order)
        track[keep] = pd.Series(sub_tracks, index=sub_ids).reindex(kept_ids).to_numpy(np.int64)
        start = int(sub_tracks.max()) + 1 if len(sub_tracks) else 0
        track[~keep] = start + np.arange(int((~keep).sum()), dtype=np.int64)
        return pd.DataFrame({"hit_id": hit_ids, "track_id": track})


def _checked(event: Event, keep: np.ndarray) -> np.ndarray:
    """``keep`` as a (N,) bool array for ``event.hits``; InputError if its shape or type is wrong."""
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.shape != (len(event.hits),):
        raise InputError(f"{event.source} (event {event.event_id}): keep mask of dtype {keep.dtype} and shape "
                         f"{keep.shape}; expected bool of shape ({len(event.hits)},), one per hit.")
    return keep


def write_settings(source: str | Path, dest: str | Path, *, vertex_z: Sequence[float] | None = None,
                   threshold: float | None = None, note: str = "") -> None:
    """Copy filter checkpoint ``source`` to ``dest`` with new defaults for :class:`HitFilter`: the vertex
    hypotheses ``vertex_z`` (mm) and/or the keep ``threshold`` (task hyper-parameters; weights untouched).

    The choice and ``note`` (where it was measured) are kept under ``trackformers.filter_settings``. Checked
    by building a HitFilter from the result before it is written (atomically).
    """
    from trackformers.inference import load_module
    from trackformers.io.atomic import atomic_path

    payload = torch.load(source, map_location="cpu", weights_only=True)
    try:
        task = payload["hyper_parameters"]["task"]
        args = task["init_args"]
    except (KeyError, TypeError):
        raise InputError(f"checkpoint {source}: no hyper_parameters.task.init_args to store the filter settings "
                         "in; expected a trackformers checkpoint.") from None
    # checked here, not by loading the result: another task fails there on the unknown argument, with the
    # temporary file's name in the message
    if not str(task.get("class_path", "")).endswith("HitFilterTask"):
        raise InputError(f"checkpoint {source}: its task is {task.get('class_path')}; expected a hit filter "
                         "(trackformers.models.tasks.HitFilterTask).")
    settings: dict[str, Any] = {}
    if vertex_z is not None:
        settings["vertex_z"] = [float(z) for z in vertex_z]
        if not settings["vertex_z"]:  # the task would read an empty list as its default (0.0,): say so instead
            raise InputError("filter vertex_z []: expected one or more finite z positions (mm) of vertex "
                             "hypotheses, e.g. -80,-40,0,40,80.")
    if threshold is not None:
        settings["threshold"] = float(threshold)
    args.update(settings)
    payload.setdefault("trackformers", {})["filter_settings"] = {**settings, "note": note}
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
        HitFilter(load_module(tmp, torch.device("cpu")), source=str(dest))  # refuses bad values before the rename
