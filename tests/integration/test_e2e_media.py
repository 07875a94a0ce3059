"""End-to-end media with the real `livekit` Python SDK: video, simulcast, mute, unpublish,
loss and room isolation (issue 3, acceptance).

Same lab as test_e2e_netns.py (fixtures in conftest.py): the SFU in one network namespace,
every SDK client in one of its own. The publisher draws `support/video_pattern.py` frames
(colour bars, a scrolling band, the frame number in black/white blocks) into an
`rtc.VideoSource` at PUB_WIDTH x PUB_HEIGHT, PUB_FPS, VP8 simulcast (the SDK's layers: q
320x180, h 640x360, f 1280x720); subscribers decode with `rtc.VideoStream` and report once a
second (``video_stats``): frames, size, frame numbers read back (gaps = frames skipped),
the colour-bar check, and libwebrtc's inbound-rtp counters. Agents' events carry ``wall``
(time.time()) so that events of different agents can be ordered. Every wait is bounded;
agents are stopped by PID as soon as a test has what it needs.

Run against the reference SFU with TRACKYARD_E2E_REFERENCE=/path/to/livekit-server (any
build, e.g. ``go build`` of github.com/livekit/livekit-server/cmd/server v1.13.5): every
test here passes against it, which is how a failure is told to be trackyard's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from support.sdk_agent import CONNECT_TIMEOUT, SdkAgent, reports

PUB_WIDTH, PUB_HEIGHT, PUB_FPS = 1280, 720, 15
TOP = (PUB_WIDTH, PUB_HEIGHT)
LOW = (320, 180)               # the q layer of a 1280x720 simulcast publication
LAYERS = {(1280, 720), (640, 360), (320, 180)}
BAR_TOLERANCE = 40.0           # worst bar-centre deviation (0-255) still called "the pattern"
LONG = 40                      # agent --duration: the tests stop their agents when done
JOIN = CONNECT_TIMEOUT + 5     # connect / publish / subscribe events
FIRST_PICTURE = 10.0           # subscribed -> a window of pattern frames (at a given size)
CENSUS = Path(__file__).resolve().parents[1] / "support" / "udp_census.py"


# --- helpers --------------------------------------------------------------------------
def is_event(name: str, **fields):
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())


def picture(*, size: tuple[int, int] | None = None, after: float = 0.0, min_frames: int = 3):
    """Matches a `video_stats` window, ending after wall time `after`, with at least
    `min_frames` frames that read back as the pattern (frame number with a valid check)
    and a colour-bar check within tolerance, all at `size` if given."""
    def match(e: dict) -> bool:
        return (e.get("event") == "video_stats" and e["wall"] > after and e["decoded"] >= min_frames
                and e["bar_error"] is not None and e["bar_error"] <= BAR_TOLERANCE
                and (size is None or (e["width"], e["height"]) == size and e["sizes"] == [f"{size[0]}x{size[1]}"]))
    return match


def windows(agent: SdkAgent, start: float = 0.0, end: float = float("inf")) -> list[dict]:
    """`video_stats` windows lying entirely within wall time [start, end] (1 s windows)."""
    return [e for e in agent.events("video_stats") if e["wall"] - 1.0 >= start and e["wall"] <= end]


def summary(agent: SdkAgent, start: float | None = None) -> str:
    """One line per `video_stats` window: seconds since `start` (wall; default: the agent's
    start), frames, size, pattern frames, unreadable, skipped, black, bar error."""
    if start is None:
        start = (agent.first("start") or {"wall": 0.0})["wall"]
    return " | ".join(f"{e['wall'] - start:.1f}s {e['frames']}f {e['width']}x{e['height']} ok={e['decoded']} "
                      f"bad={e['bad']} gap={e['gaps']} blk={e['black']} bar={e['bar_error']}"
                      for e in agent.events("video_stats"))


async def picture_or_fail(agent: SdkAgent, *others: SdkAgent, timeout: float = FIRST_PICTURE, **match) -> dict:
    try:
        return await agent.wait_event(picture(**match), timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{agent.name}: no window of pattern frames {match} within {timeout}s\n"
                             f"{agent.name}: {summary(agent)}\n{reports(agent, *others)}") from exc


_COUNTERS = ("packets_sent", "retransmitted", "nacks", "plis", "frames_encoded")


def publish_totals(agent: SdkAgent, before: float = float("inf")) -> dict:
    """The publisher's libwebrtc outbound counters, summed over its layers and per layer
    (``layers``: rid -> counters), from the last `video_publish_stats` at or before wall
    time `before`."""
    stats = [e for e in agent.events("video_publish_stats") if e["wall"] <= before]
    layers = stats[-1]["layers"] if stats else []
    totals = {k: sum(layer[k] for layer in layers) for k in _COUNTERS}
    totals["layers"] = {layer["rid"]: {k: layer[k] for k in _COUNTERS} for layer in layers}
    return totals


async def stop_all(*agents: SdkAgent) -> None:
    await asyncio.gather(*(asyncio.to_thread(a.process.stop, 5.0) for a in agents))


# --- tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("lab", [3], indirect=True)
@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_e2e_video_simulcast_quality(lab, lab_server, agents, tmp_path, codec):
    """A publishes 1280x720 simulcast; B and C decode the top layer with the right picture;
    B asks for LOW and gets the q layer's size (320x180) while C keeps 1280x720."""
    room = "e2e-video"
    a = agents(0, "alice", room, "publish-video", duration=LONG, width=PUB_WIDTH, height=PUB_HEIGHT, fps=PUB_FPS,
               codec=codec)
    published = await a.wait_event("video_published", timeout=JOIN)
    assert published["codec"] == codec
    switch = tmp_path / "bob-low"
    b = agents(1, "bob", room, "subscribe-video", duration=LONG, quality="low", quality_file=switch)
    c = agents(2, "carol", room, "subscribe-video", duration=LONG)
    for sub in (b, c):
        got = await sub.wait_event(is_event("track_subscribed", kind="video"), timeout=JOIN)
        assert (got["identity"], got["sid"], got["source"]) == ("alice", published["sid"], "SOURCE_CAMERA")

    # both decode the top layer (libwebrtc enables it once its bandwidth estimate allows),
    # and it is the picture that was sent
    for sub in (b, c):
        await picture_or_fail(sub, a, size=TOP)
    tracks = [t for p in await asyncio.to_thread(lab_server.participants, room) if p["identity"] == "alice"
              for t in p["tracks"]]
    assert [t["mime"].lower() for t in tracks] == [f"video/{codec}"], tracks  # what the server forwards

    # bob asks for LOW; bob's frames become 320x180, carol's stay 1280x720
    switch.touch()
    asked = await b.wait_event("video_quality_set", timeout=5)
    low = await picture_or_fail(b, a, size=LOW, after=asked["wall"] + 1.0, timeout=8)
    await c.wait_event(lambda e: e.get("event") == "video_stats" and e["wall"] > low["wall"] + 1.0, timeout=5)
    await stop_all(a, b, c)
    print(f"bob:   {summary(b, asked['wall'])}\ncarol: {summary(c, asked['wall'])}")
    after = windows(c, asked["wall"] + 1.0)
    assert after and all(w["sizes"] == [f"{TOP[0]}x{TOP[1]}"] and w["decoded"] for w in after), summary(c)
    # bob's picture went on across the switch: frames kept arriving in every window
    across = windows(b, asked["wall"], low["wall"])
    assert all(w["frames"] > 0 for w in across), summary(b, asked["wall"])


