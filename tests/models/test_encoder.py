"""Encoder: output in input hit order, backends agree, norms and MLP variants run and train."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from test_features import toy_event

from trackformers.features import pack_events
from trackformers.models.encoder import Encoder


@pytest.mark.parametrize("window", [None, 3])
def test_output_follows_input_hit_order(window: int | None) -> None:
    torch.manual_seed(0)
    ev = toy_event(6, 5, seed=11)
    shuffled = type(ev)(ev.event_id, ev.hits.sample(frac=1.0, random_state=1).reset_index(drop=True))
    enc = Encoder(d_model=16, n_heads=2, n_layers=2, backend="reference", window=window).eval()
    with torch.no_grad():
        a = enc(pack_events([ev]))
        b = enc(pack_events([shuffled]))
    # Row i of an output belongs to row i of its hits table: match rows by hit_id.
    pos = {h: i for i, h in enumerate(ev.hits["hit_id"].tolist())}
    idx = torch.tensor([pos[h] for h in shuffled.hits["hit_id"].tolist()])
    assert torch.allclose(a[idx], b, atol=1e-5)


@pytest.mark.parametrize("norm,activation", [("layernorm", "gelu"), ("rmsnorm", "swiglu")])
def test_backends_agree_and_gradients_flow(norm: str, activation: str) -> None:
    torch.manual_seed(1)
    batch = pack_events([toy_event(4, 3, seed=s, event_id=s) for s in (1, 2)] + [toy_event(1, 0, seed=3)])
    enc = Encoder(d_model=16, n_heads=4, n_layers=2, norm=norm, activation=activation, backend="reference",
                  window=4)
    ref = enc(batch)
    enc.backend = "dense"
    dense = enc(batch)
    assert torch.allclose(ref, dense, atol=1e-5)
    dense.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_events_do_not_see_each_other() -> None:
    torch.manual_seed(2)
    a, b = toy_event(3, 2, seed=5, event_id=1), toy_event(4, 1, seed=6, event_id=2)
    enc = Encoder(d_model=16, n_heads=2, n_layers=1, backend="reference").eval()
    with torch.no_grad():
        joint = enc(pack_events([a, b]))
        alone = enc(pack_events([a]))
    assert torch.allclose(joint[: len(a.hits)], alone, atol=1e-5)
    assert np.isfinite(joint.numpy()).all()


def _base(t: torch.Tensor) -> torch.Tensor:
    """The tensor that owns a view's storage (a view keeps it alive)."""
    return t._base if t._base is not None else t


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_attention_temporaries_are_freed_before_the_mlp(activation: str) -> None:
    """Inference: the forward's peak memory (and the CUDA graphs' pool) depends on temporaries dying early.
    When a block's output projection runs, its norm1 output is gone; when its MLP runs, the (N, 3d) qkv
    projection (kept alive by its q, k, v views) and the heads' output (the projection's input) are gone; when
    the MLP's second layer runs, the first layer's output is gone."""
    torch.manual_seed(3)
    enc = Encoder(d_model=16, n_heads=2, n_layers=2, activation=activation, backend="reference", window=4,
                  rotary_phi=1, rotary_eta=1).eval()
    last: dict[str, weakref.ref] = {}
    seen: list[tuple[str, bool]] = []

    def record(name: str):
        return lambda m, i, out: last.__setitem__(name, weakref.ref(out))

    def check(*names: str):
        def hook(m, i) -> None:  # a pre-hook that returned a value would replace the module's input
            seen.extend((n, last[n]() is None) for n in names)
        return hook

    def heads(m, i) -> None:
        check("norm1")(m, i)
        last["heads"] = weakref.ref(_base(i[0]))

    for block in enc.blocks:
        block.norm1.register_forward_hook(record("norm1"))
        block.qkv.register_forward_hook(record("qkv"))
        block.proj.register_forward_pre_hook(heads)
        block.mlp.register_forward_pre_hook(check("qkv", "heads"))
        block.mlp.fc_in.register_forward_hook(record("fc_in"))
        block.mlp.fc_out.register_forward_pre_hook(check("fc_in"))
    with torch.no_grad():
        enc(pack_events([toy_event(5, 3, seed=7)]))
    names = ["norm1", "qkv", "heads", "fc_in"] * len(enc.blocks)
    assert seen == [(n, True) for n in names]


def test_added_blocks_keep_the_output_and_learn() -> None:
    torch.manual_seed(4)
    batch = pack_events([toy_event(5, 3, seed=8, event_id=1), toy_event(3, 2, seed=9, event_id=2)])
    enc = Encoder(d_model=16, n_heads=2, n_layers=2, activation="swiglu", norm="rmsnorm", backend="reference",
                  window=4, rotary_phi=1, rotary_eta=1)
    before = enc(batch).detach()
    enc.add_blocks(2)
    assert len(enc.blocks) == 4
    after = enc(batch)
    assert torch.equal(before, after)  # zero residual branches add exactly 0
    (after * torch.randn_like(after)).sum().backward()  # a loss the final norm does not make flat
    for block in enc.blocks[2:]:  # the zeroed output projections get gradients, so the new blocks can learn
        assert block.proj.weight.grad.abs().sum() > 0 and block.mlp.fc_out.weight.grad.abs().sum() > 0
    # ... and one step of plain gradient descent on the new blocks alone changes the output
    with torch.no_grad():
        for p in enc.blocks[2:].parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert (enc(batch) - before).abs().max() > 1e-3


@pytest.mark.parametrize("n_layers, slices", [(0, 0), (1, 4), (3, 4)])
def test_added_blocks_in_eval_mode_and_eta_slices(n_layers: int, slices: int) -> None:
    """Growing an encoder in eval mode (dropout on) keeps it deterministic and unchanged, also when the new blocks
    start alternating η-slice parities (a 1-block sliced encoder has only the unshifted order) and from 0 blocks."""
    torch.manual_seed(5)
    batch = pack_events([toy_event(5, 3, seed=10, event_id=1), toy_event(4, 2, seed=11, event_id=2)])
    enc = Encoder(d_model=16, n_heads=2, n_layers=n_layers, backend="reference", window=4, eta_slices=slices,
                  dropout=0.5).eval()
    with torch.no_grad():
        before = enc(batch)
        enc.add_blocks(3)
        after = [enc(batch) for _ in range(2)]
    assert len(enc.blocks) == n_layers + 3 and not any(m.training for m in enc.modules())
    assert torch.equal(before, after[0]) and torch.equal(after[0], after[1])
    with pytest.raises(ValueError, match="n >= 0"):
        enc.add_blocks(-1)
