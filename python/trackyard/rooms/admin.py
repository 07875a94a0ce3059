"""The host side of LiveKit's RoomService: what each call does to the rooms of this node.

The Twirp endpoint (``api.room_service``) checks the caller's grants on the node that
received the call, then routes it here: directly in a single process, or over gRPC
(``rpc.server``) to the media node that hosts the room. Errors are `TrackyardError`s, which
travel as Twirp code, message and metadata.

`METHODS` is the one table of method names and message types both sides use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from livekit.protocol import models, rtc
from livekit.protocol import room as rs

from trackyard import errors
from trackyard.auth.grants import VideoGrant
from trackyard.auth.tokens import mint_token
from trackyard.config import Config
from trackyard.rooms.manager import RoomManager

REFRESH_TOKEN_TTL = 6 * 3600

# name → (request type, response type)
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    "CreateRoom": (rs.CreateRoomRequest, models.Room),
    "ListRooms": (rs.ListRoomsRequest, rs.ListRoomsResponse),
    "DeleteRoom": (rs.DeleteRoomRequest, rs.DeleteRoomResponse),
    "ListParticipants": (rs.ListParticipantsRequest, rs.ListParticipantsResponse),
    "GetParticipant": (rs.RoomParticipantIdentity, models.ParticipantInfo),
    "RemoveParticipant": (rs.RoomParticipantIdentity, rs.RemoveParticipantResponse),
    "MutePublishedTrack": (rs.MuteRoomTrackRequest, rs.MuteRoomTrackResponse),
    "UpdateParticipant": (rs.UpdateParticipantRequest, models.ParticipantInfo),
    "UpdateSubscriptions": (rs.UpdateSubscriptionsRequest, rs.UpdateSubscriptionsResponse),
    "SendData": (rs.SendDataRequest, rs.SendDataResponse),
    "UpdateRoomMetadata": (rs.UpdateRoomMetadataRequest, models.Room),
    "ForwardParticipant": (rs.ForwardParticipantRequest, rs.ForwardParticipantResponse),
    "MoveParticipant": (rs.MoveParticipantRequest, rs.MoveParticipantResponse),
    "PerformRpc": (rs.PerformRpcRequest, rs.PerformRpcResponse),
}


class RoomAdmin:
    """Runs RoomService calls (grants already checked) against one node's rooms."""

    def __init__(self, config: Config, rooms: RoomManager) -> None:
        self.config = config
        self.rooms = rooms
        self._handlers: dict[str, Callable[..., Awaitable[Message]]] = {
            "CreateRoom": self.create_room,
            "ListRooms": self.list_rooms,
            "DeleteRoom": self.delete_room,
            "ListParticipants": self.list_participants,
            "GetParticipant": self.get_participant,
            "RemoveParticipant": self.remove_participant,
            "MutePublishedTrack": self.mute_published_track,
            "UpdateParticipant": self.update_participant,
            "UpdateSubscriptions": self.update_subscriptions,
            "SendData": self.send_data,
            "UpdateRoomMetadata": self.update_room_metadata,
            "PerformRpc": self.perform_rpc,
        }

    async def call(self, method: str, request: Message, *, room_sid: str = "") -> Message:
        """Run `method`; `room_sid` is the sid a room created by CreateRoom takes."""
        handler = self._handlers.get(method)
        if handler is None:
            raise errors.Unimplemented("not implemented")
        if method == "CreateRoom":
            return await self.create_room(request, room_sid=room_sid)
        return await handler(request)

    # --- rooms ------------------------------------------------------------------------
    async def create_room(self, req: rs.CreateRoomRequest, *, room_sid: str = "") -> models.Room:
        return self.rooms.create_room(req, sid=room_sid).to_proto()

    async def list_rooms(self, req: rs.ListRoomsRequest) -> rs.ListRoomsResponse:
        wanted = set(req.names)
        rooms = [r.to_proto() for r in self.rooms.rooms.values() if not wanted or r.name in wanted]
        return rs.ListRoomsResponse(rooms=rooms)

    async def delete_room(self, req: rs.DeleteRoomRequest) -> rs.DeleteRoomResponse:
        self.rooms.delete_room(req.room)
        return rs.DeleteRoomResponse()

    async def update_room_metadata(self, req: rs.UpdateRoomMetadataRequest) -> models.Room:
        return self.rooms.update_metadata(req.room, req.metadata).to_proto()

    # --- participants -----------------------------------------------------------------
    async def list_participants(self, req: rs.ListParticipantsRequest) -> rs.ListParticipantsResponse:
        room = self.rooms.get(req.room)
        infos = [p.to_proto() for p in room.participants.values()] if room is not None else []
        return rs.ListParticipantsResponse(participants=infos)

    async def get_participant(self, req: rs.RoomParticipantIdentity) -> models.ParticipantInfo:
        _, participant = self.rooms.find_participant(req.room, req.identity)
        return participant.to_proto()

    async def remove_participant(self, req: rs.RoomParticipantIdentity) -> rs.RemoveParticipantResponse:
        room, participant = self.rooms.find_participant(req.room, req.identity)
        room.remove(participant, models.DisconnectReason.PARTICIPANT_REMOVED)
        return rs.RemoveParticipantResponse()

    async def mute_published_track(self, req: rs.MuteRoomTrackRequest) -> rs.MuteRoomTrackResponse:
        room, participant = self.rooms.find_participant(req.room, req.identity)
        if not req.muted and not self.config.room.enable_remote_unmute:
            raise errors.FailedPrecondition("remote unmute not enabled")
        track = participant.tracks.get(req.track_sid)
        if track is None:
            return rs.MuteRoomTrackResponse()
        participant.send(rtc.SignalResponse(mute=rtc.MuteTrackRequest(sid=req.track_sid, muted=req.muted)))
        room.set_track_muted(participant, req.track_sid, req.muted)
        return rs.MuteRoomTrackResponse(track=track)

    async def update_participant(self, req: rs.UpdateParticipantRequest) -> models.ParticipantInfo:
        limits = self.config.limit
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
        room, participant = self.rooms.find_participant(req.room, req.identity)
        permission = req.permission if req.HasField("permission") else None
        room.update_participant(participant, name=req.name, metadata=req.metadata,
                                attributes=dict(req.attributes), permission=permission)
        if permission is not None:
            self._refresh_token(room.name, participant)
        return participant.to_proto()

    def _refresh_token(self, room_name: str, participant) -> None:
        """Give the client a token matching its new grants, for its next reconnect."""
        secret = self.config.keys.get(participant.api_key)
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

    async def update_subscriptions(self, req: rs.UpdateSubscriptionsRequest) -> rs.UpdateSubscriptionsResponse:
        room, participant = self.rooms.find_participant(req.room, req.identity)
        sids = list(req.track_sids)
        for pt in req.participant_tracks:
            sids.extend(pt.track_sids)
        room.update_subscriptions(participant, sids, req.subscribe)
        return rs.UpdateSubscriptionsResponse()

    async def send_data(self, req: rs.SendDataRequest) -> rs.SendDataResponse:
        if len(req.nonce) not in (0, 16):
            raise errors.InvalidArgument("nonce should be 16-bytes or not present", meta={"argument": "nonce"})
        room = self.rooms.require(req.room)
        user = models.UserPacket(payload=req.data, nonce=req.nonce)
        user.destination_identities.extend(req.destination_identities)
        user.destination_sids.extend(req.destination_sids)
        if req.HasField("topic"):
            user.topic = req.topic
        packet = models.DataPacket(kind=req.kind, user=user)
        packet.destination_identities.extend(req.destination_identities)
        room.deliver_data(packet, None)
        return rs.SendDataResponse()

    async def perform_rpc(self, req: rs.PerformRpcRequest) -> rs.PerformRpcResponse:
        if not req.destination_identity:
            raise errors.InvalidArgument("destination identity is required", meta={"argument": "destination_identity"})
        self.rooms.find_participant(req.room, req.destination_identity)
        raise errors.Unavailable("participant RPC needs a data channel to the participant (media engine)")
