"""LiveKit signaling as a client sees it: join, updates, pings, leave, resume, refusals."""

import asyncio
import base64
import time

import aiohttp
import jwt
import pytest
from livekit.protocol import models, rtc

from support.media_standin import offer_sdp
from support.servers import API_KEY, API_SECRET, InProcessServer, http_get, make_config, wait_for
from support.signal_client import SignalClient, encode_join_request
from support.tokens import join_token
from support.media_standin import StandInMediaBackend

Reason = models.DisconnectReason
State = models.ParticipantInfo.State


async def join(server, identity, room="r1", *, v1=True, **grants):
    client = await SignalClient.connect(server.ws_url, join_token(identity, room, **grants), v1=v1)
    return client, await client.expect("join")


async def ws_status(server, path: str, token: str | None = None, query: str = "") -> tuple[int, str]:
    """HTTP status and body of a WebSocket upgrade attempt (refusals happen before the upgrade)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(f"{server.ws_url}{path}?{query}", headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            async with session.get(f"{server.url}{path.replace('/rtc', '/rtc', 1)}/validate?{query}",
                                   headers=headers) as resp:
                return exc.status, await resp.text()
        await ws.close()
        return 101, ""


def v1_query(request: rtc.JoinRequest | None = None) -> str:
    return "join_request=" + encode_join_request(request or rtc.JoinRequest(client_info=models.ClientInfo(protocol=17)))


# --- join -----------------------------------------------------------------------------------

async def test_join_response_v1(server):
    client, response = await join(server, "alice", name="Alice", metadata="md")
    assert response.room.name == "r1" and response.room.sid.startswith("RM_")
    assert response.participant.sid.startswith("PA_")
    assert (response.participant.identity, response.participant.name, response.participant.metadata) == (
        "alice", "Alice", "md")
    assert response.server_info.protocol == 17 and response.server_info.version
    assert response.server_version == response.server_info.version
    assert response.ping_interval > 0 and response.ping_timeout > response.ping_interval
    assert response.subscriber_primary is False
    assert response.participant.permission.can_publish and response.participant.permission.can_subscribe
    # JoinResponse is the very first message
    assert client.received[0].WhichOneof("message") == "join"
    await client.close()


async def test_join_response_v0_subscriber_primary_and_query_token(server):
    client = await SignalClient.connect(server.ws_url, join_token("bob", "r1"), v1=False, token_in_query=True)
    response = await client.expect("join")
    assert response.subscriber_primary is True
    assert response.participant.identity == "bob"
    await client.close()


async def test_join_request_gzip_and_unpadded(server):
    req = rtc.JoinRequest(client_info=models.ClientInfo(sdk=models.ClientInfo.JS, protocol=17))
    for encoded in (encode_join_request(req, compress=True), encode_join_request(req).rstrip("=")):
        token = join_token("carol", "r1")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.ws_url}/rtc/v1?join_request={encoded}",
                                          headers={"Authorization": f"Bearer {token}"}) as ws:
                msg = await ws.receive(timeout=5)
                assert rtc.SignalResponse.FromString(msg.data).join.participant.identity == "carol"


async def test_double_slash_path_is_routed(server):
    token = join_token("dora", "r1")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.ws_url}//rtc/v1?{v1_query()}",
                                      headers={"Authorization": f"Bearer {token}"}) as ws:
            msg = await ws.receive(timeout=5)
            assert rtc.SignalResponse.FromString(msg.data).WhichOneof("message") == "join"


async def test_participants_see_each_other_and_versions_grow(server):
    alice, _ = await join(server, "alice")
    bob, join_b = await join(server, "bob", v1=False)
    assert [p.identity for p in join_b.other_participants] == ["alice"]
    first = await alice.expect_update_for("bob")
    # bob publishes two tracks: each update carries the complete track list, versions increase
    for cid, kind, ttype in (("mic-1", "audio", models.TrackType.AUDIO), ("cam-1", "video", models.TrackType.VIDEO)):
        await bob.send(add_track=rtc.AddTrackRequest(cid=cid, name=cid, type=ttype))
        published = await bob.expect("track_published", lambda t, cid=cid: t.cid == cid)
        assert published.track.sid.startswith("TR_")
    await bob.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic-1"), ("video", "cam-1"))))
    full = await alice.expect_update_for("bob", lambda p: len(p.tracks) == 2)
    assert {t.name for t in full.tracks} == {"mic-1", "cam-1"}
    assert full.version > first.version
    versions = [p.version for u in alice.of("update") for p in u.participants if p.identity == "bob"]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    await alice.close(); await bob.close()


async def test_hidden_participant_is_not_announced(server):
    alice, _ = await join(server, "alice")
    ghost, ghost_join = await join(server, "ghost", hidden=True)
    bob, join_b = await join(server, "bob")
    assert [p.identity for p in join_b.other_participants] == ["alice"]
    assert ghost_join.participant.permission.hidden
    assert all(p.identity != "ghost" for u in alice.of("update") for p in u.participants)
    for c in (alice, ghost, bob):
        await c.close()


# --- keepalive and bad frames ---------------------------------------------------------------

async def test_ping_req_and_legacy_ping(server):
    client, _ = await join(server, "alice")
    pong = await client.ping()
    assert abs(pong.timestamp - time.time() * 1000) < 5000
    start = len(client.received)
    await client.send(ping=123)
    legacy = await client.expect("pong", start=start)
    assert legacy > 1_000_000_000_000  # server time in ms
    await client.close()


async def test_bad_frames_change_nothing(server):
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await alice.send_raw(b"\xff\xff\xff\xff garbage")
    await alice.send_raw("{\"ping\": 1}")
    await alice.send_raw(b"")
    assert (await alice.ping()).last_ping_timestamp > 0
    assert (await bob.ping()).last_ping_timestamp > 0
    room = server.node.rooms.get("r1")
    assert set(room.participants) == {"alice", "bob"}
    assert server.server.signal.bad_frames >= 2
    await alice.close(); await bob.close()


# --- leaving --------------------------------------------------------------------------------

async def test_leave_is_seen_by_others_and_socket_closes(server):
    alice, _ = await join(server, "alice")
    bob, join_b = await join(server, "bob")
    await bob.send(leave=rtc.LeaveRequest(reason=Reason.CLIENT_INITIATED))
    gone = await alice.expect_update_for("bob", lambda p: p.state == State.DISCONNECTED)
    assert gone.sid == join_b.participant.sid
    await asyncio.wait_for(bob.closed.wait(), 5)
    assert "bob" not in server.node.rooms.get("r1").participants
    await alice.close(); await bob.close()


@pytest.mark.parametrize("config_overrides", [{"signal": {"reconnect_timeout": 1.0}}])
async def test_dropped_socket_removed_after_timeout(server):
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await bob.drop()
    room = server.node.rooms.get("r1")
    await asyncio.sleep(0.3)
    assert "bob" in room.participants  # kept for a resume at first
    gone = await alice.expect_update_for("bob", lambda p: p.state == State.DISCONNECTED, timeout=5)
    assert gone.disconnect_reason == Reason.CONNECTION_TIMEOUT
    assert "bob" not in room.participants
    await alice.close()


@pytest.mark.parametrize("config_overrides", [{"signal": {"ping_interval": 1, "ping_timeout": 1,
                                                         "reconnect_timeout": 0.5}}])
async def test_silent_client_times_out(server):
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    # bob sends nothing: after ping_timeout the server gives up on its signal connection
    for _ in range(8):
        await alice.ping()
        await asyncio.sleep(0.25)
    gone = await alice.expect_update_for("bob", lambda p: p.state == State.DISCONNECTED, timeout=5)
    assert gone.identity == "bob"
    # alice sent only keepalives, for longer than the timeout: she is still in, still answered
    assert set(server.node.rooms.get("r1").participants) == {"alice"}
    assert (await alice.ping()).last_ping_timestamp > 0
    await alice.close(); await bob.close()


# --- resume and duplicates ------------------------------------------------------------------

@pytest.mark.parametrize("v1", [True, False])
async def test_resume_keeps_the_participant(server, v1):
    alice, _ = await join(server, "alice")
    bob, join_b = await join(server, "bob", v1=v1)
    sid = join_b.participant.sid
    await bob.drop()
    again = await SignalClient.connect(server.ws_url, join_token("bob", "r1"), v1=v1, reconnect_sid=sid)
    await again.expect("reconnect")
    assert again.received[0].WhichOneof("message") == "reconnect"
    update = await again.expect("update")
    assert {p.identity for p in update.participants} == {"alice", "bob"}
    assert server.node.rooms.get("r1").participants["bob"].sid == sid
    assert server.node.media.sessions[sid].resumed == 1  # the media session is told (v0 restarts ICE)
    assert (await again.ping()).last_ping_timestamp > 0
    assert not any(p.state == State.DISCONNECTED for u in alice.of("update") for p in u.participants)
    await alice.close(); await again.close()


async def test_resume_of_unknown_participant_gets_leave_reconnect(server):
    client = await SignalClient.connect(server.ws_url, join_token("zed", "r1"), reconnect_sid="PA_doesnotexist")
    leave = await client.expect("leave")
    assert leave.action == rtc.LeaveRequest.Action.RECONNECT
    assert leave.reason == Reason.STATE_MISMATCH
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()


async def test_duplicate_identity_replaces_first_session(server):
    alice, _ = await join(server, "alice")
    first, join1 = await join(server, "bob")
    second, join2 = await join(server, "bob")
    leave = await first.expect("leave")
    assert leave.reason == Reason.DUPLICATE_IDENTITY
    await asyncio.wait_for(first.closed.wait(), 5)
    assert join2.participant.sid != join1.participant.sid
    await alice.expect_update_for("bob", lambda p: p.sid == join1.participant.sid and p.state == State.DISCONNECTED)
    await alice.expect_update_for("bob", lambda p: p.sid == join2.participant.sid)
    assert server.node.rooms.get("r1").participants["bob"].sid == join2.participant.sid
    await alice.close(); await first.close(); await second.close()


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("config_overrides", [{"room": {"max_participants": 2}}])
async def test_full_room_refuses_join(server):
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    status, body = await ws_status(server, "/rtc/v1", join_token("carol", "r1"), v1_query())
    assert status == 500 and "exceeded its max participants" in body
    # a same-identity rejoin replaces, so it is allowed
    bob2, _ = await join(server, "bob")
    assert (await alice.ping()).last_ping_timestamp > 0
    assert set(server.node.rooms.get("r1").participants) == {"alice", "bob"}
    for c in (alice, bob, bob2):
        await c.close()


def _token(**claims) -> str:
    now = int(time.time())
    base = {"iss": API_KEY, "sub": "mallory", "nbf": now, "exp": now + 600, "video": {"roomJoin": True, "room": "r1"}}
    base.update(claims)
    secret = base.pop("_secret", API_SECRET)
    return jwt.encode(base, secret, algorithm="HS256")


@pytest.mark.parametrize("token,status", [
    (None, 401),
    (_token(_secret="wrong-secret"), 401),
    (_token(exp=int(time.time()) - 3600), 401),
    (_token(iss="unknown-key"), 401),
    (_token(video={"roomList": True}), 403),
    ("not.a.jwt", 401),
])
async def test_bad_tokens_are_refused_before_upgrade(server, token, status):
    alice, _ = await join(server, "alice")
    got, body = await ws_status(server, "/rtc/v1", token, v1_query())
    assert got == status, body
    got_v0, _ = await ws_status(server, "/rtc", token)
    assert got_v0 == status
    assert set(server.node.rooms.get("r1").participants) == {"alice"}
    assert (await alice.ping()).last_ping_timestamp > 0
    await alice.close()


async def test_token_for_another_room_is_refused(server):
    status, _ = await ws_status(server, "/rtc", join_token("eve", "other"), "room=r1")
    assert status == 403
    assert server.node.rooms.get("r1") is None


@pytest.mark.parametrize("query,status", [
    ("", 400),                                           # v1 needs join_request
    ("join_request=%%%%", 400),                          # not base64
    ("join_request=" + base64.urlsafe_b64encode(b"\x0a\xff\xff").decode(), 400),  # not a WrappedJoinRequest
    ("join_request=" + "A" * 2_000_000, 400),            # oversize
])
async def test_bad_join_request(server, query, status):
    got, _ = await ws_status(server, "/rtc/v1", join_token("frank", "r1"), query)
    assert got == status
    assert server.node.rooms.get("r1") is None


async def test_gzip_bomb_join_request_is_refused(server):
    import gzip
    bomb = rtc.WrappedJoinRequest(compression=rtc.WrappedJoinRequest.GZIP,
                                  join_request=gzip.compress(b"\x00" * 8_000_000))
    query = "join_request=" + base64.urlsafe_b64encode(bomb.SerializeToString()).decode()
    got, body = await ws_status(server, "/rtc/v1", join_token("frank", "r1"), query)
    assert got == 400 and "too large" in body


async def test_plain_get_on_signal_paths_is_404(server):
    for path in ("/rtc", "/rtc/v1"):
        status, _, _ = await http_get(server.url + path)
        assert status == 404


async def test_validate_endpoints_have_cors(server):
    token = join_token("gina", "r1")
    for path in ("/rtc/validate", f"/rtc/v1/validate?{v1_query()}"):
        sep = "&" if "?" in path else "?"
        status, body, headers = await http_get(f"{server.url}{path}{sep}access_token={token}")
        assert (status, body) == (200, "success")
        assert headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("config_overrides", [{"room": {"auto_create": False}}])
async def test_no_auto_create(server):
    status, _ = await ws_status(server, "/rtc/v1", join_token("hal", "nope"), v1_query())
    assert status == 404
    client, response = await join(server, "hal", "made", room_create=True)
    assert response.room.name == "made"
    await client.close()


# --- participant requests -------------------------------------------------------------------

async def test_mute_and_metadata_updates(server):
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob", can_update_own_metadata=True)
    await alice.send(add_track=rtc.AddTrackRequest(cid="mic", name="mic", type=models.TrackType.AUDIO))
    track = (await alice.expect("track_published")).track
    await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic"))))
    await bob.expect_update_for("alice", lambda p: len(p.tracks) == 1)
    await alice.send(mute=rtc.MuteTrackRequest(sid=track.sid, muted=True))
    await bob.expect_update_for("alice", lambda p: p.tracks and p.tracks[0].muted)
    # alice may not update her own metadata; bob may
    await alice.send(update_metadata=rtc.UpdateParticipantMetadata(metadata="nope", request_id=7))
    refused = await alice.expect("request_response", lambda r: r.request_id == 7)
    assert refused.reason == rtc.RequestResponse.NOT_ALLOWED
    await bob.send(update_metadata=rtc.UpdateParticipantMetadata(metadata="hello", attributes={"k": "v"}, request_id=8))
    info = await alice.expect_update_for("bob", lambda p: p.metadata == "hello")
    assert dict(info.attributes) == {"k": "v"}
    assert server.node.rooms.get("r1").participants["alice"].metadata == ""
    await alice.close(); await bob.close()


async def test_publish_without_permission_is_refused(server):
    viewer, _ = await join(server, "viewer", can_publish=False)
    await viewer.send(add_track=rtc.AddTrackRequest(cid="c", name="c", type=models.TrackType.AUDIO))
    refused = await viewer.expect("request_response")
    assert refused.reason == rtc.RequestResponse.NOT_ALLOWED
    assert not viewer.of("track_published")
    await viewer.close()


async def test_room_closes_after_departure_timeout():
    srv = await InProcessServer(make_config(room={"departure_timeout": 1}), media=StandInMediaBackend()).start()
    try:
        alice, _ = await join(srv, "alice")
        await alice.leave()
        await wait_for(lambda: srv.node.rooms.get("r1") is None, timeout=5, what="room closed")
    finally:
        await srv.stop()


async def test_subscription_permissions_from_the_publisher(server):
    """A publisher allows only bob: carol is not subscribed and is told so; opening up to
    everyone subscribes carol."""
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    carol, _ = await join(server, "carol")
    await alice.send(subscription_permission=rtc.SubscriptionPermission(
        all_participants=False, track_permissions=[rtc.TrackPermission(participant_identity="bob", all_tracks=True)]))
    await alice.send(add_track=rtc.AddTrackRequest(cid="mic", name="mic", type=models.TrackType.AUDIO))
    track = (await alice.expect("track_published")).track
    await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic"))))
    room = server.node.rooms.get("r1")
    sessions = server.node.media.sessions
    await wait_for(lambda: track.sid in sessions[room.participants["bob"].sid].subscribed, what="bob subscribed")
    await asyncio.sleep(0.1)
    assert track.sid not in sessions[room.participants["carol"].sid].subscribed
    await alice.send(subscription_permission=rtc.SubscriptionPermission(all_participants=True))
    update = await carol.expect("subscription_permission_update")
    assert (update.track_sid, update.allowed) == (track.sid, True)
    await wait_for(lambda: track.sid in sessions[room.participants["carol"].sid].subscribed, what="carol subscribed")
    # and closing it again takes carol's subscription away
    await alice.send(subscription_permission=rtc.SubscriptionPermission(
        all_participants=False, track_permissions=[rtc.TrackPermission(participant_identity="bob", all_tracks=True)]))
    revoked = await carol.expect("subscription_permission_update", lambda u: not u.allowed)
    assert revoked.track_sid == track.sid
    await wait_for(lambda: track.sid not in sessions[room.participants["carol"].sid].subscribed,
                   what="carol unsubscribed")
    assert track.sid in sessions[room.participants["bob"].sid].subscribed
    for c in (alice, bob, carol):
        await c.close()


async def test_media_failure_asks_the_client_to_resume(server):
    alice, _ = await join(server, "alice")
    bob, join_b = await join(server, "bob")
    session = server.node.media.sessions[join_b.participant.sid]
    session.events.on_transport_failed()  # what the media transport reports when ICE/DTLS fails
    leave = await bob.expect("leave")
    assert leave.action == rtc.LeaveRequest.Action.RESUME
    assert leave.reason == Reason.MEDIA_FAILURE
    await asyncio.wait_for(bob.closed.wait(), 5)
    assert server.node.rooms.get("r1").participants["bob"].sid == join_b.participant.sid  # kept for the resume
    again = await SignalClient.connect(server.ws_url, join_token("bob", "r1"), reconnect_sid=join_b.participant.sid)
    await again.expect("reconnect")
    assert not any(p.state == State.DISCONNECTED for u in alice.of("update") for p in u.participants)
    await alice.close(); await bob.close(); await again.close()
