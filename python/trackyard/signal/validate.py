"""Checks every outgoing SignalResponse against what the LiveKit client SDKs assume.

The Rust-based SDKs (Python, Swift via FFI, ...) unwrap several fields and abort the
user's whole process when they are wrong (see docs/signaling.md). A message that fails a
check here is a trackyard bug: it is logged and never sent.
"""

from __future__ import annotations

import json
import logging

from livekit.protocol import models, rtc

from trackyard import ids


log = logging.getLogger(__name__)


class InvalidOutgoingMessage(ValueError):
    pass


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidOutgoingMessage(what)


def _participant(info: models.ParticipantInfo, where: str) -> None:
    _need(ids.is_id(info.sid, ids.PARTICIPANT), f"{where}: participant sid {info.sid!r} lacks PA_")
    for track in info.tracks:
        _track(track, where)


def _track(track: models.TrackInfo, where: str) -> None:
    _need(ids.is_id(track.sid, ids.TRACK), f"{where}: track sid {track.sid!r} lacks TR_")
    _need(track.type in (models.TrackType.AUDIO, models.TrackType.VIDEO), f"{where}: track type must be AUDIO or VIDEO")


def _join(join: rtc.JoinResponse) -> None:
    _need(join.HasField("room"), "join: room missing")
    _need(join.HasField("participant"), "join: participant missing")
    _participant(join.participant, "join.participant")
    for other in join.other_participants:
        _participant(other, "join.other_participants")
    _need(join.ping_interval > 0 and join.ping_timeout > 0, "join: ping_interval and ping_timeout must be > 0")
    _need(bool(join.server_version or join.server_info.version), "join: server version missing")


def _trickle(trickle: rtc.TrickleRequest) -> None:
    try:
        init = json.loads(trickle.candidateInit)
    except ValueError as exc:
        raise InvalidOutgoingMessage(f"trickle: candidateInit is not JSON: {exc}") from None
    _need(isinstance(init, dict), "trickle: candidateInit must be an object")
    _need(isinstance(init.get("sdpMid"), str), "trickle: sdpMid must be a string")
    _need(isinstance(init.get("sdpMLineIndex"), int), "trickle: sdpMLineIndex must be an integer")
    cand = init.get("candidate")
    _need(isinstance(cand, str) and cand.startswith("candidate:"), "trickle: candidate must be a non-empty candidate line")


def validate(message: rtc.SignalResponse) -> None:
    """Raise InvalidOutgoingMessage if a client SDK would choke on this message."""
    kind = message.WhichOneof("message")
    _need(kind is not None, "empty SignalResponse")
    if kind == "join":
        _join(message.join)
    elif kind == "update":
        for info in message.update.participants:
            _participant(info, "update")
    elif kind == "trickle":
        _trickle(message.trickle)
    elif kind == "track_published":
        _track(message.track_published.track, "track_published")
    elif kind == "speakers_changed":
        for speaker in message.speakers_changed.speakers:
            _need(ids.is_id(speaker.sid, ids.PARTICIPANT), "speakers_changed: sid lacks PA_")
    elif kind == "connection_quality":
        for update in message.connection_quality.updates:
            _need(ids.is_id(update.participant_sid, ids.PARTICIPANT), "connection_quality: sid lacks PA_")
    elif kind == "room_update":
        _need(message.room_update.HasField("room"), "room_update: room missing")
    elif kind == "reconnect":
        pass
    elif kind in ("offer", "answer"):
        desc = message.offer if kind == "offer" else message.answer
        _need(desc.type == kind and bool(desc.sdp), f"{kind}: type/sdp missing")


def encode(message: rtc.SignalResponse) -> bytes | None:
    """The wire form of an outgoing message, or None (logged) when a client SDK would choke
    on it: checked and serialized once, then queued on any number of connections."""
    try:
        validate(message)
    except InvalidOutgoingMessage as exc:
        log.error("not sending invalid %s: %s", message.WhichOneof("message"), exc)
        return None
    return message.SerializeToString()