@pytest.mark.parametrize("v0", [False, True], ids=["v1-single-pc", "v0-two-pcs"])
async def test_e2e_audio_and_video_from_one_publisher(lab, lab_server, agents, v0):
    """A publishes a 440 Hz microphone track and a simulcast camera track; B gets both:
    the tone (FFT) and decoded frames of the pattern at one of the layers' sizes."""
    room, freq = "e2e-av", 440.0
    a = agents(0, "alice", room, "publish-audio,publish-video", duration=LONG, freq=freq, v0=v0)
    b = agents(1, "bob", room, "subscribe-audio,subscribe-video", duration=LONG, from_=["alice"], v0=v0)
    audio = await a.wait_event("audio_published", timeout=JOIN)
    video = await a.wait_event("video_published", timeout=JOIN)
    subs = {}
    for kind in ("audio", "video"):
        subs[kind] = await b.wait_event(is_event("track_subscribed", kind=kind), timeout=JOIN)
    assert (subs["audio"]["sid"], subs["audio"]["source"]) == (audio["sid"], "SOURCE_MICROPHONE")
    assert (subs["video"]["sid"], subs["video"]["source"]) == (video["sid"], "SOURCE_CAMERA")

    tone = await b.wait_event(lambda e: e.get("event") == "audio_frame_stats" and e["rms"] > 1000, timeout=10)
    frames = await picture_or_fail(b, a)
    await stop_all(a, b)
    print(f"tone {tone['freq']} Hz; video: {summary(b)}")
    assert abs(tone["freq"] - freq) <= 10.0, reports(b)
    assert (frames["width"], frames["height"]) in LAYERS, summary(b)


