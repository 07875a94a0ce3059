"""The Rust media engine over real UDP on loopback.

Independent peers talk to it: STUN built and checked with aioice's implementation, DTLS
by aiortc, SRTP by pylibsrtp (the reference libsrtp). The engine must answer ICE checks,
relay DTLS to trackyard's DtlsSession, and forward SRTP between peers with its own keys.
"""

import asyncio
import os
import socket
import struct

import pylibsrtp
import pytest
from aioice import stun
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsParameters, RTCDtlsTransport

from trackyard.engine import MediaEngine, NewStream
from trackyard.media.dtls import DatagramPort, DtlsSession, node_certificate

SERVER_PWD = "server-password-0123456789"


class Peer(asyncio.DatagramProtocol):
    """A client's UDP socket: queues what it receives."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data, addr):
        self.inbox.put_nowait(data)

    @property
    def addr(self):
        return self.transport.get_extra_info("sockname")

    async def recv(self, timeout=3.0) -> bytes:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def recv_kind(self, low: int, high: int, timeout=3.0) -> bytes:
        while True:
            data = await self.recv(timeout)
            if low <= data[0] <= high:
                return data


class Handler:
    def __init__(self):
        self.bound: list[tuple[str, int]] = []
        self.dtls: list[bytes] = []
        self.streams: list[NewStream] = []
        self.on_dtls_cb = None

    def on_bound(self, ip, port):
        self.bound.append((ip, port))

    def on_dtls(self, data):
        self.dtls.append(data)
        if self.on_dtls_cb:
            self.on_dtls_cb(data)

    def on_consent_lost(self):
        pass

    def on_new_stream(self, stream):
        self.streams.append(stream)


@pytest.fixture
async def engine():
    eng = MediaEngine("127.0.0.1:0")
    eng.start()
    yield eng
    eng.close()


async def open_peer() -> Peer:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    peer.transport = transport
    return peer


def binding_request(local_ufrag: str, remote_ufrag: str, pwd: str, *, use_candidate=True) -> stun.Message:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{local_ufrag}:{remote_ufrag}"
    msg.attributes["PRIORITY"] = 2122260223
    msg.attributes["ICE-CONTROLLING"] = 12345
    if use_candidate:
        msg.attributes["USE-CANDIDATE"] = None
    msg.add_message_integrity(pwd.encode())
    msg.add_fingerprint()
    return msg


async def ice_check(engine: MediaEngine, peer: Peer, ufrag: str, pwd: str = SERVER_PWD) -> stun.Message:
    request = binding_request(ufrag, "client", pwd)
    peer.transport.sendto(bytes(request), engine.local_address)
    data = await peer.recv_kind(0, 3)
    message = stun.parse_message(data)  # checks FINGERPRINT
    assert message.transaction_id == request.transaction_id
    assert message.check_message_integrity(pwd.encode()), "response integrity"
    return message


async def test_ice_lite_binding_response_and_bound_event(engine):
    handler = Handler()
    engine.add_transport("srv1", SERVER_PWD, handler)
    peer = await open_peer()
    response = await ice_check(engine, peer, "srv1")
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr
    await asyncio.sleep(0.05)
    assert handler.bound == [peer.addr]
    assert engine.stats()["stun_requests"] == 1


async def test_bad_stun_and_garbage_are_dropped_and_counted(engine):
    handler = Handler()
    engine.add_transport("srv2", SERVER_PWD, handler)
    peer = await open_peer()
    target = engine.local_address
    peer.transport.sendto(bytes(binding_request("srv2", "c", "wrong-password-0000000000")), target)
    peer.transport.sendto(bytes(binding_request("nosuchufrag", "c", SERVER_PWD)), target)
    peer.transport.sendto(os.urandom(200), target)
    peer.transport.sendto(b"\x80\x60\x00", target)                      # truncated RTP
    peer.transport.sendto(b"\x16\xfe\xfd" + os.urandom(40), target)     # DTLS from an unknown address
    peer.transport.sendto(b"\x90" + os.urandom(100), target)            # SRTP from an unknown address
    await asyncio.sleep(0.2)
    stats = engine.stats()
    assert stats["stun_rejected"] == 2
    assert stats["unknown_source"] >= 2
    assert peer.inbox.empty() and handler.bound == [] and handler.dtls == []
    # still serving
    response = await ice_check(engine, peer, "srv2")
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr


async def connect_client(engine: MediaEngine, ufrag: str, cert: RTCCertificate):
    """A client peer: ICE check, then an aiortc DTLS client over its UDP socket; the server side
    is trackyard's DtlsSession fed by engine events. Returns (peer, client dtls, server session, handle)."""
    handler = Handler()
    handle = engine.add_transport(ufrag, SERVER_PWD, handler)
    session = DtlsSession(cert, engine.dtls_sender(handle))
    handler.on_dtls_cb = session.port.feed
    peer = await open_peer()
    await ice_check(engine, peer, ufrag)

    client_port = DatagramPort(lambda d: peer.transport.sendto(d, engine.local_address))

    async def pump():
        while True:
            data = await peer.inbox.get()
            if 20 <= data[0] <= 63:
                client_port.feed(data)
            else:
                peer.media.put_nowait(data)
    peer.media = asyncio.Queue()
    peer.pump = asyncio.ensure_future(pump())
    client_cert = RTCCertificate.generateCertificate()
    client = RTCDtlsTransport(client_port, [client_cert])
    client._set_role("client")
    server_task = session.start(client_cert.getFingerprints())
    await asyncio.wait_for(asyncio.gather(
        client.start(RTCDtlsParameters(fingerprints=cert.getFingerprints())), server_task), 10)
    keys = session.transport.srtp_keys
    engine.set_srtp(handle, keys.profile, keys.local, keys.remote)
    return peer, client, session, handle, handler


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, pt=111) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


