"""Simulated participants: a publisher (one publisher connection: AddTrack per track, its
offer, then synthetic media from the load generator) and a subscriber (auto-subscribe; it
answers the server's subscriber-connection offers and asks for layers per `--layout`).

Both use LiveKit's two-connection signaling (`/rtc`): publishers get tokens without
`canSubscribe` and subscribers without `canPublish`, so each has exactly one peer connection
(the JoinResponse then says `subscriber_primary` false / true). Timings are kept for the
report: WebSocket start → upgrade → JoinResponse → connected (ICE + DTLS).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
from aiortc.rtcdtlstransport import RTCCertificate
from livekit.protocol import models, rtc

from trackyard.auth.grants import VideoGrant
from trackyard.auth.tokens import mint_token
from trackyard.engine import LoadGenerator
from trackyard.media.dtls import sha256_fingerprint
from trackyard.media.sdp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    EXT_TWCC,
    SessionDescription,
    parse_sdp,
)

from .client_sdp import (
    OfferedTrack,
    candidate_from_trickle,
    publisher_offer,
    subscriber_answer,
)
from .media_plan import (
    AUDIO_PAYLOAD,
    AUDIO_PTIME_MS,
    KEYFRAME_INTERVAL_MS,
    VideoLayer,
    requested_qualities,
    size_for,
)
from .peer import ClientPeer
from .signal import SignalConnection

log = logging.getLogger(__name__)

PUBLISHER, SUBSCRIBER = rtc.SignalTarget.PUBLISHER, rtc.SignalTarget.SUBSCRIBER


@dataclass
class RunContext:
    """What every simulated participant of a run shares."""

    gen: LoadGenerator
    certificate: RTCCertificate
    http: aiohttp.ClientSession
    url: str
    api_key: str
    api_secret: str
    local_ip: str
    loopback_only: bool
    join_timeout: float = 20.0
    layout: str = "speaker"

    @property
    def fingerprint(self) -> str:
        return sha256_fingerprint(self.certificate)


@dataclass
class Timings:
    """Monotonic seconds of a participant's join steps (0 = did not happen)."""

    started: float = 0.0
    started_unix: float = 0.0
    upgraded: float = 0.0
    joined: float = 0.0
    connected: float = 0.0

    def ms(self, step: str) -> float | None:
        t = getattr(self, step)
        return round((t - self.started) * 1000, 3) if t and self.started else None


