"""The DTLS seam: aiortc runs the handshake over relayed datagrams and the SRTP keys come out.

The client side is an unmodified aiortc RTCDtlsTransport (pylibsrtp SRTP); the server side is
trackyard's DtlsSession. pylibsrtp, fed with the exported keys, is the oracle for their
correctness (the engine uses the same keys).
"""

import asyncio

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsParameters, RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc import RTCDataChannel, RTCDataChannelParameters

from trackyard.media.dtls import DatagramPort, DtlsSession, parse_fingerprint, sha256_fingerprint

RTP = bytes.fromhex("8060000100000001deadbeef") + b"media" * 20

POLICIES = {"SRTP_AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
            "SRTP_AES128_CM_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80}


async def connected_pair(client_profiles=None):
    server_cert, client_cert = RTCCertificate.generateCertificate(), RTCCertificate.generateCertificate()
    client_port: DatagramPort
    server = DtlsSession(server_cert, lambda d: client_port.feed(d))
    client_port = DatagramPort(lambda d: server.port.feed(d))
    client = RTCDtlsTransport(client_port, [client_cert])
    client._set_role("client")
    if client_profiles is not None:
        client._srtp_profiles = client_profiles
    server_task = server.start(client_cert.getFingerprints())
    fp = parse_fingerprint("sha-256 " + sha256_fingerprint(server_cert).lower())
    await asyncio.wait_for(asyncio.gather(client.start(RTCDtlsParameters(fingerprints=[fp])), server_task), 10)
    return server, client


async def test_handshake_exports_keys_that_decrypt_client_media():
    server, client = await connected_pair()
    assert server.state == "connected" and client.state == "connected"
    keys = server.transport.srtp_keys
    assert keys.profile == "SRTP_AEAD_AES_128_GCM"  # the engine's first choice; aiortc offered 256-GCM too
    protected = client._tx_srtp.protect(RTP)
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=keys.remote, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                            srtp_profile=POLICIES[keys.profile]))
    assert rx.unprotect(protected) == RTP
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=keys.local, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=POLICIES[keys.profile]))
    assert client._rx_srtp.unprotect(tx.protect(RTP)) == RTP
    await client.stop(); await server.stop()


async def test_cm_sha1_profile_when_client_offers_only_that():
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
    server, client = await connected_pair([SRTP_AES128_CM_SHA1_80])
    assert server.transport.srtp_keys.profile == "SRTP_AES128_CM_SHA1_80"
    assert len(server.transport.srtp_keys.remote) == 30
    await client.stop(); await server.stop()


async def test_wrong_fingerprint_fails_without_keys():
    server_cert, client_cert, other = (RTCCertificate.generateCertificate() for _ in range(3))
    client_port: DatagramPort
    server = DtlsSession(server_cert, lambda d: client_port.feed(d))
    client_port = DatagramPort(lambda d: server.port.feed(d))
    client = RTCDtlsTransport(client_port, [client_cert])
    client._set_role("client")
    task = server.start(other.getFingerprints())  # expects someone else's certificate
    client_task = asyncio.ensure_future(client.start(RTCDtlsParameters(fingerprints=server_cert.getFingerprints())))
    await asyncio.wait_for(task, 10)
    assert server.state == "failed" and server.transport.srtp_keys is None
    await client.stop(); client_task.cancel(); await server.stop()


async def test_data_channel_over_the_relayed_session():
    server, client = await connected_pair()
    server_sctp, client_sctp = RTCSctpTransport(server.transport), RTCSctpTransport(client)
    received = asyncio.get_running_loop().create_future()

    @server_sctp.on("datachannel")
    def on_channel(channel):
        channel.on("message", lambda m: received.done() or received.set_result((channel.label, m)))

    await server_sctp.start(client_sctp.getCapabilities(), client_sctp.port)
    await client_sctp.start(server_sctp.getCapabilities(), server_sctp.port)
    channel = RTCDataChannel(client_sctp, RTCDataChannelParameters(label="_reliable", ordered=True))
    channel.on("open", lambda: channel.send(b"hello"))
    assert await asyncio.wait_for(received, 10) == ("_reliable", b"hello")
    await client_sctp.stop(); await server_sctp.stop(); await client.stop(); await server.stop()


async def test_port_closed_raises_connection_error():
    port = DatagramPort(lambda d: None)
    port.close()
    with pytest.raises(ConnectionError):
        await port._recv()
    with pytest.raises(ConnectionError):
        await port._send(b"x")
