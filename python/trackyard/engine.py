"""The one module that imports the Rust extension (`trackyard._engine`).

`MediaEngine` wraps the extension's `Engine` (one UDP port and a worker thread per media
node) for asyncio: events from the worker arrive in batches through an eventfd registered
with the event loop and are dispatched: transport events to per-transport handlers, media
events (layers, forwarded layer, audio levels, statistics) to one optional `MediaListener`.
The latest of each media event is also kept for polling (`active_layers`, `downtrack_layer`,
`audio_levels`, `last_stats`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from trackyard import _engine

log = logging.getLogger(__name__)


def version() -> str:
    """Version of the compiled engine."""
    return _engine.version()


def is_debug_build() -> bool:
    """True when the engine was compiled without optimisations."""
    return _engine.debug_build()


DELAY_PREFIX = "forward_delay_le_"


def forward_delay_histogram(stats: dict[str, int]) -> tuple[list[tuple[float, int]], float]:
    """The forwarding-delay histogram in a `MediaEngine.stats()` snapshot: cumulative
    ``(upper bound in seconds, count)`` pairs ending with ``(inf, total)``, and the sum in
    seconds. Delay: from the receive batch of an RTP packet to each copy of it queued, rewritten
    and encrypted, for a subscriber."""
    buckets: list[tuple[float, int]] = []
    for name, count in stats.items():
        if name.startswith(DELAY_PREFIX):
            bound = name[len(DELAY_PREFIX):]
            buckets.append((float("inf") if bound == "inf" else int(bound.removesuffix("us")) / 1e6, count))
    buckets.sort()
    total, cumulative = 0, []
    for bound, count in buckets:
        total += count
        cumulative.append((bound, total))
    return cumulative, stats.get("forward_delay_sum_us", 0) / 1e6


@dataclass(frozen=True)
class NewStream:
    ssrc: int
    payload_type: int
    mid: str
    rid: str
    rrid: str


class TransportHandler(Protocol):
    """What the engine reports about one peer transport."""

    def on_bound(self, ip: str, port: int) -> None: ...

    def on_dtls(self, data: bytes) -> None: ...

    def on_consent_lost(self) -> None: ...

    def on_fault(self) -> None:
        """Handling this transport's traffic panicked in the engine; the transport is gone."""
        ...

    def on_new_stream(self, stream: NewStream) -> None: ...


@dataclass(frozen=True)
class AudioLevel:
    track: int
    level: int  # loudest smoothed level in the interval, -dBov: 0 loudest … 127 silence
    voice: bool  # voice activity flag set in any packet of the interval


class MediaListener(Protocol):
    """What the engine reports about tracks and down-tracks (every method optional)."""

    def on_layers(self, track: int, layers: tuple[int, ...]) -> None:
        """The simulcast layers the publisher sends changed (indexes, lowest first)."""

    def on_downtrack_layer(self, downtrack: int, layer: int | None) -> None:
        """The layer a down-track forwards changed (None: nothing forwarded)."""

    def on_audio_levels(self, levels: list[AudioLevel]) -> None:
        """Every ~250 ms, the audio tracks that carried levels, loudest first."""

    def on_stats(self, entries: list[dict]) -> None:
        """Every ~2 s: one dict per received stream (kind "inbound") and down-track ("outbound")."""


TRANSPORT_EVENTS = frozenset({"dtls", "bound", "consent_lost", "new_stream", "fault"})


