"""Prometheus metrics of a node, served on ``/metrics`` of its HTTP port.

Values are read when Prometheus scrapes (a custom collector over the node's rooms, the
engine's counters, the webhook queue, the etcd client): nothing runs per packet in Python.
Every server has its own registry (several servers may share a process in tests).
See docs/operations.md for the list of metrics.

- :mod:`.collector`: :class:`NodeCollector`, the scrape-time values of one server.
- :mod:`.etcd`: :class:`EtcdRequestMetrics`, latency and errors of etcd calls
  (fed by :mod:`trackyard.cluster.store`).
- :mod:`.signal`: :class:`SignalMetrics`, accept latency and refusals of signal connections
  (fed by :mod:`trackyard.signal.service`).
- :mod:`.endpoint`: the ``/metrics`` route (optional basic auth).
"""

from trackyard.metrics.etcd import EtcdRequestMetrics

__all__ = ["EtcdRequestMetrics"]
