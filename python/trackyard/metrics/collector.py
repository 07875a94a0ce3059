"""What one server reports to Prometheus, read when it is scraped.

:class:`NodeCollector` reads the server's parts as they are at scrape time: the rooms of a
node that hosts rooms, the media engine's counters (packets, bytes, NACKs, PLIs, the
forwarding-delay histogram), losses from the engine's latest stream statistics, the webhook
queue, the signal connections, the cluster view of a control node and the etcd client's
request metrics. Counters come from monotonic sources; gauges are current values. Every
sample carries the labels ``node_id`` and ``role``.

:func:`server_registry` gives a server its own registry holding one collector.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from livekit.protocol import models
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from trackyard import __version__
from trackyard.cpu import CpuSampler
from trackyard.engine import forward_delay_histogram

if TYPE_CHECKING:
    from trackyard.server import Server

NS = "trackyard_"
KINDS = {models.TrackType.AUDIO: "audio", models.TrackType.VIDEO: "video", models.TrackType.DATA: "data"}
# counter families from engine counters: name → (help, label name or "", {label value: engine counter})
ENGINE_COUNTERS = {
    "packets": ("UDP datagrams on the media port (all kinds).", "direction", {"in": "rx_packets", "out": "tx_packets"}),
    "bytes": ("Bytes of UDP datagrams on the media port.", "direction", {"in": "rx_bytes", "out": "tx_bytes"}),
    "forwarded_packets": ("RTP packets forwarded to subscribers (first transmissions).", "", {"": "forwarded"}),
    "retransmitted_packets": ("Packets resent to subscribers after a NACK.", "", {"": "retransmitted"}),
    "nacks": ("NACK messages: in = from subscribers, out = to publishers.", "direction",
              {"in": "nacks_received", "out": "nacks_sent"}),
    "plis": ("PLI keyframe requests: in = from subscribers, out = to publishers.", "direction",
             {"in": "plis_received", "out": "plis_sent"}),
    "firs": ("FIR keyframe requests from subscribers.", "", {"": "firs_received"}),
    "layer_switches": ("Simulcast layer changes of down-tracks.", "", {"": "layer_switches"}),
    "remb_received": ("REMB bandwidth estimates from subscribers.", "", {"": "remb_received"}),
    "bwe_layer_caps": ("Subscriber layer caps changed for bandwidth: down (estimate fell), up (room), probe.",
                       "change", {"down": "bwe_downgrades", "up": "bwe_upgrades", "probe": "bwe_probes"}),
    "tcp_connections": ("ICE-TCP connections by outcome: accepted, closed, rejected (too many), garbage "
                        "(closed for bad input), timeout (no valid binding request in time).", "event",
                        {"accepted": "tcp_accepted", "closed": "tcp_closed", "rejected": "tcp_rejected",
                         "garbage": "tcp_garbage", "timeout": "tcp_timeouts"}),
    "tcp_frames": ("Packets on ICE-TCP connections: sent = queued as frames, dropped = write buffer full or "
                   "connection gone.", "outcome", {"sent": "tcp_frames_sent", "dropped": "tcp_dropped"}),
    "send_syscalls": ("System calls that handed media datagrams to the kernel (sendmmsg; sendto after a refused "
                      "GSO message). Datagrams out per call shows how well sends are batched.", "", {"": "send_syscalls"}),
    "gso_messages": ("Sent messages that carried several datagrams to one peer (UDP GSO).", "", {"": "gso_messages"}),
    "media_errors": ("Media packets dropped, by cause.", "kind",
                     {"srtp": "srtp_failures", "malformed": "malformed", "unknown_source": "unknown_source",
                      "send": "send_failures", "events_dropped": "events_dropped", "panic": "panics"}),
}


class LossTracker:
    """Packets lost, summed over every stream the engine reported, as monotonic totals.

    The engine reports each stream's cumulative loss every ~2 s (``MediaEngine.last_stats``):
    inbound streams (publishers → node, loss seen here) and down-tracks (node → subscribers,
    loss the subscribers report). Each scrape adds what grew since the previous one; loss in
    a stream's last report before it ended is counted only if a scrape saw that report."""

    def __init__(self) -> None:
        self.totals = {"in": 0, "out": 0}
        self._seen: dict[tuple, int] = {}

    def update(self, entries: list[dict]) -> dict[str, int]:
        seen = {}
        for entry in entries:
            inbound = entry.get("kind") == "inbound"
            key = ("in", entry.get("track"), entry.get("ssrc")) if inbound else ("out", entry.get("downtrack"))
            lost = max(0, int(entry.get("lost", 0)))
            before = self._seen.get(key, 0)
            if lost > before:
                self.totals[key[0]] += lost - before
            seen[key] = max(lost, before)
        self._seen = seen
        return self.totals


