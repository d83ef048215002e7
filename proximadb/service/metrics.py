"""A small Prometheus text-format registry (counters, gauges, histograms).

No client library: the daemon exposes a handful of series and renders them
in the text exposition format (version 0.0.4) on ``GET /metrics``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in items)
    return "{" + body + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._counters: dict[str, dict[Labels, float]] = {}
        self._hists: dict[str, dict[Labels, list[float]]] = {}  # bucket counts..., sum, count
        self._gauges: dict[str, Callable[[], list[tuple[Labels, float]]]] = {}

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def inc(self, name: str, labels: Labels = (), value: float = 1.0) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + value

    def observe(self, name: str, seconds: float, labels: Labels = ()) -> None:
        with self._lock:
            self._observe(name, seconds, labels)

    def inc_and_observe(self, counter: str, counter_labels: Labels, histogram: str, seconds: float,
                        labels: Labels) -> None:
        """``inc(counter, counter_labels)`` and ``observe(histogram, seconds, labels)`` under one lock (a
        request's count and latency: api/operations.py)."""
        with self._lock:
            series = self._counters.setdefault(counter, {})
            series[counter_labels] = series.get(counter_labels, 0.0) + 1.0
            self._observe(histogram, seconds, labels)

    def _observe(self, name: str, seconds: float, labels: Labels) -> None:
        series = self._hists.setdefault(name, {})
        state = series.get(labels)
        if state is None:
            state = series[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        idx = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        if idx < len(LATENCY_BUCKETS):
            state[idx] += 1
        state[-2] += seconds
        state[-1] += 1

    def gauge(self, name: str, read: Callable[[], list[tuple[Labels, float]]]) -> None:
        """Register a gauge whose samples are read at scrape time."""
        self._gauges[name] = read

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            counters = {k: dict(v) for k, v in self._counters.items()}
            hists = {k: {lk: list(lv) for lk, lv in v.items()} for k, v in self._hists.items()}
        names = sorted(set(counters) | set(hists) | set(self._gauges))
        for name in names:
            kind, help_text = self._help.get(name, ("untyped", name))
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            if name in counters:
                for labels, value in sorted(counters[name].items()):
                    out.append(f"{name}{_fmt_labels(labels)} {value:g}")
            elif name in hists:
                for labels, state in sorted(hists[name].items()):
                    cumulative = 0.0
                    for bound, count in zip(LATENCY_BUCKETS, state, strict=False):
                        cumulative += count
                        out.append(f"{name}_bucket{_fmt_labels(labels, (('le', f'{bound:g}'),))} {cumulative:g}")
                    out.append(f"{name}_bucket{_fmt_labels(labels, (('le', '+Inf'),))} {state[-1]:g}")
                    out.append(f"{name}_sum{_fmt_labels(labels)} {state[-2]:.6f}")
                    out.append(f"{name}_count{_fmt_labels(labels)} {state[-1]:g}")
            else:
                for labels, value in self._gauges[name]():
                    out.append(f"{name}{_fmt_labels(labels)} {value:g}")
        return "\n".join(out) + "\n"
