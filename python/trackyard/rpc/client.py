"""A control node's side of the internal gRPC: channels to media nodes, the relay and admin calls.

`NodeClients` keeps one channel per media node (by node id and address, as registered in
etcd). `GrpcRelay` implements `signal.relay.SignalRelay` over `trackyard.v1.SignalRelay`:
`open` sends the admitted connection and returns only after the media node accepted it (or
raises `Refused` with its HTTP status; 503 when the node cannot be reached), so the
WebSocket is upgraded only for an accepted join. `GrpcAdmin` forwards RoomService calls.

Back-pressure: `GrpcSession.send` awaits the stream's flow control, so while the media node
is behind, the control node stops reading the client's WebSocket. Responses are read one at
a time and written to the WebSocket before the next is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import grpc.aio
from google.protobuf.message import Message
from livekit.protocol import rtc

from trackyard import errors
from trackyard.rooms.admin import METHODS
from trackyard.rpc import relay_pb2 as pb
from trackyard.rpc import relay_pb2_grpc
from trackyard.rpc import room_admin_pb2 as admin_pb
from trackyard.rpc import room_admin_pb2_grpc
from trackyard.rpc.auth import NodeCredentials
from trackyard.rpc.codec import encode_start
from trackyard.rpc.server import MAX_MESSAGE
from trackyard.signal.admission import Admission, Refused

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),  # notice a vanished media node within ~15 s
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # a fixed 64 KB flow-control window per stream: back-pressure reaches a slow peer after
    # that much, instead of after the megabytes bandwidth probing would allow (signaling is
    # light; 64 KB per round trip is plenty)
    ("grpc.http2.bdp_probe", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]
OPEN_TIMEOUT = 5.0    # seconds for a media node to accept or refuse a connection
ADMIN_TIMEOUT = 10.0  # seconds for one RoomService call
LINGER = 10.0         # seconds a closed relay call may take to finish before it is cancelled


def unreachable(node_id: str) -> str:
    return f"room host unavailable: media node {node_id} cannot be reached"


class NodeClient:
    """The channel to one media node."""

    def __init__(self, node_id: str, address: str, credentials: NodeCredentials, *, local_id: str = "") -> None:
        self.node_id = node_id
        self.address = address
        self.credentials = credentials
        self.local_id = local_id
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.relay = GrpcRelay(self)
        self.admin = GrpcAdmin(self)
        self._relay_stub = relay_pb2_grpc.SignalRelayStub(self.channel)
        self._admin_stub = room_admin_pb2_grpc.RoomAdminStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(grace=1.0)


class NodeClients:
    """One `NodeClient` per media node; a node that re-registered elsewhere gets a new channel."""

    def __init__(self, keys, *, local_id: str = "") -> None:
        self.credentials = NodeCredentials(keys)
        self.local_id = local_id
        self._clients: dict[str, NodeClient] = {}
        self._closing: set[asyncio.Task] = set()

    def get(self, node_id: str, address: str) -> NodeClient:
        client = self._clients.get(node_id)
        if client is not None and client.address != address:
            self._close_later(client)
            client = None
        if client is None:
            client = self._clients[node_id] = NodeClient(node_id, address, self.credentials, local_id=self.local_id)
        return client

    def forget_except(self, live: set[str]) -> None:
        """Close the channels of nodes no longer registered."""
        for node_id in [n for n in self._clients if n not in live]:
            self._close_later(self._clients.pop(node_id))

    def _close_later(self, client: NodeClient) -> None:
        task = asyncio.get_running_loop().create_task(client.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), *self._closing, return_exceptions=True)


class GrpcRelay:
    def __init__(self, client: NodeClient) -> None:
        self.client = client

    async def _start(self, admission: Admission, room_sid: str, validate_only: bool):
        client = self.client
        call = client._relay_stub.Relay(metadata=client.credentials.metadata())
        start = encode_start(admission, room_sid=room_sid, validate_only=validate_only,
                             control_node_id=client.local_id)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await call.write(pb.RelayRequest(start=start))
                first = await call.read()
        except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError) as exc:
            call.cancel()
            detail = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            log.warning("relay to %s (%s) failed: %s", client.node_id, client.address, detail)
            raise Refused(503, unreachable(client.node_id)) from None
        kind = first.WhichOneof("message") if first is not grpc.aio.EOF else None
        if kind == "refused":
            call.cancel()
            raise Refused(first.refused.status, first.refused.text)
        if kind != "accepted":
            call.cancel()
            raise Refused(503, unreachable(client.node_id))
        return call

    async def open(self, admission: Admission, room_sid: str = "") -> "GrpcSession":
        return GrpcSession(await self._start(admission, room_sid, False), self.client.node_id)

    async def check(self, admission: Admission) -> None:
        call = await self._start(admission, "", True)
        call.cancel()


class GrpcSession:
    """One client connection relayed to a media node (see `signal.relay.RelaySession`)."""

    def __init__(self, call, node_id: str) -> None:
        self.call = call
        self.node_id = node_id
        self._writable = True
        self._closed = False

    async def _write(self, message: pb.RelayRequest) -> None:
        if not self._writable:
            return
        try:
            await self.call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            log.debug("relay write to %s failed: %s", self.node_id, exc)
            self._writable = False

    async def upgraded(self) -> None:
        await self._write(pb.RelayRequest(upgraded=pb.Upgraded()))

    async def send(self, request: rtc.SignalRequest, raw: bytes) -> None:
        await self._write(pb.RelayRequest(signal_request=raw))

    async def receive(self) -> bytes | None:
        if self._closed:
            return None
        try:
            message = await self.call.read()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            log.info("relay from media node %s ended: %s", self.node_id, code)
            message = grpc.aio.EOF
        if message is grpc.aio.EOF or message.WhichOneof("message") != "signal_response":
            self._closed = True
            return None
        return message.signal_response

    def close(self, *, aborted: bool = False) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._finish(aborted))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def _finish(self, aborted: bool) -> None:
        await self._write(pb.RelayRequest(client_gone=pb.ClientGone(aborted=aborted)))
        if self._writable:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                await self.call.done_writing()
        self._writable = False
        # the media node ends the call once its host has let go; do not leave it hanging
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, grpc.aio.AioRpcError):
            async with asyncio.timeout(LINGER):
                await self.call.code()
        self.call.cancel()


_pending: set[asyncio.Task] = set()


class GrpcAdmin:
    """RoomService calls run on a media node (see `rooms.admin.RoomAdmin.call`)."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client

    async def call(self, method: str, request: Message, *, room_sid: str = "") -> Message:
        client = self.client
        try:
            result = await client._admin_stub.Call(
                admin_pb.AdminCall(method=method, request=request.SerializeToString(), room_sid=room_sid),
                metadata=client.credentials.metadata(), timeout=ADMIN_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.warning("room admin %s on %s failed: %s", method, client.node_id, exc.code().name)
            raise errors.Unavailable(unreachable(client.node_id)) from None
        if result.WhichOneof("result") == "error":
            error = result.error
            code = error.code if error.code in errors.TWIRP_STATUS else "internal"
            raise errors.TrackyardError(error.msg, meta=dict(error.meta), code=code)
        return METHODS[method][1].FromString(result.response)
