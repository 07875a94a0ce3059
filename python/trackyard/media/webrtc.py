"""The WebRTC media backend: each participant's peer connection(s) on the node's engine.

v1 (`/rtc/v1`, single peer connection): the client offers; we answer. Tracks we send to the
client need m-sections the client created: we ask for them with `media_sections_requirement`
and bind our down-tracks to its recvonly sections when it re-offers (`mid_to_track_id`).

v0 (`/rtc`): the client offers on its publisher connection; we offer on the subscriber
connection (data channels `_reliable`/`_lossy`, one sendonly section per subscribed track)
and renegotiate it whenever subscriptions change, one offer at a time.

Media never passes through Python: incoming streams are bound to tracks in the engine, and
subscriptions become engine down-tracks with their own SSRC and payload type.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import secrets
import socket
import struct
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from trackyard.engine import AudioLevel, MediaEngine, NewStream
from trackyard.media.dtls import node_certificate, sha256_fingerprint
from trackyard.media.negotiation import SendTrack, build_answer, build_offer
from trackyard.media.sdp import (
    Candidate,
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_TWCC,
    EXT_RID,
    EXT_RRID,
    SdpError,
    SessionDescription,
    TrackSectionInfo,
    mid_to_track_info,
    parse_sdp,
)
from trackyard.media.session import MediaEvents, SessionOptions
from trackyard.media.simulcast import simulcast_layer
from trackyard.media.transport import LOSSY, RELIABLE, PeerTransport

log = logging.getLogger(__name__)

CLOCK_RATES = {"opus": 48000, "red": 48000}


def local_ipv4_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host's interfaces (for host ICE candidates)."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            ip = socket.inet_ntoa(packed[20:24])
            if not ip.startswith("127.") and ip not in found:
                found.append(ip)
    return found or ["127.0.0.1"]


def host_candidates(ips: list[str], udp_port: int, tcp_port: int | None) -> list[Candidate]:
    """The server's ICE candidates: a UDP host candidate per address, then (with an ICE-TCP
    port) a passive TCP one per address at a lower priority, the fallback for clients whose
    UDP does not get through."""
    found = [Candidate.host(ip, udp_port, index=i) for i, ip in enumerate(ips)]
    if tcp_port:
        found += [Candidate.host(ip, tcp_port, index=i, transport="tcp") for i, ip in enumerate(ips)]
    return found


@dataclass
class PublishedTrack:
    """A track whose media arrives at this node: its engine handle and codec."""

    sid: str
    publisher_sid: str
    kind: str
    codec: str  # e.g. "opus", "VP8"
    engine_track: int


class WebRtcBackend:
    """The node's media: the engine, the DTLS certificate, and who owns which engine handle."""

    def __init__(self, engine: MediaEngine, *, advertise: list[str] | None = None) -> None:
        self.engine = engine
        self.certificate = node_certificate()
        self.fingerprint = sha256_fingerprint(self.certificate)
        self.candidates = host_candidates(advertise or local_ipv4_addresses(), engine.local_address[1],
                                          engine.tcp_address[1] if engine.tcp_address else None)
        self.published: dict[str, PublishedTrack] = {}  # by TR_ sid
        self.track_owner: dict[int, "WebRtcSession"] = {}  # engine track → publisher session
        self.downtrack_owner: dict[int, "WebRtcSession"] = {}  # engine down-track → subscriber session
        self._counters: dict[tuple, tuple[int, int]] = {}  # stream key → (packets, lost) last seen
        engine.set_listener(self)

    def create_session(self, options: SessionOptions, events: MediaEvents) -> "WebRtcSession":
        return WebRtcSession(self, options, events)

    def drop_track(self, handle: int) -> None:
        self.track_owner.pop(handle, None)
        self.engine.remove_track(handle)

    def drop_downtrack(self, handle: int) -> None:
        self.downtrack_owner.pop(handle, None)
        self._counters.pop(("out", handle), None)
        self.engine.remove_downtrack(handle)

    # --- engine events (MediaListener) --------------------------------------------------
    def on_audio_levels(self, levels: list[AudioLevel]) -> None:
        # every audio publisher gets a level each interval: silence (127) when nothing arrived
        loudest: dict[WebRtcSession, tuple[int, bool]] = {
            session: (127, False) for session in set(self.track_owner.values())
            if any(t.kind == "audio" for t in session.my_tracks.values())}
        for level in levels:
            session = self.track_owner.get(level.track)
            if session is None:
                continue
            dbov, voice = loudest.get(session, (127, False))
            loudest[session] = (min(dbov, level.level), voice or level.voice)
        for session, (dbov, voice) in loudest.items():
            session.events.on_audio_level(dbov, voice)

    def on_stats(self, entries: list[dict]) -> None:
        samples: dict[WebRtcSession, list[float]] = {}
        for entry in entries:
            if entry.get("kind") == "inbound":
                session = self.track_owner.get(entry.get("track", -1))
                key = ("in", entry.get("track"), entry.get("ssrc"))
            else:
                session = self.downtrack_owner.get(entry.get("downtrack", -1))
                key = ("out", entry.get("downtrack"))
            if session is None:
                continue
            packets, lost = int(entry.get("packets", 0)), int(entry.get("lost", 0))
            before = self._counters.get(key, (0, 0))
            self._counters[key] = (packets, lost)
            sample = samples.setdefault(session, [0, 0, 0.0, 0.0])
            sample[0] += max(0, packets - before[0])
            sample[1] += max(0, lost - before[1])
            sample[2] = max(sample[2], float(entry.get("jitter_ms", 0.0)))
            sample[3] = max(sample[3], float(entry.get("rtt_ms", 0.0)))
        for session, (packets, lost, jitter, rtt) in samples.items():
            session.events.on_connection_sample(int(packets), int(lost), jitter, rtt)