async def test_e2e_mute_unmute(lab, lab_server, agents, tmp_path):
    """A mutes its camera, then unmutes it: B sees track_muted then track_unmuted, the
    server's TrackInfo says muted, no picture reaches B while muted, and it resumes."""
    room, muted_for, control = "e2e-mute", 5.0, tmp_path / "alice"
    b = agents(1, "bob", room, "subscribe-video", duration=LONG)
    await b.wait_event("connected", timeout=JOIN)
    a = agents(0, "alice", room, "publish-video,mute-cycle", duration=LONG, control_file=control)
    published = await a.wait_event("video_published", timeout=JOIN)
    flowing = await picture_or_fail(b, a)  # flowing before the mute

    control.with_suffix(".mute").touch()
    muted = await a.wait_event("local_muted", timeout=5)
    assert flowing["wall"] < muted["wall"]
    seen_muted = await b.wait_event(is_event("track_muted", sid=published["sid"]), timeout=5)
    assert seen_muted["identity"] == "alice"
    info = await asyncio.to_thread(lab_server.participants, room, wait_for=["alice"], timeout=5)
    tracks = {t["sid"]: t for p in info if p["identity"] == "alice" for t in p["tracks"]}
    assert tracks.get(published["sid"], {}).get("muted") is True, info

    await asyncio.sleep(max(0.0, muted["wall"] + muted_for - time.time()))
    control.with_suffix(".unmute").touch()
    unmuted = await a.wait_event("local_unmuted", timeout=5)
    seen_unmuted = await b.wait_event(is_event("track_unmuted", sid=published["sid"]), timeout=5)
    assert seen_unmuted["wall"] > seen_muted["wall"]
    resumed = await picture_or_fail(b, a, after=unmuted["wall"], timeout=8)
    await stop_all(a, b)
    start = muted["wall"]
    print(f"muted at 0 s, unmuted at {unmuted['wall'] - start:.1f} s, picture again at "
          f"{resumed['wall'] - start:.1f} s: {summary(b, start)}")
    during = windows(b, seen_muted["wall"] + 1.0, unmuted["wall"])
    assert len(during) >= 2, summary(b, start)
    # no picture while muted: libwebrtc sends black frames for a disabled track; an SFU
    # stops forwarding a muted track, so at most stray frames (and never the pattern)
    assert all(w["decoded"] == 0 for w in during), summary(b, start)
    assert sum(w["frames"] for w in during) <= len(during), f"frames forwarded while muted: {summary(b, start)}"


