"""TrackSelector: learns real helices from mixtures, dissolves exactly the tracks below its cut, round-trips."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trackformers.clustering.selection import TrackSelector, fit_selector, select_submission
from trackformers.clustering.track_features import track_features
from trackformers.errors import InputError

from .test_track_features import helix

RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0])


def tracks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n smeared helices (4-7 hits) as tracks, and n mixtures of hits of two other helices, labelled.

    Returns per hit (x, y, z, layer) (M, 4) and track id (M,), and per track whether it is real (2n,)."""
    rng = np.random.default_rng(seed)
    hits, ids, real = [], [], []

    def one() -> np.ndarray:
        k = int(rng.integers(4, 8))
        pts = helix(rng.uniform(0.9, 10), rng.normal(0, 50), rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi),
                    RADII[:k], int(rng.choice([-1, 1])))
        pts[:, :2] += rng.normal(0, 0.05, (k, 2))
        return np.c_[pts, np.arange(k)]

    for t in range(2 * n):
        if t % 2 == 0:
            pts = one()
        else:  # the first hits of one helix and the rest of another, layers in order as a real track's
            a, b = one(), one()
            cut = int(rng.integers(2, min(len(a), len(b)) - 1))
            pts = np.r_[a[:cut], b[cut:]]
        hits.append(pts)
        ids.append(np.full(len(pts), 1000 + 3 * t))
        real.append(t % 2 == 0)
    return np.concatenate(hits), np.concatenate(ids), np.array(real)


