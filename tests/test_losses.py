"""Losses against hand-computed cases and against dense N × N references on random inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trackformers.losses import (
    condensation_loss,
    contrastive_loss,
    masked_bce,
    masked_cross_entropy,
    particle_labels,
    particle_partners,
    random_partners,
    weighted_mse,
    window_neighbours,
)


def test_particle_labels_separate_events_and_noise() -> None:
    pid = torch.tensor([7, 7, 0, 7, 9], dtype=torch.int64)
    ev = torch.tensor([0, 0, 0, 1, 1])
    lab = particle_labels(particle_id=pid, event_index=ev)
    assert lab[2] == -1 and lab[0] == lab[1] and lab[3] != lab[0] and len(set(lab.tolist())) == 4


def test_window_neighbours_small_case() -> None:
    # One event of 5 hits whose φ-order is 2, 0, 4, 1, 3 (sort_index: sorted position → original index).
    sort_index = torch.tensor([2, 0, 4, 1, 3])
    cu = torch.tensor([0, 5], dtype=torch.int32)
    nb = window_neighbours(sort_index=sort_index, cu_seqlens=cu, window=1)
    # Hit 0 sits at sorted position 1: neighbours are sorted positions 2 (hit 4) and 0 (hit 2).
    assert nb[0].tolist() == [4, 2]
    assert nb[2].tolist() == [0, 3]  # wrap-around: position 0's left neighbour is position 4 (hit 3)


def test_window_neighbours_short_event_never_repeats() -> None:
    cu = torch.tensor([0, 3, 4], dtype=torch.int32)
    nb = window_neighbours(sort_index=torch.arange(4), cu_seqlens=cu, window=3)
    for i in range(3):
        got = [j for j in nb[i].tolist() if j >= 0]
        assert sorted(got) == sorted(set(range(3)) - {i})
    assert (nb[3] == -1).all()  # a one-hit event has no partner


def test_particle_partners() -> None:
    labels = torch.tensor([1, -1, 0, 1, 1, 0])
    pp = particle_partners(labels=labels, max_partners=3)
    assert sorted(j for j in pp[0].tolist() if j >= 0) == [3, 4]
    assert sorted(j for j in pp[2].tolist() if j >= 0) == [5]
    assert (pp[1] == -1).all()
    capped = particle_partners(labels=labels, max_partners=1)
    assert capped[4].tolist() in ([0], [3])


def test_random_partners_stay_in_event() -> None:
    cu = torch.tensor([0, 7, 7, 20], dtype=torch.int32)
    rp = random_partners(cu_seqlens=cu, k=11, generator=torch.Generator().manual_seed(0))
    assert (rp[:7] < 7).all() and (rp[7:] >= 7).all() and (rp[7:] < 20).all()


def test_contrastive_hand_computed() -> None:
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    pos = particle_partners(labels=labels, max_partners=2)
    neg = torch.tensor([[1, 2], [0, 2], [0, 1]])
    out = contrastive_loss(embeddings=e, labels=labels, anchors=torch.ones(3, dtype=torch.bool),
                           positives=pos, negatives=neg, temperature=1.0)
    # Anchors 0 and 1: one positive at similarity 1, one negative at 0 → log(1 + e^-1); hit 2: no positive.
    assert out["loss"].item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert out["n_anchors"].item() == 2


def _dense_supcon(e: torch.Tensor, labels: torch.Tensor, event: torch.Tensor, anchors: torch.Tensor,
                  tau: float) -> torch.Tensor:
    s = e @ e.T / tau
    n = len(e)
    same_event = event[:, None] == event[None, :]
    valid = same_event & ~torch.eye(n, dtype=torch.bool)
    pos = valid & (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0)
    s = s.masked_fill(~valid, float("-inf"))
    logp = s - torch.logsumexp(s, 1, keepdim=True)
    use = anchors & (labels >= 0) & pos.any(1)
    per = -(torch.where(pos, logp, torch.zeros_like(logp)).sum(1)) / pos.sum(1).clamp(min=1)
    return per[use].mean()


@pytest.mark.parametrize("lengths", [[13], [7, 11, 2], [5, 0, 17]])
def test_contrastive_equals_dense_when_window_covers_events(lengths: list[int]) -> None:
    g = torch.Generator().manual_seed(sum(lengths))
    n = sum(lengths)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    event = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pid = torch.randint(0, 4, (n,), generator=g)  # 0 = noise
    labels = particle_labels(particle_id=pid, event_index=event)
    e = F.normalize(torch.randn(n, 5, generator=g, dtype=torch.float64), dim=1)
    anchors = torch.rand(n, generator=g) < 0.8
    sort_index = torch.cat([cu[i] + torch.randperm(length, generator=g) for i, length in enumerate(lengths)])
    neg = window_neighbours(sort_index=sort_index, cu_seqlens=cu, window=9)
    pos = particle_partners(labels=labels, max_partners=17)
    got = contrastive_loss(embeddings=e, labels=labels, anchors=anchors, positives=pos, negatives=neg,
                           temperature=0.3)["loss"]
    want = _dense_supcon(e, labels, event, anchors, 0.3)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_contrastive_no_anchor_is_zero_with_grad() -> None:
    e = torch.randn(4, 3, requires_grad=True)
    out = contrastive_loss(embeddings=e, labels=torch.full((4,), -1), anchors=torch.ones(4, dtype=torch.bool),
                           positives=torch.full((4, 2), -1), negatives=torch.full((4, 2), -1))
    out["loss"].backward()
    assert out["loss"].item() == 0.0 and e.grad is not None


def test_condensation_hand_computed() -> None:
    beta = torch.tensor([0.5, 0.2, 0.1])
    coords = torch.tensor([[0.0, 0.0], [0.6, 0.0], [0.3, 0.0]])
    labels = torch.tensor([0, 0, -1])
    out = condensation_loss(beta=beta, coords=coords, labels=labels, cu_seqlens=torch.tensor([0, 3]),
                            q_min=0.1, noise_weight=2.0)
    q = [math.atanh(b) ** 2 + 0.1 for b in (0.5, 0.2, 0.1)]
    attr = (q[1] * q[0] * 0.36) / 3
    rep = (q[2] * q[0] * 0.7) / 3
    assert out["attractive"].item() == pytest.approx(attr, rel=1e-5)
    assert out["repulsive"].item() == pytest.approx(rep, rel=1e-5)
    assert out["beta"].item() == pytest.approx(0.5, rel=1e-6)
    assert out["noise"].item() == pytest.approx(0.2, rel=1e-6)
    assert out["loss"].item() == pytest.approx(attr + rep + 0.7, rel=1e-5)


def test_condensation_chunking_and_events_match() -> None:
    g = torch.Generator().manual_seed(3)
    n = 37
    beta = torch.rand(n, generator=g, dtype=torch.float64).clamp(0.01, 0.99).requires_grad_()
    coords = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(-1, 5, (n,), generator=g)
    cu = torch.tensor([0, 20, 37])
    a = condensation_loss(beta=beta, coords=coords, labels=labels, cu_seqlens=cu, chunk=4096)
    b = condensation_loss(beta=beta, coords=coords, labels=labels, cu_seqlens=cu, chunk=3)
    assert torch.allclose(a["loss"], b["loss"])
    ga = torch.autograd.grad(a["loss"], [beta, coords])
    gb = torch.autograd.grad(b["loss"], [beta, coords])
    assert all(torch.allclose(x, y) for x, y in zip(ga, gb))
    # Events are independent: the batch loss is the mean of the two single-event losses.
    one = condensation_loss(beta=beta[:20], coords=coords[:20], labels=labels[:20],
                            cu_seqlens=torch.tensor([0, 20]))
    two = condensation_loss(beta=beta[20:], coords=coords[20:], labels=labels[20:],
                            cu_seqlens=torch.tensor([0, 17]))
    assert torch.allclose(a["loss"], (one["loss"] + two["loss"]) / 2)


def test_weighted_mse_hand_computed() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = weighted_mse(pred=pred, target=torch.zeros(2, 2), weight=torch.tensor([1.0, 0.5]),
                       mask=torch.tensor([True, False]))
    assert out["loss"].item() == pytest.approx(1.0 + 0.5 * 4.0)
    assert out["mse_1"].item() == pytest.approx(4.0)


def test_cross_entropy_ignores_padding_and_noise() -> None:
    logits = torch.zeros(3, 4)
    target = torch.tensor([0, 2, 1])
    base = masked_cross_entropy(logits=logits, target=target)
    assert base["loss"].item() == pytest.approx(math.log(4))
    padded_logits = torch.cat([logits, torch.randn(5, 4) * 10])
    padded_target = torch.cat([target, torch.tensor([3, 3, -1, -1, 0])])
    mask = torch.tensor([True] * 3 + [False, False, True, True, False])  # rows 5, 6: noise (target -1)
    padded = masked_cross_entropy(logits=padded_logits, target=padded_target, mask=mask)
    assert padded["loss"].item() == pytest.approx(base["loss"].item())


def test_bce_hand_computed() -> None:
    out = masked_bce(logits=torch.tensor([0.0, 100.0]), target=torch.tensor([1.0, 0.0]),
                     mask=torch.tensor([True, False]), pos_weight=2.0)
    assert out["loss"].item() == pytest.approx(2.0 * math.log(2))


@pytest.mark.parametrize("seed", range(4))
def test_particle_partners_random_against_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 31
    labels = torch.randint(-1, 6, (n,), generator=g)
    pp = particle_partners(labels=labels, max_partners=n)
    for i in range(n):
        want = sorted(j for j in range(n) if j != i and labels[j] == labels[i] and labels[i] >= 0)
        assert sorted(j for j in pp[i].tolist() if j >= 0) == want


@pytest.mark.parametrize("seed", range(3))
def test_window_neighbours_against_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(40):
        lengths = torch.randint(0, 15, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g)
        w = int(torch.randint(1, 9, (1,), generator=g))
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(lengths, 0)
        perm = torch.cat([int(cu[i]) + torch.randperm(int(n), generator=g) for i, n in enumerate(lengths)])
        nb = window_neighbours(sort_index=perm, cu_seqlens=cu, window=w)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            length = b - a
            for pos in range(length):
                want = {int(perm[a + (pos + d) % length]) for d in range(-w, w + 1) if (pos + d) % length != pos}
                got = [j for j in nb[int(perm[a + pos])].tolist() if j >= 0]
                assert len(got) == len(set(got)) and set(got) == want
