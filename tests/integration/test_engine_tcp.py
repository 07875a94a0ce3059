"""ICE over TCP (RFC 6544, RFC 4571 framing) in the Rust media engine, over real loopback TCP.

A TCP peer connects to the engine's ICE-TCP port and speaks length-prefixed frames: its STUN
binding request must get an integrity-checked response before anything else is accepted;
after that DTLS (aiortc) and SRTP (libsrtp) flow exactly as over UDP, between TCP and UDP
peers in both directions. Garbage closes the one connection that sent it and is counted.
"""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from aioice import stun

from integration.test_engine import (
    SERVER_PWD,
    Handler,
    Peer,
    binding_request,
    connect_client,
    eventually,
    ice_check,
    open_peer,
    rtp,
)
from trackyard.engine import MediaEngine
from trackyard.media.dtls import node_certificate


class FramedTransport:
    """The `sendto` side of a TCP peer: every packet goes out as one RFC 4571 frame."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def sendto(self, data: bytes, addr=None) -> None:
        self.writer.write(struct.pack("!H", len(data)) + data)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def get_extra_info(self, name: str):
        return self.writer.get_extra_info(name)

    def close(self) -> None:
        self.writer.close()


class TcpPeer(Peer):
    """A client's TCP connection to the ICE-TCP port: frames received go to `inbox`; `closed`
    is set when the server closes the connection."""

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> "TcpPeer":
        reader, writer = await asyncio.open_connection(*address)
        peer = cls()
        peer.transport = FramedTransport(writer)
        peer.reader = reader
        peer.closed = asyncio.Event()
        peer.reading = asyncio.ensure_future(peer._read(reader))
        return peer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                self.inbox.put_nowait(await reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()


@pytest.fixture
async def engine():
    eng = MediaEngine("127.0.0.1:0", tcp="127.0.0.1:0")
    eng.start()
    yield eng
    eng.close()


async def wait_closed(peer: TcpPeer, timeout: float = 3.0) -> bool:
    try:
        await asyncio.wait_for(peer.closed.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False


async def test_without_tcp_there_is_no_listener():
    eng = MediaEngine("127.0.0.1:0")
    try:
        assert eng.tcp_address is None
    finally:
        eng.close()


async def test_framed_binding_request_gets_an_integrity_checked_response(engine):
    handler = Handler()
    engine.add_transport("tcp1", SERVER_PWD, handler)
    peer = await TcpPeer.connect(engine.tcp_address)
    # a check with the wrong password is refused (no answer) and the connection stays pending
    peer.transport.sendto(bytes(binding_request("tcp1", "client", "wrong-password-0000000000")))
    await asyncio.sleep(0.1)
    await eventually(lambda: engine.stats()["stun_rejected"] >= 1, what="the check rejected")
    assert peer.inbox.empty() and not peer.closed.is_set()
    assert engine.stats()["stun_rejected"] == 1

    response = await ice_check(engine, peer, "tcp1")  # checks FINGERPRINT and MESSAGE-INTEGRITY
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr  # the client's TCP address
    # the bound event and the send counters are published after the response went out
    await eventually(lambda: handler.bound, what="bound event")
    assert handler.bound == [peer.addr]
    await eventually(lambda: engine.stats()["tcp_frames_sent"] >= 1, what="the response counted")
    stats = engine.stats()
    assert (stats["tcp_accepted"], stats["tcp_closed"], stats["tcp_garbage"]) == (1, 0, 0)
    assert stats["tcp_frames_sent"] == 1
    peer.transport.close()
    await eventually(lambda: engine.stats()["tcp_closed"] >= 1, what="the close counted")
    assert engine.stats()["tcp_closed"] == 1


async def test_srtp_between_a_tcp_peer_and_a_udp_peer(engine):
    cert = node_certificate()
    tcp_peer = await TcpPeer.connect(engine.tcp_address)
    alice, alice_dtls, alice_srv, a, a_events = await connect_client(engine, "alice", cert, tcp_peer)
    bob, bob_dtls, bob_srv, b, _ = await connect_client(engine, "bob", cert)  # UDP
    assert alice_srv.state == bob_srv.state == "connected"
    assert a_events.bound == [tcp_peer.addr]

    # TCP publisher -> UDP subscriber, UDP publisher -> TCP subscriber
    to_bob = engine.add_track(48000)
    engine.bind_stream(to_bob, a, 0xA1)
    engine.add_downtrack(to_bob, b, 0xB0B, 96)
    to_alice = engine.add_track(48000)
    engine.bind_stream(to_alice, b, 0xB1)
    engine.add_downtrack(to_alice, a, 0xA0A, 97)
    await asyncio.sleep(0.05)

    payloads = [f"packet-{i}".encode() * (1 + i * 5) for i in range(30)]
    for i, p in enumerate(payloads):
        alice.transport.sendto(alice_dtls._tx_srtp.protect(rtp(101 + i, 960 * i, 0xA1, p)))
        bob.transport.sendto(bob_dtls._tx_srtp.protect(rtp(201 + i, 960 * i, 0xB1, p)), engine.local_address)
    for peer, dtls, ssrc, pt in ((bob, bob_dtls, 0xB0B, 96), (alice, alice_dtls, 0xA0A, 97)):
        got = [dtls._rx_srtp.unprotect(await asyncio.wait_for(peer.media.get(), 3)) for _ in payloads]
        assert [g[12:] for g in got] == payloads
        assert all(struct.unpack("!I", g[8:12])[0] == ssrc and g[1] & 0x7F == pt for g in got)
        seqs = [struct.unpack("!H", g[2:4])[0] for g in got]
        assert seqs == [(seqs[0] + k) % 65536 for k in range(len(payloads))]
    stats = engine.stats()
    assert stats["forwarded"] == 2 * len(payloads)
    assert stats["tcp_dropped"] == 0 and stats["tcp_garbage"] == 0

    for peer, dtls, srv in ((alice, alice_dtls, alice_srv), (bob, bob_dtls, bob_srv)):
        peer.pump.cancel()
        peer.transport.close()
        await dtls.stop()
        await srv.stop()


@pytest.mark.parametrize("garbage", [
    b"\x00\x05hello",                  # a frame whose first byte (h) is no packet kind
    b"\xff\xff" + os.urandom(64),      # a frame over the limit
], ids=["unknown-kind", "oversize"])
async def test_garbage_closes_only_that_connection(engine, garbage):
    handler = Handler()
    engine.add_transport("good", SERVER_PWD, handler)
    engine.add_transport("bad", SERVER_PWD, Handler())
    good = await TcpPeer.connect(engine.tcp_address)
    bad = await TcpPeer.connect(engine.tcp_address)
    await ice_check(engine, good, "good")
    await ice_check(engine, bad, "bad")

    bad.transport.send_raw(garbage)
    assert await wait_closed(bad), "the server closes the connection that sent garbage"
    stats = engine.stats()
    assert (stats["tcp_garbage"], stats["tcp_closed"]) == (1, 1)
    # the other connection is unaffected
    response = await ice_check(engine, good, "good")
    assert response.attributes["XOR-MAPPED-ADDRESS"] == good.addr
    assert not good.closed.is_set()
    good.transport.close()


async def test_anything_but_stun_before_authentication_closes(engine):
    engine.add_transport("t", SERVER_PWD, Handler())
    dtls_first = await TcpPeer.connect(engine.tcp_address)
    dtls_first.transport.sendto(b"\x16\xfe\xfd" + os.urandom(40))
    random_bytes = await TcpPeer.connect(engine.tcp_address)
    random_bytes.transport.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await wait_closed(dtls_first) and await wait_closed(random_bytes)
    assert engine.stats()["tcp_garbage"] == 2
    assert engine.stats()["dtls_packets"] == 0
    # the listener still serves
    ok = await TcpPeer.connect(engine.tcp_address)
    await ice_check(engine, ok, "t")
    ok.transport.close()


async def test_pending_connections_are_bounded(engine):
    """MAX_PENDING (64) unauthenticated connections are held; more are closed at once."""
    peers = [await TcpPeer.connect(engine.tcp_address) for _ in range(70)]
    await asyncio.sleep(0.3)
    await eventually(lambda: sum(p.closed.is_set() for p in peers) >= 6 and engine.stats()["tcp_rejected"] >= 6,
                     what="the connections over the limit closed")
    closed = [p for p in peers if p.closed.is_set()]
    assert len(closed) == 6
    assert engine.stats()["tcp_rejected"] == 6
    for p in peers:
        p.transport.close()


async def test_a_subscriber_that_does_not_read_is_bounded_and_counted(engine):
    """Media for a TCP subscriber that stops reading fills its bounded write buffer; what does
    not fit is dropped and counted while a UDP subscriber of the same track gets everything."""
    cert = node_certificate()
    pub, pub_dtls, pub_srv, p, _ = await connect_client(engine, "pub", cert)
    stuck_peer = await TcpPeer.connect(engine.tcp_address)
    stuck, stuck_dtls, stuck_srv, s, _ = await connect_client(engine, "stuck", cert, stuck_peer)
    udp, udp_dtls, udp_srv, u, _ = await connect_client(engine, "udp", cert)
    track = engine.add_track(48000)
    engine.bind_stream(track, p, 0xA1)
    engine.add_downtrack(track, s, 0x51, 96)
    engine.add_downtrack(track, u, 0x52, 96)
    await asyncio.sleep(0.05)
    stuck_peer.reading.cancel()  # stop reading: the kernel buffers fill, then the engine's
    await asyncio.sleep(0.05)

    count, payload = 6000, b"v" * 1100  # 6.6 MB: more than the socket buffers and 256 KiB
    received = 0

    async def receive():
        nonlocal received
        while True:
            data = await udp.media.get()
            if not 200 <= data[1] <= 206:  # RTP, not the engine's RTCP
                received += 1

    receiving = asyncio.ensure_future(receive())
    for i in range(count):
        pub.transport.sendto(pub_dtls._tx_srtp.protect(rtp(i, 960 * i, 0xA1, payload)), engine.local_address)
        if i % 50 == 49:
            await asyncio.sleep(0.005)  # paced, so that the UDP subscriber's socket keeps up
    for _ in range(100):
        if received == count:
            break
        await asyncio.sleep(0.05)
    receiving.cancel()
    stats = engine.stats()
    assert stats["forwarded"] == 2 * count
    assert stats["tcp_dropped"] > 0
    assert received >= count * 0.95, f"UDP subscriber got {received}/{count}"

    # the subscriber reads again: the backlog drains and new media reaches it
    stuck_peer.reading = asyncio.ensure_future(stuck_peer._read(stuck_peer.reader))
    for i in range(count, count + 20):
        pub.transport.sendto(pub_dtls._tx_srtp.protect(rtp(i, 960 * i, 0xA1, b"resumed")), engine.local_address)
        await asyncio.sleep(0.01)
    payloads = set()
    while b"resumed" not in payloads:
        data = await asyncio.wait_for(stuck.media.get(), 5)
        if not 200 <= data[1] <= 206:
            payloads.add(stuck_dtls._rx_srtp.unprotect(data)[12:])
    for peer, dtls, srv in ((pub, pub_dtls, pub_srv), (udp, udp_dtls, udp_srv), (stuck, stuck_dtls, stuck_srv)):
        peer.pump.cancel()
        peer.transport.close()
        await dtls.stop()
        await srv.stop()


async def test_removing_the_transport_closes_its_connection_and_udp_can_take_over(engine):
    handler = Handler()
    t = engine.add_transport("moving", SERVER_PWD, handler)
    tcp = await TcpPeer.connect(engine.tcp_address)
    await ice_check(engine, tcp, "moving")
    # the client's TCP connection breaks: a check over UDP binds the transport there
    tcp.transport.close()
    await asyncio.sleep(0.1)
    udp = await open_peer()
    response = await ice_check(engine, udp, "moving")
    assert response.attributes["XOR-MAPPED-ADDRESS"] == udp.addr
    await eventually(lambda: len(handler.bound) >= 2, what="bound event for the UDP address")
    assert handler.bound == [tcp.addr, udp.addr]
    # a removed transport takes its connections with it
    other = await TcpPeer.connect(engine.tcp_address)
    await ice_check(engine, other, "moving")
    engine.remove_transport(t)
    assert await wait_closed(other, 1.0)
    assert engine.stats()["tcp_closed"] == 2
    udp.transport.close()


async def test_a_connection_that_never_authenticates_times_out(engine):
    """PENDING_TIMEOUT_US (10 s) without a valid binding request closes a connection."""
    idle = await TcpPeer.connect(engine.tcp_address)
    assert not await wait_closed(idle, 8.0), "still open before the timeout"
    assert await wait_closed(idle, 4.0), "closed after the timeout"
    stats = engine.stats()
    assert (stats["tcp_timeouts"], stats["tcp_closed"], stats["tcp_garbage"]) == (1, 1, 0)
