"""The cluster side of a node that hosts rooms (role ``media``, or ``all`` with etcd).

- Serves the internal gRPC API (`rpc.server`: SignalRelay, RoomAdmin) on ``node.grpc_port``.
- Registers in etcd (`cluster.NodeRegistry`) under a lease of ``node.lease_ttl`` seconds with
  its addresses, region and capacity, and reports its load every ``node.load_interval``:
  rooms, participants, published tracks (from the RoomManager) and CPU (`CpuSampler`).
- Rooms are created with the room sid of their placement record (the relay and CreateRoom
  pass it), so the record and the room agree, and the node then claims that record (a
  create-if-absent under its lease, in the background): should the record have vanished
  meanwhile (the room had just closed), it is written again; should the room have been
  placed on another node, the copy here closes and its clients rejoin. When a room closes,
  its record is released.
- After a re-registration under a new lease (etcd expired the old one while this node was
  cut off), the rooms it still hosts are claimed again; a room placed elsewhere meanwhile is
  lost and closed here, and its clients are told to rejoin (they reach the room's new home).
- Draining (the first SIGTERM, see :meth:`MediaRole.drain`): the node is marked ``draining``
  in etcd (placement picks it no more) and creates no new room; then its rooms are moved one
  at a time: the room's placement record is released (so the next join places the room on a
  serving node) and the room closes with leave{RECONNECT}, so the SDKs rejoin through a
  control node and land on the room's new home. The moves are spread over at most half of
  ``node.drain_timeout`` and at most ``DRAIN_GAP`` seconds apart: a burst of rejoins neither
  hits the control nodes at once nor piles every room on whichever node looked least loaded
  in the last load report (placement sees each move's load before the next one). When no
  participant is left the drain ends; at the deadline whatever remains is closed the same way.
- A drain requested by an operator (``trackyard node drain``: a ``drain/{node_id}`` key in
  etcd, followed by a :class:`DrainRequestWatch`) runs the same drain but the node stays up,
  unready and taking no new room, until the request is taken back (``trackyard node
  undrain``): then a drain still under way stops, the node is ``serving`` again in etcd and
  ready. A SIGTERM during or after such a drain drains (what is left) and exits as usual.
- Stopping (after a drain, or a second SIGTERM): the lease is revoked first, so the node and
  its room records vanish and new joins go elsewhere; then the rooms close, telling clients
  to rejoin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from livekit.protocol import models

from trackyard.cluster import EtcdStore, EtcdUnavailable, LeaseNotFound, NodeCapacity, NodeInfo, NodeLoad, NodeRegistry
from trackyard.cluster import RoomRecord
from trackyard.cluster import claim_rooms, release_room
from trackyard.cluster.registry import DRAINING, SERVING, DrainRequestWatch
from trackyard.config import Config
from trackyard.context import NodeContext
from trackyard.cpu import CpuSampler
from trackyard.rooms.admin import RoomAdmin
from trackyard.rooms.room import Room
from trackyard.rpc.server import start_grpc_server
from trackyard.signal.host import SignalHost
from trackyard.tasks import cancel_and_wait

log = logging.getLogger(__name__)

WILDCARDS = ("", "0.0.0.0", "::", "[::]")
DRAIN_GAP = 1.0  # seconds: the longest pause between two room moves of a drain
DRAINING_TEXT = "node is draining"


def advertised_host(config: Config) -> str:
    """The address other nodes and clients reach this node at."""
    if config.rtc.node_ip:
        return config.rtc.node_ip
    for address in config.bind_addresses:
        if address not in WILDCARDS:
            return address
    return socket.gethostname()


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class MediaRole:
    def __init__(self, node: NodeContext, host: SignalHost, admin: RoomAdmin, store: EtcdStore) -> None:
        self.node = node
        self.config = node.config
        self.host = host
        self.admin = admin
        self.store = store
        self.server = None
        self.relay = None
        self.registry: NodeRegistry | None = None
        self.stopping = False
        self.draining = False
        self.exiting = False  # a SIGTERM drain: no undrain
        self.drain_watch: DrainRequestWatch | None = None
        self._requested_drain: asyncio.Task | None = None
        self._drain_generation = 0  # an undrain moves it on: a drain of an older one stops
        self._cpu = CpuSampler()
        self._tasks: set[asyncio.Task] = set()
        cfg = self.config.node
        self.grpc_address = cfg.grpc_address or _join_host_port(advertised_host(self.config), cfg.grpc_port)

    def node_info(self) -> NodeInfo:
        cap = self.config.node.capacity
        return NodeInfo(
            self.node.node_id,
            rtc_address=_join_host_port(advertised_host(self.config), self.config.rtc.udp_port),
            signal_address=self.grpc_address,
            region=self.config.region,
            capacity=NodeCapacity(cap.max_rooms, cap.max_participants, cap.max_tracks, cap.max_bandwidth),
        )

    async def start(self) -> None:
        cfg = self.config.node
        bind = [cfg.grpc_bind] if cfg.grpc_bind else list(self.config.bind_addresses)
        self.server, self.relay = await start_grpc_server(
            self.host, self.admin, node_id=self.node.node_id, keys=self.config.keys, bind=bind, port=cfg.grpc_port)
        self.node.rooms.on_created.append(self._room_created)
        self.node.rooms.on_closed.append(self._room_closed)
        self.registry = NodeRegistry(self.store, self.node_info(), ttl=cfg.lease_ttl, load_interval=cfg.load_interval,
                                     load=self.load, on_registered=self._on_registered).start()
        self.drain_watch = DrainRequestWatch(self.store, self.node.node_id, self._on_drain_request).start()
        log.info("media node %s: internal gRPC on %s (%s), registering in etcd", self.node.node_id,
                 ", ".join(f"{b or '*'}:{cfg.grpc_port}" for b in bind), self.grpc_address)

    def load(self) -> NodeLoad:
        rooms = [r for r in self.node.rooms.rooms.values() if not r.closed]
        participants = sum(len(r.participants) for r in rooms)
        tracks = sum(len(p.tracks) for r in rooms for p in r.participants.values())
        return NodeLoad(cpu=self._cpu(), rooms=len(rooms), participants=participants, tracks=tracks)

    def records(self) -> list[RoomRecord]:
        return [RoomRecord(r.name, self.node.node_id, r.sid, int(r.created_at))
                for r in self.node.rooms.rooms.values() if not r.closed]

    async def _on_registered(self, lease_id: int) -> None:
        records = self.records()
        if records:
            lost = await self._claim(lease_id, records)
            log.info("re-claimed %d room(s) under lease %x, lost %d", len(records) - len(lost), lease_id, len(lost))

    async def _claim(self, lease_id: int, records: list[RoomRecord]) -> list[str]:
        lost = await claim_rooms(self.store, lease_id, records)
        for name in lost:
            room = self.node.rooms.get(name)
            if room is not None and any(r.room_sid == room.sid for r in records):
                log.warning("room %s is placed on another node; closing it here (clients rejoin there)", name,
                            extra={"room": name})
                room.close(models.DisconnectReason.MIGRATION, rejoin=True)
        return lost

    def _room_created(self, room: Room) -> None:
        lease = self.registry.lease_id if self.registry is not None else 0
        if lease and not self.stopping:  # without a lease, registering claims every room anyway
            record = RoomRecord(room.name, self.node.node_id, room.sid, int(room.created_at))
            self._spawn(self._claim_quietly(lease, record))

    async def _claim_quietly(self, lease_id: int, record: RoomRecord) -> None:
        try:
            await self._claim(lease_id, [record])
            room = self.node.rooms.get(record.room_name)
            if room is None or room.sid != record.room_sid:  # it closed while being claimed
                await release_room(self.store, record)
        except (EtcdUnavailable, LeaseNotFound) as exc:
            log.info("could not claim room %s now (%s); it is claimed on re-registration", record.room_name, exc,
                     extra={"room": record.room_name})

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room_closed(self, room: Room) -> None:
        if self.stopping:
            return  # the lease revocation removes the records
        record = RoomRecord(room.name, self.node.node_id, room.sid, int(room.created_at))
        self._spawn(self._release(record))
        if self.registry is not None:
            self.registry.report_now()

    async def _release(self, record: RoomRecord) -> None:
        try:
            await release_room(self.store, record)
        except EtcdUnavailable:
            # the record stays until this node's lease goes; a join it attracts meanwhile
            # simply creates the room here again, under the same sid
            log.info("could not release room %s (etcd unreachable)", record.room_name,
                     extra={"room": record.room_name})

    @property
    def participants(self) -> int:
        return sum(len(r.participants) for r in self.node.rooms.rooms.values() if not r.closed)

    async def ready(self) -> tuple[bool, str]:
        """For /readyz: registered in etcd, etcd answering, not draining."""
        if self.draining or self.stopping:
            return False, "draining"
        if self.registry is None or not self.registry.registered:
            return False, "not registered in etcd"
        try:
            await self.store.get("nodes/" + self.node.node_id)
        except EtcdUnavailable as exc:
            return False, str(exc)
        return True, "ready"

    def _on_drain_request(self, requested: bool) -> None:
        if self.exiting or self.stopping:
            return
        if requested and self._requested_drain is None:
            log.info("drain requested in etcd: draining; the node stays up until the request is taken back")
            self._requested_drain = asyncio.get_running_loop().create_task(
                self._drain(self.config.node.drain_timeout, self._drain_generation))
            self._requested_drain.add_done_callback(self._requested_drain_done)
        elif not requested and (self.draining or self._requested_drain is not None):
            self._spawn(self._undrain())

    @staticmethod
    def _requested_drain_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("requested drain failed", exc_info=task.exception())

    async def _cancel_requested_drain(self) -> None:
        task, self._requested_drain = self._requested_drain, None
        if task is not None and not task.done():
            await cancel_and_wait(task)

    async def _undrain(self) -> None:
        """The drain request was taken back: serve again (new rooms, ``serving`` in etcd).
        A drain under way stops before its next move (never between releasing a room's
        record and closing the room)."""
        self._drain_generation += 1
        task, self._requested_drain = self._requested_drain, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure is logged by its callback
                await task
        if self.exiting or self.stopping:
            return
        self.draining = False
        self.node.rooms.refusing = ""
        log.info("drain request taken back: serving again")
        if self.registry is not None:
            await self.registry.set_state(SERVING)  # written now, or by the registry once etcd answers

    async def drain(self, timeout: float) -> float:
        """The SIGTERM drain: mark the node draining and move its rooms away (see the module
        docstring) within ``timeout`` seconds; returns how long it took. Cancel it to give up
        (second SIGTERM). A drain an operator requested goes on as part of it."""
        self.exiting = True
        task = self._requested_drain
        if task is not None and not task.done():
            await task  # cancelling this (second SIGTERM) cancels it too
        return await self._drain(timeout)

    async def _drain(self, timeout: float, generation: int | None = None) -> float:
        generation = self._drain_generation if generation is None else generation

        def going_on() -> bool:  # false once undrained
            return self._drain_generation == generation

        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        self.draining = True
        self.node.rooms.refusing = DRAINING_TEXT
        rooms = [r for r in self.node.rooms.rooms.values() if not r.closed]
        log.info("draining: %d room(s), %d participant(s), deadline %.1fs", len(rooms), self.participants, timeout)
        if self.registry is not None:
            try:
                async with asyncio.timeout(max(min(timeout, 5.0), 0.1)):
                    await self.registry.set_state(DRAINING)  # written now, or by the registry once etcd answers
            except TimeoutError:
                log.warning("draining: could not mark the node draining in etcd yet")
        # largest rooms first: they take longest to settle elsewhere
        rooms.sort(key=lambda r: len(r.participants), reverse=True)
        gap = min(DRAIN_GAP, 0.5 * timeout / len(rooms)) if rooms else 0.0
        for i, room in enumerate(rooms):
            if loop.time() >= deadline or not going_on():
                break
            if i:
                await asyncio.sleep(max(0.0, min(gap, deadline - loop.time())))
            if going_on():
                await self._move(room, deadline - loop.time())
        # rooms joined meanwhile (a control node's stale route) are moved too, until the deadline
        while self.participants and loop.time() < deadline and going_on():
            for room in [r for r in self.node.rooms.rooms.values() if not r.closed and r.participants]:
                if going_on():
                    await self._move(room, deadline - loop.time())
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
        left = [r for r in self.node.rooms.rooms.values() if not r.closed] if going_on() else []
        if left:
            log.info("draining: deadline reached, closing %d remaining room(s)", len(left))
            for room in left:
                room.close(models.DisconnectReason.SERVER_SHUTDOWN, rejoin=True)
        took = loop.time() - started
        if going_on():
            log.info("drained in %.2fs", took)
        else:
            log.info("drain stopped after %.2fs: undrained", took)
        return took

    async def _move(self, room: Room, budget: float) -> None:
        """Release the room's record (the next join places it elsewhere), then tell its
        participants to rejoin."""
        if room.closed:
            return
        record = RoomRecord(room.name, self.node.node_id, room.sid, int(room.created_at))
        try:
            async with asyncio.timeout(max(min(budget, 5.0), 0.1)):
                await release_room(self.store, record)
        except (EtcdUnavailable, TimeoutError):
            # the rejoin then reaches this node again while the record stays; it is refused
            # (no new room here), and the lease revocation on exit frees the name
            log.info("draining: could not release room %s (etcd unreachable)", room.name, extra={"room": room.name})
        if not room.closed:
            log.info("draining: moving room %s (%d participant(s))", room.name, len(room.participants),
                     extra={"room": room.name})
            room.close(models.DisconnectReason.SERVER_SHUTDOWN, rejoin=True)

    async def stop(self) -> None:
        """Leave the cluster: revoke the lease (node and room records vanish), close the rooms
        telling clients to rejoin, let the relays deliver that, stop serving gRPC."""
        self.stopping = True
        await self._cancel_requested_drain()
        if self.drain_watch is not None:
            await self.drain_watch.stop()
        if self.registry is not None:
            await self.registry.stop(revoke=True)
        await self.node.rooms.stop(models.DisconnectReason.SERVER_SHUTDOWN, rejoin=True)
        if self.server is not None:
            await self.server.stop(grace=2.0)
        for task in list(self._tasks):
            await cancel_and_wait(task)
