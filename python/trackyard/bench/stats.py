"""The numbers of a run, from load-generator snapshots (pure functions, unit-tested).

- `percentile` (nearest rank) over plain values and `histogram_percentile` over
  (value, count) pairs; `merge_histograms` / `subtract_histograms` for the measurement
  window (snapshots are cumulative);
- `window_streams`: each received stream's numbers between two snapshots: packets, bytes,
  sequence-number loss, jitter, latency histogram, and per publisher SSRC the packets that it
  sent inside the window (the load generator matches them by their tags);
- `loss_ratio` from expected/received.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return data[min(rank, len(data)) - 1]


def histogram_percentile(buckets: Iterable[tuple[float, int]], q: float) -> float | None:
    """Nearest-rank percentile of a histogram given as (value, count) pairs."""
    pairs = sorted((v, c) for v, c in buckets if c > 0)
    total = sum(c for _, c in pairs)
    if total == 0:
        return None
    rank = max(1, math.ceil(q / 100.0 * total))
    seen = 0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return value
    return pairs[-1][0]


def merge_histograms(histograms: Iterable[Iterable[tuple[float, int]]]) -> dict[float, int]:
    out: dict[float, int] = {}
    for h in histograms:
        for value, count in h:
            out[value] = out.get(value, 0) + count
    return out


def subtract_histograms(after: Iterable[tuple[float, int]], before: Iterable[tuple[float, int]]) -> list[tuple[float, int]]:
    """The values recorded between two cumulative histograms."""
    base = dict(before)
    out = []
    for value, count in after:
        d = count - base.get(value, 0)
        if d > 0:
            out.append((value, d))
    return out


def loss_ratio(expected: int, received: int) -> float:
    """Lost / expected (0 when nothing was expected; duplicates never make it negative)."""
    return max(0, expected - received) / expected if expected > 0 else 0.0


def _rx_key(transport: dict, stream: dict) -> tuple[int, int]:
    return transport["id"], stream["ssrc"]


def window_streams(before: dict, after: dict) -> dict[tuple[int, int], dict]:
    """Per received stream (transport id, SSRC): its numbers inside the window."""
    base = {_rx_key(t, s): s for t in before.get("transports", []) for s in t["rx"]}
    out: dict[tuple[int, int], dict] = {}
    for t in after.get("transports", []):
        for s in t["rx"]:
            b = base.get(_rx_key(t, s), {})
            out[_rx_key(t, s)] = {
                "transport": t["id"],
                "ssrc": s["ssrc"],
                "kind": s["kind"],
                "packets": s["packets"] - b.get("packets", 0),
                "bytes": s["bytes"] - b.get("bytes", 0),
                "expected": s["expected"] - b.get("expected", 0),
                "lost": max(0, s["lost"] - b.get("lost", 0)),
                "jitter_us": s["jitter_us"],
                "first_unix_us": s["first_unix_us"],
                "latency": subtract_histograms(s.get("latency", []), b.get("latency", [])),
                # packets per publisher SSRC that were sent inside the window (exact, from the tags)
                "sources": {src[0]: src[2] for src in s.get("sources", [])},
            }
    return out


def sent_in_window(after: dict) -> dict[int, int]:
    """Packets each publisher SSRC sent inside the window."""
    return {s["ssrc"]: s["window_packets"] for t in after.get("transports", []) for s in t["tx"]}


def summary(values: list[float], digits: int = 2) -> dict:
    """p50/p90/p99/max/mean of a list (None entries when empty)."""
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)
    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p90": r(percentile(values, 90)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
        "mean": r(sum(values) / len(values) if values else None),
    }
