"""ICE over TCP end to end: the real `livekit` SDK whose UDP to the server is blocked connects
through the server's passive TCP candidate and media flows.

Same lab as test_e2e_netns.py: the SFU in one network namespace, each SDK client in its own.
A BPF filter on a client's link drops every IPv4 UDP packet (100 %, both directions;
`NetLab.set_loss(..., udp_only=True)`), so ICE over UDP cannot succeed for it, while its
signaling WebSocket (TCP) and the server's ICE-TCP port (``rtc.tcp_port``) stay reachable.
libwebrtc pairs its active TCP candidate with the server's ``tcptype passive`` one; the test
checks that media arrives (a 440 Hz tone; 720p simulcast video decoded with its pattern), that
the filter really dropped UDP, and that the client's TCP connection to the ICE-TCP port is
established in the server's namespace (``ss``). The control: without ICE-TCP (``rtc.tcp_port:
0``) the same client never connects.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from integration.test_e2e_media import PUB_FPS, PUB_HEIGHT, PUB_WIDTH, picture, summary
from support.lab_metrics import metric, scrape
from support.lab_server import HTTP_PORT
from support.sdk_agent import CONNECT_TIMEOUT, reports

ICE_TCP_PORT = HTTP_PORT + 1  # lab_config's rtc.tcp_port
FREQ = 440.0


def ice_tcp_peers(lab) -> set[str]:
    """Client addresses with an established TCP connection to the server's ICE-TCP port."""
    out = lab.exec(lab.server_ns, ["ss", "-Htn", "state", "established", f"( sport = :{ICE_TCP_PORT} )"]).stdout
    return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize("blocked", [(0,), (0, 1)], ids=["publisher-tcp", "both-tcp"])
@pytest.mark.parametrize("v0", [False, True], ids=["v1-single-pc", "v0-two-pcs"])
async def test_e2e_audio_over_ice_tcp_when_udp_is_blocked(lab, lab_server, agents, blocked, v0):
    """Alice publishes a 440 Hz tone, Bob subscribes; the blocked clients have no UDP at all."""
    for index in blocked:
        lab.set_loss(lab.client_ns[index], 100, udp_only=True)
    room = "e2e-tcp"
    a = agents(0, "alice", room, "publish-audio", freq=FREQ, duration=8, v0=v0)
    b = agents(1, "bob", room, "subscribe-audio", from_=["alice"], duration=8, window=1.0, warmup=0.5, v0=v0)

    await a.wait_event("connected", timeout=CONNECT_TIMEOUT + 5)
    published = await a.wait_event("audio_published", timeout=10)
    await b.wait_event("connected", timeout=CONNECT_TIMEOUT + 5)
    subscribed = await b.wait_event(lambda e: e.get("event") == "track_subscribed" and e.get("kind") == "audio",
                                    timeout=15)
    assert subscribed["sid"] == published["sid"]
    stats = await b.wait_event(lambda e: e.get("event") == "audio_frame_stats" and e.get("rms", 0) > 1000,
                               timeout=15)
    assert abs(stats["freq"] - FREQ) <= 10.0, reports(a, b)

    # the blocked clients reach the server over TCP only: their UDP died in the filter
    peers = ice_tcp_peers(lab)
    for index in blocked:
        assert lab.dropped_by_loss(lab.client_ns[index]) > 0, "the filter saw UDP (ICE checks) and dropped it"
        assert lab.client_ip(index) in peers, (peers, reports(a, b))
    for agent in (a, b):
        assert await agent.wait_exit(20) == 0, reports(agent)
    measured = [e["freq"] for e in b.events("audio_frame_stats") if e["rms"] > 1000]
    assert measured and all(abs(f - FREQ) <= 10.0 for f in measured), reports(b)


@pytest.mark.lab_config(rtc={"tcp_port": 0})
async def test_e2e_without_ice_tcp_a_client_without_udp_gets_no_media(lab, lab_server, agents):
    """The control: with ``rtc.tcp_port: 0`` the same blocked publisher never gets media to
    the subscriber (so the test above passes because of ICE-TCP)."""
    lab.set_loss(lab.client_ns[0], 100, udp_only=True)
    room = "e2e-no-tcp"
    a = agents(0, "alice", room, "publish-audio", freq=FREQ, duration=8)
    b = agents(1, "bob", room, "subscribe-audio", from_=["alice"], duration=8, window=1.0, warmup=0.5)
    await b.wait_event("connected", timeout=CONNECT_TIMEOUT + 5)
    for agent in (a, b):
        await agent.wait_exit(CONNECT_TIMEOUT + 25)
    assert not [e for e in b.events("audio_frame_stats") if e["rms"] > 1000], reports(a, b)
    assert lab.dropped_by_loss(lab.client_ns[0]) > 0
    assert ice_tcp_peers(lab) == set()
    assert a.first("connected") is None and a.first("connect_timeout") is not None, reports(a)


async def test_e2e_simulcast_video_over_ice_tcp(lab, lab_server, agents):
    """1280x720 VP8 simulcast from a publisher without UDP to a subscriber without UDP: the
    subscriber decodes the pattern (frame numbers and colour bars read back) over ICE-TCP."""
    for index in (0, 1):
        lab.set_loss(lab.client_ns[index], 100, udp_only=True)
    room = "e2e-tcp-video"
    a = agents(0, "alice", room, "publish-video", duration=20, width=PUB_WIDTH, height=PUB_HEIGHT, fps=PUB_FPS)
    b = agents(1, "bob", room, "subscribe-video", duration=20)
    await a.wait_event("video_published", timeout=CONNECT_TIMEOUT + 5)
    await b.wait_event(lambda e: e.get("event") == "track_subscribed" and e.get("kind") == "video",
                       timeout=CONNECT_TIMEOUT + 5)
    try:
        shown = await b.wait_event(picture(min_frames=10), timeout=15)
    except AssertionError as exc:
        raise AssertionError(f"bob: {summary(b)}\n{reports(a, b)}") from exc
    await asyncio.sleep(4)
    # bob's windows are 1 s plus his stats call apart, later on a loaded machine: wait for 3
    deadline = time.monotonic() + 10
    while len(later := [e for e in b.events("video_stats") if e["wall"] > shown["wall"]]) < 3:
        assert time.monotonic() < deadline, summary(b)
        await asyncio.sleep(0.2)
    assert len(later) >= 3 and all(e["decoded"] >= 5 and e["bar_error"] is not None for e in later), summary(b)
    print(f"over ICE-TCP, bob: {summary(b)}")
    assert {lab.client_ip(0), lab.client_ip(1)} <= ice_tcp_peers(lab)
    # and /metrics shows it
    text = scrape(lab, lab_server)
    assert metric(text, "trackyard_tcp_connections_total", event="accepted") >= 2, text
    assert metric(text, "trackyard_tcp_frames_total", outcome="sent") > 100, text
