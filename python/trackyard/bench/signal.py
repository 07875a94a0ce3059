"""The signaling side of a simulated participant: LiveKit's `/rtc` WebSocket as the SDKs
speak it (binary protobuf `SignalRequest`/`SignalResponse`, token as `Authorization:
Bearer`, `ping_req` every `ping_interval` seconds)."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable

import aiohttp
from livekit.protocol import models, rtc

log = logging.getLogger(__name__)

CLIENT_PROTOCOL = 17
SDK_VERSION = "trackyard-bench"


class JoinRefused(Exception):
    """The server refused the WebSocket (HTTP status) or closed it before the JoinResponse."""


def rtc_url(url: str) -> str:
    """The `/rtc` endpoint of a server URL (ws://, wss://, http:// or https://)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a server URL: {url!r} (expected ws://host:port or http://host:port)")
    path = parts.path.rstrip("/") + "/rtc"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


class SignalConnection:
    def __init__(self, session: aiohttp.ClientSession, on_message: Callable[[rtc.SignalResponse], None]) -> None:
        self.session = session
        self.on_message = on_message
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.join: rtc.JoinResponse | None = None
        self.ws_started: float = 0.0
        self.ws_opened: float = 0.0
        self.joined_at: float = 0.0
        self.closed = asyncio.Event()
        self._joined = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task] = []
        self.messages_received = 0
        self.leave: rtc.LeaveRequest | None = None

    async def connect(self, url: str, token: str, *, auto_subscribe: bool, timeout: float) -> rtc.JoinResponse:
        query = {"sdk": "go", "version": SDK_VERSION, "protocol": str(CLIENT_PROTOCOL), "client_protocol": "1",
                 "auto_subscribe": "1" if auto_subscribe else "0", "adaptive_stream": "0"}
        self.ws_started = time.monotonic()
        try:
            self.ws = await self.session.ws_connect(
                f"{rtc_url(url)}?{urllib.parse.urlencode(query)}", headers={"Authorization": f"Bearer {token}"},
                autoping=True, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2.0), max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            raise JoinRefused(f"HTTP {exc.status}: {exc.message}") from exc
        self.ws_opened = time.monotonic()
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        try:
            return await asyncio.wait_for(asyncio.shield(self._joined), timeout)
        except asyncio.TimeoutError as exc:
            raise JoinRefused(f"no JoinResponse within {timeout:.0f} s") from exc

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                response = rtc.SignalResponse.FromString(msg.data)
                self.messages_received += 1
                kind = response.WhichOneof("message")
                if kind == "join" and not self._joined.done():
                    self.join = response.join
                    self.joined_at = time.monotonic()
                    self._joined.set_result(response.join)
                    interval = response.join.ping_interval or 5
                    self._tasks.append(asyncio.get_running_loop().create_task(self._ping(interval)))
                    continue
                if kind == "leave":
                    self.leave = response.leave
                try:
                    self.on_message(response)
                except Exception:
                    log.exception("signal message %s failed", kind)
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            if not self._joined.done():
                self._joined.set_exception(JoinRefused("signal connection closed before the JoinResponse"))

    async def _ping(self, interval: float) -> None:
        while self.ws is not None and not self.ws.closed:
            await asyncio.sleep(interval)
            await self.send(ping_req=rtc.Ping(timestamp=int(time.time() * 1000)))

    async def send(self, **message) -> None:
        if self.ws is None or self.ws.closed:
            return
        try:
            await self.ws.send_bytes(rtc.SignalRequest(**message).SerializeToString())
        except (ConnectionError, aiohttp.ClientError):
            pass

    async def close(self, *, leave: bool = True) -> None:
        if leave:
            await self.send(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED))
        for task in self._tasks:
            task.cancel()
        if self.ws is not None and not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 2.0)
            except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
