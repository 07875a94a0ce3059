"""Tests for trackyard.api.twirp: a fake RoomService served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from livekit import api as lkapi
from livekit.protocol import models, room as room_pb

from trackyard import errors
from trackyard.api.twirp import CallContext, Method, Service, add_twirp_routes

API_KEY, API_SECRET = "devkey", "secret"
MAX_BODY = 64 * 1024
PREFIX = "/twirp/livekit.RoomService/"
JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}
PB_HEADERS = {"Content-Type": "application/protobuf"}

# "devkey"/"secret" are LiveKit's --dev credentials; PyJWT warns that they are short.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@dataclass
class Server:
    url: str
    session: aiohttp.ClientSession
    calls: list[tuple[str, Any, CallContext]] = field(default_factory=list)

    async def post(self, method: str, data: bytes | str, headers: dict[str, str], **kw: Any):
        url = self.url + PREFIX + method
        return await self.session.post(url, data=data, headers=headers, **kw)


def authenticate(request: web.Request) -> dict[str, Any] | None:
    """Like LiveKit's API-key middleware: no token → no grants; a bad one → plain 401."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    if not header.startswith("Bearer "):
        raise errors.Unauthenticated("invalid authorization header. Must start with Bearer ")
    try:
        return jwt.decode(
            header[len("Bearer ") :],
            API_SECRET,
            algorithms=["HS256"],
            issuer=API_KEY,
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError as exc:
        raise errors.Unauthenticated(f"invalid authorization token: {exc}") from exc


def build_service(calls: list[tuple[str, Any, CallContext]]) -> Service:
    def record(name: str, req: Any, ctx: CallContext) -> None:
        calls.append((name, req, ctx))

    async def create_room(req: room_pb.CreateRoomRequest, ctx: CallContext) -> models.Room:
        record("CreateRoom", req, ctx)
        return models.Room(
            sid="RM_test",
            name=req.name,
            empty_timeout=req.empty_timeout,
            max_participants=req.max_participants,
            metadata=req.metadata,
            creation_time=1_771_351_907,
        )

    async def delete_room(req: room_pb.DeleteRoomRequest, ctx: CallContext) -> Any:
        record("DeleteRoom", req, ctx)
        if req.room != "known":
            raise errors.NotFound("requested room does not exist")
        return room_pb.DeleteRoomResponse()

    async def update_metadata(req: room_pb.UpdateRoomMetadataRequest, ctx: CallContext) -> Any:
        raise errors.InvalidArgument(
            "metadata size exceeds limits 524288",
            meta={"argument": "metadata size exceeds limits"},
        )

    async def list_rooms(req: room_pb.ListRoomsRequest, ctx: CallContext) -> Any:
        return models.Room(name="wrong type")  # bug: should be a ListRoomsResponse

    async def list_participants(req: room_pb.ListParticipantsRequest, ctx: CallContext) -> Any:
        raise RuntimeError("secret internal detail")

    async def remove_participant(req: room_pb.RoomParticipantIdentity, ctx: CallContext) -> Any:
        record("RemoveParticipant", req, ctx)
        return room_pb.RemoveParticipantResponse()

    async def send_data(req: room_pb.SendDataRequest, ctx: CallContext) -> Any:
        record("SendData", req, ctx)
        return room_pb.SendDataResponse()

    async def get_participant(req: room_pb.RoomParticipantIdentity, ctx: CallContext) -> Any:
        return models.ParticipantInfo(identity=req.identity, joined_at=1_771_351_907_123)

    methods = [
        Method("CreateRoom", room_pb.CreateRoomRequest, models.Room, create_room),
        Method("DeleteRoom", room_pb.DeleteRoomRequest, room_pb.DeleteRoomResponse, delete_room),
        Method(
            "UpdateRoomMetadata", room_pb.UpdateRoomMetadataRequest, models.Room, update_metadata
        ),
        Method("ListRooms", room_pb.ListRoomsRequest, room_pb.ListRoomsResponse, list_rooms),
        Method(
            "ListParticipants",
            room_pb.ListParticipantsRequest,
            room_pb.ListParticipantsResponse,
            list_participants,
        ),
        Method(
            "RemoveParticipant",
            room_pb.RoomParticipantIdentity,
            room_pb.RemoveParticipantResponse,
            remove_participant,
        ),
        Method("SendData", room_pb.SendDataRequest, room_pb.SendDataResponse, send_data),
        Method(
            "GetParticipant",
            room_pb.RoomParticipantIdentity,
            models.ParticipantInfo,
            get_participant,
        ),
    ]
    return Service("livekit.RoomService", {m.name: m for m in methods})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    calls: list[tuple[str, Any, CallContext]] = []
    app = web.Application()
    add_twirp_routes(app, [build_service(calls)], authenticate, max_body_bytes=MAX_BODY)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        srv = Server(url=f"http://{host}:{port}", session=session, calls=calls)
        yield srv
        await assert_still_healthy(srv)
    await runner.cleanup()


async def assert_still_healthy(srv: Server) -> None:
    """After whatever the test did, a good request still succeeds."""
    resp = await srv.post("CreateRoom", b'{"name":"ok"}', JSON_HEADERS)
    assert resp.status == 200
    assert (await resp.json())["name"] == "ok"


async def assert_twirp_error(resp: aiohttp.ClientResponse, status: int, code: str) -> dict:
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json"
    body = json.loads(await resp.read())
    assert set(body) <= {"code", "msg", "meta"} and {"code", "msg"} <= set(body)
    assert body["code"] == code
    return body


# --- the real Python SDK (protobuf) ----------------------------------------------------


async def test_python_sdk_create_and_delete(server: Server) -> None:
    client = lkapi.LiveKitAPI(server.url, API_KEY, API_SECRET)
    try:
        room = await client.room.create_room(
            room_pb.CreateRoomRequest(name="r1", max_participants=5)
        )
        assert isinstance(room, models.Room)
        assert (room.name, room.max_participants, room.sid) == ("r1", 5, "RM_test")
        name, req, ctx = server.calls[-1]
        assert name == "CreateRoom" and req.name == "r1"
        assert ctx.grants["iss"] == API_KEY and ctx.grants["video"]["roomCreate"] is True
        assert isinstance(ctx.request, web.Request)

        assert await client.room.delete_room(room_pb.DeleteRoomRequest(room="known")) == (
            room_pb.DeleteRoomResponse()
        )
        with pytest.raises(lkapi.TwirpError) as info:
            await client.room.delete_room(room_pb.DeleteRoomRequest(room="missing"))
        assert info.value.code == "not_found"
        assert info.value.status == 404
        assert info.value.message == "requested room does not exist"

        with pytest.raises(lkapi.TwirpError) as info:
            await client.room.update_room_metadata(
                room_pb.UpdateRoomMetadataRequest(room="r1", metadata="x")
            )
        assert (info.value.code, info.value.status) == ("invalid_argument", 400)
        assert info.value.metadata == {"argument": "metadata size exceeds limits"}
    finally:
        await client.aclose()


async def test_protobuf_raw(server: Server) -> None:
    body = room_pb.CreateRoomRequest(name="pb", empty_timeout=9).SerializeToString()
    resp = await server.post("CreateRoom", body, PB_HEADERS)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/protobuf"
    room = models.Room.FromString(await resp.read())
    assert (room.name, room.empty_timeout) == ("pb", 9)
    assert server.calls[-1][2].grants is None  # no token → no grants

    body = room_pb.DeleteRoomRequest(room="known").SerializeToString()
    resp = await server.post("DeleteRoom", body, PB_HEADERS)
    assert resp.status == 200 and await resp.read() == b""

    resp = await server.post("CreateRoom", b"", PB_HEADERS)  # empty = a valid empty message
    assert resp.status == 200
    assert models.Room.FromString(await resp.read()).name == ""


# --- JSON ------------------------------------------------------------------------------


async def test_json_camel_case_like_node_sdk(server: Server) -> None:
    resp = await server.post(
        "CreateRoom", '{"name":"r1","emptyTimeout":10,"maxParticipants":3}', JSON_HEADERS
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert body["name"] == "r1" and body["empty_timeout"] == 10 and body["max_participants"] == 3
    # snake_case names, defaults present, int64 as strings, unset sub-message as null
    assert body["num_participants"] == 0 and body["active_recording"] is False
    assert body["enabled_codecs"] == [] and body["turn_password"] == ""
    assert body["creation_time"] == "1771351907" and body["creation_time_ms"] == "0"
    assert body["version"] is None
    assert not any(k != k.lower() for k in body)


async def test_json_snake_case_enums_int64_bytes_unknown_fields(server: Server) -> None:
    resp = await server.post(
        "CreateRoom",
        '{"name":"r2","empty_timeout":"7","max_participants":2,"someFutureField":{"x":1}}',
        {"Content-Type": "application/json"},
    )
    assert resp.status == 200
    assert (await resp.json())["empty_timeout"] == 7

    resp = await server.post(
        "SendData",
        '{"room":"r1","data":"aGk=","kind":"LOSSY","destinationIdentities":["a"],"topic":"t"}',
        JSON_HEADERS,
    )
    assert resp.status == 200 and await resp.json() == {}
    req = server.calls[-1][1]
    assert (req.data, req.kind, list(req.destination_identities), req.topic) == (
        b"hi", models.DataPacket.LOSSY, ["a"], "t"
    )
    resp = await server.post("SendData", '{"room":"r1","kind":0}', JSON_HEADERS)
    assert resp.status == 200 and server.calls[-1][1].kind == models.DataPacket.RELIABLE

    for ts in ('"1771351907"', "1771351907"):  # int64 as string or number
        resp = await server.post(
            "RemoveParticipant",
            '{"room":"r1","identity":"alice","revoke_token_ts":%s}' % ts,
            JSON_HEADERS,
        )
        assert resp.status == 200 and await resp.read() == b"{}"
        assert server.calls[-1][1].revoke_token_ts == 1_771_351_907

    resp = await server.post("GetParticipant", '{"room":"r1","identity":"bob"}', JSON_HEADERS)
    body = await resp.json()
    assert body["identity"] == "bob" and body["joined_at"] == "1771351907123"
    assert body["state"] == "JOINING" and body["kind"] == "STANDARD"  # enums by name
    assert body["permission"] is None and body["tracks"] == [] and body["attributes"] == {}


async def test_json_empty_object_and_empty_response(server: Server) -> None:
    resp = await server.post("CreateRoom", "{}", JSON_HEADERS)
    assert resp.status == 200 and (await resp.json())["name"] == ""
    resp = await server.post("DeleteRoom", '{"room":"known"}', JSON_HEADERS)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.read() == b"{}"


# --- errors ----------------------------------------------------------------------------


async def test_handler_twirp_error_json(server: Server) -> None:
    resp = await server.post("DeleteRoom", '{"room":"missing"}', JSON_HEADERS)
    body = await assert_twirp_error(resp, 404, "not_found")
    assert body == {"code": "not_found", "msg": "requested room does not exist"}  # no meta key

    resp = await server.post("UpdateRoomMetadata", '{"room":"r1"}', JSON_HEADERS)
    body = await assert_twirp_error(resp, 400, "invalid_argument")
    assert body["meta"] == {"argument": "metadata size exceeds limits"}


@pytest.mark.parametrize("body", [b"\xff\xff\xff garbage", b"\x0a\x05ab"])
async def test_garbage_protobuf_is_malformed(server: Server, body: bytes) -> None:
    resp = await server.post("CreateRoom", body, PB_HEADERS)
    body_json = await assert_twirp_error(resp, 400, "malformed")
    assert body_json["msg"] == "the protobuf request could not be decoded"


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"[]", b'"x"', b"\xff", b'{"name":5}', b'{"name":"a","name":"b"}'],
)
async def test_bad_json_is_malformed(server: Server, body: bytes) -> None:
    resp = await server.post("CreateRoom", body, JSON_HEADERS)
    body_json = await assert_twirp_error(resp, 400, "malformed")
    assert body_json["msg"] == "the json request could not be decoded"


