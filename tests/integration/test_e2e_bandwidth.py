"""Subscriber bandwidth adaptation end to end, with the real `livekit` Python SDK.

Lab as in test_e2e_media.py: A publishes 1280x720 VP8 simulcast (q 320x180, h 640x360,
f 1280x720); B subscribes, over the v0 subscriber connection (the server's offer: REMB with
abs-send-time, no transport-cc) or the v1 single connection (forwarded packets carry no
transport-wide numbers, so the receiver sends REMB), and asks for HIGH. Then B's downlink (the server's side of
its veth, ``to-c1``) is limited with a token bucket below the top layer's rate and above the
lowest one's: B's REMB estimate falls and the server caps B's layer, so B's decoded frames
become a lower layer's size; once the limit is lifted, probing brings the top layer back.

Bounds are for correctness only (generous); the times measured are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from support.lab_metrics import metric, scrape
from support.sdk_agent import SdkAgent, reports
from integration.test_e2e_media import JOIN, PUB_FPS, PUB_HEIGHT, PUB_WIDTH, TOP, picture, stop_all, summary

LONG = 170               # agent --duration: stopped as soon as the test has its answer
DOWN_BOUND = 20.0        # limit applied -> a lower layer decoded
UP_BOUND = 60.0          # limit lifted -> the top layer decoded again (probe backoff up to 20 s)
HOLD = 6.0               # limited for at least this long after the downgrade (probes fail meanwhile)


def lower_layer(*, after: float):
    """A `video_stats` window after wall time `after` whose pattern frames are all of one size
    smaller than the top layer."""
    def match(e: dict) -> bool:
        return (e.get("event") == "video_stats" and e["wall"] > after and e["decoded"] >= 3
                and len(e["sizes"]) == 1 and e["width"] * e["height"] < TOP[0] * TOP[1])
    return match


def target_rates(publisher: SdkAgent) -> dict[str, int]:
    """rid -> libwebrtc's target bitrate (bit/s) of each simulcast layer, from the last stats."""
    stats = publisher.events("video_publish_stats")
    return {layer["rid"]: int(layer["target_bitrate"] or 0) for layer in (stats[-1]["layers"] if stats else [])}


async def wait_or_fail(agent: SdkAgent, match, timeout: float, what: str, *others: SdkAgent, since: float) -> dict:
    try:
        return await agent.wait_event(match, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{agent.name}: {what} not within {timeout}s\n{summary(agent, since)}\n"
                             f"{reports(agent, *others)}") from exc


@pytest.mark.parametrize("v0", [True, False], ids=["v0", "v1"])
@pytest.mark.parametrize("lab", [2], indirect=True)
async def test_e2e_subscriber_downlink_limit_lowers_then_restores_the_layer(lab, lab_server, agents, v0):
    room = "e2e-bandwidth"
    a = agents(0, "alice", room, "publish-video", duration=LONG, width=PUB_WIDTH, height=PUB_HEIGHT, fps=PUB_FPS)
    await a.wait_event("video_published", timeout=JOIN)
    b = agents(1, "bob", room, "subscribe-video", duration=LONG, v0=v0, quality="high", quality_after=1.0)
    await b.wait_event(lambda e: e.get("event") == "track_subscribed" and e.get("kind") == "video", timeout=JOIN)
    await b.wait_event("video_quality_set", timeout=10)
    start = time.time()
    await wait_or_fail(b, picture(size=TOP), 20, "the top layer", a, since=start)
    # the subscriber connection carries REMB, and the server reads it
    deadline = time.monotonic() + 15
    while metric(scrape(lab, lab_server), "trackyard_remb_received_total") == 0:
        assert time.monotonic() < deadline, "no REMB from the subscriber within 15 s"
        await asyncio.sleep(1.0)

    # B's downlink below the top layer, above the lowest one
    rates = target_rates(a)
    top, low = rates.get("f", 0), rates.get("q", 0)
    assert top > 0 and low > 0, rates
    kbit = max(3 * low, min(top // 2, 700_000)) // 1000
    lab.set_rate(lab.server_ns, kbit, link="to-c1")
    limited = time.time()
    down = await wait_or_fail(b, lower_layer(after=limited), DOWN_BOUND, f"a lower layer under {kbit} kbit/s", a,
                              since=start)
    after_down = scrape(lab, lab_server)
    await asyncio.sleep(HOLD)

    lab.set_rate(lab.server_ns, 0, link="to-c1")
    freed = time.time()
    up = await wait_or_fail(b, picture(size=TOP, after=freed), UP_BOUND, "the top layer after the limit", a,
                            since=start)
    final = scrape(lab, lab_server)
    await stop_all(a, b)
    print(f"layer targets {rates}; limit {kbit} kbit/s\n"
          f"downgrade seen {down['wall'] - limited:.1f} s after the limit ({down['width']}x{down['height']}), "
          f"top layer back {up['wall'] - freed:.1f} s after lifting it\n"
          f"REMBs {metric(final, 'trackyard_remb_received_total'):.0f}, caps "
          + ", ".join(f"{c} {metric(final, 'trackyard_bwe_layer_caps_total', change=c):.0f}"
                      for c in ("down", "up", "probe"))
          + f"\nbob: {summary(b, start)}")
    # it was the server's doing: a cap went down before the smaller frames were seen
    assert metric(after_down, "trackyard_bwe_layer_caps_total", change="down") >= 1, after_down
