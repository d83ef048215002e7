"""The compiled inverted index (proximadb/index/inverted.pyx), the analyzer and BM25 (proximadb/text/).

Every search is checked against a brute-force reference computed here in float64 from the
definitions in the modules' documentation: BM25 (Lucene's, without the constant k1 + 1) and dot
products of sparse vectors, with and without an allowed-row mask, one query or a batch on several
threads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proximadb.errors import ValidationError
from proximadb.index.inverted import MAXSCORE_TERMS, InvertedIndex
from proximadb.text.analyzer import ENGLISH_STOP_WORDS, Analyzer
from proximadb.text.bm25 import Bm25Index, CorpusStats, idf

N_TERMS = 12
docs_st = st.lists(st.lists(st.integers(0, N_TERMS - 1), max_size=12), min_size=1, max_size=40)
query_st = st.lists(st.integers(-2, N_TERMS + 2), max_size=6)


def csr(docs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.zeros(len(docs) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(d) for d in docs])
    flat = np.asarray([t for d in docs for t in d], dtype=np.int32)
    return starts, flat


def reference_bm25(docs: list[list[int]], terms: list[int], weights: list[float], k1: float, b: float,
                   allowed: np.ndarray | None) -> dict[int, float]:
    """Every candidate row's score (rows sharing a known query term and allowed)."""
    avg = sum(len(d) for d in docs) / len(docs)
    scores: dict[int, float] = {}
    for row, doc in enumerate(docs):
        if allowed is not None and not allowed[row]:
            continue
        shared = False
        s = 0.0
        for t, w in zip(terms, weights, strict=True):
            tf = doc.count(t)
            if tf:
                shared = True
                s += w * tf / (tf + k1 * (1 - b + b * len(doc) / avg))
        if shared:
            scores[row] = s
    return scores


def check_top(rows: np.ndarray, scores: np.ndarray, reference: dict[int, float], k: int) -> None:
    """``rows`` are a best-``k`` of ``reference`` (ties within float32 rounding may swap), best first,
    with the reference's scores."""
    assert len(rows) == min(k, len(reference))
    assert len(set(rows.tolist())) == len(rows)
    for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
        assert r in reference and math.isclose(s, reference[r], rel_tol=1e-4, abs_tol=1e-5)
    assert all(scores[i] >= scores[i + 1] for i in range(len(scores) - 1))
    if len(rows) and len(rows) < len(reference):
        kth = scores[-1]
        left_out = [v for r, v in reference.items() if r not in set(rows.tolist())]
        assert max(left_out) <= kth + 1e-4 * max(1.0, abs(kth))


@settings(max_examples=300, deadline=None)
@given(docs=docs_st, query=query_st, k=st.integers(1, 8), k1=st.sampled_from([0.0, 1.2, 1.5, 3.0]),
       b=st.sampled_from([0.0, 0.75, 1.0]), masked=st.booleans(), data=st.data())
def test_bm25_search_is_the_reference_top_k(docs: list[list[int]], query: list[int], k: int, k1: float, b: float,
                                            masked: bool, data: st.DataObject) -> None:
    index = InvertedIndex.build(*csr(docs), N_TERMS)
    weights = [float(w) for w in data.draw(st.lists(st.floats(0.1, 5.0), min_size=len(query), max_size=len(query)))]
    allowed = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(docs), max_size=len(docs))),
                         dtype=np.uint8) if masked else None
    rows, scores = index.search(query, weights, k, k1=k1, b=b, allowed=allowed)
    known = [(t, w) for t, w in zip(query, weights, strict=True) if 0 <= t < N_TERMS]
    reference = reference_bm25(docs, [t for t, _ in known], [w for _, w in known], k1, b, allowed)
    check_top(rows, scores, reference, k)


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(st.dictionaries(st.integers(0, N_TERMS - 1),
                                     st.one_of(st.floats(-3, 3, width=32), st.sampled_from([0.5, 1.0, 2.0])),
                                     max_size=6),
                     min_size=1, max_size=60),
       query=st.dictionaries(st.integers(0, N_TERMS - 1), st.floats(-3, 3, width=32), max_size=5),
       k=st.integers(1, 6), maxscore=st.booleans(), masked=st.booleans(), data=st.data())
