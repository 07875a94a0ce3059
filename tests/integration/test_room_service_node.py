"""RoomService over the JSON codec: the real Node server SDK (livekit-server-sdk 2.19.2) and
raw requests shaped exactly like the ones it sends.

The Node script runs as a subprocess (asyncio, so the in-process server keeps serving) and
prints every call's result; the participant it acts on is connected over signaling, so the
test also checks what that participant saw.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time
from pathlib import Path

import aiohttp
import jwt
from livekit import api
from livekit.protocol import models, rtc

from support.media_standin import offer_sdp
from support.servers import API_KEY, API_SECRET
from support.signal_client import SignalClient
from support.tokens import join_token

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "room_service_calls.mjs"
NODE_TIMEOUT = 60.0

Reason = models.DisconnectReason


async def run_node(*args: str) -> dict:
    node = shutil.which("node")
    assert node, "node is required for the Node SDK tests"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
    proc = await asyncio.create_subprocess_exec(node, str(SCRIPT), *args, cwd=NODE_DIR, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node script did not finish within {NODE_TIMEOUT}s")
    assert proc.returncode == 0, f"node exited {proc.returncode}: {err.decode(errors='replace')}"
    return json.loads(out.decode().strip().splitlines()[-1])


async def publish_audio(client: SignalClient, cid: str) -> models.TrackInfo:
    start = len(client.received)
    await client.send(add_track=rtc.AddTrackRequest(cid=cid, name="mic", type=models.TrackType.AUDIO,
                                                    source=models.TrackSource.MICROPHONE))
    published = await client.expect("track_published", lambda r: r.cid == cid, start=start)
    await client.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", cid))))
    await client.expect("update", lambda u: any(t.sid == published.track.sid for p in u.participants
                                                for t in p.tracks), start=start)
    return published.track


def ok(result):
    """A step's result, failing with the recorded SDK error if the call threw."""
    assert not (isinstance(result, dict) and "error" in result), result
    return result


