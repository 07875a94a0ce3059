"""Builds and runs a trackyard server in its role (``node.role``, see docs/cluster.md).

=========  ================================================================================
role       what the process does
=========  ================================================================================
``all``    everything in one process: client endpoints (signaling, Twirp, health), rooms,
           media. Without etcd (the default, and always with ``--dev``) this is the
           single-node server: every room is here, the relay is in process. With etcd it
           is also a media node of a cluster, and rooms placed elsewhere are relayed.
``control`` client endpoints only: rooms are placed on media nodes through etcd, signaling
           is relayed to them over gRPC, RoomService calls are routed to them.
``media``  rooms and media: registered in etcd, serves the internal gRPC API; HTTP serves
           only the health check.
=========  ================================================================================
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web
from yarl import URL
from livekit.protocol import models

from trackyard import ids
from trackyard.api import twirp
from trackyard.api.room_service import RoomService
from trackyard.auth.tokens import token_from_request, verify_token
from trackyard.config import Config
from trackyard.context import NodeContext
from trackyard.engine import MediaEngine, is_debug_build
from trackyard.engine import version as engine_version
from trackyard.logs import set_node
from trackyard.media.external_ip import apply_external_ip
from trackyard.media.session import MediaBackend
from trackyard.media.transport import quiet_sctp_teardown
from trackyard.media.webrtc import WebRtcBackend
from trackyard.rooms.admin import RoomAdmin
from trackyard.rooms.manager import RoomManager
from trackyard.roles.router import LocalRouter, Route, Router
from trackyard.signal.host import SignalHost
from trackyard.signal.relay import LocalRelay
from trackyard.signal.service import SignalService
from trackyard.webhooks.notifier import WebhookNotifier

log = logging.getLogger(__name__)


class NoWebhooks:
    def notify(self, event) -> None:
        return None

    async def close(self, timeout: float = 5.0) -> None:
        return None


@dataclass
class Server:
    node_id: str
    role: str
    app: web.Application
    webhooks: WebhookNotifier | NoWebhooks
    node: NodeContext | None = None        # rooms hosted here (roles all, media)
    signal: SignalService | None = None    # client signal endpoints (roles all, control)
    host: SignalHost | None = None
    router: Router | None = None
    cluster: dict = field(default_factory=dict)  # store, directory, placement, clients, media_role
    drain_timeout: float = 60.0
    draining: bool = False

    async def ready(self) -> tuple[bool, str]:
        """The /readyz answer: able to place and host rooms. Never ready while draining; on
        cluster roles, only while etcd answers (and a media node is registered)."""
        if self.draining:
            return False, "draining"
        media_role = self.cluster.get("media_role")
        if media_role is not None:
            return await media_role.ready()
        store = self.cluster.get("store")
        if store is not None:
            from trackyard.cluster import EtcdUnavailable
            try:
                await store.get("nodes/")
            except EtcdUnavailable as exc:
                return False, str(exc)
        return True, "ready"

    async def drain(self) -> None:
        """The first SIGTERM: a node that hosts rooms in a cluster moves them away (within
        ``node.drain_timeout``); other nodes have nothing to drain."""
        self.draining = True
        media_role = self.cluster.get("media_role")
        if media_role is not None:
            await media_role.drain(self.drain_timeout)


def build_server(config: Config, *, media: MediaBackend | None = None) -> Server:
    role = config.node.role
    node_id = config.node.id or ids.new_id(ids.NODE)
    hooks: WebhookNotifier | NoWebhooks = NoWebhooks()
    if config.webhook.urls and config.node.hosts_rooms:
        wh = config.webhook
        hooks = WebhookNotifier(wh.urls, wh.api_key, config.keys[wh.api_key],
                                include_events=wh.include_events or None, exclude_events=wh.exclude_events or None)
    app = web.Application(client_max_size=config.limit.max_api_request_body_size,
                          middlewares=[_double_slash_middleware])
    server = Server(node_id=node_id, role=role, app=app, webhooks=hooks, drain_timeout=config.node.drain_timeout)
    engine: MediaEngine | None = None
    admin: RoomAdmin | None = None
    if config.node.hosts_rooms:
        if media is None:
            tcp = f"0.0.0.0:{config.rtc.tcp_port}" if config.rtc.tcp_port else None
            engine = MediaEngine(f"0.0.0.0:{config.rtc.udp_port}", gso=config.rtc.udp_gso, tcp=tcp)
            media = WebRtcBackend(engine, advertise=[config.rtc.node_ip] if config.rtc.node_ip else None)
        server.node = NodeContext(config=config, rooms=RoomManager(config, hooks), media=media, node_id=node_id)
        server.host = SignalHost(server.node)
        admin = RoomAdmin(config, server.node.rooms)
    if config.etcd.enabled:
        _build_cluster(server, config, admin)
    elif config.node.serves_clients:
        server.router = LocalRouter(node_id, server.host, admin)

    if server.router is not None:
        server.signal = SignalService(config, server.router)
        server.signal.add_routes(app)

        def authenticate(request: web.Request):
            token = token_from_request(request.headers, request.query)
            return None if token is None else verify_token(token, config.keys)

        twirp.add_twirp_routes(app, [RoomService(config, server.router).service()], authenticate,
                               max_body_bytes=config.limit.max_api_request_body_size)
    app.router.add_get("/", _health)
    app.router.add_get("/healthz", _health)
    cluster = server.cluster

    async def readyz(_request: web.Request) -> web.Response:
        ready, text = await server.ready()
        return web.Response(status=200 if ready else 503, text=text)

    app.router.add_get("/readyz", readyz)
    if config.metrics.enabled:
        from trackyard.metrics.collector import server_registry
        from trackyard.metrics.endpoint import add_metrics_route

        add_metrics_route(app, server_registry(server), username=config.metrics.username,
                          password=config.metrics.password)

    async def on_startup(_app: web.Application) -> None:
        if engine is not None:
            engine.start()
            log.info("media on UDP port %d, ICE candidates %s", engine.local_address[1],
                     ", ".join(f"{c.transport} {c.ip}:{c.port}" for c in media.candidates))
        if server.node is not None:
            server.node.rooms.start()
        if cluster:
            await cluster["store"].connect()
            if "media_role" in cluster:
                await cluster["media_role"].start()
            if "placement" in cluster:
                cluster["directory"].start()
                cluster["placement"].start()

    async def on_shutdown(_app: web.Application) -> None:
        if "media_role" in cluster:
            await cluster["media_role"].stop()
        elif server.node is not None:
            await server.node.rooms.stop(models.DisconnectReason.SERVER_SHUTDOWN)
        if server.signal is not None:
            if server.node is None:
                await server.signal.close_all()  # control node: clients reconnect through another one
            await server.signal.flush()  # let the leave messages reach the clients

    async def on_cleanup(_app: web.Application) -> None:
        await hooks.close()
        if cluster:
            if "placement" in cluster:
                await cluster["placement"].stop()
                await cluster["directory"].stop()
                await cluster["clients"].close()
            await cluster["store"].close()
        if engine is not None:
            engine.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return server


def _build_cluster(server: Server, config: Config, admin: RoomAdmin | None) -> None:
    """The etcd-backed parts (imported only here: a single node never loads the etcd client)."""
    from trackyard.cluster import EtcdStore, NodeDirectory, Placement
    from trackyard.roles.control import ClusterRouter
    from trackyard.roles.media import MediaRole
    from trackyard.rpc.client import NodeClients

    store = EtcdStore.from_config(config.etcd)
    server.cluster["store"] = store
    local = None
    if server.node is not None:
        server.cluster["media_role"] = MediaRole(server.node, server.host, admin, store)
        local = Route(server.node_id, LocalRelay(server.host), admin)
    if config.node.serves_clients:
        directory = NodeDirectory(store)
        placement = Placement(store, directory, region=config.region)
        clients = NodeClients(config.keys, local_id=server.node_id)
        server.cluster.update(directory=directory, placement=placement, clients=clients)
        server.router = ClusterRouter(placement, directory, clients, local=local)


@web.middleware
async def _double_slash_middleware(request: web.Request, handler):
    """SDKs given a URL with a trailing path slash ask for `//rtc`: route it as `/rtc`."""
    path = request.rel_url.path
    if "//" not in path:
        return await handler(request)
    while "//" in path:
        path = path.replace("//", "/")
    # re-dispatch through the application so the cleaned path is routed normally
    url = URL.build(path=path, query_string=request.query_string, encoded=True)
    return await request.app._handle(request.clone(rel_url=url))


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


# The v1 join_request travels in the URL: allow request lines as long as LiveKit's server does.
MAX_REQUEST_LINE = 1024 * 1024 + 64 * 1024


def make_runner(app: web.Application, *, shutdown_timeout: float = 5.0) -> web.AppRunner:
    return web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout,
                         max_line_size=MAX_REQUEST_LINE, max_field_size=64 * 1024)


async def serve(config: Config, *, media: MediaBackend | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    if config.node.hosts_rooms and media is None:
        await apply_external_ip(config.rtc)  # rtc.use_external_ip: node_ip from STUN, or ConfigError
    server = build_server(config, media=media)
    set_node(server.node_id, server.role)
    quiet_sctp_teardown(asyncio.get_running_loop())
    runner = make_runner(server.app)
    await runner.setup()
    for address in config.bind_addresses:
        await web.TCPSite(runner, address, config.port).start()
    log.info("trackyard (role %s) listening on %s port %d (engine %s%s, event loop %s), node %s",
             server.role, ", ".join(config.bind_addresses), config.port, engine_version(),
             " debug build" if is_debug_build() else "", type(asyncio.get_running_loop()).__module__,
             server.node_id)
    await run_until_stopped(server)
    log.info("shutting down")
    await runner.cleanup()


async def run_until_stopped(server: Server) -> None:
    """Until SIGINT, or SIGTERM. The first SIGTERM on a node that hosts rooms in a cluster
    drains it first (see `roles.media`); a second SIGTERM (or SIGINT) stops at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    drain: asyncio.Task | None = None

    def on_sigterm() -> None:
        nonlocal drain
        if drain is not None or "media_role" not in server.cluster:
            if drain is not None:
                log.info("second SIGTERM: stopping now")
            stop.set()
            return
        log.info("SIGTERM: draining (a second SIGTERM stops at once)")
        drain = loop.create_task(server.drain())
        drain.add_done_callback(lambda _t: stop.set())

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    await stop.wait()
    if drain is not None and not drain.done():
        drain.cancel()
    if drain is not None:
        try:
            await drain
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("drain failed")
