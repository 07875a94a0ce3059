"""Twirp `livekit.RoomService`: the backend API for rooms and participants.

Grant rules follow LiveKit's server: CreateRoom/DeleteRoom need roomCreate, ListRooms needs
roomList, everything about one room needs roomAdmin for exactly that room. Every
permission failure is Twirp `unauthenticated` "permissions denied" (as LiveKit answers).

The grants are checked here, on the node that received the call; the call then runs where
the room lives (``roles.router``): in this process, or on the media node that hosts it
(``rooms.admin.RoomAdmin`` there, over gRPC). CreateRoom places a new room (or updates it
on its host); ListRooms asks every node that hosts rooms and merges the answers. A call
about a room placed nowhere is answered as a node without that room answers it.
"""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import Message
from livekit.protocol import models
from livekit.protocol import room as rs

from trackyard import errors
from trackyard.api.twirp import CallContext, Method, Service
from trackyard.auth.grants import ClaimGrants
from trackyard.config import Config
from trackyard.rooms.admin import METHODS, RoomAdmin
from trackyard.rooms.manager import RoomManager, check_metadata, check_room_name
from trackyard.roles.router import Router

log = logging.getLogger(__name__)


def _denied() -> errors.Unauthenticated:
    return errors.Unauthenticated("permissions denied")


def _require(ctx: CallContext, grant: str) -> ClaimGrants:
    grants: ClaimGrants | None = ctx.grants
    if grants is None or grants.video is None or not getattr(grants.video, grant):
        raise _denied()
    return grants


def _require_admin(ctx: CallContext, room: str) -> None:
    grants = _require(ctx, "room_admin")
    if grants.video is None or grants.video.room != room:
        raise _denied()


class _NoEvents:
    def notify(self, event) -> None:
        return None


class RoomService:
    def __init__(self, config: Config, router: Router) -> None:
        self.config = config
        self.router = router
        # answers calls about rooms hosted nowhere, exactly as a node without the room would
        self.nowhere = RoomAdmin(config, RoomManager(config, _NoEvents()))

    def service(self) -> Service:
        special = {
            "CreateRoom": self.create_room,
            "ListRooms": self.list_rooms,
            "DeleteRoom": self.delete_room,
            "ForwardParticipant": self.forward_participant,
            "MoveParticipant": self.move_participant,
        }
        methods = {}
        for name, (request_type, response_type) in METHODS.items():
            handler = special.get(name) or self._room_admin_call(name)
            methods[name] = Method(name, request_type, response_type, handler)
        return Service("livekit.RoomService", methods)

    async def _call(self, room: str, method: str, request: Message) -> Message:
        route = await self.router.route(room, place=False)
        admin = route.admin if route is not None else self.nowhere
        return await admin.call(method, request)

    def _room_admin_call(self, method: str):
        async def handler(req: Message, ctx: CallContext) -> Message:
            _require_admin(ctx, req.room)
            return await self._call(req.room, method, req)
        return handler

    # --- rooms ------------------------------------------------------------------------
    async def create_room(self, req: rs.CreateRoomRequest, ctx: CallContext) -> models.Room:
        _require(ctx, "room_create")
        if req.room_preset:
            raise errors.InvalidArgument(f"room preset {req.room_preset!r} not found", meta={"argument": "room_preset"})
        check_room_name(self.config, req.name)  # before a room is placed anywhere for it
        check_metadata(self.config, req.metadata)
        route = await self.router.route(req.name, place=True)
        assert route is not None
        return await route.admin.call("CreateRoom", req, room_sid=route.room_sid)

    async def list_rooms(self, req: rs.ListRoomsRequest, ctx: CallContext) -> rs.ListRoomsResponse:
        _require(ctx, "room_list")
        admins = await self.router.admins()
        results = await asyncio.gather(*(a.call("ListRooms", req) for a in admins), return_exceptions=True)
        merged = rs.ListRoomsResponse()
        seen: set[str] = set()
        for result in results:
            if isinstance(result, BaseException):
                log.warning("ListRooms: a node did not answer: %s", result)
                continue
            for room in result.rooms:
                if room.name not in seen:
                    seen.add(room.name)
                    merged.rooms.append(room)
        if admins and len(results) == sum(isinstance(r, BaseException) for r in results):
            raise errors.Unavailable("no media node answered")
        return merged

    async def delete_room(self, req: rs.DeleteRoomRequest, ctx: CallContext) -> rs.DeleteRoomResponse:
        _require(ctx, "room_create")
        return await self._call(req.room, "DeleteRoom", req)

    # --- not in the open-source server ------------------------------------------------
    async def forward_participant(self, req: rs.ForwardParticipantRequest, ctx: CallContext) -> rs.ForwardParticipantResponse:
        self._check_move(req, ctx)
        raise errors.Unimplemented("not implemented")

    async def move_participant(self, req: rs.MoveParticipantRequest, ctx: CallContext) -> rs.MoveParticipantResponse:
        self._check_move(req, ctx)
        raise errors.Unimplemented("not implemented")

    def _check_move(self, req, ctx: CallContext) -> None:
        _require_admin(ctx, req.room)
        grants: ClaimGrants = ctx.grants
        if grants.video is None or grants.video.destination_room != req.destination_room:
            raise _denied()
        if req.room == req.destination_room:
            raise errors.InvalidArgument("source and destination room cannot be the same")
