"""Room placement: which media node hosts a room, decided once, cluster-wide, in etcd.

``rooms/{room_name}`` holds a :class:`RoomRecord` ``{node_id, room_sid, created}``. It is
written by :meth:`Placement.place_room` with one transaction::

    if create_revision(rooms/{room}) == 0                      # the room is not placed yet
       and mod_revision(nodes/{node}) == <as the directory saw it>   # node unchanged, alive
    then put rooms/{room} = record, bound to the CHOSEN NODE's lease
    else get rooms/{room}

so a room exists at most once, and it disappears with its node's lease when the node dies.
When two control nodes place the same room at once, one transaction wins; the other reads
the winner's record from the ``else`` branch, and every caller returns the same node. If the
guard on the node failed (it started draining, re-registered or died since the directory
last saw it), placement re-reads the directory and tries again.

Choosing a node (:func:`choose_node`, a pure function):

1. eligible = state ``serving`` and every configured capacity limit (rooms, participants,
   tracks, bandwidth) not yet reached: these are hard limits. The room count is the larger
   of the node's last load report and the ``rooms/`` records this control node sees for it
   (those are current to the watch, so a burst of placements spreads out at once). CPU at
   or above ``cpu_limit`` (default 90 %) is a soft limit: such nodes are used only when no
   eligible node is below it;
2. region: if a preferred region is given (the client's, else the control node's
   ``region``) and some eligible node is in it, only those; otherwise any eligible node;
3. least loaded: smallest utilisation (the highest of cpu/100 and used/limit over the
   configured limits, in 5 % steps so CPU noise does not reorder equal nodes), then fewest
   rooms, fewest participants, then node id.

While etcd is unreachable, placing a room this control node does not know raises
``Unavailable("placement unavailable: etcd unreachable")`` within ``etcd.dial_timeout``;
:meth:`Placement.lookup` and :meth:`Placement.place_room` of a known room answer from the
local copy of ``rooms/`` (kept by a watch, so it also knows rooms placed by other control
nodes and forgets rooms whose node died).

After its registry re-registers under a new lease (see :mod:`trackyard.cluster.registry`),
a media node re-claims the rooms it still hosts with :func:`claim_rooms`; a room that was
placed elsewhere meanwhile is reported lost, and the node must close its copy. When a node
closes a room it removes the record with :func:`release_room`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from trackyard import ids
from trackyard.cluster.registry import DRAINING, SERVING, NodeDirectory, NodeView
from trackyard.cluster.room_state import forget_room_state, load_room_state
from trackyard.cluster.store import EtcdStore, EtcdUnavailable, Entry, LeaseNotFound
from trackyard.cluster.view import PrefixView
from trackyard.errors import Internal, InvalidArgument, Unavailable

logger = logging.getLogger(__name__)

ROOMS = "rooms/"
ETCD_DOWN = "placement unavailable: etcd unreachable"
NO_NODE = "placement unavailable: no serving media node with free capacity"


@dataclass(frozen=True)
class RoomRecord:
    """The value of ``rooms/{room_name}`` (the name itself is the key)."""

    room_name: str
    node_id: str
    room_sid: str
    created: int  # unix seconds

    def encode(self) -> bytes:
        data = asdict(self)
        del data["room_name"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, room_name: str, raw: bytes) -> "RoomRecord":
        data = json.loads(raw)
        return cls(room_name, data["node_id"], data["room_sid"], int(data["created"]))


# ---------------------------------------------------------------- choosing a node


def _utilisation(node: NodeView, rooms: int) -> float:
    cap, load = node.info.capacity, node.load
    used = [load.cpu / 100.0]
    for limit, value in ((cap.max_rooms, rooms), (cap.max_participants, load.participants),
                         (cap.max_tracks, load.tracks), (cap.max_bandwidth, load.bandwidth)):
        if limit:
            used.append(value / limit)
    return max(used)


def _within_capacity(node: NodeView, rooms: int) -> bool:
    cap, load = node.info.capacity, node.load
    return node.info.state == SERVING and all(not limit or value < limit for limit, value in (
        (cap.max_rooms, rooms), (cap.max_participants, load.participants),
        (cap.max_tracks, load.tracks), (cap.max_bandwidth, load.bandwidth)))


def choose_node(
    nodes: Iterable[NodeView],
    *,
    room_counts: Mapping[str, int] | None = None,
    region: str = "",
    cpu_limit: float = 90.0,
) -> NodeView | None:
    """The node a new room should go to, or ``None`` (see the module docstring)."""
    counts = room_counts or {}

    def rooms_of(n: NodeView) -> int:
        return max(n.load.rooms, counts.get(n.node_id, 0))

    candidates = [n for n in nodes if _within_capacity(n, rooms_of(n))]
    cool = [n for n in candidates if n.load.cpu < cpu_limit]
    candidates = cool or candidates  # CPU is a soft limit: all hot → still the least loaded
    if region:
        local = [n for n in candidates if n.info.region == region]
        candidates = local or candidates
    if not candidates:
        return None
    return min(candidates, key=lambda n: (
        math.floor(_utilisation(n, rooms_of(n)) * 20), rooms_of(n), n.load.participants, n.node_id))


# ---------------------------------------------------------------- placement


class Placement:
    """Places rooms and looks them up for a control node; see the module docstring."""

    def __init__(
        self,
        store: EtcdStore,
        directory: NodeDirectory,
        *,
        region: str = "",
        cpu_limit: float = 90.0,
        attempts: int = 3,
    ) -> None:
        self.store = store
        self.directory = directory
        self.region = region
        self.cpu_limit = cpu_limit
        self.attempts = attempts
        self._rooms = PrefixView(store, ROOMS, name="rooms")

    def start(self) -> "Placement":
        self._rooms.start()
        return self

    async def stop(self) -> None:
        await self._rooms.stop()

    async def wait_synced(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._rooms.synced.wait()

    # ------------------------------------------------------------ local copy

    def cached(self, room_name: str) -> RoomRecord | None:
        entry = self._rooms.entries.get(room_name)
        return self._record(room_name, entry) if entry is not None else None

    def rooms(self) -> dict[str, RoomRecord]:
        out = {}
        for name, entry in list(self._rooms.entries.items()):
            record = self._record(name, entry)
            if record is not None:
                out[name] = record
        return out

    def room_counts(self) -> Counter:
        return Counter(r.node_id for r in self.rooms().values())

    @staticmethod
    def _record(room_name: str, entry: Entry) -> RoomRecord | None:
        try:
            return RoomRecord.decode(room_name, entry.value)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring malformed rooms/%s: %s", room_name, exc)
            return None

    # ------------------------------------------------------------ operations

    async def lookup(self, room_name: str) -> RoomRecord | None:
        """Where ``room_name`` is hosted (``None``: not placed). From the cache if etcd is down."""
        try:
            entry = await self.store.get(ROOMS + room_name)
        except EtcdUnavailable:
            cached = self.cached(room_name)
            if cached is not None:
                return cached
            raise Unavailable(ETCD_DOWN) from None
        if entry is None:
            return None
        self._rooms.observe(entry)
        return self._record(room_name, entry)

    async def place_room(self, room_name: str, *, region: str | None = None) -> RoomRecord:
        """The room's record, placing it on a node first if it is not placed yet."""
        if not room_name:
            raise InvalidArgument("room name is required")
        refresh = not self.directory.synced  # just started: read the nodes, not "none yet"
        refreshed = False
        sid = ""
        for _ in range(self.attempts):
            try:
                if not sid:  # a room placed before (its node died or drained) keeps its sid
                    saved = await load_room_state(self.store, room_name)
                    sid = saved.room_sid if saved is not None and saved.room_sid else ids.new_id(ids.ROOM)
                if refresh:
                    await self.directory.refresh()
                    refreshed = True
                node = choose_node(self.directory.nodes(), room_counts=self.room_counts(),
                                   region=region or self.region, cpu_limit=self.cpu_limit)
                if node is None:
                    existing = await self.lookup(room_name)
                    if existing is not None:
                        return existing
                    if not refreshed:  # the watched copy may lag a node that just registered
                        refresh = True
                        continue
                    raise Unavailable(NO_NODE)
                record = RoomRecord(room_name, node.node_id, sid, int(time.time()))
                created, current = await self.store.txn_create_if_absent(
                    ROOMS + room_name, record.encode(), node.lease,
                    unchanged={f"nodes/{node.node_id}": node.mod_revision})
                if created:
                    self._rooms.observe(current)
                    logger.info("placed room %s on node %s", room_name, node.node_id)
                    return record
                if current is not None:  # placed already, possibly by a racing control node
                    self._rooms.observe(current)
                    winner = self._record(room_name, current)
                    if winner is None:
                        raise Internal(f"malformed placement record for room {room_name!r}")
                    return winner
                refresh = True  # the chosen node changed since the directory saw it
            except LeaseNotFound:
                refresh = True
            except EtcdUnavailable:
                cached = self.cached(room_name)
                if cached is not None:
                    return cached
                raise Unavailable(ETCD_DOWN) from None
        raise Unavailable("placement unavailable: media nodes kept changing; try again")


