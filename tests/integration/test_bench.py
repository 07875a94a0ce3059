"""`trackyard bench` against a running trackyard on 127.0.0.1: the harness's numbers are
consistent (media sent by the publishers vs received by the subscribers, per layer; the
server's own counters; subscriptions expected vs made), nothing is lost on loopback, the
output files exist and parse, `compare` makes a table, bad arguments are refused clearly.

No slack: the load generator marks the window on every publisher stream and subscribers
count only packets sent inside it (by their tags); the run waits for the last ones to arrive.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.servers import API_KEY, API_SECRET, InProcessServer, ServerProcess, make_config

ROOMS, SUBSCRIBERS = 2, 3


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trackyard.bench", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def server_process():
    srv = ServerProcess(make_config()).start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def cli_run(server_process, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    proc = bench("--url", server_process.ws_url, "--api-key", API_KEY, "--api-secret", API_SECRET,
                 "--rooms", str(ROOMS), "--audio-publishers", "1", "--video-publishers", "1",
                 "--subscribers", str(SUBSCRIBERS), "--duration", "5", "--join-rate", "20",
                 "--server-pid", str(server_process.proc.pid), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:] + server_process.logs()[-3000:]
    return proc, out


def test_small_scenario_numbers_are_consistent(cli_run):
    proc, out = cli_run
    r = json.loads((out / "result.json").read_text())
    participants = ROOMS * (2 + SUBSCRIBERS)
    assert r["joins"]["attempted"] == participants and r["joins"]["failed"] == 0, r["joins"]
    assert r["subscriptions"] == {"expected": ROOMS * SUBSCRIBERS * 2, "made": ROOMS * SUBSCRIBERS * 2}
    # like the SDKs, every peer connection has its SCTP association; publishers open _reliable
    # and _lossy, the server opens them on the subscriber connections
    assert r["data_channels"] == {"peer_connections": participants, "sctp_connected": participants,
                                  "channels_open": 2 * participants}, r["data_channels"]
    for key in ("join_response_ms", "connected_ms"):
        assert r["joins"][key]["count"] == participants and r["joins"][key]["p50"] > 0
    assert r["first_packet_ms"]["count"] == ROOMS * SUBSCRIBERS
    # no loss on loopback, by sequence numbers
    assert r["totals"]["loss_pct"] == 0, r["media"]
    audio, video = r["media"]["audio"], r["media"]["video"]
    # every subscriber got every audio packet its room's publisher sent in the window
    assert audio["forwarded_expected"] == SUBSCRIBERS * audio["publisher_packets_sent"]
    assert audio["publisher_packets_sent"] >= ROOMS * 50 * 4  # 50 packets/s for ~5 s
    for m in (audio, video):
        assert m["forwarded_expected"] > 0
        assert m["forwarded_received"] == m["forwarded_expected"], m
        assert m["packets_lost"] == 0 and m["latency_ms"]["p50"] is not None and m["latency_ms"]["p50"] >= 0
        assert m["streams"] == ROOMS * SUBSCRIBERS
        assert m["forwarded_other_layer"] == 0  # trackyard forwards exactly the requested layer
    # speaker layout: the one video publisher is shown HIGH, so subscribers get the 720p layer
    # (~1.7 Mbit/s) plus audio
    assert 1200 < r["subscriber_kbps"]["p50"] < 2600, r["subscriber_kbps"]
    assert r["totals"]["egress_packets"] == audio["packets_received"] + video["packets_received"]
    assert r["totals"]["other_packets"] == 0
    server = r["server"]
    assert server["pids"] and server["cpu_seconds"] > 0 and server["cpu_us_per_egress_packet"] > 0
    assert r["scenario"]["rooms"] == ROOMS and "api_secret" not in r["scenario"]
    assert r["loadgen"]["event_loop_lag_ms"]["count"] > 30
    assert [e["t"] for e in r["series"]] == sorted(e["t"] for e in r["series"]) and r["series"]


def test_outputs_exist_and_parse(cli_run):
    proc, out = cli_run
    summary = (out / "summary.md").read_text()
    assert "| joins ok / attempted | 10 / 10 |" in summary
    assert "| SCTP associations / peer connections; data channels open | 10 / 10; 20 |" in summary
    assert summary in proc.stdout  # the summary is also printed
    for png in ("cpu_loss_vs_subscribers.png", "latency.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "measuring" in proc.stderr  # progress lines


def test_compare_makes_a_side_by_side_table(cli_run, tmp_path):
    _, out = cli_run
    other = json.loads((out / "result.json").read_text())
    other["server"]["cpu_us_per_egress_packet"] = other["server"]["cpu_us_per_egress_packet"] * 2
    (tmp_path / "b.json").write_text(json.dumps(other))
    proc = bench("compare", str(out / "result.json"), str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| server CPU µs / egress packet"))
    assert row.endswith("| 2.00× |"), row
    assert "| joins ok | 10 | 10 | 1.00× |" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--rooms", "0", "--audio-publishers", "1"], "--rooms must be 1..1000"),
    (["--subscribers", "5"], "nothing to measure"),
    (["--rooms", "1000", "--audio-publishers", "1", "--subscribers", "3"], "exceed the limit of 3000"),
    (["--audio-publishers", "1", "--duration", "99999"], "--duration must be"),
    (["--audio-publishers", "1", "--url", "localhost:7880"], "--url must be"),
    (["--audio-publishers", "1", "--server-pid", "abc"], "PIDs must be integers"),
    (["--audio-publishers", "1", "--server-process-name", "no-such-process-xyz"], "no process named"),
    (["--preset", "nope"], "invalid choice"),
])
def test_bad_arguments_are_refused_clearly(args, message):
    proc = bench(*args, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr


def test_compare_refuses_files_that_are_not_results(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    proc = bench("compare", str(tmp_path / "x.json"), str(tmp_path / "x.json"), timeout=30)
    assert proc.returncode == 2 and "not a trackyard bench result" in proc.stderr


async def test_harness_agrees_with_the_server_counters():
    """In process, so the engine's counters can be read: every RTP packet the publishers sent
    was decrypted by the server, and every packet it forwarded reached a subscriber."""
    from trackyard.bench.runner import Run
    from trackyard.bench.scenario import Scenario

    server = await InProcessServer(make_config()).start()
    try:
        sc = Scenario(url=server.ws_url, api_key=API_KEY, api_secret=API_SECRET, rooms=1, audio_publishers=1,
                      video_publishers=1, subscribers=2, duration=2.0, join_rate=50)
        r = await Run(sc).run()
        engine = server.node.media.engine.stats()
    finally:
        await server.stop()
    totals = r["run_totals"]
    assert r["joins"]["failed"] == 0
    assert engine["srtp_failures"] == 0
    assert engine["rtp_packets"] == totals["publisher_rtp_packets"], (engine, totals)
    assert engine["forwarded"] == totals["subscriber_rtp_packets"], (engine, totals)
    assert r["server"] == {"pids": []}  # no PID given: no CPU numbers
