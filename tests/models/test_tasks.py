"""Heads: output shapes, finite losses with gradients, track ids per event, and masking of padding / noise."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_features import toy_event

from trackformers.events import Event
from trackformers.features import moved_along_beam, pack_events
from trackformers.models.encoder import Encoder
from trackformers.models.tasks import (
    ClassificationTask,
    CondensationTask,
    EmbeddingTask,
    HitFilterTask,
    RegressionTask,
)

HEADS = [
    (EmbeddingTask, {"dim": 8, "window": 4, "n_random": 3, "pt_min": 0.0}),
    (RegressionTask, {"contrastive_weight": 0.5, "pt_min": 0.0}),
    (ClassificationTask, {}),
    (CondensationTask, {"dim": 3, "chunk": 7}),
    (HitFilterTask, {"dim": 4, "window": 4, "pt_min": 0.0}),
]


def batch_of(*seeds: int):  # noqa: ANN202
    return pack_events([toy_event(5, 4, seed=s, event_id=s) for s in seeds])


@pytest.mark.parametrize("cls,kwargs", HEADS, ids=[h[0].__name__ for h in HEADS])
def test_head_loss_backward_and_tracks(cls, kwargs) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    batch = batch_of(1, 2)
    enc = Encoder(d_model=16, n_heads=2, n_layers=1, backend="reference", window=5)
    task = cls(16, **kwargs)
    out = task(enc(batch), batch)
    losses = task.loss(out, batch)
    assert torch.isfinite(losses["loss"]) and losses["loss"].requires_grad
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.parameters())
    ids = task.tracks(out, batch)
    assert ids.shape == (batch.num_hits,) and ids.dtype == torch.int64 and (ids >= 0).all()


def test_embedding_is_unit_norm() -> None:
    batch = batch_of(3)
    task = EmbeddingTask(16, dim=6)
    emb = task(torch.randn(batch.num_hits, 16), batch)["embedding"]
    assert torch.allclose(emb.norm(dim=1), torch.ones(batch.num_hits), atol=1e-5)


def test_classification_padding_and_noise_do_not_change_the_loss() -> None:
    torch.manual_seed(1)
    task = ClassificationTask(16)
    real = toy_event(5, 0, seed=4)
    batch = pack_events([real])
    h = torch.randn(batch.num_hits, 16)
    base = task.loss(task(h, batch), batch)["loss"]
    # A second "event" of noise hits only (particle_id 0), with arbitrary hidden states: must not count.
    noise_hits = toy_event(0, 9, seed=5, event_id=9)
    padded = pack_events([real, noise_hits])
    h_pad = torch.cat([h, 100 * torch.randn(padded.num_hits - batch.num_hits, 16)])
    assert torch.allclose(task.loss(task(h_pad, padded), padded)["loss"], base, atol=1e-6)
    # Explicit padding rows excluded by a mask: same loss again.
    mask = torch.zeros(padded.num_hits, dtype=torch.bool)
    mask[: batch.num_hits] = True
    assert torch.allclose(task.loss(task(h_pad, padded), padded, mask=mask)["loss"], base, atol=1e-6)


def test_classification_targets_bins() -> None:
    task = ClassificationTask(8, phi_edges=[-3.2, 0.0, 3.2], eta_edges=[-4.0, 0.0, 4.0],
                              qpt_edges=[-2.0, 0.0, 2.0])
    batch = batch_of(6)
    t = task.targets(batch)
    noise = batch.particle_id == 0
    assert (t["phi"][noise] == -1).all() and (t["phi"][~noise] >= 0).all() and (t["phi"][~noise] <= 1).all()
    mom = batch.momentum[~noise]
    assert torch.equal(t["phi"][~noise], (torch.atan2(mom[:, 1], mom[:, 0]) >= 0).long())
    assert torch.equal(t["qpt"][~noise], (batch.charge[~noise] > 0).long())


def test_filter_target_vertex_window_and_its_passes() -> None:
    event = toy_event(8, 3, seed=11)
    event.particles["vz"] = [-95.0, -60.0, -30.0, -29.0, 0.0, 30.0, 31.0, 70.0]
    event.particles["px"] *= 10.0  # every particle above the pT cut: the window alone decides
    event.particles.loc[event.particles.index[4], ["px", "py"]] = 0.1  # but this one is soft
    batch = pack_events([event])
    pid, vz = batch.particle_id, batch.vz
    soft = event.particles["particle_id"].iloc[4]
    plain = HitFilterTask(16, keep_pt_min=0.8).target(batch)
    assert torch.equal(plain.bool(), (pid != 0) & (pid != soft))  # no window: every hard particle
    task = HitFilterTask(16, keep_pt_min=0.8, keep_vz_window=30.0)
    for z in (0.0, -60.0, 40.0, -100.0):  # a pass for hypothesis z sees the event moved by −z
        got = task.target(moved_along_beam(batch, -z)).bool()
        want = (pid != 0) & (pid != soft) & ((vz - z).abs() <= 30.0)
        assert torch.equal(got, want), z
    assert int(task.target(batch).sum()) == 3 * 4  # −30, 0 (soft: out), 30 inside, −29 inside: 3 particles
    unknown = pack_events([event])
    unknown.vz[pid == event.particles["particle_id"].iloc[0]] = float("nan")  # vertex not in the table
    assert int(task.target(unknown).sum()) == 4 * 4
    with pytest.raises(ValueError, match="keep_vz_window"):
        task.target(replace(batch, vz=None))
    with pytest.raises(ValueError, match="positive"):
        HitFilterTask(16, keep_vz_window=0.0)


def test_tracks_are_per_event_and_keep_filter_singletons() -> None:
    batch = batch_of(7, 8)
    task = HitFilterTask(16, dim=4, threshold=0.5)
    n = batch.num_hits
    emb = torch.nn.functional.normalize(torch.randn(n, 4), dim=1)
    emb[:5] = torch.tensor([1.0, 0, 0, 0])  # five identical embeddings → one cluster if all kept
    keep_logit = torch.full((n,), 10.0)
    keep_logit[2] = -10.0  # hit 2 rejected → singleton despite identical embedding
    ids = task.tracks({"keep_logit": keep_logit, "embedding": emb}, batch)
    assert len(set(ids[[0, 1, 3, 4]].tolist())) == 1 and ids[2] != ids[0]


def test_regression_targets_for_known_momentum() -> None:
    from trackformers.models.tasks.regression import track_parameters

    ev = toy_event(1, 0, seed=9)
    batch = pack_events([ev])
    p = ev.particles.iloc[0]
    t = track_parameters(batch, qpt_scale=1.0)
    pt = (p.px**2 + p.py**2) ** 0.5
    want_qpt = min(max(p.q / pt, -1.0), 1.0)
    assert torch.allclose(t[0, 3], torch.tensor(want_qpt, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(t[0, 1], torch.tensor(p.py / pt, dtype=torch.float32), atol=1e-5)


def test_truthless_batch_has_no_targets() -> None:
    ev = toy_event(2, 1, seed=10)
    batch = pack_events([Event(1, ev.hits)])
    assert batch.particle_id is None
    task = EmbeddingTask(16, dim=4)
    out = task(torch.randn(batch.num_hits, 16), batch)
    assert task.tracks(out, batch).shape == (batch.num_hits,)
