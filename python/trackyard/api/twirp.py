"""A small, generic Twirp server layer for aiohttp.

Serves ``POST /twirp/<package>.<Service>/<Method>`` the way a generated Twirp (v8) server
does, which is what LiveKit's server SDKs expect (LiveKit server API reference §1–2):

* request bodies as binary protobuf (``application/protobuf``) or proto3 JSON
  (``application/json``, parameters such as ``;charset=UTF-8`` allowed); the response uses
  the codec of the request;
* JSON in: unknown fields ignored, snake_case or lowerCamelCase keys, enums by name or
  number, 64-bit integers as strings or numbers, bytes as base64;
* JSON out: snake_case names, every field emitted (defaults included, unset singular
  sub-messages as ``null`` like Go's ``EmitUnpopulated``), enums by name, 64-bit integers as
  strings, always a body (``{}`` for an empty message);
* errors as Twirp JSON ``{"code", "msg"[, "meta"]}`` with ``Content-Type: application/json``
  and the HTTP status of the code (:mod:`trackyard.errors`).

Order of checks for each request, mirroring livekit-server's middleware chain followed by
the generated Twirp handler:

1. declared ``Content-Length`` above ``max_body_bytes`` → 413, plain text;
2. ``authenticate(request)``; :class:`~trackyard.errors.Unauthenticated` → 401, plain text
   (like LiveKit's API-key middleware), any other :class:`~trackyard.errors.TrackyardError`
   → its Twirp error;
3. routing: non-POST, unknown service or method, unsupported Content-Type → ``bad_route``;
4. reading the body (a chunked body above the limit is also a 413), decoding it
   (failure → ``malformed``);
5. the method handler; a :class:`~trackyard.errors.TrackyardError` becomes its Twirp error,
   anything else (including a response of the wrong type) an opaque ``internal`` error.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from trackyard import errors

__all__ = ["Authenticate", "CallContext", "Method", "Service", "add_twirp_routes"]

logger = logging.getLogger(__name__)

TWIRP_PREFIX = "/twirp"
JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/protobuf"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass
class CallContext:
    """Per-call context handed to a method handler."""

    grants: Any | None  # whatever the authenticate callback returned (None = no token)
    request: web.Request


Handler = Callable[[Message, CallContext], Awaitable[Message]]


@dataclass(frozen=True)
class Method:
    """One RPC: its name, message classes and the coroutine implementing it."""

    name: str  # e.g. "CreateRoom"
    request_type: type[Message]
    response_type: type[Message]
    handler: Handler


@dataclass
class Service:
    """A Twirp service; ``full_name`` is ``<package>.<Service>``, e.g. ``livekit.RoomService``."""

    full_name: str
    methods: dict[str, Method]


Authenticate = Callable[[web.Request], Any | None]
"""Returns the caller's grants (or None when no token was given); may raise
:class:`~trackyard.errors.Unauthenticated`. An awaitable result is awaited."""


# ---------------------------------------------------------------------------------------
# responses


def twirp_error_response(err: errors.TrackyardError) -> web.Response:
    """The Twirp JSON error body for ``err`` with the HTTP status of its code."""
    body = json.dumps(err.twirp_body(), separators=(",", ":"), ensure_ascii=False)
    # body= (bytes) keeps the Content-Type exactly "application/json" (no charset): the
    # Node SDK compares the header for equality before parsing an error.
    return web.Response(status=err.status, body=body.encode(), content_type=JSON_CONTENT_TYPE)


def _plain_error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _bad_route(msg: str, request: web.Request) -> web.Response:
    meta = {"twirp_invalid_route": f"{request.method} {request.path}"}
    return twirp_error_response(errors.BadRoute(msg, meta=meta))


def _go_quote(value: str) -> str:
    """Approximates Go's ``%q`` (used in twirp's bad_route messages)."""
    return json.dumps(value, ensure_ascii=False)


def _internal() -> web.Response:
    return twirp_error_response(errors.Internal("internal error"))


def _too_large() -> web.Response:
    return _plain_error(413, "request body too large")


# ---------------------------------------------------------------------------------------
# codecs


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def decode_json(body: bytes, message_type: type[Message]) -> Message:
    """Parses a proto3-JSON request; raises :class:`~trackyard.errors.Malformed`."""
    try:
        obj = json.loads(body.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
        if not isinstance(obj, dict):
            raise ValueError("the request must be a JSON object")
        message = message_type()
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise errors.Malformed("the json request could not be decoded") from exc
    return message


def _add_unset_messages(message: Message, out: dict[str, Any]) -> None:
    """Adds ``null`` for unset singular message fields outside oneofs, recursively.

    ``MessageToDict(always_print_fields_with_no_presence=True)`` already emits every
    scalar, repeated and map field; Go's ``protojson`` with ``EmitUnpopulated`` also emits
    unset sub-messages as ``null``.
    """
    for field in message.DESCRIPTOR.fields:
        sub_type = field.message_type
        if sub_type is None:
            continue
        if field.containing_oneof is not None and field.name not in out:
            continue  # unset oneof members (and proto3 `optional`) stay absent, as in Go
        value = out.get(field.name)
        if sub_type.GetOptions().map_entry:
            value_field = sub_type.fields_by_name["value"]
            if value_field.message_type is not None and isinstance(value, dict):
                for key, item in getattr(message, field.name).items():
                    json_key = ("true" if key else "false") if isinstance(key, bool) else str(key)
                    if isinstance(value.get(json_key), dict):
                        _add_unset_messages(item, value[json_key])
        elif field.is_repeated:
            if isinstance(value, list):
                for item, item_out in zip(getattr(message, field.name), value):
                    if isinstance(item_out, dict):
                        _add_unset_messages(item, item_out)
        elif field.name not in out:
            out[field.name] = None
        elif isinstance(value, dict):  # well-known types may render as non-objects
            _add_unset_messages(getattr(message, field.name), value)


def encode_json(message: Message) -> bytes:
    """Serializes a response like Go's protojson with ``UseProtoNames`` + ``EmitUnpopulated``."""
    out = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    _add_unset_messages(message, out)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def _decode_protobuf(body: bytes, message_type: type[Message]) -> Message:
    """Parses a binary protobuf request; raises :class:`~trackyard.errors.Malformed`."""
    message = message_type()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise errors.Malformed("the protobuf request could not be decoded") from exc
    return message


