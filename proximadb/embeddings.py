"""Embedding functions: text in, vectors out, on the client.

A collection handle (:mod:`proximadb.sdk.collection`) may carry an *embedding function*: any callable
taking a list of texts and returning one vector per text (a 2-D array-like: a numpy array, a list of
lists, a torch tensor moved to the CPU ...). ``docs.add(documents=[...])`` embeds the texts with it and
stores each text beside its vector, under the reserved metadata key :data:`DOCUMENT_KEY` (``"document"``);
``docs.query(text="...")`` embeds the query the same way. Hits and records read through a handle carry
the text as ``"document"`` (taken out of ``metadata``).

:class:`SentenceTransformerEmbedding` adapts a `sentence-transformers <https://sbert.net>`_ model
(``pip install 'proximadb[embeddings]'``; imported only when used). Nothing here downloads a model by
itself: pass a local directory (or a name the Hugging Face cache already holds).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from proximadb.errors import DimensionMismatchError, ValidationError

DOCUMENT_KEY = "document"
"""The metadata key a handle stores a record's text under (reserved: a metadata dict given with
``documents=`` may not use it)."""

EmbeddingFunction = Callable[[list[str]], Any]
"""Any callable ``list[str] -> 2-D array-like`` (one row per text); a coroutine function works on the
asyncio client."""


def texts(values: Any, what: str) -> list[str]:
    """``values`` as a list of str (a numpy or pandas column of strings is accepted); a ValidationError
    naming ``what`` otherwise."""
    if isinstance(values, str):
        raise ValidationError(f"{what} must be a list of str, not a single string (use text= for one query)")
    out = list(values)
    for i, value in enumerate(out):
        if not isinstance(value, str):
            raise ValidationError(f"{what}[{i}] must be a str, got {type(value).__name__}")
    return [str(value) for value in out]


def checked_embeddings(output: Any, count: int, dimension: int | None) -> np.ndarray:
    """An embedding function's ``output`` for ``count`` texts as a float32 (count, dimension) matrix.

    DimensionMismatchError names the expected and the given dimension; ValidationError when the output is
    not one row of numbers per text."""
    if hasattr(output, "detach"):  # a torch tensor
        output = output.detach().cpu().numpy()
    try:
        matrix = np.asarray(output, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"the embedding function must return a 2-D array of numbers: {exc}") from None
    if matrix.ndim != 2 or matrix.shape[0] != count:
        raise ValidationError(
            f"the embedding function must return one vector per text: {count} text(s) gave an array of "
            f"shape {matrix.shape}"
        )
    if dimension is not None and matrix.shape[1] != dimension:
        raise DimensionMismatchError(
            f"the embedding function gives vectors of dimension {matrix.shape[1]}, the collection expects "
            f"{dimension}"
        )
    return np.ascontiguousarray(matrix)


def with_documents(
    documents: Sequence[str], metadatas: Sequence[dict[str, Any] | None] | None
) -> list[dict[str, Any]]:
    """Each record's metadata with its document under :data:`DOCUMENT_KEY`."""
    if metadatas is not None and len(metadatas) != len(documents):
        raise ValidationError(f"{len(documents)} documents need as many metadatas, got {len(metadatas)}")
    out = []
    for i, document in enumerate(documents):
        metadata = dict((metadatas[i] if metadatas is not None else None) or {})
        if DOCUMENT_KEY in metadata:
            raise ValidationError(
                f"metadatas[{i}] uses the key {DOCUMENT_KEY!r}, which holds the document given with documents=; "
                "rename it"
            )
        metadata[DOCUMENT_KEY] = document
        out.append(metadata)
    return out


def lift_document(row: dict[str, Any]) -> dict[str, Any]:
    """A hit or record with its stored text moved from ``metadata`` to ``"document"`` (when it has one)."""
    metadata = row.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get(DOCUMENT_KEY), str):
        metadata = dict(metadata)
        row = {**row, "metadata": metadata, "document": metadata.pop(DOCUMENT_KEY)}
    return row


def describe(fn: EmbeddingFunction) -> str:
    """A short name for ``fn`` in a handle's repr."""
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn.__qualname__
    return repr(fn) if type(fn).__repr__ is not object.__repr__ else type(fn).__name__


class SentenceTransformerEmbedding:
    """An embedding function backed by a ``sentence_transformers.SentenceTransformer``.

    ``SentenceTransformerEmbedding("/path/to/model")``; extra keyword arguments go to the model's
    constructor (``device="cpu"`` ...). ``normalize=True`` returns unit vectors (what cosine expects
    anyway). The model is loaded by the constructor; :attr:`dimension` is its output dimension.
    """

    def __init__(self, model_name_or_path: str, *, normalize: bool = True, batch_size: int = 32,
                 **model_options: Any) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "SentenceTransformerEmbedding needs sentence-transformers: pip install 'proximadb[embeddings]'"
            ) from exc
        self.model_name_or_path = str(model_name_or_path)
        self.normalize = normalize
        self.batch_size = batch_size
        self.model = SentenceTransformer(self.model_name_or_path, **model_options)
        get_dimension = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 5
        if get_dimension is None:
            get_dimension = self.model.get_sentence_embedding_dimension
        dimension = get_dimension()
        if dimension is None:
            raise ValueError(f"the model {self.model_name_or_path!r} does not say its output dimension")
        self.dimension = int(dimension)

    def __call__(self, input: list[str]) -> np.ndarray:
        out = self.model.encode(list(input), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedding({self.model_name_or_path!r})"


__all__ = ["DOCUMENT_KEY", "EmbeddingFunction", "SentenceTransformerEmbedding"]
