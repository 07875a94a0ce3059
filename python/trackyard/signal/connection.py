"""One client's signal WebSocket: an ordered, validated, non-blocking outgoing queue.

Messages are validated when queued (see `validate`), written by a single writer task in
order, and `close()` closes the socket only after everything queued before it is written.
A client that stops reading cannot block the room: past `max_queue` pending messages the
connection is closed.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from livekit.protocol import rtc

from trackyard.signal.validate import InvalidOutgoingMessage, validate

log = logging.getLogger(__name__)

_CLOSE = object()


class SignalConnection:
    def __init__(self, ws: web.WebSocketResponse, *, label: str, max_queue: int = 1024) -> None:
        self.ws = ws
        self.label = label
        self._queue: asyncio.Queue = asyncio.Queue()
        self._max_queue = max_queue
        self._closing = False
        self.sent = 0
        self.rejected = 0
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, message: rtc.SignalResponse) -> None:
        if self._closing:
            return
        try:
            validate(message)
        except InvalidOutgoingMessage as exc:
            self.rejected += 1
            log.error("not sending invalid %s to %s: %s", message.WhichOneof("message"), self.label, exc)
            return
        if self._queue.qsize() >= self._max_queue:
            log.warning("signal queue of %s overflowed; closing the connection", self.label)
            self.close()
            return
        self._queue.put_nowait(message.SerializeToString())

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(_CLOSE)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._writer)

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSE:
                    break
                await self.ws.send_bytes(item)
                self.sent += 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("signal write to %s failed: %s", self.label, exc)
        finally:
            self._closing = True
            if not self.ws.closed:
                try:
                    await self.ws.close()
                except (ConnectionError, RuntimeError):
                    pass