class NodeCollector:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.labels = {"node_id": server.node_id, "role": server.role}
        self._loss = LossTracker()
        self._cpu = CpuSampler()

    # --- building blocks ---------------------------------------------------------------
    def _gauge(self, name: str, doc: str, value: float, **labels: str) -> Metric:
        return self._single(GaugeMetricFamily, name, doc, value, **labels)

    def _counter(self, name: str, doc: str, value: float) -> Metric:
        return self._single(CounterMetricFamily, name, doc, value)

    def _single(self, cls, name: str, doc: str, value: float, **labels: str) -> Metric:
        family = cls(NS + name, doc, labels=[*self.labels, *labels])
        family.add_metric([*self.labels.values(), *labels.values()], value)
        return family

    def _family(self, cls, name: str, doc: str, label: str, values: dict[str, float]) -> Metric:
        family = cls(NS + name, doc, labels=[*self.labels, label])
        for key, value in values.items():
            family.add_metric([*self.labels.values(), key], value)
        return family

    def _labelled(self, families: Iterable[Metric]) -> Iterator[Metric]:
        """Families made elsewhere (unregistered prometheus_client metrics), with our labels."""
        for family in families:
            family.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield family

    # --- collection ----------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        yield self._gauge("build_info", "trackyard's version (value 1).", 1, version=__version__)
        if self.server.node is not None:
            yield from self._rooms()
            yield from self._media()
            yield from self._load()
        if self.server.signal is not None:
            yield self._gauge("signal_connections", "Client signal WebSockets open on this node.",
                              len(self.server.signal.connections))
            yield self._counter("signal_bad_frames", "Client signal frames dropped (not a SignalRequest).",
                                self.server.signal.bad_frames)
            yield from self._labelled(self.server.signal.metrics.collect())
        yield from self._webhooks()
        yield from self._cluster()

    def _rooms(self) -> Iterator[Metric]:
        rooms = [r for r in list(self.server.node.rooms.rooms.values()) if not r.closed]
        participants = [p for r in rooms for p in list(r.participants.values())]
        published, subscribed = Tally(), Tally()
        for room in rooms:
            for p in list(room.participants.values()):
                for track in list(p.tracks.values()):
                    published[KINDS.get(track.type, "other")] += 1
                for sid in list(getattr(p.media, "subscriptions", ())):
                    track = room.track(sid)
                    subscribed[KINDS.get(track.type, "other") if track is not None else "other"] += 1
        yield self._gauge("rooms", "Rooms open on this node.", len(rooms))
        yield self._gauge("participants", "Participants in the rooms of this node.", len(participants))
        yield self._family(GaugeMetricFamily, "tracks_published", "Tracks published in the rooms of this node.",
                           "kind", {k: published[k] for k in ("audio", "video")} | dict(published))
        yield self._family(GaugeMetricFamily, "tracks_subscribed", "Track subscriptions on this node.",
                           "kind", {k: subscribed[k] for k in ("audio", "video")} | dict(subscribed))
        draining = bool(self.server.draining or getattr(self.server.cluster.get("media_role"), "draining", False))
        yield self._gauge("node_draining", "1 while the node drains (no new rooms), else 0.", int(draining))

    def _media(self) -> Iterator[Metric]:
        engine = getattr(self.server.node.media, "engine", None)
        if engine is None:
            return
        stats = engine.stats()
        for name, (doc, label, counters) in ENGINE_COUNTERS.items():
            if label:
                yield self._family(CounterMetricFamily, name, doc, label,
                                   {value: stats.get(key, 0) for value, key in counters.items()})
            else:
                yield self._counter(name, doc, stats.get(counters[""], 0))
        lost = self._loss.update(engine.last_stats)
        yield self._family(CounterMetricFamily, "packets_lost",
                           "RTP packets lost: in = from publishers (seen here), out = to subscribers "
                           "(as they report).", "direction", dict(lost))
        buckets, total = forward_delay_histogram(stats)
        histogram = HistogramMetricFamily(
            NS + "forward_delay_seconds",
            "Forwarding delay: from an RTP packet's receive batch to each copy queued for a subscriber.",
            labels=list(self.labels))
        histogram.add_metric(list(self.labels.values()),
                             [(floatToGoString(b), c) for b, c in buckets], total)
        yield histogram

    def _load(self) -> Iterator[Metric]:
        yield self._gauge("node_cpu_percent", "Machine CPU use since the previous scrape, percent.", self._cpu())
        yield self._gauge("node_load1", "1-minute load average per CPU.", os.getloadavg()[0] / (os.cpu_count() or 1))

    def _webhooks(self) -> Iterator[Metric]:
        stats = getattr(self.server.webhooks, "stats", None)
        if not isinstance(stats, dict):
            return
        yield self._gauge("webhook_queue_depth", "Webhook events waiting for delivery.", stats["queued"])
        yield self._family(CounterMetricFamily, "webhooks", "Webhook events by outcome: sent, failed "
                           "(gave up after retries), dropped (queue full, too old, shutting down).", "result",
                           {k: stats[k] for k in ("sent", "failed", "dropped")})
        yield self._counter("webhook_retries", "Webhook delivery retries.", stats["retries"])

    def _cluster(self) -> Iterator[Metric]:
        cluster = self.server.cluster
        store = cluster.get("store")
        if store is not None and getattr(store, "metrics", None) is not None:
            yield from self._labelled(store.metrics.collect())
        directory, placement = cluster.get("directory"), cluster.get("placement")
        if directory is not None:
            from trackyard.cluster.registry import STATES

            states = Tally(view.info.state for view in directory.nodes())
            yield self._family(GaugeMetricFamily, "cluster_media_nodes", "Media nodes registered in etcd, "
                               "as this control node sees them.", "state", {s: states[s] for s in STATES})
        if placement is not None:
            yield self._gauge("cluster_rooms", "Rooms placed in the cluster, as this control node sees them.",
                              len(placement.rooms()))


def server_registry(server: Server) -> CollectorRegistry:
    """A registry of the server's own (not the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(server))
    return registry
