"""The Rust media engine over real UDP on loopback.

Independent peers talk to it: STUN built and checked with aioice's implementation, DTLS
by aiortc, SRTP by pylibsrtp (the reference libsrtp). The engine must answer ICE checks,
relay DTLS to trackyard's DtlsSession, and forward SRTP between peers with its own keys.
"""

import asyncio
import os
import struct
from dataclasses import dataclass

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
    # the engine hands the bound event over after it sent the response
    await eventually(lambda: handler.bound, what="bound event")
    assert handler.bound == [peer.addr]
    assert engine.stats()["stun_requests"] == 1


async def test_bad_stun_and_garbage_are_dropped_and_counted(engine):
    handler = Handler()
    engine.add_transport("srv2", SERVER_PWD, handler)
    peer = await open_peer()
    target = engine.local_address
    peer.transport.sendto(bytes(binding_request("srv2", "c", "wrong-password-0000000000")), target)
    peer.transport.sendto(bytes(binding_request("nosuchufrag", "c", SERVER_PWD)), target)
    garbage = os.urandom(200)
    while garbage[0] <= 3:  # a first byte 0-3 would be parsed as STUN (and counted as rejected)
        garbage = os.urandom(200)
    peer.transport.sendto(garbage, target)
    peer.transport.sendto(b"\x80\x60\x00", target)                      # truncated RTP
    peer.transport.sendto(b"\x16\xfe\xfd" + os.urandom(40), target)     # DTLS from an unknown address
    peer.transport.sendto(b"\x90" + os.urandom(100), target)            # SRTP from an unknown address
    await asyncio.sleep(0.2)
    # counted on the engine's thread: wait for the counts, not only for the time
    await eventually(lambda: engine.stats()["stun_rejected"] >= 2 and engine.stats()["unknown_source"] >= 2,
                     what="the dropped datagrams counted")
    stats = engine.stats()
    assert stats["stun_rejected"] == 2
    assert stats["unknown_source"] >= 2
    assert peer.inbox.empty() and handler.bound == [] and handler.dtls == []
    # still serving
    response = await ice_check(engine, peer, "srv2")
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.addr


