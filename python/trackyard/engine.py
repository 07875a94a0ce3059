"""The one module that imports the Rust extension (`trackyard._engine`).

`MediaEngine` wraps the extension's `Engine` (one UDP port and a worker thread per media
node) for asyncio: events from the worker arrive in batches through an eventfd registered
with the event loop and are dispatched to per-transport handlers.
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

    def on_new_stream(self, stream: NewStream) -> None: ...


class MediaEngine:
    def __init__(self, bind: str) -> None:
        self._engine = _engine.Engine(bind)
        self._handlers: dict[int, TransportHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

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

    def stats(self) -> dict[str, int]:
        return dict(self._engine.stats())

    # --- events -----------------------------------------------------------------------
    def _drain(self) -> None:
        for event in self._engine.take_events():
            handler = self._handlers.get(event[1])
            if handler is None:
                continue
            try:
                kind = event[0]
                if kind == "dtls":
                    handler.on_dtls(event[2])
                elif kind == "bound":
                    handler.on_bound(event[2], event[3])
                elif kind == "consent_lost":
                    handler.on_consent_lost()
                elif kind == "new_stream":
                    handler.on_new_stream(NewStream(*event[2:]))
            except Exception:  # one transport's bug must not stop event delivery for the node
                log.exception("engine event %s failed", event[0])

    # --- transports -------------------------------------------------------------------
    def add_transport(self, ufrag: str, pwd: str, handler: TransportHandler) -> int:
        handle = self._engine.add_transport(ufrag, pwd)
        self._handlers[handle] = handler
        return handle

    def remove_transport(self, handle: int) -> None:
        self._handlers.pop(handle, None)
        self._engine.remove_transport(handle)

    def dtls_sender(self, handle: int) -> Callable[[bytes], None]:
        return lambda data: self._engine.send_dtls(handle, data)

    def set_srtp(self, handle: int, profile: str, local: bytes, remote: bytes) -> None:
        self._engine.set_srtp(handle, profile, local, remote)

    def set_extensions(self, handle: int, *, mid: int = 0, rid: int = 0, rrid: int = 0) -> None:
        self._engine.set_extensions(handle, mid, rid, rrid)

    # --- forwarding -------------------------------------------------------------------
    def add_track(self, clock_rate: int) -> int:
        return self._engine.add_track(clock_rate)

    def remove_track(self, track: int) -> None:
        self._engine.remove_track(track)

    def bind_stream(self, track: int, transport: int, ssrc: int) -> None:
        self._engine.bind_stream(track, transport, ssrc)

    def add_downtrack(self, track: int, transport: int, ssrc: int, payload_type: int) -> int:
        return self._engine.add_downtrack(track, transport, ssrc, payload_type)

    def remove_downtrack(self, downtrack: int) -> None:
        self._engine.remove_downtrack(downtrack)

    def pause_downtrack(self, downtrack: int, paused: bool) -> None:
        self._engine.pause_downtrack(downtrack, paused)