async def test_e2e_unpublish(lab, lab_server, agents, tmp_path):
    """A unpublishes its camera: B gets track_unpublished, frames stop, and ListParticipants
    shows A without the track."""
    room, control = "e2e-unpublish", tmp_path / "alice"
    b = agents(1, "bob", room, "subscribe-video", duration=LONG)
    await b.wait_event("connected", timeout=JOIN)
    a = agents(0, "alice", room, "publish-video,unpublish-after", duration=LONG, control_file=control)
    published = await a.wait_event("video_published", timeout=JOIN)
    await b.wait_event(is_event("track_subscribed", sid=published["sid"]), timeout=JOIN)
    info = await asyncio.to_thread(lab_server.participants, room, wait_for=["alice"], timeout=5)
    assert published["sid"] in {t["sid"] for p in info if p["identity"] == "alice" for t in p["tracks"]}, info
    await picture_or_fail(b, a)  # media flows; then A unpublishes

    control.with_suffix(".unpublish").touch()
    done = await a.wait_event("unpublish_done", timeout=10)
    gone = await b.wait_event(is_event("track_unpublished", sid=published["sid"]), timeout=8)
    assert gone["identity"] == "alice" and gone["kind"] == "video"

    deadline, tracks = time.monotonic() + 8, None
    while time.monotonic() < deadline:
        info = await asyncio.to_thread(lab_server.participants, room, wait_for=["alice"], timeout=5)
        alice = [p for p in info if p["identity"] == "alice"]
        tracks = [t["sid"] for p in alice for t in p["tracks"]]
        if alice and published["sid"] not in tracks:
            break
        await asyncio.sleep(0.3)
    assert alice and published["sid"] not in tracks, f"ListParticipants still shows the track: {info}"
    await b.wait_event(lambda e: e.get("event") == "video_stats" and e["wall"] > gone["wall"] + 2.0, timeout=5)
    await stop_all(a, b)
    print(f"unpublish_done -> track_unpublished at bob: {gone['wall'] - done['wall']:.2f} s; "
          f"video: {summary(b, done['wall'])}")
    # no picture after the unpublish (libwebrtc may still hand out a stray tiny black frame)
    assert all(w["decoded"] == 0 for w in windows(b, gone["wall"] + 1.0)), summary(b, done["wall"])
    assert a.events("error") == [], reports(a)