def test_sparse_dot_product_search_is_the_reference_top_k(docs: list[dict[int, float]], query: dict[int, float],
                                                           k: int, maxscore: bool, masked: bool,
                                                           data: st.DataObject) -> None:
    """Both scorers (MaxScore and term at a time) give the reference top k, with and without a filter."""
    starts = np.zeros(len(docs) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(d) for d in docs])
    terms = np.asarray([t for d in docs for t in d], dtype=np.int32)
    values = np.asarray([v for d in docs for v in d.values()], dtype=np.float32)
    index = InvertedIndex.build_weighted(starts, terms, values, N_TERMS)
    allowed = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(docs), max_size=len(docs))),
                         dtype=np.uint8) if masked else None
    rows, scores = index.search(list(query), list(query.values()), k, scoring="dot", allowed=allowed,
                                maxscore=maxscore)
    reference = {r: sum(w * d[t] for t, w in query.items() if t in d)
                 for r, d in enumerate(docs) if any(t in d for t in query) and (allowed is None or allowed[r])}
    check_top(rows, scores, reference, k)


def test_maxscore_answers_as_term_at_a_time_on_skewed_postings() -> None:
    """Zipf-like terms (long postings for common ones, the case MaxScore prunes), BM25-like weights, a filter
    or none, batches on threads: the same rows as term at a time, scores within float rounding; queries longer
    than MAXSCORE_TERMS and filters allowing under MAXSCORE_MIN_ALLOWED of the rows take term at a time."""
    rng = np.random.default_rng(11)
    n_rows, n_terms = 20_000, 3_000
    p = 1 / np.arange(1, n_terms + 1) ** 0.9
    docs = [np.unique(rng.choice(n_terms, int(rng.integers(1, 40)), p=p / p.sum())) for _ in range(n_rows)]
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    index = InvertedIndex.build_weighted(starts, np.concatenate(docs).astype(np.int32),
                                         rng.random(int(starts[-1])).astype(np.float32), n_terms)
    queries = [np.unique(rng.choice(n_terms, int(rng.integers(1, 12)), p=p / p.sum())) for _ in range(200)]
    queries.append(np.arange(MAXSCORE_TERMS + 1))
    weights = [np.log(n_rows / (1 + index.document_frequency(q))).astype(np.float32) for q in queries]
    for fraction in (None, 0.5, 0.01):
        allowed = None if fraction is None else (rng.random(n_rows) < fraction).astype(np.uint8)
        pruned = index.search_batch(queries, weights, 10, scoring="dot", allowed=allowed, threads=2)
        plain = index.search_batch(queries, weights, 10, scoring="dot", allowed=allowed, threads=2, maxscore=False)
        assert (pruned[2] == plain[2]).all() and (pruned[0] == plain[0]).all()
        np.testing.assert_allclose(pruned[1], plain[1], rtol=1e-5, atol=1e-6)
    hi, lo = index.term_bounds()
    for t in (0, 7, n_terms - 1):
        values = index.post_value[index.term_start[t]:index.term_start[t + 1]]
        assert (hi[t], lo[t]) == ((values.max(), values.min()) if len(values) else (0, 0))


def test_a_batch_on_many_threads_equals_one_query_at_a_time() -> None:
    rng = np.random.default_rng(5)
    docs = [list(rng.integers(0, 300, size=rng.integers(0, 40))) for _ in range(2000)]
    index = InvertedIndex.build(*csr(docs), 300)
    queries = [list(rng.integers(-5, 305, size=rng.integers(0, 8))) for _ in range(200)]
    weights = [list(rng.random(len(q)) + 0.1) for q in queries]
    allowed = (rng.random(2000) < 0.3).astype(np.uint8)
    for mask in (None, allowed):
        rows, scores, counts = index.search_batch(queries, weights, 10, allowed=mask, threads=4)
        for i, (q, w) in enumerate(zip(queries, weights, strict=True)):
            one_rows, one_scores = index.search(q, w, 10, allowed=mask)
            assert counts[i] == len(one_rows)
            assert rows[i, :counts[i]].tolist() == one_rows.tolist()
            assert scores[i, :counts[i]].tolist() == one_scores.tolist()
            assert (rows[i, counts[i]:] == -1).all()


def test_postings_and_document_frequency() -> None:
    index = InvertedIndex.build([0, 3, 5, 6], [0, 1, 0, 1, 2, 2], 4)
    assert index.term_start.tolist() == [0, 1, 3, 5, 5]
    assert index.post_row.tolist() == [0, 0, 1, 1, 2]
    assert index.post_value.tolist() == [2, 1, 1, 1, 1]  # term 0 twice in row 0
    assert index.row_length.tolist() == [3, 2, 1] and index.avg_length == 2.0
    assert index.document_frequency([0, 1, 2, 3, 9, -1]).tolist() == [1, 2, 2, 0, 0, 0]
    assert index.search([3, 7], [1.0, 1.0], 5)[0].tolist() == []  # nothing shared: no hit


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"term ids must lie in 0\.\.3"):
        InvertedIndex.build([0, 1], [4], 4)
    with pytest.raises(ValidationError, match="not ascending at row 1"):
        InvertedIndex.build([0, 2, 1, 2], [0, 1], 4)
    with pytest.raises(ValidationError, match="end at len"):
        InvertedIndex.build([0, 1], [0, 1], 4)
    with pytest.raises(ValidationError, match="2 term ids but 1 weights"):
        InvertedIndex.build_weighted([0, 2], [0, 1], [1.0], 4)
    index = InvertedIndex.build([0, 2], [0, 1], 4)
    with pytest.raises(ValidationError, match="k must be at least 1"):
        index.search([0], [1.0], 0)
    with pytest.raises(ValidationError, match="scoring 'cos'"):
        index.search([0], [1.0], 1, scoring="cos")
    with pytest.raises(ValidationError, match="allowed mask of 3 rows for an index of 1"):
        index.search([0], [1.0], 1, allowed=[1, 1, 1])
    with pytest.raises(ValidationError, match="query 0: 2 terms but 1 weights"):
        index.search([0, 1], [1.0], 1)
    with pytest.raises(ValidationError, match="k1 >= 0 and 0 <= b <= 1"):
        index.search([0], [1.0], 1, b=2.0)


