"""kill -9 at random points of compactions: the data directory holds the old or the new state, never a mix.

The child loops "upsert existing rows with identical content, flush, compact",
so the logical content never changes while segments are written, merged,
swapped and deleted underneath; every reopen must show exactly that content.
Every other round streams the merge in chunks of 97 rows (``rewrite_chunk_rows``,
storage/merge.py and segment_writer.py: some 50 chunks a compaction), so the
kills also land between the chunks of a merged segment's files.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _support import child_env, dump_in_fresh_process, rest_of_output

CHILD = r"""
import sys
import numpy as np
from proximadb.storage.engine import Engine

data_dir, chunk_rows = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
vectors = rng.standard_normal((6000, 32)).astype(np.float32)
ids = [f"r{i:05d}" for i in range(6000)]
meta = [{"i": i, "tag": "t%d" % (i % 7)} for i in range(6000)]
with Engine.open(data_dir, fsync="always", auto_compact=False, rewrite_chunk_rows=chunk_rows) as engine:
    if not engine.list_collections():
        engine.create_collection("c", 32, distance_metric="euclidean", indexing_algorithm="hnsw",
                                 index_params={"M": 8, "ef_construction": 32})
        col = engine.collection("c")
        for s in range(0, 6000, 1500):
            col.insert(ids=ids[s:s + 1500], vectors=vectors[s:s + 1500], metadatas=meta[s:s + 1500])
            col.flush()
        col.delete(ids[5000:])
        col.flush()
    col = engine.collection("c")
    print("READY", flush=True)
    round_ = 0
    while True:
        pick = rng.choice(5000, 800, replace=False)
        col.upsert(ids=[ids[i] for i in pick], vectors=vectors[pick], metadatas=[meta[i] for i in pick])
        col.flush()
        col.compact()
        round_ += 1
        print("COMPACTED", round_, flush=True)
"""


def test_kill_9_during_compaction_leaves_old_or_new_state(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((6000, 32)).astype(np.float32)
    expected = {f"r{i:05d}": (vectors[i].tolist(), {"i": i, "tag": f"t{i % 7}"}) for i in range(5000)}
    rnd = random.Random(99)
    data_dir = tmp_path / "data"
    compactions = 0
    for _round in range(6):
        chunk_rows = 97 if _round % 2 else 8192
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(chunk_rows)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env(), cwd=str(tmp_path))
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == "READY", proc.stderr.read() if proc.stderr else ready
        if _round % 2 == 0:  # every other round, once a compaction finished: the loop surely compacts, however slow
            first = proc.stdout.readline()
            assert first.startswith("COMPACTED"), proc.stderr.read() if proc.stderr else first
            compactions += 1
        time.sleep(rnd.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        out, err = rest_of_output(proc)
        assert proc.returncode == -signal.SIGKILL, err
        compactions += out.count("COMPACTED")
        state = dump_in_fresh_process(data_dir)["c"]
        assert state.keys() == expected.keys(), f"round {_round}: {len(state)} rows, expected {len(expected)}"
        for key, (vec, meta) in expected.items():
            assert state[key]["metadata"] == meta
            assert np.array_equal(np.asarray(state[key]["vector"], np.float32), np.asarray(vec, np.float32))
        # the reopen above removed what an interrupted flush/compaction left behind
        leftovers = [p.name for p in (data_dir / "collections").rglob("segments/*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
    assert compactions >= 3, f"only {compactions} compactions completed: kills never came after one"
