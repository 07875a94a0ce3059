"""The signal relay: how a client's signal connection reaches the node that hosts its room.

The control side (``signal.service``: WebSocket endpoints, admission, HTTP statuses) talks to
the host side (``signal.host``: join, resume and requests of a participant in a room on
this node) only through this interface, so the same endpoint code serves a room in the
same process (`LocalRelay`, role ``all``) or on a media node (``rpc.client.GrpcRelay``)::

    relay = router.relay_for(...)
    session = await relay.open(admission, room_sid)   # Refused → an HTTP status, no upgrade
    await ws.prepare(request)                         # only after the host accepted
    await session.upgraded()                          # the host starts the session
    session.send(request) ... / session.receive() ... # pumped both ways, in order
    session.close()                                   # the client's connection ended

`SignalRelay.check` answers the `/validate` endpoints: the same decision as `open`, with
nothing started.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from livekit.protocol import rtc

from trackyard.signal.admission import Admission, Refused


class RelaySession(Protocol):
    """The control side's handle on one relayed client connection."""

    async def upgraded(self) -> None:
        """The WebSocket is open: the host sends the join (or resume) and serves requests."""
        ...

    async def send(self, request: rtc.SignalRequest, raw: bytes) -> None:
        """A decoded client frame (and its bytes), in order; waits while the host is behind."""
        ...

    async def receive(self) -> bytes | None:
        """The next serialized SignalResponse for the client; ``None``: close its connection."""
        ...

    def close(self, *, aborted: bool = False) -> None:
        """The client's connection ended (``aborted``: the upgrade failed). Never blocks."""
        ...


class SignalRelay(Protocol):
    async def open(self, admission: Admission, room_sid: str = "") -> RelaySession:
        """Ask the room's host to take the connection; raises `Refused` (HTTP status)."""
        ...

    async def check(self, admission: Admission) -> None:
        """The `/validate` decision: raises `Refused` or returns."""
        ...


class LocalRelay:
    """The host runs in this process: direct calls, and the connection's own queues."""

    def __init__(self, host) -> None:  # host: trackyard.signal.host.SignalHost
        self.host = host

    async def open(self, admission: Admission, room_sid: str = "") -> "LocalSession":
        return LocalSession(self.host.open(admission, room_sid))

    async def check(self, admission: Admission) -> None:
        self.host.check(admission)


class LocalSession:
    def __init__(self, hosted) -> None:  # hosted: trackyard.signal.host.HostSession
        self.hosted = hosted
        self.link = hosted.link

    async def upgraded(self) -> None:
        self.hosted.start()

    async def send(self, request: rtc.SignalRequest, raw: bytes) -> None:
        await self.link.push(request)

    async def receive(self) -> bytes | None:
        return await self.link.next_outgoing()

    def close(self, *, aborted: bool = False) -> None:
        if aborted:
            self.hosted.abort()
        self.link.client_gone()


class ClosedSession:
    """A session that only tells the client something and closes (no host involved): a
    resume of a room that is hosted nowhere gets the same leave a host would send."""

    def __init__(self, *messages: rtc.SignalResponse) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        for message in messages:
            self._queue.put_nowait(message.SerializeToString())
        self._queue.put_nowait(None)

    async def upgraded(self) -> None:
        return None

    async def send(self, request: rtc.SignalRequest, raw: bytes) -> None:
        return None

    async def receive(self) -> bytes | None:
        return await self._queue.get() if not self._queue.empty() else None

    def close(self, *, aborted: bool = False) -> None:
        return None


__all__ = ["ClosedSession", "LocalRelay", "LocalSession", "Refused", "RelaySession", "SignalRelay"]
