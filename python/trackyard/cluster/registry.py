"""Media-node membership: registration under a lease, load reports, and the control nodes' view.

A media node runs one :class:`NodeRegistry`. It grants a lease (TTL ``ttl``, default 10 s),
writes ``nodes/{node_id}`` (a :class:`NodeInfo`) and ``load/{node_id}`` (a :class:`NodeLoad`)
bound to it, refreshes the lease every ``ttl / 3`` seconds and rewrites the load every
``load_interval`` seconds. If the node dies, its lease expires and etcd deletes both keys and
every ``rooms/`` record bound to that lease: no sweeper is needed.

While etcd is unreachable the registry keeps retrying (about once a second). When the lease
is found gone (etcd expired it during a long outage, or someone revoked it), the registry
registers again with a new lease and then calls ``on_registered(lease_id)``, so the media
node can re-claim the rooms it still hosts (:func:`trackyard.cluster.placement.claim_rooms`).

Control nodes run one :class:`NodeDirectory`: an always-current local view of the live nodes
and their load, fed by watches on ``nodes/`` and ``load/`` (:mod:`trackyard.cluster.view`).
Each :class:`NodeView` also carries the node's lease id and the ``mod_revision`` of its
``nodes/`` key, which placement needs for its transaction.

Operators ask a media node to drain (``trackyard node drain``) by writing
``drain/{node_id}`` (:func:`request_drain`; not bound to a lease, so the request outlives a
restart of a node with a fixed id) and take it back by deleting it (:func:`cancel_drain`).
The media node follows its key with a :class:`DrainRequestWatch` (see ``roles.media``).

Values are JSON objects (readable with ``etcdctl get --prefix /trackyard/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from trackyard.cluster.store import EtcdStore, EtcdUnavailable, Entry, LeaseNotFound
from trackyard.cluster.view import PrefixView, wait_until
from trackyard.cpu import CpuSampler
from trackyard.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

NODES = "nodes/"
LOAD = "load/"
DRAIN_REQUESTS = "drain/"
SERVING = "serving"
DRAINING = "draining"
STATES = (SERVING, DRAINING)


@dataclass
class NodeCapacity:
    """Limits placement respects; 0 = unlimited."""

    max_rooms: int = 0
    max_participants: int = 0
    max_tracks: int = 0
    max_bandwidth: int = 0  # bits per second, in + out


@dataclass
class NodeInfo:
    """The value of ``nodes/{node_id}``."""

    node_id: str
    rtc_address: str = ""     # "ip:port" of the media UDP port, as clients reach it
    signal_address: str = ""  # "host:port" of the node's gRPC signal relay
    region: str = ""
    state: str = SERVING
    capacity: NodeCapacity = field(default_factory=NodeCapacity)
    started_at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "NodeInfo":
        data = json.loads(raw)
        data["capacity"] = NodeCapacity(**data.get("capacity", {}))
        return cls(**data)


@dataclass
class NodeLoad:
    """The value of ``load/{node_id}``."""

    cpu: float = 0.0          # percent of the machine's CPUs in use, 0..100
    rooms: int = 0
    participants: int = 0
    tracks: int = 0
    bandwidth: int = 0        # bits per second, in + out
    updated_at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "NodeLoad":
        return cls(**json.loads(raw))


class NodeRegistry:
    """Keeps this media node registered; see the module docstring.

    ``load`` is called before every report and returns the current :class:`NodeLoad`
    (default: CPU only). Call :meth:`start`, then optionally :meth:`wait_registered`.
    """

    def __init__(
        self,
        store: EtcdStore,
        info: NodeInfo,
        *,
        ttl: int = 10,
        load_interval: float = 3.0,
        load: Callable[[], NodeLoad] | None = None,
        on_registered: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.info = info
        self.ttl = ttl
        self.load_interval = load_interval
        cpu = CpuSampler()
        self._load = load or (lambda: NodeLoad(cpu=cpu()))
        self._on_registered = on_registered
        self.lease_id = 0  # 0 = not registered
        self.registrations = 0  # how many leases this registry has registered under
        self._registered = asyncio.Event()
        self._wake = asyncio.Event()
        self._info_dirty = False
        self._hook_pending = False
        self._report_requested = False
        self._task: asyncio.Task | None = None

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def registered(self) -> bool:
        return self._registered.is_set()

    def start(self) -> "NodeRegistry":
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"registry {self.node_id}")
        return self

    async def wait_registered(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            await self._registered.wait()
        return self.lease_id

    async def stop(self, *, revoke: bool = True) -> None:
        """Stop refreshing; with ``revoke`` remove the node (and its rooms) from etcd now."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if revoke and self.lease_id:
            with contextlib.suppress(EtcdUnavailable):
                await self.store.revoke(self.lease_id)
        self.lease_id = 0
        self._registered.clear()

    async def set_state(self, state: str) -> None:
        """Switch between ``serving`` and ``draining``; written now, or as soon as etcd answers."""
        if state not in STATES:
            raise ValueError(f"node state must be one of {STATES}, got {state!r}")
        self.info.state = state
        self._info_dirty = True
        self._wake.set()
        if self.lease_id:
            with contextlib.suppress(EtcdUnavailable, LeaseNotFound):
                await self._write_info()

    def report_now(self) -> None:
        """Ask for a load report without waiting for the next interval."""
        self._report_requested = True
        self._wake.set()

    # ------------------------------------------------------------ internals

    async def _write_info(self) -> None:
        self._info_dirty = False
        try:
            await self.store.put(NODES + self.node_id, self.info.encode(), lease=self.lease_id)
        except BaseException:
            self._info_dirty = True
            raise

    async def _register(self) -> None:
        lease = await self.store.grant(self.ttl)
        self.lease_id = lease.id
        try:
            await self._write_info()
            await self.store.put(LOAD + self.node_id, self._load().encode(), lease=lease.id)
        except BaseException:
            self.lease_id = 0  # the half-registered lease simply expires
            raise
        self.registrations += 1
        self._hook_pending = self._on_registered is not None
        self._registered.set()
        logger.info("node %s registered under lease %x (ttl %ss)", self.node_id, lease.id, lease.ttl)

    async def _run_hook(self) -> None:
        try:
            await self._on_registered(self.lease_id)
            self._hook_pending = False
        except EtcdUnavailable:
            raise  # retried on the next round
        except Exception:
            self._hook_pending = False
            logger.exception("node %s: on_registered hook failed", self.node_id)

    async def _run(self) -> None:
        every = max(self.ttl / 3, 0.5)
        next_keepalive = next_load = 0.0
        while True:
            self._wake.clear()
            now = time.monotonic()
            delay = None
            try:
                if not self.lease_id:
                    await self._register()
                    now = time.monotonic()
                    next_keepalive, next_load = now + every, now + self.load_interval
                if now >= next_keepalive:
                    if await self.store.keepalive(self.lease_id) == 0:
                        logger.warning("node %s: lease %x is gone; registering again", self.node_id, self.lease_id)
                        self._lost()
                        continue
                    next_keepalive = now + every
                if self._info_dirty:
                    await self._write_info()
                if self._hook_pending:
                    await self._run_hook()
                if now >= next_load or self._report_requested:
                    self._report_requested = False
                    await self.store.put(LOAD + self.node_id, self._load().encode(), lease=self.lease_id)
                    next_load = now + self.load_interval
            except LeaseNotFound:
                self._lost()
                continue
            except EtcdUnavailable as exc:
                logger.info("node %s: %s; retrying in 1s", self.node_id, exc)
                delay = 1.0
                next_keepalive = min(next_keepalive, now + delay)
            except Exception:  # e.g. a failing load callback: never let the node fall silent
                logger.exception("node %s: registry round failed; retrying in 1s", self.node_id)
                delay = 1.0
            if delay is None:
                delay = min(next_keepalive, next_load) - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._wake.wait()

    def _lost(self) -> None:
        self.lease_id = 0
        self._registered.clear()


