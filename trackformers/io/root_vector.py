"""TTrees with ``std::vector<T>`` branches, written through uproot's TTree writer.

uproot 5.7 writes a jagged array as a counted C array (``float vx[nparticles]`` with a counter branch); ACTS's
C++ readers bind ``std::vector<T>*`` with ``SetBranchAddress``, which needs what ROOT writes for
``tree->Branch("vx", &std_vector)``: a ``TBranchElement`` (class ``vector<float>``) with one ``TLeafElement``.
:class:`VectorTree` is uproot's own writer (``uproot.writing._cascadetree.Tree``: file space, basket
bookkeeping, in-place metadata updates) with a different metadata serializer, so scalar branches are written
exactly as uproot writes them and vector branches exactly as ROOT 6.40 does (compared byte by byte with a
ROOT-written file in ``tests/io/root_check.py``).

Byte layout of one vector branch (big-endian; ``bc`` = 4-byte byte count ``| 0x40000000``, ``v`` = 2-byte version)::

    TBranchElement v10 = bc v(10) | TBranch v13 (as uproot writes it, fSplitLevel 99, fEntryOffsetLen > 0)
                         | fClassName "vector<float>" | fParentName "" | fClonesName "" | fCheckSum u4
                         | fClassVersion i2 (6) | fID i4 (-1) | fType i4 (0) | fStreamerType i4 (-1)
                         | fMaximum i4 (0) | fBranchCount null (4) | fBranchCount2 null (4)
    its leaf:  TLeafElement v1 = bc v(1) | TLeaf v2 (fLen 1, fLenType 0, fLeafCount null) | fID i4 (-1) | fType i4 (-1)

One basket entry (one event) is a streamed vector, and the basket ends with the usual entry-offset table::

    bc (6 + n * itemsize) | v (10, what ROOT writes) | n (i4) | n elements (big-endian)

The ``TStreamerInfo`` records of ``TBranchElement`` v10 and ``TLeafElement`` v1 are added to the file (ROOT
writes none for vectors of numbers); they are the bytes ROOT 6.40 writes, as :data:`_STREAMERS`.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
import zlib

import numpy as np

#: element dtype -> (ROOT class name, TClass checksum, as ROOT 6.40 reports them on x86-64 Linux)
VECTOR_CLASSES: dict[np.dtype, tuple[str, int]] = {np.dtype(k): v for k, v in {
    "bool": ("vector<bool>", 29929751), "int8": ("vector<char>", 29929535),
    "uint8": ("vector<unsigned char>", 728903898), "int16": ("vector<short>", 89793095),
    "uint16": ("vector<unsigned short>", 2186716184), "int32": ("vector<int>", 9976712),
    "uint32": ("vector<unsigned int>", 3106279697), "int64": ("vector<long>", 29930537),
    "uint64": ("vector<unsigned long>", 728904900), "float32": ("vector<float>", 89790107),
    "float64": ("vector<double>", 269370212)}.items()}
MASK = 0x40000000  # kByteCountMask
ENTRY_VERSION = 10  # version field of each streamed vector in a basket (ROOT 6.40)
_ENTRY_HEADER = np.dtype([("bc", ">u4"), ("version", ">u2"), ("n", ">i4")])  # 10 bytes, packed
# zlib(TStreamerInfo TBranchElement v10 + TLeafElement v1), serialized by uproot from a ROOT 6.40 file
_STREAMERS = (
    "eNrNlc9PE0EUx6eU3xSVhERjCM5FARNjQkxMuAitHCCVErp6UzJdZujC7kwzuzU0UfwV468jB+PFaAw37/4d/hGGP8KDvnm7S3ZL"
    "t1LjwdfszHbmzXw/++bHWySDP3+BWdVAc+ZxvSKFIotk8AcZXSRkiuTgZwzKM1ZRM2nXl13ucRmQo8oDG3rAb/AbzlGp7SxpzVpm"
    "/CHJRyMjK5gCpmym5IrM56Z1k+ShvEv6obxyLAo2FIlOhBXd4r6tnUagNOlg596//Zr8319cqi5DPQ7TvkoJQ+3IbSOtSB+UDkrf"
    "TEqPipLLfH8N3C/hG5XwSpWgmguuubT5FlW1HW4H4L0EzwXSxYasUBNkHmegcETZRJRrSZQxsc5AMDAsk2sRRQObqG3QegT4kgHw"
    "DgFeIkA1DVByleQYjIUYAJWpI6kVduLiU6XpbNUqz1FbuS7ExlGSzjqCMtma6xHzaftecWyr1eDtoZpNko6IUp3bu9WmNxG/HLOa"
    "nWB2RTf5QlP6zraEpXVkAJO/yGaoI0MNGeaTDOPhzrnHtQ9ffz6qqWx6Na6TNH3Rk2kDfl1pg7GfjWEjxn3EuJ7EyIuV29M8PK3U"
    "59phbswAiybwqIPXnyKSDwPhZRNsIEEZCaaTBAPCuIxFZzcw7qcX/JtPHhexv3GdrIXCftTWK8GHbIJ9JNhDgtUkwbC4w/Ycr+nd"
    "iGoK0dcO96mAk8FOnJWHDNal5nLK8Oo8PdzHFFwF76F1BX1cG8AnCNhCwFtJwIIIl6OkmjK43AhH0EDRhnY8pls0DJptuqP38OYm"
    "w92ozqazw1UY8Lk74XMkfISExfQiJgjnZxKIPreV3Pp3kDAid9Qp/+W+Y/67mMx/BavMmYiz36fK6wPTDr6H7dkvd9Ce/fJR9nvT"
    "Mfv5mP3CFLSQOj8oOWOKhePUZ64SuEMYjVMiC1i8s0+YN/1so1NG7Psv7pTdbIJ1JFhFgqmTd8qICzHp6TyT3yb3ALo=")


def serialize_vectors(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Basket payload of ``len(counts)`` entries: entry ``i`` holds the next ``counts[i]`` of ``values``.

    Returns ``(payload, offsets)``: uint8 bytes ``(sum(10 + counts * itemsize),)`` and int64 entry start
    offsets ``(len(counts) + 1,)`` into it. ``values`` must already have the big-endian element dtype.
    """
    counts = np.asarray(counts, dtype=np.int64)
    size = values.dtype.itemsize
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(_ENTRY_HEADER.itemsize + counts * size, out=offsets[1:])
    head = np.empty(len(counts), dtype=_ENTRY_HEADER)
    head["bc"] = (6 + counts * size) | MASK  # the byte count covers version + n + elements
    head["version"] = ENTRY_VERSION
    head["n"] = counts
    out = np.empty(offsets[-1], dtype=np.uint8)
    is_head = np.zeros(offsets[-1], dtype=bool)
    at = (offsets[:-1, None] + np.arange(_ENTRY_HEADER.itemsize)).ravel()
    is_head[at] = True
    out[at] = head.view(np.uint8)
    out[~is_head] = np.ascontiguousarray(values).view(np.uint8)  # the elements, in entry order
    return out, offsets


