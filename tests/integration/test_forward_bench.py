"""The forwarding micro-benchmark (rust/bench, `forward_bench`) in its quick mode: it builds,
runs its socket sections on 127.0.0.1 and reports numbers that agree with each other — every
ingress packet fanned out to every sink, everything delivered, GSO sending fewer messages than
datagrams, the paced section spread over its duration. Timings are recorded in
docs/benchmarks.md, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "rust" / "bench"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("forward_bench") / "forward_bench.json"
    proc = subprocess.run(["cargo", "run", "--quiet", "--release", "--bin", "forward_bench", "--",
                           "--quick", "--sections", "cd", "--out", str(out)],
                          cwd=BENCH, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(c) Batched UDP IO" in proc.stdout and "(d) Paced like the presets" in proc.stdout
    return json.loads(out.read_text())


def test_saturated_fanout_numbers_add_up(report):
    rows = report["fanout_udp_loopback"]
    assert len(rows) == 3 * 4 * 2  # profiles × fan-outs × (sendmmsg, GSO)
    assert report["quick"] is True and report["crypto_floor"] == [] and report["fanout_no_io"] == []
    for r in rows:
        label = f"{r['profile']} {r['size']} B N={r['subscribers']} gso={r['gso']}"
        assert r["pace"] is None, label
        assert not r["hit_time_limit"], label
        assert r["egress_packets"] == r["ingress_packets"] * r["subscribers"], label
        assert r["delivered_packets"] >= 0.99 * r["egress_packets"], label
        assert r["cpu_us_per_egress_pkt_forwarder"] > 0, label
        if r["gso"] and r["subscribers"] <= 100:
            # a receive batch holds several packets per sink: they share GSO messages
            assert r["messages"] < r["egress_packets"] / 2, label
        elif not r["gso"]:
            assert r["messages"] == r["egress_packets"], label


def test_paced_fanout_follows_the_presets_pace(report):
    rows = report["fanout_udp_paced"]
    loads = [(r["pace"]["load"], r["pace"]["rooms"], r["subscribers"]) for r in rows]
    assert loads == [("audio room", 1, 400), ("audio room", 1, 800), ("livestream", 1, 500),
                     ("livestream", 1, 1000), ("join storm", 1, 500), ("small rooms", 50, 4), ("meeting", 1, 25)]
    for r in rows:
        pace, label = r["pace"], f"{r['pace']['load']} N={r['subscribers']}"
        assert r["gso"] is True and r["profile"] == "SRTP_AEAD_AES_128_GCM", label
        assert not r["hit_time_limit"], label
        # every stream sent its bursts, and each packet of a forwarded stream reached every
        # sink of its room (and no sink of another room)
        per_stream = [(c, int(c["bursts_per_s"] * pace["secs"]) * c["burst"]) for c in pace["classes"]]
        ingress = pace["rooms"] * sum(c["streams_per_room"] * n for c, n in per_stream)
        egress = pace["rooms"] * sum(c["streams_per_room"] * n for c, n in per_stream if c["forwarded"])
        assert r["ingress_packets"] == ingress, label
        assert r["egress_packets"] == egress * r["subscribers"], label
        assert r["delivered_packets"] >= 0.99 * r["egress_packets"], label
        # paced, not as fast as possible: the ingress is spread over the run's duration
        assert r["wall_s"] >= 0.9 * pace["secs"], label
        assert 0 < r["messages"] <= r["egress_packets"], label
        assert pace["preset"] == pace["load"].replace(" ", "-"), label
    # the mixed rows send what the presets' load generator sends: small rooms 14,000 packets/s
    # in, 44,000 out; the meeting 8,750 in (25 audio, 25 × 3 simulcast layers), 40,250 out
    secs = rows[0]["pace"]["secs"]
    assert (rows[5]["ingress_packets"] / secs, rows[5]["egress_packets"] / secs) == (14_000, 44_000)
    assert (rows[6]["ingress_packets"] / secs, rows[6]["egress_packets"] / secs) == (8_750, 40_250)


def test_paced_runs_only_the_rows_of_the_presets_asked_for(tmp_path):
    """`--paced` (what bench/floor_ratio.py uses) picks (d)'s rows by `trackyard bench` preset."""
    out = tmp_path / "d.json"
    proc = subprocess.run(["cargo", "run", "--quiet", "--release", "--bin", "forward_bench", "--",
                           "--quick", "--sections", "d", "--paced", "join-storm,livestream", "--out", str(out)],
                          cwd=BENCH, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["fanout_udp_loopback"] == []
    rows = [(r["pace"]["preset"], r["subscribers"]) for r in report["fanout_udp_paced"]]
    assert rows == [("livestream", 500), ("livestream", 1000), ("join-storm", 500)]

    bad = subprocess.run(["cargo", "run", "--quiet", "--release", "--bin", "forward_bench", "--",
                          "--quick", "--sections", "d", "--paced", "webinar", "--out", str(tmp_path / "x.json")],
                         cwd=BENCH, capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2
    assert "no (d) row stands for \"webinar\"" in bad.stderr
    assert not (tmp_path / "x.json").exists()