async def test_non_post_is_bad_route(server: Server) -> None:
    for verb in ("GET", "PUT", "DELETE"):
        resp = await server.session.request(verb, server.url + PREFIX + "CreateRoom")
        body = await assert_twirp_error(resp, 404, "bad_route")
        assert body["msg"] == f'unsupported method "{verb}" (only POST is allowed)'


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_unsupported_content_type_is_bad_route(server: Server, content_type: str) -> None:
    resp = await server.post("CreateRoom", b"{}", {"Content-Type": content_type})
    body = await assert_twirp_error(resp, 404, "bad_route")
    assert body["msg"].startswith("unexpected Content-Type: ")


async def test_content_type_case_and_params(server: Server) -> None:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    resp = await server.post("CreateRoom", b'{"name":"c"}', headers)
    assert resp.status == 200 and (await resp.json())["name"] == "c"
    resp = await server.post("CreateRoom", b"", {"Content-Type": "APPLICATION/PROTOBUF"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/protobuf"


async def test_unknown_method_and_service_are_bad_route(server: Server) -> None:
    resp = await server.post("NoSuchMethod", b"{}", JSON_HEADERS)
    body = await assert_twirp_error(resp, 404, "bad_route")
    assert body["msg"] == f'no handler for path "{PREFIX}NoSuchMethod"'
    resp = await server.session.post(
        server.url + "/twirp/livekit.Nope/CreateRoom", data=b"{}", headers=JSON_HEADERS
    )
    await assert_twirp_error(resp, 404, "bad_route")


async def test_body_over_limit_is_413(server: Server) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    resp = await server.post("CreateRoom", big, JSON_HEADERS)
    assert resp.status == 413 and resp.content_type == "text/plain"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)

    resp = await server.post("CreateRoom", chunked(), JSON_HEADERS)
    assert resp.status == 413 and resp.content_type == "text/plain"

    exact = b'{"name":"edge"}'.ljust(MAX_BODY, b" ")  # exactly at the limit is fine
    resp = await server.post("CreateRoom", exact, JSON_HEADERS)
    assert resp.status == 200 and (await resp.json())["name"] == "edge"


async def test_bad_token_is_plain_401(server: Server) -> None:
    for header in ("Basic abc", "Bearer not-a-jwt"):
        resp = await server.post("CreateRoom", b"{}", {**JSON_HEADERS, "Authorization": header})
        assert resp.status == 401
        assert resp.content_type == "text/plain"
        assert (await resp.text()).startswith("invalid authorization")
    assert not [c for c in server.calls if c[0] == "CreateRoom"]  # the handler never ran

    # authentication runs before routing and decoding, like LiveKit's middleware
    resp = await server.session.get(
        server.url + PREFIX + "CreateRoom", headers={"Authorization": "Basic abc"}
    )
    assert resp.status == 401

    # the Python SDK with a wrong secret sees code "unknown" (plain-text body)
    client = lkapi.LiveKitAPI(server.url, API_KEY, "wrong-secret")
    try:
        with pytest.raises(lkapi.TwirpError) as info:
            await client.room.create_room(room_pb.CreateRoomRequest(name="r1"))
        assert (info.value.status, info.value.code) == (401, "unknown")
    finally:
        await client.aclose()


async def test_handler_exception_is_opaque_internal(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    resp = await server.post("ListParticipants", b'{"room":"r1"}', JSON_HEADERS)
    body = await assert_twirp_error(resp, 500, "internal")
    assert body == {"code": "internal", "msg": "internal error"}
    assert "secret internal detail" not in json.dumps(body)
    assert any(
        r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records
    )

    body_pb = room_pb.ListParticipantsRequest(room="r").SerializeToString()
    resp = await server.post("ListParticipants", body_pb, PB_HEADERS)
    await assert_twirp_error(resp, 500, "internal")


async def test_wrong_response_type_is_internal(server: Server) -> None:
    resp = await server.post("ListRooms", b"{}", JSON_HEADERS)
    assert await assert_twirp_error(resp, 500, "internal") == {
        "code": "internal",
        "msg": "internal error",
    }
