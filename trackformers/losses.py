"""Training losses as pure functions with keyword-only arguments; each returns a dict of components.

``"loss"`` is always the scalar to minimise; the other entries are detached diagnostics.
Hit–hit losses never build an N × N matrix: the contrastive loss looks at K candidate partners per anchor
(the hit's own particle, its φ-sorted attention neighbourhood, random hits of its event), memory O(N·K·D);
object condensation works per event and per chunk of hits against that event's K particles, memory
O(chunk·K) thanks to activation checkpointing.

Particle identity across a packed batch: use :func:`particle_labels` ((event, particle_id) → dense id,
noise → −1), never the raw int64 particle ids alone (they repeat between events).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def particle_labels(*, particle_id: torch.Tensor, event_index: torch.Tensor) -> torch.Tensor:
    """(N,) int64 dense label per hit, unique per (event, particle); noise (particle_id 0) → −1."""
    if particle_id.numel() == 0:
        return particle_id.to(torch.int64)
    keys = torch.stack([event_index.to(torch.int64), particle_id.to(torch.int64)], 1)
    _, labels = torch.unique(keys, dim=0, return_inverse=True)
    return torch.where(particle_id == 0, torch.full_like(labels, -1), labels)


# ----------------------------------------------------------------------------- candidate partners


def window_neighbours(*, sort_index: torch.Tensor, cu_seqlens: torch.Tensor, window: int) -> torch.Tensor:
    """(N, 2·window) int64 original-order indices of each hit's φ-sorted neighbours at offsets ±1..±window.

    Offsets wrap around within the event (φ is circular); −1 marks positions that would repeat a hit
    (events of ≤ 2·window hits) so that no partner is counted twice.
    """
    n = sort_index.numel()
    device = sort_index.device
    if n == 0 or window <= 0:
        return torch.full((n, 0), -1, dtype=torch.int64, device=device)
    cu = cu_seqlens.to(device=device, dtype=torch.int64)
    lengths = cu[1:] - cu[:-1]
    seg = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    start, length = cu[:-1][seg], lengths[seg]  # per sorted position
    pos = torch.arange(n, device=device) - start
    step = torch.arange(1, window + 1, device=device)
    offsets = torch.cat([step, -step])
    rel = offsets[None, :]
    partner_sorted = start[:, None] + torch.remainder(pos[:, None] + rel, length[:, None])
    keep = torch.ones_like(partner_sorted, dtype=torch.bool)
    # In events of L <= 2w hits, offsets d and d' with d ≡ d' (mod L) reach the same partner (or the hit itself
    # when d ≡ 0): keep the first column per circular offset. Longer events have 2w distinct partners.
    short = torch.nonzero(length <= 2 * window, as_tuple=True)[0]
    if short.numel():
        dist = torch.remainder(rel, length[short, None])  # (S, 2w) circular offset in [0, L) ⊂ [0, 2w)
        cols = torch.arange(2 * window, device=device).expand_as(dist)
        first = torch.full_like(dist, 2 * window).scatter_reduce(1, dist, cols, "amin", include_self=True)
        keep[short] = (dist != 0) & (first.gather(1, dist) == cols)
    partner = torch.where(keep, sort_index[partner_sorted], torch.full_like(partner_sorted, -1))
    out = torch.empty_like(partner)
    out[sort_index] = partner  # rows back to original order
    return out


def particle_partners(*, labels: torch.Tensor, max_partners: int) -> torch.Tensor:
    """(N, max_partners) int64 indices of other hits of the same particle (−1 padding; noise rows all −1).

    Particles with more than ``max_partners + 1`` hits list only their first hits (in index order).
    """
    n = labels.numel()
    device = labels.device
    out = torch.full((n, max_partners), -1, dtype=torch.int64, device=device)
    if n == 0 or max_partners <= 0:
        return out
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    arange = torch.arange(n, device=device)
    new = torch.ones(n, dtype=torch.bool, device=device)
    new[1:] = sorted_labels[1:] != sorted_labels[:-1]
    group_start = torch.cummax(torch.where(new, arange, 0), 0).values
    rank = arange - group_start  # rank of the hit within its particle
    largest = int(rank.max()) + 1
    for j in range(min(max_partners + 1, largest)):
        raw = group_start + j
        idx = raw.clamp(max=n - 1)
        # Member j of the group goes to column j, or j - 1 for hits ranked before it (the hit skips itself).
        col = torch.where(rank < j, j - 1, j)
        ok = (raw < n) & (sorted_labels[idx] == sorted_labels) & (sorted_labels >= 0)
        ok &= (rank != j) & (col < max_partners)
        out[order[ok], col[ok]] = order[idx[ok]]
    return out


def random_partners(*, cu_seqlens: torch.Tensor, k: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, k) int64 uniformly drawn hits of each hit's own event (may include the hit itself; the loss skips
    self-pairs)."""
    cu = cu_seqlens.to(torch.int64)
    lengths = cu[1:] - cu[:-1]
    n = int(cu[-1]) if cu.numel() else 0
    device = cu.device
    if n == 0 or k <= 0:
        return torch.full((n, max(k, 0)), -1, dtype=torch.int64, device=device)
    seg = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    u = torch.rand((n, k), generator=generator).to(device)  # drawn on the CPU: reproducible everywhere
    return cu[:-1][seg, None] + (u * lengths[seg, None]).long()


