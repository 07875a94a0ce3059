"""The engine as an SFU forwarder over real UDP on loopback: simulcast layer selection and
switching on keyframes, keyframe requests, NACK/retransmission in both directions (plain and
RFC 4588 RTX), sender and receiver reports, transport-wide feedback, events and bad input.

Peers are the same as in test_engine.py (aiortc DTLS, pylibsrtp SRTP); the publisher sends
synthetic VP8 (a real payload descriptor, keyframes marked by the frame tag's P bit) on three
simulcast SSRCs, and the test plays both endpoints, so every packet is accounted for.
"""

import asyncio
import os
import struct
import time

import pytest

from integration.test_engine import (
    Listener,
    MediaPeer,
    eventually,
    nack_packet,
    pli_packet,
    rtp,
    rtp_ext,
    rtp_fields,
)
from trackyard.engine import MediaEngine
from trackyard.media.dtls import node_certificate

SSRCS = (0x1000_0000, 0x2000_0000, 0x3000_0000)  # layers 0, 1, 2
RTX0 = 0x1000_0001
DT_SSRC = 0xB0B
SUB_RTCP_SSRC = 0x5B5B
NTP_UNIX_OFFSET = 2_208_988_800


def vp8(key: bool, tag: bytes) -> bytes:
    """A one-packet VP8 frame: descriptor (S=1, PID 0), frame tag (P=0 on keyframes) and a tag."""
    if key:  # key frame tag, start code, 320x180
        header = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xB4, 0x00])
    else:
        header = bytes([0x11, 0x02, 0x00])
    return b"\x10" + header + tag


def tag_of(packet: dict) -> str:
    payload = packet["payload"]
    return payload[(11 if payload[1] & 1 == 0 else 4):].decode()


class SimulcastPublisher:
    """Three layers with their own SSRC, sequence numbers and timestamp base."""

    def __init__(self, peer: MediaPeer, twcc_id: int = 0):
        self.peer = peer
        self.seq = [100, 20_000, 65_530]  # layer 2 wraps at its first keyframe
        self.ts = [0, 1_000_000, 4_000_000_000]
        self.twcc_id = twcc_id
        self.twcc_seq = 0
        self.sent: dict[tuple[int, int], bytes] = {}  # (layer, seq) → plain packet

    def packet(self, layer: int, key: bool) -> bytes:
        seq = self.seq[layer]
        payload = vp8(key, f"L{layer}-{seq}".encode())
        if self.twcc_id:
            self.twcc_seq = (self.twcc_seq + 1) & 0xFFFF
            packet = rtp_ext(seq, self.ts[layer], SSRCS[layer], payload,
                             [(self.twcc_id, struct.pack("!H", self.twcc_seq))], pt=96, marker=True)
        else:
            packet = rtp(seq, self.ts[layer], SSRCS[layer], payload, pt=96)
        self.sent[(layer, seq)] = packet
        return packet

    def frame(self, keys=(), skip=()) -> None:
        """One frame on every layer (keyframes on `keys`; the packets of `skip` are lost)."""
        for layer in range(3):
            packet = self.packet(layer, layer in keys)
            if layer not in skip:
                self.peer.send_rtp(packet)
            self.seq[layer] = (self.seq[layer] + 1) & 0xFFFF
            self.ts[layer] = (self.ts[layer] + 3000) & 0xFFFFFFFF

    async def frames(self, n: int, keys=()) -> None:
        for i in range(n):
            self.frame(keys if i == 0 else ())
            await asyncio.sleep(0.01)


@pytest.fixture
async def sfu():
    listener = Listener()
    engine = MediaEngine("127.0.0.1:0", listener)
    engine.start()
    cert = node_certificate()
    pub = await MediaPeer.connect(engine, "pub", cert)
    sub = await MediaPeer.connect(engine, "sub", cert)
    track = engine.add_track(90000, kind="video", mime="video/VP8")
    for layer, ssrc in enumerate(SSRCS):
        engine.bind_stream(track, pub.handle, ssrc, layer)
    yield engine, listener, pub, sub, track
    for peer in (pub, sub):
        await peer.close()
    engine.close()