# ---------------------------------------------------------------------------------------
# request handling


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes.

    Reads the stream directly, so the application's ``client_max_size`` does not apply.
    """
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


class _TwirpHandler:
    """The aiohttp handler behind ``/twirp/{service}/{method}``."""

    def __init__(self, services: list[Service], authenticate: Authenticate, max_body_bytes: int):
        self._services: dict[str, Service] = {}
        for service in services:
            if service.full_name in self._services:
                raise ValueError(f"duplicate twirp service {service.full_name!r}")
            for key, method in service.methods.items():
                if key != method.name:
                    raise ValueError(f"method registered as {key!r} is named {method.name!r}")
            self._services[service.full_name] = service
        self._authenticate = authenticate
        self._max_body_bytes = max_body_bytes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > self._max_body_bytes:
            return _too_large()

        try:
            grants = self._authenticate(request)
            if inspect.isawaitable(grants):
                grants = await grants
        except errors.Unauthenticated as err:
            return _plain_error(401, err.msg)
        except errors.TrackyardError as err:
            return twirp_error_response(err)
        except Exception:
            logger.exception("twirp: authenticate failed for %s", request.path)
            return _internal()

        routed = self._route(request)
        if isinstance(routed, web.Response):
            return routed
        method, use_json = routed
        name = f"{request.match_info['service']}/{method.name}"

        body = await _read_body(request, self._max_body_bytes)
        if body is None:
            return _too_large()
        try:
            req_msg = decode_json(body, method.request_type) if use_json else _decode_protobuf(
                body, method.request_type
            )
        except errors.Malformed as err:
            return twirp_error_response(err)

        try:
            resp_msg = await method.handler(req_msg, CallContext(grants=grants, request=request))
        except errors.TrackyardError as err:
            return twirp_error_response(err)
        except Exception:
            logger.exception("twirp: %s failed", name)
            return _internal()
        if type(resp_msg) is not method.response_type:
            logger.error(
                "twirp: %s returned %s, expected %s",
                name,
                type(resp_msg).__name__,
                method.response_type.__name__,
            )
            return _internal()

        try:
            if use_json:
                return web.Response(body=encode_json(resp_msg), content_type=JSON_CONTENT_TYPE)
            return web.Response(
                body=resp_msg.SerializeToString(), content_type=PROTOBUF_CONTENT_TYPE
            )
        except Exception:
            logger.exception("twirp: %s response could not be encoded", name)
            return _internal()

    def _route(self, request: web.Request) -> tuple[Method, bool] | web.Response:
        """The method to call and whether the codec is JSON, or a bad_route response."""
        if request.method != "POST":
            return _bad_route(
                f"unsupported method {_go_quote(request.method)} (only POST is allowed)", request
            )
        service = self._services.get(request.match_info["service"])
        method = service.methods.get(request.match_info["method"]) if service else None
        if method is None:
            return _bad_route(f"no handler for path {_go_quote(request.path)}", request)
        raw_content_type = request.headers.get("Content-Type", "")
        content_type = raw_content_type.split(";", 1)[0].strip().lower()
        if content_type not in (JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE):
            return _bad_route(f"unexpected Content-Type: {_go_quote(raw_content_type)}", request)
        return method, content_type == JSON_CONTENT_TYPE


def add_twirp_routes(
    app: web.Application,
    services: list[Service],
    authenticate: Authenticate,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Registers ``/twirp/{service}/{method}`` (any HTTP method) on ``app.router``."""
    handler = _TwirpHandler(services, authenticate, max_body_bytes)
    app.router.add_route("*", TWIRP_PREFIX + "/{service}/{method}", handler.handle)