async def test_e2e_video_under_loss(lab, lab_server, agents, record_property):
    """5 % random UDP loss (both directions) on the publisher's link: B's video keeps
    flowing at a rate close to the clean one, thanks to retransmissions (NACK/RTX). Prints
    what was lost and what was recovered: packets the filter dropped, NACKs the publisher
    got and packets it retransmitted (per layer), and what B saw (frame rate, skipped frame
    numbers, libwebrtc's lost/NACK/PLI/freeze counters) with and without the loss."""
    room, clean_s, loss_s, percent = "e2e-loss", 4, 8, 5.0
    b = agents(1, "bob", room, "subscribe-video", duration=LONG)
    await b.wait_event("connected", timeout=JOIN)
    a = agents(0, "alice", room, "publish-video", duration=LONG)
    await a.wait_event("video_published", timeout=JOIN)
    first = await picture_or_fail(b, a)

    await asyncio.sleep(clean_s + 0.2)
    t_loss = time.time()
    lab.set_loss(lab.client_ns[0], percent, udp_only=True)
    try:
        await asyncio.sleep(loss_s + 0.2)
    finally:
        t_end = time.time()
        lab.set_loss(lab.client_ns[0], 0)
    await asyncio.sleep(1.2)  # the last publisher stats
    dropped = lab.dropped_by_loss(lab.client_ns[0])
    await stop_all(a, b)

    clean = windows(b, first["wall"], t_loss)
    lossy = windows(b, t_loss + 1.0, t_end)  # skip the first second (in-flight)
    pub_before, pub_after = publish_totals(a, t_loss), publish_totals(a, t_end + 1.1)
    rtp = [w["rtp"] for w in b.events("video_stats") if w.get("rtp")]

    def rate(ws, key):
        return round(sum(w[key] for w in ws) / max(len(ws), 1), 1)

    def delta(key):
        inside = [w["rtp"] for w in windows(b, t_loss, t_end + 1.0) if w.get("rtp")]
        before = [w["rtp"] for w in windows(b, 0, t_loss) if w.get("rtp")]
        return (inside[-1][key] - before[-1][key]) if inside and before else None

    result = {
        "loss_percent": percent, "dropped_by_filter": dropped,
        "clean_fps": rate(clean, "decoded"), "loss_fps": rate(lossy, "decoded"),
        "clean_gaps_per_s": rate(clean, "gaps"), "loss_gaps_per_s": rate(lossy, "gaps"),
        "publisher_packets_sent": pub_after["packets_sent"] - pub_before["packets_sent"],
        "publisher_nacks_received": pub_after["nacks"] - pub_before["nacks"],
        "publisher_retransmitted": pub_after["retransmitted"] - pub_before["retransmitted"],
        "publisher_plis_received": pub_after["plis"] - pub_before["plis"],
        "subscriber_packets_lost": delta("packets_lost"), "subscriber_nacks_sent": delta("nacks"),
        "subscriber_plis_sent": delta("plis"), "subscriber_freezes": delta("freezes"),
        "subscriber_retransmitted_received": delta("retransmitted"),
        # per layer: libwebrtc's padding (bandwidth probes, counted on one layer) is lost
        # and NACKed too, but padding is never retransmitted
        "publisher_layers": {rid: {k: c[k] - pub_before["layers"].get(rid, {}).get(k, 0)
                                   for k in ("packets_sent", "nacks", "retransmitted")}
                             for rid, c in pub_after["layers"].items()},
    }
    record_property("loss_recovery", result)
    print(f"loss recovery: {json.dumps(result)}\nbob: {summary(b, t_loss)}")
    assert len(clean) >= 2 and len(lossy) >= loss_s - 2, summary(b, t_loss)
    assert dropped > 0, "the loss filter dropped nothing"
    # NACK/RTX recovery towards the publisher happened ...
    assert result["publisher_retransmitted"] > 0, f"no retransmission from the publisher: {result}"
    # ... and the picture kept flowing: at most one second without a frame (a lost key frame
    # packet costs a PLI round trip; with both directions lossy that can fill one window on a
    # loaded machine), and the rate stayed close
    stalls = [w for w in lossy if w["decoded"] == 0]
    assert len(stalls) <= 1, summary(b, t_loss)
    assert result["loss_fps"] >= 0.6 * result["clean_fps"], f"{result}\n{summary(b, t_loss)}"
    assert rtp, "no inbound-rtp stats"


@pytest.mark.parametrize("lab", [3], indirect=True)
async def test_e2e_other_room_gets_nothing(lab, lab_server, agents):
    """D, alone in another room, learns of no participant or track of A's room and receives
    no RTP packet at all while A's audio and video flow to B (a packet census on D's and
    B's links: RTP is recognisable by its clear header even under SRTP)."""
    a = agents(0, "alice", "e2e-room-1", "publish-audio,publish-video", duration=LONG)
    b = agents(1, "bob", "e2e-room-1", "subscribe-audio,subscribe-video", duration=LONG)
    d = agents(2, "dave", "e2e-room-2", "subscribe-audio,subscribe-video", duration=LONG)
    await d.wait_event("connected", timeout=JOIN)
    await b.wait_event(is_event("track_subscribed", kind="video"), timeout=JOIN)
    await b.wait_event(is_event("track_subscribed", kind="audio"), timeout=JOIN)

    seconds = 4.0
    census = {}
    for name, index in (("dave", 2), ("bob", 1)):
        out = lab.run(lab.client_ns[index], [sys.executable, str(CENSUS), "--dev", "ty0", "--seconds", str(seconds)],
                      stdout=Path(a.out_path).parent / f"census-{name}.json")
        census[name] = out
    snmp_before = udp_in_datagrams(lab, lab.client_ns[2])
    for proc in census.values():
        assert proc.wait(seconds + 10) == 0, proc.stdout()
    snmp_after = udp_in_datagrams(lab, lab.client_ns[2])
    result = {name: json.loads(proc.stdout().strip().splitlines()[-1]) for name, proc in census.items()}
    info_2 = await asyncio.to_thread(lab_server.participants, "e2e-room-2", wait_for=["dave"], timeout=5)
    await stop_all(a, b, d)
    print(f"census over {seconds} s: dave in {result['dave']['in']}, bob in {result['bob']['in']}; "
          f"dave's UDP InDatagrams +{snmp_after - snmp_before}")

    # the measure works: bob, in A's room, got plenty of RTP in the same window
    assert result["bob"]["in"]["rtp"] > 10 * seconds, result["bob"]
    # dave got none, and his other UDP is his own connection's upkeep (STUN, DTLS/SCTP, RTCP)
    assert result["dave"]["in"]["rtp"] == 0, result["dave"]
    assert result["dave"]["in"]["bytes"] < result["bob"]["in"]["bytes"] / 20, result
    # and heard of no one: no participant, no track of A's room
    for name in ("participant_connected", "track_published", "track_subscribed", "data_received"):
        assert d.events(name) == [], reports(d)
    assert d.first("connected")["remote_participants"] == [], reports(d)
    assert d.first("signal_join")["other_participants"] == [], reports(d)
    assert [p["identity"] for p in info_2] == ["dave"], info_2


