"""Node registry and room placement against a real etcd (Debian etcd-server on loopback).

Most tests share one etcd and use their own key prefix; tests that stop, restart or
reconfigure etcd start their own. Every wait is bounded; processes are ended by PID.
Timings are printed (run with ``-s`` to see them); they are recorded, never asserted tightly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time

import pytest

from support.cluster_agent import agent_command
from support.etcd import EtcdServer, etcd_available, make_tls_files, unique_prefix
from support.servers import wait_for
from support.timing import timing
from trackyard.cluster import (
    DRAINING,
    SERVING,
    EtcdStore,
    EtcdUnavailable,
    LeaseNotFound,
    NodeCapacity,
    NodeDirectory,
    NodeInfo,
    NodeLoad,
    NodeRegistry,
    NodeView,
    Placement,
    RoomRecord,
    choose_node,
    claim_rooms,
    release_room,
)
from trackyard.cluster.placement import ETCD_DOWN, NO_NODE
from trackyard.errors import Unavailable

if not etcd_available():  # fail loudly: these tests are the cluster's acceptance tests
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

TTL = 3  # node lease TTL in these tests (etcd's minimum with default election settings is ~2 s)
WAIT = 10.0  # bound for "eventually" waits


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def prefix(request) -> str:
    return unique_prefix(request.node.name[:24].replace("[", "-").replace("]", ""))


class Cluster:
    """Stores, registries, directories and placements for one test; closes them all."""

    def __init__(self, endpoint: str, prefix: str, timeout: float = 2.0) -> None:
        self.endpoint, self.prefix, self.timeout = endpoint, prefix, timeout
        self._closers: list = []

    async def store(self) -> EtcdStore:
        store = await EtcdStore([self.endpoint], self.prefix, timeout=self.timeout).connect()
        self._closers.append(store.close)
        return store

    async def node(self, node_id: str, *, region: str = "", capacity: NodeCapacity | None = None,
                   load: NodeLoad | None = None, ttl: int = TTL, **kw) -> NodeRegistry:
        """An in-process media node; its load is the mutable ``registry.current_load``."""
        current = load or NodeLoad()
        info = NodeInfo(node_id, rtc_address=f"127.0.0.1:{7000 + len(self._closers)}", region=region,
                        capacity=capacity or NodeCapacity())
        registry = NodeRegistry(await self.store(), info, ttl=ttl, load_interval=0.3,
                                load=lambda: current, **kw)
        registry.current_load = current
        registry.start()
        self._closers.append(registry.stop)
        await registry.wait_registered(WAIT)
        return registry

    async def control(self, *, region: str = "") -> tuple[NodeDirectory, Placement]:
        store = await self.store()
        directory = NodeDirectory(store).start()
        placement = Placement(store, directory, region=region).start()
        self._closers += [directory.stop, placement.stop]
        await directory.wait_synced(WAIT)
        await placement.wait_synced(WAIT)
        return directory, placement

    async def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()


@pytest.fixture
async def cluster(etcd, prefix):
    c = Cluster(etcd.endpoint, prefix)
    try:
        yield c
    finally:
        await c.close()


async def nodes_seen(directory: NodeDirectory, *node_ids: str) -> None:
    await directory.wait_until(lambda d: all(d.get(n) is not None for n in node_ids), WAIT)


async def room_keys(store: EtcdStore) -> dict[str, RoomRecord]:
    entries, _ = await store.get_prefix("rooms/")
    return {e.key[len("rooms/"):]: RoomRecord.decode(e.key[len("rooms/"):], e.value) for e in entries}


class Agent:
    """A `support.cluster_agent` subprocess, read line by line (bounded), ended by PID."""

    def __init__(self, *args: str) -> None:
        argv, env = agent_command(*args)
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    async def line(self, timeout: float = WAIT) -> str:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                text = await loop.run_in_executor(None, self.proc.stdout.readline)
        except TimeoutError:
            self.kill()
            raise AssertionError(f"agent said nothing for {timeout}s: {self.proc.stderr.read()}") from None
        if not text:
            raise AssertionError(f"agent exited ({self.proc.wait(5)}): {self.proc.stderr.read()}")
        return text.strip()

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL by PID
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


# ---------------------------------------------------------------- the store itself


async def test_store_operations_keys_leases_txn_watch(cluster):
    store = await cluster.store()
    other = await EtcdStore([cluster.endpoint], unique_prefix("other")).connect()
    try:
        assert await store.get("a") is None
        rev = await store.put("a", b"1")
        entry = await store.get("a")
        assert (entry.key, entry.value, entry.mod_revision) == ("a", b"1", rev)
        await store.put("dir/x", b"x")
        await store.put("dir/y", b"y")
        entries, listed_at = await store.get_prefix("dir/")
        assert [(e.key, e.value) for e in entries] == [("dir/x", b"x"), ("dir/y", b"y")]
        assert listed_at >= rev
        assert (await other.get_prefix(""))[0] == []  # another prefix sees none of it
        await other.put("dir/z", b"z")
        assert len((await store.get_prefix("dir/"))[0]) == 2

        created, current = await store.txn_create_if_absent("once", b"first")
        assert created and current.value == b"first"
        created, current = await store.txn_create_if_absent("once", b"second")
        assert not created and current.value == b"first"
        assert (await store.get("once")).value == b"first"
        # A guard on another key: fails without creating when that key changed.
        guard_rev = (await store.get("a")).mod_revision
        await store.put("a", b"2")
        assert await store.txn_create_if_absent("guarded", b"v", unchanged={"a": guard_rev}) == (False, None)
        assert await store.get("guarded") is None

        lease = await store.grant(TTL)
        assert lease.ttl == TTL
        await store.put("leased", b"v", lease=lease.id)
        assert (await store.get("leased")).lease == lease.id
        assert 0 < await store.keepalive(lease.id) <= TTL
        await store.revoke(lease.id)
        assert await store.get("leased") is None
        assert await store.keepalive(lease.id) == 0
        with pytest.raises(LeaseNotFound):
            await store.put("leased", b"v", lease=lease.id)
        await store.revoke(lease.id)  # revoking twice is fine

        seen: list = []
        # from the revision after now, however late the watch is set up (a watch "from now"
        # set up after the first put would miss it)
        _, revision = await store.get_prefix("w/")

        async def follow():
            async with contextlib.aclosing(store.watch_prefix("w/", start_revision=revision + 1)) as batches:
                async for batch in batches:
                    seen.extend((e.kind, e.key, e.value) for e in batch)
                    if len(seen) >= 3:
                        return

        watcher = asyncio.create_task(follow())
        await store.put("w/1", b"a")
        await store.put("w/1", b"b")
        await store.delete("w/1")
        async with asyncio.timeout(WAIT):
            await watcher
        assert seen == [("put", "w/1", b"a"), ("put", "w/1", b"b"), ("delete", "w/1", b"")]
        # Endpoints by DNS name: one name (gRPC resolves it) and several (resolved at connect).
        port = cluster.endpoint.rsplit(":", 1)[1]
        for endpoints in ([f"localhost:{port}"], [f"http://localhost:{port}", f"127.0.0.1:{port}"]):
            named = await EtcdStore(endpoints, cluster.prefix).connect()
            assert (await named.get("a")).value == b"2"
            await named.close()
        assert await store.delete_prefix("") >= 4
    finally:
        await other.delete_prefix("")
        await other.close()


# ---------------------------------------------------------------- registration


async def test_node_registers_and_vanishes_with_its_rooms_after_sigkill(etcd, cluster):
    directory, placement = await cluster.control()
    agent = Agent("register", etcd.endpoint, cluster.prefix, "ND_agent", "--ttl", str(TTL), "--region", "eu")
    try:
        ready = await agent.line()
        assert ready.startswith("READY ")
        lease = int(ready.split()[1])
        await nodes_seen(directory, "ND_agent")
        node = directory.get("ND_agent")
        assert (node.info.rtc_address, node.info.region, node.info.state, node.lease) == (
            "127.0.0.1:7882", "eu", SERVING, lease)
        await directory.wait_until(lambda d: d.get("ND_agent").load.updated_at > 0, WAIT)

        records = [await placement.place_room(name) for name in ("r1", "r2")]
        assert {r.node_id for r in records} == {"ND_agent"}
        store = await cluster.store()
        stored = await room_keys(store)
        assert set(stored) == {"r1", "r2"}
        assert {(await store.get(f"rooms/{n}")).lease for n in stored} == {lease}

        agent.kill()  # kill -9: no revoke, the keepalive just stops
        killed = time.monotonic()
        await directory.wait_until(lambda d: d.get("ND_agent") is None, TTL + 5)
        gone = time.monotonic() - killed
        timing(f"node gone from the directory after SIGKILL (ttl {TTL}s)", gone)
        assert gone <= TTL + 3
        assert await room_keys(store) == {}
        assert await store.get("load/ND_agent") is None
        await placement._rooms.wait_until(lambda: not placement.rooms(), WAIT)
        assert await placement.lookup("r1") is None
        with pytest.raises(Unavailable) as info:
            await placement.place_room("r3")  # no node left
        assert info.value.msg == NO_NODE
    finally:
        agent.kill()


async def test_load_reports_update_the_directory(cluster):
    directory, _ = await cluster.control()
    node = await cluster.node("ND_a")
    await nodes_seen(directory, "ND_a")
    node.current_load.participants = 7
    node.current_load.cpu = 42.5
    started = time.monotonic()
    await directory.wait_until(lambda d: d.get("ND_a").load.participants == 7, WAIT)  # periodic report
    timing("periodic load report reached the directory", time.monotonic() - started)
    assert directory.get("ND_a").load.cpu == 42.5
    node.current_load.tracks = 3
    node.report_now()
    await directory.wait_until(lambda d: d.get("ND_a").load.tracks == 3, WAIT)

    default = NodeRegistry(await cluster.store(), NodeInfo("ND_cpu"), ttl=TTL, load_interval=0.2).start()
    try:
        await default.wait_registered(WAIT)
        await nodes_seen(directory, "ND_cpu")
        assert 0.0 <= directory.get("ND_cpu").load.cpu <= 100.0  # measured from /proc/stat
    finally:
        await default.stop()
    await directory.wait_until(lambda d: d.get("ND_cpu") is None, WAIT)  # stop() revokes at once


async def test_draining_nodes_are_not_chosen(cluster):
    directory, placement = await cluster.control()
    a = await cluster.node("ND_a")
    b = await cluster.node("ND_b")
    await nodes_seen(directory, "ND_a", "ND_b")
    await a.set_state(DRAINING)
    await directory.wait_until(lambda d: d.get("ND_a").info.state == DRAINING, WAIT)
    placed = [await placement.place_room(f"room{i}") for i in range(4)]
    assert {r.node_id for r in placed} == {"ND_b"}
    # An existing room stays where it is even when its node drains.
    await b.set_state(DRAINING)
    await directory.wait_until(lambda d: d.get("ND_b").info.state == DRAINING, WAIT)
    assert (await placement.place_room("room0")).node_id == "ND_b"
    with pytest.raises(Unavailable) as info:
        await placement.place_room("new")
    assert info.value.msg == NO_NODE
    await a.set_state(SERVING)
    await directory.wait_until(lambda d: d.get("ND_a").info.state == SERVING, WAIT)
    assert (await placement.place_room("new")).node_id == "ND_a"


async def test_closed_room_is_released_and_placed_anew(cluster):
    directory, placement = await cluster.control()
    await cluster.node("ND_a")
    await nodes_seen(directory, "ND_a")
    first = await placement.place_room("r")
    store = await cluster.store()
    stale = RoomRecord("r", first.node_id, "RM_someoneelse", first.created)
    assert not await release_room(store, stale)  # a different room sid: left alone
    assert await release_room(store, first)
    assert await placement.lookup("r") is None
    await placement._rooms.wait_until(lambda: placement.cached("r") is None, WAIT)
    again = await placement.place_room("r")
    assert again.room_sid != first.room_sid  # a new room instance
    assert not await release_room(store, first)


async def test_placement_right_after_start_reads_the_nodes(cluster):
    await cluster.node("ND_a")
    store = await cluster.store()
    directory = NodeDirectory(store)  # never started: nothing listed yet
    placement = Placement(store, directory)
    assert (await placement.place_room("early")).node_id == "ND_a"


async def test_draining_is_checked_in_the_transaction(cluster):
    """A control node whose view is stale cannot place on a node that just started draining."""
    directory, placement = await cluster.control()
    a = await cluster.node("ND_a")
    await nodes_seen(directory, "ND_a")
    stale = directory.get("ND_a")
    await a.set_state(DRAINING)
    store = await cluster.store()
    created, _ = await store.txn_create_if_absent(
        "rooms/x", b"{}", stale.lease, unchanged={"nodes/ND_a": stale.mod_revision})
    assert not created and await store.get("rooms/x") is None


async def test_capacity_limits_are_respected(cluster):
    directory, placement = await cluster.control()
    await cluster.node("ND_a", capacity=NodeCapacity(max_rooms=2))
    await cluster.node("ND_b", capacity=NodeCapacity(max_rooms=1))
    await cluster.node("ND_c", capacity=NodeCapacity(max_participants=10), load=NodeLoad(participants=10))
    await nodes_seen(directory, "ND_a", "ND_b", "ND_c")
    placed = [await placement.place_room(f"room{i}") for i in range(3)]
    assert sorted(r.node_id for r in placed) == ["ND_a", "ND_a", "ND_b"]
    with pytest.raises(Unavailable) as info:
        await placement.place_room("one-too-many")
    assert info.value.msg == NO_NODE
    assert set(await room_keys(await cluster.store())) == {"room0", "room1", "room2"}


async def test_least_loaded_node_is_chosen(cluster):
    directory, placement = await cluster.control()
    await cluster.node("ND_busy", load=NodeLoad(cpu=80.0))
    await cluster.node("ND_idle", load=NodeLoad(cpu=10.0))
    await nodes_seen(directory, "ND_busy", "ND_idle")
    await directory.wait_until(lambda d: d.get("ND_busy").load.cpu == 80.0, WAIT)
    assert (await placement.place_room("r0")).node_id == "ND_idle"
    # Equal nodes: rooms spread at once (counted from rooms/, not only from load reports);
    # ND_idle (10 % CPU) stays behind the two at 0 %, as room counts alone do not raise
    # the utilisation of nodes without a room limit.
    await cluster.node("ND_x")
    await cluster.node("ND_y")
    await nodes_seen(directory, "ND_x", "ND_y")
    other_directory, other_placement = await cluster.control()
    await nodes_seen(other_directory, "ND_x", "ND_y")
    placed = []
    for i in range(6):
        p = placement if i % 2 else other_placement  # two control nodes taking turns
        placed.append((await p.place_room(f"spread{i}")).node_id)
        for q in (placement, other_placement):  # the next placer has seen this one
            await q._rooms.wait_until(lambda: len(q.rooms()) >= i + 2, WAIT)
    counts = {n: placed.count(n) for n in set(placed)}
    assert counts == {"ND_x": 3, "ND_y": 3}, counts


async def test_region_preference(cluster):
    directory, placement = await cluster.control(region="eu")
    eu = await cluster.node("ND_eu", region="eu", capacity=NodeCapacity(max_rooms=2))
    await cluster.node("ND_us", region="us")
    await nodes_seen(directory, "ND_eu", "ND_us")
    assert (await placement.place_room("a")).node_id == "ND_eu"  # the control node's region
    assert (await placement.place_room("b", region="us")).node_id == "ND_us"  # the client's region
    assert (await placement.place_room("c", region="ap")).node_id in ("ND_eu", "ND_us")  # none there: any
    # eu is full (max_rooms 2 reached by a and possibly c) or draining: fall back to another region.
    await eu.set_state(DRAINING)
    await directory.wait_until(lambda d: d.get("ND_eu").info.state == DRAINING, WAIT)
    assert (await placement.place_room("d")).node_id == "ND_us"


def _view(node_id: str, *, state=SERVING, region="", cpu=0.0, rooms=0, participants=0, **capacity) -> NodeView:
    return NodeView(NodeInfo(node_id, region=region, state=state, capacity=NodeCapacity(**capacity)),
                    NodeLoad(cpu=cpu, rooms=rooms, participants=participants), lease=1, mod_revision=1)


@pytest.mark.parametrize("nodes, kwargs, expected", [
    ([_view("a", cpu=50), _view("b", cpu=20)], {}, "b"),
    ([_view("a", cpu=21), _view("b", cpu=22, rooms=5)], {}, "a"),  # same 5 % step: fewer rooms
    ([_view("a", rooms=3), _view("b", rooms=1)], {"room_counts": {"b": 4}}, "a"),  # counted rooms win
    ([_view("a", cpu=95, rooms=0), _view("b", cpu=50, rooms=9)], {}, "b"),  # over the CPU limit (90 %)
    ([_view("a", cpu=99), _view("b", cpu=91)], {}, "b"),  # all over it: still the least loaded
    ([_view("a", cpu=10, rooms=2, max_rooms=2), _view("b", cpu=95)], {}, "b"),  # rooms: hard, CPU: soft
    ([_view("a", state=DRAINING), _view("b", cpu=70)], {}, "b"),
    ([_view("a", rooms=2, max_rooms=2), _view("b", rooms=9)], {}, "b"),
    ([_view("a", region="eu", cpu=60), _view("b", region="us")], {"region": "eu"}, "a"),
    ([_view("a", region="eu", state=DRAINING), _view("b", region="us")], {"region": "eu"}, "b"),
    ([_view("a", rooms=1, max_rooms=2), _view("b", rooms=1, max_rooms=10)], {}, "b"),  # utilisation
    ([], {}, None),
])
def test_choose_node_rules(nodes, kwargs, expected):
    chosen = choose_node(nodes, **kwargs)
    assert (chosen.node_id if chosen else None) == expected


# ---------------------------------------------------------------- concurrent placement


async def test_concurrent_first_placements_agree(cluster):
    for i in range(3):
        await cluster.node(f"ND_{i}")
    controls = [await cluster.control() for _ in range(8)]  # 8 separate etcd clients
    outcomes: list[tuple[str, bool]] = []
    for directory, placement in controls:
        await nodes_seen(directory, "ND_0", "ND_1", "ND_2")
        txn = placement.store.txn_create_if_absent

        async def counted(key, *args, _txn=txn, **kwargs):
            created, current = await _txn(key, *args, **kwargs)
            outcomes.append((key, created))
            return created, current

        placement.store.txn_create_if_absent = counted
    for round_ in range(5):
        room = f"race{round_}"
        started = time.monotonic()
        results = await asyncio.gather(*(p.place_room(room) for _, p in controls))
        timing(f"8 concurrent first placements of {room}", time.monotonic() - started)
        assert len({(r.node_id, r.room_sid) for r in results}) == 1, results
        created = [c for key, c in outcomes if key == f"rooms/{room}"]
        assert created.count(True) == 1 and len(created) == 8  # one winner, 7 read its record
    stored = await room_keys(await cluster.store())
    assert set(stored) == {f"race{i}" for i in range(5)}


async def test_concurrent_first_placements_from_processes(etcd, cluster):
    for i in range(3):
        await cluster.node(f"ND_{i}")
    _, placement = await cluster.control()
    agents = [Agent("place", etcd.endpoint, cluster.prefix, "contested", "--nodes", "3") for _ in range(2)]
    try:
        for agent in agents:
            assert await agent.line(20) == "WAITING"
        for agent in agents:
            agent.send("go")
        mine = await placement.place_room("contested")
        theirs = [json.loads(await agent.line()) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert {(t["node_id"], t["room_sid"]) for t in theirs} == {(mine.node_id, mine.room_sid)}
    stored = await room_keys(await cluster.store())
    assert list(stored) == ["contested"] and stored["contested"].node_id == mine.node_id


# ---------------------------------------------------------------- lease loss and etcd outages


async def test_lost_lease_reregisters_and_reclaims_rooms(cluster):
    directory, placement = await cluster.control()
    hosted: dict[str, RoomRecord] = {}
    lost: list[str] = []

    async def reclaim(lease_id: int) -> None:
        lost.extend(await claim_rooms(a.store, lease_id, list(hosted.values())))

    a = await cluster.node("ND_a", ttl=6, on_registered=reclaim)  # keepalive every 2 s
    b = await cluster.node("ND_b")
    await b.set_state(DRAINING)
    await directory.wait_until(lambda d: d.get("ND_b") and d.get("ND_b").info.state == DRAINING, WAIT)
    for name in ("r1", "r2"):
        hosted[name] = await placement.place_room(name)
    assert {r.node_id for r in hosted.values()} == {"ND_a"}
    await b.set_state(SERVING)
    old_lease = a.lease_id

    store = await cluster.store()
    await store.revoke(old_lease)  # what etcd does when the node was cut off for longer than its TTL
    assert await room_keys(store) == {}
    await directory.wait_until(lambda d: d.get("ND_a") is None and d.get("ND_b").info.state == SERVING, WAIT)
    moved = await placement.place_room("r2")  # re-placed while ND_a is away
    assert moved.node_id == "ND_b"

    await directory.wait_until(lambda d: d.get("ND_a") is not None, WAIT)
    await a.wait_registered(WAIT)
    assert a.lease_id != old_lease and a.registrations == 2
    await wait_for(lambda: lost, WAIT, what="the re-claim hook")
    assert lost == ["r2"]  # ND_a must close its copy of r2
    stored = await room_keys(store)
    assert stored["r1"].node_id == "ND_a" and stored["r1"].room_sid == hosted["r1"].room_sid
    assert (await store.get("rooms/r1")).lease == a.lease_id
    assert stored["r2"].node_id == "ND_b"


async def test_etcd_outage_and_restart(prefix):
    server = EtcdServer().start()
    c = Cluster(server.endpoint, prefix, timeout=1.0)
    try:
        directory, placement = await c.control()
        a = await c.node("ND_a")
        await nodes_seen(directory, "ND_a")
        known = await placement.place_room("known")
        lease_before = a.lease_id
        watch_store = await c.store()
        seen: list = []
        _, revision = await watch_store.get_prefix("probe/")  # see test_store_operations_keys_leases_txn_watch

        async def follow():
            async with contextlib.aclosing(watch_store.watch_prefix("probe/", start_revision=revision + 1)) as batches:
                async for batch in batches:
                    seen.extend((e.kind, e.key, e.value) for e in batch)

        watcher = asyncio.create_task(follow())
        await watch_store.put("probe/before", b"1")

        server.stop(kill=True)
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            await placement.place_room("new-room")
        took = time.monotonic() - started
        timing("placement of a new room with etcd down -> Unavailable", took)
        assert info.value.msg == ETCD_DOWN and info.value.status == 503
        assert took < c.timeout + 0.5
        assert await placement.lookup("known") == known  # from the local copy
        assert await placement.place_room("known") == known
        with pytest.raises(Unavailable):
            await placement.lookup("never-seen")
        with pytest.raises(EtcdUnavailable):
            await watch_store.get("anything")
        await asyncio.sleep(TTL + 1)  # longer than the lease TTL: the node keeps trying

        server.start()  # same ports, same data dir
        restarted = time.monotonic()
        async with asyncio.timeout(WAIT):
            while True:  # the channel reconnects within about a second
                try:
                    await placement.place_room("after-restart")
                    break
                except Unavailable:
                    await asyncio.sleep(0.05)
        timing("first successful placement after etcd restart", time.monotonic() - restarted)
        # The registry carries on; etcd renews leases when it restarts, so the old one survives
        # (the new-lease path is covered by the next test).
        await a.wait_registered(WAIT)
        print(f"[info] lease after restart: {'same' if a.lease_id == lease_before else 'new'}")
        await watch_store.put("probe/after", b"2")
        async with asyncio.timeout(WAIT):
            while len(seen) < 2:
                await asyncio.sleep(0.05)
        assert seen == [("put", "probe/before", b"1"), ("put", "probe/after", b"2")]  # resumed, no repeats
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

        b = await c.node("ND_b")  # the directory's watch resumed too
        await nodes_seen(directory, "ND_b")
        await directory.wait_until(lambda d: d.get("ND_a") is not None, WAIT)
        a.current_load.participants = 5
        await directory.wait_until(lambda d: d.get("ND_a").load.participants == 5, WAIT)
        assert b.registered
        stored = await room_keys(await c.store())
        assert stored["known"] == known  # one record, still on its node
        assert set(stored) == {"known", "after-restart"}
    finally:
        await c.close()
        server.cleanup()


async def test_unresponsive_etcd_fails_within_the_dial_timeout(prefix):
    """An endpoint that accepts TCP but never answers (a hung etcd, a black hole)."""
    import socket

    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # never accepted, never answered
        store = await EtcdStore([f"127.0.0.1:{hole.getsockname()[1]}"], prefix, timeout=0.5).connect()
        placement = Placement(store, NodeDirectory(store))
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable) as info:
                await placement.place_room("r")
            took = time.monotonic() - started
            timing("placement against an unresponsive etcd -> Unavailable (dial_timeout 0.5 s)", took)
            assert info.value.msg == ETCD_DOWN and took < 0.5 * 2 + 0.5  # directory refresh + txn
        finally:
            await store.close()


async def test_watch_view_resumes_after_restart_with_expired_lease(prefix):
    """etcd down longer than TTL, then a node's lease is revoked: the node registers anew."""
    server = EtcdServer().start()
    c = Cluster(server.endpoint, prefix, timeout=1.0)
    try:
        directory, placement = await c.control()
        a = await c.node("ND_a")
        old = a.lease_id
        server.stop()
        await asyncio.sleep(1.0)
        server.start()
        admin = await c.store()
        await admin.revoke(old)
        started = time.monotonic()
        await directory.wait_until(lambda d: d.get("ND_a") is not None and d.get("ND_a").lease != old, WAIT)
        timing("re-registration under a new lease after the old one vanished", time.monotonic() - started)
        await wait_for(lambda: a.registrations == 2, WAIT, what="the second registration")
        assert a.lease_id not in (0, old)
        assert (await placement.place_room("r")).node_id == "ND_a"
    finally:
        await c.close()
        server.cleanup()


