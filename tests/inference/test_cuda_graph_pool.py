"""GraphedForward.borrowing: the work after a replay allocates from the graph pool, with unchanged results;
a borrowed tensor still alive at the next replay retires the pool instead of being overwritten."""

from __future__ import annotations

import pytest
import torch
from test_cuda_graph import tiny_module

from trackformers.clustering.gpu import GPUClusterer
from trackformers.cuda_graph import GraphedForward
from trackformers.features import pack_events
from trackformers.inference import StageTimer, reconstruct_event
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule


@pytest.fixture(autouse=True)
def banded_cpu_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU: the local backend's plain-torch path


def in_pool(graphed: GraphedForward, tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s storage lies inside one of the graph pool's segments."""
    ptr = tensor.data_ptr()
    return any(seg["address"] <= ptr < seg["address"] + seg["total_size"] for seg in graphed._pool.snapshot())


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal labelings up to renaming: the pairs (a, b) map one-to-one."""
    pairs = torch.unique(torch.stack([a, b]), dim=1)
    return pairs.shape[1] == torch.unique(a).numel() == torch.unique(b).numel()


def test_borrowing_is_a_no_op_off_cuda() -> None:
    module = tiny_module()
    graphed = GraphedForward(module)
    event = next(iter(simulate(1, seed=2, pileup=2, volumes=(7, 8, 9))))
    batch = pack_events([event], module.feature_config)
    with torch.no_grad(), graphed.borrowing():
        got = graphed(batch)["embedding"]
    assert torch.equal(got, module(batch)["embedding"].detach())
    assert graphed.reason is not None and graphed.retired == 0 and graphed._routing is None


@pytest.mark.gpu
@pytest.mark.parametrize("warmup_in_pool", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_borrowed_outputs_and_labels_equal_unborrowed(bf16: bool, warmup_in_pool: bool) -> None:
    module = tiny_module().cuda()
    lent = GraphedForward(module, warmup_in_pool=warmup_in_pool)
    plain = GraphedForward(module, lend_pool=False)
    clusterer = GPUClusterer(radius=0.5, window=64)
    events = list(simulate(3, seed=5, pileup=4, volumes=(7, 8, 9)))
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    for rep, event in enumerate(events + events):  # captures first, then replays
        batch = pack_events([event], module.feature_config, targets=False).to("cuda")
        with torch.no_grad(), amp:
            with lent.borrowing():
                out = lent(batch)
                labels = clusterer(out["embedding"], phi=batch.phi)
                if rep >= len(events):  # a replay: the copies and the clusterer's tensors are the pool's
                    assert in_pool(lent, out["embedding"]) and in_pool(lent, labels)
                got_x, got_labels = out["embedding"].cpu(), labels.cpu()
                del out, labels
            want = plain(batch)
            want_labels = clusterer(want["embedding"], phi=batch.phi).cpu()
            eager = module(batch)["embedding"].float().cpu()
        assert lent.reason is None and plain.reason is None
        assert torch.equal(got_x, want["embedding"].cpu())  # the same graph, the same bits
        assert torch.equal(got_labels, want_labels)
        tol = 5e-2 if bf16 else 1e-4
        torch.testing.assert_close(got_x.float(), eager, rtol=tol, atol=tol)
    assert lent.retired == 0 and lent._routing is None
    assert len(lent.graphs) == len(plain.graphs) >= 1


@pytest.mark.gpu
def test_a_borrowed_tensor_alive_at_the_next_replay_retires_the_pool() -> None:
    module = tiny_module().cuda()
    graphed = GraphedForward(module)
    event = next(iter(simulate(1, seed=8, pileup=4, volumes=(7, 8, 9))))
    batch = pack_events([event], module.feature_config, targets=False).to("cuda")
    with torch.no_grad():
        want = module(batch)["embedding"]
        with graphed.borrowing():
            graphed(batch)  # capture
            kept = graphed(batch)["embedding"]  # a replay: kept lives in the pool, against the rule
            assert in_pool(graphed, kept)
            copy = kept.cpu()
            old_pool = graphed._pool
            again = graphed(batch)["embedding"]  # would overwrite kept; instead the pool is retired
            assert graphed.retired == 1 and graphed._pool is not old_pool
            assert torch.equal(kept.cpu(), copy)
            torch.testing.assert_close(again, want, rtol=1e-4, atol=1e-4)
        del kept, copy, again
        with graphed.borrowing():
            graphed(batch)
            torch.testing.assert_close(graphed(batch)["embedding"], want, rtol=1e-4, atol=1e-4)
    assert graphed.retired == 1  # the rule kept since: no further retirement


@pytest.mark.gpu
def test_reconstruct_event_with_a_lending_forward() -> None:
    import pandas as pd

    module = tiny_module().cuda()
    lent, plain = GraphedForward(module), GraphedForward(module, lend_pool=False)
    clusterer = GPUClusterer(radius=0.5, window=64)
    events = list(simulate(2, seed=9, pileup=4, volumes=(7, 8, 9)))
    for event in events + events:
        timer = StageTimer(torch.device("cuda"))
        got = reconstruct_event(module, event, clusterer, timer, forward=lent)
        pd.testing.assert_frame_equal(got, reconstruct_event(module, event, clusterer, timer, forward=plain))
        eager = reconstruct_event(module, event, clusterer, timer)
        assert got["hit_id"].tolist() == eager["hit_id"].tolist()
        # fp32 GEMMs of another row count may round differently: nearly the same tracks
        agree = same_partition(torch.as_tensor(got["track_id"].to_numpy()),
                               torch.as_tensor(eager["track_id"].to_numpy()))
        assert agree or got["track_id"].nunique() == pytest.approx(eager["track_id"].nunique(), rel=0.01)
    assert lent.reason is None and lent.retired == 0 and len(lent.graphs) >= 1


class Drifting(torch.nn.Module):
    """A module whose every call adds its call count: a graph bakes in the capture's count, so its replay
    disagrees with the eager warm-up (the check must catch that and fall back)."""

    def __init__(self, inner: TrackingModule) -> None:
        super().__init__()
        self.inner, self.encoder, self.calls = inner, inner.encoder, 0

    def forward(self, batch: object) -> dict[str, torch.Tensor]:
        self.calls += 1
        out = dict(self.inner(batch))
        out["embedding"] = out["embedding"] + float(self.calls)
        return out


@pytest.mark.gpu
@pytest.mark.parametrize("warmup_in_pool", [False, True])
def test_a_replay_that_disagrees_with_the_warmup_falls_back(warmup_in_pool: bool) -> None:
    module = Drifting(tiny_module().cuda())
    graphed = GraphedForward(module, warmup_in_pool=warmup_in_pool)
    event = next(iter(simulate(1, seed=12, pileup=4, volumes=(7, 8, 9))))
    batch = pack_events([event], module.inner.feature_config, targets=False).to("cuda")
    with torch.no_grad(), graphed.borrowing():
        got = graphed(batch)["embedding"]
        assert graphed.reason is not None and "disagrees" in graphed.reason
        calls = module.calls  # 2 warm-ups, the capture, the eager fallback
        want = module.inner(batch)["embedding"] + float(calls)
        torch.testing.assert_close(got, want)
        assert not graphed.graphs and len(graphed.failed) == 1
        graphed(batch)  # the failed bucket runs eagerly from now on, without another capture
        assert module.calls == calls + 1 and graphed.retired == 0
