"""One peer connection's transport on the server side: ICE-lite in the engine, DTLS and SCTP
in aiortc, SRTP keys handed back to the engine.

Life of a transport: created with fresh ICE credentials (they go into our SDP) → the remote
SDP gives the peer's DTLS fingerprint → the engine binds the peer's address on its first
valid ICE check → the peer (DTLS client, `a=setup:active`) starts the handshake → keys go to
the engine, SCTP starts, `on_connected` fires. Data channels carry LiveKit `DataPacket`s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable

from aiortc import RTCDataChannel, RTCDataChannelParameters
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport
from OpenSSL import SSL

from trackyard.engine import MediaEngine, NewStream
from trackyard.media.dtls import DtlsSession, parse_fingerprint
from trackyard.media.negotiation import MAX_MESSAGE_SIZE, SCTP_PORT

log = logging.getLogger(__name__)

RELIABLE, LOSSY = "_reliable", "_lossy"


def livekit_channels() -> tuple[RTCDataChannelParameters, RTCDataChannelParameters]:
    """Parameters of the two data channels LiveKit peers open: ordered and reliable
    `_reliable`, unordered `_lossy` without retransmissions."""
    return (RTCDataChannelParameters(label=RELIABLE, ordered=True),
            RTCDataChannelParameters(label=LOSSY, ordered=False, maxRetransmits=0))

RELIABLE_BACKLOG = 256  # reliable packets kept for a peer whose channel is not open yet

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def quiet_sctp_teardown(loop: asyncio.AbstractEventLoop) -> None:
    """Log aiortc's SCTP sends that fail because the peer already shut DTLS down at debug
    level instead of as "Task exception was never retrieved" tracebacks.

    aiortc sends SCTP retransmissions and heartbeats from fire-and-forget tasks; when a
    client leaves (DTLS close_notify) while one is pending, the task fails with OpenSSL's
    "protocol is shutdown" or a ConnectionError before our transport is closed. That is a
    normal end of a connection, not an error. Anything else goes to the previous handler."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        future = context.get("future")
        coro = future.get_coro() if isinstance(future, asyncio.Task) else None
        if isinstance(exc, (SSL.Error, ConnectionError)) and \
                getattr(coro, "__qualname__", "").startswith("RTCSctpTransport."):
            log.debug("SCTP send after the peer closed DTLS: %r", exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _ice_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class PeerTransport:
    def __init__(self, engine: MediaEngine, certificate: RTCCertificate, *, label: str,
                 on_connected: Callable[[], None], on_failed: Callable[[], None],
                 on_message: Callable[[str, bytes], None], on_new_stream: Callable[[NewStream], None],
                 on_fault: Callable[[], None]) -> None:
        self.engine = engine
        self.label = label
        self.ufrag = _ice_token(8)
        self.pwd = _ice_token(24)
        self.handle = engine.add_transport(self.ufrag, self.pwd, self)
        self.dtls = DtlsSession(certificate, engine.dtls_sender(self.handle))
        self.sctp: RTCSctpTransport | None = None
        self.channels: dict[str, RTCDataChannel] = {}
        self.connected = False
        self.closed = False
        self._on_connected = on_connected
        self._on_failed = on_failed
        self._on_message = on_message
        self._on_new_stream = on_new_stream
        self._on_fault = on_fault
        self._started = False
        self._task: asyncio.Task | None = None
        self.remote_ufrag: str | None = None
        self._waiting: dict[str, deque[bytes]] = {}

    # --- engine events (TransportHandler) ---------------------------------------------
    def on_bound(self, ip: str, port: int) -> None:
        log.debug("%s: ICE bound to %s:%d", self.label, ip, port)

    def on_dtls(self, data: bytes) -> None:
        self.dtls.port.feed(data)

    def on_consent_lost(self) -> None:
        log.info("%s: ICE consent lost", self.label)
        self._on_failed()

    def on_new_stream(self, stream: NewStream) -> None:
        self._on_new_stream(stream)

    def on_fault(self) -> None:
        log.error("%s: the media engine failed on this transport's traffic", self.label)
        self.closed = True  # the engine removed it already
        self._on_fault()

    # --- negotiation ------------------------------------------------------------------
    def restart_ice(self) -> None:
        """ICE restart (the peer sent new credentials): answer with new ones too. DTLS, SRTP and
        data channels carry on; the engine re-binds the address on the next valid check."""
        self.ufrag = _ice_token(8)
        self.pwd = _ice_token(24)
        self.engine.restart_ice(self.handle, self.ufrag, self.pwd)
        log.info("%s: ICE restart", self.label)

    def start(self, remote_fingerprint: str) -> None:
        """Begin DTLS (we are the DTLS server) once the remote fingerprint is known."""
        if self._started or self.closed:
            return
        self._started = True
        self._task = asyncio.get_running_loop().create_task(self._run(parse_fingerprint(remote_fingerprint)))

    async def _run(self, fingerprint) -> None:
        await self.dtls.start([fingerprint])
        keys = self.dtls.transport.srtp_keys
        if self.dtls.state != "connected" or keys is None or self.closed:
            log.info("%s: DTLS failed (%s)", self.label, self.dtls.state)
            if not self.closed:
                self._on_failed()
            return
        self.engine.set_srtp(self.handle, keys.profile, keys.local, keys.remote)
        self.sctp = RTCSctpTransport(self.dtls.transport, port=SCTP_PORT)
        self.sctp.on("datachannel", self._adopt)
        await self.sctp.start(RTCSctpCapabilities(maxMessageSize=MAX_MESSAGE_SIZE), SCTP_PORT)
        self.connected = True
        log.info("%s: connected (%s)", self.label, keys.profile)
        self._on_connected()

    def _adopt(self, channel: RTCDataChannel) -> None:
        """A data channel the peer opened (the client's _reliable / _lossy)."""
        self.channels.setdefault(channel.label, channel)
        label = channel.label
        channel.on("message", lambda message: self._message(label, message))
        self._flush(label)

    def _message(self, label: str, message: bytes | str) -> None:
        if isinstance(message, bytes):
            self._on_message(label, message)

    def open_channels(self) -> None:
        """Create the server-side _reliable/_lossy channels (the v0 subscriber connection)."""
        if self.sctp is None:
            return
        for params in livekit_channels():
            label = params.label
            if label not in self.channels:
                channel = RTCDataChannel(self.sctp, params)
                channel.on("message", lambda message, label=label: self._message(label, message))
                channel.on("open", lambda label=label: self._flush(label))
                self.channels[label] = channel

    def send(self, label: str, data: bytes) -> bool:
        """Send on a channel. Reliable data for a channel that is not open yet (the peer is still
        connecting) waits, bounded, and goes out when it opens; lossy data is dropped."""
        channel = self.channels.get(label)
        if channel is None or channel.readyState != "open":
            if label != RELIABLE or self.closed:
                return False
            queue = self._waiting.setdefault(label, deque(maxlen=RELIABLE_BACKLOG))
            queue.append(data)
            return True
        channel.send(data)
        return True

    def _flush(self, label: str) -> None:
        channel = self.channels.get(label)
        queue = self._waiting.pop(label, None)
        if channel is not None and queue:
            for data in queue:
                channel.send(data)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.engine.remove_transport(self.handle)
        if self.sctp is not None:
            try:
                await self.sctp.stop()
            except Exception:  # a half-open association must not fail the close
                log.debug("%s: sctp stop failed", self.label, exc_info=True)
        await self.dtls.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
