"""The LiveKit signal endpoints: `/rtc` (v0), `/rtc/v1` (single peer connection) and their
`/validate` twins.

A connection is admitted (see `admission`) before the upgrade. Then either a new session
(JoinResponse first, then the others learn of the newcomer) or a resume of an existing
one (ReconnectResponse first, then the full room state). One binary protobuf
SignalRequest per frame comes in; bad frames are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from trackyard import errors
from trackyard.context import NodeContext
from trackyard.media.session import SessionOptions
from trackyard.rooms.participant import ConnectionOptions, Participant
from trackyard.rooms.room import Room
from trackyard.signal.admission import Admission, Refused, admit_request
from trackyard.signal.connection import SignalConnection
from trackyard.signal.requests import ParticipantSignal

log = logging.getLogger(__name__)

CORS = {"Access-Control-Allow-Origin": "*"}


class SignalService:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.bad_frames = 0
        self.handlers: dict[str, ParticipantSignal] = {}  # by participant sid

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/rtc", self.rtc_v0)
        app.router.add_get("/rtc/v1", self.rtc_v1)
        app.router.add_route("*", "/rtc/validate", self.validate_v0)
        app.router.add_route("*", "/rtc/v1/validate", self.validate_v1)

    # --- HTTP entry points ------------------------------------------------------------
    async def validate_v0(self, request: web.Request) -> web.Response:
        return self._validate(request, single_pc=False)

    async def validate_v1(self, request: web.Request) -> web.Response:
        return self._validate(request, single_pc=True)

    def _validate(self, request: web.Request, *, single_pc: bool) -> web.Response:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={**CORS, "Access-Control-Allow-Headers": "*",
                                                     "Access-Control-Allow-Methods": "GET, OPTIONS"})
        try:
            admit_request(self.node, request.headers, request.query, single_pc=single_pc)
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.text, headers=CORS)
        return web.Response(text="success", headers=CORS)

    async def rtc_v0(self, request: web.Request) -> web.StreamResponse:
        return await self._connect(request, single_pc=False)

    async def rtc_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._connect(request, single_pc=True)

    async def _connect(self, request: web.Request, *, single_pc: bool) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.node.config.limit.signal_message_size_limit, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(status=404, text="404 page not found")
        try:
            admission = admit_request(self.node, request.headers, request.query, single_pc=single_pc)
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.text)
        if admission.params.reconnect:
            return await self._resume(request, ws, admission)
        return await self._join(request, ws, admission)

    # --- new session ------------------------------------------------------------------
    def _new_participant(self, admission: Admission) -> Participant:
        grants, params = admission.grants, admission.params
        video = grants.video
        assert video is not None
        permission = video.permission()
        metadata, attributes = grants.metadata, dict(grants.attributes)
        if permission.can_update_metadata:
            metadata = params.metadata or metadata
            attributes.update(params.attributes)
        return Participant(
            identity=grants.identity,
            name=grants.name,
            metadata=metadata,
            attributes=attributes,
            kind=grants.kind,
            permission=permission,
            options=ConnectionOptions(
                auto_subscribe=params.auto_subscribe,
                adaptive_stream=params.adaptive_stream,
                protocol=params.client_info.protocol,
                single_pc=params.single_pc,
                client_info=params.client_info,
            ),
            api_key=grants.api_key,
        )

    async def _join(self, request: web.Request, ws: web.WebSocketResponse, admission: Admission) -> web.StreamResponse:
        node = self.node
        video = admission.grants.video
        try:
            room = node.rooms.room_for_join(admission.room_name, may_create=bool(video and video.room_create),
                                            room_config=admission.grants.room_config)
            participant = self._new_participant(admission)
            room.admit(participant)
        except errors.NotFound as exc:
            return web.Response(status=404, text=exc.msg)
        except errors.ResourceExhausted as exc:
            return web.Response(status=500, text=exc.msg)
        except errors.InvalidArgument as exc:
            return web.Response(status=400, text=exc.msg)
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            room.remove(participant, models.DisconnectReason.SIGNAL_CLOSE, tell_client=False)
            raise
        conn = SignalConnection(ws, label=f"{participant.identity}@{room.name}")
        participant.sink = conn
        handler = ParticipantSignal(room, participant)
        params = admission.params
        subscriber_primary = not params.single_pc and participant.permission.can_subscribe
        participant.media = node.media.create_session(
            SessionOptions(
                participant_sid=participant.sid,
                single_pc=params.single_pc,
                subscriber_primary=subscriber_primary,
                can_publish=participant.permission.can_publish,
                can_subscribe=participant.permission.can_subscribe,
            ),
            handler,
        )
        participant.send(rtc.SignalResponse(join=self._join_response(room, participant, subscriber_primary)))
        room.announce(participant)
        log.info("participant %s (%s) joined room %s via %s", participant.identity, participant.sid, room.name,
                 "/rtc/v1 (single peer connection)" if params.single_pc else "/rtc (v0, two peer connections)")
        for add_track in params.add_track_requests:
            handler.add_track(add_track)
        if params.publisher_offer is not None:
            await handler.handle(rtc.SignalRequest(offer=params.publisher_offer))
        room.subscribe_existing(participant)
        return await self._serve(ws, conn, room, participant, handler)

    def _join_response(self, room: Room, participant: Participant, subscriber_primary: bool) -> rtc.JoinResponse:
        cfg = self.node.config
        info = self.node.server_info()
        response = rtc.JoinResponse(
            room=room.to_proto(),
            participant=participant.to_proto(),
            server_version=info.version,
            server_info=info,
            server_region=cfg.region,
            subscriber_primary=subscriber_primary,
            fast_publish=participant.permission.can_publish and not participant.options.single_pc,
            ping_interval=cfg.signal.ping_interval,
            ping_timeout=cfg.signal.ping_timeout,
        )
        response.other_participants.extend(p.to_proto() for p in room.visible_to(participant))
        return response

    # --- resume -----------------------------------------------------------------------
    async def _resume(self, request: web.Request, ws: web.WebSocketResponse, admission: Admission) -> web.StreamResponse:
        room = self.node.rooms.get(admission.room_name)
        participant = room.by_sid(admission.params.participant_sid) if room is not None else None
        await ws.prepare(request)
        conn = SignalConnection(ws, label=f"{admission.grants.identity}@{admission.room_name} (resume)")
        if (
            room is None
            or participant is None
            or participant.closed
            or participant.identity != admission.grants.identity
            or participant.sid not in self.handlers
        ):
            conn.send(rtc.SignalResponse(leave=rtc.LeaveRequest(
                reason=models.DisconnectReason.STATE_MISMATCH, action=rtc.LeaveRequest.Action.RECONNECT)))
            conn.close()
            await conn.wait_closed()
            return ws
        if participant.sink is not None:
            participant.sink.close()
        participant.sink = conn
        participant.signal_lost_at = None
        handler = self.handlers[participant.sid]
        info = self.node.server_info()
        conn.send(rtc.SignalResponse(reconnect=rtc.ReconnectResponse(server_info=info)))
        everyone = [participant.to_proto()] + [p.to_proto() for p in room.visible_to(participant)]
        conn.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=everyone)))
        conn.send(rtc.SignalResponse(room_update=rtc.RoomUpdate(room=room.to_proto())))
        log.info("participant %s resumed in room %s", participant.identity, room.name)
        return await self._serve(ws, conn, room, participant, handler)

    # --- the read loop ----------------------------------------------------------------
    async def _serve(self, ws: web.WebSocketResponse, conn: SignalConnection, room: Room,
                     participant: Participant, handler: ParticipantSignal) -> web.WebSocketResponse:
        self.handlers[participant.sid] = handler
        timeout = float(self.node.config.signal.ping_timeout)
        last_heard = time.monotonic()
        timed_out = False
        try:
            while not ws.closed and not participant.closed and participant.sink is conn:
                try:
                    msg = await ws.receive(timeout=timeout)
                    last_heard = time.monotonic()
                except asyncio.TimeoutError:
                    timed_out = True
                    log.info("signal of %s timed out", participant.identity)
                    break
                if msg.type == WSMsgType.BINARY:
                    try:
                        req = rtc.SignalRequest.FromString(msg.data)
                    except DecodeError:
                        self._bad_frame(participant, "undecodable protobuf")
                        continue
                    try:
                        await handler.handle(req)
                    except Exception:  # one bad request must not kill the session
                        log.exception("handling %s from %s failed", req.WhichOneof("message"), participant.identity)
                elif msg.type == WSMsgType.TEXT:
                    self._bad_frame(participant, "text frame (only binary protobuf is spoken)")
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            if participant.sink is conn:
                # the connection vanished without a leave: keep the participant for a resume
                participant.sink = None
                # a silent client vanished when it was last heard from, so that it is removed
                # about reconnect_timeout after it went quiet, not after timeout + reconnect
                participant.signal_lost_at = last_heard if timed_out else time.monotonic()
                conn.close()
            if participant.closed:
                self.handlers.pop(participant.sid, None)
            await conn.wait_closed()
        return ws

    def _bad_frame(self, participant: Participant, what: str) -> None:
        self.bad_frames += 1
        log.warning("dropped bad signal frame from %s: %s", participant.identity, what)