def _versioned(version: int, body: bytes) -> bytes:
    return struct.pack(">IH", (len(body) + 2) | MASK, version) + body


def _tnamed(name: str, title: str, bits: int) -> bytes:
    import uproot

    tobject = struct.pack(">HII", 1, 0, bits)
    return _versioned(1, tobject + uproot.serialization.string(name) + uproot.serialization.string(title))


@functools.cache
def _tree_class():  # noqa: ANN202 - uproot is imported lazily, so the class is built on first use
    import uproot
    from uproot.models import TBranch, TLeaf, TTree
    from uproot.writing import _cascadetree

    empty_objarray = b"@\x00\x00\x15\x00\x03\x00\x01\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00" + bytes(4)
    leaf_structs = {"O": TLeaf._tleafO1_format1, "B": TLeaf._tleafb1_format1, "S": TLeaf._tleafs1_format1,
                    "I": TLeaf._tleafi1_format1, "L": TLeaf._tleafl1_format0, "F": TLeaf._tleaff1_format1,
                    "D": TLeaf._tleafd1_format1}

    class VectorTree(_cascadetree.Tree):
        """uproot's cascading TTree whose ``vectors`` branches are ``std::vector`` (see the module doc)."""

        def __init__(self, directory, name: str, title: str, scalars: dict[str, str],  # noqa: ANN001
                     vectors: dict[str, str]) -> None:
            types = {**scalars, **vectors}
            super().__init__(directory, name, title, types, directory.freesegments, lambda c: "n" + c,
                             lambda outer, inner: inner, 10, 10.0)
            for datum in self._branch_data:
                if datum["fName"] in vectors:
                    element = datum["dtype"].newbyteorder("=")
                    datum["vector"] = VECTOR_CLASSES[element]
                    datum["fEntryOffsetLen"], datum["fSplitLevel"] = 1000, 99

        def _leaf(self, buf: bytearray, datum: dict) -> None:
            """Append the branch's one leaf as a new-class-tagged object; remember its reference number."""
            name = datum["fName"]
            datum["tleaf_reference_number"] = self._key_bytes + len(buf) + 2  # kMapOffset
            dtype = datum["dtype"]
            if "vector" in datum:
                cls = "TLeafElement"
                tleaf = _tnamed(name, name, 0) + TLeaf._tleaf2_format0.pack(1, 0, 0, False, False) + bytes(4)
                body = _versioned(1, _versioned(2, tleaf) + struct.pack(">ii", -1, -1))
            else:
                letter = _cascadetree._dtype_to_char[dtype]
                cls = "TLeaf" + letter.upper()
                tleaf = (_tnamed(name, name, 0x03000000) + TLeaf._tleaf2_format0.pack(
                    1, dtype.itemsize, 0, False, letter != letter.upper()) + bytes(4))
                datum["tleaf_special_struct"] = leaf_structs[letter.upper()]
                body = _versioned(1, _versioned(2, tleaf) + datum["tleaf_special_struct"].pack(0, 0))
            tagged = struct.pack(">I", 0xFFFFFFFF) + cls.encode() + b"\x00" + body  # kNewClassTag + name
            buf += struct.pack(">I", len(tagged) | MASK) + tagged

        def _branch(self, buf: bytearray, datum: dict) -> None:
            vector = "vector" in datum
            start = len(buf)
            buf += bytes(8) + (b"TBranchElement\x00" if vector else b"TBranch\x00")
            if vector:
                outer = len(buf)
                buf += bytes(6)
            tbranch = len(buf)
            title = datum["fName"] if vector else datum["fTitle"]
            buf += bytes(6) + _tnamed(datum["fName"], title, 0x00500000 if vector else 0x03400000)  # as ROOT / uproot
            buf += b"@\x00\x00\x06\x00\x02\x00\x00\x03\xe9"  # TAttFill
            datum["metadata_start"] = len(buf)  # write_updates rewrites from here
            buf += TBranch._tbranch13_format1.pack(0, datum["fBasketSize"], datum["fEntryOffsetLen"],
                                                   self._num_baskets, self._num_entries)
            buf += b"@\x00\x00\x07\x00\x00\x1a\xa1/\x10\x00"  # fIOFeatures
            buf += TBranch._tbranch13_format2.pack(datum["fOffset"], self._basket_capacity, datum["fSplitLevel"],
                                                   self._num_entries, datum["fFirstEntry"], datum["fTotBytes"],
                                                   datum["fZipBytes"])
            buf += empty_objarray  # fBranches
            leaves = len(buf)
            buf += bytes(6) + b"\x00\x01\x00\x00\x00\x00\x03\x00\x00\x00\x00" + struct.pack(">ii", 1, 0)
            self._leaf(buf, datum)
            buf[leaves:leaves + 6] = struct.pack(">IH", (len(buf) - leaves - 4) | MASK, 3)
            buf += empty_objarray  # fBaskets
            datum["basket_metadata_start"] = len(buf)
            for arr in (datum["fBasketBytes"], datum["fBasketEntry"], datum["fBasketSeek"]):
                buf += b"\x01" + arr.tobytes()
            buf += b"\x00"  # fFileName
            buf[tbranch:tbranch + 6] = struct.pack(">IH", (len(buf) - tbranch - 4) | MASK, 13)
            if vector:
                cls, checksum = datum["vector"]
                buf += uproot.serialization.string(cls) + b"\x00\x00"  # fClassName, fParentName, fClonesName
                buf += struct.pack(">Ihiiii", checksum, 6, -1, 0, -1, 0) + bytes(8)  # ... fBranchCount(2) null
                buf[outer:outer + 6] = struct.pack(">IH", (len(buf) - outer - 4) | MASK, 10)
            buf[start:start + 8] = struct.pack(">II", (len(buf) - start - 4) | MASK, 0xFFFFFFFF)

        def _build_out(self) -> list[bytes]:
            # leaf references count from the start of the TKey (header, class, name, title) holding the tree
            self._key_bytes = (uproot.reading._key_format_big.size + 6 + len(uproot.serialization.string(
                self._name)) + len(uproot.serialization.string(self._title)))
            buf = bytearray(6)  # TTree v20 header, patched at the end
            buf += _tnamed(self._name, self._title, 0x03000008)  # fBits as uproot writes them
            buf += (b"@\x00\x00\x08\x00\x02\x02Z\x00\x01\x00\x01@\x00\x00\x06\x00\x02\x00\x00\x03\xe9"
                    b"@\x00\x00\n\x00\x02\x00\x01\x00\x01?\x80\x00\x00")  # TAttLine, TAttFill, TAttMarker
            self._metadata_start = len(buf)
            m = self._metadata
            buf += TTree._ttree20_format1.pack(
                self._num_entries, m["fTotBytes"], m["fZipBytes"], m["fSavedBytes"], m["fFlushedBytes"],
                m["fWeight"], m["fTimerInterval"], m["fScanField"], m["fUpdate"], m["fDefaultEntryOffsetLen"],
                m["fNClusterRange"], m["fMaxEntries"], m["fMaxEntryLoop"], m["fMaxVirtualSize"],
                m["fAutoSave"], m["fAutoFlush"], m["fEstimate"])
            buf += b"\x00\x00@\x00\x00\x07\x00\x00\x1a\xa1/\x10\x00"  # cluster arrays (empty), fIOFeatures
            branches = len(buf)
            buf += bytes(6) + b"\x00\x01\x00\x00\x00\x00\x03\x00@\x00\x00" + struct.pack(">ii", len(
                self._branch_data), 0)
            for datum in self._branch_data:
                self._branch(buf, datum)
            buf[branches:branches + 6] = struct.pack(">IH", (len(buf) - branches - 4) | MASK, 3)
            refs = np.array([d["tleaf_reference_number"] for d in self._branch_data], ">u4").tobytes()
            buf += struct.pack(">I13sI4s", (21 + len(refs)) | MASK, b"\x00\x03\x00\x01\x00\x00\x00\x00\x03"
                               b"\x00\x00\x00\x00", len(self._branch_data), bytes(4)) + refs  # fLeaves
            buf += bytes(28)  # null fAliases, empty fIndexValues and fIndex, null fTreeIndex ... fBranchRef
            buf[:6] = struct.pack(">IH", (len(buf) - 4) | MASK, 20)
            return [bytes(buf)]

        def extend_entries(self, file, sink, counts: np.ndarray, columns: dict[str, np.ndarray]) -> None:  # noqa: ANN001
            """One basket per branch holding ``len(counts)`` entries (see :meth:`VectorTreeWriter.extend`)."""
            if self._num_baskets >= self._basket_capacity - 1:  # grow the basket arrays, as uproot's extend does
                self._basket_capacity = max(self._basket_capacity + 1,
                                            math.ceil(self._basket_capacity * self._resize_factor))
                for datum in self._branch_data:
                    size = len(datum["fBasketEntry"])
                    for key, dtype in (("fBasketBytes", TBranch._tbranch13_dtype1),
                                       ("fBasketEntry", TBranch._tbranch13_dtype2),
                                       ("fBasketSeek", TBranch._tbranch13_dtype3)):
                        grown = np.zeros(self._basket_capacity, dtype)
                        grown[:len(datum[key])] = datum[key]
                        datum[key] = grown
                    datum["fBasketEntry"][size] = self._num_entries
                self._relocate(file, sink)
            n, i = len(counts), self._num_baskets
            for datum in self._branch_data:
                name = datum["fName"]
                values = np.asarray(columns[name]).astype(datum["dtype"], copy=False)
                if "vector" in datum:
                    payload, offsets = serialize_vectors(values, counts)
                    tot, zipped, where = self.write_jagged_basket(sink, name, datum["compression"], payload,
                                                                  offsets.astype(">i4"))
                    datum["fEntryOffsetLen"] = 4 * n
                else:
                    tot, zipped, where = self.write_np_basket(sink, name, datum["compression"], values)
                datum["fTotBytes"] += tot
                datum["fZipBytes"] += zipped
                self._metadata["fTotBytes"] += tot
                self._metadata["fZipBytes"] += zipped
                datum["fBasketBytes"][i], datum["fBasketSeek"][i] = zipped, where
                if i + 1 < self._basket_capacity:
                    datum["fBasketEntry"][i + 1] = datum["fBasketEntry"][i] + n
                datum["arrays_write_stop"] = i + 1
            self._num_entries += n
            self._num_baskets += 1
            self.write_updates(sink)

    return VectorTree


