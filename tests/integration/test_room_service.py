"""RoomService over Twirp, driven by the real `livekit-api` SDK (protobuf codec) against a
server whose rooms hold real participants connected over signaling.

Each RPC is checked for its response and for what the participants observe (leave
messages, participant/room updates, mute requests, refreshed tokens, data packets), plus
grant failures and malformed/unauthenticated requests that must leave the server intact.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest
from livekit import api
from livekit.protocol import models, rtc
from livekit.protocol import room as rs

from support.media_standin import offer_sdp
from support.servers import API_KEY, API_SECRET
from support.signal_client import SignalClient
from support.tokens import join_token

Reason = models.DisconnectReason
State = models.ParticipantInfo.State

ROOM = "r1"


# --- helpers --------------------------------------------------------------------------------

@pytest.fixture
async def lkapi(server):
    client = api.LiveKitAPI(server.url, API_KEY, API_SECRET)
    try:
        yield client
    finally:
        await client.aclose()


async def join(server, clients, identity: str, room: str = ROOM, **grants) -> tuple[SignalClient, rtc.JoinResponse]:
    client = await SignalClient.connect(server.ws_url, join_token(identity, room, **grants))
    clients.append(client)
    return client, await client.expect("join")


async def publish_audio(client: SignalClient, cid: str = "mic-1") -> models.TrackInfo:
    """AddTrack, then an offer carrying the cid: the stand-in media reports the track received."""
    start = len(client.received)
    await client.send(add_track=rtc.AddTrackRequest(cid=cid, name="mic", type=models.TrackType.AUDIO,
                                                    source=models.TrackSource.MICROPHONE))
    published = await client.expect("track_published", lambda r: r.cid == cid, start=start)
    await client.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", cid))))
    await client.expect("update", lambda u: any(t.sid == published.track.sid for p in u.participants
                                                for t in p.tracks), start=start)
    return published.track


async def twirp_error(awaitable) -> api.TwirpError:
    with pytest.raises(api.TwirpError) as info:
        await awaitable
    return info.value


def assert_error(err: api.TwirpError, code: str, status: int, msg: str | None = None) -> None:
    assert (err.code, err.status) == (code, status), str(err)
    if msg is not None:
        assert err.message == msg


def grant_token(**grants) -> str:
    return api.AccessToken(API_KEY, API_SECRET).with_identity("backend").with_grants(api.VideoGrants(**grants)).to_jwt()


async def raw_twirp(server, method: str, body: bytes, *, token: str | None,
                    content_type: str = "application/protobuf") -> tuple[int, str, bytes]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.post(f"{server.url}/twirp/livekit.RoomService/{method}", data=body,
                                headers=headers) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def identities(participants) -> set[str]:
    return {p.identity for p in participants}


# --- rooms ----------------------------------------------------------------------------------

async def test_create_room_is_create_or_update(server, lkapi, clients):
    first = await lkapi.room.create_room(api.CreateRoomRequest(
        name="api-room", empty_timeout=120, departure_timeout=7, max_participants=5, metadata="m1"))
    assert first.sid.startswith("RM_") and first.name == "api-room"
    assert (first.empty_timeout, first.departure_timeout, first.max_participants, first.metadata) == (120, 7, 5, "m1")
    assert first.num_participants == 0
    assert abs(first.creation_time - time.time()) < 10
    assert first.creation_time_ms // 1000 == first.creation_time

    alice, join_a = await join(server, clients, "alice", "api-room")
    assert join_a.room.sid == first.sid and join_a.room.metadata == "m1"

    start = len(alice.received)
    second = await lkapi.room.create_room(api.CreateRoomRequest(name="api-room", max_participants=9, metadata="m2"))
    assert second.sid == first.sid  # same room, updated
    assert (second.max_participants, second.metadata) == (9, "m2")
    assert (second.empty_timeout, second.departure_timeout) == (120, 7)  # zero in the request keeps the value
    assert second.num_participants == 1
    update = await alice.expect("room_update", lambda u: u.room.metadata == "m2", start=start)
    assert update.room.sid == first.sid

    listed = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=["api-room"]))).rooms
    assert [(r.sid, r.max_participants, r.metadata) for r in listed] == [(first.sid, 9, "m2")]

    # an identical call is idempotent
    third = await lkapi.room.create_room(api.CreateRoomRequest(name="api-room"))
    assert (third.sid, third.max_participants, third.metadata) == (first.sid, 9, "m2")

    err = await twirp_error(lkapi.room.create_room(api.CreateRoomRequest(name="")))
    assert_error(err, "invalid_argument", 400)
    err = await twirp_error(lkapi.room.create_room(api.CreateRoomRequest(name="x" * 257)))
    assert_error(err, "invalid_argument", 400)
    assert [r.name for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms] == ["api-room"]


async def test_list_rooms_all_and_by_name(server, lkapi, clients):
    assert (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms == []
    created = await lkapi.room.create_room(api.CreateRoomRequest(name="api-only"))
    await join(server, clients, "alice", "joined")

    rooms = {r.name: r for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms}
    assert set(rooms) == {"api-only", "joined"}
    assert rooms["api-only"].sid == created.sid and rooms["api-only"].num_participants == 0
    assert rooms["joined"].num_participants == 1 and rooms["joined"].sid.startswith("RM_")

    only = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=["api-only"]))).rooms
    assert [r.name for r in only] == ["api-only"]
    assert (await lkapi.room.list_rooms(api.ListRoomsRequest(names=["nope"]))).rooms == []
    both = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=["joined", "nope", "api-only"]))).rooms
    assert {r.name for r in both} == {"api-only", "joined"}


async def test_delete_room_disconnects_everyone(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice", "doomed")
    bob, _ = await join(server, clients, "bob", "doomed")
    carol, _ = await join(server, clients, "carol", "other")

    assert await lkapi.room.delete_room(api.DeleteRoomRequest(room="doomed")) == api.DeleteRoomResponse()

    for client in (alice, bob):
        leave = await client.expect("leave")
        assert leave.reason == Reason.ROOM_DELETED
        assert leave.action == rtc.LeaveRequest.Action.DISCONNECT
        await asyncio.wait_for(client.closed.wait(), 5)
    names = [r.name for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms]
    assert names == ["other"]
    assert (await lkapi.room.list_participants(api.ListParticipantsRequest(room="doomed"))).participants == []

    err = await twirp_error(lkapi.room.delete_room(api.DeleteRoomRequest(room="doomed")))
    assert_error(err, "not_found", 404, "requested room does not exist")
    err = await twirp_error(lkapi.room.get_participant(api.RoomParticipantIdentity(room="doomed", identity="alice")))
    assert_error(err, "not_found", 404)

    # the other room is untouched
    assert not carol.of("leave")
    assert (await carol.ping()).last_ping_timestamp > 0

    # the name can be used again: a fresh room with a new sid
    again, join_again = await join(server, clients, "alice", "doomed")
    assert join_again.room.sid != (await alice.expect("join")).room.sid


# --- participants ---------------------------------------------------------------------------

async def test_list_and_get_participants(server, lkapi, clients):
    _, join_a = await join(server, clients, "alice", name="Alice", metadata="meta-a")
    _, join_b = await join(server, clients, "bob")

    listed = (await lkapi.room.list_participants(api.ListParticipantsRequest(room=ROOM))).participants
    assert {p.identity: p.sid for p in listed} == {"alice": join_a.participant.sid, "bob": join_b.participant.sid}

    alice = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="alice"))
    assert (alice.sid, alice.identity, alice.name, alice.metadata) == (join_a.participant.sid, "alice", "Alice", "meta-a")
    assert alice.state == State.JOINING  # no offer yet
    assert alice.permission.can_publish and alice.permission.can_subscribe
    assert abs(alice.joined_at - time.time()) < 10

    err = await twirp_error(lkapi.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="nobody")))
    assert_error(err, "not_found", 404, "participant does not exist")
    err = await twirp_error(lkapi.room.get_participant(api.RoomParticipantIdentity(room="no-room", identity="alice")))
    assert_error(err, "not_found", 404)
    # LiveKit answers ListParticipants on an unknown room with an empty list
    assert (await lkapi.room.list_participants(api.ListParticipantsRequest(room="no-room"))).participants == []


async def test_remove_participant(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice")
    bob, join_b = await join(server, clients, "bob")

    resp = await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="bob"))
    assert resp == api.RemoveParticipantResponse()

    leave = await bob.expect("leave")
    assert leave.reason == Reason.PARTICIPANT_REMOVED
    await asyncio.wait_for(bob.closed.wait(), 5)
    gone = await alice.expect_update_for("bob", lambda p: p.state == State.DISCONNECTED)
    assert gone.sid == join_b.participant.sid
    assert gone.disconnect_reason == Reason.PARTICIPANT_REMOVED

    listed = (await lkapi.room.list_participants(api.ListParticipantsRequest(room=ROOM))).participants
    assert identities(listed) == {"alice"}
    err = await twirp_error(lkapi.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="bob")))
    assert_error(err, "not_found", 404, "participant does not exist")
    assert not alice.of("leave")
    assert (await alice.ping()).last_ping_timestamp > 0


async def test_mute_published_track(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice")
    bob, _ = await join(server, clients, "bob")
    track = await publish_audio(alice)
    assert not track.muted

    start_a, start_b = len(alice.received), len(bob.received)
    resp = await lkapi.room.mute_published_track(api.MuteRoomTrackRequest(
        room=ROOM, identity="alice", track_sid=track.sid, muted=True))
    assert resp.track.sid == track.sid and resp.track.muted
    assert resp.track.type == models.TrackType.AUDIO

    mute = await alice.expect("mute", start=start_a)
    assert (mute.sid, mute.muted) == (track.sid, True)
    seen = await bob.expect("update", lambda u: any(t.sid == track.sid and t.muted for p in u.participants
                                                    for t in p.tracks), start=start_b)
    assert seen.participants[0].identity == "alice"
    info = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="alice"))
    assert [(t.sid, t.muted) for t in info.tracks] == [(track.sid, True)]

    # unmuting remotely needs room.enable_remote_unmute
    start_a = len(alice.received)
    err = await twirp_error(lkapi.room.mute_published_track(api.MuteRoomTrackRequest(
        room=ROOM, identity="alice", track_sid=track.sid, muted=False)))
    assert_error(err, "failed_precondition", 412, "remote unmute not enabled")
    info = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="alice"))
    assert info.tracks[0].muted
    await alice.ping()
    assert [m.muted for m in alice.of("mute")] == [True]  # the refused unmute told alice nothing

    err = await twirp_error(lkapi.room.mute_published_track(api.MuteRoomTrackRequest(
        room=ROOM, identity="nobody", track_sid=track.sid, muted=True)))
    assert_error(err, "not_found", 404)
    # an unknown track sid answers without a track and changes nothing
    resp = await lkapi.room.mute_published_track(api.MuteRoomTrackRequest(
        room=ROOM, identity="alice", track_sid="TR_unknown", muted=True))
    assert not resp.HasField("track")


@pytest.mark.parametrize("config_overrides", [{"room": {"enable_remote_unmute": True}}])
async def test_remote_unmute_when_enabled(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice")
    track = await publish_audio(alice)
    await lkapi.room.mute_published_track(api.MuteRoomTrackRequest(room=ROOM, identity="alice",
                                                                    track_sid=track.sid, muted=True))
    await alice.expect("mute", lambda m: m.muted)
    start = len(alice.received)
    resp = await lkapi.room.mute_published_track(api.MuteRoomTrackRequest(room=ROOM, identity="alice",
                                                                           track_sid=track.sid, muted=False))
    assert resp.track.sid == track.sid and not resp.track.muted
    mute = await alice.expect("mute", start=start)
    assert (mute.sid, mute.muted) == (track.sid, False)


async def test_update_participant(server, lkapi, clients):
    alice, join_a = await join(server, clients, "alice", name="Alice")
    bob, _ = await join(server, clients, "bob")
    track = await publish_audio(alice)
    version_before = (await lkapi.room.get_participant(
        api.RoomParticipantIdentity(room=ROOM, identity="alice"))).version

    info = await lkapi.room.update_participant(api.UpdateParticipantRequest(
        room=ROOM, identity="alice", name="Alice 2", metadata="m1", attributes={"a": "1", "b": "2"}))
    assert (info.name, info.metadata, dict(info.attributes)) == ("Alice 2", "m1", {"a": "1", "b": "2"})
    assert info.version > version_before
    seen = await bob.expect_update_for("alice", lambda p: p.metadata == "m1")
    assert (seen.name, dict(seen.attributes)) == ("Alice 2", {"a": "1", "b": "2"})
    assert seen.version > version_before

    # empty name/metadata leave them alone; attributes merge and "" deletes a key
    info2 = await lkapi.room.update_participant(api.UpdateParticipantRequest(
        room=ROOM, identity="alice", attributes={"b": "", "c": "3"}))
    assert (info2.name, info2.metadata, dict(info2.attributes)) == ("Alice 2", "m1", {"a": "1", "c": "3"})
    assert info2.version > info.version
    seen2 = await bob.expect_update_for("alice", lambda p: "c" in p.attributes)
    assert dict(seen2.attributes) == {"a": "1", "c": "3"} and seen2.version > seen.version

    # a permission replaces every flag: only can_subscribe=True given, so publish and data go away
    start_a = len(alice.received)
    info3 = await lkapi.room.update_participant(api.UpdateParticipantRequest(
        room=ROOM, identity="alice", permission=api.ParticipantPermission(can_subscribe=True)))
    assert info3.permission.can_subscribe
    assert not info3.permission.can_publish and not info3.permission.can_publish_data
    assert info3.version > info2.version
    assert list(info3.tracks) == []  # revoking publish unpublished the track
    seen3 = await bob.expect_update_for("alice", lambda p: not p.permission.can_publish)
    assert seen3.version > seen2.version and seen3.permission.can_subscribe
    unpublished = await alice.expect("track_unpublished", start=start_a)
    assert unpublished.track_sid == track.sid

    refresh = await alice.expect("refresh_token", start=start_a)
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(refresh)
    assert claims.identity == "alice" and claims.name == "Alice 2" and claims.metadata == "m1"
    assert claims.video.room_join and claims.video.room == ROOM
    assert claims.video.can_publish is False and claims.video.can_subscribe is True
    assert claims.attributes == {"a": "1", "c": "3"}
    assert join_a.participant.sid == info3.sid

    err = await twirp_error(lkapi.room.update_participant(api.UpdateParticipantRequest(
        room=ROOM, identity="nobody", metadata="x")))
    assert_error(err, "not_found", 404, "participant does not exist")


async def test_update_subscriptions(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice")
    bob, _ = await join(server, clients, "bob")
    track = await publish_audio(alice)

    resp = await lkapi.room.update_subscriptions(api.UpdateSubscriptionsRequest(
        room=ROOM, identity="bob", track_sids=[track.sid], subscribe=False))
    assert resp == api.UpdateSubscriptionsResponse()
    assert server.node.rooms.get(ROOM).participants["bob"].subscription_requests == {track.sid: False}

    err = await twirp_error(lkapi.room.update_subscriptions(api.UpdateSubscriptionsRequest(
        room=ROOM, identity="nobody", track_sids=[track.sid], subscribe=True)))
    assert_error(err, "not_found", 404)
    assert (await bob.ping()).last_ping_timestamp > 0


async def test_send_data(server, lkapi, clients):
    joins = {}
    for identity in ("alice", "bob", "carol"):
        _, joins[identity] = await join(server, clients, identity)
    sessions = {identity: server.node.media.sessions[j.participant.sid] for identity, j in joins.items()}

    await lkapi.room.send_data(api.SendDataRequest(room=ROOM, data=b"for bob", kind=api.DataPacket.RELIABLE,
                                                   topic="chat", destination_identities=["bob"]))
    await lkapi.room.send_data(api.SendDataRequest(room=ROOM, data=b"for all", kind=api.DataPacket.LOSSY))

    assert [p.user.payload for p in sessions["bob"].data] == [b"for bob", b"for all"]
    assert [p.user.payload for p in sessions["alice"].data] == [b"for all"]
    assert [p.user.payload for p in sessions["carol"].data] == [b"for all"]
    targeted = sessions["bob"].data[0]
    assert targeted.WhichOneof("value") == "user"
    assert targeted.kind == api.DataPacket.RELIABLE
    assert targeted.user.topic == "chat"
    assert list(targeted.user.destination_identities) == ["bob"]
    assert len(targeted.user.nonce) == 16  # the SDK sends a random 16-byte nonce
    broadcast = sessions["carol"].data[0]
    assert broadcast.kind == api.DataPacket.LOSSY and not broadcast.user.HasField("topic")

    # the deprecated destination_sids still target (the Node SDK's legacy sendData overload sends only them)
    await lkapi.room.send_data(api.SendDataRequest(room=ROOM, data=b"by sid",
                                                   destination_sids=[joins["carol"].participant.sid]))
    assert [p.user.payload for p in sessions["carol"].data] == [b"for all", b"by sid"]
    assert [p.user.payload for p in sessions["alice"].data] == [b"for all"]
    assert [p.user.payload for p in sessions["bob"].data] == [b"for bob", b"for all"]
    # a destination that matches nobody reaches nobody (it is not a broadcast)
    await lkapi.room.send_data(api.SendDataRequest(room=ROOM, data=b"lost", destination_identities=["nobody"]))
    await lkapi.room.send_data(api.SendDataRequest(room=ROOM, data=b"lost", destination_sids=["PA_nobody"]))
    assert sum(len(s.data) for s in sessions.values()) == 5

    # a nonce must be 16 bytes or absent (the SDK always sends 16, so go raw)
    body = rs.SendDataRequest(room=ROOM, data=b"x", nonce=b"12345").SerializeToString()
    status, ctype, raw = await raw_twirp(server, "SendData", body, token=grant_token(room_admin=True, room=ROOM))
    assert status == 400 and ctype == "application/json"
    assert json.loads(raw)["code"] == "invalid_argument"
    assert sum(len(s.data) for s in sessions.values()) == 5

    err = await twirp_error(lkapi.room.send_data(api.SendDataRequest(room="no-room", data=b"x")))
    assert_error(err, "not_found", 404)


async def test_update_room_metadata(server, lkapi, clients):
    alice, join_a = await join(server, clients, "alice")
    bob, _ = await join(server, clients, "bob")

    room = await lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=ROOM, metadata="hello"))
    assert (room.sid, room.name, room.metadata, room.num_participants) == (join_a.room.sid, ROOM, "hello", 2)
    for client in (alice, bob):
        update = await client.expect("room_update", lambda u: u.room.metadata == "hello")
        assert update.room.sid == join_a.room.sid
    listed = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[ROOM]))).rooms
    assert listed[0].metadata == "hello"

    err = await twirp_error(lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room="no-room", metadata="x")))
    assert_error(err, "not_found", 404)
    err = await twirp_error(lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(
        room=ROOM, metadata="x" * (512 * 1024 + 1))))
    assert_error(err, "invalid_argument", 400, "metadata size exceeds limits 524288")
    assert (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[ROOM]))).rooms[0].metadata == "hello"


async def test_forward_and_move_are_not_implemented(server, lkapi, clients):
    alice, _ = await join(server, clients, "alice")
    err = await twirp_error(lkapi.room.forward_participant(api.ForwardParticipantRequest(
        room=ROOM, identity="alice", destination_room="r2")))
    assert_error(err, "unimplemented", 501, "not implemented")
    err = await twirp_error(lkapi.room.move_participant(api.MoveParticipantRequest(
        room=ROOM, identity="alice", destination_room="r2")))
    assert_error(err, "unimplemented", 501, "not implemented")
    assert identities((await lkapi.room.list_participants(api.ListParticipantsRequest(room=ROOM))).participants) == {"alice"}
    assert [r.name for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms] == [ROOM]
    assert not alice.of("leave")


# --- grants ---------------------------------------------------------------------------------

def _calls(room: str, track_sid: str):
    """One call per RPC the SDK wraps, by grant category."""
    return {
        "create": [lambda r: r.create_room(api.CreateRoomRequest(name="sneaky", metadata="x"))],
        "delete": [lambda r: r.delete_room(api.DeleteRoomRequest(room=room))],
        "list": [lambda r: r.list_rooms(api.ListRoomsRequest())],
        "admin": [
            lambda r: r.list_participants(api.ListParticipantsRequest(room=room)),
            lambda r: r.get_participant(api.RoomParticipantIdentity(room=room, identity="alice")),
            lambda r: r.remove_participant(api.RoomParticipantIdentity(room=room, identity="alice")),
            lambda r: r.mute_published_track(api.MuteRoomTrackRequest(room=room, identity="alice",
                                                                      track_sid=track_sid, muted=True)),
            lambda r: r.update_participant(api.UpdateParticipantRequest(room=room, identity="alice", metadata="x")),
            lambda r: r.update_subscriptions(api.UpdateSubscriptionsRequest(room=room, identity="alice",
                                                                            track_sids=[track_sid])),
            lambda r: r.send_data(api.SendDataRequest(room=room, data=b"x")),
            lambda r: r.update_room_metadata(api.UpdateRoomMetadataRequest(room=room, metadata="x")),
        ],
    }


@pytest.mark.parametrize("label, grants, denied", [
    ("join only", dict(room_join=True, room=ROOM), {"create", "delete", "list", "admin"}),
    ("admin of another room", dict(room_admin=True, room="elsewhere"), {"create", "delete", "list", "admin"}),
    ("admin without room", dict(room_admin=True), {"create", "delete", "list", "admin"}),
    ("admin of this room", dict(room_admin=True, room=ROOM), {"create", "delete", "list"}),
    ("create only", dict(room_create=True), {"list", "admin"}),
    ("list only", dict(room_list=True), {"create", "delete", "admin"}),
])
async def test_missing_grants_are_denied(server, lkapi, clients, label, grants, denied):
    alice, _ = await join(server, clients, "alice")
    track = await publish_audio(alice)
    start = len(alice.received)

    limited = api.LiveKitAPI(server.url, token=grant_token(**grants))
    try:
        calls = _calls(ROOM, track.sid)
        for category in denied:
            for call in calls[category]:
                err = await twirp_error(call(limited.room))
                assert_error(err, "unauthenticated", 401, "permissions denied")
        allowed = {"list"} - denied
        if allowed:  # the same client works for what its token does allow
            assert [r.name for r in (await calls["list"][0](limited.room)).rooms] == [ROOM]
    finally:
        await limited.aclose()

    # nothing happened: no room, no removal, no metadata, no mute, no data
    rooms = (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms
    assert [(r.name, r.metadata) for r in rooms] == [(ROOM, "")]
    info = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=ROOM, identity="alice"))
    assert info.metadata == "" and not info.tracks[0].muted
    assert server.node.media.sessions[info.sid].data == []
    await alice.ping()
    assert not any(r.WhichOneof("message") in ("leave", "mute", "room_update") for r in alice.received[start:])


async def test_request_without_token_is_unauthenticated(server, clients):
    await join(server, clients, "alice")
    body = rs.ListParticipantsRequest(room=ROOM).SerializeToString()
    status, ctype, raw = await raw_twirp(server, "ListParticipants", body, token=None)
    assert (status, ctype) == (401, "application/json")
    assert json.loads(raw) == {"code": "unauthenticated", "msg": "permissions denied"}


# --- bad requests ---------------------------------------------------------------------------

def _signed(claims: dict, secret: str = API_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _admin_claims(**overrides) -> dict:
    now = int(time.time())
    claims = {"iss": API_KEY, "nbf": now, "exp": now + 600,
              "video": {"roomAdmin": True, "room": ROOM, "roomCreate": True, "roomList": True}}
    claims.update(overrides)
    return claims


async def test_bad_requests_leave_the_server_unaffected(server, lkapi, clients):
    alice, join_a = await join(server, clients, "alice")
    good = _signed(_admin_claims())
    delete_body = rs.DeleteRoomRequest(room=ROOM).SerializeToString()

    async def still_fine():
        rooms = (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms
        assert [(r.name, r.sid) for r in rooms] == [(ROOM, join_a.room.sid)]
        listed = (await lkapi.room.list_participants(api.ListParticipantsRequest(room=ROOM))).participants
        assert [(p.identity, p.sid) for p in listed] == [("alice", join_a.participant.sid)]
        assert (await alice.ping()).last_ping_timestamp > 0
        assert not alice.of("leave") and not alice.closed.is_set()

    cases = [
        ("garbage protobuf", "CreateRoom", b"\xff\xff\xff\xff", "application/protobuf", good, 400, "malformed"),
        ("truncated protobuf", "DeleteRoom", delete_body[:-2], "application/protobuf", good, 400, "malformed"),
        ("garbage json", "DeleteRoom", b'{"room": "r1",', "application/json", good, 400, "malformed"),
        ("json array", "DeleteRoom", b'["r1"]', "application/json", good, 400, "malformed"),
        ("wrong json type", "DeleteRoom", b'{"room": 17}', "application/json;charset=UTF-8", good, 400, "malformed"),
        ("unknown method", "DestroyEverything", delete_body, "application/protobuf", good, 404, "bad_route"),
        ("unsupported content type", "DeleteRoom", delete_body, "text/plain", good, 404, "bad_route"),
    ]
    for label, method, body, ctype, token, status, code in cases:
        got_status, got_ctype, raw = await raw_twirp(server, method, body, token=token, content_type=ctype)
        assert (got_status, got_ctype) == (status, "application/json"), label
        error = json.loads(raw)
        assert error["code"] == code and isinstance(error["msg"], str) and error["msg"], label
        assert set(error) <= {"code", "msg", "meta"}, label
        await still_fine()

    now = int(time.time())
    bad_tokens = [
        ("forged (wrong secret)", _signed(_admin_claims(), "not-the-secret-not-the-secret-xx")),
        ("expired", _signed(_admin_claims(nbf=now - 7200, exp=now - 3600))),
        ("not yet valid", _signed(_admin_claims(nbf=now + 3600, exp=now + 7200))),
        ("no exp", _signed({k: v for k, v in _admin_claims().items() if k != "exp"})),
        ("unknown api key", _signed(_admin_claims(iss="someone-else"))),
        ("not a jwt", "definitely.not.a-jwt"),
        ("alg none", jwt.encode(_admin_claims(), None, algorithm="none")),
    ]
    for label, token in bad_tokens:
        got_status, _, _ = await raw_twirp(server, "DeleteRoom", delete_body, token=token)
        assert got_status == 401, label
        await still_fine()

    # through the SDK: a wrong secret is refused and the call has no effect
    forged = api.LiveKitAPI(server.url, API_KEY, "not-the-secret-not-the-secret-xx")
    try:
        err = await twirp_error(forged.room.delete_room(api.DeleteRoomRequest(room=ROOM)))
        assert err.status == 401
        err = await twirp_error(forged.room.create_room(api.CreateRoomRequest(name="forged")))
        assert err.status == 401
    finally:
        await forged.aclose()
    await still_fine()

    # a scheme other than Bearer is refused too
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.post(f"{server.url}/twirp/livekit.RoomService/DeleteRoom", data=delete_body,
                                headers={"Content-Type": "application/protobuf",
                                         "Authorization": f"Basic {good}"}) as resp:
            assert resp.status == 401
    await still_fine()

    # and the same valid token still works afterwards
    status, _, raw = await raw_twirp(server, "ListRooms", rs.ListRoomsRequest().SerializeToString(), token=good)
    assert status == 200
    assert [r.name for r in rs.ListRoomsResponse.FromString(raw).rooms] == [ROOM]
