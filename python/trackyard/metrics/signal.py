"""Client signal connections as the node holding their WebSocket sees them: how long a
connection takes to be accepted (admission, placement, the hosting node's answer) and how
many are refused, by HTTP status. Fed by :mod:`trackyard.signal.service`; unregistered
metric objects that the node's collector yields (see :mod:`.collector`)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SignalMetrics:
    def __init__(self) -> None:
        self.accept = Histogram("trackyard_signal_accept_seconds",
                                "From a signal connection's request to its acceptance by the hosting node "
                                "(admission, placement, relay), by kind (join, resume).",
                                ["kind"], buckets=BUCKETS, registry=None)
        self.refused = Counter("trackyard_signal_refused", "Signal connections refused, by HTTP status.",
                               ["status"], registry=None)

    def accepted(self, seconds: float, *, resume: bool) -> None:
        self.accept.labels("resume" if resume else "join").observe(seconds)

    def refuse(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def collect(self) -> Iterable[Metric]:
        yield from self.accept.collect()
        yield from self.refused.collect()