class VectorTreeWriter:
    """A new TTree in an uproot-written file: scalar branches as uproot writes them, then ``std::vector<T>``
    branches (element types: keys of :data:`VECTOR_CLASSES`), filled by :meth:`extend`."""

    def __init__(self, directory, name: str, scalars: dict[str, str], vectors: dict[str, str],  # noqa: ANN001
                 title: str = "") -> None:
        import uproot
        from uproot.writing._cascade import RawStreamerInfo

        bad = [f"{c} ({t})" for c, t in {**scalars, **vectors}.items() if np.dtype(t) not in VECTOR_CLASSES]
        if bad:  # scalar branches too: plain numbers only (no counters, strings or fixed-size arrays here)
            raise TypeError(f"no branch type for {', '.join(bad)}; expected one of "
                            f"{', '.join(str(d) for d in VECTOR_CLASSES)}.")
        self._file = directory._file
        self._tree = _tree_class()(directory._cascading, name, title, scalars, vectors)
        self._tree.write_anew(self._file.sink)
        self._file._new_tree(uproot.writing.writable.WritableTree((*directory._path, name), self._file,
                                                                  self._tree))
        # the streamer records uproot's mktree adds for its trees, then ours
        models = (*(getattr(uproot.models.TLeaf, f"Model_TLeaf{c}_v1") for c in "BSILFDCO"),
                  uproot.models.TBranch.Model_TBranch_v13, uproot.models.TTree.Model_TTree_v20)
        seen, streamers = set(), []
        for raw in (r for m in models for r in m.class_rawstreamers):
            if (raw[-2], raw[-1]) not in seen:
                seen.add((raw[-2], raw[-1]))
                streamers.append(RawStreamerInfo(*raw))
        data = zlib.decompress(base64.b64decode(_STREAMERS))
        cut = (struct.unpack(">I", data[:4])[0] & ~MASK) + 4 + 1  # object + its empty TList option string
        streamers += [RawStreamerInfo(None, data[:cut], "TBranchElement", 10),
                      RawStreamerInfo(None, data[cut:], "TLeafElement", 1)]
        self._file._cascading.streamers.update_streamers(self._file.sink, streamers)

    @property
    def num_entries(self) -> int:
        return int(self._tree._num_entries)

    def extend(self, counts: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        """Append ``len(counts)`` entries. Scalar branches get arrays ``(len(counts),)``; vector branches get
        flat arrays ``(sum(counts),)``, entry ``i`` holding the next ``counts[i]`` values (all vector branches
        share ``counts``). Values are cast to the branch types."""
        counts = np.asarray(counts, dtype=np.int64)
        if not len(counts):
            return
        total = int(counts.sum())
        for datum in self._tree._branch_data:
            name = datum["fName"]
            want = total if "vector" in datum else len(counts)
            if name not in columns or len(columns[name]) != want:
                got = "no array" if name not in columns else f"{len(columns[name])} values"
                raise ValueError(f"branch '{name}' needs {want} values, got {got}.")
        self._tree.extend_entries(self._file, self._file.sink, counts, columns)