class MediaEngine:
    def __init__(self, bind: str, listener: MediaListener | None = None, *, gso: bool = True,
                 tcp: str | None = None) -> None:
        """`bind`: the UDP "ip:port"; `tcp`: also accept ICE-TCP connections on this
        "ip:port" (None: UDP only)."""
        self._engine = _engine.Engine(bind, gso=gso, tcp=tcp)
        self._handlers: dict[int, TransportHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener = listener
        self._layers: dict[int, tuple[int, ...]] = {}
        self._downtrack_layers: dict[int, int | None] = {}
        self.audio_levels: list[AudioLevel] = []
        self.last_stats: list[dict] = []

    def set_listener(self, listener: MediaListener | None) -> None:
        self._listener = listener

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start dispatching events on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._engine.event_fd(), self._drain)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._engine.event_fd())
            self._loop = None
        self._engine.close()

    @property
    def local_address(self) -> tuple[str, int]:
        return self._engine.local_address

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """The ICE-TCP listener's (ip, port), or None without one."""
        return self._engine.tcp_address

    def stats(self) -> dict[str, int]:
        """Counters since start (see rust/src/stats.rs), plus the forwarding-delay histogram's
        raw entries (read them with :func:`forward_delay_histogram`)."""
        return dict(self._engine.stats())

    # --- events -----------------------------------------------------------------------
    def _drain(self) -> None:
        for event in self._engine.take_events():
            try:
                if event[0] in TRANSPORT_EVENTS:
                    self._transport_event(event)
                else:
                    self._media_event(event)
            except Exception:  # one handler's bug must not stop event delivery for the node
                log.exception("engine event %s failed", event[0])

    def _transport_event(self, event: tuple) -> None:
        handler = self._handlers.get(event[1])
        if handler is None:
            return
        kind = event[0]
        if kind == "dtls":
            handler.on_dtls(event[2])
        elif kind == "bound":
            handler.on_bound(event[2], event[3])
        elif kind == "consent_lost":
            handler.on_consent_lost()
        elif kind == "fault":
            self._handlers.pop(event[1], None)  # the engine already removed the transport
            handler.on_fault()
        elif kind == "new_stream":
            handler.on_new_stream(NewStream(*event[2:]))

    def _media_event(self, event: tuple) -> None:
        kind = event[0]
        listener = self._listener
        if kind == "layers":
            layers = tuple(event[2])
            self._layers[event[1]] = layers
            if listener is not None and hasattr(listener, "on_layers"):
                listener.on_layers(event[1], layers)
        elif kind == "downtrack_layer":
            self._downtrack_layers[event[1]] = event[2]
            if listener is not None and hasattr(listener, "on_downtrack_layer"):
                listener.on_downtrack_layer(event[1], event[2])
        elif kind == "audio_levels":
            self.audio_levels = [AudioLevel(*item) for item in event[1]]
            if listener is not None and hasattr(listener, "on_audio_levels"):
                listener.on_audio_levels(self.audio_levels)
        elif kind == "stats":
            self.last_stats = event[1]
            if listener is not None and hasattr(listener, "on_stats"):
                listener.on_stats(event[1])
        else:
            log.debug("unknown engine event %s", kind)

    def active_layers(self, track: int) -> tuple[int, ...]:
        """The layers the track's publisher was last reported sending."""
        return self._layers.get(track, ())

    def downtrack_layer(self, downtrack: int) -> int | None:
        """The layer the down-track was last reported forwarding."""
        return self._downtrack_layers.get(downtrack)

    # --- transports -------------------------------------------------------------------
    def add_transport(self, ufrag: str, pwd: str, handler: TransportHandler) -> int:
        handle = self._engine.add_transport(ufrag, pwd)
        self._handlers[handle] = handler
        return handle

    def restart_ice(self, handle: int, ufrag: str, pwd: str) -> None:
        """New local ICE credentials for a transport (an ICE restart); DTLS and SRTP stay."""
        self._engine.restart_ice(handle, ufrag, pwd)

    def inject_fault(self, handle: int) -> None:
        """Test hook: the engine panics on this transport's next SRTP datagram."""
        self._engine.inject_fault(handle)

    def remove_transport(self, handle: int) -> None:
        self._handlers.pop(handle, None)
        self._engine.remove_transport(handle)

    def dtls_sender(self, handle: int) -> Callable[[bytes], None]:
        return lambda data: self._engine.send_dtls(handle, data)

    def set_srtp(self, handle: int, profile: str, local: bytes, remote: bytes) -> None:
        self._engine.set_srtp(handle, profile, local, remote)

    def set_extensions(self, handle: int, *, mid: int = 0, rid: int = 0, rrid: int = 0, audio_level: int = 0,
                       twcc: int = 0, abs_send_time: int = 0) -> None:
        """The transport's negotiated header extension ids (extmap ids; 0 = not negotiated)."""
        self._engine.set_extensions(handle, mid, rid, rrid, audio_level=audio_level, twcc=twcc,
                                    abs_send_time=abs_send_time)

    # --- forwarding -------------------------------------------------------------------
    def add_track(self, clock_rate: int, kind: str | None = None, mime: str | None = None) -> int:
        """A published track. `kind` "audio"/"video"; `mime` e.g. "video/VP8" (keyframe detection)."""
        return self._engine.add_track(clock_rate, kind, mime)

    def remove_track(self, track: int) -> None:
        self._engine.remove_track(track)

    def mute_track(self, track: int, muted: bool) -> None:
        self._engine.mute_track(track, muted)

    def bind_stream(self, track: int, transport: int, ssrc: int, layer: int = 0) -> None:
        """Route an incoming SSRC to a track as simulcast layer `layer` (0 = lowest)."""
        self._engine.bind_stream(track, transport, ssrc, layer)

    def bind_repair(self, track: int, transport: int, ssrc: int, layer: int = 0) -> None:
        """Route an RTX (RFC 4588) SSRC to a layer of a track."""
        self._engine.bind_repair(track, transport, ssrc, layer)

    def add_downtrack(self, track: int, transport: int, ssrc: int, payload_type: int, *, max_layer: int = 2,
                      cname: str = "") -> int:
        return self._engine.add_downtrack(track, transport, ssrc, payload_type, max_layer, cname)

    def remove_downtrack(self, downtrack: int) -> None:
        self._downtrack_layers.pop(downtrack, None)
        self._engine.remove_downtrack(downtrack)

    def pause_downtrack(self, downtrack: int, paused: bool) -> None:
        self._engine.pause_downtrack(downtrack, paused)

    def set_downtrack_layer(self, downtrack: int, max_layer: int) -> None:
        """The subscriber's top simulcast layer (0..2)."""
        self._engine.set_downtrack_layer(downtrack, max_layer)

    def request_keyframe(self, downtrack: int) -> None:
        self._engine.request_keyframe(downtrack)


