"""The seam between signaling and the media transport.

The signaling layer hands every WebRTC negotiation message (offer, answer, trickle), every
data packet and every subscription change for a participant to that participant's
`MediaSession`. The media transport reports back through `MediaEvents`: transport connected
or failed, an incoming track bound to a pending AddTrack `cid`, a track that ended, data
received. The real implementation is `trackyard.media.webrtc`; tests of the signaling layer
plug in a stand-in (tests/support/media_standin.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from livekit.protocol import models, rtc


class MediaEvents(Protocol):
    """Callbacks from the media transport into the participant that owns it."""

    def on_transport_connected(self) -> None: ...

    def on_transport_failed(self) -> None: ...

    def on_media_fault(self) -> None:
        """The media engine failed (panicked) on this participant's traffic."""
        ...

    def on_track_received(self, cid: str, mid: str, mime_type: str) -> str | None:
        """Media for a pending AddTrack arrived; returns the published track's sid."""
        ...

    def on_track_ended(self, cid: str) -> None: ...

    def on_data_received(self, packet: models.DataPacket) -> None: ...

    def on_audio_level(self, dbov: int, voice: bool) -> None:
        """The loudest level (0 loudest … 127 silence) of the participant's audio in the last interval."""
        ...

    def on_connection_sample(self, packets: int, lost: int, jitter_ms: float, rtt_ms: float) -> None:
        """Traffic of the participant's streams (sent and received) over the last stats interval."""
        ...

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

    def set_max_layer(self, track_sid: str, layer: int) -> None:
        """The top simulcast layer this participant wants of a subscribed track."""
        ...

    def set_track_muted(self, track_sid: str, muted: bool) -> None:
        """This participant muted or unmuted one of its own published tracks."""
        ...

    def on_resumed(self) -> None:
        """The client resumed its signal connection (its network may have changed)."""
        ...

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
