"""Builders and the wire encoding for LiveKit webhook events.

Each builder returns a fresh ``WebhookEvent`` with an ``EV_`` id and ``created_at`` in Unix
seconds. The ``room``/``participant``/``track`` arguments are copied, so later changes by the
caller do not leak into an event that is waiting in a delivery queue.

``encode`` gives the body LiveKit sends: protojson with lowerCamelCase keys, zero values
omitted, enums as names and 64-bit integers as strings, compact and UTF-8.
"""

from __future__ import annotations

import json
import time

from google.protobuf import json_format
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from trackyard.ids import WEBHOOK_EVENT, new_id

__all__ = [
    "ALL_EVENTS",
    "PARTICIPANT_CONNECTION_ABORTED",
    "PARTICIPANT_JOINED",
    "PARTICIPANT_LEFT",
    "ROOM_FINISHED",
    "ROOM_STARTED",
    "TRACK_PUBLISHED",
    "TRACK_UNPUBLISHED",
    "encode",
    "participant_connection_aborted",
    "participant_joined",
    "participant_left",
    "room_finished",
    "room_started",
    "track_published",
    "track_unpublished",
]

ROOM_STARTED = "room_started"
ROOM_FINISHED = "room_finished"
PARTICIPANT_JOINED = "participant_joined"
PARTICIPANT_LEFT = "participant_left"
PARTICIPANT_CONNECTION_ABORTED = "participant_connection_aborted"
TRACK_PUBLISHED = "track_published"
TRACK_UNPUBLISHED = "track_unpublished"

#: Every event name LiveKit defines (including the egress/ingress/agent ones trackyard does not emit).
ALL_EVENTS: frozenset[str] = frozenset(
    {
        ROOM_STARTED,
        ROOM_FINISHED,
        PARTICIPANT_JOINED,
        PARTICIPANT_LEFT,
        PARTICIPANT_CONNECTION_ABORTED,
        TRACK_PUBLISHED,
        TRACK_UNPUBLISHED,
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
        "agent_job_started",
        "agent_job_ended",
    }
)


def _event(name: str, **fields: object) -> WebhookEvent:
    """A new event named ``name``; message-typed ``fields`` are copied by the constructor."""
    return WebhookEvent(event=name, id=new_id(WEBHOOK_EVENT), created_at=int(time.time()), **fields)


def room_started(room: models.Room) -> WebhookEvent:
    """``room_started`` with the full Room."""
    return _event(ROOM_STARTED, room=room)


def room_finished(room: models.Room) -> WebhookEvent:
    """``room_finished`` with the full Room."""
    return _event(ROOM_FINISHED, room=room)


def participant_joined(room: models.Room, participant: models.ParticipantInfo) -> WebhookEvent:
    """``participant_joined`` (participant reached ACTIVE) with full Room and ParticipantInfo."""
    return _event(PARTICIPANT_JOINED, room=room, participant=participant)


def participant_left(room: models.Room, participant: models.ParticipantInfo) -> WebhookEvent:
    """``participant_left`` (a participant that had connected went away)."""
    return _event(PARTICIPANT_LEFT, room=room, participant=participant)


def participant_connection_aborted(room: models.Room, participant: models.ParticipantInfo) -> WebhookEvent:
    """``participant_connection_aborted`` (the participant never connected)."""
    return _event(PARTICIPANT_CONNECTION_ABORTED, room=room, participant=participant)


def _reduced(room: models.Room, participant: models.ParticipantInfo) -> dict[str, object]:
    """LiveKit's track-event reduction: Room {sid, name}, ParticipantInfo {sid, identity}."""
    return {
        "room": models.Room(sid=room.sid, name=room.name),
        "participant": models.ParticipantInfo(sid=participant.sid, identity=participant.identity),
    }


def track_published(
    room: models.Room, participant: models.ParticipantInfo, track: models.TrackInfo
) -> WebhookEvent:
    """``track_published`` with reduced room and participant and the full TrackInfo."""
    return _event(TRACK_PUBLISHED, track=track, **_reduced(room, participant))


def track_unpublished(
    room: models.Room, participant: models.ParticipantInfo, track: models.TrackInfo
) -> WebhookEvent:
    """``track_unpublished`` with reduced room and participant and the full TrackInfo."""
    return _event(TRACK_UNPUBLISHED, track=track, **_reduced(room, participant))


def encode(event: WebhookEvent) -> bytes:
    """The HTTP body: compact protojson (camelCase keys, defaults omitted, enum names), UTF-8."""
    doc = json_format.MessageToDict(event)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