async def claim_rooms(store: EtcdStore, lease_id: int, rooms: Iterable[RoomRecord]) -> list[str]:
    """Re-create the ``rooms/`` records of rooms this node still hosts, bound to its current
    lease. Returns the names of rooms now recorded elsewhere: the node lost them and must
    close its copy."""
    lost = []
    for record in rooms:
        created, current = await store.txn_create_if_absent(ROOMS + record.room_name, record.encode(), lease_id)
        if created:
            continue
        holder = RoomRecord.decode(record.room_name, current.value) if current is not None else None
        if holder is None or (holder.node_id, holder.room_sid) != (record.node_id, record.room_sid):
            lost.append(record.room_name)
    return lost


async def release_room(store: EtcdStore, record: RoomRecord) -> bool:
    """Remove ``rooms/{name}`` when the hosting node closes the room, but only if it still
    names this node and room sid (never another node's newer placement). A node that is
    serving closes the room for good, so the room's saved settings go too; a draining one
    moves it, and they stay for its next home (see `cluster.room_state`)."""
    entry = await store.get(ROOMS + record.room_name)
    if entry is None:
        return False
    current = RoomRecord.decode(record.room_name, entry.value)
    if (current.node_id, current.room_sid) != (record.node_id, record.room_sid):
        return False
    released = await store.delete_if_unchanged(entry.key, entry.mod_revision)
    if released and not await _draining(store, record.node_id):
        await forget_room_state(store, record.room_name, record.room_sid)
    return released


async def _draining(store: EtcdStore, node_id: str) -> bool:
    """Is the node draining (or gone: its rooms are being moved, not closed)?"""
    entry = await store.get(f"nodes/{node_id}")
    if entry is None:
        return True
    try:
        return json.loads(entry.value).get("state") == DRAINING
    except ValueError:
        return False
