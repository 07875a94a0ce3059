"""Builds and runs a single-node trackyard server (role `all`): HTTP API, signaling, rooms."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web
from yarl import URL
from livekit.protocol import models

from trackyard.api import twirp
from trackyard.api.room_service import RoomService
from trackyard.auth.tokens import token_from_request, verify_token
from trackyard.config import Config
from trackyard.context import NodeContext
from trackyard.engine import MediaEngine, is_debug_build
from trackyard.engine import version as engine_version
from trackyard.media.session import MediaBackend
from trackyard.media.webrtc import WebRtcBackend
from trackyard.rooms.manager import RoomManager
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
    node: NodeContext
    app: web.Application
    signal: SignalService
    webhooks: WebhookNotifier | NoWebhooks


def build_server(config: Config, *, media: MediaBackend | None = None) -> Server:
    hooks: WebhookNotifier | NoWebhooks = NoWebhooks()
    if config.webhook.urls:
        wh = config.webhook
        hooks = WebhookNotifier(wh.urls, wh.api_key, config.keys[wh.api_key],
                                include_events=wh.include_events or None, exclude_events=wh.exclude_events or None)
    engine: MediaEngine | None = None
    if media is None:
        engine = MediaEngine(f"0.0.0.0:{config.rtc.udp_port}")
        media = WebRtcBackend(engine, advertise=[config.rtc.node_ip] if config.rtc.node_ip else None)
    node = NodeContext(config=config, rooms=RoomManager(config, hooks), media=media)
    app = web.Application(client_max_size=config.limit.max_api_request_body_size,
                          middlewares=[_double_slash_middleware])
    signal_service = SignalService(node)
    signal_service.add_routes(app)

    def authenticate(request: web.Request):
        token = token_from_request(request.headers, request.query)
        return None if token is None else verify_token(token, config.keys)

    twirp.add_twirp_routes(app, [RoomService(node).service()], authenticate,
                           max_body_bytes=config.limit.max_api_request_body_size)
    app.router.add_get("/", _health)
    server = Server(node=node, app=app, signal=signal_service, webhooks=hooks)

    async def on_startup(_app: web.Application) -> None:
        if engine is not None:
            engine.start()
            log.info("media on UDP port %d, ICE candidates %s", engine.local_address[1],
                     ", ".join(f"{ip}:{port}" for ip, port in media.candidates))
        node.rooms.start()

    async def on_shutdown(_app: web.Application) -> None:
        await node.rooms.stop(models.DisconnectReason.SERVER_SHUTDOWN)
        await asyncio.sleep(0)  # let the leave messages be queued before sockets close

    async def on_cleanup(_app: web.Application) -> None:
        await hooks.close()
        if engine is not None:
            engine.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return server


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
    server = build_server(config, media=media)
    runner = make_runner(server.app)
    await runner.setup()
    for address in config.bind_addresses:
        await web.TCPSite(runner, address, config.port).start()
    log.info("trackyard listening on %s port %d (engine %s%s, event loop %s), node %s",
             ", ".join(config.bind_addresses), config.port, engine_version(),
             " debug build" if is_debug_build() else "", type(asyncio.get_running_loop()).__module__,
             server.node.node_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
