"""The seam between signaling and the media transport.

The signaling layer hands every WebRTC negotiation message (offer, answer, trickle) and
every data packet for a participant to that participant's `MediaSession`. The media
transport reports back through `MediaEvents`: transport connected or failed, an incoming
track bound to a pending AddTrack `cid`, a track that ended, data received.

`UnavailableMedia` is what a server without a media engine uses: it answers nothing and
fakes nothing; negotiation messages are counted and dropped, so a client never believes
it has a media connection that does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from livekit.protocol import models, rtc

log = logging.getLogger(__name__)


class MediaEvents(Protocol):
    """Callbacks from the media transport into the participant that owns it."""

    def on_transport_connected(self) -> None: ...

    def on_transport_failed(self) -> None: ...

    def on_track_received(self, cid: str, mid: str, mime_type: str) -> str | None:
        """Media for a pending AddTrack arrived; returns the published track's sid."""
        ...

    def on_track_ended(self, cid: str) -> None: ...

    def on_data_received(self, packet: models.DataPacket) -> None: ...

    def send_signal(self, response: rtc.SignalResponse) -> None: ...


class MediaSession(Protocol):
    """One participant's WebRTC transport(s)."""

    async def handle_offer(self, offer: rtc.SessionDescription) -> None: ...

    async def handle_answer(self, answer: rtc.SessionDescription) -> None: ...

    async def handle_trickle(self, trickle: rtc.TrickleRequest) -> None: ...

    def send_data(self, packet: models.DataPacket) -> bool:
        """Queue a data packet to the participant; False when it cannot be delivered."""
        ...

    def subscribe(self, track_sid: str) -> bool:
        """Start sending a published track to this participant; False if it cannot."""
        ...

    def unsubscribe(self, track_sid: str) -> None: ...

    def set_paused(self, track_sid: str, paused: bool) -> None: ...

    async def close(self) -> None: ...


@dataclass
class SessionOptions:
    """What the media transport needs to know about a participant's connection."""

    participant_sid: str
    single_pc: bool
    subscriber_primary: bool
    can_publish: bool
    can_subscribe: bool


class MediaBackend(Protocol):
    def create_session(self, options: SessionOptions, events: MediaEvents) -> MediaSession: ...


@dataclass
class UnavailableStats:
    dropped: dict[str, int] = field(default_factory=dict)


class UnavailableMedia:
    """A session for a server without a media engine: it drops and counts, never pretends."""

    def __init__(self, stats: UnavailableStats, participant_sid: str) -> None:
        self._stats = stats
        self._sid = participant_sid

    def _drop(self, what: str) -> None:
        self._stats.dropped[what] = self._stats.dropped.get(what, 0) + 1
        log.warning("no media engine: dropped %s from %s", what, self._sid)

    async def handle_offer(self, offer: rtc.SessionDescription) -> None:
        self._drop("offer")

    async def handle_answer(self, answer: rtc.SessionDescription) -> None:
        self._drop("answer")

    async def handle_trickle(self, trickle: rtc.TrickleRequest) -> None:
        self._drop("trickle")

    def send_data(self, packet: models.DataPacket) -> bool:
        self._drop("data")
        return False

    def subscribe(self, track_sid: str) -> bool:
        return False

    def unsubscribe(self, track_sid: str) -> None:
        return None

    def set_paused(self, track_sid: str, paused: bool) -> None:
        return None

    async def close(self) -> None:
        return None


class UnavailableBackend:
    def __init__(self) -> None:
        self.stats = UnavailableStats()

    def create_session(self, options: SessionOptions, events: MediaEvents) -> MediaSession:
        return UnavailableMedia(self.stats, options.participant_sid)
