"""Check our ROOT files with real ROOT, binding branches the way ACTS's C++ readers do (run by hand).

ROOT lives in its own virtual environment (it is not a dependency), so writing and checking are two steps::

    python tests/io/root_check.py write DIR                   # our writer -> DIR/*.root + DIR/expected.npz
    /tmp/rootvenv/bin/python tests/io/root_check.py check DIR  # ROOT reads them; exit status 1 on a mismatch
    /tmp/rootvenv/bin/python tests/io/root_check.py reference FILE  # ROOT writes tests/io/data/root_vectors.root

``check`` binds every particles branch as ``std::vector<T>*`` on a ``TChain`` (``SetBranchAddress``, then
``GetEntry``), compares every value with what uproot and our events say, runs the branch list of ACTS's
``RootParticleReader`` (2024 ``particle_id`` and newer ``particle_hash`` versions, ``.at(i)`` on every vector),
and reads every hits branch ACTS's ``RootSimHitReader`` binds with the C++ type it binds. ``write`` needs this
project's environment; ``check`` and ``reference`` need only ROOT and numpy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

#: element type of each vector branch of the reference tree, in C++ and numpy
ELEMENTS = {"bool": "bool", "int8": "char", "uint8": "unsigned char", "int16": "short",
            "uint16": "unsigned short", "int32": "int", "uint32": "unsigned int", "int64": "long",
            "uint64": "unsigned long", "float32": "float", "float64": "double"}
REFERENCE_COUNTS = (0, 1, 3, 0, 7, 2)  # elements per entry of the reference tree (empty entries included)
CPP = r"""
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include "TChain.h"
#include "TFile.h"
#include "TTree.h"
#include "TBranch.h"

template <typename T, typename Out>  // Out: what Python gets (int for the char types, which cppyy makes str)
std::vector<Out> tfReadVector(const char* file, const char* tree, const char* branch, std::vector<long long>& sizes,
                              std::string& cls, int& status) {
  TChain chain(tree);
  chain.Add(file);
  std::vector<T>* v = new std::vector<T>;  // as ACTS: an owned vector bound by address
  status = chain.SetBranchAddress(branch, &v);
  std::vector<Out> flat;
  for (Long64_t i = 0; i < chain.GetEntries(); ++i) {
    if (chain.GetEntry(i) <= 0) { status = -100; break; }
    sizes.push_back(v->size());
    flat.insert(flat.end(), v->begin(), v->end());
  }
  cls = chain.GetTree() ? chain.GetTree()->GetBranch(branch)->GetClassName() : "";
  chain.ResetBranchAddresses();
  delete v;
  return flat;
}

template <typename T>
std::vector<T> tfReadScalar(const char* file, const char* tree, const char* branch, int& status) {
  TChain chain(tree);
  chain.Add(file);
  T x{};
  status = chain.SetBranchAddress(branch, &x);
  std::vector<T> out;
  for (Long64_t i = 0; i < chain.GetEntries(); ++i) { chain.GetEntry(i); out.push_back(x); }
  return out;
}

