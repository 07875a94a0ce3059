"""One client's signal connection as the room host sees it, whatever carries it.

The host (``signal.host``) sends SignalResponses and reads SignalRequests through a
`SignalConnection`; a relay (``signal.relay``: in process, or gRPC from a control node)
moves them between it and the client's WebSocket:

    host:      send(response) ─▶ [outgoing queue] ─▶ next_outgoing()   relay → client
               send_encoded(bytes from `encode`) ─▶ (a broadcast: checked and serialized once)
    host:      receive()      ◀─ [incoming queue] ◀─ push(request)      client → relay

Outgoing messages are validated when queued (see `validate`) and kept in order; `close()`
ends the stream after everything queued before it. `send` never blocks: a client that
stops reading cannot stall the room, and past `max_queue` pending messages the connection
is closed. Incoming requests wait in a bounded queue: a relay pushing faster than the host
handles them waits (`push` is awaited), which stops it reading the client (back-pressure).
`client_gone()` marks the end of the client's side: the host still gets the requests
queued before it, then `None`.

Keepalives are the connection's own business: a `ping_req` (or the older `ping`) is
answered as it is pushed, in order with everything else sent, and never reaches the host.
Each wakes this process once (every participant pings every `ping_interval` seconds), so
that wake does as little as it can. Every request pushed counts as hearing from the client
(`last_heard`); the host's watchdog calls `expire_if_silent`, after which `receive` gives
``None`` and `timed_out` is set. No timer is armed per request.
"""

from __future__ import annotations

import asyncio
import logging
import time

from livekit.protocol import rtc

from trackyard.signal.validate import encode

log = logging.getLogger(__name__)

_CLOSE = object()
_GONE = object()


def _now_ms() -> int:
    return int(time.time() * 1000)


class SignalConnection:
    def __init__(self, *, label: str, max_queue: int = 1024, max_incoming: int = 64) -> None:
        self.label = label
        self._out: asyncio.Queue = asyncio.Queue()
        self._in: asyncio.Queue = asyncio.Queue(maxsize=max_incoming)
        self._max_queue = max_queue
        self._closing = False
        self._gone = False
        self._drained = asyncio.Event()
        self.sent = 0
        self.rejected = 0
        self.last_heard = time.monotonic()  # when the client's last request was pushed
        self.timed_out = False  # expired by `expire_if_silent`

    @property
    def closing(self) -> bool:
        return self._closing

    # --- the host's side (also the participant's SignalSink) ----------------------------
    def send(self, message: rtc.SignalResponse) -> None:
        if self._closing:
            return
        data = encode(message)
        if data is None:
            self.rejected += 1
            return
        self.send_encoded(data)

    def send_encoded(self, data: bytes) -> None:
        """Queue a message already checked and serialized by `encode`."""
        if self._closing:
            return
        if self._out.qsize() >= self._max_queue:
            log.warning("signal queue of %s overflowed; closing the connection", self.label)
            self.close()
            return
        self._out.put_nowait(data)

    def close(self) -> None:
        """Close the connection once the messages queued so far are delivered."""
        if self._closing:
            return
        self._closing = True
        self._out.put_nowait(_CLOSE)
        # the host reads nothing more: free a relay waiting to push, and wake the reader
        while not self._in.empty():
            self._in.get_nowait()
        self._in.put_nowait(_GONE)

    async def receive(self) -> rtc.SignalRequest | None:
        """The client's next request (keepalives excepted: answered in `push`); ``None`` once
        the connection closed, the client is gone or it was silent too long (`timed_out`)."""
        if self._closing or self.timed_out or (self._gone and self._in.empty()):
            return None
        item = await self._in.get()
        return None if item is _GONE or self.timed_out else item

    def expire_if_silent(self, timeout: float, now: float) -> bool:
        """Time the client out if nothing came from it for ``timeout`` seconds (monotonic
        ``now``): `receive` then gives ``None``. Returns whether it did."""
        if self._closing or self._gone or self.timed_out or now - self.last_heard < timeout:
            return False
        self.timed_out = True
        try:
            self._in.put_nowait(_GONE)  # wake the host if it waits
        except asyncio.QueueFull:
            pass  # the host is not waiting; its next receive sees `timed_out`
        return True

    async def wait_closed(self) -> None:
        """Until the relay has taken everything up to the close (or the client is gone)."""
        await self._drained.wait()

    # --- the relay's side -------------------------------------------------------------
    async def next_outgoing(self) -> bytes | None:
        """The next serialized SignalResponse for the client; ``None``: close the client's connection."""
        item = await self._out.get()
        if item is _CLOSE:
            self._drained.set()
            return None
        self.sent += 1
        return item

    async def push(self, request: rtc.SignalRequest) -> None:
        """A request from the client, in order; waits while the incoming queue is full.
        Keepalives are answered here, without waking the host."""
        if self._closing or self._gone:
            return
        self.last_heard = time.monotonic()
        kind = request.WhichOneof("message")
        if kind in ("ping_req", "ping"):
            log.debug("%s sent %s", self.label, kind)
        if kind == "ping_req":
            self.send(rtc.SignalResponse(pong_resp=rtc.Pong(last_ping_timestamp=request.ping_req.timestamp,
                                                            timestamp=_now_ms())))
        elif kind == "ping":
            self.send(rtc.SignalResponse(pong=_now_ms()))
        else:
            await self._in.put(request)

    def client_gone(self) -> None:
        """The client's connection ended; the host reads what was queued before, then None."""
        if self._gone:
            return
        self._gone = True
        self._drained.set()  # nobody will take more outgoing messages
        try:
            self._in.put_nowait(_GONE)
        except asyncio.QueueFull:
            pass  # the reader is not blocked, and sees `_gone` once the queue is empty
