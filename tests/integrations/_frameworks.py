"""Shared by the framework integration tests: a tiny deterministic bag-of-words embedding (no model,
no network: texts sharing words get close vectors under the cosine metric) and fresh collection names."""

from __future__ import annotations

import hashlib
import itertools

_names = itertools.count()


def fresh_name(prefix: str) -> str:
    """A collection name no other test of this run uses."""
    return f"{prefix}_{next(_names)}"

DIM = 32


def hash_embed(text: str, dim: int = DIM) -> list[float]:
    vector = [0.0] * dim
    vector[0] = 0.01  # never all-zero: the cosine metric refuses a vector without direction
    for word in text.lower().split():
        bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % (dim - 1)
        vector[1 + bucket] += 1.0
    return vector
