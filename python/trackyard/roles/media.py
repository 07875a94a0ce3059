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
- Stopping (SIGTERM): the lease is revoked first, so the node and its room records vanish
  and new joins go elsewhere; then the rooms close, telling clients to rejoin.
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
from trackyard.cluster.registry import CpuSampler
from trackyard.config import Config
from trackyard.context import NodeContext
from trackyard.rooms.admin import RoomAdmin
from trackyard.rooms.room import Room
from trackyard.rpc.server import start_grpc_server
from trackyard.signal.host import SignalHost

log = logging.getLogger(__name__)

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


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
                log.warning("room %s is placed on another node; closing it here (clients rejoin there)", name)
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
            log.info("could not claim room %s now (%s); it is claimed on re-registration", record.room_name, exc)

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
            log.info("could not release room %s (etcd unreachable)", record.room_name)

    async def stop(self) -> None:
        """Leave the cluster: revoke the lease (node and room records vanish), close the rooms
        telling clients to rejoin, let the relays deliver that, stop serving gRPC."""
        self.stopping = True
        if self.registry is not None:
            await self.registry.stop(revoke=True)
        await self.node.rooms.stop(models.DisconnectReason.SERVER_SHUTDOWN, rejoin=True)
        if self.server is not None:
            await self.server.stop(grace=2.0)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
