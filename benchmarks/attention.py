"""Attention backends on one GPU: ms and useful TFLOP/s, forward and forward+backward, plus index build.

Useful FLOPs: 4·N·(2w+1)·H·D for the forward, ×3.5 for forward+backward (the band only; padding, masked
tile elements and recomputation are not counted). "build" is the mask/index build a layout needs; "layer" is
build + forward + backward, what one training step of an attention layer pays. Every time is the median of
``triton.testing.do_bench`` repeats (CUDA events).

    PYTHONPATH=. python benchmarks/attention.py --json out.json            # the issue's grid
    PYTHONPATH=. python benchmarks/attention.py --sweep --n 65536          # tile-config sweep of `local`

Backend "local-det" is `local` with ``torch.use_deterministic_algorithms(True)``: the two-kernel backward
instead of the one-pass atomic one.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial

import torch


def useful_flops(n_q: int, w: int, lengths: list[int], h: int, d: int) -> float:
    """4·Σ_q(keys in band)·H·D: per event min(2w+1, L) keys per query."""
    return 4.0 * sum(length * min(2 * w + 1, length) for length in lengths) * h * d


def bench(fn, warmup: int = 25, rep: int = 100) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def make_layout(lengths: list[int], w: int, device: str):
    from trackformers.attention.api import AttentionLayout

    return AttentionLayout.from_lengths(lengths, device=device, window=w)


def packed_lengths(n: int, seed: int = 0) -> list[int]:
    """A multi-event batch of about n hits: 4 events of uneven, non-round sizes."""
    g = torch.Generator().manual_seed(seed)
    frac = torch.rand(4, generator=g) + 0.5
    lengths = [int(x) for x in (frac / frac.sum() * n).floor()]
    lengths[-1] += n - sum(lengths)
    return lengths


def time_backend(name: str, q, k, v, layout, do) -> dict:
    """{build, fwd, fwdbwd, layer} ms for one backend (absent keys: not applicable)."""
    from trackformers.attention.api import attend

    res: dict = {}
    det = name == "local-det"  # the deterministic two-kernel backward instead of the atomic one
    if det:
        name = "local"
    clear = None
    if name == "local":
        from trackformers.attention.local.config import configs_for
        from trackformers.attention.local.function import _forward, _Tables, clear_table_cache

        clear = clear_table_cache  # a layer step pays its index build (the layers of a batch share one)
        cfg = configs_for(q.shape[-1], q.element_size())
        bwd_blocks = {cfg.bwd.block_n} if cfg.bwd is not None and not det else {cfg.dkdv.block_n, cfg.dq.block_m}
        blocks = sorted({cfg.fwd.block_m} | bwd_blocks)

        def build():
            t = _Tables(layout.cu_seqlens, q.shape[0])
            for b in blocks:
                t(b)
            return t

        res["build"] = bench(build)
        tables = build()
        w = min(layout.window, layout.max_seqlen)
        full = 2 * layout.window + 1 >= layout.max_seqlen
        scale = q.shape[-1] ** -0.5
        res["fwd"] = bench(partial(_forward, q, k, v, layout.cu_seqlens, None, tables, w, full, scale, cfg,
                                   False))
    elif name == "flex":
        from trackformers.attention import flex as fx

        res["build"] = bench(partial(fx.build_block_mask, layout, q.device))
        mask = fx.build_block_mask(layout, q.device)
        scale = q.shape[-1] ** -0.5
        with torch.no_grad():
            res["fwd"] = bench(partial(fx.flex_attention_with_mask, q, k, v, mask, scale))
        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
        res["fwdbwd"] = bench(lambda: fx.flex_attention_with_mask(qg, kg, vg, mask, scale).backward(do))
    else:
        with torch.no_grad():
            res["fwd"] = bench(partial(attend, q, k, v, layout, backend=name))
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))

    def step():
        if clear is not None:
            clear()
        out = attend(qg, kg, vg, layout, backend=name)
        out.backward(do)

    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(det or prev)
    try:
        res["layer"] = bench(step)
    finally:
        torch.use_deterministic_algorithms(prev)
    res.setdefault("fwdbwd", res["layer"] - res.get("build", 0.0))
    return res


def flex_eager(q, k, v, lengths: list[int], w: int, do) -> dict:
    """FlexAttention with a mask from ``create_block_mask(..., _compile=True)`` (circular window + event ids),
    the build the issue's 33 ms reference point used; the kernel is the flex backend's compiled one."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = q.shape[0]
    dev = q.device
    ev = torch.repeat_interleave(torch.arange(len(lengths), device=dev), torch.tensor(lengths, device=dev))
    length = torch.tensor(lengths, device=dev)[ev]

    def mask_mod(b, h, qi, ki):
        d = (qi - ki).abs()
        circ = torch.minimum(d, length[qi] - d)
        return (ev[qi] == ev[ki]) & ((circ <= w) | (2 * w + 1 >= length[qi]))

    def build():
        return create_block_mask(mask_mod, 1, 1, n, n, device=dev, _compile=True)

    res = {"build": bench(build, warmup=1, rep=5)}
    bm = build()
    from trackformers.attention import flex as fx  # the same compiled flex kernel as the flex backend

    scale = q.shape[-1] ** -0.5
    with torch.no_grad():
        res["fwd"] = bench(partial(fx.flex_attention_with_mask, q, k, v, bm, scale))
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    res["fwdbwd"] = bench(lambda: fx.flex_attention_with_mask(qg, kg, vg, bm, scale).backward(do))
    res["layer"] = res["build"] + res["fwdbwd"]
    return res


