"""A participant in a room: identity, permissions, state, tracks and its signal connection.

States follow LiveKit: JOINING (signal connected) → JOINED (first offer seen) → ACTIVE
(media transport connected) → DISCONNECTED. A participant whose signal connection drops
without a leave keeps its place for `reconnect_timeout` seconds so the client can resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from livekit.protocol import models, rtc

from trackyard import ids

if TYPE_CHECKING:
    from trackyard.media.session import MediaSession

State = models.ParticipantInfo.State
Kind = models.ParticipantInfo.Kind

DEPENDENT_KINDS = (Kind.AGENT, Kind.EGRESS)


def is_dependent(kind: int, permission: models.ParticipantPermission) -> bool:
    """Agents, egress and recorders do not keep a room alive nor count toward its limit."""
    return kind in DEPENDENT_KINDS or permission.agent or permission.recorder


class SignalSink(Protocol):
    """Where a participant's signal messages go: one client connection."""

    def send(self, message: rtc.SignalResponse) -> None:
        """Queue a message; never blocks."""
        ...

    def send_encoded(self, data: bytes) -> None:
        """Queue a message already checked and serialized (a broadcast); never blocks."""
        ...

    def close(self) -> None:
        """Close the connection once the queued messages are written."""
        ...


@dataclass
class ConnectionOptions:
    """What the client asked for when it connected (query string or JoinRequest)."""

    auto_subscribe: bool = True
    adaptive_stream: bool = False
    protocol: int = 0
    single_pc: bool = False
    client_info: models.ClientInfo = field(default_factory=models.ClientInfo)


class Participant:
    def __init__(
        self,
        *,
        identity: str,
        name: str,
        metadata: str,
        attributes: dict[str, str],
        kind: int,
        permission: models.ParticipantPermission,
        options: ConnectionOptions,
        api_key: str = "",
    ) -> None:
        self.sid = ids.new_id(ids.PARTICIPANT)
        self.identity = identity
        self.name = name
        self.metadata = metadata
        self.attributes = dict(attributes)
        self.kind = kind
        self.permission = permission
        self.options = options
        self.api_key = api_key
        self.state: int = State.JOINING
        self.joined_at_ms = int(time.time() * 1000)
        self.version = 1  # clients order updates by version; it starts at 1 and only grows
        self.disconnect_reason: int = models.DisconnectReason.UNKNOWN_REASON
        self.tracks: dict[str, models.TrackInfo] = {}  # published, by TR_ sid
        self.pending_tracks: dict[str, models.TrackInfo] = {}  # AddTrack awaiting media, by cid
        self.subscription_requests: dict[str, bool] = {}  # track sid → subscribe, for manual mode
        self.disabled_tracks: set[str] = set()
        self.subscription_permission: rtc.SubscriptionPermission | None = None  # None: everyone may subscribe
        self.subscribed_tracks: set[str] = set()  # own tracks someone subscribed to (track_subscribed sent)
        self.sink: SignalSink | None = None
        self.media: MediaSession | None = None
        self.signal_lost_at: float | None = None  # monotonic time the signal dropped without leave
        self.was_active = False
        self.quality: int | None = None  # last connection quality told to the room
        self.closed = False
        self._proto: tuple[tuple[int, int], models.ParticipantInfo] | None = None

    # --- classification -------------------------------------------------------------
    @property
    def permission(self) -> models.ParticipantPermission:
        """What the token (or RoomService) allows. Replace it, never modify it in place: the
        flags rooms ask about for every member (`hidden`, `dependent`) are read off it here."""
        return self._permission

    @permission.setter
    def permission(self, permission: models.ParticipantPermission) -> None:
        self._permission = permission
        self.hidden = permission.hidden
        self.dependent = is_dependent(self.kind, permission)

    @property
    def is_publisher(self) -> bool:
        return bool(self.tracks)

    # --- changes ----------------------------------------------------------------------
    def touch(self) -> None:
        """Record a change: every change bumps the version clients use to order updates."""
        self.version += 1

    def set_state(self, state: int) -> bool:
        if state <= self.state:  # states only move forward; DISCONNECTED is final
            return False
        self.state = state
        if state == State.ACTIVE:
            self.was_active = True
        self.touch()
        return True

    def send(self, message: rtc.SignalResponse) -> None:
        if self.sink is not None and not self.closed:
            self.sink.send(message)

    def send_encoded(self, data: bytes) -> None:
        if self.sink is not None and not self.closed:
            self.sink.send_encoded(data)

    # --- wire form --------------------------------------------------------------------
    def to_proto(self) -> models.ParticipantInfo:
        """The participant as clients see it. Built once per version (every change bumps the
        version, see `touch`), so a room of N people does not rebuild N infos per join; the
        message is shared: callers copy it into theirs and never modify it."""
        key = (self.version, self.state)
        if self._proto is not None and self._proto[0] == key:
            return self._proto[1]
        info = self._build_proto()
        self._proto = (key, info)
        return info

    def _build_proto(self) -> models.ParticipantInfo:
        info = models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=self.state,
            metadata=self.metadata,
            joined_at=self.joined_at_ms // 1000,
            joined_at_ms=self.joined_at_ms,
            version=self.version,
            permission=self.permission,
            is_publisher=self.is_publisher,
            kind=self.kind,
            disconnect_reason=self.disconnect_reason,
            client_protocol=self.options.client_info.client_protocol,
        )
        info.tracks.extend(self.tracks.values())
        info.attributes.update(self.attributes)
        info.capabilities.extend(self.options.client_info.capabilities)
        return info