async def start_on_top_layer(engine, pub, sub, track, publisher: SimulcastPublisher) -> tuple[int, list[dict]]:
    """A max_layer=2 down-track: nothing before a keyframe, a PLI for layer 2, then layer 2 only."""
    dt = engine.add_downtrack(track, sub.handle, DT_SSRC, 97, max_layer=2, cname="sub-cname")
    await publisher.frames(5)  # delta frames only: all layers active, nothing decodable
    pli = await pub.expect_rtcp(lambda p: p.kind == "pli" and p.media == SSRCS[2], timeout=2)
    assert pli.sender != 0
    await sub.settle(0.05)
    assert not sub.backlog, "forwarded before a keyframe"
    await publisher.frames(11, keys=(0, 1, 2))
    got = [await sub.recv_rtp() for _ in range(11)]
    return dt, got


async def test_simulcast_selection_switch_and_keyframe_requests(sfu):
    engine, listener, pub, sub, track = sfu
    publisher = SimulcastPublisher(pub)
    dt, got = await start_on_top_layer(engine, pub, sub, track, publisher)
    assert [tag_of(g).split("-")[0] for g in got] == ["L2"] * 11
    assert got[0]["payload"][1] & 1 == 0, "starts on the keyframe"
    assert all(g["ssrc"] == DT_SSRC and g["pt"] == 97 for g in got)
    seqs = [g["seq"] for g in got]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(11)]
    assert [tag_of(g) for g in got] == [f"L2-{(65_535 + i) & 0xFFFF}" for i in range(11)]  # source wraps
    await eventually(lambda: (track, (0, 1, 2)) in listener.layers, what="layers event")
    await eventually(lambda: (dt, 2) in listener.downtrack_layers, what="downtrack_layer event")

    # the subscriber wants less: PLI for layer 0, layer 2 flows until layer 0's keyframe
    await pub.settle(0.05)
    pub.rtcp.clear()
    engine.set_downtrack_layer(dt, 0)
    pli = await pub.expect_rtcp(lambda p: p.kind == "pli" and p.media == SSRCS[0], timeout=2)
    await publisher.frames(3)
    before = [await sub.recv_rtp() for _ in range(3)]
    assert [tag_of(b)[:2] for b in before] == ["L2"] * 3
    await publisher.frames(5, keys=(0,))
    after = [await sub.recv_rtp() for _ in range(5)]
    assert [tag_of(a)[:2] for a in after] == ["L0"] * 5
    assert after[0]["payload"][1] & 1 == 0, "switched on the keyframe"
    out = got + before + after
    assert [o["seq"] for o in out] == [(seqs[0] + i) & 0xFFFF for i in range(len(out))], "no seq gap"
    steps = [(b["ts"] - a["ts"]) & 0xFFFFFFFF for a, b in zip(out, out[1:])]
    assert all(0 < s < 90_000 for s in steps), steps  # monotonic across the switch
    assert engine.stats()["layer_switches"] == 1
    await eventually(lambda: (dt, 0) in listener.downtrack_layers, what="downtrack_layer 0")

    # a PLI from the subscriber reaches the publisher for the layer it receives, rate-limited
    await pub.settle(0.6)
    pub.rtcp.clear()
    for _ in range(5):
        sub.send_rtcp(pli_packet(SUB_RTCP_SSRC, DT_SSRC))
    pli = await pub.expect_rtcp(lambda p: p.kind == "pli", timeout=2)
    assert pli.media == SSRCS[0]
    await pub.settle(0.3)
    assert not [p for p in pub.rtcp if p.kind == "pli"], "5 PLIs within 500 ms became one"
    await eventually(lambda: engine.stats()["plis_received"] >= 5, what="the PLIs counted")
    assert engine.stats()["plis_received"] == 5


