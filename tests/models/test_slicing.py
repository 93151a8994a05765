"""η-sliced attention orders: slice edges, segment layout, and the sliced encoder against a per-segment loop."""

from __future__ import annotations

import pytest
import torch
from test_features import toy_event

from trackformers.attention import AttentionLayout
from trackformers.features import pack_events
from trackformers.losses import window_neighbours
from trackformers.models.encoder import Encoder
from trackformers.models.slicing import slice_index, sliced_order
from trackformers.models.tasks.base import contrastive_terms


def test_slice_edges() -> None:
    eta = torch.tensor([-9.0, -4.0, -2.0001, -2.0, -1.0, 0.0, 2.9, 3.0, 3.99, 4.0, 9.0])
    assert slice_index(eta, slices=4, parity=0).tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3]
    # Shifted by half a slice: S + 1 slices, half-width ones at both ends.
    assert slice_index(eta, slices=4, parity=1).tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 4, 4, 4]


def _random_packed(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    phi = torch.rand(n, generator=g) * 2 * torch.pi - torch.pi
    eta = torch.randn(n, generator=g) * 2.5
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return phi, eta, cu


@pytest.mark.parametrize("parity", [0, 1])
def test_sliced_order_segments(parity: int) -> None:
    lengths = [0, 1, 13, 0, 97, 2]
    phi, eta, cu = _random_packed(lengths, seed=parity)
    order = sliced_order(phi, eta, cu, slices=4, parity=parity, window=3)
    perm, seg_cu = order.perm, order.layout.cu_seqlens.long()
    assert sorted(perm.tolist()) == list(range(phi.numel()))
    assert torch.equal(perm[order.inverse], torch.arange(phi.numel()))
    assert seg_cu.numel() == len(lengths) * (4 + parity) + 1 and int(seg_cu[-1]) == phi.numel()
    event = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    sl = slice_index(eta, slices=4, parity=parity)
    for s in range(seg_cu.numel() - 1):
        members = perm[seg_cu[s]:seg_cu[s + 1]]
        if members.numel() == 0:
            continue
        assert (event[members] == s // (4 + parity)).all() and (sl[members] == s % (4 + parity)).all()
        assert (phi[members].diff() >= 0).all()  # φ-sorted within the segment
    assert order.layout.max_seqlen == int((seg_cu[1:] - seg_cu[:-1]).max())


def _segment_loop(enc: Encoder, batch) -> torch.Tensor:  # noqa: ANN001
    """Plain reference: every block runs on each (event, slice) segment alone, as a one-event batch."""
    x = torch.cat([batch.features, enc.volume_embedding(batch.categories[:, 0]),
                   enc.layer_embedding(batch.categories[:, 1])], -1)
    h = enc.input(x)  # original order
    for i, block in enumerate(enc.blocks):
        slices = slice_index(batch.eta, slices=enc.eta_slices, parity=i % 2)
        event = batch.event_index()
        new = torch.empty_like(h)
        for e in range(batch.num_events):
            for s in range(enc.eta_slices + i % 2):
                idx = torch.nonzero((event == e) & (slices == s)).flatten()
                if idx.numel() == 0:
                    continue
                idx = idx[torch.argsort(batch.phi[idx], stable=True)]
                layout = AttentionLayout.from_lengths([idx.numel()], window=enc.window)
                new[idx] = block(h[idx], layout, "reference")
        h = new
    return enc.norm(h)


@pytest.mark.parametrize("backend", ["reference", "dense", "local"])
def test_sliced_encoder_matches_segment_loop(backend: str) -> None:
    torch.manual_seed(3)
    events = [toy_event(7, 3, seed=s, event_id=s) for s in (1, 2)] + [toy_event(1, 0, seed=4, event_id=4)]
    batch = pack_events(events)
    enc = Encoder(d_model=32, n_heads=2, n_layers=3, backend=backend, window=2, eta_slices=3)
    out = enc(batch)
    ref = _segment_loop(enc, batch)
    assert torch.allclose(out, ref, atol=1e-5)
    # Backward through the gathers agrees with the loop's too.
    w = torch.randn_like(out)
    g_out = torch.autograd.grad((out * w).sum(), list(enc.parameters()))
    g_ref = torch.autograd.grad((ref * w).sum(), list(enc.parameters()))
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-4)


def test_sliced_encoder_differs_from_plain_and_single_block() -> None:
    torch.manual_seed(4)
    batch = pack_events([toy_event(9, 4, seed=7)])
    enc = Encoder(d_model=16, n_heads=2, n_layers=1, backend="reference", window=2, eta_slices=4).eval()
    with torch.no_grad():
        sliced = enc(batch)
        assert torch.allclose(sliced, _segment_loop(enc, batch), atol=1e-5)
        enc.eta_slices = 0
        plain = enc(batch)
    assert not torch.allclose(sliced, plain, atol=1e-3)  # the slices change who attends to whom


def test_sliced_negatives_stay_in_their_slice() -> None:
    batch = pack_events([toy_event(12, 5, seed=8, event_id=1), toy_event(6, 2, seed=9, event_id=2)])
    order = sliced_order(batch.phi, batch.eta, batch.cu_seqlens, slices=4, parity=0, window=3)
    nb = window_neighbours(sort_index=order.perm, cu_seqlens=order.layout.cu_seqlens, window=3)
    seg = torch.empty_like(order.perm)
    seg_cu = order.layout.cu_seqlens.long()
    seg[order.perm] = torch.repeat_interleave(torch.arange(seg_cu.numel() - 1), seg_cu[1:] - seg_cu[:-1])
    rows, cols = torch.nonzero(nb >= 0, as_tuple=True)
    assert rows.numel() > 0 and torch.equal(seg[nb[rows, cols]], seg[rows])
    emb = torch.nn.functional.normalize(torch.randn(batch.num_hits, 8, requires_grad=True), dim=-1)
    labels = batch.particle_id
    terms = contrastive_terms(emb, batch, labels, pt_min=0.0, window=3, n_random=2, max_partners=4,
                              temperature=0.1, eta_slices=4)
    assert torch.isfinite(terms["loss"])


def test_bad_slices_rejected() -> None:
    with pytest.raises(ValueError, match="eta_slices"):
        Encoder(eta_slices=-1)