# ----------------------------------------------------------------------------- contrastive


def contrastive_loss(*, embeddings: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor,
                     positives: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.1,
                     ) -> dict[str, torch.Tensor]:
    """Supervised contrastive (multi-positive InfoNCE) loss over K candidate partners per anchor.

    For anchor i with positive set P(i) (hits of its particle among ``positives[i]``) and candidate set
    A(i) = P(i) ∪ {valid ``negatives[i]`` of another particle or noise}:

        loss_i = −1/|P(i)| Σ_{p∈P(i)} [ s_ip − log Σ_{a∈A(i)} exp(s_ia) ],   s_ij = ⟨e_i, e_j⟩ / temperature

    averaged over anchors with at least one positive. Entries −1 and the anchor itself are ignored;
    candidates of the anchor's own particle in ``negatives`` are dropped (they are positives already).

    Args:
        embeddings: (N, D) float, typically unit-normalised.
        labels: (N,) int64 dense particle labels (−1 noise), see :func:`particle_labels`.
        anchors: (N,) bool, hits allowed as anchors (e.g. of reconstructable particles).
        positives: (N, P) int64 partner indices (same particle), −1 padding.
        negatives: (N, K) int64 partner indices (neighbourhood / random), −1 padding.
        temperature: softmax temperature τ > 0.
    """
    rows = torch.nonzero(anchors & (labels >= 0), as_tuple=True)[0]
    cand = torch.cat([positives[rows], negatives[rows]], 1)  # (A, P + K)
    n_pos_cols = positives.shape[1]
    valid = (cand >= 0) & (cand != rows[:, None])
    safe = cand.clamp(min=0)
    same = labels[safe] == labels[rows][:, None]
    is_pos = valid & same
    is_pos[:, n_pos_cols:] = False
    valid[:, n_pos_cols:] &= ~same[:, n_pos_cols:]
    sims = torch.einsum("ad,akd->ak", embeddings[rows].float(), embeddings[safe].float()) / temperature
    sims = sims.masked_fill(~valid, float("-inf"))
    log_norm = torch.logsumexp(sims, 1, keepdim=True)
    n_pos = is_pos.sum(1)
    has_pos = n_pos > 0
    log_prob = torch.where(is_pos, sims - log_norm, torch.zeros_like(sims))
    per_anchor = -log_prob.sum(1) / n_pos.clamp(min=1)
    if bool(has_pos.any()):
        loss = per_anchor[has_pos].mean()
    else:  # nothing to learn from: a zero that keeps the graph
        loss = embeddings.sum() * 0.0
    with torch.no_grad():
        neg = valid & ~is_pos
        pos_sim = (sims.masked_fill(~is_pos, 0).sum() / is_pos.sum().clamp(min=1)) * temperature
        neg_sim = (sims.masked_fill(~neg, 0).sum() / neg.sum().clamp(min=1)) * temperature
    return {"loss": loss, "n_anchors": has_pos.sum().detach().float(), "pos_sim": pos_sim, "neg_sim": neg_sim}


