"""The ``/metrics`` route: Prometheus text format from the server's own registry,
optionally behind basic auth (``metrics.username`` / ``metrics.password``)."""

from __future__ import annotations

import base64
import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

PATH = "/metrics"


def _authorized(request: web.Request, username: str, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    expected = f"{username}:{password}"
    return hmac.compare_digest(given.encode(), expected.encode())


def add_metrics_route(app: web.Application, registry: CollectorRegistry, *, username: str = "",
                      password: str = "") -> None:
    async def metrics(request: web.Request) -> web.Response:
        if username and not _authorized(request, username, password):
            return web.Response(status=401, text="unauthorized",
                                headers={"WWW-Authenticate": 'Basic realm="trackyard metrics"'})
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get(PATH, metrics)
