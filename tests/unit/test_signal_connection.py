"""A signal connection's keepalives: answered as they are pushed, in order with the rest of
what is sent, never handed to the host; they keep the connection from expiring, silence
expires it."""

from __future__ import annotations

import asyncio
import time

from livekit.protocol import rtc

from trackyard.signal.connection import SignalConnection


async def outgoing(link: SignalConnection, n: int) -> list[rtc.SignalResponse]:
    return [rtc.SignalResponse.FromString(await asyncio.wait_for(link.next_outgoing(), 2)) for _ in range(n)]


async def test_ping_req_is_answered_in_order_and_never_reaches_the_host() -> None:
    link = SignalConnection(label="alice@r")
    link.send(rtc.SignalResponse(refresh_token="before"))
    await link.push(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=1234, rtt=20)))
    link.send(rtc.SignalResponse(refresh_token="after"))
    await link.push(rtc.SignalRequest(leave=rtc.LeaveRequest()))

    first, pong, last = await outgoing(link, 3)
    assert first.refresh_token == "before" and last.refresh_token == "after"
    assert pong.WhichOneof("message") == "pong_resp"
    assert pong.pong_resp.last_ping_timestamp == 1234
    assert abs(pong.pong_resp.timestamp - time.time() * 1000) < 5000
    request = await asyncio.wait_for(link.receive(), 2)  # the host sees the leave, not the ping
    assert request is not None and request.WhichOneof("message") == "leave"


async def test_legacy_ping_gets_a_pong_with_the_server_time() -> None:
    link = SignalConnection(label="bob@r")
    await link.push(rtc.SignalRequest(ping=7))
    (pong,) = await outgoing(link, 1)
    assert pong.WhichOneof("message") == "pong"
    assert abs(pong.pong - time.time() * 1000) < 5000


async def test_keepalives_hold_off_expiry_and_silence_ends_the_host_s_receive() -> None:
    link = SignalConnection(label="carol@r")
    receiving = asyncio.create_task(link.receive())
    heard = link.last_heard
    await asyncio.sleep(0.05)
    await link.push(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=1)))
    assert link.last_heard > heard
    # a keepalive just now: not silent for 10 s, whatever the clock says since it was created
    assert not link.expire_if_silent(10.0, time.monotonic())
    await asyncio.sleep(0.05)
    assert not receiving.done() and not link.timed_out
    # 10 s after the keepalive: expired, and the waiting receive ends with None
    assert link.expire_if_silent(10.0, link.last_heard + 10.0)
    assert await asyncio.wait_for(receiving, 2) is None
    assert link.timed_out
    assert await link.receive() is None
    assert not link.expire_if_silent(10.0, link.last_heard + 20.0)  # once


async def test_expiry_with_requests_queued_and_a_closed_link() -> None:
    link = SignalConnection(label="dave@r", max_incoming=2)
    await link.push(rtc.SignalRequest(leave=rtc.LeaveRequest()))
    await link.push(rtc.SignalRequest(leave=rtc.LeaveRequest()))
    # the queue is full (the host is busy): expiry still takes, the next receive ends
    assert link.expire_if_silent(1.0, link.last_heard + 1.0)
    assert await link.receive() is None
    closed = SignalConnection(label="erin@r")
    closed.close()
    await closed.push(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=2)))  # nothing answered
    assert await asyncio.wait_for(closed.next_outgoing(), 2) is None
    assert not closed.expire_if_silent(1.0, closed.last_heard + 5.0)