# ----------------------------------------------------------------------------- object condensation


def condensation_charge(beta: torch.Tensor, *, q_min: float) -> torch.Tensor:
    """q = arctanh²(β) + q_min (β clamped below 1 so that q stays finite)."""
    b = beta.float().clamp(0.0, 1.0 - 1e-4)
    return torch.atanh(b).square() + q_min


def condensation_loss(*, beta: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                      cu_seqlens: torch.Tensor, q_min: float = 0.1, noise_weight: float = 1.0,
                      chunk: int = 4096) -> dict[str, torch.Tensor]:
    """Object condensation (Kieseler, Eur. Phys. J. C 80 (2020) 886), averaged over events.

    Per event with hits i, objects (particles) k, α_k = the hit of k with the largest β,
    q_i = arctanh²(β_i) + q_min and M_ik = 1 if hit i belongs to object k:

        L_V = 1/N Σ_i Σ_k q_i q_αk [ M_ik ‖x_i − x_αk‖² + (1 − M_ik) max(0, 1 − ‖x_i − x_αk‖) ]
        L_β = 1/K Σ_k (1 − β_αk) + noise_weight · 1/N_noise Σ_{i noise} β_i

    Args:
        beta: (N,) in (0, 1). coords: (N, D) clustering coordinates.
        labels: (N,) int64 dense particle labels (−1 noise); cu_seqlens: (E + 1,) int32.
        q_min: minimal charge. noise_weight: s_B, weight of the noise suppression term.
        chunk: hits per checkpointed chunk (memory O(chunk · K)).
    Returns ``loss = attractive + repulsive + beta + noise`` and those components.
    """
    parts = {"attractive": [], "repulsive": [], "beta": [], "noise": []}
    cu = cu_seqlens.tolist()
    for start, end in zip(cu[:-1], cu[1:]):
        if end == start:
            continue
        b, x, lab = beta[start:end].float(), coords[start:end].float(), labels[start:end]
        q = condensation_charge(b, q_min=q_min)
        obj = lab >= 0
        noise = ~obj
        if bool(obj.any()):
            uniq, dense = torch.unique(lab[obj], return_inverse=True)
            k = uniq.numel()
            lab_e = torch.full_like(lab, -1)
            lab_e[obj] = dense
            # α_k: argmax of β within each object (scatter_reduce max, then pick the first hit reaching it).
            bmax = torch.full((k,), -1.0, device=b.device).scatter_reduce(0, dense, b[obj], "amax")
            idx_obj = torch.nonzero(obj, as_tuple=True)[0]
            is_max = b[obj] >= bmax[dense]
            alpha = torch.full((k,), x.shape[0], dtype=torch.int64, device=b.device)
            alpha = alpha.scatter_reduce(0, dense[is_max], idx_obj[is_max], "amin")
            x_a, q_a = x[alpha], q[alpha]
            attr_rep = []
            for c0 in range(0, x.shape[0], chunk):
                sl = slice(c0, c0 + chunk)
                attr_rep.append(_split_potential(x[sl], q[sl], lab_e[sl], x_a, q_a))
            attr = torch.stack([a for a, _ in attr_rep]).sum() / x.shape[0]
            rep = torch.stack([r for _, r in attr_rep]).sum() / x.shape[0]
            lb = (1.0 - b[alpha]).mean()
        else:
            attr = rep = lb = b.sum() * 0.0
        ln = b[noise].mean() * noise_weight if bool(noise.any()) else b.sum() * 0.0
        for key, val in zip(parts, (attr, rep, lb, ln)):
            parts[key].append(val)
    if not parts["beta"]:
        zero = beta.sum() * 0.0
        return {"loss": zero, "attractive": zero, "repulsive": zero, "beta": zero, "noise": zero}
    out = {key: torch.stack(vals).mean() for key, vals in parts.items()}
    out["loss"] = out["attractive"] + out["repulsive"] + out["beta"] + out["noise"]
    return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}