# --- the benchmark's load generator (trackyard bench) ----------------------------------


class LoadTransportHandler(Protocol):
    """What the load generator reports about one simulated peer connection."""

    def on_ice_connected(self, ip: str, port: int) -> None: ...

    def on_ice_failed(self) -> None: ...

    def on_dtls(self, data: bytes) -> None: ...


class LoadGenerator:
    """The extension's `LoadGen` for asyncio: simulated participants' UDP sockets, ICE, SRTP
    and synthetic media on a Rust worker thread (see `trackyard.bench`). Events arrive
    through an eventfd and go to per-transport handlers; the numbers come from `snapshot()`."""

    def __init__(self) -> None:
        self._gen = _engine.LoadGen()
        self._handlers: dict[int, LoadTransportHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._gen.event_fd(), self._drain)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._gen.event_fd())
            self._loop = None
        self._handlers.clear()
        self._gen.close()

    def _drain(self) -> None:
        for event in self._gen.take_events():
            handler = self._handlers.get(event[1])
            if handler is None:
                continue
            try:
                if event[0] == "dtls":
                    handler.on_dtls(event[2])
                elif event[0] == "ice_connected":
                    handler.on_ice_connected(event[2], event[3])
                elif event[0] == "ice_failed":
                    handler.on_ice_failed()
            except Exception:  # one participant's bug must not stop the others' events
                log.exception("load generator event %s failed", event[0])

    def add_transport(self, local_ip: str, ufrag: str, pwd: str, handler: LoadTransportHandler) -> tuple[int, int]:
        """A simulated peer connection with its own UDP socket; returns (handle, local port)."""
        handle, port = self._gen.add_transport(local_ip, ufrag, pwd)
        self._handlers[handle] = handler
        return handle, port

    def remove_transport(self, handle: int) -> None:
        self._handlers.pop(handle, None)
        self._gen.remove_transport(handle)

    def set_remote(self, handle: int, ufrag: str, pwd: str, *, controlling: bool = True) -> None:
        self._gen.set_remote(handle, ufrag, pwd, controlling)

    def add_candidate(self, handle: int, ip: str, port: int) -> None:
        self._gen.add_candidate(handle, ip, port)

    def dtls_sender(self, handle: int) -> Callable[[bytes], None]:
        return lambda data: self._gen.send_dtls(handle, data)

    def set_srtp(self, handle: int, profile: str, local: bytes, remote: bytes) -> None:
        self._gen.set_srtp(handle, profile, local, remote)

    def set_extensions(self, handle: int, *, mid: int = 0, rid: int = 0, audio_level: int = 0,
                       abs_send_time: int = 0, twcc: int = 0) -> None:
        self._gen.set_extensions(handle, mid=mid, rid=rid, audio_level=audio_level, abs_send_time=abs_send_time,
                                 twcc=twcc)

    def set_payload_clock(self, handle: int, payload_type: int, clock_rate: int, kind: str) -> None:
        self._gen.set_payload_clock(handle, payload_type, clock_rate, kind)

    def add_audio(self, handle: int, ssrc: int, payload_type: int, mid: str, *, payload: int = 80,
                  ptime_ms: int = 20, cname: str = "") -> None:
        self._gen.add_audio(handle, ssrc, payload_type, mid, payload=payload, ptime_ms=ptime_ms, cname=cname)

    def add_video(self, handle: int, ssrc: int, payload_type: int, mid: str, rid: str, *, bitrate: int, fps: int,
                  width: int, height: int, keyframe_interval_ms: int = 3000, cname: str = "") -> None:
        self._gen.add_video(handle, ssrc, payload_type, mid, rid, bitrate=bitrate, fps=fps, width=width,
                            height=height, keyframe_interval_ms=keyframe_interval_ms, cname=cname)

    def set_sending(self, sending: bool) -> None:
        self._gen.set_sending(sending)

    def mark_window(self, open: bool) -> None:
        """Open or close the measurement window (received packets are then matched exactly
        to what each publisher stream sent inside it)."""
        self._gen.mark_window(open)

    def snapshot(self, *, histograms: bool = False) -> dict:
        return self._gen.snapshot(histograms)

    def totals(self) -> dict:
        """Run-wide sums (sent_packets, rx_packets, rx_expected), cheaper than a snapshot."""
        return self._gen.totals()
