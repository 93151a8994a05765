"""GraphedForward: padding to a length bucket leaves the real hits' outputs unchanged (CPU, any encoder
layout); off CUDA it runs eagerly and says why; on CUDA the replayed graph equals the eager forward."""

from __future__ import annotations

import pytest
import torch

from trackformers.batch import TRUTH_FIELDS
from trackformers.cuda_graph import GraphedForward, bucket_length, pad_batch
from trackformers.features import pack_events
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule


def tiny_module(**encoder: object) -> TrackingModule:
    args = {"d_model": 32, "n_heads": 2, "n_layers": 2, "backend": "local", "window": 8, **encoder}
    torch.manual_seed(0)
    return TrackingModule(encoder={"class_path": "trackformers.models.encoder.Encoder", "init_args": args},
                          task={"class_path": "trackformers.models.tasks.EmbeddingTask",
                                "init_args": {"dim": 8}}).eval()


@pytest.fixture(scope="module")
def event() -> object:
    return next(iter(simulate(1, seed=11, pileup=2, volumes=(7, 8, 9))))


@pytest.fixture(autouse=True)
def banded_cpu_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the ``local`` backend's plain-torch banded path, not Triton's (slow) interpreter: padding is a
    property of the packed layout, which both implement alike."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.mark.parametrize("n", [1, 7, 1023, 1024, 1025, 8191, 57_131, 524_287])
def test_bucket_length(n: int) -> None:
    length = bucket_length(n)
    granule = max(1024, 1 << max(0, n.bit_length() - 4))
    assert length >= n and length % granule == 0 and length - n < granule
    assert n < 8192 or length - n <= n / 8


ENCODERS = {
    "local window": {},
    "dense whole event": {"backend": "dense", "window": None},
    "eta slices": {"eta_slices": 3},
}


@pytest.mark.parametrize("encoder", list(ENCODERS))
@pytest.mark.parametrize("extra", [0, 1, 37, 1000])
def test_padding_leaves_real_rows_unchanged(event: object, encoder: str, extra: int) -> None:
    module = tiny_module(**ENCODERS[encoder])
    batch = pack_events([event], module.feature_config)
    n = batch.num_hits
    padded = pad_batch(batch, n + extra)
    assert padded.num_events == 2 and padded.num_hits == n + extra
    assert padded.cu_seqlens.tolist() == [0, n, n + extra]
    assert torch.equal(padded.sort_index[:n], batch.sort_index)
    assert torch.equal(padded.sort_index[padded.unsort_index], torch.arange(n + extra))
    assert batch.has_truth and all(getattr(padded, name) is None for name in TRUTH_FIELDS)  # not padded: dropped
    with torch.no_grad():
        want = module(batch)["embedding"]
        got = module(padded)["embedding"]
    assert got.shape == (n + extra, 8)
    torch.testing.assert_close(got[:n], want, rtol=1e-5, atol=1e-5)


def test_pad_batch_refuses_several_events() -> None:
    events = list(simulate(2, seed=3, pileup=1, volumes=(7, 8, 9)))
    with pytest.raises(ValueError, match="one event"):
        pad_batch(pack_events(events), 10_000)


def test_static_orders_feed_the_sliced_encoder(event: object) -> None:
    # The capture path hands the encoder precomputed orders; with the batch's own orders nothing changes,
    # with another permutation's orders the output changes (so the encoder really reads them).
    module = tiny_module(eta_slices=3)
    graphed = GraphedForward(module)
    padded = pad_batch(pack_events([event], module.feature_config), bucket_length(len(event.hits)))
    orders = graphed._orders(padded)
    assert len(orders) == 2
    with torch.no_grad():
        want = module(padded)["embedding"]
        with graphed._static_orders(orders):
            same = module(padded)["embedding"]
        rolled = [type(o)(perm=o.perm.roll(5), inverse=torch.argsort(o.perm.roll(5)), layout=o.layout)
                  for o in orders]
        with graphed._static_orders(rolled):
            other = module(padded)["embedding"]
    torch.testing.assert_close(same, want)
    assert not torch.allclose(other, want)
    assert "sliced_orders" not in vars(module.encoder)  # the patch is undone


def test_off_cuda_it_runs_eagerly_and_says_why(event: object) -> None:
    module = tiny_module()
    graphed = GraphedForward(module)
    batch = pack_events([event], module.feature_config)
    with torch.no_grad():
        got = graphed(batch)["embedding"]
        want = module(batch)["embedding"]
    assert torch.equal(got, want)
    assert graphed.reason is not None and "CUDA" in graphed.reason
    assert not graphed.graphs


@pytest.mark.gpu
@pytest.mark.parametrize("encoder", ["local window", "eta slices"])
@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_replay_equals_eager(encoder: str, bf16: bool) -> None:
    module = tiny_module(**ENCODERS[encoder]).cuda()
    graphed = GraphedForward(module)
    events = list(simulate(3, seed=5, pileup=4, volumes=(7, 8, 9)))
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    for event in events + events[:1]:
        batch = pack_events([event], module.feature_config).to("cuda")
        with torch.no_grad(), amp:
            got = graphed(batch)["embedding"]
            want = module(batch)["embedding"]
        assert graphed.reason is None, graphed.reason
        tol = 5e-2 if bf16 else 1e-4  # bf16: GEMMs of another row count may round differently
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert 1 <= len(graphed.graphs) <= 3


