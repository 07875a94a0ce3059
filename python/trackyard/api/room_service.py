"""Twirp `livekit.RoomService`: the backend API for rooms and participants.

Grant rules follow LiveKit's server: CreateRoom/DeleteRoom need roomCreate, ListRooms needs
roomList, everything about one room needs roomAdmin for exactly that room. Every
permission failure is Twirp `unauthenticated` "permissions denied" (as LiveKit answers).
"""

from __future__ import annotations

from livekit.protocol import models, rtc
from livekit.protocol import room as rs

from trackyard import errors
from trackyard.api.twirp import CallContext, Method, Service
from trackyard.auth.grants import ClaimGrants, VideoGrant
from trackyard.auth.tokens import mint_token
from trackyard.context import NodeContext

REFRESH_TOKEN_TTL = 6 * 3600


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


class RoomService:
    def __init__(self, node: NodeContext) -> None:
        self.node = node

    def service(self) -> Service:
        table = [
            ("CreateRoom", rs.CreateRoomRequest, models.Room, self.create_room),
            ("ListRooms", rs.ListRoomsRequest, rs.ListRoomsResponse, self.list_rooms),
            ("DeleteRoom", rs.DeleteRoomRequest, rs.DeleteRoomResponse, self.delete_room),
            ("ListParticipants", rs.ListParticipantsRequest, rs.ListParticipantsResponse, self.list_participants),
            ("GetParticipant", rs.RoomParticipantIdentity, models.ParticipantInfo, self.get_participant),
            ("RemoveParticipant", rs.RoomParticipantIdentity, rs.RemoveParticipantResponse, self.remove_participant),
            ("MutePublishedTrack", rs.MuteRoomTrackRequest, rs.MuteRoomTrackResponse, self.mute_published_track),
            ("UpdateParticipant", rs.UpdateParticipantRequest, models.ParticipantInfo, self.update_participant),
            ("UpdateSubscriptions", rs.UpdateSubscriptionsRequest, rs.UpdateSubscriptionsResponse,
             self.update_subscriptions),
            ("SendData", rs.SendDataRequest, rs.SendDataResponse, self.send_data),
            ("UpdateRoomMetadata", rs.UpdateRoomMetadataRequest, models.Room, self.update_room_metadata),
            ("ForwardParticipant", rs.ForwardParticipantRequest, rs.ForwardParticipantResponse, self.forward_participant),
            ("MoveParticipant", rs.MoveParticipantRequest, rs.MoveParticipantResponse, self.move_participant),
            ("PerformRpc", rs.PerformRpcRequest, rs.PerformRpcResponse, self.perform_rpc),
        ]
        methods = {name: Method(name, req, resp, handler) for name, req, resp, handler in table}
        return Service("livekit.RoomService", methods)

    # --- rooms ------------------------------------------------------------------------
    async def create_room(self, req: rs.CreateRoomRequest, ctx: CallContext) -> models.Room:
        _require(ctx, "room_create")
        if req.room_preset:
            raise errors.InvalidArgument(f"room preset {req.room_preset!r} not found", meta={"argument": "room_preset"})
        return self.node.rooms.create_room(req).to_proto()

    async def list_rooms(self, req: rs.ListRoomsRequest, ctx: CallContext) -> rs.ListRoomsResponse:
        _require(ctx, "room_list")
        wanted = set(req.names)
        rooms = [r.to_proto() for r in self.node.rooms.rooms.values() if not wanted or r.name in wanted]
        return rs.ListRoomsResponse(rooms=rooms)

    async def delete_room(self, req: rs.DeleteRoomRequest, ctx: CallContext) -> rs.DeleteRoomResponse:
        _require(ctx, "room_create")
        self.node.rooms.delete_room(req.room)
        return rs.DeleteRoomResponse()

    async def update_room_metadata(self, req: rs.UpdateRoomMetadataRequest, ctx: CallContext) -> models.Room:
        _require_admin(ctx, req.room)
        return self.node.rooms.update_metadata(req.room, req.metadata).to_proto()

    # --- participants -----------------------------------------------------------------
    async def list_participants(self, req: rs.ListParticipantsRequest, ctx: CallContext) -> rs.ListParticipantsResponse:
        _require_admin(ctx, req.room)
        room = self.node.rooms.get(req.room)
        infos = [p.to_proto() for p in room.participants.values()] if room is not None else []
        return rs.ListParticipantsResponse(participants=infos)

    async def get_participant(self, req: rs.RoomParticipantIdentity, ctx: CallContext) -> models.ParticipantInfo:
        _require_admin(ctx, req.room)
        _, participant = self.node.rooms.find_participant(req.room, req.identity)
        return participant.to_proto()

    async def remove_participant(self, req: rs.RoomParticipantIdentity, ctx: CallContext) -> rs.RemoveParticipantResponse:
        _require_admin(ctx, req.room)
        room, participant = self.node.rooms.find_participant(req.room, req.identity)
        room.remove(participant, models.DisconnectReason.PARTICIPANT_REMOVED)
        return rs.RemoveParticipantResponse()

    async def mute_published_track(self, req: rs.MuteRoomTrackRequest, ctx: CallContext) -> rs.MuteRoomTrackResponse:
        _require_admin(ctx, req.room)
        room, participant = self.node.rooms.find_participant(req.room, req.identity)
        if not req.muted and not self.node.config.room.enable_remote_unmute:
            raise errors.FailedPrecondition("remote unmute not enabled")
        track = participant.tracks.get(req.track_sid)
        if track is None:
            return rs.MuteRoomTrackResponse()
        participant.send(rtc.SignalResponse(mute=rtc.MuteTrackRequest(sid=req.track_sid, muted=req.muted)))
        room.set_track_muted(participant, req.track_sid, req.muted)
        return rs.MuteRoomTrackResponse(track=track)

    async def update_participant(self, req: rs.UpdateParticipantRequest, ctx: CallContext) -> models.ParticipantInfo:
        _require_admin(ctx, req.room)
        limits = self.node.config.limit
        if len(req.metadata.encode()) > limits.max_metadata_size:
            raise errors.InvalidArgument(f"metadata size exceeds limits {limits.max_metadata_size}",
                                         meta={"argument": "metadata size"})
        if len(req.name) > limits.max_participant_name_length:
            raise errors.InvalidArgument(f"name length exceeds limits {limits.max_participant_name_length}",
                                         meta={"argument": "name length"})
        attr_size = sum(len(k.encode()) + len(v.encode()) for k, v in req.attributes.items())
        if attr_size > limits.max_attributes_size:
            raise errors.InvalidArgument(f"attributes size exceeds limits {limits.max_attributes_size}",
                                         meta={"argument": "attributes size"})
        room, participant = self.node.rooms.find_participant(req.room, req.identity)
        permission = req.permission if req.HasField("permission") else None
        room.update_participant(participant, name=req.name, metadata=req.metadata,
                                attributes=dict(req.attributes), permission=permission)
        if permission is not None:
            self._refresh_token(room.name, participant)
        return participant.to_proto()

    def _refresh_token(self, room_name: str, participant) -> None:
        """Give the client a token matching its new grants, for its next reconnect."""
        secret = self.node.config.keys.get(participant.api_key)
        if not secret:
            return
        perm = participant.permission
        video = VideoGrant(
            room_join=True, room=room_name, can_publish=perm.can_publish, can_subscribe=perm.can_subscribe,
            can_publish_data=perm.can_publish_data, can_update_own_metadata=perm.can_update_metadata,
            can_publish_sources=[models.TrackSource.Name(s).lower() for s in perm.can_publish_sources],
            hidden=perm.hidden, recorder=perm.recorder, agent=perm.agent,
        )
        token = mint_token(participant.api_key, secret, identity=participant.identity, name=participant.name,
                           ttl_seconds=REFRESH_TOKEN_TTL, video=video, metadata=participant.metadata,
                           attributes=participant.attributes)
        participant.send(rtc.SignalResponse(refresh_token=token))

    async def update_subscriptions(self, req: rs.UpdateSubscriptionsRequest, ctx: CallContext) -> rs.UpdateSubscriptionsResponse:
        _require_admin(ctx, req.room)
        room, participant = self.node.rooms.find_participant(req.room, req.identity)
        sids = list(req.track_sids)
        for pt in req.participant_tracks:
            sids.extend(pt.track_sids)
        room.update_subscriptions(participant, sids, req.subscribe)
        return rs.UpdateSubscriptionsResponse()

    async def send_data(self, req: rs.SendDataRequest, ctx: CallContext) -> rs.SendDataResponse:
        _require_admin(ctx, req.room)
        if len(req.nonce) not in (0, 16):
            raise errors.InvalidArgument("nonce should be 16-bytes or not present", meta={"argument": "nonce"})
        room = self.node.rooms.require(req.room)
        user = models.UserPacket(payload=req.data, nonce=req.nonce)
        user.destination_identities.extend(req.destination_identities)
        user.destination_sids.extend(req.destination_sids)
        if req.HasField("topic"):
            user.topic = req.topic
        packet = models.DataPacket(kind=req.kind, user=user)
        packet.destination_identities.extend(req.destination_identities)
        room.deliver_data(packet, None)
        return rs.SendDataResponse()

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

    async def perform_rpc(self, req: rs.PerformRpcRequest, ctx: CallContext) -> rs.PerformRpcResponse:
        _require_admin(ctx, req.room)
        if not req.destination_identity:
            raise errors.InvalidArgument("destination identity is required", meta={"argument": "destination_identity"})
        self.node.rooms.find_participant(req.room, req.destination_identity)
        raise errors.Unavailable("participant RPC needs a data channel to the participant (media engine)")
