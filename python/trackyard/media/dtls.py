"""DTLS and SCTP for one peer, run by aiortc over datagrams relayed by the media engine.

The engine owns the UDP port; DTLS datagrams it receives for a transport are fed into a
`DatagramPort`, which stands in for aiortc's ICE transport (RTCDtlsTransport needs only
`_recv`, `_send` and `role` from it). When the handshake completes, the SRTP keying
material is exported (RFC 5764 §4.2) and handed to the engine, which does all SRTP; aiortc
never sees a media packet. SCTP data channels ride on the DTLS session as usual.

This uses aiortc internals (`_set_role`, `_ssl`, `_srtp_profiles`, `_setup_srtp`), which is
why aiortc is pinned exactly; tests/unit/test_dtls.py covers the seam.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtcdtlstransport import (
    SRTP_AEAD_AES_128_GCM,
    SRTP_AEAD_AES_256_GCM,
    SRTP_AES128_CM_SHA1_80,
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    SRTPProtectionProfile,
)

log = logging.getLogger(__name__)

# What the engine's SRTP implements, in order of preference (128-bit GCM is the cheapest).
ENGINE_SRTP_PROFILES = [SRTP_AEAD_AES_128_GCM, SRTP_AEAD_AES_256_GCM, SRTP_AES128_CM_SHA1_80]
PORT_QUEUE_LIMIT = 256


class DatagramPort:
    """A datagram pipe with the three members RTCDtlsTransport uses from an ICE transport."""

    role = "controlled"  # the server is ICE-lite, so never the controlling agent

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send_datagram = send
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(PORT_QUEUE_LIMIT)
        self._closed = False
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        """A datagram arrived from the peer."""
        if self._closed:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def _recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            self._queue.put_nowait(None)  # wake any other reader too
            raise ConnectionError("datagram port closed")
        return data

    async def _send(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionError("datagram port closed")
        self._send_datagram(data)


@dataclass(frozen=True)
class SrtpKeys:
    """Keying material for one direction pair: key‖salt for each side, as the engine wants it."""

    profile: str  # OpenSSL/RFC 5764 name, e.g. "SRTP_AEAD_AES_128_GCM"
    local: bytes  # protects what the server sends
    remote: bytes  # unprotects what the peer sends


class KeyExportingDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport, but the SRTP keys are kept for the engine instead of pylibsrtp."""

    srtp_keys: SrtpKeys | None = None

    def _setup_srtp(self) -> None:
        selected = self._ssl.get_selected_srtp_profile()
        profile: SRTPProtectionProfile | None = next(
            (p for p in self._srtp_profiles if p.openssl_profile == selected), None)
        if profile is None:
            log.info("DTLS: no SRTP profile negotiated")
            self._set_state(self._state.FAILED)
            return
        material = self._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
        local_idx, remote_idx = (1, 0) if self._role == "server" else (0, 1)
        self.srtp_keys = SrtpKeys(
            profile=profile.openssl_profile.decode(),
            local=profile.get_key_and_salt(material, local_idx),
            remote=profile.get_key_and_salt(material, remote_idx),
        )


def parse_fingerprint(value: str) -> RTCDtlsFingerprint:
    """'sha-256 AB:CD:…' (an SDP a=fingerprint value) → RTCDtlsFingerprint."""
    algorithm, _, digest = value.strip().partition(" ")
    return RTCDtlsFingerprint(algorithm=algorithm.lower(), value=digest.strip().upper())


class DtlsSession:
    """The DTLS endpoint of one peer transport (the server side, DTLS role from the SDP)."""

    def __init__(self, certificate: RTCCertificate, send: Callable[[bytes], None], *, role: str = "server") -> None:
        self.port = DatagramPort(send)
        self.transport = KeyExportingDtlsTransport(self.port, [certificate])
        self.transport._srtp_profiles = list(ENGINE_SRTP_PROFILES)
        self.transport._set_role(role)
        self._task: asyncio.Task | None = None

    @property
    def state(self) -> str:
        return self.transport.state

    def start(self, remote_fingerprints: list[RTCDtlsFingerprint]) -> asyncio.Task:
        """Run the handshake in the background; the task ends when it succeeds or fails."""
        if self._task is None:
            params = RTCDtlsParameters(fingerprints=remote_fingerprints, role="auto")
            self._task = asyncio.get_running_loop().create_task(self.transport.start(params))
        return self._task

    async def stop(self) -> None:
        self.port.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        try:
            await self.transport.stop()
        except Exception:  # stopping a half-open session must not fail the caller
            log.debug("DTLS stop failed", exc_info=True)


def node_certificate() -> RTCCertificate:
    """One ECDSA certificate for the whole node; its fingerprint goes into every answer."""
    return RTCCertificate.generateCertificate()


def sha256_fingerprint(certificate: RTCCertificate) -> str:
    return next(f.value for f in certificate.getFingerprints() if f.algorithm == "sha-256")
