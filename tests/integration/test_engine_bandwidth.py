"""Subscriber bandwidth allocation in the engine over real UDP on loopback: a subscriber's REMB
estimates cap the simulcast layer it gets and lift the cap again (docs/media.md, "Subscriber
bandwidth").

Same peers as test_engine_rtcp.py; the publisher sends three layers of different sizes (about
90, 260 and 500 kbit/s) with a keyframe on every layer twice a second, and the subscriber
plays a libwebrtc receiver: REMB every 200 ms.
"""

import asyncio
import struct

from integration.test_engine import eventually, rtp
from integration.test_engine_rtcp import DT_SSRC, SSRCS, SUB_RTCP_SSRC, sfu, vp8  # noqa: F401 (fixture)

FRAME_S = 0.02
PAYLOAD = (200, 600, 1200)  # bytes per frame and layer


def remb_packet(sender: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """draft-alvestrand-rmcat-remb: PSFB FMT 15, "REMB", exponent and 18-bit mantissa."""
    exp = 0
    while bitrate >> exp > 0x3FFFF:
        exp += 1
    fci = b"REMB" + struct.pack("!BBH", len(ssrcs), (exp << 2) | (bitrate >> exp >> 16), (bitrate >> exp) & 0xFFFF)
    fci += b"".join(struct.pack("!I", s) for s in ssrcs)
    return struct.pack("!BBHII", 0x8F, 206, 2 + len(fci) // 4, sender, 0) + fci


async def publish(pub, stop: asyncio.Event) -> None:
    seq, ts, frame = [1, 1, 1], [0, 0, 0], 0
    while not stop.is_set():
        for layer in range(3):
            payload = vp8(frame % 25 == 0, f"L{layer}".encode().ljust(PAYLOAD[layer], b"."))
            pub.send_rtp(rtp(seq[layer], ts[layer], SSRCS[layer], payload, pt=96))
            seq[layer] += 1
            ts[layer] += 1800
        frame += 1
        await asyncio.sleep(FRAME_S)


async def estimate(sub, bitrate: int, seconds: float) -> None:
    for _ in range(int(seconds / 0.2)):
        sub.send_rtcp(remb_packet(SUB_RTCP_SSRC, bitrate, [DT_SSRC]))
        await sub.settle(0.2)  # and drain what is forwarded meanwhile
        sub.backlog.clear()


def last_layer(listener, dt):
    changes = [layer for d, layer in listener.downtrack_layers if d == dt]
    return changes[-1] if changes else None


async def test_remb_caps_the_layer_and_room_lifts_the_cap(sfu):  # noqa: F811
    engine, listener, pub, sub, track = sfu
    stop = asyncio.Event()
    sender = asyncio.create_task(publish(pub, stop))
    try:
        dt = engine.add_downtrack(track, sub.handle, DT_SSRC, 97, max_layer=2, cname="sub")
        await estimate(sub, 5_000_000, 3.0)  # plenty: the top layer, uncapped
        assert last_layer(listener, dt) == 2, listener.downtrack_layers
        assert engine.stats()["remb_received"] >= 10

        # the estimate falls to 300 kbit/s: 270 k with headroom holds layer 1 (~260 k), not 2
        await estimate(sub, 300_000, 2.0)
        assert last_layer(listener, dt) == 1, listener.downtrack_layers
        assert engine.stats()["bwe_downgrades"] >= 1
        await eventually(lambda: any(e.get("downtrack") == dt and e["bwe_cap"] == 1 and e["bwe_estimate"] == 300_000
                                     for e in engine.last_stats), timeout=3, what="stats with the cap")

        # far below layer 1: the lowest layer
        await estimate(sub, 150_000, 2.0)
        assert last_layer(listener, dt) == 0, listener.downtrack_layers

        # room again: one step at a time after the estimate has had room for 3 s, then uncapped
        await estimate(sub, 5_000_000, 9.0)
        assert last_layer(listener, dt) == 2, listener.downtrack_layers
        assert engine.stats()["bwe_upgrades"] >= 2
        await eventually(lambda: any(e.get("downtrack") == dt and e["bwe_cap"] == -1 for e in engine.last_stats),
                         timeout=3, what="stats without a cap")
    finally:
        stop.set()
        await sender