def udp_in_datagrams(lab, ns: str) -> int:
    """Udp InDatagrams of /proc/net/snmp in `ns` (UDP delivered to that namespace's sockets)."""
    text = lab.exec(ns, ["cat", "/proc/net/snmp"], timeout=5).stdout
    head, values = [line.split() for line in text.splitlines() if line.startswith("Udp:")][:2]
    return int(values[head.index("InDatagrams")])


@pytest.mark.lab_config(signal={"ping_interval": 2, "ping_timeout": 6, "reconnect_timeout": 15})
@pytest.mark.parametrize("v0", [False, True], ids=["v1-single-pc", "v0-two-pcs"])
async def test_e2e_resume_after_network_outage(lab, lab_server, agents, v0):
    """B's link goes dark for ~8 s: B's SDK notices the silent signal connection, resumes
    when the link is back (same participant, ReconnectResponse, ICE restart in its offer) and
    the tone flows again. (The SDK does not ping while it resumes, so a ping timeout of a few
    seconds would cut the resumed connection: 6 s is used here, LiveKit's default is 15 s.)"""
    room, freq = "e2e-resume", 440.0
    a = agents(0, "alice", room, "publish-audio", freq=freq, duration=LONG)
    b = agents(1, "bob", room, "subscribe-audio", from_=["alice"], duration=LONG, window=1.0, warmup=0.5, v0=v0)
    await b.wait_event(lambda e: e.get("event") == "audio_frame_stats" and e.get("rms", 0) > 1000, timeout=JOIN)
    before = {p["identity"]: p["sid"] for p in await asyncio.to_thread(lab_server.participants, room)}

    lab.set_loss(lab.client_ns[1], 100)  # everything, signaling included
    await b.wait_event("reconnecting", timeout=15)
    await asyncio.sleep(2)
    lab.set_loss(lab.client_ns[1], 0)
    back = await b.wait_event("reconnected", timeout=20)
    after_stats = await b.wait_event(lambda e: e.get("event") == "audio_frame_stats" and e.get("rms", 0) > 1000
                                     and e["wall"] > back["wall"] + 1.0, timeout=10)
    assert abs(after_stats["freq"] - freq) <= 10.0, reports(a, b)
    after = {p["identity"]: p["sid"] for p in await asyncio.to_thread(lab_server.participants, room)}
    assert after == before, "a resume keeps the participants (no rejoin)\n" + lab_server.logs()[-4000:] + b.report(200)
    logs = lab_server.logs()
    assert "resumed in room" in logs and "ICE restart" in logs, logs[-3000:]
    for agent in (a, b):
        agent.kill()
