"""A room's settings in etcd, so that they survive the room's move to another media node.

``room_state/{room_name}`` holds a :class:`RoomState` ``{room_sid, empty_timeout,
departure_timeout, max_participants, metadata, saved_at}``. Unlike ``rooms/`` it is bound to
no lease: it must outlive the node that hosted the room.

- **Saved** by the control node after each successful ``CreateRoom`` and
  ``UpdateRoomMetadata`` (from the ``Room`` the hosting node answered, so it holds what the
  room really has) — `roles.control.StateSavingAdmin`.
- **Restored** when a room is placed again after its node died or drained: placement gives
  the new record the saved room sid (:meth:`Placement.place_room`), and the control node
  re-creates the room on its new node with the saved settings (``CreateRoom`` with that sid)
  before it relays the join — `roles.control.ClusterRouter`.
- **Removed** when the room ends for good: ``DeleteRoom``, or the hosting node closing it
  while serving (empty or departure timeout) — :func:`placement.release_room`. A node that is
  draining or stopping keeps it: its rooms live on elsewhere.

A room whose node died and that nobody joined again keeps its state: the room never
closed, so a later room of that name continues it (the same sid and settings).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from livekit.protocol import models
from livekit.protocol.room import CreateRoomRequest

from trackyard.cluster.store import EtcdStore

ROOM_STATE = "room_state/"


@dataclass(frozen=True)
class RoomState:
    room_name: str
    room_sid: str
    empty_timeout: int
    departure_timeout: int
    max_participants: int
    metadata: str
    saved_at: float = 0.0

    @classmethod
    def from_room(cls, room: models.Room) -> "RoomState":
        return cls(room.name, room.sid, room.empty_timeout, room.departure_timeout, room.max_participants,
                   room.metadata, time.time())

    def create_request(self) -> CreateRoomRequest:
        """The CreateRoom that re-creates the room with these settings."""
        return CreateRoomRequest(name=self.room_name, empty_timeout=self.empty_timeout,
                                 departure_timeout=self.departure_timeout, max_participants=self.max_participants,
                                 metadata=self.metadata)

    def encode(self) -> bytes:
        data = asdict(self)
        del data["room_name"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, room_name: str, raw: bytes) -> "RoomState":
        data = json.loads(raw)
        return cls(room_name, str(data["room_sid"]), int(data["empty_timeout"]), int(data["departure_timeout"]),
                   int(data["max_participants"]), str(data["metadata"]), float(data.get("saved_at", 0.0)))


async def save_room_state(store: EtcdStore, state: RoomState) -> None:
    await store.put(ROOM_STATE + state.room_name, state.encode())


async def load_room_state(store: EtcdStore, room_name: str) -> RoomState | None:
    entry = await store.get(ROOM_STATE + room_name)
    if entry is None:
        return None
    try:
        return RoomState.decode(room_name, entry.value)
    except (ValueError, KeyError, TypeError):
        return None  # malformed: the room starts from defaults


async def forget_room_state(store: EtcdStore, room_name: str, room_sid: str = "") -> bool:
    """Remove the saved state (with `room_sid`: only if it is that room's)."""
    entry = await store.get(ROOM_STATE + room_name)
    if entry is None:
        return False
    if room_sid:
        try:
            if RoomState.decode(room_name, entry.value).room_sid != room_sid:
                return False
        except (ValueError, KeyError, TypeError):
            pass  # malformed: remove it
    return await store.delete_if_unchanged(entry.key, entry.mod_revision)