# -- the analyzer --

def test_the_analyzer_lowercases_splits_drops_stop_words_and_stems() -> None:
    plain = Analyzer(stopwords=None)
    assert plain.terms("The Quick-brown FOX, a café: x 42!") == ["the", "quick", "brown", "fox", "café", "42"]
    assert Analyzer().terms("The fox and the hound") == ["fox", "hound"]
    assert "the" in ENGLISH_STOP_WORDS
    stem = Analyzer(stemmer="english")
    assert stem.terms("Running runners ran quickly") == ["run", "runner", "ran", "quick"]
    own = Analyzer(stopwords=["Fox"], lowercase=True)
    assert own.terms("the fox jumps") == ["the", "jumps"]
    assert Analyzer.from_settings(stem.settings()) == stem and stem != plain
    assert "stemmer='english'" in repr(stem)


def test_bad_analyzer_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="stemmer 'klingon'"):
        Analyzer(stemmer="klingon")
    with pytest.raises(ValidationError, match="stopwords 'french'"):
        Analyzer(stopwords="french")
    with pytest.raises(ValidationError, match="unknown setting"):
        Analyzer.from_settings({"lowercase": True, "colour": "red"})
    with pytest.raises(ValidationError, match="must be a string"):
        Analyzer().terms(42)  # type: ignore[arg-type]


# -- BM25 over texts --

TEXTS = [
    "A fast vector database written in Python and Cython",
    "The Python programming language interpreter",
    "A database of recipes: pasta, bread and soup",
    "Cython compiles Python-like code to C for speed",
    "Vector graphics editor",
]


def test_bm25_ranks_texts_by_their_terms() -> None:
    index = Bm25Index.build(TEXTS)
    rows, scores = index.search("python database", k=3)
    assert rows.tolist()[0] == 0  # the only text with both terms
    assert set(rows.tolist()[1:]) <= {1, 2, 3} and (scores > 0).all()
    assert index.search("nothing matches zebra", k=3)[0].tolist() == []
    rows, _ = index.search("python", k=5, allowed=np.asarray([0, 1, 0, 0, 1], np.uint8))
    assert rows.tolist() == [1]


def test_idf_from_combined_statistics_makes_parts_merge_into_the_whole() -> None:
    """Two halves searched with the collection's statistics and merged = the whole index's answer."""
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 15))) for _ in range(300)]
    whole = Bm25Index.build(texts)
    parts = [Bm25Index.build(texts[:170]), Bm25Index.build(texts[170:])]
    stats = CorpusStats.combine([p.stats() for p in parts])
    assert stats.rows == 300 and stats.df == whole.stats().df
    for query in ("w1 w2 w3", "w7", "w10 w10 w39", "w5 w6 w7 w8 w9"):
        want_rows, want_scores = whole.search(query, k=10)
        merged = []
        for offset, part in ((0, parts[0]), (170, parts[1])):
            rows, scores = part.search(query, k=10, stats=stats)
            merged += [(float(s), int(r) + offset) for r, s in zip(rows, scores, strict=True)]
        merged.sort(key=lambda x: (-x[0], x[1]))
        assert np.allclose([s for s, _ in merged[:10]], want_scores, rtol=1e-5)
        got = {r for s, r in merged[:10] if s > want_scores[-1] * (1 + 1e-5)}
        assert got <= set(want_rows.tolist())


def test_idf_is_lucenes() -> None:
    assert idf(np.asarray([0, 1, 10]), 10).tolist() == pytest.approx(
        [math.log(1 + 10.5 / 0.5), math.log(1 + 9.5 / 1.5), math.log(1 + 0.5 / 10.5)], rel=1e-6)
    with pytest.raises(ValidationError, match="k1 >= 0"):
        Bm25Index.build(TEXTS, k1=-1)
