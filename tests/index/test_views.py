"""Memory the compiled indexes point into must outlive them, and stay put while a search reads it.

Each test frees or swaps what the index could be pointing into (del + gc.collect(), a second
attach_vectors during a search) and then checks the index against values computed independently.
"""

from __future__ import annotations

import errno
import gc
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from proximadb.errors import ValidationError
from proximadb.index.hnsw import HNSWIndex
from proximadb.index.hnsw_int8 import HNSWBinaryIndex, HNSWInt8Index
from proximadb.index.hnsw_pq import HNSWPQIndex
from proximadb.index.inverted import InvertedIndex
from proximadb.storage import text_index_file
from proximadb.text.bm25 import Bm25Index

QUANTIZED = [HNSWInt8Index, HNSWBinaryIndex, HNSWPQIndex]


def _rows(n: int, dim: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


class _SwapOnConvert:
    """Filter ids whose conversion to an array (inside the search, after it counted itself as a
    reader) swaps the index's float32 vectors and frees the old ones."""

    def __init__(self, index: object, ids: np.ndarray, replacement: np.ndarray) -> None:
        self.index, self.ids, self.replacement = index, ids, replacement
        self.error: BaseException | None = None

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        try:
            self.index.attach_vectors(self.replacement)  # type: ignore[attr-defined]
        except Exception as exc:  # kept for the test to assert on
            self.error = exc
        gc.collect()
        return self.ids if dtype is None else self.ids.astype(dtype)


@pytest.mark.parametrize("cls", [*QUANTIZED, HNSWIndex])
def test_attach_vectors_is_refused_while_a_search_runs(cls: type) -> None:
    """attach_vectors replaces (and frees) the array the rescoring reads: while a search is under way
    it must be refused, as add is; HNSWInt8Index and its kinds accepted it."""
    rows = _rows(2, 8)
    index = cls(8, "l2", seed=1)
    index.add(np.arange(2, dtype=np.int64), rows.copy())
    other = _rows(2, 8, seed=9)
    hook = _SwapOnConvert(index, np.array([0, 1], dtype=np.int64), other)
    ids, dist = index.search(rows[1], k=2, filter_ids=hook)
    assert isinstance(hook.error, RuntimeError), hook.error
    assert "attach_vectors" in str(hook.error)
    assert ids[0] == 1 and dist[0] == pytest.approx(0.0, abs=1e-5)  # still over the original rows
    index.attach_vectors(other)  # outside a search it is allowed
    ids, _ = index.search(other[0], k=1)
    assert ids[0] == 0


@pytest.mark.parametrize("cls", QUANTIZED)
@pytest.mark.parametrize("n", [1, 2])
def test_attached_temporary_outlives_its_caller(cls: type, n: int) -> None:
    """A temporary passed to attach_vectors (a strided view needing a copy, or a float32 array
    kept as is) is freed by the caller at once: the index's reference must keep it alive."""
    rows = _rows(n, 8)
    index = cls(8, "l2", seed=1)
    index.add(np.arange(n, dtype=np.int64), rows.copy())
    wide = np.zeros((n, 16), dtype=np.float32)
    wide[:, ::2] = rows
    index.attach_vectors(wide[:, ::2])
    del wide
    gc.collect()
    _ = [np.full((n, 16), 1e6, dtype=np.float32) for _ in range(64)]  # reuse freed memory
    ids, dist = index.search(rows[n - 1], k=1)
    assert ids[0] == n - 1 and dist[0] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_inverted_index_holds_its_own_postings(n: int) -> None:
    """InvertedIndex searched the caller's arrays in place (np.ascontiguousarray made no copy of an
    int32 / float32 / int64 array already right): a caller reusing its buffer afterwards put rows
    out of range under the GIL-free scorer. It keeps copies of writeable arrays."""
    term_start = np.array([0, n], dtype=np.int64)
    post_row = np.arange(n, dtype=np.int32)
    post_value = np.ones(n, dtype=np.float32)
    row_length = np.ones(n, dtype=np.float32)
    inv = InvertedIndex(term_start, post_row, post_value, row_length)
    post_row[:] = 10**6
    term_start[1] = 10**6
    post_value[:] = 5.0
    rows, scores = inv.search([0], [1.0], 3, scoring="dot")
    assert rows.tolist() == list(range(n))
    assert scores.tolist() == [1.0] * n
    for arr in (inv.term_start, inv.post_row, inv.post_value, inv.row_length):
        assert not arr.flags.writeable


def test_inverted_index_read_only_arrays_are_not_copied() -> None:
    """Read-only arrays (a derived file's memory map) are used in place: no second copy in memory."""
    post_row = np.arange(2, dtype=np.int32)
    post_row.flags.writeable = False
    inv = InvertedIndex(np.array([0, 2], np.int64), post_row, np.ones(2, np.float32), np.ones(2, np.float32))
    assert np.shares_memory(inv.post_row, post_row)


@pytest.mark.parametrize("term_start", [[0, 5, 2], [0, -1, 2], [0, 2, 1, 2]])
def test_inverted_index_refuses_term_starts_out_of_order(term_start: list[int]) -> None:
    """term_start must ascend within the postings: a dip let a term's range run past post_row."""
    with pytest.raises(ValidationError, match="term_start"):
        InvertedIndex(np.array(term_start, np.int64), np.zeros(2, np.int32), np.ones(2, np.float32),
                      np.ones(1, np.float32))


def test_a_loaded_text_index_reads_its_read_only_mapping_in_place(tmp_path: Path) -> None:
    """The postings of a text.idx stay in the file's read-only memory map (no copy), and answer as
    the built index does."""
    built = Bm25Index.build(["red apple", "green apple", "red red wine"])
    path = tmp_path / text_index_file.FILE_NAME
    text_index_file.write_index(path, 123, built)
    loaded = text_index_file.load_index(path, 123, built.analyzer, built.rows)
    for name in ("term_start", "post_row", "post_value", "row_length"):
        arr = getattr(loaded.index, name)
        assert not arr.flags.owndata and not arr.flags.writeable, name
    for query in ("red", "apple", "wine apple"):
        got, want = loaded.search(query, k=3), built.search(query, k=3)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cls", [HNSWIndex, HNSWInt8Index])
def test_a_change_is_refused_while_save_writes_views_of_the_index(tmp_path: Path, cls: type) -> None:
    """save writes the body from views over the index's memory, releasing the GIL in each write: an
    add meanwhile reallocated (and freed) that memory under it. The temporary file is a FIFO here,
    so the save stays inside its body loop, blocked on the full pipe, until the test reads on."""
    n, dim = 1000, 32  # a body well over the pipe's 64 KiB and the file buffer's 8 KiB
    rows = _rows(n, dim)
    index = cls(dim, "l2", seed=1)
    index.add(np.arange(n, dtype=np.int64), rows)
    reference = tmp_path / "reference.idx"
    index.save(reference)
    path = tmp_path / "index.idx"
    os.mkfifo(str(path) + ".tmp")
    errors: list[BaseException] = []

    def save() -> None:
        try:
            index.save(path)
        except OSError as exc:  # fsync of a FIFO: EINVAL, after the whole body was written
            errors.append(exc)

    saver = threading.Thread(target=save)
    saver.start()
    with open(str(path) + ".tmp", "rb") as reader:
        got = reader.read(1)  # the header reaches the pipe with the body's first writes: in the loop
        if cls is HNSWIndex:
            with pytest.raises(RuntimeError, match="while another call"):
                index.add(np.arange(n, 3 * n, dtype=np.int64), _rows(2 * n, dim, seed=3))
        with pytest.raises(RuntimeError, match="while another call"):
            index.mark_deleted(0)
        got += reader.read()
    saver.join(60)
    assert not saver.is_alive()
    assert [e.errno for e in errors] in ([], [errno.EINVAL])
    assert got == reference.read_bytes()
    index.mark_deleted(0)  # once saved, changes go ahead
    assert 0 not in index


@pytest.mark.parametrize("n", [0, 1, 2])
def test_arrays_handed_out_outlive_the_index(n: int) -> None:
    """ids, graph_arrays, codes_array and quantizer are copies (copy_array, made with the GIL held):
    with the index freed and its memory reused, they still hold the values read before."""
    rows = _rows(n, 8)
    index = HNSWInt8Index(8, "l2", seed=1)
    index.add(np.arange(10, 10 + n, dtype=np.int64), rows)
    graph = HNSWIndex(8, "l2", seed=1)
    graph.add(np.arange(10, 10 + n, dtype=np.int64), rows)
    got = [index.ids, index.codes_array(), *index.quantizer(), graph.ids, *graph.graph_arrays()[:3]]
    want = [a.copy() for a in got]
    del index, graph
    gc.collect()
    _ = [np.full(4096, -7, dtype=np.int32) for _ in range(64)]  # reuse freed memory
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.base is None or a.base.flags.owndata
    assert got[0].tolist() == list(range(10, 10 + n))