@pytest.mark.parametrize("rotary", [0, 3])
def test_compiled_pointwise_parts_match_eager(event: object, rotary: int) -> None:
    from trackformers.fused import compile_pointwise, pointwise_parts

    module = tiny_module(n_layers=1, activation="swiglu", norm="rmsnorm", rotary_phi=rotary, rotary_eta=rotary)
    batch = pack_events([event], module.feature_config)
    keys = set(module.state_dict())
    # norm1, norm2, mlp of the block; the final norm; the rotary encoding when there is one
    assert len(pointwise_parts(module)) == 4 + bool(rotary)
    with torch.no_grad():
        want = module(batch)["embedding"]
        undo = compile_pointwise(module)
        got = module(batch)["embedding"]
        undo()
        again = module(batch)["embedding"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, want)
    assert set(module.state_dict()) == keys
    assert all("forward" not in vars(p) for p in pointwise_parts(module))


@pytest.mark.gpu
@pytest.mark.parametrize("rotary", [0, 3])
def test_cuda_replay_of_compiled_parts_equals_eager(rotary: int) -> None:
    from trackformers.fused import compile_pointwise

    module = tiny_module(activation="swiglu", norm="rmsnorm", rotary_phi=rotary, rotary_eta=rotary).cuda()
    events = list(simulate(2, seed=6, pileup=4, volumes=(7, 8, 9)))
    batches = [pack_events([e], module.feature_config).to("cuda") for e in events]
    amp = torch.autocast("cuda", dtype=torch.bfloat16)
    with torch.no_grad(), amp:
        want = [module(b)["embedding"] for b in batches]
    undo = compile_pointwise(module)
    graphed = GraphedForward(module)
    with torch.no_grad(), amp:
        got = [graphed(b)["embedding"] for b in batches]
    undo()
    assert graphed.reason is None, graphed.reason
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=5e-2, atol=5e-2)


def test_reconstruct_files_with_cuda_graphs_falls_back_on_cpu(tmp_path: object, event: object,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from pathlib import Path

    import pandas as pd

    from trackformers.inference import reconstruct_files
    from trackformers.io import write_events

    module = tiny_module()
    write_events([event], Path(tmp_path) / "in", format="csv")
    outs = []
    for graphs in (False, True):
        out = Path(tmp_path) / f"out{graphs}"
        summary = reconstruct_files([Path(tmp_path) / "in"], module=module, out_dir=out, cuda_graphs=graphs)
        assert summary.events == 1
        outs.append(pd.read_csv(summary.written[0]))
        # the fallback says why (it is not silent), and only when graphs were asked for
        said = any("CUDA graphs need a CUDA device" in r.getMessage() for r in caplog.records)
        assert said == graphs
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_cli_flag_cuda_graphs(tmp_path: object, event: object) -> None:
    from pathlib import Path

    import pandas as pd

    from trackformers.cli import main
    from trackformers.io import write_events

    root = Path(tmp_path)
    checkpoint = tiny_module().export_checkpoint(root / "tiny.ckpt")
    write_events([event], root / "in", format="csv")
    for flag in ([], ["--cuda-graphs"], ["--compile"]):
        out = root / (flag[0].strip("-") if flag else "eager")
        assert main(["reconstruct", str(root / "in"), "--checkpoint", str(checkpoint), "--out", str(out),
                     "--device", "cpu", "--no-progress", *flag]) == 0
    name = f"{event.name}-submission.csv"
    eager = pd.read_csv(root / "eager" / name)
    pd.testing.assert_frame_equal(eager, pd.read_csv(root / "cuda-graphs" / name))
    compiled = pd.read_csv(root / "compile" / name)  # fused kernels may round differently: same grouping
    assert compiled["hit_id"].tolist() == eager["hit_id"].tolist()
    assert set(compiled.groupby("track_id")["hit_id"].apply(frozenset)) == \
        set(eager.groupby("track_id")["hit_id"].apply(frozenset))


def test_lengths_reuse_an_existing_graph_within_the_slack() -> None:
    graphed = GraphedForward(tiny_module(), reuse_slack=0.25, headroom=0.125)
    assert graphed.lengths(56_000) == [bucket_length(63_000)]  # nothing captured yet: a new, roomier bucket
    dev = torch.device("cpu")
    for length in (61_440, 65_536, 90_112):  # pretend these graphs exist (only the key's length is read)
        graphed.graphs[(length, dev)] = None  # type: ignore[assignment]
    assert graphed.lengths(56_000)[:-1] == [61_440, 65_536]  # smallest first; 90 112 > 56 000 · 1.25
    assert graphed.lengths(64_000)[:-1] == [65_536]
    assert graphed.lengths(70_000)[:-1] == []  # 90 112 is 29 % too long
    plain = GraphedForward(tiny_module())
    plain.graphs[(65_536, dev)] = None  # type: ignore[assignment]
    assert plain.lengths(60_000) == [61_440]  # default: exact buckets only, as before
    with pytest.raises(ValueError, match="reuse_slack"):
        GraphedForward(tiny_module(), reuse_slack=-0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("encoder", ["local window", "eta slices"])
def test_cuda_events_of_different_sizes_share_one_graph(encoder: str) -> None:
    module = tiny_module(**ENCODERS[encoder]).cuda()
    graphed = GraphedForward(module, reuse_slack=1.0)
    # 2 115, 1 689, 939, 889 hits: the first graph (3 072 rows) serves the second event, not the third
    events = sorted(simulate(4, seed=7, pileup=6, volumes=(7, 8, 9)), key=len, reverse=True)
    counts = []
    for event in events:
        batch = pack_events([event], module.feature_config).to("cuda")
        with torch.no_grad():
            got = graphed(batch)["embedding"]
            want = module(batch)["embedding"]
        assert graphed.reason is None, graphed.reason
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        counts.append(len(graphed.graphs))
    assert [len(e) for e in events] == [2115, 1689, 939, 889]
    assert counts == [1, 1, 2, 2]
