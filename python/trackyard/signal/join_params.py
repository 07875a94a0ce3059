"""What a client asks for when it opens a signal connection.

`/rtc` (v0, two peer connections) carries options in the query string; `/rtc/v1` (single
peer connection) carries one `join_request` parameter: base64url of a WrappedJoinRequest,
whose JoinRequest may be gzip-compressed.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from trackyard import errors

TRUE_VALUES = ("1", "true", "True", "TRUE")


@dataclass
class JoinParams:
    single_pc: bool
    auto_subscribe: bool = True
    adaptive_stream: bool = False
    client_info: models.ClientInfo = field(default_factory=models.ClientInfo)
    reconnect: bool = False
    participant_sid: str = ""
    reconnect_reason: int = 0
    publisher_offer: rtc.SessionDescription | None = None
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    add_track_requests: list[rtc.AddTrackRequest] = field(default_factory=list)
    sync_state: rtc.SyncState | None = None


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    return default if value is None else value in TRUE_VALUES


def _int(query: Mapping[str, str], name: str) -> int:
    try:
        return int(query.get(name, "0") or 0)
    except ValueError:
        raise errors.InvalidArgument(f"invalid {name}") from None


def from_query(query: Mapping[str, str]) -> JoinParams:
    """v0: options from the query string."""
    info = models.ClientInfo(
        version=query.get("version", ""),
        protocol=_int(query, "protocol"),
        os=query.get("os", ""),
        os_version=query.get("os_version", ""),
        device_model=query.get("device_model", ""),
        browser=query.get("browser", ""),
        browser_version=query.get("browser_version", ""),
        network=query.get("network", ""),
        client_protocol=_int(query, "client_protocol"),
    )
    sdk = query.get("sdk", "").upper()
    if sdk in models.ClientInfo.SDK.keys():
        info.sdk = models.ClientInfo.SDK.Value(sdk)
    return JoinParams(
        single_pc=False,
        auto_subscribe=_flag(query, "auto_subscribe", True),
        adaptive_stream=_flag(query, "adaptive_stream", False),
        client_info=info,
        reconnect=_flag(query, "reconnect", False),
        participant_sid=query.get("sid", ""),
        reconnect_reason=_int(query, "reconnect_reason"),
    )


def decode_join_request(encoded: str, *, max_bytes: int) -> rtc.JoinRequest:
    """Decode the v1 `join_request` parameter (padded or unpadded base64url)."""
    if len(encoded) > max_bytes * 4 // 3 + 4:
        raise errors.InvalidArgument("join_request too large")
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        wrapped = rtc.WrappedJoinRequest.FromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        raise errors.InvalidArgument("cannot decode join_request") from None
    payload = wrapped.join_request
    if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
        try:
            inflater = zlib.decompressobj(wbits=31)
            payload = inflater.decompress(payload, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile, EOFError):
            raise errors.InvalidArgument("cannot decompress join_request") from None
        if len(payload) > max_bytes or inflater.unconsumed_tail:
            raise errors.InvalidArgument("join_request too large")
    elif wrapped.compression != rtc.WrappedJoinRequest.NONE:
        raise errors.InvalidArgument("unsupported join_request compression")
    if len(payload) > max_bytes:
        raise errors.InvalidArgument("join_request too large")
    try:
        return rtc.JoinRequest.FromString(payload)
    except DecodeError:
        raise errors.InvalidArgument("cannot decode join_request") from None


def from_join_request(encoded: str, *, max_bytes: int) -> JoinParams:
    """v1: options from the JoinRequest."""
    request = decode_join_request(encoded, max_bytes=max_bytes)
    settings = request.connection_settings
    return JoinParams(
        single_pc=True,
        auto_subscribe=settings.auto_subscribe if request.HasField("connection_settings") else True,
        adaptive_stream=settings.adaptive_stream,
        client_info=request.client_info,
        reconnect=request.reconnect,
        participant_sid=request.participant_sid,
        reconnect_reason=request.reconnect_reason,
        publisher_offer=request.publisher_offer if request.HasField("publisher_offer") else None,
        metadata=request.metadata,
        attributes=dict(request.participant_attributes),
        add_track_requests=list(request.add_track_requests),
        sync_state=request.sync_state if request.HasField("sync_state") else None,
    )
