"""One simulated peer connection: a load-generator transport (UDP socket, ICE, SRTP, media
in Rust) plus its DTLS handshake, run by aiortc in Python as the server does it
(`media.dtls.DtlsSession`), over datagrams the load generator relays.

Life: created with fresh ICE credentials and a local port (they go into our SDP) → the
remote description gives the server's credentials, candidates and DTLS setup → the load
generator's ICE checks select a pair → DTLS (client or server as negotiated) → the exported
SRTP keys go to the load generator, which then starts the transport's media → the SCTP
association every LiveKit client makes for its data channels (aiortc, as the server runs it):
a publisher connection opens `_reliable` and `_lossy` like the SDKs do, on a subscriber
connection the server opens them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport

from trackyard.engine import LoadGenerator
from trackyard.media.dtls import DtlsSession, parse_fingerprint
from trackyard.media.sdp import SessionDescription
from trackyard.media.negotiation import MAX_MESSAGE_SIZE, SCTP_PORT
from trackyard.media.transport import livekit_channels

from .client_sdp import dtls_role, remote_candidates

log = logging.getLogger(__name__)

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


class ClientPeer:
    def __init__(self, gen: LoadGenerator, certificate: RTCCertificate, local_ip: str, *, label: str,
                 loopback_only: bool, opens_channels: bool = False) -> None:
        self.gen = gen
        self.certificate = certificate
        self.label = label
        self.loopback_only = loopback_only
        self.ufrag = _token(8)
        self.pwd = _token(24)
        self.handle, self.port = gen.add_transport(local_ip, self.ufrag, self.pwd, self)
        self.local_ip = local_ip
        self.dtls: DtlsSession | None = None
        self._role = "client"
        self._fingerprint: str | None = None
        self._ice_connected = False
        self.connected = asyncio.get_running_loop().create_future()  # result: time.monotonic()
        self.ice_connected_at: float | None = None
        self._task: asyncio.Task | None = None
        self.opens_channels = opens_channels
        self._remote_sctp_port = SCTP_PORT
        self.sctp: RTCSctpTransport | None = None
        self.channels: dict[str, RTCDataChannel] = {}
        self.closed = False

    @property
    def candidate(self) -> tuple[str, int]:
        return self.local_ip, self.port

    def set_remote(self, sd: SessionDescription, *, controlling: bool) -> None:
        """Apply the server's offer or answer (credentials, candidates, DTLS role). We control
        ICE when we offered or when the server is ICE-lite (RFC 8445 §6.1.1)."""
        ufrag, pwd = sd.ice_credentials()
        fp = next((sd.fingerprint(m) for m in sd.media if sd.fingerprint(m)), None)
        if not ufrag or not pwd or fp is None:
            raise ValueError(f"{self.label}: remote description without ICE credentials or fingerprint")
        self.gen.set_remote(self.handle, ufrag, pwd, controlling=controlling)
        for ip, port in remote_candidates(sd, self.loopback_only):
            self.gen.add_candidate(self.handle, ip, port)
        self._remote_sctp_port = next((m.sctp_port for m in sd.media if m.sctp_port), SCTP_PORT)
        if self._fingerprint is None:
            self._fingerprint = f"{fp.algorithm} {fp.value}"
            self._role = dtls_role(sd)
            self.dtls = DtlsSession(self.certificate, self.gen.dtls_sender(self.handle), role=self._role)
            if self._role == "server":
                self._start_dtls()

    def add_candidate(self, ip: str, port: int) -> None:
        self.gen.add_candidate(self.handle, ip, port)

    # --- load generator events (LoadTransportHandler) --------------------------------------
    def on_ice_connected(self, ip: str, port: int) -> None:
        self._ice_connected = True
        self.ice_connected_at = time.monotonic()
        if self._role == "client":
            self._start_dtls()

    def on_ice_failed(self) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"{self.label}: ICE failed"))

    def on_dtls(self, data: bytes) -> None:
        if self.dtls is not None:
            self.dtls.port.feed(data)

    # --- DTLS -------------------------------------------------------------------------------
    def _start_dtls(self) -> None:
        if self._task is None and self.dtls is not None and self._fingerprint is not None:
            self._task = asyncio.get_running_loop().create_task(self._run_dtls())

    async def _run_dtls(self) -> None:
        assert self.dtls is not None and self._fingerprint is not None
        await self.dtls.start([parse_fingerprint(self._fingerprint)])
        keys = self.dtls.transport.srtp_keys
        if self.dtls.state != "connected" or keys is None:
            if not self.connected.done():
                self.connected.set_exception(ConnectionError(f"{self.label}: DTLS failed ({self.dtls.state})"))
            return
        self.gen.set_srtp(self.handle, keys.profile, keys.local, keys.remote)
        if not self.connected.done():
            self.connected.set_result(time.monotonic())
        await self._start_sctp()

    # --- SCTP and data channels -------------------------------------------------------------
    async def _start_sctp(self) -> None:
        assert self.dtls is not None
        self.sctp = RTCSctpTransport(self.dtls.transport, port=SCTP_PORT)
        self.sctp.on("datachannel", self._adopt)
        await self.sctp.start(RTCSctpCapabilities(maxMessageSize=MAX_MESSAGE_SIZE), self._remote_sctp_port)
        if self.opens_channels:
            for params in livekit_channels():
                self.channels[params.label] = RTCDataChannel(self.sctp, params)

    def _adopt(self, channel: RTCDataChannel) -> None:
        """A channel the server opened."""
        self.channels.setdefault(channel.label, channel)

    @property
    def sctp_connected(self) -> bool:
        return self.sctp is not None and self.sctp.state == "connected"

    @property
    def channels_open(self) -> int:
        return sum(1 for c in self.channels.values() if c.readyState == "open")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sctp is not None:
            try:
                await self.sctp.stop()  # ABORT, while DTLS still carries it
            except Exception:  # DTLS already gone: nothing to tell the server
                log.debug("%s: sctp stop failed", self.label, exc_info=True)
        self.gen.remove_transport(self.handle)
        if self.dtls is not None:
            await self.dtls.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
