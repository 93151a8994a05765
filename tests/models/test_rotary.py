"""Rotary (φ, η) encoding: matches a per-pair loop, scores depend on Δφ / Δη only, the encoder uses it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_features import toy_event

from trackformers.features import pack_events
from trackformers.models.encoder import Encoder
from trackformers.models.rotary import GeometricRotary, frequencies, reference_rotate


def test_frequencies() -> None:
    assert frequencies(0, 64, integer=True) == []
    assert frequencies(1, 64, integer=True) == [1.0]
    assert frequencies(4, 64, integer=True) == [1.0, 4.0, 16.0, 64.0]
    f = frequencies(5, 32, integer=False)
    assert f[0] == 1.0 and math.isclose(f[-1], 32.0)
    assert all(b > a for a, b in zip(f, f[1:]))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("n,heads,dim,pp,pe", [(13, 2, 16, 3, 2), (1, 1, 8, 4, 0), (29, 3, 32, 0, 5), (0, 2, 8, 1, 1)])
def test_rotation_matches_reference(n: int, heads: int, dim: int, pp: int, pe: int, dtype: torch.dtype,
                                    tol: float) -> None:
    g = torch.Generator().manual_seed(n + dim)
    x = torch.randn(n, heads, dim, generator=g).to(dtype)
    phi = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    eta = (torch.rand(n, generator=g) * 2 - 1) * 4
    rot = GeometricRotary(pp, pe, phi_max_frequency=64, eta_max_frequency=16)
    got = rot(x, *rot.angles(phi, eta))
    want = reference_rotate(x, [phi] * pp + [eta] * pe, rot.freqs.tolist())
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)
    # the dimensions beyond the rotated pairs are untouched
    assert torch.equal(got[..., 2 * (pp + pe):], x[..., 2 * (pp + pe):])


def test_scores_depend_on_differences_only_and_wrap_at_the_seam() -> None:
    g = torch.Generator().manual_seed(7)
    n = 11
    q, k = torch.randn(n, 1, 16, generator=g, dtype=torch.float64), torch.randn(n, 1, 16, generator=g,
                                                                                dtype=torch.float64)
    phi = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    eta = torch.randn(n, generator=g, dtype=torch.float64)
    rot = GeometricRotary(4, 3).double()

    def scores(p: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        c, s = rot.angles(p, e)
        c, s = c.double(), s.double()
        return torch.einsum("ihd,jhd->ij", rot(q, c, s), rot(k, c, s))

    base = scores(phi, eta)
    # a common rotation of the event, wrapped back into (−π, π]: integer φ frequencies make it invisible
    shifted = torch.remainder(phi + 2.0 + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(scores(shifted, eta + 0.7), base, atol=1e-4, rtol=1e-4)
    # a relative change is seen
    moved = phi.clone()
    moved[0] += 0.05
    assert (scores(moved, eta) - base)[0].abs().max() > 1e-3


def test_encoder_with_rotary_backends_agree_order_and_gradients() -> None:
    torch.manual_seed(3)
    batch = pack_events([toy_event(5, 3, seed=s, event_id=s) for s in (1, 2)])
    enc = Encoder(d_model=32, n_heads=2, n_layers=2, backend="reference", window=4, rotary_phi=3, rotary_eta=2)
    ref = enc(batch)
    enc.backend = "dense"
    dense = enc(batch)
    torch.testing.assert_close(ref, dense, atol=1e-5, rtol=1e-5)
    dense.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    plain = Encoder(d_model=32, n_heads=2, n_layers=2, backend="reference", window=4)
    plain.load_state_dict(enc.state_dict())  # no parameters of its own: the same weights load
    with torch.no_grad():
        assert (plain(batch) - ref).abs().max() > 1e-4  # and the rotation changes the outputs
    ev = toy_event(6, 4, seed=9)
    shuffled = type(ev)(ev.event_id, ev.hits.sample(frac=1.0, random_state=2).reset_index(drop=True))
    enc.eval()
    with torch.no_grad():
        a, b = enc(pack_events([ev])), enc(pack_events([shuffled]))
    pos = {h: i for i, h in enumerate(ev.hits["hit_id"].tolist())}
    torch.testing.assert_close(a[torch.tensor([pos[h] for h in shuffled.hits["hit_id"].tolist()])], b,
                               atol=1e-5, rtol=1e-5)


def test_encoder_with_rotary_and_eta_slices_matches_backends() -> None:
    torch.manual_seed(4)
    batch = pack_events([toy_event(6, 4, seed=5, event_id=5)])
    enc = Encoder(d_model=16, n_heads=2, n_layers=2, backend="reference", window=3, eta_slices=2,
                  rotary_phi=2, rotary_eta=1)
    ref = enc(batch)
    enc.backend = "dense"
    torch.testing.assert_close(enc(batch), ref, atol=1e-5, rtol=1e-5)


class _Recorder(torch.nn.Module):
    """A block that passes its rows through and records which hit each row holds and the angles it was given."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def forward(self, x: torch.Tensor, layout: object, backend: str, rotary: tuple) -> torch.Tensor:
        self.log.append((x[:, 0].round().long(), rotary[1], rotary[2]))
        return x


@pytest.mark.parametrize("eta_slices", [0, 3])
def test_every_row_is_rotated_by_its_own_hits_angles(eta_slices: int) -> None:
    # Rows carry their original hit index (feature 0) through the encoder's permutations; each block must get
    # the cos / sin of exactly that hit's φ and η (a wrong order would pass the backend comparisons above).
    batch = pack_events([toy_event(7, 5, seed=s, event_id=s) for s in (3, 4)])
    enc = Encoder(d_model=16, n_heads=1, n_layers=3, embed_dim=0, eta_slices=eta_slices, window=3,
                  rotary_phi=2, rotary_eta=2)
    n, log = batch.num_hits, []
    features = batch.features.clone()
    features[:, 0] = torch.arange(n, dtype=features.dtype)
    enc.input = torch.nn.ZeroPad1d((0, 16 - features.shape[1]))
    enc.blocks = torch.nn.ModuleList(_Recorder(log) for _ in range(3))
    enc.norm = torch.nn.Identity()
    out = enc(dataclasses.replace(batch, features=features))
    assert torch.equal(out[:, 0], torch.arange(n, dtype=out.dtype))  # back in the original order
    assert len(log) == 3
    freqs = enc.rotary.freqs.double()
    for hit, cos, sin in log:
        assert sorted(hit.tolist()) == list(range(n))
        theta = torch.cat([batch.phi.double()[hit, None].expand(-1, 2), batch.eta.double()[hit, None].expand(-1, 2)],
                          1) * freqs
        torch.testing.assert_close(cos[:, 0].double(), theta.cos(), atol=1e-5, rtol=0)
        torch.testing.assert_close(sin[:, 0].double(), theta.sin(), atol=1e-5, rtol=0)


def test_too_many_pairs_and_bad_frequencies_are_refused() -> None:
    with pytest.raises(ValueError, match="head dim"):
        Encoder(d_model=16, n_heads=4, rotary_phi=2, rotary_eta=1)
    with pytest.raises(ValueError, match="max frequencies"):
        Encoder(d_model=16, n_heads=2, rotary_phi=2, rotary_phi_frequency=0.5)
