"""The rooms of one node: creation (by API or first join), lookup, deletion and timers.

A sweep runs every second: it removes participants whose signal connection vanished more
than `signal.reconnect_timeout` seconds ago, and closes rooms per their empty and
departure timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from livekit.protocol import models
from livekit.protocol.room import CreateRoomRequest, RoomConfiguration

from trackyard import errors
from trackyard.config import Config
from trackyard.rooms.participant import Participant
from trackyard.rooms.room import EventSink, Room, RoomSettings
from trackyard.webhooks import events as hooks

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0


class RoomManager:
    def __init__(self, config: Config, events: EventSink) -> None:
        self.config = config
        self.events = events
        self.rooms: dict[str, Room] = {}
        self.on_created: list[Callable[[Room], None]] = []  # called after a room was created
        self.on_closed: list[Callable[[Room], None]] = []  # called after a room closed
        self.refusing: str = ""  # non-empty (the reason): no new room may be created (a draining node)
        self._sweeper: asyncio.Task | None = None

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self, reason: int = models.DisconnectReason.SERVER_SHUTDOWN, *, rejoin: bool = False) -> None:
        """Close every room (with `rejoin`, clients are told to join again: the rooms live on elsewhere)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        closing = list(self.rooms.values())
        for room in closing:
            room.close(reason, rejoin=rejoin)
        for room in closing:
            await room.settle(timeout=5.0)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep(time.monotonic())
            except Exception:  # a bug in one sweep must not stop the timers for good
                log.exception("room sweep failed")

    def sweep(self, now: float) -> None:
        grace = self.config.signal.reconnect_timeout
        for room in list(self.rooms.values()):
            for p in list(room.participants.values()):
                if p.sink is None and p.signal_lost_at is not None and now - p.signal_lost_at >= grace:
                    room.remove(p, models.DisconnectReason.CONNECTION_TIMEOUT, tell_client=False)
            room.refresh_speakers()
            if room.should_close(now):
                room.close(models.DisconnectReason.ROOM_CLOSED)

    # --- rooms ------------------------------------------------------------------------
    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def require(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise errors.NotFound("requested room does not exist")
        return room

    def _check_name(self, name: str) -> None:
        check_room_name(self.config, name)

    def _check_metadata(self, metadata: str) -> None:
        check_metadata(self.config, metadata)

    def create_room(self, request: CreateRoomRequest | RoomConfiguration, *, sid: str = "") -> Room:
        """Create a room or update an existing one (LiveKit's create-or-update semantics).

        A new room takes `sid` when given (its placement record's, in a cluster)."""
        self._check_name(request.name)
        self._check_metadata(request.metadata)
        room = self.rooms.get(request.name)
        if room is None:
            if self.refusing:
                raise errors.Unavailable(self.refusing)
            defaults = self.config.room
            room = Room(
                request.name,
                RoomSettings(
                    empty_timeout=request.empty_timeout or defaults.empty_timeout,
                    departure_timeout=request.departure_timeout or defaults.departure_timeout,
                    max_participants=request.max_participants or defaults.max_participants,
                    metadata=request.metadata,
                ),
                self.events,
                on_closed=self._forget,
                sid=sid,
            )
            self.rooms[room.name] = room
            self.events.notify(hooks.room_started(room.to_proto()))
            log.info("room %s created (%s)", room.name, room.sid, extra={"room": room.name})
            self._tell(self.on_created, room)
            return room
        settings = room.settings
        if request.empty_timeout:
            settings.empty_timeout = request.empty_timeout
        if request.departure_timeout:
            settings.departure_timeout = request.departure_timeout
        if request.max_participants:
            settings.max_participants = request.max_participants
        if request.metadata and request.metadata != settings.metadata:
            settings.metadata = request.metadata
            room.broadcast_room()
        return room

    def room_for_join(self, name: str, *, may_create: bool, room_config: RoomConfiguration | None,
                      sid: str = "") -> Room:
        """The room a join goes to, created on first join when allowed."""
        room = self.rooms.get(name)
        if room is not None:
            return room
        if not (self.config.room.auto_create or may_create):
            raise errors.NotFound("requested room does not exist")
        config = RoomConfiguration()
        if room_config is not None:
            config.CopyFrom(room_config)
        config.name = name
        return self.create_room(config, sid=sid)

    def update_metadata(self, name: str, metadata: str) -> Room:
        self._check_metadata(metadata)
        room = self.require(name)
        room.settings.metadata = metadata
        room.broadcast_room()
        return room

    def delete_room(self, name: str) -> None:
        self.require(name).close(models.DisconnectReason.ROOM_DELETED)

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        self._tell(self.on_closed, room)

    @staticmethod
    def _tell(callbacks: list[Callable[[Room], None]], room: Room) -> None:
        for callback in callbacks:
            try:
                callback(room)
            except Exception:
                log.exception("room callback %r failed for %s", callback, room.name)

    # --- participants -----------------------------------------------------------------
    def find_participant(self, room_name: str, identity: str) -> tuple[Room, Participant]:
        room = self.require(room_name)
        participant = room.participants.get(identity)
        if participant is None:
            raise errors.NotFound("participant does not exist")
        return room, participant


def check_room_name(config: Config, name: str) -> None:
    """The checks a room name must pass (also made by control nodes before placing a room)."""
    if not name:
        raise errors.InvalidArgument("room name is required", meta={"argument": "name"})
    limit = config.limit.max_room_name_length
    if limit and len(name) > limit:
        raise errors.InvalidArgument(f"room name length exceeds limits: max length {limit}")


def check_metadata(config: Config, metadata: str) -> None:
    limit = config.limit.max_metadata_size
    if limit and len(metadata.encode()) > limit:
        raise errors.InvalidArgument(f"metadata size exceeds limits {limit}", meta={"argument": "metadata size"})