class Participant:
    role = ""
    opens_channels = False  # the SDKs open _reliable/_lossy on the publisher connection

    def __init__(self, ctx: RunContext, room: str, identity: str) -> None:
        self.ctx = ctx
        self.room = room
        self.identity = identity
        self.signal: SignalConnection | None = None
        self.peer: ClientPeer | None = None
        self.timings = Timings()
        self.error: str | None = None
        self.sid = ""

    def _token(self, *, publish: bool, subscribe: bool) -> str:
        grant = VideoGrant(room_join=True, room=self.room, can_publish=publish, can_subscribe=subscribe,
                           can_publish_data=False)
        return mint_token(self.ctx.api_key, self.ctx.api_secret, identity=self.identity, name=self.identity,
                          ttl_seconds=4 * 3600, video=grant)

    async def _connect(self, *, publish: bool, subscribe: bool) -> None:
        self.signal = SignalConnection(self.ctx.http, self._on_message)
        self.timings.started = time.monotonic()
        self.timings.started_unix = time.time()
        join = await self.signal.connect(self.ctx.url, self._token(publish=publish, subscribe=subscribe),
                                         auto_subscribe=subscribe, timeout=self.ctx.join_timeout)
        self.timings.upgraded = self.signal.ws_opened
        self.timings.joined = self.signal.joined_at
        self.sid = join.participant.sid

    def _new_peer(self) -> ClientPeer:
        return ClientPeer(self.ctx.gen, self.ctx.certificate, self.ctx.local_ip, label=f"{self.identity}",
                          loopback_only=self.ctx.loopback_only, opens_channels=self.opens_channels)

    def _on_trickle(self, trickle: rtc.TrickleRequest, target: int) -> None:
        if self.peer is None or trickle.target != target:
            return
        found = candidate_from_trickle(trickle.candidateInit, self.ctx.loopback_only)
        if found is not None:
            self.peer.add_candidate(*found)

    async def _await_connected(self) -> None:
        assert self.peer is not None
        remaining = self.ctx.join_timeout - (time.monotonic() - self.timings.started)
        self.timings.connected = await asyncio.wait_for(asyncio.shield(self.peer.connected), max(0.1, remaining))

    def _on_message(self, response: rtc.SignalResponse) -> None:
        raise NotImplementedError

    async def run_join(self) -> None:
        try:
            await self.join()
        except Exception as exc:  # a failed join is a result, not a crash of the run
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.info("%s: join failed: %s", self.identity, self.error)

    async def join(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.signal is not None:
            await self.signal.close()
        if self.peer is not None:
            await self.peer.close()


class Publisher(Participant):
    """Publishes audio and/or one video track (simulcast layers as given)."""

    role = "publisher"
    opens_channels = True

    def __init__(self, ctx: RunContext, room: str, identity: str, *, audio: bool,
                 video: tuple[VideoLayer, ...] | None) -> None:
        super().__init__(ctx, room, identity)
        self.audio = audio
        self.video = video
        self.tracks: list[OfferedTrack] = []
        self.track_sids: dict[str, str] = {}  # cid → TR_ sid
        self.ssrcs: dict[int, tuple[str, str]] = {}  # our ssrc → (kind, rid)
        self._published: dict[str, asyncio.Future] = {}
        self._answer: asyncio.Future | None = None

    def _on_message(self, response: rtc.SignalResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "track_published":
            fut = self._published.get(response.track_published.cid)
            if fut is not None and not fut.done():
                fut.set_result(response.track_published.track.sid)
        elif kind == "answer" and self._answer is not None and not self._answer.done():
            self._answer.set_result(response.answer)
        elif kind == "trickle":
            self._on_trickle(response.trickle, PUBLISHER)

    async def join(self) -> None:
        await self._connect(publish=True, subscribe=False)
        assert self.signal is not None
        loop = asyncio.get_running_loop()
        self.peer = self._new_peer()
        cname = secrets.token_hex(8)
        requests: list[rtc.AddTrackRequest] = []
        if self.audio:
            t = OfferedTrack("audio", str(len(self.tracks)), str(uuid.uuid4()), cname, ssrc=secrets.randbits(31) | 1)
            self.tracks.append(t)
            requests.append(rtc.AddTrackRequest(cid=t.cid, name="mic", type=models.TrackType.AUDIO,
                                                source=models.TrackSource.MICROPHONE))
        if self.video:
            top = self.video[-1]
            simulcast = len(self.video) > 1 or bool(top.rid)
            t = OfferedTrack("video", str(len(self.tracks)), str(uuid.uuid4()), cname,
                             ssrc=None if simulcast else secrets.randbits(31) | 1,
                             rids=[layer.rid for layer in self.video] if simulcast else [])
            self.tracks.append(t)
            layers = [models.VideoLayer(quality=layer.quality, width=layer.width, height=layer.height,
                                        bitrate=layer.bitrate) for layer in reversed(self.video)]
            requests.append(rtc.AddTrackRequest(
                cid=t.cid, name="camera", type=models.TrackType.VIDEO, source=models.TrackSource.CAMERA,
                width=top.width, height=top.height, layers=layers,
                simulcast_codecs=[rtc.SimulcastCodec(codec="vp8", cid=t.cid, layers=layers)]))
        for request in requests:
            self._published[request.cid] = loop.create_future()
            await self.signal.send(add_track=request)
        remaining = self.ctx.join_timeout - (time.monotonic() - self.timings.started)
        sids = await asyncio.wait_for(asyncio.gather(*self._published.values()), max(0.1, remaining))
        self.track_sids = dict(zip(self._published, sids))
        offer = publisher_offer(ufrag=self.peer.ufrag, pwd=self.peer.pwd, fingerprint=self.ctx.fingerprint,
                                candidate=self.peer.candidate, tracks=self.tracks)
        self._answer = loop.create_future()
        await self.signal.send(offer=rtc.SessionDescription(type="offer", sdp=offer.to_sdp(), id=1))
        remaining = self.ctx.join_timeout - (time.monotonic() - self.timings.started)
        answer_msg = await asyncio.wait_for(asyncio.shield(self._answer), max(0.1, remaining))
        answer = parse_sdp(answer_msg.sdp)
        self.peer.set_remote(answer, controlling=True)  # we offered
        self._start_media(answer, cname)
        await self._await_connected()

    def _start_media(self, answer: SessionDescription, cname: str) -> None:
        """Register our streams with the load generator (they start once connected)."""
        assert self.peer is not None
        ids: dict[str, int] = {}
        for media in answer.media:
            if not media.rejected:
                ids.update(media.extmap_ids())
        def one_byte(uri: str) -> int:
            value = ids.get(uri, 0)
            return value if value <= 14 else 0

        gen, handle = self.ctx.gen, self.peer.handle
        gen.set_extensions(handle, mid=one_byte(EXT_MID), rid=one_byte(EXT_RID),
                           audio_level=one_byte(EXT_AUDIO_LEVEL), abs_send_time=one_byte(EXT_ABS_SEND_TIME),
                           twcc=one_byte(EXT_TWCC))
        for track in self.tracks:
            section = answer.section(track.mid)
            if section is None or section.rejected or not section.codecs:
                raise ConnectionError(f"the server rejected our {track.kind} section")
            pt = section.codecs[0].pt
            if track.kind == "audio":
                assert track.ssrc is not None
                gen.add_audio(handle, track.ssrc, pt, track.mid, payload=AUDIO_PAYLOAD, ptime_ms=AUDIO_PTIME_MS,
                              cname=cname)
                self.ssrcs[track.ssrc] = ("audio", "")
                continue
            assert self.video is not None
            for layer in self.video:
                ssrc = track.ssrc if track.ssrc is not None else secrets.randbits(31) | 1
                gen.add_video(handle, ssrc, pt, track.mid, layer.rid, bitrate=layer.bitrate, fps=layer.fps,
                              width=layer.width, height=layer.height, keyframe_interval_ms=KEYFRAME_INTERVAL_MS,
                              cname=cname)
                self.ssrcs[ssrc] = ("video", layer.rid)


@dataclass
class Subscription:
    track_sid: str
    kind: str
    mid: str
    ssrcs: list[int] = field(default_factory=list)
    quality: int | None = -1  # requested (None: disabled; -1: nothing sent yet)


class Subscriber(Participant):
    """Subscribes to everything (auto-subscribe) and requests layers per the layout."""

    role = "subscriber"

    def __init__(self, ctx: RunContext, room: str, identity: str) -> None:
        super().__init__(ctx, room, identity)
        self.subscriptions: dict[str, Subscription] = {}  # by track sid
        self.publishers: dict[str, str] = {}  # track sid → publisher identity
        self.offers = 0
        self._queue: asyncio.Queue[rtc.SessionDescription] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._twcc = False

    def _on_message(self, response: rtc.SignalResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "offer":
            self._queue.put_nowait(response.offer)
        elif kind == "trickle":
            self._on_trickle(response.trickle, SUBSCRIBER)
        elif kind == "update":
            for p in response.update.participants:
                for t in p.tracks:
                    self.publishers[t.sid] = p.identity
        elif kind == "join":
            pass

    async def join(self) -> None:
        await self._connect(publish=False, subscribe=True)
        assert self.signal is not None and self.signal.join is not None
        for p in self.signal.join.other_participants:
            for t in p.tracks:
                self.publishers[t.sid] = p.identity
        self._worker = asyncio.get_running_loop().create_task(self._answer_offers())
        # the server offers the subscriber connection right after the JoinResponse
        deadline = self.timings.started + self.ctx.join_timeout
        while self.peer is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no subscriber offer from the server")
            await asyncio.sleep(0.01)
        await self._await_connected()

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._queue.get()
            try:
                await self._answer(offer)
            except Exception:
                log.exception("%s: answering an offer failed", self.identity)

    async def _answer(self, message: rtc.SessionDescription) -> None:
        assert self.signal is not None
        sd = parse_sdp(message.sdp)
        if self.peer is None:
            self.peer = self._new_peer()
        answer = subscriber_answer(sd, ufrag=self.peer.ufrag, pwd=self.peer.pwd, fingerprint=self.ctx.fingerprint,
                                   candidate=self.peer.candidate)
        gen, handle = self.ctx.gen, self.peer.handle
        twcc = next((m.extmap_ids().get(EXT_TWCC, 0) for m in sd.media if not m.rejected and m.is_rtp), 0)
        if 0 < twcc <= 14 and not self._twcc:
            gen.set_extensions(handle, twcc=twcc)  # we send transport-wide feedback on what arrives
            self._twcc = True
        for media in sd.media:
            if media.rejected or media.kind not in ("audio", "video"):
                continue
            for codec in media.codecs:
                gen.set_payload_clock(handle, codec.pt, codec.clock_rate or 90000, media.kind)
        await self.signal.send(answer=rtc.SessionDescription(type="answer", sdp=answer.to_sdp(), id=message.id))
        self.peer.set_remote(sd, controlling=sd.ice_lite)  # the server offered
        self.offers += 1
        current: dict[str, Subscription] = {}
        for media in sd.media:
            msid = media.primary_msid()
            if media.rejected or media.effective_direction not in ("sendonly", "sendrecv") or msid is None:
                continue
            sid = msid.track_id or ""
            old = self.subscriptions.get(sid)
            sub = Subscription(sid, media.kind, media.mid or "", media.ssrc_list(),
                               old.quality if old is not None else -1)
            current[sid] = sub
        self.subscriptions = current
        await self.apply_layout()

    async def apply_layout(self) -> None:
        """Ask for each video track's layer per the layout (publishers in identity order)."""
        assert self.signal is not None
        videos = sorted((s for s in self.subscriptions.values() if s.kind == "video"),
                        key=lambda s: (self.publishers.get(s.track_sid, "~"), s.track_sid))
        wanted = requested_qualities(self.ctx.layout, [s.track_sid for s in videos])
        for sub in videos:
            quality = wanted[sub.track_sid]
            if quality == sub.quality:
                continue
            sub.quality = quality
            if quality is None:
                setting = rtc.UpdateTrackSettings(track_sids=[sub.track_sid], disabled=True)
            else:
                width, height = size_for(quality)
                setting = rtc.UpdateTrackSettings(track_sids=[sub.track_sid], disabled=False, quality=quality,
                                                  width=width, height=height)
            await self.signal.send(track_setting=setting)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        await super().close()
