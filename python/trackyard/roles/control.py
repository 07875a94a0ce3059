"""Routing for control nodes (and role ``all`` with etcd): rooms placed across media nodes.

Rooms are placed and looked up with `cluster.Placement`; a room on this very node is reached
in process, any other over gRPC (`rpc.client`). While etcd is unreachable, rooms already
placed are found in the local copy of the placement records, and placing a new room raises
`Unavailable` (503, "placement unavailable: etcd unreachable").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trackyard import errors
from trackyard.cluster.registry import DRAINING
from trackyard.roles.router import Admin, Route
from trackyard.rpc.client import NodeClients, unreachable

if TYPE_CHECKING:
    from trackyard.cluster import NodeDirectory, Placement


class ClusterRouter:
    def __init__(self, placement: Placement, directory: NodeDirectory, clients: NodeClients, *,
                 local: Route | None = None) -> None:
        self.placement = placement
        self.directory = directory
        self.clients = clients
        self.local = local

    async def route(self, room_name: str, *, place: bool) -> Route | None:
        # The local copy of rooms/ (kept by a watch) answers without a round trip to etcd.
        # Should it be stale (the room just closed), the node recreates the room under the
        # same sid and claims its record again; a room meanwhile placed elsewhere is closed
        # there and its clients rejoin (see roles.media).
        record = self.placement.cached(room_name)
        if record is not None and self._draining(record.node_id):
            # a draining node releases its rooms' records as it moves them: the copy may be
            # stale, and a draining node creates no room, so ask etcd
            record = await self.placement.lookup(room_name)
        if record is None or not self._reachable(record.node_id):
            if place:
                record = await self.placement.place_room(room_name)
            else:
                record = await self.placement.lookup(room_name)
                if record is None:
                    return None
        return self._route_to(record.node_id, record.room_sid)

    def _draining(self, node_id: str) -> bool:
        view = self.directory.get(node_id)
        return view is not None and view.info.state == DRAINING

    def _reachable(self, node_id: str) -> bool:
        return (self.local is not None and node_id == self.local.node_id) or self.directory.get(node_id) is not None

    def _route_to(self, node_id: str, room_sid: str) -> Route:
        if self.local is not None and node_id == self.local.node_id:
            return replace(self.local, room_sid=room_sid)
        view = self.directory.get(node_id)
        if view is None or not view.info.signal_address:
            raise errors.Unavailable(unreachable(node_id))
        client = self.clients.get(node_id, view.info.signal_address)
        return Route(node_id, client.relay, client.admin, room_sid)

    async def admins(self) -> list[Admin]:
        nodes = self.directory.nodes()
        self.clients.forget_except({n.node_id for n in nodes})
        admins = []
        for node in nodes:
            if self.local is not None and node.node_id == self.local.node_id:
                admins.append(self.local.admin)
            elif node.info.signal_address:
                admins.append(self.clients.get(node.node_id, node.info.signal_address).admin)
        return admins
