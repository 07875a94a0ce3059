"""Latency and errors of the etcd calls one :class:`~trackyard.cluster.store.EtcdStore` makes.

Metric objects are created unregistered: the node's collector yields them at scrape time
with the node's labels (see :mod:`.collector`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def operation(what: str) -> str:
    """The operation of a call description: "get nodes/x" → "get", "lease grant" → "lease_grant"."""
    words = what.split()
    if not words:
        return "other"
    if words[0] == "lease" and len(words) > 1:
        return f"lease_{words[1]}"
    return words[0]


class EtcdRequestMetrics:
    def __init__(self) -> None:
        self.latency = Histogram("trackyard_etcd_request_duration_seconds",
                                 "Duration of etcd requests (failed ones included), by operation.",
                                 ["operation"], buckets=BUCKETS, registry=None)
        self.errors = Counter("trackyard_etcd_request_errors",
                              "etcd requests that failed (unreachable, timed out, refused), by operation.",
                              ["operation"], registry=None)

    def observe(self, what: str, seconds: float, *, failed: bool) -> None:
        op = operation(what)
        self.latency.labels(op).observe(seconds)
        if failed:
            self.errors.labels(op).inc()

    def collect(self) -> Iterable[Metric]:
        yield from self.latency.collect()
        yield from self.errors.collect()
