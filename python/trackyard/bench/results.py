"""Puts a run's numbers together (the JSON result of `trackyard bench`).

Everything is measured inside the measurement window (after all joins and subscriptions
settled), except the join timings. Media sent vs received is checked exactly through the
payload tags: the load generator marks the window on every publisher stream, each subscriber
counts per publisher SSRC the packets it got that were sent inside the window, and for each of
its subscriptions the expected count is what the publisher sent in the window on the layer the
SFU should forward for the requested quality (audio: the one stream). After the media stops,
the run waits until nothing more arrives, so the difference is what was lost.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections import Counter
from pathlib import Path

from trackyard import engine

from . import stats
from .media_plan import forwarded_layer
from .participant import Participant, Publisher, Subscriber
from .scenario import Scenario

KINDS = ("audio", "video")


def _machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def data_channels(participants: list[Participant]) -> dict:
    """SCTP associations and open data channels of the connected participants' peer
    connections (publishers open `_reliable`/`_lossy` like the SDKs; the server opens them on
    subscriber connections)."""
    peers = [p.peer for p in participants if p.error is None and p.timings.connected and p.peer is not None]
    return {"peer_connections": len(peers), "sctp_connected": sum(pc.sctp_connected for pc in peers),
            "channels_open": sum(pc.channels_open for pc in peers)}


def _joins(participants: list[Participant]) -> dict:
    ok = [p for p in participants if p.error is None and p.timings.connected]
    reasons = Counter(p.error for p in participants if p.error)
    return {
        "attempted": len(participants),
        "succeeded": len(ok),
        "failed": len(participants) - len(ok),
        "failure_reasons": dict(reasons.most_common(5)),
        "ws_upgrade_ms": stats.summary([v for p in ok if (v := p.timings.ms("upgraded")) is not None]),
        "join_response_ms": stats.summary([v for p in ok if (v := p.timings.ms("joined")) is not None]),
        "connected_ms": stats.summary([v for p in ok if (v := p.timings.ms("connected")) is not None]),
    }


def _source_of(pub: Publisher, kind: str, quality: int | None) -> int | None:
    """The publisher SSRC a subscriber should receive for a kind and requested quality."""
    if kind == "audio":
        return next((s for s, (k, _) in pub.ssrcs.items() if k == "audio"), None)
    if quality is None or not pub.video:
        return None
    layer = forwarded_layer(pub.video, quality if quality >= 0 else max(lay.quality for lay in pub.video))
    return next((s for s, (k, rid) in pub.ssrcs.items() if k == "video" and layer and rid == layer.rid), None)


def build(sc: Scenario, participants: list[Participant], before: dict, after: dict, window: dict,
          series: list[dict], *, loadgen_cpu_total: float) -> dict:
    seconds = max(1e-6, window["seconds"])
    pubs = [p for p in participants if isinstance(p, Publisher)]
    subs = [p for p in participants if isinstance(p, Subscriber)]
    rx = stats.window_streams(before, after)
    sent = stats.sent_in_window(after)
    by_sid: dict[str, Publisher] = {sid: p for p in pubs for sid in p.track_sids.values()}

    per_sub: list[dict] = []
    forwarded = {k: {"expected": 0, "received": 0, "other": 0} for k in KINDS}
    subscriptions = {"expected": 0, "made": 0}
    for p in subs:
        if p.error or p.peer is None:
            continue
        streams = [s for (tid, _), s in rx.items() if tid == p.peer.handle]
        subscriptions["expected"] += sc.tracks_per_room
        subscriptions["made"] += len(p.subscriptions)
        got: Counter = Counter()
        for s in streams:
            got.update(s["sources"])
        for sub in p.subscriptions.values():
            pub = by_sid.get(sub.track_sid)
            if pub is None:
                continue
            src = _source_of(pub, sub.kind, sub.quality)
            layer_srcs = [s for s, (k, _) in pub.ssrcs.items() if k == sub.kind]
            if src is not None:
                forwarded[sub.kind]["expected"] += sent.get(src, 0)
                forwarded[sub.kind]["received"] += got.get(src, 0)
            # packets of another layer of the track than the one the requested quality maps to
            forwarded[sub.kind]["other"] += sum(got.get(s, 0) for s in layer_srcs if s != src)
        first = [s["first_unix_us"] for s in streams if s["first_unix_us"]]
        per_sub.append({
            "identity": p.identity,
            "room": p.room,
            "tracks": len(p.subscriptions),
            "kbps": round(sum(s["bytes"] for s in streams) * 8 / seconds / 1000, 1),
            "packets": sum(s["packets"] for s in streams),
            "lost": sum(s["lost"] for s in streams),
            "first_packet_ms": round(min(first) / 1000 - p.timings.started_unix * 1000, 1) if first else None,
        })

    media: dict[str, dict] = {}
    for kind in KINDS:
        streams = [s for s in rx.values() if s["kind"] == kind]
        if not streams:
            continue
        expected = sum(s["expected"] for s in streams)
        received = sum(s["packets"] for s in streams)
        hist = stats.merge_histograms(s["latency"] for s in streams)
        lat = {f"p{q}": (round(v / 1000, 3) if (v := stats.histogram_percentile(hist.items(), q)) is not None else None)
               for q in (50, 90, 99)}
        lat["max"] = round(max(hist) / 1000, 3) if hist else None
        fw = forwarded[kind]
        media[kind] = {
            "streams": len(streams),
            "packets_received": received,
            "packets_expected_by_seq": expected,
            "packets_lost": sum(s["lost"] for s in streams),
            "loss_pct": round(100 * stats.loss_ratio(expected, received), 4),
            "jitter_ms": stats.summary([s["jitter_us"] / 1000 for s in streams], 3),
            "latency_ms": lat,
            "latency_histogram_ms": sorted((round(v / 1000, 3), c) for v, c in hist.items()),
            "publisher_packets_sent": sum(n for ssrc, n in sent.items()
                                          if any(ssrc in p.ssrcs and p.ssrcs[ssrc][0] == kind for p in pubs)),
            "forwarded_expected": fw["expected"],
            "forwarded_received": fw["received"],
            "forwarded_ratio": round(fw["received"] / fw["expected"], 5) if fw["expected"] else None,
            "forwarded_other_layer": fw["other"],
        }

    # packets on payload types the offer did not name (e.g. bandwidth probing) are egress work
    # too, but no media: counted apart
    other = [s for s in rx.values() if s["kind"] not in KINDS]
    egress = sum(s["packets"] for s in rx.values())
    egress_bytes = sum(s["bytes"] for s in rx.values())
    n_subs = len(per_sub)
    cpu_s = window.get("server_cpu_seconds")
    server = {"pids": window.get("server_pids", [])}
    if cpu_s is not None:
        server.update({
            "cpu_seconds": round(cpu_s, 3),
            "cpu_pct_of_one_core": round(100 * cpu_s / seconds, 1),
            "cpu_pct_of_machine": round(100 * cpu_s / seconds / (os.cpu_count() or 1), 1),
            "cpu_us_per_egress_packet": round(cpu_s * 1e6 / egress, 3) if egress else None,
            "cpu_us_per_subscriber_second": round(cpu_s * 1e6 / seconds / n_subs, 1) if n_subs else None,
        })
    kbps = [s["kbps"] for s in per_sub]
    first_ms = [s["first_packet_ms"] for s in per_sub if s["first_packet_ms"] is not None]
    all_expected = sum(m["packets_expected_by_seq"] for m in media.values())
    all_received = sum(m["packets_received"] for m in media.values())
    return {
        "schema": "trackyard-bench/1",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(
            (p.timings.started_unix for p in participants if p.timings.started_unix), default=time.time()))),
        "commit": _commit(),
        "engine_version": engine.version(),
        "machine": _machine(),
        "scenario": sc.to_dict(),
        "window_seconds": round(seconds, 3),
        "settle_seconds": round(window.get("settle_seconds", 0.0), 3),
        "joins": _joins(participants),
        "subscriptions": subscriptions,
        "data_channels": window.get("data_channels") or data_channels(participants),
        "first_packet_ms": stats.summary(first_ms, 1),
        "subscriber_kbps": stats.summary(kbps, 1),
        "media": media,
        "totals": {
            "egress_packets": egress,
            "egress_pps": round(egress / seconds, 1),
            "egress_mbps": round(egress_bytes * 8 / seconds / 1e6, 2),
            "ingress_packets": sum(sent.values()),
            "ingress_pps": round(sum(sent.values()) / seconds, 1),
            "loss_pct": round(100 * stats.loss_ratio(all_expected, all_received), 4),
            "other_packets": sum(s["packets"] for s in other),
        },
        "run_totals": {  # whole run, warm-up included: to check against the server's own counters
            "publisher_rtp_packets": sum(s["packets"] for t in after.get("transports", []) for s in t["tx"]),
            "subscriber_rtp_packets": sum(s["packets"] for t in after.get("transports", []) for s in t["rx"]),
        },
        "server": server,
        "loadgen": {"cpu_seconds_window": round(window.get("loadgen_cpu_seconds", 0.0), 3),
                    "cpu_pct_of_one_core": round(100 * window.get("loadgen_cpu_seconds", 0.0) / seconds, 1),
                    "cpu_seconds_total": round(loadgen_cpu_total, 3),
                    "send_failures": after.get("send_failures", 0)},
        "subscribers": per_sub,
        "series": series,
    }
