"""A stand-in media backend for foundation tests, until the real engine exists.

It does not fake WebRTC toward clients (it never sends an answer); it only reports to the
server what a media transport would observe: the transport connects when an offer
arrives, and each `a=msid:<stream> <cid>` in a sendonly section of the offer is a track
whose media started (matched to AddTrack by cid); a cid that disappears from a later offer
ended. Data packets delivered to a participant are recorded.
"""

from __future__ import annotations

import re

from livekit.protocol import models, rtc

from trackyard.media.session import MediaEvents, SessionOptions

_SECTION = re.compile(r"^m=", re.M)
_MSID = re.compile(r"^a=msid:\S+ (\S+)", re.M)
_MID = re.compile(r"^a=mid:(\S+)", re.M)


class StandInMediaSession:

    def __init__(self, options: SessionOptions, events: MediaEvents, backend: "StandInMediaBackend") -> None:
        self.options = options
        self.events = events
        self.backend = backend
        self.tracks: set[str] = set()
        self.data: list[models.DataPacket] = []
        self.subscribed: set[str] = set()
        self.paused: set[str] = set()
        self.max_layers: dict[str, int] = {}
        self.muted: set[str] = set()
        self.resumed = 0
        self.closed = False

    async def handle_offer(self, offer: rtc.SessionDescription) -> None:
        self.events.on_transport_connected()
        seen: set[str] = set()
        for section in _SECTION.split(offer.sdp)[1:]:
            if "a=sendonly" not in section and "a=sendrecv" not in section:
                continue
            msid, mid = _MSID.search(section), _MID.search(section)
            if msid:
                cid = msid.group(1)
                seen.add(cid)
                if cid not in self.tracks:
                    mime = "audio/opus" if section.startswith("audio") else "video/VP8"
                    self.events.on_track_received(cid, mid.group(1) if mid else "", mime)
        for cid in self.tracks - seen:
            self.events.on_track_ended(cid)
        self.tracks = seen

    async def handle_answer(self, answer: rtc.SessionDescription) -> None:
        self.events.on_transport_connected()

    async def handle_trickle(self, trickle: rtc.TrickleRequest) -> None:
        return None

    def send_data(self, packet: models.DataPacket) -> bool:
        copy = models.DataPacket()
        copy.CopyFrom(packet)
        self.data.append(copy)
        return True

    def subscribe(self, track_sid: str) -> bool:
        if track_sid in self.subscribed:
            return False
        self.subscribed.add(track_sid)
        return True

    def unsubscribe(self, track_sid: str) -> None:
        self.subscribed.discard(track_sid)

    def set_paused(self, track_sid: str, paused: bool) -> None:
        (self.paused.add if paused else self.paused.discard)(track_sid)

    def set_max_layer(self, track_sid: str, layer: int) -> None:
        self.max_layers[track_sid] = layer

    def set_track_muted(self, track_sid: str, muted: bool) -> None:
        (self.muted.add if muted else self.muted.discard)(track_sid)

    def on_resumed(self) -> None:
        self.resumed += 1

    async def close(self) -> None:
        self.closed = True


class StandInMediaBackend:

    def __init__(self) -> None:
        self.sessions: dict[str, StandInMediaSession] = {}

    def create_session(self, options: SessionOptions, events: MediaEvents) -> StandInMediaSession:
        session = StandInMediaSession(options, events, self)
        self.sessions[options.participant_sid] = session
        return session


def offer_sdp(*tracks: tuple[str, str]) -> str:
    """A minimal offer with one sendonly section per (kind, cid)."""
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    for i, (kind, cid) in enumerate(tracks):
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{i}", "a=sendonly", f"a=msid:- {cid}"]
    lines.append("m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
    lines.append(f"a=mid:{len(tracks)}")
    return "\r\n".join(lines) + "\r\n"