async def test_node_sdk_room_service(server):
    room = "node-room"
    alice = await SignalClient.connect(server.ws_url, join_token("alice", room, name="Alice"))
    try:
        join = await alice.expect("join")
        track = await publish_audio(alice, "mic-node")

        results = await run_node(server.url, room, "alice", track.sid)

        created = ok(results["createRoom"])  # create-or-update of the room alice is in
        assert created["sid"] == join.room.sid and created["name"] == room
        assert (created["maxParticipants"], created["emptyTimeout"]) == (7, 120)
        assert created["numParticipants"] == 1 and created["numPublishers"] == 1
        other = ok(results["createOther"])
        assert other["name"] == f"{room}-other" and other["sid"].startswith("RM_") and other["sid"] != join.room.sid

        assert sorted(r["name"] for r in ok(results["listRooms"])) == [room, f"{room}-other"]
        by_name = ok(results["listRoomsByName"])
        assert [(r["name"], r["metadata"], r["maxParticipants"]) for r in by_name] == [(room, "from-node", 7)]
        assert ok(results["listRoomsUnknown"]) == []

        meta = ok(results["updateRoomMetadata"])
        assert (meta["sid"], meta["metadata"]) == (join.room.sid, "node-meta")
        await alice.expect("room_update", lambda u: u.room.metadata == "node-meta")

        listed = ok(results["listParticipants"])
        assert [(p["identity"], p["sid"]) for p in listed] == [("alice", join.participant.sid)]
        got = ok(results["getParticipant"])
        assert (got["identity"], got["name"], got["sid"]) == ("alice", "Alice", join.participant.sid)
        # protobuf-es toJson omits defaults: type AUDIO is enum value 0
        assert [(t["sid"], t.get("type", "AUDIO"), t["source"]) for t in got["tracks"]] == [
            (track.sid, "AUDIO", "MICROPHONE")]
        assert got["state"] == "ACTIVE"

        missing = results["getUnknownParticipant"]["error"]
        assert (missing["status"], missing["code"]) == (404, "not_found")
        assert missing["message"] == "participant does not exist"

        updated = ok(results["updateParticipant"])
        assert (updated["name"], updated["metadata"]) == ("Node Name", "p-meta")
        assert updated["attributes"] == {"k": "v"}  # "" for an unknown key deletes nothing and adds nothing
        perm = updated["permission"]
        assert perm.get("canPublish") and perm.get("canSubscribe") and not perm.get("canPublishData")
        assert perm["canPublishSources"] == ["MICROPHONE"]
        assert [t["sid"] for t in updated["tracks"]] == [track.sid]  # microphone is still allowed
        assert updated["version"] > got["version"]
        refresh = await alice.expect("refresh_token")
        assert api.TokenVerifier(API_KEY, API_SECRET).verify(refresh).video.can_publish_data is False

        muted = ok(results["mutePublishedTrack"])
        assert (muted["sid"], muted.get("muted")) == (track.sid, True)
        mute = await alice.expect("mute")
        assert (mute.sid, mute.muted) == (track.sid, True)

        assert ok(results["sendData"]) == "ok"
        packets = server.node.media.sessions[join.participant.sid].data
        assert [(p.user.payload, p.user.topic, p.kind) for p in packets] == [
            (b"hello from node", "node-topic", models.DataPacket.RELIABLE)]
        assert list(packets[0].user.destination_identities) == ["alice"] and len(packets[0].user.nonce) == 16

        assert ok(results["removeParticipant"]) == "ok"
        leave = await alice.expect("leave")
        assert leave.reason == Reason.PARTICIPANT_REMOVED
        await asyncio.wait_for(alice.closed.wait(), 5)
        assert ok(results["listParticipantsAfterRemove"]) == []

        assert ok(results["deleteRoom"]) == "ok"
        assert [r["name"] for r in ok(results["listRoomsAfterDelete"])] == [f"{room}-other"]
        again = results["deleteRoomAgain"]["error"]
        assert (again["status"], again["code"]) == (404, "not_found")
        assert server.node.rooms.get(room) is None
    finally:
        await alice.close()


# --- raw JSON, exactly as the Node SDK sends it ------------------------------------------------

def node_style_token(**video) -> str:
    """Like the Node SDK's API tokens: header {"alg":"HS256"} only, no sub, 10 minutes."""
    now = int(time.time())
    claims = {"video": video, "iss": API_KEY, "exp": now + 600, "nbf": now}
    return jwt.encode(claims, API_SECRET, algorithm="HS256", headers={"typ": None})