@pytest.fixture(scope="module")
def trained() -> TrackSelector:
    hits, ids, real = tracks(300, seed=1)
    order, feats = track_features(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
    assert np.array_equal(order, np.unique(ids))
    return fit_selector(feats, real, epochs=400, seed=0)


def test_learns_helices_from_mixtures(trained: TrackSelector) -> None:
    hits, ids, real = tracks(200, seed=2)  # unseen tracks
    got_ids, p = trained.probability(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
    assert np.array_equal(got_ids, np.unique(ids))
    accuracy = np.mean((p >= 0.5) == real)
    assert accuracy > 0.95, accuracy


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_select_dissolves_exactly_the_tracks_below_the_cut(trained: TrackSelector, cut: float) -> None:
    hits, ids, _ = tracks(40, seed=3)
    ids = np.r_[ids, [7, 7, 8]]  # tracks of < 3 hits are not judged
    hits = np.r_[hits, np.zeros((3, 4)) + [[50.0, 0, 0, 0]]]
    trained.cut = cut
    try:
        got = trained.select(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
        judged, p = trained.probability(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
    finally:
        trained.cut = 0.5
    drop = np.isin(ids, judged[p < cut])
    assert 0 < drop.sum() < len(ids) or cut == 0.0
    assert not np.isin([7, 8], judged).any() and (got[-3:] == [7, 7, 8]).all()  # < 3 hits: not judged, kept
    np.testing.assert_array_equal(got[~drop], ids[~drop])
    fresh = got[drop]
    assert len(np.unique(fresh)) == len(fresh) and (fresh > ids.max()).all()


def test_fresh_ids_above_every_input_id(trained: TrackSelector) -> None:
    hits, ids, _ = tracks(20, seed=6)
    ids = np.r_[ids, [10**12, 10**12]]  # the largest id belongs to a short, unjudged track
    hits = np.r_[hits, np.zeros((2, 4)) + [[50.0, 0, 0, 0]]]
    trained.cut = 0.9
    try:
        got = trained.select(hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
    finally:
        trained.cut = 0.5
    fresh = got != ids
    assert fresh.any() and (got[fresh] > 10**12).all() and (got[-2:] == 10**12).all()


def test_field_enters_the_pt_feature() -> None:
    from trackformers.clustering.track_features import FEATURES

    pts = helix(2.0, 0.0, 0.5, 0.3, RADII, field_t=4.0)
    _, f = track_features(pts[:, 0], pts[:, 1], pts[:, 2], np.arange(7), np.zeros(7, int), field_t=4.0)
    np.testing.assert_allclose(f[0, FEATURES.index("inv_pt")], 0.5, rtol=1e-3)


def test_save_load_round_trip(trained: TrackSelector, tmp_path: Path) -> None:
    hits, ids, _ = tracks(20, seed=4)
    path = tmp_path / "sel.pt"
    trained.save(path, note="test", torch=torch.__version__, table=[{"cut": 0.5}])  # a str subclass, a tuple
    back = TrackSelector.load(path)
    assert back.cut == trained.cut and back.meta == {"note": "test", "torch": str(torch.__version__),
                                                     "table": [{"cut": 0.5}]}
    args = (hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], ids)
    np.testing.assert_array_equal(back.probability(*args)[1], trained.probability(*args)[1])
    assert TrackSelector.load(path, cut=0.8).cut == 0.8


def test_bad_files_and_values(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    torch.save({"format": Evil()}, tmp_path / "evil.pt")  # a torch file whose pickle names print
    (tmp_path / "evil_raw.pt").write_bytes(pickle.dumps({"format": Evil()}))  # protocol 4: not a torch file at all
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    unreadable = "not a readable checkpoint"
    for name, words in [("missing.pt", "no such file"), ("evil.pt", "weights_only.*GLOBAL print"),
                        ("evil_raw.pt", unreadable), ("junk.pt", unreadable), ("other.pt", "no format")]:
        with pytest.raises(InputError, match=words):
            TrackSelector.load(tmp_path / name)
    with pytest.raises(InputError, match="meta"):
        TrackSelector().save(tmp_path / "bad.pt", when=object())
    assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(InputError, match=r"--selector-cut\) 1.5"):
        TrackSelector(cut=1.5)
    with pytest.raises(InputError, match="-0.1"):
        TrackSelector().cut = -0.1  # the property checks every assignment, not only the constructor's
    with pytest.raises(InputError, match="field_t 0"):
        TrackSelector(field_t=0.0)
    with pytest.raises(InputError, match="epochs 0"):
        fit_selector(np.zeros((3, 13)), np.array([True, False, True]), epochs=0)
    good = TrackSelector()
    good.save(tmp_path / "good.pt")
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    for key, value, words in [("features", ["n_hits"], "features"), ("config", {"cut": 0.5}, "config or weights"),
                              ("state_dict", {}, "config or weights")]:
        torch.save({**payload, key: value}, tmp_path / "edited.pt")
        with pytest.raises(InputError, match=words):
            TrackSelector.load(tmp_path / "edited.pt")
    with pytest.raises(InputError, match="both real and fake"):
        fit_selector(np.zeros((3, 13)), np.ones(3, bool))


def test_select_submission_matches_hits_by_id(trained: TrackSelector) -> None:
    hits, ids, _ = tracks(30, seed=5)
    table = pd.DataFrame({"hit_id": np.arange(len(ids)) + 11, "x": hits[:, 0], "y": hits[:, 1], "z": hits[:, 2],
                          "volume_id": 8, "layer_id": hits[:, 3].astype(int) * 2})
    sub = pd.DataFrame({"hit_id": table["hit_id"], "track_id": ids}).sample(frac=1.0, random_state=0)
    aligned = table.set_index("hit_id").loc[sub["hit_id"]]
    args = (*(aligned[c].to_numpy() for c in "xyz"), 80_000 + 2 * hits[sub["hit_id"].to_numpy() - 11, 3].astype(int),
            sub["track_id"].to_numpy())
    _, p = trained.probability(*args)
    trained.cut = float(np.median(p))  # half of the tracks on each side: a misaligned feature flips many
    try:
        got = select_submission(table, sub, trained)
        want = trained.select(*args)
    finally:
        trained.cut = 0.5
    np.testing.assert_array_equal(got["hit_id"], sub["hit_id"])
    np.testing.assert_array_equal(got["track_id"], want)
    with pytest.raises(InputError, match="no volume_id"):
        select_submission(table.drop(columns="volume_id"), sub, trained)
    with pytest.raises(InputError, match="no hit_id 11"):
        select_submission(table.iloc[1:], sub, trained)
