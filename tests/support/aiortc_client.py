"""A LiveKit client built from aiortc, for loopback tests of the WebRTC path.

aiortc is an independent WebRTC implementation (full ICE, DTLS, SRTP, Opus): with it the
server's answers, offers, ICE-lite, DTLS and forwarding are exercised on 127.0.0.1, which
libwebrtc clients refuse to use. `loopback_only()` makes aioice gather 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from livekit.protocol import models, rtc

from support.signal_client import SignalClient


@contextlib.contextmanager
def loopback_only():
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class SineTrack(MediaStreamTrack):
    """20 ms frames of a sine tone, 48 kHz mono, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self.pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self.pts / 48000 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        n = 960
        t = (np.arange(n) + self.pts) / 48000
        samples = (np.sin(2 * np.pi * self.frequency * t) * 10000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, 48000)
        self.pts += n
        return frame


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    window = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


class AiortcParticipant:
    """One participant: signal connection + aiortc peer connection(s)."""

    def __init__(self, signal: SignalClient, identity: str) -> None:
        self.signal = signal
        self.identity = identity
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # v1 or v0 publisher
        self.sub_pc: RTCPeerConnection | None = None  # v0 subscriber
        self.data: list[models.DataPacket] = []
        self.audio: list[np.ndarray] = []
        self.tracks: list[MediaStreamTrack] = []
        self.channels: dict[str, object] = {}
        self.mid_to_track_id: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []

    def _on_message(self, message) -> None:
        if isinstance(message, bytes):
            self.data.append(models.DataPacket.FromString(message))

    def _watch(self, pc: RTCPeerConnection) -> None:
        @pc.on("datachannel")
        def on_channel(channel):
            channel.on("message", self._on_message)

        @pc.on("track")
        def on_track(track):
            self.tracks.append(track)
            if track.kind == "audio":
                self._tasks.append(asyncio.ensure_future(self._read_audio(track)))

    async def _read_audio(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            pcm = frame.to_ndarray().astype(np.float64)
            channels = len(frame.layout.channels)
            self.audio.append(pcm.reshape(-1, channels)[:, 0] if pcm.size else pcm)

    def audio_frequency(self, seconds: float = 1.0) -> float:
        samples = np.concatenate(self.audio[-int(seconds * 50):])
        return dominant_frequency(samples, 48000)

    # --- v1: one peer connection, offer in the join request --------------------------
    @classmethod
    async def join_v1(cls, ws_url: str, token: str, identity: str, *, publish: MediaStreamTrack | None = None,
                      recv_audio: int = 0):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for _ in range(recv_audio):  # like the SDKs' initial recvonly sections
            pc.addTransceiver("audio", direction="recvonly")
        channels = {"_reliable": pc.createDataChannel("_reliable"),
                    "_lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0)}
        add_tracks = []
        if publish is not None:
            pc.addTransceiver(publish, direction="sendonly")
            add_tracks.append(rtc.AddTrackRequest(cid=publish.id, name="mic", type=models.TrackType.AUDIO,
                                                  source=models.TrackSource.MICROPHONE))
        await pc.setLocalDescription(await pc.createOffer())
        request = rtc.JoinRequest(
            client_info=models.ClientInfo(sdk=models.ClientInfo.PYTHON, protocol=17),
            connection_settings=rtc.ConnectionSettings(auto_subscribe=True),
            publisher_offer=rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp, id=1),
            add_track_requests=add_tracks,
        )
        signal = await SignalClient.connect(ws_url, token, join_request=request)
        self = cls(signal, identity)
        self.pc = pc
        self.channels = channels
        for channel in channels.values():
            channel.on("message", self._on_message)
        self._watch(pc)
        await signal.expect("join")
        answer = await signal.expect("answer", lambda a: a.id == 1)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        self._tasks.append(asyncio.ensure_future(self._meet_requirements()))
        return self

    async def _meet_requirements(self) -> None:
        """v1: add recvonly sections when the server asks, and re-offer (as the SDKs do)."""
        handled, offer_id = 0, 1
        while True:
            requests = self.signal.of("media_sections_requirement")
            if len(requests) > handled:
                req = requests[handled]
                handled += 1
                # aiortc cannot bundle sections added after connecting, so use the recvonly
                # sections created at join for as long as there are free ones
                free = {kind: [t for t in self.pc.getTransceivers() if t.kind == kind and t.direction == "recvonly"
                               and t.mid not in self.mid_to_track_id] for kind in ("audio", "video")}
                for _ in range(max(0, req.num_audios - len(free["audio"]))):
                    self.pc.addTransceiver("audio", direction="recvonly")
                for _ in range(max(0, req.num_videos - len(free["video"]))):
                    self.pc.addTransceiver("video", direction="recvonly")
                offer_id += 1
                await self.pc.setLocalDescription(await self.pc.createOffer())
                start = len(self.signal.received)
                await self.signal.send(offer=rtc.SessionDescription(
                    type="offer", sdp=self.pc.localDescription.sdp, id=offer_id))
                answer = await self.signal.expect("answer", lambda a, i=offer_id: a.id == i, start=start)
                self.mid_to_track_id.update(answer.mid_to_track_id)
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
                continue
            await asyncio.sleep(0.02)

    # --- v0: the server offers the subscriber connection -----------------------------
    @classmethod
    async def join_v0(cls, ws_url: str, token: str, identity: str):
        signal = await SignalClient.connect(ws_url, token, v1=False)
        self = cls(signal, identity)
        self.sub_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._watch(self.sub_pc)
        await signal.expect("join")
        self._tasks.append(asyncio.ensure_future(self._answer_offers()))
        return self

    async def _answer_offers(self) -> None:
        answered = 0
        while True:
            offers = self.signal.of("offer")
            if len(offers) > answered:
                offer = offers[answered]
                answered += 1
                if answered > 1:
                    # aiortc starts the receivers of a renegotiated offer only if its DTLS
                    # transport is new or connected when the description is applied; one that
                    # arrives mid-handshake would never play (an aiortc limitation, libwebrtc
                    # has none): let the first connection finish first
                    await self.wait_connected(self.sub_pc)
                await self.sub_pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
                await self.sub_pc.setLocalDescription(await self.sub_pc.createAnswer())
                await self.signal.send(answer=rtc.SessionDescription(
                    type="answer", sdp=self.sub_pc.localDescription.sdp, id=offer.id))
                continue
            await asyncio.sleep(0.02)

    async def wait_connected(self, pc: RTCPeerConnection, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while pc.connectionState != "connected":
            assert asyncio.get_running_loop().time() < deadline, f"{self.identity}: {pc.connectionState}"
            await asyncio.sleep(0.05)

    def send_data(self, payload: bytes, *, lossy: bool = False, to: list[str] | None = None) -> None:
        packet = models.DataPacket(kind=models.DataPacket.LOSSY if lossy else models.DataPacket.RELIABLE,
                                   user=models.UserPacket(payload=payload, topic="chat"))
        packet.destination_identities.extend(to or [])
        self.channels["_lossy" if lossy else "_reliable"].send(packet.SerializeToString())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.signal.close()
        await self.pc.close()
        if self.sub_pc is not None:
            await self.sub_pc.close()