def dump(args, env: dict, rows: list[dict]) -> None:
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(env=env, rows=rows, args=vars(args)), fh, indent=1)


def run_grid(args, env: dict) -> list[dict]:
    from trackformers.attention.api import backends

    rows = []
    dev = "cuda"
    names = [b for b in args.backends.split(",") if b in backends() or b in ("flex-cbm", "sdpa", "local-det")]
    for n in args.n:
        for d in args.d:
            for w in args.w:
                for case in ("1 event", "packed"):
                    lengths = [n] if case == "1 event" else packed_lengths(n)
                    layout = make_layout(lengths, w, dev)
                    q, k, v, do = (torch.randn(n, args.h, d, device=dev, dtype=torch.bfloat16)
                                   for _ in range(4))
                    flops = useful_flops(n, w, lengths, args.h, d)
                    for name in names:
                        row = dict(n=n, d=d, w=w, h=args.h, case=case, backend=name)
                        try:
                            if name == "sdpa":
                                if case != "1 event":
                                    continue
                                qt, kt, vt = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
                                f = torch.nn.functional.scaled_dot_product_attention
                                with torch.no_grad():
                                    row["fwd"] = bench(partial(f, qt, kt, vt))
                                row["tflops_fwd"] = 4.0 * n * n * args.h * d / row["fwd"] / 1e9
                            else:
                                if name == "dense" and n > args.dense_max:
                                    raise RuntimeError(f"O(N²) mask; skipped above N={args.dense_max}")
                                if name == "flex-cbm" and n not in args.cbm_n:
                                    continue
                                r = flex_eager(q, k, v, lengths, w, do) if name == "flex-cbm" else \
                                    time_backend(name, q, k, v, layout, do)
                                row.update(r)
                                row["tflops_fwd"] = flops / r["fwd"] / 1e9
                                row["tflops_fwdbwd"] = 3.5 * flops / r["fwdbwd"] / 1e9
                        except Exception as err:  # record and go on: one backend failing must not end the run
                            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
                        torch.cuda.empty_cache()
                        rows.append(row)
                        print_row(row)
                        dump(args, env, rows)
    return rows


def print_row(r: dict) -> None:
    def f(key, fmt="{:8.3f}"):
        return fmt.format(r[key]) if key in r else " " * (len(fmt.format(0.0)))

    if "error" in r:
        print(f"{r['n']:>7} {r['d']:>3} {r['w']:>5} {r['case']:<8} {r['backend']:<9} {r['error']}",
              flush=True)
        return
    print(f"{r['n']:>7} {r['d']:>3} {r['w']:>5} {r['case']:<8} {r['backend']:<9} {f('build')} {f('fwd')} "
          f"{f('fwdbwd')} {f('layer')} {f('tflops_fwd', '{:7.0f}')} {f('tflops_fwdbwd', '{:7.0f}')}",
          flush=True)


HEADER = (f"{'N':>7} {'D':>3} {'w':>5} {'case':<8} {'backend':<9} {'build':>8} {'fwd':>8} {'fwd+bwd':>8} "
          f"{'layer':>8} {'TF fwd':>7} {'TF f+b':>7}   (ms, useful TFLOP/s)")


