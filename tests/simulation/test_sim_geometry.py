"""The detector table: layer ids and positions as in TrackML, module segmentation, volume selection."""

from __future__ import annotations

import numpy as np
import pytest

from trackformers.errors import InputError
from trackformers.simulation.geometry import LAYERS, VOLUME_IDS, layers_of, module_ids, select_volumes


def _layer(volume: int, layer_id: int):
    return next(lay for lay in LAYERS if lay.volume_id == volume and lay.layer_id == layer_id)


def test_layers_per_volume_and_ids():
    counts = {v: sum(lay.volume_id == v for lay in LAYERS) for v in VOLUME_IDS}
    assert counts == {7: 7, 8: 4, 9: 7, 12: 6, 13: 4, 14: 6, 16: 6, 17: 2, 18: 6}
    for v in VOLUME_IDS:
        ids = [lay.layer_id for lay in LAYERS if lay.volume_id == v]
        assert ids == list(range(2, 2 * len(ids) + 1, 2))


def test_positions_follow_trackml():
    assert [_layer(8, i).position for i in (2, 4, 6, 8)] == [32.0, 72.0, 116.0, 172.0]
    assert _layer(7, 2).position == -1500.0 and _layer(7, 14).position == -600.0
    assert _layer(9, 2).position == 600.0 and _layer(9, 14).position == 1500.0
    assert _layer(13, 8).position == 660.0 and _layer(17, 4).position == 1020.0
    assert _layer(14, 12).position == 2950.0 and _layer(16, 2).position == -2950.0
    assert (_layer(18, 2).lo, _layer(18, 2).hi) == (750.0, 1020.0)
    # z increases with layer id on every endcap
    for v in (7, 9, 12, 14, 16, 18):
        z = [lay.position for lay in LAYERS if lay.volume_id == v]
        assert np.all(np.diff(z) > 0)


@pytest.mark.parametrize("key", [(8, 2), (8, 8), (9, 6), (12, 4), (17, 2), (18, 12)])
def test_module_ids_cover_every_module_once(key):
    lay = _layer(*key)
    rng = np.random.default_rng(3)
    n = 200_003
    phi = rng.uniform(-np.pi, np.pi, n)
    if lay.kind == "barrel":
        v = rng.uniform(lay.lo, lay.hi, n)
    else:
        v = np.sqrt(rng.uniform(lay.lo**2, lay.hi**2, n))
    mod, nbr = module_ids(lay, phi, v)
    assert mod.min() == 1 and mod.max() == lay.n_modules
    assert len(np.unique(mod)) == lay.n_modules
    # overlap neighbours exist for about the configured fraction, are other modules of the same layer
    has = nbr > 0
    assert abs(has.mean() - lay.overlap) < 0.02
    assert np.all(nbr[has] != mod[has]) and nbr.max() <= lay.n_modules
    # module pitch close to the module size (segmentation by realistic module sizes)
    if lay.kind == "barrel":
        assert abs(2 * np.pi * lay.position / lay.n_phi - lay.module_width) < 0.2 * lay.module_width


def test_neighbour_is_adjacent_in_phi():
    lay = _layer(8, 2)
    pitch = 2 * np.pi / lay.n_phi
    edge = np.array([3 * pitch + 1e-6, 4 * pitch - 1e-6, 3.5 * pitch])
    mod, nbr = module_ids(lay, edge, np.zeros(3))
    assert mod[0] == mod[1] == mod[2]
    assert set(nbr[:2]) == {mod[0] - 1, mod[0] + 1} and nbr[2] == 0


def test_select_volumes():
    assert select_volumes(None) == VOLUME_IDS
    assert select_volumes("9, 7,8") == (7, 8, 9)
    assert select_volumes([8, 8]) == (8,)
    assert {lay.volume_id for lay in layers_of((7, 8, 9))} == {7, 8, 9}
    for bad in ([10], "7,x", []):
        with pytest.raises(InputError):
            select_volumes(bad)


def test_module_ids_many_matches_per_layer_reference():
    from trackformers.simulation.geometry import module_ids_many, module_table

    rng = np.random.default_rng(5)
    n = 50_021
    lay = rng.integers(0, len(LAYERS), n)
    lo = np.array([lv.lo for lv in LAYERS])[lay]
    hi = np.array([lv.hi for lv in LAYERS])[lay]
    phi = rng.uniform(-np.pi, np.pi, n)
    v = rng.uniform(lo - 5, hi + 5)  # a little outside too: clipped to the edge module
    mod, nbr = module_ids_many(module_table(LAYERS), lay, phi, v)
    for i, layer in enumerate(LAYERS):
        sel = lay == i
        ref_mod, ref_nbr = module_ids(layer, phi[sel], v[sel])
        np.testing.assert_array_equal(mod[sel], ref_mod)
        np.testing.assert_array_equal(nbr[sel], ref_nbr)
    # pixel-only subset: indices refer to that subset's own layers
    sub = layers_of((7, 8, 9))
    m2, _ = module_ids_many(module_table(sub), np.zeros(3, dtype=np.int64), phi[:3], np.zeros(3) + sub[0].lo)
    np.testing.assert_array_equal(m2, module_ids(sub[0], phi[:3], np.zeros(3) + sub[0].lo)[0])
