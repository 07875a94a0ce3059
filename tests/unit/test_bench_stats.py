"""The bench's pure pieces: percentiles, histograms over the measurement window, loss from
sequence numbers, layouts and layers, scenario bounds and presets, /proc CPU parsing, and
the SDP a simulated publisher writes."""

from __future__ import annotations

import os

import pytest

from trackyard.bench import stats
from trackyard.bench.client_sdp import (
    OfferedTrack,
    allowed,
    candidate_from_trickle,
    dtls_role,
    publisher_offer,
)
from trackyard.bench.cpu import ServerCpu, pids_by_name, process_cpu_seconds
from trackyard.bench.media_plan import forwarded_layer, requested_qualities, video_layers
from trackyard.bench.scenario import MAX_PARTICIPANTS, PRESETS, Scenario, ScenarioError, from_preset
from trackyard.bench.signal import rtc_url
from trackyard.media.sdp import EXT_MID, EXT_RID, mid_to_track_info, parse_sdp

HIGH, MEDIUM, LOW = 2, 1, 0


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) is None
    assert stats.percentile([3, 1, 2], 0) == 1


def test_histogram_percentile_and_window_subtraction():
    before = [(100.0, 10), (200.0, 5)]
    after = [(100.0, 10), (200.0, 25), (5000.0, 1)]
    window = stats.subtract_histograms(after, before)
    assert window == [(200.0, 20), (5000.0, 1)]
    assert stats.histogram_percentile(window, 50) == 200.0
    assert stats.histogram_percentile(window, 99) == 5000.0
    assert stats.histogram_percentile([], 50) is None
    merged = stats.merge_histograms([[(1.0, 2)], [(1.0, 3), (2.0, 1)]])
    assert merged == {1.0: 5, 2.0: 1}


def test_loss_from_sequence_numbers_in_the_window():
    def snap(packets, expected, lost, in_window):
        return {"transports": [{"id": 3, "tx": [], "rx": [{
            "ssrc": 9, "kind": "audio", "packets": packets, "bytes": packets * 100, "expected": expected,
            "lost": lost, "jitter_us": 500, "first_unix_us": 1, "latency": [(50.0, packets)],
            "sources": [(77, packets, in_window)]}]}]}

    window = stats.window_streams(snap(100, 100, 0, 0), snap(245, 250, 5, 143))
    s = window[(3, 9)]
    assert (s["packets"], s["expected"], s["lost"], s["bytes"]) == (145, 150, 5, 14500)
    # packets of publisher SSRC 77 that were sent inside the window (the load generator's count)
    assert s["sources"] == {77: 143}
    assert s["latency"] == [(50.0, 145)]
    assert stats.loss_ratio(150, 145) == pytest.approx(5 / 150)
    assert stats.loss_ratio(0, 0) == 0.0
    assert stats.loss_ratio(10, 12) == 0.0  # duplicates never make loss negative


def test_sent_in_window_per_ssrc():
    after = {"transports": [{"id": 1, "rx": [], "tx": [{"ssrc": 5, "packets": 60, "window_packets": 50},
                                                      {"ssrc": 6, "packets": 4, "window_packets": 4}]}]}
    assert stats.sent_in_window(after) == {5: 50, 6: 4}


def test_layouts_pick_layers_like_lk_load_test():
    tracks = [f"TR_{i}" for i in range(8)]
    speaker = requested_qualities("speaker", tracks)
    assert speaker["TR_0"] == HIGH and all(speaker[f"TR_{i}"] == LOW for i in range(1, 6))
    assert speaker["TR_6"] is None and speaker["TR_7"] is None  # off screen: disabled
    assert set(requested_qualities("3x3", tracks).values()) == {MEDIUM}
    layers = video_layers("high", True)
    assert [lay.rid for lay in layers] == ["q", "h", "f"]
    assert forwarded_layer(layers, HIGH).rid == "f"
    assert forwarded_layer(video_layers("medium", True), HIGH).rid == "h"  # best at or below
    assert forwarded_layer(layers, None) is None
    single = video_layers("high", False)
    assert len(single) == 1 and single[0].rid == "" and single[0].width == 1280


