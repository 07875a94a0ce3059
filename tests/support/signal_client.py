"""A minimal LiveKit signal client for tests: WebSocket + livekit-protocol messages.

It speaks exactly the wire format the SDKs use (binary SignalRequest/SignalResponse,
`/rtc` query parameters or a `/rtc/v1` join_request) and records every message received.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
import urllib.parse

import aiohttp
from livekit.protocol import models, rtc


def encode_join_request(request: rtc.JoinRequest, *, compress: bool = False) -> str:
    payload = request.SerializeToString()
    wrapped = rtc.WrappedJoinRequest(join_request=payload)
    if compress:
        wrapped = rtc.WrappedJoinRequest(compression=rtc.WrappedJoinRequest.GZIP, join_request=gzip.compress(payload))
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()


class SignalClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.session = session
        self.received: list[rtc.SignalResponse] = []
        self.closed = asyncio.Event()
        self._new = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, ws_url: str, token: str, *, v1: bool = True, query: dict | None = None,
                      join_request: rtc.JoinRequest | None = None, token_in_query: bool = False,
                      reconnect_sid: str = "") -> "SignalClient":
        params = dict(query or {})
        headers = {}
        if token_in_query:
            params["access_token"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
        if v1:
            req = join_request or rtc.JoinRequest(
                client_info=models.ClientInfo(sdk=models.ClientInfo.PYTHON, protocol=17),
                connection_settings=rtc.ConnectionSettings(auto_subscribe=True))
            if reconnect_sid:
                req.reconnect = True
                req.participant_sid = reconnect_sid
            params["join_request"] = encode_join_request(req)
            path = "/rtc/v1"
        else:
            params.setdefault("sdk", "python")
            params.setdefault("protocol", "17")
            if reconnect_sid:
                params.update(reconnect="1", sid=reconnect_sid)
            path = "/rtc"
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(f"{ws_url}{path}?{urllib.parse.urlencode(params)}", headers=headers,
                                          autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    response = rtc.SignalResponse.FromString(msg.data)
                    async with self._new:
                        self.received.append(response)
                        self._new.notify_all()
        finally:
            self.closed.set()
            async with self._new:
                self._new.notify_all()

    def of(self, kind: str) -> list:
        return [getattr(r, kind) for r in self.received if r.WhichOneof("message") == kind]

    async def expect(self, kind: str, predicate=None, *, timeout: float = 5.0, start: int = 0):
        """Wait for a message of `kind` (matching `predicate`) received at index >= start."""
        deadline = time.monotonic() + timeout
        async with self._new:
            while True:
                for r in self.received[start:]:
                    if r.WhichOneof("message") == kind and (predicate is None or predicate(getattr(r, kind))):
                        return getattr(r, kind)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed.is_set():
                    got = [r.WhichOneof("message") for r in self.received]
                    raise AssertionError(f"no {kind} message (closed={self.closed.is_set()}); got {got}")
                try:
                    await asyncio.wait_for(self._new.wait(), remaining)
                except asyncio.TimeoutError:
                    pass

    async def expect_update_for(self, identity: str, predicate=None, *, timeout: float = 5.0):
        def match(update: rtc.ParticipantUpdate):
            return any(p.identity == identity and (predicate is None or predicate(p)) for p in update.participants)
        update = await self.expect("update", match, timeout=timeout)
        return next(p for p in update.participants if p.identity == identity)

    async def send(self, **message) -> None:
        await self.ws.send_bytes(rtc.SignalRequest(**message).SerializeToString())

    async def send_raw(self, data: bytes | str) -> None:
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def ping(self) -> rtc.Pong:
        stamp = int(time.time() * 1000)
        start = len(self.received)
        await self.send(ping_req=rtc.Ping(timestamp=stamp))
        return await self.expect("pong_resp", lambda p: p.last_ping_timestamp == stamp, start=start)

    async def leave(self) -> None:
        await self.send(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED))
        await self.close()

    async def drop(self) -> None:
        """Vanish without a leave: abort the TCP connection."""
        transport = self.ws._response.connection.transport if self.ws._response.connection else None
        if transport is not None:
            transport.abort()
        await self.close()

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        self._reader.cancel()
        await self.session.close()
