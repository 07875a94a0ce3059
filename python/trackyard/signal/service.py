"""The LiveKit signal endpoints: `/rtc` (v0), `/rtc/v1` (single peer connection) and their
`/validate` twins, on the node that holds the client's WebSocket.

A connection is admitted here (token, grants, parameters: ``signal.admission``), then routed
to the node that hosts its room (``roles.router``: this process, or a media node found or
placed in etcd), whose host (``signal.host``) decides about the room. Only once the host
accepted is the WebSocket upgraded, so every refusal is an HTTP status, never a leave:

    401/403/400 admission · 404 unknown room (rooms not auto-created) · 500 room full ·
    503 the room cannot be placed or its node reached (e.g. etcd unreachable for a new room)

Then frames are pumped both ways through the relay session, in order: one binary protobuf
SignalRequest per frame in (text frames and undecodable ones are dropped and counted), one
SignalResponse per frame out. The host's pace sets ours: a full relay stops us reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import rtc

from trackyard import errors, logs
from trackyard.config import Config
from trackyard.metrics.signal import SignalMetrics
from trackyard.roles.router import Router
from trackyard.rooms.manager import check_room_name
from trackyard.signal.admission import Admission, Refused, admit_request
from trackyard.signal.host import state_mismatch_leave
from trackyard.signal.relay import ClosedSession, RelaySession

log = logging.getLogger(__name__)

CORS = {"Access-Control-Allow-Origin": "*"}
FLUSH_TIMEOUT = 5.0  # seconds the relay may take to finish after the client left


class SignalService:
    def __init__(self, config: Config, router: Router) -> None:
        self.config = config
        self.router = router
        self.bad_frames = 0
        self.metrics = SignalMetrics()
        self.connections: dict[web.WebSocketResponse, RelaySession] = {}
        self._writers: set[asyncio.Task] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/rtc", self.rtc_v0)
        app.router.add_get("/rtc/v1", self.rtc_v1)
        app.router.add_route("*", "/rtc/validate", self.validate_v0)
        app.router.add_route("*", "/rtc/v1/validate", self.validate_v1)

    # --- HTTP entry points ------------------------------------------------------------
    async def validate_v0(self, request: web.Request) -> web.Response:
        return await self._validate(request, single_pc=False)

    async def validate_v1(self, request: web.Request) -> web.Response:
        return await self._validate(request, single_pc=True)

    async def _validate(self, request: web.Request, *, single_pc: bool) -> web.Response:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={**CORS, "Access-Control-Allow-Headers": "*",
                                                     "Access-Control-Allow-Methods": "GET, OPTIONS"})
        try:
            admission = admit_request(self.config, request.headers, request.query, single_pc=single_pc)
            route = await self._route(admission, place=False)
            if route is not None:
                await route.relay.check(admission)
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.text, headers=CORS)
        return web.Response(text="success", headers=CORS)

    async def rtc_v0(self, request: web.Request) -> web.StreamResponse:
        return await self._connect(request, single_pc=False)

    async def rtc_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._connect(request, single_pc=True)

    # --- routing ----------------------------------------------------------------------
    async def _route(self, admission: Admission, *, place: bool):
        """The room's route, placing a new room when `place`; raises Refused (404, 503)."""
        video = admission.grants.video
        may_create = self.config.room.auto_create or bool(video and video.room_create)
        try:
            route = await self.router.route(admission.room_name, place=place and may_create)
        except errors.Unavailable as exc:
            raise Refused(503, exc.msg) from None
        except errors.InvalidArgument as exc:
            raise Refused(400, exc.msg) from None
        if route is None and not admission.params.reconnect and not may_create:
            raise Refused(404, "requested room does not exist")
        return route

    async def _open(self, admission: Admission) -> RelaySession:
        reconnect = admission.params.reconnect
        if not reconnect:
            try:  # before a room is placed anywhere for it
                check_room_name(self.config, admission.room_name)
            except errors.InvalidArgument as exc:
                raise Refused(400, exc.msg) from None
        route = await self._route(admission, place=not reconnect)
        if route is None:  # a resume in a room hosted nowhere: what any host would answer
            return ClosedSession(state_mismatch_leave())
        return await route.relay.open(admission, route.room_sid)

    # --- one connection ---------------------------------------------------------------
    async def _connect(self, request: web.Request, *, single_pc: bool) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.config.limit.signal_message_size_limit, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(status=404, text="404 page not found")
        started = time.monotonic()
        try:
            admission = admit_request(self.config, request.headers, request.query, single_pc=single_pc)
            logs.bind(room=admission.room_name, participant=admission.grants.identity)
            session = await self._open(admission)
        except Refused as refused:
            self.metrics.refuse(refused.status)
            return web.Response(status=refused.status, text=refused.text)
        self.metrics.accepted(time.monotonic() - started, resume=admission.params.reconnect)
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            session.close(aborted=True)
            raise
        await session.upgraded()
        return await self._pump(ws, session, f"{admission.grants.identity}@{admission.room_name}")

    async def _pump(self, ws: web.WebSocketResponse, session: RelaySession, label: str) -> web.WebSocketResponse:
        writer = asyncio.get_running_loop().create_task(self._write_loop(ws, session, label))
        self._writers.add(writer)
        writer.add_done_callback(self._writers.discard)
        self.connections[ws] = session
        try:
            while not ws.closed:
                msg = await ws.receive()
                if msg.type == WSMsgType.BINARY:
                    try:
                        req = rtc.SignalRequest.FromString(msg.data)
                    except DecodeError:
                        self._bad_frame(label, "undecodable protobuf")
                        continue
                    await session.send(req, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._bad_frame(label, "text frame (only binary protobuf is spoken)")
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self.connections.pop(ws, None)
            session.close()  # the client is gone (a no-op when the host closed first)
            try:
                await asyncio.wait_for(asyncio.shield(writer), FLUSH_TIMEOUT)
            except asyncio.TimeoutError:
                writer.cancel()
        return ws

    @staticmethod
    async def _write_loop(ws: web.WebSocketResponse, session: RelaySession, label: str) -> None:
        """Host → client, in order; closes the WebSocket when the host closes the session."""
        try:
            while (frame := await session.receive()) is not None:
                if not ws.closed:
                    await ws.send_bytes(frame)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("signal write to %s failed: %s", label, exc)
            while await session.receive() is not None:  # drain, so the host can let go
                pass
        finally:
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()

    def _bad_frame(self, label: str, what: str) -> None:
        self.bad_frames += 1
        log.warning("dropped bad signal frame from %s: %s", label, what)

    # --- shutdown ---------------------------------------------------------------------
    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until what the hosts sent has been written and the sockets closed."""
        if self._writers:
            await asyncio.wait(set(self._writers), timeout=timeout)

    async def close_all(self) -> None:
        """Close every client connection (this node is going away; clients reconnect elsewhere)."""
        for ws in list(self.connections):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