# ---------------------------------------------------------------- auth and TLS


async def test_username_password_and_token_loss_on_restart(prefix):
    server = EtcdServer().start()
    try:
        admin = await EtcdStore([server.endpoint], prefix).connect()
        auth = admin.client.auth
        await auth.user_add("root", "rootpw")
        await auth.role_add("root")
        await auth.user_grant_role("root", "root")
        await auth.auth_enable()
        await admin.close()

        store = await EtcdStore([server.endpoint], prefix, username="root", password="rootpw", timeout=2).connect()
        await store.put("k", b"v")
        server.restart()  # simple tokens do not survive a restart: the store authenticates again
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    assert (await store.get("k")).value == b"v"
                    break
                except EtcdUnavailable:
                    await asyncio.sleep(0.1)
        assert store._token_generation == 2  # it did authenticate a second time
        await store.close()

        wrong = await EtcdStore([server.endpoint], prefix, username="root", password="nope", timeout=2).connect()
        with pytest.raises(EtcdUnavailable) as info:
            await wrong.get("k")
        assert "credentials" in info.value.msg
        await wrong.close()
    finally:
        server.cleanup()


async def test_tls_with_client_certificates(prefix, tmp_path):
    tls = make_tls_files(tmp_path)
    server = EtcdServer(tls=tls).start()
    try:
        store = await EtcdStore([server.url], prefix, ca_file=tls.ca, cert_file=tls.client_cert,
                                key_file=tls.client_key, timeout=2).connect()
        directory = NodeDirectory(store).start()
        registry = NodeRegistry(store, NodeInfo("ND_tls"), ttl=TTL).start()
        await registry.wait_registered(WAIT)
        await directory.wait_until(lambda d: d.get("ND_tls") is not None, WAIT)
        await registry.stop()
        await directory.stop()
        await store.close()
        no_cert = await EtcdStore([server.url], prefix, ca_file=tls.ca, timeout=1).connect()
        with pytest.raises(EtcdUnavailable):
            await no_cert.get("x")
        await no_cert.close()
    finally:
        server.cleanup()


# ---------------------------------------------------------------- import hygiene


def test_only_the_store_imports_the_etcd_client():
    import pathlib
    import re
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2] / "python" / "trackyard"
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if re.search(r"^\s*(from|import)\s+(etcd3aio|aetcd|etcd3|etcd)\b", p.read_text(), re.M))
    assert importers == ["cluster/store.py"]
    # The single-node server never loads an etcd client.
    probe = "import sys, trackyard.server, trackyard.cli; print(any(m.split('.')[0] in " \
            "('etcd3aio', 'aetcd', 'etcd3') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
