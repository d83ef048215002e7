"""The core HNSW and IVF share (proximadb/index/_base.pyx): file framing, version-1 files, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from proximadb.index.hnsw import HNSWIndex
from proximadb.index.ivf import IVFIndex

FIXTURE = Path(__file__).parent / "fixtures" / "index_v1"
FIXTURE_CLASSES = {"l2.hnsw": HNSWIndex, "cosine.ivf": IVFIndex}


@pytest.mark.parametrize("name", sorted(FIXTURE_CLASSES))
def test_version_1_files_load_answer_alike_and_save_byte_for_byte(name: str, tmp_path: Path) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    index = FIXTURE_CLASSES[name].load(FIXTURE / name)
    queries = np.array(expected["queries"], dtype=np.float32)
    found, dist = index.search_batch(queries, 5, threads=1)
    assert len(index) == expected[name]["len"]
    np.testing.assert_array_equal(found, np.array(expected[name]["ids"]))
    np.testing.assert_array_equal(dist, np.array(expected[name]["distances"], dtype=np.float32))
    index.save(tmp_path / name)
    assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes()