async def post_json(server, method: str, body: bytes, token: str) -> tuple[int, str, bytes]:
    headers = {"Content-Type": "application/json;charset=UTF-8", "Authorization": f"Bearer {token}",
               "User-Agent": "livekit-server-sdk-node/2.19.2", "X-Livekit-Request-Id": "b0d5f0a6-5d4e-4a54-9a0e-1c3c1a6f0c11"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.post(f"{server.url}/twirp/livekit.RoomService/{method}", data=body,
                                headers=headers) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_raw_node_json_requests_get_snake_case_json_with_defaults(server):
    room = "json-room"
    status, ctype, raw = await post_json(
        server, "CreateRoom",
        b'{"name":"json-room","emptyTimeout":30,"departureTimeout":9,"maxParticipants":5,"metadata":"md"}',
        node_style_token(roomCreate=True))
    assert (status, ctype) == (200, "application/json"), raw
    created = json.loads(raw)
    assert created["name"] == room and created["sid"].startswith("RM_")
    assert (created["empty_timeout"], created["departure_timeout"], created["max_participants"]) == (30, 9, 5)
    # every field is present, defaults included, unset messages as null, int64 as strings
    assert created["num_participants"] == 0 and created["num_publishers"] == 0
    assert created["active_recording"] is False and created["turn_password"] == ""
    assert created["enabled_codecs"] == [] and created["version"] is None
    assert isinstance(created["creation_time"], str) and abs(int(created["creation_time"]) - time.time()) < 10
    assert isinstance(created["creation_time_ms"], str)
    assert not any(k in created for k in ("emptyTimeout", "maxParticipants", "creationTime"))

    alice = await SignalClient.connect(server.ws_url, join_token("alice", room))
    bob = await SignalClient.connect(server.ws_url, join_token("bob", room))
    try:
        join = await alice.expect("join")
        join_b = await bob.expect("join")
        admin = node_style_token(roomAdmin=True, room=room)
        status, ctype, raw = await post_json(
            server, "UpdateParticipant",
            b'{"room":"json-room","identity":"alice","metadata":"md",'
            b'"permission":{"canPublishSources":["CAMERA"]},"attributes":{"a":"b"}}',
            admin)
        assert (status, ctype) == (200, "application/json"), raw
        info = json.loads(raw)
        assert (info["sid"], info["identity"], info["metadata"]) == (join.participant.sid, "alice", "md")
        assert info["attributes"] == {"a": "b"}
        assert info["state"] == "JOINING" and info["kind"] == "STANDARD"
        assert info["disconnect_reason"] == "UNKNOWN_REASON"
        assert info["tracks"] == [] and info["name"] == "" and info["is_publisher"] is False
        assert isinstance(info["joined_at"], str) and isinstance(info["joined_at_ms"], str)
        assert info["permission"]["can_publish_sources"] == ["CAMERA"]
        # the permission replaced every flag: the ones Node omitted (false) are false now
        assert info["permission"]["can_subscribe"] is False and info["permission"]["can_publish"] is False
        assert info["permission"]["can_publish_data"] is False and info["permission"]["hidden"] is False
        seen = await alice.expect_update_for("alice", lambda p: p.metadata == "md")
        assert list(seen.permission.can_publish_sources) == [models.TrackSource.CAMERA]

        # SendData as Node encodes it: bytes as base64, default kind omitted, random 16-byte nonce
        nonce = base64.b64encode(os.urandom(16)).decode()
        body = json.dumps({"room": room, "data": base64.b64encode(b"hi").decode(), "destinationSids": [],
                           "destinationIdentities": ["bob"], "topic": "t", "nonce": nonce}).encode()
        status, ctype, raw = await post_json(server, "SendData", body, admin)
        assert (status, ctype, raw) == (200, "application/json", b"{}")  # Node needs a JSON body
        packets = server.node.media.sessions[join_b.participant.sid].data
        assert [(p.user.payload, p.user.topic, p.user.nonce) for p in packets] == [(b"hi", "t", base64.b64decode(nonce))]
        assert packets[0].kind == models.DataPacket.RELIABLE
        assert server.node.media.sessions[join.participant.sid].data == []

        # snake_case keys are accepted too, and an empty message answers {}
        status, _, raw = await post_json(server, "ListRooms", b'{"names":["json-room","nope"]}',
                                         node_style_token(roomList=True))
        assert status == 200 and [r["name"] for r in json.loads(raw)["rooms"]] == [room]
        status, _, raw = await post_json(server, "UpdateRoomMetadata",
                                         b'{"room":"json-room","metadata":"via snake","unknownField":1}', admin)
        assert status == 200 and json.loads(raw)["metadata"] == "via snake"
        status, _, raw = await post_json(server, "ListParticipants", b'{"room":"json-room"}', admin)
        assert sorted(p["identity"] for p in json.loads(raw)["participants"]) == ["alice", "bob"]

        # errors: exactly application/json (Node compares the header), Twirp body
        status, ctype, raw = await post_json(server, "GetParticipant", b'{"room":"json-room","identity":"carol"}', admin)
        assert (status, ctype) == (404, "application/json")
        assert json.loads(raw) == {"code": "not_found", "msg": "participant does not exist"}
        status, ctype, raw = await post_json(server, "ListParticipants", b"", admin)
        assert (status, ctype, json.loads(raw)["code"]) == (400, "application/json", "malformed")

        assert (await alice.ping()).last_ping_timestamp > 0
    finally:
        await alice.close()
        await bob.close()