async def test_nack_retransmission_both_ways_and_rtx(sfu):
    engine, listener, pub, sub, track = sfu
    publisher = SimulcastPublisher(pub)
    engine.bind_repair(track, pub.handle, RTX0, 0)
    dt, _ = await start_on_top_layer(engine, pub, sub, track, publisher)

    # subscriber side: a forwarded packet is "lost", NACKed, and comes back byte for byte
    await publisher.frames(3)
    raws = [await sub.recv_rtp_raw() for _ in range(3)]
    first, third = sub.unprotect(raws[0]), sub.unprotect(raws[2])
    missing = (rtp_fields(first)["seq"] + 1) & 0xFFFF
    assert rtp_fields(third)["seq"] == (missing + 1) & 0xFFFF
    sub.send_rtcp(nack_packet(SUB_RTCP_SSRC, DT_SSRC, [missing, (missing + 50) & 0xFFFF]))
    again = await sub.recv_rtp_raw()
    assert again == raws[1], "same packet, same output seq, same payload"
    resent = rtp_fields(sub.unprotect(again))
    assert resent["seq"] == missing and tag_of(resent) == f"L2-{(publisher.seq[2] - 2) & 0xFFFF}"
    stats = engine.stats()
    assert stats["nacks_received"] == 1 and stats["retransmitted"] == 1 and stats["rtx_missed"] == 1

    # publisher side: a gap on layer 2 is NACKed; the plain retransmission fills the hole
    lost_seq = publisher.seq[2]
    publisher.frame(skip=(2,))
    publisher.frame()
    nack = await pub.expect_rtcp(lambda p: p.kind == "nack", timeout=2)
    assert nack.media == SSRCS[2] and nack.lost() == [lost_seq]
    after_gap = await sub.recv_rtp()
    pub.send_rtp(publisher.sent[(2, lost_seq)])
    filled = await sub.recv_rtp()
    assert tag_of(filled) == f"L2-{lost_seq}"
    assert filled["seq"] == (after_gap["seq"] - 1) & 0xFFFF, "took the number reserved for it"

    # RFC 4588: move to layer 0 and repair a loss there through the RTX stream
    engine.set_downtrack_layer(dt, 0)
    await publisher.frames(2, keys=(0,))
    [await sub.recv_rtp() for _ in range(2)]
    lost0 = publisher.seq[0]
    publisher.frame(skip=(0,))
    publisher.frame()
    nack = await pub.expect_rtcp(lambda p: p.kind == "nack" and p.media == SSRCS[0], timeout=2)
    assert lost0 in nack.lost()
    after_gap = await sub.recv_rtp()
    original = publisher.sent[(0, lost0)]
    rtx_packet = rtp(7, struct.unpack("!I", original[4:8])[0], RTX0, struct.pack("!H", lost0) + original[12:], pt=98)
    pub.send_rtp(rtx_packet)
    repaired = await sub.recv_rtp()
    assert tag_of(repaired) == f"L0-{lost0}" and repaired["pt"] == 97 and repaired["ssrc"] == DT_SSRC
    assert repaired["seq"] == (after_gap["seq"] - 1) & 0xFFFF
    assert engine.stats()["rtx_received"] == 1

    # the stats event tells the same story (the layers keep sending meanwhile)
    seen = len(listener.stats)
    for _ in range(200):
        if len(listener.stats) > seen:
            break
        publisher.frame()
        await asyncio.sleep(0.02)
    entries = listener.stats[-1]
    out = next(e for e in entries if e["kind"] == "outbound" and e["downtrack"] == dt)
    assert out["layer"] == 0 and out["packets"] >= 20 and out["nacks"] == 2 and out["retransmitted"] == 1
    assert out["bytes"] > 0 and "bitrate" in out and "jitter_ms" in out
    inbound = {e["ssrc"]: e for e in entries if e["kind"] == "inbound"}
    assert set(inbound) == set(SSRCS)
    assert inbound[SSRCS[2]]["nacks"] >= 1 and inbound[SSRCS[0]]["rtx"] == 1
    assert inbound[SSRCS[2]]["plis"] >= 1 and inbound[SSRCS[2]]["lost"] == 0