def _split_potential(x: torch.Tensor, q: torch.Tensor, lab: torch.Tensor, x_a: torch.Tensor,
                     q_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(attractive, repulsive) sums of one chunk, recomputed in backward when gradients are needed."""

    def run(x: torch.Tensor, q: torch.Tensor, x_a: torch.Tensor, q_a: torch.Tensor) -> torch.Tensor:
        d2 = (x[:, None, :] - x_a[None, :, :]).square().sum(-1)  # (c, K); exact gradient at d = 0
        member = lab[:, None] == torch.arange(x_a.shape[0], device=x.device)[None, :]
        w = q[:, None] * q_a[None, :]
        attr = (w * torch.where(member, d2, torch.zeros_like(d2))).sum()
        hinge = torch.clamp(1.0 - torch.sqrt(d2 + 1e-12), min=0)
        rep = (w * torch.where(member, torch.zeros_like(d2), hinge)).sum()
        return torch.stack([attr, rep])

    if torch.is_grad_enabled() and (x.requires_grad or q.requires_grad):
        out = checkpoint(run, x, q, x_a, q_a, use_reentrant=False)
    else:
        out = run(x, q, x_a, q_a)
    return out[0], out[1]


# ----------------------------------------------------------------------------- parameter heads


def weighted_mse(*, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Σ_c w_c · mean_{i∈mask} (pred_ic − target_ic)²; components ``mse_c`` per column c.

    Args:
        pred, target: (N, C). weight: (C,) or None (all ones). mask: (N,) bool rows to use, or None (all).
    """
    if mask is not None:
        pred, target = pred[mask], target[mask]
    if pred.shape[0] == 0:
        zero = pred.sum() * 0.0
        return {"loss": zero}
    per_col = (pred.float() - target.float()).square().mean(0)  # (C,)
    w = torch.ones_like(per_col) if weight is None else weight.to(per_col)
    out = {"loss": (w * per_col).sum()}
    out.update({f"mse_{c}": per_col[c].detach() for c in range(per_col.numel())})
    return out


def masked_cross_entropy(*, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                         label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """Cross-entropy over rows with ``mask`` True and ``target >= 0`` (padding / noise rows excluded).

    Args:
        logits: (N, C); target: (N,) int64 class or −1 (ignored); mask: (N,) bool or None.
    """
    keep = target >= 0
    if mask is not None:
        keep &= mask
    if not bool(keep.any()):
        zero = logits.sum() * 0.0
        return {"loss": zero, "accuracy": zero.detach()}
    lg, tg = logits[keep].float(), target[keep]
    loss = F.cross_entropy(lg, tg, label_smoothing=label_smoothing)
    acc = (lg.argmax(1) == tg).float().mean().detach()
    return {"loss": loss, "accuracy": acc}


def masked_bce(*, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               pos_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Binary cross-entropy with logits over rows with ``mask`` True; ``pos_weight`` scales positives."""
    if mask is not None:
        logits, target = logits[mask], target[mask]
    if logits.numel() == 0:
        zero = logits.sum() * 0.0
        return {"loss": zero}
    pw = torch.tensor(pos_weight, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw)
    return {"loss": loss}


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0): for initialising biases."""
    return y + math.log(-math.expm1(-y))