def test_scenario_bounds_and_presets():
    assert Scenario(audio_publishers=1).validate()
    with pytest.raises(ScenarioError, match="exceed the limit"):
        Scenario(rooms=2, audio_publishers=1, subscribers=MAX_PARTICIPANTS).validate()
    with pytest.raises(ScenarioError, match="--join-rate"):
        Scenario(audio_publishers=1, join_rate=0).validate()
    with pytest.raises(ScenarioError, match="--layout"):
        Scenario(audio_publishers=1, layout="2x2").validate()
    for name in PRESETS:
        sc = from_preset(name).validate()
        assert sc.preset == name and sc.expected_seconds() < 120
    storm = from_preset("join-storm", subscribers=500, url="ws://10.0.0.1:7880")
    assert storm.subscribers == 500 and storm.join_rate == 50 and storm.url == "ws://10.0.0.1:7880"
    with pytest.raises(ScenarioError, match="unknown preset"):
        from_preset("b9")
    assert "api_secret" not in Scenario(audio_publishers=1).to_dict()


def test_rtc_url():
    assert rtc_url("ws://h:7880") == "ws://h:7880/rtc"
    assert rtc_url("https://h/lk/") == "wss://h/lk/rtc"
    with pytest.raises(ValueError):
        rtc_url("h:7880")


def test_cpu_from_proc_stat(tmp_path):
    # the command name may hold spaces and parentheses
    fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 30
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (a (b) c) " + " ".join(fields) + "\n")
    (tmp_path / "42" / "comm").write_text("livekit-server\n")
    (tmp_path / "42" / "cmdline").write_bytes(b"/usr/bin/livekit-server\0--dev\0")
    assert process_cpu_seconds(42, tmp_path) == pytest.approx(400 / os.sysconf("SC_CLK_TCK"))  # utime + stime
    assert pids_by_name("livekit-server", tmp_path) == [42]
    assert pids_by_name("trackyard", tmp_path) == []
    cpu = ServerCpu([42], tmp_path)
    first = cpu.seconds()
    (tmp_path / "42" / "stat").unlink()  # the process exited: its last reading stays
    assert cpu.seconds() == first
    with pytest.raises(OSError):
        ServerCpu([43], tmp_path)


def test_publisher_offer_looks_like_an_sdk_offer():
    tracks = [OfferedTrack("audio", "0", "cid-a", "cn", ssrc=1234),
              OfferedTrack("video", "1", "cid-v", "cn", rids=["q", "h", "f"])]
    sd = publisher_offer(ufrag="abcd", pwd="p" * 24, fingerprint="AA:BB", candidate=("127.0.0.1", 5000),
                         tracks=tracks)
    text = sd.to_sdp()
    assert "a=group:BUNDLE 0 1 2" in text and "a=simulcast:send f;h;q" in text and "a=setup:actpass" in text
    back = parse_sdp(text)
    info = mid_to_track_info(back)
    assert info["0"].ssrcs == [1234] and info["0"].track_id == "cid-a"
    assert info["1"].rids == ["f", "h", "q"] and info["1"].ssrcs == []  # rid-based, like the SDKs
    assert info["1"].extmap[EXT_MID] == 4 and info["1"].extmap[EXT_RID] == 10
    assert back.media[2].kind == "application" and back.media[0].candidates[0].port == 5000
    assert all(m.rtcp_mux for m in back.media[:2])
    # the answer's setup decides our DTLS role
    back.media[0].setup = "passive"
    assert dtls_role(back) == "client"
    back.media[0].setup = "active"
    assert dtls_role(back) == "server"


def test_candidates_stay_on_loopback_for_a_loopback_server():
    assert allowed("127.0.0.1", True) and not allowed("10.1.2.3", True)
    assert allowed("10.1.2.3", False) and not allowed("0.0.0.0", False) and not allowed("x.local", False)
    init = '{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"0","sdpMLineIndex":0}'
    assert candidate_from_trickle(init, True) == ("127.0.0.1", 7882)
    assert candidate_from_trickle(init.replace("127.0.0.1", "192.168.1.5"), True) is None
    assert candidate_from_trickle(init.replace("udp", "tcp"), False) is None
    assert candidate_from_trickle("not json", False) is None


def test_open_file_limit_is_raised_or_refused(monkeypatch):
    import resource

    from trackyard.bench import runner

    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(limits))
    runner.ensure_file_limit(100)  # 456 needed: nothing to do
    runner.ensure_file_limit(1000)
    assert calls == [(2256, 4096)]
    with pytest.raises(ScenarioError, match="raise it with `ulimit -n`"):
        runner.ensure_file_limit(3000)