// The bindings and loop of ACTS's RootParticleReader (both versions); returns the particles read, or -1.
long long tfActsParticleRead(const char* file, std::string& log) {
  TChain chain("particles");
  uint32_t eventId = 0;
  std::vector<std::uint64_t>* pid = new std::vector<std::uint64_t>;
  std::vector<std::uint64_t>* hash = new std::vector<std::uint64_t>;
  std::vector<std::int32_t>* type = new std::vector<std::int32_t>;
  std::vector<std::int32_t>* nhits = new std::vector<std::int32_t>;
  std::vector<std::vector<std::uint32_t>*> u32;
  std::vector<std::vector<float>*> f32;
  const char* u32names[] = {"process", "vertex_primary", "vertex_secondary", "particle", "generation",
                            "sub_particle", "outcome"};
  const char* f32names[] = {"vx", "vy", "vz", "vt", "p", "px", "py", "pz", "m", "q", "eta", "phi", "pt",
                            "e_loss", "total_x0", "total_l0"};
  u32.reserve(7);  // the addresses of these pointers are bound: no reallocation
  f32.reserve(16);
  int bad = 0;  // ACTS binds before adding the file (ROOT 6.40 warns that it cannot check the names yet)
  bad += chain.SetBranchAddress("event_id", &eventId) < 0;
  bad += chain.SetBranchAddress("particle_id", &pid) < 0;
  bad += chain.SetBranchAddress("particle_hash", &hash) < 0;
  bad += chain.SetBranchAddress("particle_type", &type) < 0;
  bad += chain.SetBranchAddress("number_of_hits", &nhits) < 0;
  for (auto n : u32names) {
    u32.push_back(new std::vector<std::uint32_t>);
    bad += chain.SetBranchAddress(n, &u32.back()) < 0;
  }
  for (auto n : f32names) {
    f32.push_back(new std::vector<float>);
    bad += chain.SetBranchAddress(n, &f32.back()) < 0;
  }
  chain.Add(file);
  long long n = chain.GetEntries(), total = 0;
  chain.SetEstimate(n + 1);
  chain.Draw("event_id", "", "goff");  // ACTS sorts entries by event_id this way
  try {
    for (Long64_t e = 0; e < n; ++e) {
      chain.GetEntry(e);
      if ((Long64_t)chain.GetV1()[e] != eventId) { log += "event_id from Draw differs; "; return -1; }
      for (std::size_t i = 0; i < type->size(); ++i) {
        (void)pid->at(i); (void)hash->at(i); (void)nhits->at(i);
        for (auto v : u32) (void)v->at(i);
        for (auto v : f32) (void)v->at(i);
        ++total;
      }
    }
  } catch (const std::out_of_range& err) { log += std::string("out_of_range: ") + err.what(); return -1; }
  if (bad) { log += std::to_string(bad) + " SetBranchAddress failures"; return -1; }
  return total;
}

