"""A local webhook receiver that verifies each delivery with livekit-api's WebhookReceiver."""

from __future__ import annotations

import asyncio

from aiohttp import web
from livekit import api

from support.servers import API_KEY, API_SECRET, free_port, wait_for


class WebhookSink:
    def __init__(self, key: str = API_KEY, secret: str = API_SECRET) -> None:
        self.receiver = api.WebhookReceiver(api.TokenVerifier(key, secret))
        self.events: list = []  # verified livekit.protocol.webhook.WebhookEvent, in arrival order
        self.rejected: list[str] = []
        self.content_types: set[str] = set()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.content_types.add(request.headers.get("Content-Type", ""))
        try:
            self.events.append(self.receiver.receive(body, request.headers.get("Authorization", "")))
        except Exception as exc:  # recorded so tests can assert none were rejected
            self.rejected.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=401)
        return web.Response(text="ok")

    async def start(self) -> "WebhookSink":
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def names(self, room: str | None = None) -> list[str]:
        return [e.event for e in self.events if room is None or e.room.name == room]

    async def wait_event(self, name: str, *, room: str | None = None, identity: str | None = None,
                         timeout: float = 5.0):
        def find():
            for e in self.events:
                if e.event == name and (room is None or e.room.name == room) and (
                        identity is None or e.participant.identity == identity):
                    return e
            return None
        return await wait_for(find, timeout, what=f"webhook {name}")


async def settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)