async def connect_client(engine: MediaEngine, ufrag: str, cert: RTCCertificate, peer: Peer | None = None):
    """A client peer: ICE check, then an aiortc DTLS client over its UDP socket (or `peer`'s
    transport); the server side is trackyard's DtlsSession fed by engine events.
    Returns (peer, client dtls, server session, handle, handler)."""
    handler = Handler()
    handle = engine.add_transport(ufrag, SERVER_PWD, handler)
    session = DtlsSession(cert, engine.dtls_sender(handle))
    handler.on_dtls_cb = session.port.feed
    peer = peer or await open_peer()
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
    await eventually(lambda: engine.stats()["srtp_failures"] >= before + 1, what="the failure counted")
    assert engine.stats()["srtp_failures"] == before + 1
    assert bob.media.empty()

    for peer in (alice, bob, carol):
        peer.pump.cancel()
        peer.transport.close()
    for dtls in (alice_dtls, bob_dtls, carol_dtls):
        await dtls.stop()
    for srv in (alice_srv, bob_srv, carol_srv):
        await srv.stop()


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "no-gso"])
async def test_burst_to_two_subscribers_arrives_whole_and_in_order(gso):
    """A burst of full-size video-like packets fanned out to two subscribers: each gets every
    packet, intact and in order, whether the engine coalesces a subscriber's datagrams into
    GSO messages or sends them one by one; the send counters add up."""
    engine = MediaEngine("127.0.0.1:0", gso=gso)
    engine.start()
    try:
        cert = node_certificate()
        alice, alice_dtls, alice_srv, a, a_events = await connect_client(engine, "alice", cert)
        subs = [await connect_client(engine, name, cert) for name in ("bob", "carol")]
        track = engine.add_track(90000, kind="video", mime="video/VP8")
        engine.bind_stream(track, a, 0xA1)
        for i, (_, _, _, handle, _) in enumerate(subs):
            engine.add_downtrack(track, handle, 0xB00 + i, 96)
        await asyncio.sleep(0.05)
        before = engine.stats()
        # VP8 keyframe payload descriptor + header, so the down-tracks start forwarding
        payloads = [bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + bytes([i]) * 1100 for i in range(60)]
        for i, p in enumerate(payloads):
            alice.transport.sendto(alice_dtls._tx_srtp.protect(rtp(500 + i, 3000 * (i // 5), 0xA1, p, pt=96)),
                                   engine.local_address)
        for peer, dtls, _, _, _ in subs:
            got = [dtls._rx_srtp.unprotect(await asyncio.wait_for(peer.media.get(), 3)) for _ in payloads]
            assert [g[12:] for g in got] == payloads
            seqs = [struct.unpack("!H", g[2:4])[0] for g in got]
            assert seqs == [(seqs[0] + k) % 65536 for k in range(len(payloads))]
        after = engine.stats()
        assert after["forwarded"] - before["forwarded"] == 2 * len(payloads)
        assert after["send_failures"] == 0
        assert after["send_syscalls"] - before["send_syscalls"] <= after["tx_packets"] - before["tx_packets"]
        if not gso:
            assert after["gso_messages"] == 0
        for peer, dtls, srv, _, _ in [(alice, alice_dtls, alice_srv, a, None), *subs]:
            peer.pump.cancel()
            peer.transport.close()
            await dtls.stop()
            await srv.stop()
    finally:
        engine.close()


# --- helpers for the forwarding and RTCP tests (also used by test_engine_rtcp.py) ---------------

def rtp_ext(seq: int, ts: int, ssrc: int, payload: bytes, exts: list[tuple[int, bytes]], pt=111,
            marker=False) -> bytes:
    """An RTP packet with RFC 8285 one-byte header extensions."""
    block = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in exts)
    block += b"\x00" * (-len(block) % 4)
    return (struct.pack("!BBHII", 0x90, pt | (0x80 if marker else 0), seq, ts, ssrc)
            + struct.pack("!HH", 0xBEDE, len(block) // 4) + block + payload)


def rtp_fields(packet: bytes) -> dict:
    """Header fields, one-byte extensions (padding skipped) and payload of a plain RTP packet."""
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    pos = 12 + 4 * (first & 0x0F)
    exts: dict[int, bytes] = {}
    if first & 0x10:
        profile, words = struct.unpack("!HH", packet[pos:pos + 4])
        block = packet[pos + 4:pos + 4 + 4 * words]
        pos += 4 + 4 * words
        i = 0
        while profile == 0xBEDE and i < len(block):
            if block[i] == 0:
                i += 1
                continue
            ext_id, length = block[i] >> 4, (block[i] & 0x0F) + 1
            exts[ext_id] = block[i + 1:i + 1 + length]
            i += 1 + length
    return {"pt": second & 0x7F, "marker": bool(second & 0x80), "seq": seq, "ts": ts, "ssrc": ssrc,
            "exts": exts, "payload": packet[pos:]}


@dataclass
class Rtcp:
    """One sub-packet of a compound RTCP packet."""
    pt: int
    fmt: int
    body: bytes

    @property
    def kind(self) -> str:
        return {(200, None): "sr", (201, None): "rr", (202, None): "sdes", (203, None): "bye",
                (205, 1): "nack", (205, 15): "twcc", (206, 1): "pli", (206, 4): "fir"}.get(
            (self.pt, self.fmt if self.pt in (205, 206) else None), "other")

    @property
    def sender(self) -> int:
        return struct.unpack("!I", self.body[:4])[0]

    @property
    def media(self) -> int:
        return struct.unpack("!I", self.body[4:8])[0]

    def sr(self) -> dict:
        ntp_s, ntp_f, rtp_ts, packets, octets = struct.unpack("!IIIII", self.body[4:24])
        return {"ntp": ntp_s + ntp_f / 2**32, "rtp_ts": rtp_ts, "packets": packets, "octets": octets}

    def blocks(self) -> list[dict]:
        start = 24 if self.pt == 200 else 4
        out = []
        for i in range(self.fmt):
            b = self.body[start + 24 * i:start + 24 * (i + 1)]
            ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", b)
            lost = lost_word & 0xFFFFFF
            out.append({"ssrc": ssrc, "fraction_lost": lost_word >> 24, "lost": lost - (1 << 24) if lost & 0x800000
                        else lost, "highest_seq": highest, "jitter": jitter, "lsr": lsr, "dlsr": dlsr})
        return out

    def lost(self) -> list[int]:
        seqs = []
        for pos in range(8, len(self.body), 4):
            pid, blp = struct.unpack("!HH", self.body[pos:pos + 4])
            seqs.append(pid)
            seqs.extend((pid + i + 1) & 0xFFFF for i in range(16) if blp & (1 << i))
        return seqs


def parse_rtcp(data: bytes) -> list[Rtcp]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        first, pt, words = struct.unpack("!BBH", data[pos:pos + 4])
        end = pos + 4 * (words + 1)
        body = data[pos + 4:end]
        if first & 0x20 and body:
            body = body[:-body[-1]]
        out.append(Rtcp(pt, first & 0x1F, body))
        pos = end
    return out


def nack_packet(sender: int, media: int, seqs: list[int]) -> bytes:
    fci = b"".join(struct.pack("!HH", s, 0) for s in seqs)
    return struct.pack("!BBHII", 0x81, 205, 2 + len(fci) // 4, sender, media) + fci


def pli_packet(sender: int, media: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 206, 2, sender, media)


def is_rtcp(data: bytes) -> bool:
    return len(data) > 1 and 192 <= data[1] <= 223


class MediaPeer:
    """A connected client: SRTP/SRTCP with its DTLS keys. What it receives is sorted: RTCP is
    decrypted and parsed into `rtcp`, RTP waits in order for `recv_rtp`."""

    def __init__(self, engine: MediaEngine, connection) -> None:
        self.engine = engine
        self.peer, self.dtls, self.session, self.handle, self.handler = connection
        self.rtcp: list[Rtcp] = []
        self.backlog: list[bytes] = []

    @classmethod
    async def connect(cls, engine: MediaEngine, ufrag: str, cert) -> "MediaPeer":
        return cls(engine, await connect_client(engine, ufrag, cert))

    def send_rtp(self, packet: bytes) -> bytes:
        data = self.dtls._tx_srtp.protect(packet)
        self.peer.transport.sendto(data, self.engine.local_address)
        return data

    def send_rtcp(self, packet: bytes) -> None:
        self.peer.transport.sendto(self.dtls._tx_srtp.protect_rtcp(packet), self.engine.local_address)

    def send_raw(self, data: bytes) -> None:
        self.peer.transport.sendto(data, self.engine.local_address)

    def unprotect(self, data: bytes) -> bytes:
        return self.dtls._rx_srtp.unprotect(data)

    def _sort(self, data: bytes) -> None:
        if is_rtcp(data):
            self.rtcp.extend(parse_rtcp(self.dtls._rx_srtp.unprotect_rtcp(data)))
        else:
            self.backlog.append(data)

    async def _pump_once(self, timeout: float) -> bool:
        try:
            self._sort(await asyncio.wait_for(self.peer.media.get(), timeout))
            return True
        except TimeoutError:
            return False

    async def recv_rtp_raw(self, timeout=3.0) -> bytes:
        """The next SRTP packet, still protected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.backlog:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._pump_once(remaining):
                raise TimeoutError("no RTP")
        return self.backlog.pop(0)

    async def recv_rtp(self, timeout=3.0) -> dict:
        return rtp_fields(self.unprotect(await self.recv_rtp_raw(timeout)))

    async def expect_rtcp(self, predicate, timeout=3.0) -> Rtcp:
        """The first RTCP sub-packet (already received or arriving) matching `predicate`; removes it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, packet in enumerate(self.rtcp):
                if predicate(packet):
                    return self.rtcp.pop(i)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching RTCP in {[p.kind for p in self.rtcp]}")
            await self._pump_once(remaining)

    async def settle(self, duration=0.1) -> None:
        """Receive (and sort) for a while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        while (remaining := deadline - loop.time()) > 0:
            await self._pump_once(remaining)

    async def close(self) -> None:
        self.peer.pump.cancel()
        self.peer.transport.close()
        await self.dtls.stop()
        await self.session.stop()


class Listener:
    """Records the engine's media events."""

    def __init__(self):
        self.layers: list[tuple[int, tuple[int, ...]]] = []
        self.downtrack_layers: list[tuple[int, int | None]] = []
        self.levels: list[list] = []
        self.stats: list[list[dict]] = []

    def on_layers(self, track, layers):
        self.layers.append((track, layers))

    def on_downtrack_layer(self, downtrack, layer):
        self.downtrack_layers.append((downtrack, layer))

    def on_audio_levels(self, levels):
        self.levels.append(levels)

    def on_stats(self, entries):
        self.stats.append(entries)


async def eventually(predicate, timeout=3.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_audio_extensions_levels_and_mute(engine):
    listener = Listener()
    engine.set_listener(listener)
    cert = node_certificate()
    pub = await MediaPeer.connect(engine, "apub", cert)
    sub = await MediaPeer.connect(engine, "asub", cert)
    # the publisher negotiated mid=1, audio level=3; the subscriber audio level=5, no mid
    engine.set_extensions(pub.handle, mid=1, audio_level=3)
    engine.set_extensions(sub.handle, audio_level=5)
    track = engine.add_track(48000, kind="audio", mime="audio/opus")
    engine.bind_stream(track, pub.handle, 0xA0D10)
    dt = engine.add_downtrack(track, sub.handle, 0x5AB, 111)
    await asyncio.sleep(0.05)

    def send(seq: int):
        pub.send_rtp(rtp_ext(seq, 960 * seq, 0xA0D10, f"opus-{seq}".encode(), [(1, b"0"), (3, bytes([0x80 | 30]))]))

    got = []
    for seq in range(1, 11):
        send(seq)
        got.append(await sub.recv_rtp())
        await asyncio.sleep(0.01)
    assert [g["payload"] for g in got] == [f"opus-{s}".encode() for s in range(1, 11)]
    assert all(g["exts"] == {5: bytes([0x80 | 30])} for g in got), got[0]["exts"]  # mid blanked, level mapped
    assert all(g["ssrc"] == 0x5AB and g["pt"] == 111 for g in got)
    seqs = [g["seq"] for g in got]
    assert seqs == [(seqs[0] + i) % 65536 for i in range(10)]

    # levels go out every 250 ms: an event from the middle of the 10 packets (not yet smoothed
    # down to -30 dBov) may come before the one that covers the last packets
    def last_level():
        return next((item for item in listener.levels[-1] if item.track == track), None) if listener.levels else None
    await eventually(lambda: last_level() is not None and 29 <= last_level().level <= 45, what="audio levels")
    level = next(item for item in listener.levels[-1] if item.track == track)
    assert 29 <= level.level <= 45 and level.voice  # smoothed from silence towards -30 dBov
    await eventually(lambda: (track, (0,)) in listener.layers, what="layers event")
    await eventually(lambda: (dt, 0) in listener.downtrack_layers, what="downtrack layer event")

    # publisher-side mute: nothing goes out; unmuted, the sequence goes on without a hole
    engine.mute_track(track, True)
    await asyncio.sleep(0.05)
    for seq in range(11, 16):
        send(seq)
    await sub.settle(0.2)
    assert not sub.backlog, "muted track forwarded"
    engine.mute_track(track, False)
    await asyncio.sleep(0.05)
    after = []
    for seq in range(16, 19):
        send(seq)
        after.append(await sub.recv_rtp())
    assert [a["payload"] for a in after] == [f"opus-{s}".encode() for s in range(16, 19)]
    assert [a["seq"] for a in after] == [(seqs[-1] + i) % 65536 for i in range(1, 4)]
    assert after[0]["ts"] - got[-1]["ts"] == 960 * (16 - 10)  # timestamps follow the source

    for peer in (pub, sub):
        await peer.close()


async def test_ice_restart_new_credentials_and_new_address(engine):
    """After an ICE restart only the new credentials are accepted, a check from a new address
    re-binds the transport, and media keeps flowing there with the same SRTP keys."""
    cert = node_certificate()
    alice, alice_dtls, alice_srv, a, a_events = await connect_client(engine, "alice-r", cert)
    bob, bob_dtls, bob_srv, b, b_events = await connect_client(engine, "bob-r", cert)
    track = engine.add_track(48000)
    engine.bind_stream(track, a, 0xA1)
    engine.add_downtrack(track, b, 0xB0B, 96)
    await asyncio.sleep(0.05)

    new_pwd = "restarted-password-01234567"
    engine.restart_ice(b, "bob-r2", new_pwd)
    moved = await open_peer()  # bob's network changed: a new socket (new port)
    stale = binding_request("bob-r", "client", SERVER_PWD)
    moved.transport.sendto(bytes(stale), engine.local_address)
    await asyncio.sleep(0.1)
    assert moved.inbox.empty(), "old credentials must be refused after the restart"
    request = binding_request("bob-r2", "client", new_pwd)
    moved.transport.sendto(bytes(request), engine.local_address)
    response = stun.parse_message(await moved.recv_kind(0, 3))
    assert response.check_message_integrity(new_pwd.encode())
    await eventually(lambda: moved.addr in b_events.bound, what="re-bound to the new address")

    alice.transport.sendto(alice_dtls._tx_srtp.protect(rtp(7, 960, 0xA1, b"after-restart")), engine.local_address)
    data = await moved.recv_kind(128, 191)
    assert bob_dtls._rx_srtp.unprotect(data)[12:] == b"after-restart"
    for peer in (alice, bob):
        peer.pump.cancel()
        peer.transport.close()
    moved.transport.close()
    for dtls in (alice_dtls, bob_dtls):
        await dtls.stop()
    for srv in (alice_srv, bob_srv):
        await srv.stop()