async def test_sender_and_receiver_reports(sfu):
    engine, listener, pub, sub, track = sfu
    publisher = SimulcastPublisher(pub)
    dt, got = await start_on_top_layer(engine, pub, sub, track, publisher)
    # sender reports for the down-track, with its CNAME
    sr = await sub.expect_rtcp(lambda p: p.kind == "sr" and p.sender == DT_SSRC, timeout=2.5)
    info = sr.sr()
    sent = info["packets"]  # the report may come while the 11 packets are on their way
    assert 1 <= sent <= 11 and info["octets"] == sum(len(g["payload"]) for g in got[:sent])
    assert abs(info["ntp"] - NTP_UNIX_OFFSET - time.time()) < 5
    assert 0 <= (info["rtp_ts"] - got[sent - 1]["ts"]) & 0xFFFFFFFF < 3 * 90_000, "extrapolated from the last packet"
    sdes = await sub.expect_rtcp(lambda p: p.kind == "sdes", timeout=1)
    assert b"sub-cname" in sdes.body

    # receiver reports to the publisher about each layer (about one a second); a loss shows
    await pub.settle(0.05)
    pub.rtcp.clear()
    publisher.frame(skip=(1,))
    publisher.frame()
    gap_end = (publisher.seq[1] - 1) & 0xFFFF
    await pub.settle(1.3)
    blocks = [b for p in pub.rtcp if p.kind == "rr" for b in p.blocks()]
    latest = {b["ssrc"]: b for b in blocks}
    assert set(latest) == set(SSRCS)
    assert latest[SSRCS[0]]["lost"] == 0 and latest[SSRCS[0]]["fraction_lost"] == 0
    assert latest[SSRCS[2]]["highest_seq"] >> 16 == 1, "layer 2 wrapped once"
    assert latest[SSRCS[1]]["lost"] == 1 and latest[SSRCS[1]]["highest_seq"] & 0xFFFF == gap_end
    assert any(b["fraction_lost"] > 0 for b in blocks if b["ssrc"] == SSRCS[1])
    assert all(b["lsr"] == 0 for b in blocks), "the publisher sent no SR yet"

    # the publisher's sender report comes back as LSR/DLSR
    ntp = int((time.time() + NTP_UNIX_OFFSET) * 2**32)
    pub.send_rtcp(struct.pack("!BBHIQIII", 0x80, 200, 6, SSRCS[0], ntp, 0, 16, 100))
    rr = await pub.expect_rtcp(lambda p: p.kind == "rr" and p.blocks()[0]["ssrc"] == SSRCS[0]
                               and p.blocks()[0]["lsr"] != 0, timeout=2.5)
    assert rr.blocks()[0]["lsr"] == (ntp >> 16) & 0xFFFFFFFF and rr.blocks()[0]["dlsr"] < 2 * 65536

    # the subscriber's receiver report gives the down-track an RTT (LSR/DLSR of our SR)
    lsr = ((int((info["ntp"]) * 65536)) & 0xFFFFFFFF)
    block = struct.pack("!IIIIII", DT_SSRC, (10 << 24) | 2, 0, 450, lsr, 0)
    sub.send_rtcp(struct.pack("!BBHI", 0x81, 201, 7, SUB_RTCP_SSRC) + block)
    await asyncio.sleep(2.2)

    def outbound():
        return next((e for e in listener.stats[-1] if e["kind"] == "outbound"), None) if listener.stats else None
    # stats go out every 2 s: the first one after the report may have been taken just before it
    await eventually(lambda: outbound() is not None and outbound()["lost"] == 2, timeout=5.0,
                     what="stats with the subscriber's report")
    out = next(e for e in listener.stats[-1] if e["kind"] == "outbound")
    assert out["lost"] == 2 and abs(out["fraction_lost"] - 10 / 256) < 1e-9
    assert out["jitter_ms"] == 5.0 and "rtt_ms" in out and out["rtt_ms"] < 5000
    assert engine.stats()["sr_sent"] >= 1 and engine.stats()["rr_sent"] >= 3


async def test_transport_wide_feedback_and_stamping(sfu):
    engine, listener, pub, sub, track = sfu
    engine.set_extensions(pub.handle, twcc=3)
    engine.set_extensions(sub.handle, twcc=6, abs_send_time=2)
    publisher = SimulcastPublisher(pub, twcc_id=3)
    dt, got = await start_on_top_layer(engine, pub, sub, track, publisher)
    feedback = await pub.expect_rtcp(lambda p: p.kind == "twcc", timeout=1)
    base, count = struct.unpack("!HH", feedback.body[8:12])
    assert base >= 1 and count >= 1
    assert engine.stats()["twcc_sent"] >= 1
    # forwarded packets carry no transport-wide numbers (no send-side estimation: receivers
    # estimate and send REMB instead), and the publisher's numbering does not leak
    assert got and all(not g["exts"] for g in got), [g["exts"] for g in got]