async def test_dtls_through_engine_and_srtp_forwarding(engine):
    cert = node_certificate()
    alice, alice_dtls, alice_srv, a, a_events = await connect_client(engine, "alice", cert)
    bob, bob_dtls, bob_srv, b, _ = await connect_client(engine, "bob", cert)
    carol, carol_dtls, carol_srv, c, _ = await connect_client(engine, "carol", cert)
    assert alice_srv.state == bob_srv.state == "connected"
    assert engine.stats()["dtls_packets"] > 0

    # an SSRC without a route is reported once, then bound to a track that bob subscribes to
    alice.transport.sendto(alice_dtls._tx_srtp.protect(rtp(100, 1000, 0xA1, b"first")), engine.local_address)
    for _ in range(50):
        await asyncio.sleep(0.02)
        if a_events.streams:
            break
    assert a_events.streams and a_events.streams[0].ssrc == 0xA1 and a_events.streams[0].payload_type == 111
    track = engine.add_track(48000)
    engine.bind_stream(track, a, 0xA1)
    engine.add_downtrack(track, b, 0xB0B, 96)
    await asyncio.sleep(0.05)

    payloads = [f"packet-{i}".encode() * 10 for i in range(20)]
    for i, p in enumerate(payloads):
        alice.transport.sendto(alice_dtls._tx_srtp.protect(rtp(101 + i, 1960 * (i + 1), 0xA1, p)),
                               engine.local_address)
    got = []
    for _ in payloads:
        data = await asyncio.wait_for(bob.media.get(), 3)
        got.append(bob_dtls._rx_srtp.unprotect(data))
    seqs = [struct.unpack("!H", g[2:4])[0] for g in got]
    assert [g[12:] for g in got] == payloads
    assert all(struct.unpack("!I", g[8:12])[0] == 0xB0B for g in got)
    assert all(g[1] & 0x7F == 96 for g in got)
    assert seqs == [(seqs[0] + i) % 65536 for i in range(20)]  # continuous
    # carol subscribed to nothing: she receives no media
    await asyncio.sleep(0.1)
    assert carol.media.empty()

    # a packet with a broken auth tag is dropped and counted; forwarding goes on
    before = engine.stats()["srtp_failures"]
    bad = bytearray(alice_dtls._tx_srtp.protect(rtp(200, 99999, 0xA1, b"x" * 50)))
    bad[-1] ^= 0xFF
    alice.transport.sendto(bytes(bad), engine.local_address)
    await asyncio.sleep(0.1)
    assert engine.stats()["srtp_failures"] == before + 1
    assert bob.media.empty()

    for peer in (alice, bob, carol):
        peer.pump.cancel()
        peer.transport.close()
    for dtls in (alice_dtls, bob_dtls, carol_dtls):
        await dtls.stop()
    for srv in (alice_srv, bob_srv, carol_srv):
        await srv.stop()
