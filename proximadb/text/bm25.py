"""BM25 ranking of texts: an :class:`~proximadb.text.analyzer.Analyzer`, a vocabulary, and the compiled
:class:`~proximadb.index.inverted.InvertedIndex`.

``Bm25Index.build(texts)`` analyzes each text, numbers its terms (the vocabulary: term -> id, in
order of first appearance) and builds the postings. A query is analyzed the same way; its known
terms are weighted by their inverse document frequency, Lucene's

    idf(term) = ln(1 + (N - df + 0.5) / (df + 0.5))     N rows, df rows containing the term

and scored with ``k1`` (term-frequency saturation, default 1.5) and ``b`` (length normalisation,
default 0.75) by the index's kernel (GIL released; batches over OpenMP threads). ``N``, ``df`` and
the average length may be given from wider statistics (:class:`CorpusStats`: the sum over a
collection's parts), so scores of several parts are comparable and can be merged.

**JSON form** (:meth:`CorpusStats.to_json`: what a cluster's shards send and are sent, the ``corpus_stats``
field of a ``search_text`` request to a shard address, proximadb/cluster/queries.py)::

    {"rows": <int >= 0>, "total_terms": <number >= 0>, "df": {<term>: <int >= 0>, ...}}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from proximadb.errors import ValidationError
from proximadb.index.inverted import InvertedIndex
from proximadb.text.analyzer import Analyzer


def idf(df: npt.NDArray[np.int64], n_rows: int) -> npt.NDArray[np.float32]:
    """Lucene's inverse document frequency (always positive)."""
    d = df.astype(np.float64)
    return np.log1p((n_rows - d + 0.5) / (d + 0.5)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class CorpusStats:
    """What IDF and length normalisation are computed from: rows, total terms, and df per term."""

    rows: int
    total_terms: float
    df: dict[str, int]

    @property
    def avg_length(self) -> float:
        return self.total_terms / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "total_terms": self.total_terms, "df": dict(self.df)}

    @staticmethod
    def from_json(value: Any, what: str = "corpus_stats") -> CorpusStats:
        """The statistics of :meth:`to_json`'s form; ValidationError naming ``what`` otherwise."""
        def count(n: Any) -> bool:
            return isinstance(n, int) and not isinstance(n, bool) and n >= 0

        shape = f"{what} must be {{rows: int >= 0, total_terms: number >= 0, df: {{term: int >= 0}}}}"
        if not isinstance(value, dict) or set(value) != {"rows", "total_terms", "df"}:
            raise ValidationError(f"{shape}, not {value!r}")
        total, df = value["total_terms"], value["df"]
        if (not count(value["rows"]) or isinstance(total, bool) or not isinstance(total, int | float)
                or not math.isfinite(total) or total < 0 or not isinstance(df, dict)
                or not all(isinstance(t, str) and count(n) for t, n in df.items())):
            raise ValidationError(f"{shape}, not {value!r}")
        over = [t for t, n in df.items() if n > value["rows"]]
        if over:  # a term in more rows than there are would weigh below zero
            raise ValidationError(f"{what}: df of {over[0]!r} ({df[over[0]]}) is above rows ({value['rows']})")
        return CorpusStats(value["rows"], float(total), dict(df))

    @staticmethod
    def combine(parts: Sequence[CorpusStats]) -> CorpusStats:
        """The statistics of the union of disjoint parts (a collection's segments): sums."""
        df: dict[str, int] = {}
        for part in parts:
            for term, n in part.df.items():
                df[term] = df.get(term, 0) + n
        return CorpusStats(sum(p.rows for p in parts), sum(p.total_terms for p in parts), df)


class Bm25Index:
    """A BM25 index over rows 0..n-1 of a list of texts."""

    def __init__(self, analyzer: Analyzer, vocabulary: dict[str, int], index: InvertedIndex, *,
                 k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1 or math.isnan(k1) or math.isnan(b):
            raise ValidationError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.index = index
        self.k1 = float(k1)
        self.b = float(b)

    @classmethod
    def build(cls, texts: Sequence[str], analyzer: Analyzer | None = None, *, k1: float = 1.5,
              b: float = 0.75) -> Bm25Index:
        analyzer = analyzer or Analyzer()
        return cls.from_terms([analyzer.terms(text) for text in texts], analyzer, k1=k1, b=b)

    @classmethod
    def from_terms(cls, rows: Sequence[Sequence[str]], analyzer: Analyzer, *, k1: float = 1.5,
                   b: float = 0.75) -> Bm25Index:
        """From each row's terms, as ``analyzer`` made them (numbered in order of first appearance)."""
        vocabulary: dict[str, int] = {}
        starts = np.zeros(len(rows) + 1, dtype=np.int64)
        ids: list[int] = []
        for row, terms in enumerate(rows):
            ids.extend(vocabulary.setdefault(term, len(vocabulary)) for term in terms)
            starts[row + 1] = len(ids)
        index = InvertedIndex.build(starts, np.asarray(ids, dtype=np.int32), len(vocabulary))
        return cls(analyzer, vocabulary, index, k1=k1, b=b)

    @property
    def rows(self) -> int:
        return int(self.index.n_rows)

    def stats(self) -> CorpusStats:
        df = self.index.document_frequency(np.arange(len(self.vocabulary)))
        return CorpusStats(self.rows, float(self.index.row_length.sum()),
                           {term: int(df[i]) for term, i in self.vocabulary.items()})

    def query(self, text: str, stats: CorpusStats | None = None,
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The query's known terms (ids here) and their IDF weights (from ``stats``, default this index's)."""
        return self.query_terms(self.analyzer.terms(text), stats)

    def query_terms(self, analyzed: list[str], stats: CorpusStats | None = None,
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """As :meth:`query`, for terms the analyzer already made."""
        terms = [t for t in analyzed if t in self.vocabulary]
        ids = np.fromiter((self.vocabulary[t] for t in terms), dtype=np.int64, count=len(terms))
        if stats is None:
            weights = idf(self.index.document_frequency(ids), self.rows)
        else:
            weights = idf(np.asarray([stats.df.get(t, 0) for t in terms], dtype=np.int64), stats.rows)
        return ids, weights

    def search(self, text: str, k: int = 10, *, allowed: npt.ArrayLike | None = None,
               stats: CorpusStats | None = None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The best ``k`` rows for ``text`` and their scores, best first (rows sharing no term are not hits)."""
        rows, scores, counts = self.search_batch([text], k, allowed=allowed, stats=stats, threads=1)
        return rows[0, :counts[0]], scores[0, :counts[0]]

    def search_batch(self, texts: Sequence[str], k: int = 10, *, allowed: npt.ArrayLike | None = None,
                     stats: CorpusStats | None = None, threads: int = 0,
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Many queries: (rows [nq, k], scores [nq, k], counts [nq]); see InvertedIndex.search_batch."""
        queries = [self.query(t, stats) for t in texts]
        avg = stats.avg_length if stats is not None else None
        return self.index.search_batch([q[0] for q in queries], [q[1] for q in queries], k, scoring="bm25",
                                       k1=self.k1, b=self.b, avg_length=avg, allowed=allowed, threads=threads)