def sweep(args) -> list[dict]:
    """Time each candidate tile config of each local kernel (the others fixed at the running best).

    Kinds: "fwd" (forward alone), "dkdv" / "dq" (the whole two-kernel backward), "bwd" (the whole atomic
    backward; kept only if it beats the two-kernel one), "affine" (forward + backward with affine interior
    tiles on and off). ``--warm-only`` launches each candidate once (compiles it into Triton's cache), so
    several such processes can compile in parallel before the timed sweep.
    """
    from dataclasses import replace

    from trackformers.attention.local import config as C
    from trackformers.attention.local.function import _backward, _forward, _Tables

    rows, best_all = [], {}
    n = args.n[0]
    for d in args.d:
        base = C.TUNED[d]
        for w in args.w:
            layout = make_layout([n], w, "cuda")
            cu = layout.cu_seqlens
            q, k, v, do = (torch.randn(n, args.h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
            tables = _Tables(cu, n)
            scale = d ** -0.5
            o, lse = _forward(q, k, v, cu, None, tables, w, False, scale, base, True)
            split_ms = None

            def fwd_bwd(cfg, ins=(q, k, v, do, o, lse, cu, tables, w, scale)):
                q, k, v, do, o, lse, cu, tables, w, scale = ins
                _forward(q, k, v, cu, None, tables, w, False, scale, cfg, False)
                _backward(do, q, k, v, o, lse, cu, None, tables, w, False, scale, cfg, False)

            for kind in args.kinds.split(","):
                best = None
                cands = [True, False] if kind == "affine" else C.candidates(kind, d)
                for cand in cands:
                    if kind == "affine":
                        cfg = replace(base, affine=cand)
                        fn = partial(fwd_bwd, cfg)
                    elif kind == "fwd":
                        cfg = replace(base, fwd=cand)
                        fn = partial(_forward, q, k, v, cu, None, tables, w, False, scale, cfg, False)
                    else:  # the whole backward, atomic for "bwd", the two-kernel path for dkdv / dq
                        cfg = replace(base, **{kind: cand})
                        fn = partial(_backward, do, q, k, v, o, lse, cu, None, tables, w, False, scale, cfg,
                                     kind == "bwd")
                    label = cand if kind == "affine" else tuple(cand.__dict__.values())
                    try:
                        if args.warm_only:
                            fn()
                            torch.cuda.synchronize()
                            continue
                        ms = bench(fn, warmup=10, rep=40)
                    except Exception as err:
                        print(f"  {kind} {label}: {type(err).__name__}: {str(err)[:200]}", flush=True)
                        continue
                    print(f"  D={d} w={w} {kind} {label}: {ms:.3f} ms", flush=True)
                    rows.append(dict(kind=kind, d=d, w=w, n=n, cfg=label, ms=ms))
                    if best is None or ms < best[0]:
                        best = (ms, cand)
                if best is None:
                    continue
                base = replace(base, **{kind: best[1]})
                if kind in ("dkdv", "dq"):
                    split_ms = best[0]
                if kind == "bwd":
                    if split_ms is None:
                        split_ms = bench(partial(_backward, do, q, k, v, o, lse, cu, None, tables, w, False,
                                                 scale, base, False), warmup=10, rep=40)
                    print(f"  D={d} w={w} backward: atomic {best[0]:.3f} ms, two-kernel {split_ms:.3f} ms",
                          flush=True)
                    rows.append(dict(kind="split", d=d, w=w, n=n, ms=split_ms))
                    if split_ms < best[0]:
                        base = replace(base, bwd=None)
            if args.warm_only:
                continue
            print(f"BEST D={d} w={w}: {base}", flush=True)
            best_all[str(d)] = {k: None if getattr(base, k) is None else getattr(base, k).__dict__
                                for k in ("fwd", "dkdv", "dq", "bwd")}
            best_all[str(d)]["affine"] = base.affine
            if args.tuned_out:
                with open(args.tuned_out, "w") as fh:
                    json.dump(best_all, fh, indent=1)
    return rows


def profile(args) -> list[dict]:
    """torch.profiler table of a few `local` layer steps (forward + backward) at the first N, D, w."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    from trackformers.attention.api import attend

    n, d, w = args.n[0], args.d[0], args.w[0]
    layout = make_layout([n], w, "cuda")
    q, k, v, do = (torch.randn(n, args.h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    qg, kg, vg = (t.requires_grad_() for t in (q, k, v))
    for _ in range(3):
        attend(qg, kg, vg, layout, backend="local").backward(do)
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for _ in range(5):
            attend(qg, kg, vg, layout, backend="local").backward(do)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
    print(p.key_averages().table(sort_by="self_device_time_total", row_limit=10), flush=True)
    return []


def overhead(args) -> list[dict]:
    """Host time per call (µs) of the local launch paths on a tiny input, where the GPU work is negligible."""
    from trackformers.attention.api import attend
    from trackformers.attention.local.config import configs_for
    from trackformers.attention.local.function import _backward, _forward, _Tables, block_table

    n, d = 256, 64
    layout = make_layout([n], 16, "cuda")
    cu = layout.cu_seqlens
    q, k, v, do = (torch.randn(n, 2, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    cfg = configs_for(d, 2)
    tables = _Tables(cu, n)
    o, lse = _forward(q, k, v, cu, None, tables, 16, False, 0.125, cfg, True)
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))

    def layer():
        attend(qg, kg, vg, layout, backend="local").backward(do)

    from trackformers.attention.local.function import local_attention

    def fn_nograd():
        with torch.no_grad():
            local_attention(q, k, v, cu, n, 16)

    def fb_one_thread():
        with torch.autograd.set_multithreading_enabled(False):
            local_attention(qg, kg, vg, cu, n, 16).backward(do)

    def fwd_reqgrad():
        with torch.no_grad():
            _forward(qg, kg, vg, cu, None, tables, 16, False, 0.125, cfg, True)

    cases = {"torch add": lambda: q.add(1), "block_table": lambda: block_table(cu, n, 64),
             "fn no_grad": fn_nograd, "fn grad fwd": lambda: local_attention(qg, kg, vg, cu, n, 16),
             "fn fwd+bwd": lambda: local_attention(qg, kg, vg, cu, n, 16).backward(do),
             "_fwd reqgrad": fwd_reqgrad, "fn f+b 1 thread": fb_one_thread,
             "_forward": lambda: _forward(q, k, v, cu, None, tables, 16, False, 0.125, cfg, False),
             "_backward": lambda: _backward(do, q, k, v, o, lse, cu, None, tables, 16, False, 0.125, cfg),
             "layer": layer}
    rows = []
    for name, fn in cases.items():
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            fn()
        torch.cuda.synchronize()
        us = (time.perf_counter() - t0) / 200 * 1e6
        print(f"host+device per call {name:<12} {us:8.1f} us", flush=True)
        rows.append(dict(case=name, us=us))
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(100):
        fb_one_thread()
    torch.cuda.synchronize()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[16384, 65536, 131072])
    p.add_argument("--d", type=int, nargs="+", default=[32, 64])
    p.add_argument("--w", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--h", type=int, default=8)
    p.add_argument("--backends", default="local,flex,flex-cbm,dense,sdpa")
    p.add_argument("--dense-max", type=int, default=16384)
    p.add_argument("--cbm-n", type=int, nargs="+", default=[131072], help="N at which to run flex-cbm")
    p.add_argument("--sweep", action="store_true", help="tile-config sweep of the local kernels instead")
    p.add_argument("--overhead", action="store_true", help="host time per launch of `local` instead")
    p.add_argument("--profile", action="store_true", help="profiler table of `local` layer steps instead")
    p.add_argument("--json", help="write all rows and the environment here (rewritten after every row)")
    p.add_argument("--tuned", help="tile configs of `local` from a sweep's --tuned-out JSON")
    p.add_argument("--tuned-out", help="with --sweep: write the best configs per head dim here")
    p.add_argument("--kinds", default="fwd,dkdv,dq,affine", help="with --sweep: what to sweep, in order")
    p.add_argument("--warm-only", action="store_true", help="with --sweep: compile the candidates, time nothing")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton

    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               python=platform.python_version(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(env, flush=True)
    if args.tuned:
        from trackformers.attention.local.config import set_tuned

        with open(args.tuned) as fh:
            set_tuned(json.load(fh))
    if args.overhead:
        rows = overhead(args)
    elif args.profile:
        rows = profile(args)
    elif args.sweep:
        rows = sweep(args)
    else:
        print(HEADER, flush=True)
        rows = run_grid(args, env)
    dump(args, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