@dataclass
class Subscription:
    track: PublishedTrack
    ssrc: int
    mid: str | None = None
    downtrack: int | None = None
    paused: bool = False
    max_layer: int = 2


class WebRtcSession:
    def __init__(self, backend: WebRtcBackend, options: SessionOptions, events: MediaEvents) -> None:
        self.backend = backend
        self.options = options
        self.events = events
        sid = options.participant_sid
        self.publisher = self._transport(f"{sid}/pub", primary=options.single_pc or not options.subscriber_primary)
        self.subscriber: PeerTransport | None = None
        self.sections: dict[str, TrackSectionInfo] = {}  # publisher mids with media from the client
        self.cid_by_mid: dict[str, str] = {}
        self.received: set[str] = set()  # cids whose media started
        self.my_tracks: dict[str, PublishedTrack] = {}  # by cid
        self.subscriptions: dict[str, Subscription] = {}  # by track sid
        self.last_offer: SessionDescription | None = None  # v0: our last subscriber offer
        self.offer_id = 0
        self.offer_pending = False
        self.renegotiate_again = False
        self.closed = False
        if not options.single_pc and options.subscriber_primary:
            self.subscriber = self._transport(f"{sid}/sub", primary=True)
            asyncio.get_running_loop().call_soon(self._offer_subscriber)

    def _transport(self, label: str, *, primary: bool) -> PeerTransport:
        def connected() -> None:
            if primary:
                self.events.on_transport_connected()
            if transport is self.subscriber:
                transport.open_channels()

        transport = PeerTransport(
            self.backend.engine, self.backend.certificate, label=label,
            on_connected=connected,
            on_failed=self.events.on_transport_failed if primary else (lambda: None),
            on_message=self._on_message,
            on_new_stream=self._on_new_stream,
            on_fault=self.events.on_media_fault,
        )
        return transport

    # --- client offers (publisher connection, or the single one) ----------------------
    def _parse_remote(self, desc: rtc.SessionDescription) -> tuple[SessionDescription, str] | None:
        """The client's SDP and its DTLS fingerprint ("sha-256 AB:…"), or None if unusable."""
        try:
            sd = parse_sdp(desc.sdp)
        except SdpError as exc:
            log.warning("%s: unparseable %s: %s", self.options.participant_sid, desc.type, exc)
            return None
        fingerprint = next((sd.fingerprint(m) for m in sd.media if sd.fingerprint(m)), None)
        if fingerprint is None:
            log.warning("%s: %s without DTLS fingerprint", self.options.participant_sid, desc.type)
            return None
        return sd, f"{fingerprint.algorithm} {fingerprint.value}"

    async def handle_offer(self, offer: rtc.SessionDescription) -> None:
        parsed = self._parse_remote(offer)
        if parsed is None:
            return
        sd, fingerprint = parsed
        ufrag = sd.ice_credentials()[0]
        if self.publisher.remote_ufrag is not None and ufrag != self.publisher.remote_ufrag:
            self.publisher.restart_ice()
        self.publisher.remote_ufrag = ufrag
        self._learn_sections(sd)
        senders = self._bind_subscriptions_v1(sd) if self.options.single_pc else {}
        answer = build_answer(
            sd, ice_ufrag=self.publisher.ufrag, ice_pwd=self.publisher.pwd, fingerprint=self.backend.fingerprint,
            candidates=self.backend.candidates, senders=senders)
        response = rtc.SessionDescription(type="answer", sdp=answer.to_sdp(), id=offer.id)
        for mid, sub in ((s.mid, s) for s in self.subscriptions.values() if s.mid):
            response.mid_to_track_id[mid] = sub.track.sid
        self.events.send_signal(rtc.SignalResponse(answer=response))
        self.publisher.start(fingerprint)
        self._start_downtracks(sd if self.options.single_pc else None)
        if self.options.single_pc:
            self._request_sections()

    def _learn_sections(self, sd: SessionDescription) -> None:
        infos = mid_to_track_info(sd)
        self._set_extensions(self.publisher, sd)
        ended = [mid for mid in self.sections if mid not in infos]
        self.sections = infos
        for mid, info in infos.items():
            if info.track_id:
                self.cid_by_mid[mid] = info.track_id
        for mid in ended:
            cid = self.cid_by_mid.pop(mid, None)
            if cid is not None and cid in self.received:
                self.received.discard(cid)
                track = self.my_tracks.pop(cid, None)
                if track is not None:
                    self.backend.published.pop(track.sid, None)
                    self.backend.drop_track(track.engine_track)
                self.events.on_track_ended(cid)

    def _set_extensions(self, transport: PeerTransport, sd: SessionDescription) -> None:
        """Tell the engine the header-extension ids negotiated on a transport (one id space per BUNDLE)."""
        ids: dict[str, int] = {}
        for media in sd.media:
            if not media.rejected:
                ids.update(media.extmap_ids())
        self.backend.engine.set_extensions(
            transport.handle, mid=ids.get(EXT_MID, 0), rid=ids.get(EXT_RID, 0), rrid=ids.get(EXT_RRID, 0),
            audio_level=ids.get(EXT_AUDIO_LEVEL, 0), twcc=ids.get(EXT_TWCC, 0),
            abs_send_time=ids.get(EXT_ABS_SEND_TIME, 0))

    # --- incoming media ---------------------------------------------------------------
    def _on_new_stream(self, stream: NewStream) -> None:
        mid = stream.mid or self._mid_for_ssrc(stream.ssrc)
        info = self.sections.get(mid) if mid else None
        if info is None or not info.track_id:
            log.debug("%s: stream %08x without a known section", self.options.participant_sid, stream.ssrc)
            return
        cid = info.track_id
        track = self.my_tracks.get(cid)
        if track is None:
            primary = next((c for c in info.codecs if c.name.lower() not in ("rtx", "red", "ulpfec")), None)
            name = primary.name if primary is not None else ""
            handle = self.backend.engine.add_track(CLOCK_RATES.get(name.lower(), 90000), kind=info.kind,
                                                   mime=f"{info.kind}/{name}")
            track = PublishedTrack(sid="", publisher_sid=self.options.participant_sid, kind=info.kind,
                                   codec=name, engine_track=handle)
            self.my_tracks[cid] = track
            self.backend.track_owner[handle] = self
        if stream.rrid or stream.ssrc in info.rtx_ssrcs.values():
            media_ssrc = next((m for m, r in info.rtx_ssrcs.items() if r == stream.ssrc), None)
            layer = simulcast_layer(info.rids, stream.rrid) if stream.rrid else \
                (info.ssrcs.index(media_ssrc) if media_ssrc in info.ssrcs else 0)
            self.backend.engine.bind_repair(track.engine_track, self.publisher.handle, stream.ssrc, layer)
            return
        layer = simulcast_layer(info.rids, stream.rid)
        self.backend.engine.bind_stream(track.engine_track, self.publisher.handle, stream.ssrc, layer)
        if cid not in self.received:
            self.received.add(cid)
            sid = self.events.on_track_received(cid, mid, f"{info.kind}/{track.codec}")
            if sid:
                track.sid = sid
                self.backend.published[sid] = track

    def _mid_for_ssrc(self, ssrc: int) -> str | None:
        return next((mid for mid, info in self.sections.items() if ssrc in info.ssrcs), None)

    # --- data -------------------------------------------------------------------------
    def _on_message(self, label: str, data: bytes) -> None:
        try:
            packet = models.DataPacket.FromString(data)
        except DecodeError:
            log.debug("%s: undecodable data packet on %s", self.options.participant_sid, label)
            return
        # the channel it came on says what it is (newer SDKs leave the deprecated field unset)
        packet.kind = models.DataPacket.LOSSY if label == LOSSY else models.DataPacket.RELIABLE
        self.events.on_data_received(packet)

    def send_data(self, packet: models.DataPacket) -> bool:
        label = LOSSY if packet.kind == models.DataPacket.LOSSY else RELIABLE
        transport = self.publisher if self.options.single_pc or self.subscriber is None else self.subscriber
        return transport.send(label, packet.SerializeToString())

    # --- subscriptions ----------------------------------------------------------------
    def subscribe(self, track_sid: str) -> bool:
        track = self.backend.published.get(track_sid)
        if track is None or track_sid in self.subscriptions or self.closed:
            return False
        self.subscriptions[track_sid] = Subscription(track=track, ssrc=secrets.randbits(31) | 1)
        if self.options.single_pc:
            self._request_sections()
        else:
            self._offer_subscriber()
        return True

    def unsubscribe(self, track_sid: str) -> None:
        sub = self.subscriptions.pop(track_sid, None)
        if sub is None:
            return
        if sub.downtrack is not None:
            self.backend.drop_downtrack(sub.downtrack)
        if not self.options.single_pc:
            self._offer_subscriber()

    def set_paused(self, track_sid: str, paused: bool) -> None:
        sub = self.subscriptions.get(track_sid)
        if sub is not None and sub.paused != paused:
            sub.paused = paused
            if sub.downtrack is not None:
                self.backend.engine.pause_downtrack(sub.downtrack, paused)

    def set_max_layer(self, track_sid: str, layer: int) -> None:
        """The top simulcast layer this participant wants of a track (from its track settings)."""
        sub = self.subscriptions.get(track_sid)
        if sub is not None and sub.max_layer != layer:
            sub.max_layer = layer
            if sub.downtrack is not None:
                self.backend.engine.set_downtrack_layer(sub.downtrack, layer)

    def set_track_muted(self, track_sid: str, muted: bool) -> None:
        """This participant muted (or unmuted) one of its own tracks: stop or resume forwarding it."""
        track = self.backend.published.get(track_sid)
        if track is not None and track.publisher_sid == self.options.participant_sid:
            self.backend.engine.mute_track(track.engine_track, muted)

    def _request_sections(self) -> None:
        """v1: ask the client for enough recvonly sections for our pending down-tracks."""
        waiting = [s for s in self.subscriptions.values() if s.mid is None]
        if not waiting:
            return
        audio = sum(1 for s in waiting if s.track.kind == "audio")
        self.events.send_signal(rtc.SignalResponse(media_sections_requirement=rtc.MediaSectionsRequirement(
            num_audios=audio, num_videos=len(waiting) - audio)))

    def _bind_subscriptions_v1(self, offer: SessionDescription) -> dict[str, SendTrack]:
        taken = {s.mid for s in self.subscriptions.values() if s.mid}
        for sub in self.subscriptions.values():
            if sub.mid is not None:
                continue
            free = next((m for m in offer.media if m.kind == sub.track.kind and m.mid and m.mid not in taken
                         and not m.rejected and m.effective_direction == "recvonly"), None)
            if free is not None:
                sub.mid = free.mid
                taken.add(free.mid)
        return {s.mid: self._send_track(s) for s in self.subscriptions.values() if s.mid}

    def _send_track(self, sub: Subscription) -> SendTrack:
        return SendTrack.for_track(sub.track.publisher_sid, sub.track.sid, sub.ssrc, kind=sub.track.kind,
                                   codecs=(sub.track.codec,))

    def _start_downtracks(self, sd: SessionDescription | None) -> None:
        """Create engine down-tracks for subscriptions bound to a negotiated section."""
        source = sd if sd is not None else self.last_offer
        if source is None:
            return
        for sub in self.subscriptions.values():
            if sub.downtrack is not None or sub.mid is None:
                continue
            section = source.section(sub.mid)
            codec = next((c for c in section.codecs if c.name.lower() == sub.track.codec.lower()), None) \
                if section is not None else None
            transport = self.publisher if self.options.single_pc else self.subscriber
            if codec is None or transport is None:
                continue
            sub.downtrack = self.backend.engine.add_downtrack(sub.track.engine_track, transport.handle,
                                                              sub.ssrc, codec.pt, max_layer=sub.max_layer,
                                                              cname=sub.track.publisher_sid)
            self.backend.downtrack_owner[sub.downtrack] = self
            if sub.paused:
                self.backend.engine.pause_downtrack(sub.downtrack, True)

    # --- v0 subscriber connection -----------------------------------------------------
    def _offer_subscriber(self) -> None:
        if self.subscriber is None or self.closed:
            return
        if self.offer_pending:
            self.renegotiate_again = True
            return
        tracks = [self._send_track(s) for s in self.subscriptions.values()]
        offer = build_offer(ice_ufrag=self.subscriber.ufrag, ice_pwd=self.subscriber.pwd,
                            fingerprint=self.backend.fingerprint, candidates=self.backend.candidates,
                            tracks=tracks, previous=self.last_offer)
        mids = {m.primary_msid().track_id: m.mid for m in offer.media
                if m.primary_msid() is not None and m.effective_direction == "sendonly"}
        for sub in self.subscriptions.values():
            sub.mid = mids.get(sub.track.sid)
        self.last_offer = offer
        self._set_extensions(self.subscriber, offer)
        self.offer_id += 1
        self.offer_pending = True
        self.events.send_signal(rtc.SignalResponse(offer=rtc.SessionDescription(
            type="offer", sdp=offer.to_sdp(), id=self.offer_id)))

    async def handle_answer(self, answer: rtc.SessionDescription) -> None:
        if self.subscriber is None:
            return
        parsed = self._parse_remote(answer)
        self.offer_pending = False
        if parsed is not None:
            self.subscriber.start(parsed[1])
        self._start_downtracks(None)
        if self.renegotiate_again:
            self.renegotiate_again = False
            self._offer_subscriber()

    def on_resumed(self) -> None:
        """v0: the client cannot ICE-restart the subscriber connection (we offer it), so a resume
        restarts it from our side with a fresh offer and new credentials, as LiveKit does. The
        client restarts the publisher (and the single v1) connection itself with its next offer."""
        if self.subscriber is not None and not self.closed:
            self.subscriber.restart_ice()
            self._offer_subscriber()

    async def handle_trickle(self, trickle: rtc.TrickleRequest) -> None:
        return None  # ICE-lite: the peer's address is learned from its checks

    async def close(self) -> None:
        self.closed = True
        for sub in self.subscriptions.values():
            if sub.downtrack is not None:
                self.backend.drop_downtrack(sub.downtrack)
        for track in self.my_tracks.values():
            self.backend.published.pop(track.sid, None)
            self.backend.drop_track(track.engine_track)
        for transport in (self.publisher, self.subscriber):
            if transport is not None:
                await transport.close()
