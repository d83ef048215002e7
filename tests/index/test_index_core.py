"""The core HNSW and IVF share (proximadb/index/_base.pyx, its file framing proximadb/index/index_file.py): file
framing, version-1 files, the registry."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import CorruptionError, ValidationError
from proximadb.index import index_file, registry
from proximadb.index._base import VectorIndex
from proximadb.index.hnsw import HNSWIndex
from proximadb.index.ivf import IVFIndex
from proximadb.storage.wal_io import crc32c

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"
FIXTURE_CLASSES = {"l2.hnsw": HNSWIndex, "cosine.ivf": IVFIndex}


def _fixture_rows() -> np.ndarray:
    """The rows make_fixture.py indexed, by id - 1000 // 3 (its generator, replayed)."""
    return np.random.default_rng(2024).standard_normal((300, 8)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(FIXTURE_CLASSES))
def test_version_1_files_load_and_answer_alike(name: str, tmp_path: Path) -> None:
    """IVF's version 1 is its current format: saved back byte for byte. HNSW's version-1 file holds the
    vectors; it loads (the vectors dropped), answers alike once given them, and saves as version 2."""
    expected = json.loads((FIXTURE / "expected.json").read_text())
    index = FIXTURE_CLASSES[name].load(FIXTURE / name)
    if isinstance(index, HNSWIndex):
        index.attach_vectors(_fixture_rows()[(index.ids - 1000) // 3])
    queries = np.array(expected["queries"], dtype=np.float32)
    found, dist = index.search_batch(queries, 5, threads=1)
    assert len(index) == expected[name]["len"]
    np.testing.assert_array_equal(found, np.array(expected[name]["ids"]))
    # float32 sums in another order (the machine's SIMD width) differ in the last bits: ~1e-7 relative
    np.testing.assert_allclose(dist, np.array(expected[name]["distances"], dtype=np.float32), rtol=1e-5, atol=1e-6)
    index.save(tmp_path / name)
    if isinstance(index, IVFIndex):
        assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes()
        return
    old, new = (FIXTURE / name).read_bytes(), (tmp_path / name).read_bytes()
    assert struct.unpack_from("<I", old, 8)[0] == 1 and struct.unpack_from("<I", new, 8)[0] == 2
    assert len(new) == len(old) - 300 * 8 * 4  # l2: the vectors block gone, nothing added
    # the same bytes but for the version, the vectors and the CRCs (hnsw.pyx's two layouts)
    body_old, body_new = old[96:-8], new[96:-8]
    assert body_new == body_old[:300 * 8] + body_old[300 * 8 + 300 * 8 * 4:]
    assert old[12:88] == new[12:88] and new[-4:] == old[-4:]
    again = HNSWIndex.load(tmp_path / name)
    again.attach_vectors(_fixture_rows()[(again.ids - 1000) // 3])
    np.testing.assert_array_equal(again.search_batch(queries, 5, threads=1)[1], dist)


def _filled(kind: registry.IndexKind, rows: int = 600, dim: int = 12) -> tuple[VectorIndex, np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((rows, dim)).astype(np.float32)
    index = kind.create(dim, "l2", kind.params({}, rows))
    index.add(np.arange(rows) + 10, base)
    index.mark_deleted(12)
    return index, base


@pytest.mark.parametrize("name", sorted(registry.KINDS))
def test_every_registered_kind_round_trips_through_the_base_framing(name: str, tmp_path: Path) -> None:
    kind = registry.kind(name)
    index, base = _filled(kind)
    assert isinstance(index, kind.cls) and registry.kind_of(index) is kind
    path = tmp_path / kind.file_name
    index.save(path)
    loaded = kind.cls.load(path)
    kind.attach(loaded, base)  # what the file does not hold (HNSW: the vectors)
    assert type(loaded) is kind.cls and kind.built_with(loaded, kind.params({}, len(base)))
    assert (len(loaded), loaded.n_deleted, 12 in loaded, 13 in loaded) == (len(base) - 1, 1, False, True)
    options = kind.search_options(ef=None, nprobe=None)
    np.testing.assert_array_equal(loaded.search_batch(base[:20], 5, **options)[0],
                                  index.search_batch(base[:20], 5, **options)[0])
    raw = path.read_bytes()
    assert raw[:8] == kind.cls.FILE_FORMAT.magic and raw[-4:] == kind.cls.FILE_FORMAT.end_magic


# One damage per check of the framing, and the message every kind gives for it.
DAMAGE = {
    "body byte": (lambda b: b[:-20] + bytes([b[-20] ^ 0x08]) + b[-19:], "body checksum mismatch"),
    "header byte": (lambda b: b[:17] + bytes([b[17] ^ 0x01]) + b[18:], "header checksum mismatch"),
    "cut short": (lambda b: b[:-3], "(truncated?)"),
    "end marker": (lambda b: b[:-1] + b"?", "missing end marker"),
    "version": (lambda b: b[:8] + b"\x07" + b[9:], "unsupported format version 7"),
    "empty": (lambda b: b"", "truncated header (0 of"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_is_refused_with_the_same_error_by_every_kind(damage: str, tmp_path: Path) -> None:
    change, message = DAMAGE[damage]
    for kind in registry.KINDS.values():
        index, _ = _filled(kind)
        good = tmp_path / kind.file_name
        index.save(good)
        bad = tmp_path / f"bad-{kind.file_name}"
        bad.write_bytes(change(good.read_bytes()))
        label = kind.cls.FILE_FORMAT.label
        with pytest.raises(CorruptionError) as err:
            kind.cls.load(bad)
        assert str(err.value).startswith(f"{label} index file {str(bad)!r}: ") and message in str(err.value)


def test_a_kind_refuses_another_kinds_file(tmp_path: Path) -> None:
    hnsw, ivf = registry.kind("hnsw"), registry.kind("ivf")
    _filled(hnsw)[0].save(tmp_path / "x")
    with pytest.raises(CorruptionError, match=r"bad magic .* \(not an IVF index file\)"):
        ivf.cls.load(tmp_path / "x")


def test_registry_lookups() -> None:
    assert registry.kind("hnsw").cls is HNSWIndex and registry.kind("ivf").cls is IVFIndex
    with pytest.raises(ValidationError, match=r"unknown index kind 'flat' \(known: hnsw, ivf\)"):
        registry.kind("flat")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.kind("hnsw"))
    # IVF's defaults depend on the segment's size; explicit values are kept (nlist capped by rows).
    assert registry.kind("ivf").params({}, 10_000) == {"nlist": 400, "nprobe": 50, "seed": 0}
    assert registry.kind("ivf").params({"nlist": 64, "nprobe": 3}, 10) == {"nlist": 10, "nprobe": 3, "seed": 0}
    assert registry.kind("hnsw").params({"M": 8}, 5) == {"M": 8, "ef_construction": 200, "ef": 64, "seed": 0}
    assert registry.kind("hnsw").search_options(ef=32, nprobe=4) == {"ef": 32}
    assert registry.kind("ivf").search_options(ef=32, nprobe=4) == {"nprobe": 4}


def test_body_crc_is_over_the_stored_bytes_whatever_the_host_byte_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A big-endian host swaps each array after reading it; the CRC it checks is still the file's."""
    stored = np.arange(5000, dtype="<i4") * 7919
    path = tmp_path / "body"
    path.write_bytes(stored.tobytes())
    monkeypatch.setattr(index_file, "_HOST_LE", False)
    for target in (np.empty(5000, dtype=np.int32), np.empty((5000, 2), dtype=np.int32)[:, 1]):  # direct, strided
        with open(path, "rb") as f:
            crc = index_file.read_array(f, 0, target, HNSWIndex.FILE_FORMAT, path)
        assert crc == crc32c(stored.tobytes())
        np.testing.assert_array_equal(target, stored.byteswap())


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_callers_count_of_the_allowed_rows_gives_the_same_answer(kind: str) -> None:
    """``allowed_count`` (the planner's count of a mask, filter_plan.PartPlan.count) replaces the index's
    own count: the same hits on either route; a count that is wrong never writes past the rows allowed."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    if kind == "hnsw":
        index: HNSWIndex | IVFIndex = HNSWIndex(16, "l2", M=8, ef_construction=64)
        knob: dict[str, int] = {"ef": 200}
    else:
        index = IVFIndex(16, "l2", nlist=16)
        index.train(vectors)
        knob = {"nprobe": 16}
    index.add(np.arange(3000, dtype=np.int64), vectors)
    mask = rng.random(3000) < 0.3
    allowed = int(mask.sum())
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    for exact in (None, True, False):
        for q in queries:
            want = index.search(q, 10, filter_ids=mask, exact=exact, **knob)
            got = index.search(q, 10, filter_ids=mask, exact=exact, allowed_count=allowed, **knob)
            assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
            assert mask[got[0]].all()
        batch = index.search_batch(queries, 10, filter_ids=mask, exact=exact, allowed_count=allowed, **knob)
        assert np.array_equal(batch[0], index.search_batch(queries, 10, filter_ids=mask, exact=exact, **knob)[0])
    for wrong in (allowed + 500, allowed // 2):
        ids, _ = index.search(queries[0], 10, filter_ids=mask, exact=True, allowed_count=wrong, **knob)
        assert mask[ids].all() and len(ids) == 10