async def test_transport_wide_feedback_keeps_up_with_a_burst(sfu):
    """A burst that fills the arrival recorder between two 100 ms feedback rounds is reported
    early, not dropped: every transport-wide number of the burst is in some feedback."""
    engine, listener, pub, sub, track = sfu
    engine.set_extensions(pub.handle, twcc=3)
    publisher = SimulcastPublisher(pub, twcc_id=3)
    await start_on_top_layer(engine, pub, sub, track, publisher)
    await pub.settle(0.3)
    pub.rtcp.clear()
    first = publisher.twcc_seq + 1
    for _ in range(1000):  # 3,000 packets, as fast as this loop sends them
        publisher.frame()
    burst = set(range(first, publisher.twcc_seq + 1))
    reported: set[int] = set()
    deadline = asyncio.get_running_loop().time() + 5
    while not burst <= reported and asyncio.get_running_loop().time() < deadline:
        try:
            feedback = await pub.expect_rtcp(lambda p: p.kind == "twcc", timeout=2)
        except TimeoutError:
            break  # no more feedback: what is missing was dropped
        base, count = struct.unpack("!HH", feedback.body[8:12])
        reported.update(range(base, base + count))
    missing = sorted(burst - reported)
    assert not missing, f"{len(missing)} of {len(burst)} arrivals never reported (first {missing[:5]})"


async def test_garbage_and_replays_are_dropped_and_counted(sfu):
    engine, listener, pub, sub, track = sfu
    publisher = SimulcastPublisher(pub)
    dt, got = await start_on_top_layer(engine, pub, sub, track, publisher)
    await sub.settle(0.1)
    before = engine.stats()
    replay = pub.send_rtp(publisher.packet(2, False))
    publisher.seq[2] += 1
    await sub.recv_rtp()
    for _ in range(20):
        pub.send_raw(os.urandom(120))                          # random bytes from a bound address
        pub.send_raw(b"\x80" + os.urandom(60))                 # SRTP-looking, bad tag
        pub.send_raw(b"\x81\xc9" + os.urandom(40))             # SRTCP-looking, bad tag
        pub.send_raw(b"\x80\x60\x00")                          # truncated RTP
        pub.send_raw(replay)                                   # replayed packet
    stranger = await MediaPeer.connect(engine, "stranger", node_certificate())
    stranger.send_raw(b"\x90" + os.urandom(100))
    engine.remove_transport(stranger.handle)
    stranger.send_raw(b"\x90" + os.urandom(100))  # its address is unknown now
    await sub.settle(0.3)
    assert not sub.backlog, "garbage was forwarded"
    stats = engine.stats()
    dropped = sum(stats[k] - before[k] for k in ("malformed", "srtp_failures", "unknown_source"))
    assert dropped >= 80, {k: stats[k] - before[k] for k in stats}
    assert stats["forwarded"] == before["forwarded"] + 1
    assert stats["panics"] == 0
    # still forwarding, still continuous
    await publisher.frames(2)
    more = [await sub.recv_rtp() for _ in range(2)]
    assert [m["seq"] for m in more] == [(got[-1]["seq"] + 2 + i) & 0xFFFF for i in range(2)]
    await stranger.close()


async def test_pause_and_resume_wait_for_a_keyframe_without_a_seq_hole(sfu):
    engine, listener, pub, sub, track = sfu
    publisher = SimulcastPublisher(pub)
    dt, got = await start_on_top_layer(engine, pub, sub, track, publisher)
    engine.pause_downtrack(dt, True)
    await asyncio.sleep(0.05)
    await publisher.frames(5, keys=(2,))
    await sub.settle(0.1)
    assert not sub.backlog, "paused down-track forwarded"
    await pub.settle(0.5)
    pub.rtcp.clear()
    engine.pause_downtrack(dt, False)
    await pub.expect_rtcp(lambda p: p.kind == "pli" and p.media == SSRCS[2], timeout=2)
    await publisher.frames(3)  # delta frames: not decodable after the gap
    await sub.settle(0.1)
    assert not sub.backlog, "resumed on a delta frame"
    await publisher.frames(3, keys=(2,))
    resumed = [await sub.recv_rtp() for _ in range(3)]
    assert resumed[0]["payload"][1] & 1 == 0
    assert [r["seq"] for r in resumed] == [(got[-1]["seq"] + 1 + i) & 0xFFFF for i in range(3)]
    assert (resumed[0]["ts"] - got[-1]["ts"]) & 0xFFFFFFFF == 9 * 3000  # the source clock went on