void tfWriteReference(const char* path) {
  TFile f(path, "RECREATE");
  TTree t("vectors", "vectors");
  uint32_t event_id = 0;
  std::vector<bool> vbool; std::vector<char> vint8; std::vector<unsigned char> vuint8; std::vector<short> vint16;
  std::vector<unsigned short> vuint16; std::vector<int> vint32; std::vector<unsigned int> vuint32;
  std::vector<long> vint64; std::vector<unsigned long> vuint64; std::vector<float> vfloat32;
  std::vector<double> vfloat64;
  t.Branch("event_id", &event_id);
  t.Branch("bool", &vbool); t.Branch("int8", &vint8); t.Branch("uint8", &vuint8); t.Branch("int16", &vint16);
  t.Branch("uint16", &vuint16); t.Branch("int32", &vint32); t.Branch("uint32", &vuint32);
  t.Branch("int64", &vint64); t.Branch("uint64", &vuint64); t.Branch("float32", &vfloat32);
  t.Branch("float64", &vfloat64);
  const int counts[] = {COUNTS};
  for (int e = 0; e < (int)(sizeof(counts) / sizeof(int)); ++e) {
    event_id = 100 + e;
    vbool.clear(); vint8.clear(); vuint8.clear(); vint16.clear(); vuint16.clear(); vint32.clear();
    vuint32.clear(); vint64.clear(); vuint64.clear(); vfloat32.clear(); vfloat64.clear();
    for (int j = 0; j < counts[e]; ++j) {
      long x = 10 * e + j;
      vbool.push_back(x % 3 == 0); vint8.push_back(char(x - 20)); vuint8.push_back(200 + x);
      vint16.push_back(-1000 * x); vuint16.push_back(60000 + x); vint32.push_back(-70000 * x);
      vuint32.push_back(4000000000u + x); vint64.push_back(-(1L << 40) - x); vuint64.push_back((1UL << 63) + x);
      vfloat32.push_back(0.25f * x - 3.f); vfloat64.push_back(1e-300 * x - 2.5);
    }
    t.Fill();
  }
  t.Write();
}
"""


def _root():  # noqa: ANN202 - the ROOT module
    import ROOT

    ROOT.gROOT.SetBatch(True)
    if not hasattr(ROOT, "tfReadVector"):
        ROOT.gInterpreter.Declare(CPP.replace("COUNTS", ", ".join(map(str, REFERENCE_COUNTS))))
    return ROOT


def write(folder: Path) -> None:
    """Our writer: a folder pair and a single file, plus a vector tree of every element type; expected.npz."""
    import uproot

    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parents[1])]  # make_io_events, and the project when run as a script
    from make_io_events import random_event

    from trackformers.io import root
    from trackformers.io.root_vector import VECTOR_CLASSES, VectorTreeWriter

    folder.mkdir(parents=True, exist_ok=True)
    events = [random_event(e, n, n_particles=k) for e, n, k in [(3, 101, 7), (1000, 257, 50), (5, 0, 0),
                                                                 (7, 13, 3), (11, 1, 1)]]
    root.write(events, folder / "folder")
    root.write(events, folder / "events.root")
    expected: dict[str, np.ndarray] = {"event_ids": np.array([e.event_id for e in events])}
    for path, tree in [(folder / "folder/particles.root", "particles"), (folder / "folder/hits.root", "hits")]:
        t = uproot.open(path)[tree]
        for name, branch in t.items():
            arr = branch.array(library="ak")
            key = f"{tree}/{name}"
            if arr.ndim > 1:
                import awkward as ak

                expected[key + "/sizes"] = ak.to_numpy(ak.num(arr))
                arr = ak.flatten(arr)
                expected[key + "/class"] = np.array(branch.member("fClassName"))
            expected[key] = np.asarray(arr)
    # the event tables themselves, for the columns that are stored as they are
    parts = [e.particles for e in events]
    expected["truth/particle_id"] = np.concatenate([p["particle_id"].to_numpy() for p in parts]).view(np.uint64)
    for c in ("particle_type", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"):
        expected[f"truth/{c}"] = np.concatenate([p[c].to_numpy() for p in parts])
    expected["truth/sizes"] = np.array([len(p) for p in parts])
    # every element type; 18 baskets (5 of the 23 extends are empty no-ops), so the basket arrays outgrow their
    # initial 10 slots and the tree metadata is rewritten elsewhere in the file
    rng = np.random.default_rng(3)
    with uproot.recreate(folder / "vectors.root") as f:
        w = VectorTreeWriter(f, "vectors", {"event_id": "uint32"}, {str(d): str(d) for d in VECTOR_CLASSES})
        all_counts = []
        for k in range(23):
            counts = rng.integers(0, 6, size=k % 5)
            all_counts.append(counts)
            cols = {str(d): (rng.integers(0, 2, counts.sum()) if d.kind == "b" else
                             rng.normal(0, 1e3, counts.sum()) if d.kind == "f" else
                             rng.integers(np.iinfo(d).min, np.iinfo(d).max, counts.sum(), dtype=d)).astype(d)
                    for d in VECTOR_CLASSES}
            cols["event_id"] = np.arange(len(counts)) + 10 * k
            w.extend(counts, cols)
            for d in VECTOR_CLASSES:
                expected.setdefault(f"vectors/{d}", []).append(cols[str(d)])
    for d in VECTOR_CLASSES:
        expected[f"vectors/{d}"] = np.concatenate(expected[f"vectors/{d}"])
    expected["vectors/sizes"] = np.concatenate(all_counts)
    np.savez(folder / "expected.npz", **expected)
    print(f"wrote {folder}: {', '.join(sorted(p.name for p in folder.rglob('*.root')))}")


def _vector(ROOT, path: Path, tree: str, branch: str, cpp: str,  # noqa: ANN001, N803
            dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, str, int]:
    import ctypes

    sizes, cls, status = ROOT.std.vector["long long"](), ROOT.std.string(), ctypes.c_int(0)
    out = "int" if "char" in cpp else cpp
    flat = ROOT.tfReadVector[cpp, out](str(path), tree, branch, sizes, cls, status)
    return np.array(list(flat), dtype=dtype), np.array(list(sizes)), str(cls), status.value


def check(folder: Path) -> int:
    """Read our files with ROOT; print one line per check; return the number of failures."""
    import ctypes

    ROOT = _root()  # noqa: N806
    exp = dict(np.load(folder / "expected.npz"))
    failures = 0

    def report(ok: bool, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    for path in (folder / "folder/particles.root", folder / "events.root"):
        names = [k.split("/")[1] for k in exp if k.startswith("particles/") and k.count("/") == 1]
        for name in names:
            if name == "event_id":
                status = ctypes.c_int(0)
                got = np.array(list(ROOT.tfReadScalar["unsigned int"](str(path), "particles", name, status)))
                report(status.value >= 0 and np.array_equal(got, exp["particles/event_id"]),
                       f"{path.name} particles/event_id (uint32 scalar) == uproot")
                continue
            cls = str(exp[f"particles/{name}/class"])
            flat, sizes, got_cls, status = _vector(ROOT, path, "particles", name, cls[len("vector<"):-1],
                                                   exp[f"particles/{name}"].dtype)
            same = (status >= 0 and got_cls == cls and np.array_equal(sizes, exp[f"particles/{name}/sizes"])
                    and np.array_equal(flat, exp[f"particles/{name}"]))
            truth = {"particle_id": "particle_id", "number_of_hits": "nhits"}.get(name, name)
            if f"truth/{truth}" in exp:  # also equal to the events we wrote (float32 as written)
                want = exp[f"truth/{truth}"].astype(flat.dtype)
                same &= np.array_equal(sizes, exp["truth/sizes"]) and np.array_equal(flat, want)
            report(same, f"{path.name} particles/{name} ({cls}): SetBranchAddress {status}, {len(sizes)} entries, "
                         f"{len(flat)} values")
        log = ROOT.std.string()
        n = ROOT.tfActsParticleRead(str(path), log)
        report(n == exp["truth/sizes"].sum(), f"{path.name} ACTS RootParticleReader loop: {n} particles {log}")
    hits = folder / "folder/hits.root"
    # every key ACTS's RootSimHitReader binds, with its C++ types (geometry_id as unsigned long long, as it
    # does), then our extra branches
    scalars = {**dict.fromkeys(("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "te", "deltapx", "deltapy",
                                "deltapz", "deltae"), "float"), "geometry_id": "unsigned long long",
               **dict.fromkeys(("event_id", "volume_id", "boundary_id", "layer_id", "approach_id",
                                "sensitive_id"), "unsigned int"), "index": "int",
               **dict.fromkeys((f"barcode_{n}" for n in ("vertex_primary", "vertex_secondary", "particle",
                                                         "generation", "sub_particle")), "unsigned int"),
               "hit_id": "Long64_t", "x": "float", "y": "float", "z": "float", "weight": "float"}
    for path, (name, cpp) in ((p, kv) for p in (hits, folder / "events.root") for kv in scalars.items()):
        status = ctypes.c_int(0)
        got = np.array(list(ROOT.tfReadScalar[cpp](str(path), "hits", name, status)))
        report(status.value >= 0 and np.array_equal(got, exp[f"hits/{name}"]),
               f"{path.name} hits/{name} ({cpp}): SetBranchAddress {status.value}, {len(got)} entries == uproot")
    for d, cpp in ELEMENTS.items():
        want = exp[f"vectors/{d}"]
        flat, sizes, cls, status = _vector(ROOT, folder / "vectors.root", "vectors", d, cpp, want.dtype)
        report(status >= 0 and cls == f"vector<{cpp}>" and np.array_equal(sizes, exp["vectors/sizes"])
               and np.array_equal(flat, want),
               f"vectors.root {d} ({cls}): {len(sizes)} entries in 18 baskets, {len(flat)} values")
    print(f"ROOT {ROOT.gROOT.GetVersion()}: {failures} failure(s)")
    return failures


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        write(target)
    elif mode == "check":
        sys.exit(1 if check(target) else 0)
    elif mode == "reference":
        _root().tfWriteReference(str(target))
        print(f"ROOT wrote {target}")
    else:
        sys.exit(f"unknown mode {mode}; expected write, check or reference")