@dataclass
class NodeView:
    """One live node as a control node sees it."""

    info: NodeInfo
    load: NodeLoad
    lease: int
    mod_revision: int  # of its nodes/ key: placement's guard that the node is unchanged

    @property
    def node_id(self) -> str:
        return self.info.node_id


class NodeDirectory:
    """Live nodes and their load, kept current by watches; see the module docstring."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self._nodes = PrefixView(store, NODES, name="nodes")
        self._load = PrefixView(store, LOAD, name="load")

    def start(self) -> "NodeDirectory":
        self._nodes.start()
        self._load.start()
        return self

    async def stop(self) -> None:
        await self._nodes.stop()
        await self._load.stop()

    @property
    def synced(self) -> bool:
        """Whether both prefixes have been listed at least once."""
        return self._nodes.synced.is_set() and self._load.synced.is_set()

    async def wait_synced(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._nodes.synced.wait()
            await self._load.synced.wait()

    async def refresh(self) -> None:
        """Re-read nodes and load from etcd now (raises :class:`EtcdUnavailable`)."""
        await self._nodes.refresh()
        await self._load.refresh()

    def _view(self, node_id: str, entry: Entry) -> NodeView | None:
        try:
            info = NodeInfo.decode(entry.value)
        except (ValueError, TypeError) as exc:
            logger.warning("ignoring malformed nodes/%s: %s", node_id, exc)
            return None
        load_entry = self._load.entries.get(node_id)
        load = NodeLoad(updated_at=0.0)
        if load_entry is not None:
            with contextlib.suppress(ValueError, TypeError):
                load = NodeLoad.decode(load_entry.value)
        return NodeView(info, load, entry.lease, entry.mod_revision)

    def nodes(self) -> list[NodeView]:
        views = (self._view(node_id, e) for node_id, e in sorted(self._nodes.entries.items()))
        return [v for v in views if v is not None]

    def get(self, node_id: str) -> NodeView | None:
        entry = self._nodes.entries.get(node_id)
        return self._view(node_id, entry) if entry is not None else None

    async def wait_until(self, predicate: Callable[["NodeDirectory"], object], timeout: float) -> object:
        """Wait (bounded) until ``predicate(directory)`` holds, re-checked on every change."""
        return await wait_until([self._nodes, self._load], lambda: predicate(self), timeout)


# ---------------------------------------------------------------- drain requests


@dataclass
class DrainRequest:
    """The value of ``drain/{node_id}``: an operator asked the node to drain."""

    node_id: str
    requested_at: float = field(default_factory=time.time)
    reason: str = ""

    def encode(self) -> bytes:
        return json.dumps({"requested_at": self.requested_at, "reason": self.reason}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, node_id: str, raw: bytes) -> "DrainRequest":
        data = json.loads(raw)
        return cls(node_id, float(data.get("requested_at", 0.0)), str(data.get("reason", "")))


async def request_drain(store: EtcdStore, node_id: str, reason: str = "") -> DrainRequest:
    request = DrainRequest(node_id, reason=reason)
    await store.put(DRAIN_REQUESTS + node_id, request.encode())
    return request


async def cancel_drain(store: EtcdStore, node_id: str) -> bool:
    """Take a drain request back; returns whether there was one."""
    return await store.delete(DRAIN_REQUESTS + node_id)


async def drain_requests(store: EtcdStore) -> dict[str, DrainRequest]:
    entries, _ = await store.get_prefix(DRAIN_REQUESTS)
    out = {}
    for entry in entries:
        node_id = entry.key[len(DRAIN_REQUESTS):]
        try:
            out[node_id] = DrainRequest.decode(node_id, entry.value)
        except (ValueError, TypeError, AttributeError):
            out[node_id] = DrainRequest(node_id, 0.0, "(malformed)")
    return out


class DrainRequestWatch:
    """Calls ``on_change(requested)`` whenever a drain request for ``node_id`` appears or goes
    (first with the state found at start, if a request is there). Follows etcd with a
    :class:`PrefixView`, so it resumes after an outage and keeps the last known state meanwhile."""

    def __init__(self, store: EtcdStore, node_id: str, on_change: Callable[[bool], None]) -> None:
        self.node_id = node_id
        self.requested = False
        self._on_change = on_change
        self._view = PrefixView(store, DRAIN_REQUESTS, name="drain requests")
        self._task: asyncio.Task | None = None

    def start(self) -> "DrainRequestWatch":
        if self._task is None:
            self._view.start()
            self._task = asyncio.create_task(self._run(), name=f"drain requests {self.node_id}")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._view.stop()

    async def _run(self) -> None:
        await self._view.synced.wait()
        while True:
            changed = self._view.changed()  # taken before the check: no change is missed
            requested = self.node_id in self._view.entries
            if requested != self.requested:
                self.requested = requested
                try:
                    self._on_change(requested)
                except Exception:
                    logger.exception("node %s: drain request handler failed", self.node_id)
            await changed.wait()
