"""Pre-norm Transformer encoder over a packed batch of φ-sorted hits.

Input: a :class:`~trackformers.batch.PackedBatch` (features (N, F) in the original hit order); the encoder
permutes hits into φ-sorted order (``batch.sort_index``), runs ``n_layers`` blocks whose attention goes
through :func:`trackformers.attention.attend` with ``AttentionLayout(cu_seqlens, max_seqlen, window)``,
and returns (N, d_model) hidden states back in the ORIGINAL hit order (``batch.unsort_index``).
With ``eta_slices = S > 0`` the order is (event, η-slice, φ) instead, slices shifted by half a slice in
every other block (:mod:`trackformers.models.slicing`), so the ±window reach is local in (η, φ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trackformers.attention import AttentionLayout, attend
from trackformers.batch import PackedBatch
from trackformers.features import NUM_LAYERS, NUM_VOLUMES
from trackformers.models.rotary import GeometricRotary
from trackformers.models.slicing import SlicedOrder, sliced_order


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain (no centring, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind in ("layernorm", "layer"):
        return nn.LayerNorm(dim)
    if kind in ("rmsnorm", "rms"):
        return RMSNorm(dim)
    raise ValueError(f"norm must be 'layernorm' or 'rmsnorm'; got {kind!r}")


class MLP(nn.Module):
    """GELU MLP (d → h → d) or SwiGLU (d → 2·h gated → d, h scaled by 2/3 to keep the parameter count)."""

    def __init__(self, dim: int, hidden: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.swiglu = activation == "swiglu"
        if activation not in ("gelu", "swiglu"):
            raise ValueError(f"activation must be 'gelu' or 'swiglu'; got {activation!r}")
        if self.swiglu:
            hidden = max(8, (2 * hidden) // 3)
        self.fc_in = nn.Linear(dim, hidden * (2 if self.swiglu else 1))
        self.fc_out = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            a, b = self.fc_in(x).chunk(2, -1)
            h = F.silu(a) * b
            del a, b  # views of the (N, 2h) projection: free it before fc_out (eager peak memory)
        else:
            h = F.gelu(self.fc_in(x))
        return self.fc_out(self.drop(h))


class Block(nn.Module):
    """x + Attn(Norm(x)); x + MLP(Norm(x)) on (N, d) packed hidden states."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, activation: str, norm: str,
                 dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model {dim} must be divisible by n_heads {heads}")
        self.heads = heads
        self.norm1 = make_norm(norm, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = make_norm(norm, dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), activation, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, backend: str,
                rotary: tuple[GeometricRotary, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.drop(self.attention(x, layout, backend, rotary))
        return x + self.drop(self.mlp(self.norm2(x)))

    def attention(self, x: torch.Tensor, layout: AttentionLayout, backend: str,
                  rotary: tuple[GeometricRotary, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """(N, d) block input → (N, d) projected attention output of its normalised states.

        A method of its own so that q, k, v (views that keep the whole (N, 3d) projection alive), the
        rotated q, k and the heads' output are freed when it returns, not held through the MLP: at μ = 200
        (65k rows, d 128, bf16) that is ~100 MB less at the forward's peak, in eager mode and in the CUDA
        graphs' pool alike. The norm is taken here too, so its (N, d) output dies with the qkv projection
        instead of living (as an argument) through the attention.
        """
        n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, 3, self.heads, d // self.heads).unbind(1)
        if rotary is not None:  # (module, cos, sin) of the hits in x's order
            rot, cos, sin = rotary
            q, k = rot(q, cos, sin), rot(k, cos, sin)
        # views of the fused projection: the local kernel reads them through their strides (no copies);
        # attend() makes contiguous copies for the backends that need them
        return self.proj(attend(q, k, v, layout, backend=backend).reshape(n, d))


class Encoder(nn.Module):
    """Hit features → per-hit hidden states (N, d_model).

    Args:
        in_features: F, set by the training module from the feature configuration.
        d_model: hidden width; n_heads: attention heads; n_layers: blocks.
        mlp_ratio: MLP hidden width / d_model. activation: 'gelu' | 'swiglu'. norm: 'layernorm' | 'rmsnorm'.
        dropout: dropout probability in attention output and MLP.
        backend: attention backend ('auto', 'reference', 'dense', 'flex', 'local').
        window: attention half-width in φ-sorted positions (None = whole event).
        embed_dim: width of the volume / layer id embeddings (0 disables them).
        eta_slices: S > 0 attends within (event, η-slice) segments of width 2·eta_range / S, φ-sorted,
            with the slice edges shifted by half a slice in odd blocks; 0 = whole events, φ-sorted.
        eta_range: |η| covered by the slices (hits beyond it join the outermost slice).
        rotary_phi, rotary_eta: dimension pairs per head rotated by hit φ and η
            (:mod:`trackformers.models.rotary`), so attention scores see Δφ, Δη; 0, 0 = off.
        rotary_phi_frequency, rotary_eta_frequency: the largest rotary frequencies (1/rad, 1/unit η).
    """

    def __init__(self, in_features: int = 7, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 mlp_ratio: float = 2.0, activation: str = "gelu", norm: str = "layernorm",
                 dropout: float = 0.0, backend: str = "auto", window: int | None = None,
                 embed_dim: int = 8, eta_slices: int = 0, eta_range: float = 4.0, rotary_phi: int = 0,
                 rotary_eta: int = 0, rotary_phi_frequency: float = 64.0,
                 rotary_eta_frequency: float = 32.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.backend = backend
        self.window = window
        self.embed_dim = embed_dim
        if eta_slices < 0 or eta_range <= 0:
            raise ValueError(f"eta_slices must be >= 0 and eta_range > 0; got {eta_slices}, {eta_range}")
        self.eta_slices, self.eta_range = eta_slices, eta_range
        if embed_dim:
            self.volume_embedding = nn.Embedding(NUM_VOLUMES, embed_dim)
            self.layer_embedding = nn.Embedding(NUM_LAYERS, embed_dim)
        self.input = nn.Sequential(nn.Linear(in_features + 2 * embed_dim, d_model), nn.GELU(),
                                   nn.Linear(d_model, d_model))
        self._block_args = (d_model, n_heads, mlp_ratio, activation, norm, dropout)
        self.blocks = nn.ModuleList(Block(*self._block_args) for _ in range(n_layers))
        self.norm = make_norm(norm, d_model)
        self.rotary = (GeometricRotary(rotary_phi, rotary_eta, phi_max_frequency=rotary_phi_frequency,
                                       eta_max_frequency=rotary_eta_frequency)
                       if rotary_phi or rotary_eta else None)
        if self.rotary is not None and 2 * self.rotary.pairs > d_model // n_heads:
            raise ValueError(f"rotary_phi + rotary_eta = {self.rotary.pairs} pairs need a head dim of at least "
                             f"{2 * self.rotary.pairs}; got {d_model // n_heads}")

    def add_blocks(self, n: int) -> None:
        """Append ``n`` blocks whose residual branches start at zero (attention and MLP output projections
        zeroed), so the encoder still computes exactly what it did: a trained model grows deeper without
        losing what it knows, and training then uses the new capacity. The caller records the new depth
        (``n_layers``) wherever the model's configuration is kept."""
        if n < 0:
            raise ValueError(f"add_blocks needs n >= 0; got {n}")
        like = next(self.parameters())
        for _ in range(n):
            # the encoder's device, dtype and train/eval mode (a new module starts in train mode: its dropout
            # would otherwise run in an encoder put in eval mode)
            block = Block(*self._block_args).to(device=like.device, dtype=like.dtype).train(self.training)
            for layer in (block.proj, block.mlp.fc_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.blocks.append(block)

    def _rotary(self, batch: PackedBatch,
                perm: torch.Tensor) -> tuple[GeometricRotary, torch.Tensor, torch.Tensor] | None:
        """(module, cos, sin) for the hits in the order ``perm`` (positions → original hits), or None."""
        if self.rotary is None:
            return None
        return (self.rotary, *self.rotary.angles(batch.phi[perm], batch.eta[perm]))

    def layout(self, batch: PackedBatch) -> AttentionLayout:
        return AttentionLayout(cu_seqlens=batch.cu_seqlens, max_seqlen=int(batch.max_seqlen),
                               window=self.window)

    def sliced_orders(self, batch: PackedBatch) -> list[SlicedOrder]:
        """The (event, η-slice, φ) orderings of the blocks: [unshifted, shifted] (one with a single block)."""
        parities = (0, 1) if len(self.blocks) > 1 else (0,)
        return [sliced_order(batch.phi, batch.eta, batch.cu_seqlens, slices=self.eta_slices, parity=p,
                             window=self.window, eta_range=self.eta_range) for p in parities]

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """(N, d_model) hidden states in the batch's original hit order."""
        x = batch.features
        if self.embed_dim:
            cats = batch.categories
            x = torch.cat([x, self.volume_embedding(cats[:, 0]), self.layer_embedding(cats[:, 1])], -1)
        if self.eta_slices:
            return self._forward_sliced(self.input(x), batch)
        h = self.input(x[batch.sort_index])  # φ-sorted from here on
        # with embeddings, x is a fresh (N, F + 2·embed) concatenation: free it before the blocks
        # (without them it is batch.features, which the batch keeps alive anyway)
        del x
        layout = self.layout(batch)
        rotary = self._rotary(batch, batch.sort_index)
        for block in self.blocks:
            h = block(h, layout, self.backend, rotary)
        return self.norm(h)[batch.unsort_index]

    def _forward_sliced(self, h: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Blocks alternate between the two sliced orders; one gather per switch, (N, d) in → (N, d) out."""
        orders = self.sliced_orders(batch)
        rotaries = [self._rotary(batch, order.perm) for order in orders]
        current: SlicedOrder | None = None
        for i, block in enumerate(self.blocks):
            order = orders[i % len(orders)]
            # In `current` order, position p holds original hit current.perm[p]; so the hit that `order`
            # puts at position q (original order.perm[q]) sits at current.inverse[order.perm[q]].
            h = h[order.perm] if current is None else h[current.inverse[order.perm]]
            h = block(h, order.layout, self.backend, rotaries[i % len(orders)])
            current = order
        return self.norm(h if current is None else h[current.inverse])
