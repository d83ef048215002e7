"""A short run of bench/load_test.py: several client processes, both protocols, mixed reads/writes.

errors = 0, every kind of operation ran on both protocols, and the daemon
worker's RSS (from /proc) does not keep climbing. The minutes-long run is
``python bench/load_test.py --duration 120``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from load_test import run_load


def test_load_smoke(tmp_path: Path) -> None:
    report = run_load(tmp_path, duration=10.0, clients=4, max_ops=5000)
    print(f"\nload smoke: {report}")
    assert report["errors"] == [], report["errors"][:5]
    assert {f"{p}/{op}" for p in ("grpc", "rest") for op in ("upsert", "delete", "search", "get")} <= set(
        report["ops"]
    )
    assert report["total_ops"] > 200
    rss = report["rss_mib"]
    assert rss["samples"] >= 5
    # Flat: the last quarter's peak is not far above the first quarter's (a leak would climb).
    assert rss["last_quarter_max"] <= rss["first_quarter_max"] * 1.3 + 64, rss
