"""Routing for control nodes (and role ``all`` with etcd): rooms placed across media nodes.

Rooms are placed and looked up with `cluster.Placement`; a room on this very node is reached
in process, any other over gRPC (`rpc.client`). While etcd is unreachable, rooms already
placed are found in the local copy of the placement records, and placing a new room raises
`Unavailable` (503, "placement unavailable: etcd unreachable").

Room settings survive a move (`cluster.room_state`): every route's admin saves the room's
settings in etcd after CreateRoom and UpdateRoomMetadata (`StateSavingAdmin`), and a room
placed anew whose settings were saved (its node died or drained) is re-created on its new
node with them, under its old sid, before the join that placed it is relayed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from trackyard import errors
from trackyard.cluster.registry import DRAINING
from trackyard.cluster.room_state import RoomState, forget_room_state, load_room_state, save_room_state
from trackyard.cluster.store import EtcdUnavailable
from trackyard.roles.router import Admin, Route
from trackyard.rpc.client import NodeClients, unreachable

if TYPE_CHECKING:
    from trackyard.cluster import EtcdStore, NodeDirectory, Placement

log = logging.getLogger(__name__)


class StateSavingAdmin:
    """An `Admin` that keeps ``room_state/`` in step with the room's settings."""

    def __init__(self, inner: Admin, store: EtcdStore) -> None:
        self.inner = inner
        self.store = store

    async def call(self, method: str, request: Message, *, room_sid: str = "") -> Message:
        response = await self.inner.call(method, request, room_sid=room_sid)
        try:
            if method in ("CreateRoom", "UpdateRoomMetadata"):
                await save_room_state(self.store, RoomState.from_room(response))
            elif method == "DeleteRoom":
                await forget_room_state(self.store, request.room)
        except EtcdUnavailable as exc:  # the call itself succeeded; only a later move loses them
            log.warning("room %s: settings not saved in etcd (%s)", getattr(request, "room", "") or request.name,
                        exc)
        return response


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
                route = self._route_to(record.node_id, record.room_sid)
                await self._restore(route, room_name)
                return route
            else:
                record = await self.placement.lookup(room_name)
                if record is None:
                    return None
        return self._route_to(record.node_id, record.room_sid)

    async def _restore(self, route: Route, room_name: str) -> None:
        """Re-create a room whose settings were saved (it lived on another node before) with
        them, under its sid, on the node it was just placed on."""
        try:
            state = await load_room_state(self.placement.store, room_name)
        except EtcdUnavailable:
            return  # placement just worked, so this is rare; the room starts from defaults
        if state is None or state.room_sid != route.room_sid:
            return
        await route.admin.call("CreateRoom", state.create_request(), room_sid=route.room_sid)
        log.info("room %s re-created on %s with its saved settings", room_name, route.node_id)

    def _draining(self, node_id: str) -> bool:
        view = self.directory.get(node_id)
        return view is not None and view.info.state == DRAINING

    def _reachable(self, node_id: str) -> bool:
        return (self.local is not None and node_id == self.local.node_id) or self.directory.get(node_id) is not None

    def _route_to(self, node_id: str, room_sid: str) -> Route:
        store = self.placement.store
        if self.local is not None and node_id == self.local.node_id:
            return replace(self.local, admin=StateSavingAdmin(self.local.admin, store), room_sid=room_sid)
        view = self.directory.get(node_id)
        if view is None or not view.info.signal_address:
            raise errors.Unavailable(unreachable(node_id))
        client = self.clients.get(node_id, view.info.signal_address)
        return Route(node_id, client.relay, StateSavingAdmin(client.admin, store), room_sid)

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
