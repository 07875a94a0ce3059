"""A media node's internal gRPC server: `trackyard.v1.SignalRelay` and `trackyard.v1.RoomAdmin`.

Both are thin: the relay moves one client connection between the control node's stream
and this node's `SignalHost` (the same host code a single process uses), and RoomAdmin
decodes a RoomService request and runs it on this node's `RoomAdmin`.

One relay stream, as this side sees it::

    read start ─▶ SignalHost.open ─▶ write refused (end) | write accepted
    read upgraded ─▶ HostSession.start          (anything else: the newcomer is taken out)
    uplink task:  read signal_request ─▶ SignalConnection.push (awaits when the host is behind)
    this task:    SignalConnection.next_outgoing ─▶ write signal_response (awaits flow control)
                  … ─▶ write closed, end the call

If the call breaks (the control node died or cancelled it), the client counts as gone
without a leave: its participant stays for `signal.reconnect_timeout`, so the client can
resume through any control node.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from livekit.protocol import rtc

from trackyard import errors
from trackyard.rooms.admin import METHODS, RoomAdmin
from trackyard.rpc import relay_pb2 as pb
from trackyard.rpc import relay_pb2_grpc
from trackyard.rpc import room_admin_pb2 as admin_pb
from trackyard.rpc import room_admin_pb2_grpc
from trackyard.rpc.auth import NodeAuthenticator
from trackyard.rpc.codec import decode_start
from trackyard.signal.admission import Refused
from trackyard.signal.connection import SignalConnection
from trackyard.signal.host import SignalHost
from trackyard.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),            # notice a vanished control node
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),  # accept the clients' keepalives
    ("grpc.http2.max_pings_without_data", 0),
    # a fixed 64 KB flow-control window per stream: back-pressure reaches a slow peer after
    # that much, instead of after the megabytes bandwidth probing would allow (signaling is
    # light; 64 KB per round trip is plenty)
    ("grpc.http2.bdp_probe", 0),
]


class RelayServicer(relay_pb2_grpc.SignalRelayServicer):
    def __init__(self, host: SignalHost, node_id: str, auth: NodeAuthenticator) -> None:
        self.host = host
        self.node_id = node_id
        self.auth = auth
        self.streams = 0  # relay streams open now

    async def Relay(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: N802 (gRPC name)
        if not self.auth.check(context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid node credentials")
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("message") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be start")
        try:
            admission = decode_start(first.start)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            if first.start.validate_only:
                self.host.check(admission)
                await context.write(pb.RelayResponse(accepted=pb.Accepted(node_id=self.node_id)))
                return
            hosted = self.host.open(admission, first.start.room_sid)
        except Refused as refused:
            await context.write(pb.RelayResponse(refused=pb.Refused(status=refused.status, text=refused.text)))
            return
        self.streams += 1
        try:
            await context.write(pb.RelayResponse(accepted=pb.Accepted(node_id=self.node_id)))
            second = await context.read()
            if second is grpc.aio.EOF or second.WhichOneof("message") != "upgraded":
                hosted.abort()
                return
            hosted.start()
            await self._pump(context, hosted.link)
        finally:
            hosted.abort()  # a no-op once started
            hosted.link.client_gone()
            self.streams -= 1

    async def _pump(self, context: grpc.aio.ServicerContext, link: SignalConnection) -> None:
        uplink = asyncio.get_running_loop().create_task(self._uplink(context, link))
        try:
            while (frame := await link.next_outgoing()) is not None:
                await context.write(pb.RelayResponse(signal_response=frame))
            await context.write(pb.RelayResponse(closed=pb.Closed()))
        finally:
            await cancel_and_wait(uplink)

    @staticmethod
    async def _uplink(context: grpc.aio.ServicerContext, link: SignalConnection) -> None:
        try:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    break
                kind = message.WhichOneof("message")
                if kind == "signal_request":
                    try:
                        request = rtc.SignalRequest.FromString(message.signal_request)
                    except DecodeError:
                        log.warning("dropped an undecodable relayed frame for %s", link.label)
                        continue
                    await link.push(request)
                elif kind == "client_gone":
                    break
        except grpc.aio.AioRpcError as exc:
            log.debug("relay of %s ended: %s", link.label, exc.code())
        finally:
            link.client_gone()


class RoomAdminServicer(room_admin_pb2_grpc.RoomAdminServicer):
    def __init__(self, admin: RoomAdmin, auth: NodeAuthenticator) -> None:
        self.admin = admin
        self.auth = auth

    async def Call(self, request: admin_pb.AdminCall, context: grpc.aio.ServicerContext) -> admin_pb.AdminResult:  # noqa: N802
        if not self.auth.check(context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid node credentials")
        types = METHODS.get(request.method)
        try:
            if types is None:
                raise errors.Unimplemented("not implemented")
            try:
                message = types[0].FromString(request.request)
            except DecodeError:
                raise errors.Malformed("the protobuf request could not be decoded") from None
            response = await self.admin.call(request.method, message, room_sid=request.room_sid)
        except errors.TrackyardError as exc:
            return admin_pb.AdminResult(error=admin_pb.TwirpError(code=exc.code, msg=exc.msg, meta=exc.meta))
        except Exception:
            log.exception("room admin %s failed", request.method)
            return admin_pb.AdminResult(error=admin_pb.TwirpError(code="internal", msg="internal error"))
        return admin_pb.AdminResult(response=response.SerializeToString())


def _listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc_server(host: SignalHost, admin: RoomAdmin, *, node_id: str, keys, bind: list[str],
                            port: int) -> tuple[grpc.aio.Server, RelayServicer]:
    """Serve SignalRelay and RoomAdmin on `port` of every address in `bind`."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    auth = NodeAuthenticator(keys)
    relay = RelayServicer(host, node_id, auth)
    relay_pb2_grpc.add_SignalRelayServicer_to_server(relay, server)
    room_admin_pb2_grpc.add_RoomAdminServicer_to_server(RoomAdminServicer(admin, auth), server)
    for address in bind:
        try:
            bound = server.add_insecure_port(_listen_address(address, port))
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address} port {port}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen for gRPC on {address} port {port}")
    await server.start()
    return server, relay
