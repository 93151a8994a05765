"""Primary particles: pile-up vertices, multiplicities, the pT spectrum, ids, gun and hard-scatter modes."""

from __future__ import annotations

import numpy as np
import pytest

from trackformers.errors import InputError
from trackformers.simulation.generator import (
    HARD_SCATTER,
    MINIMUM_BIAS,
    Spectrum,
    decode_particle_id,
    generate,
)


def _eta(p):
    pt = np.hypot(p["px"], p["py"])
    return np.arcsinh(p["pz"] / pt)


def test_pileup_vertices_and_multiplicity():
    p = generate(np.random.default_rng(0), pileup=200)
    f = decode_particle_id(p["particle_id"])
    n_vertices = f["vertex_id"].max()
    assert 160 < n_vertices < 245  # 1 + Poisson(200)
    per_vertex = np.bincount(f["vertex_id"])[1:]
    assert abs(per_vertex.mean() - 45) < 2 and abs(per_vertex.var() / per_vertex.mean() - 1) < 0.3
    assert len(np.unique(p["particle_id"])) == len(p["particle_id"])
    # beam spot: σz 55.5 mm, σxy 12.5 µm (one position per vertex)
    _, first = np.unique(f["vertex_id"], return_index=True)
    assert 40 < np.std(p["vz"][first]) < 70 and np.std(p["vx"][first]) < 0.02
    assert np.abs(_eta(p)).max() <= 3.0 and np.all(np.isin(p["q"], [-1, 1]))


def test_no_pileup_is_one_interaction():
    for seed in range(5):
        p = generate(np.random.default_rng(seed), pileup=0)
        assert set(decode_particle_id(p["particle_id"])["vertex_id"]) == {1} and len(p["q"]) > 0


def test_pt_spectrum_follows_the_formula():
    pt = MINIMUM_BIAS.sample(np.random.default_rng(1), 400_009)
    assert pt.min() >= 0.1
    edges = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 10.0])
    grid = np.geomspace(0.1, 100, 200_001)
    pdf = grid * (1 + grid / 1.2) ** -7.3
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    want = np.diff(np.interp(edges, grid, cdf / cdf[-1]))
    got = np.histogram(pt, edges)[0] / len(pt)
    np.testing.assert_allclose(got, want, rtol=0.03, atol=2e-4)
    assert np.mean(HARD_SCATTER.sample(np.random.default_rng(1), 10_000)) > 1.5 * pt.mean()


def test_gun_and_hard_scatter():
    p = generate(np.random.default_rng(2), gun=25, gun_pt=(5.0, 6.0), eta_max=1.0)
    pt = np.hypot(p["px"], p["py"])
    assert len(pt) == 25 and np.all((pt >= 5) & (pt <= 6)) and np.abs(_eta(p)).max() <= 1.0
    hs = generate(np.random.default_rng(3), hard_scatter=True, pileup=10)
    f = decode_particle_id(hs["particle_id"])
    counts = np.bincount(f["vertex_id"])[1:]
    assert counts[0] > 80 and counts[1:].mean() < 60


def test_custom_spectrum_range():
    pt = Spectrum(pt_min=1.0).sample(np.random.default_rng(4), 1000)
    assert pt.min() >= 1.0


@pytest.mark.parametrize("kwargs", [{"pileup": -0.1}, {"pileup": 2000}, {"eta_max": 0}, {"gun": -1},
                                    {"gun": 3, "gun_pt": (2.0, 1.0)}])
def test_bad_generator_options(kwargs):
    with pytest.raises(InputError):
        generate(np.random.default_rng(0), **kwargs)
