"""Where is the process's peak GPU memory (allocated and reserved) set in benchmarks/reconstruct.py?

Runs the benchmark's ``main()`` with the same arguments under torch's CUDA memory history, then walks the
allocator trace: every growth of reserved memory (segment alloc / map, MB = 2^20 bytes) with the innermost
trackformers / benchmarks frames that caused it, the peak of allocated memory, and the blocks alive at that
moment grouped by the frames that allocated them (MB, number of blocks). CUDA only.

    PYTHONPATH=. python benchmarks/memory_trace.py --device cuda --bf16 --cuda-graphs --compile --events 3 \
        --repeats 1 --clusterers gpu
"""
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
MAX_ENTRIES = 2_000_000
torch.cuda.memory._record_memory_history(max_entries=MAX_ENTRIES, stacks="python")
import benchmarks.reconstruct as bench  # noqa: E402

sys.argv = ["reconstruct.py", *sys.argv[1:]]
rc = bench.main()
snap = torch.cuda.memory._snapshot()
# the benchmark ran on --device (e.g. cuda:1): read that device's trace, not device 0's
index = torch.device(bench.parse_args().device).index
trace = snap["device_traces"][torch.cuda.current_device() if index is None else index]
if len(trace) >= MAX_ENTRIES:  # a ring buffer: the oldest events were dropped, so the totals below are off
    print(f"warning: the trace hit max_entries={MAX_ENTRIES}; its start is lost, run fewer events/repeats")
MB = 2**20


def where(frames, k=7):
    keep = [f for f in frames if ("trackformers" in f["filename"] or "benchmarks" in f["filename"])]
    keep = keep[:k] or frames[:k]
    return " <- ".join(f"{f['filename'].split('/')[-1]}:{f['line']}:{f['name']}" for f in keep)


alloc = res = 0
peak_a = peak_r = (0, -1)
live = {}
for i, e in enumerate(trace):
    a = e["action"]
    if a == "alloc":
        alloc += e["size"]
        if alloc > peak_a[0]:
            peak_a = (alloc, i)
    elif a == "free_completed":
        alloc -= e["size"]
    elif a in ("segment_alloc", "segment_map"):
        res += e["size"]
        if res > peak_r[0]:
            peak_r = (res, i)
        print(f"[{i}] +{e['size']/MB:.1f} MB reserved -> {res/MB:.1f}  {where(e.get('frames', []))}")
    elif a in ("segment_free", "segment_unmap"):
        res -= e["size"]
        print(f"[{i}] -{e['size']/MB:.1f} MB reserved -> {res/MB:.1f}")
print(f"trace entries {len(trace)}; peak allocated {peak_a[0]/MB:.1f} MB at {peak_a[1]}; "
      f"peak reserved (trace) {peak_r[0]/MB:.1f} MB at {peak_r[1]}")
for i, e in enumerate(trace[: peak_a[1] + 1]):
    if e["action"] == "alloc":
        live[e["addr"]] = (e["size"], e.get("frames", []), i, e.get("stream"))
    elif e["action"] == "free_completed":
        live.pop(e["addr"], None)
groups = defaultdict(lambda: [0, 0])
for size, frames, _index, stream in live.values():
    g = groups[(where(frames, 4), stream)]
    g[0] += size
    g[1] += 1
print("live at the allocated peak, grouped by frames (MB, blocks):")
for (w, stream), (size, n) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:25]:
    print(f"  {size/MB:8.1f} MB {n:4d}  stream {stream}  {w}")
sys.exit(rc)
