"""Where a room lives, as the endpoints that face clients see it.

A `Route` names the node that hosts a room, the `SignalRelay` that reaches its signaling
host and the `Admin` that runs RoomService calls there. `route(name, place=True)` places a
room that is not placed yet; `place=False` only looks (``None``: hosted nowhere).

- `LocalRouter`: the single-node server. Every room is in this process; the host itself
  decides whether a room may be created.
- `roles.control.ClusterRouter`: control nodes (and role ``all`` with etcd).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from trackyard.signal.relay import LocalRelay, SignalRelay


class Admin(Protocol):
    async def call(self, method: str, request: Message, *, room_sid: str = "") -> Message: ...


@dataclass(frozen=True)
class Route:
    node_id: str
    relay: SignalRelay
    admin: Admin
    room_sid: str = ""  # the placement record's room sid ("" in a single process)


class Router(Protocol):
    async def route(self, room_name: str, *, place: bool) -> Route | None: ...

    async def admins(self) -> list[Admin]:
        """One per live node that hosts rooms (for ListRooms)."""
        ...


class LocalRouter:
    def __init__(self, node_id: str, host, admin: Admin) -> None:
        self.local = Route(node_id, LocalRelay(host), admin)

    async def route(self, room_name: str, *, place: bool) -> Route:
        return self.local

    async def admins(self) -> list[Admin]:
        return [self.local.admin]
