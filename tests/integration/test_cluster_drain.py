"""Draining a media node (the first SIGTERM) against a real etcd and real node processes:
the node turns unready and `draining` in etcd, its participants are told to rejoin
(leave{RECONNECT}) and land on another media node through a control node, and it exits 0
within `node.drain_timeout`; a second SIGTERM makes it exit at once.

Every trackyard node is a real process on loopback (tests/support/cluster_nodes.py), ended
by PID. Durations are printed (run with ``-s``), not asserted tightly.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import aiohttp
from livekit.protocol import models, rtc

from support.cluster_nodes import TestCluster
from support.etcd import EtcdServer, etcd_available, unique_prefix
from support.signal_client import SignalClient
from support.timing import timing
from support.tokens import join_token

if not etcd_available():
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

WAIT = 15.0
RECONNECT = rtc.LeaveRequest.Action.RECONNECT


async def join(node, clients, identity: str, room: str):
    client = await SignalClient.connect(node.ws_url, join_token(identity, room))
    clients.append(client)
    return client, await client.expect("join", timeout=WAIT)


async def http_get(node, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + path, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status, await resp.text()


async def wait_until(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_exit(node, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while node.proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{node.node_id} did not exit within {timeout}s")
        await asyncio.sleep(0.05)
    return node.proc.returncode


async def rooms_on_a_then_b(cluster, clients, rooms: dict[str, list[str]], **sections):
    """Media node A and a control node, the given rooms joined (all on A), then media node B."""
    (a, control) = cluster.add("media", "control", **sections)
    await cluster.wait_media(1)
    joined = {}
    for room, identities in rooms.items():
        for identity in identities:
            client, response = await join(control, clients, identity, room)
            assert response.server_info.node_id == a.node_id
            joined[identity] = (client, response)
    (b,) = cluster.add("media", **sections)
    await cluster.wait_media(2)
    return a, b, control, joined


async def test_drain_moves_participants_to_another_node_and_exits_within_the_deadline(etcd, clients):
    deadline = 10.0
    cluster = TestCluster(etcd, unique_prefix("drain"))
    try:
        # two more rooms (one participant each) make the drain last a little: moves are spread
        a, b, control, joined = await rooms_on_a_then_b(
            cluster, clients, {"moving": ["alice", "bob"], "extra1": ["carol"], "extra2": ["dave"]},
            node={"drain_timeout": deadline})
        for node in (a, b, control):
            assert await http_get(node, "/readyz") == (200, "ready")
            assert await http_get(node, "/healthz") == (200, "OK")
            assert await http_get(node, "/") == (200, "OK")

        a.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        status, text = await wait_until(
            lambda: _status_if(a, "/readyz", 503), "A's /readyz to turn 503", timeout=2.0)
        timing("SIGTERM to /readyz 503", time.monotonic() - started)
        assert text == "draining"
        assert await http_get(a, "/healthz") == (200, "OK")
        # /readyz turns 503 as the drain starts; the etcd write of the state follows it
        nodes = await wait_until(lambda: _state_if(cluster, a.node_id, "draining"), "A marked draining in etcd")
        assert nodes[a.node_id]["state"] == "draining" and nodes[b.node_id]["state"] == "serving"

        for identity in ("alice", "bob"):
            leave = await joined[identity][0].expect("leave", timeout=WAIT)
            assert leave.action == RECONNECT, leave
        timing("SIGTERM to leave{RECONNECT} in the largest room", time.monotonic() - started)

        _, rejoin = await join(control, clients, "alice", "moving")  # what the SDK does on RECONNECT
        timing("SIGTERM to a rejoin on the new node", time.monotonic() - started)
        assert rejoin.server_info.node_id == b.node_id
        assert (await cluster.read("rooms/"))["moving"]["node_id"] == b.node_id
        for identity in ("carol", "dave"):
            leave = await joined[identity][0].expect("leave", timeout=WAIT)
            assert leave.action == RECONNECT, leave

        assert await wait_exit(a, deadline + 5.0) == 0
        took = time.monotonic() - started
        timing(f"drain duration (SIGTERM to exit, 3 rooms, drain_timeout {deadline:g} s)", took)
        assert took < deadline + 5.0
        assert a.node_id not in await cluster.read("nodes/")
        assert await http_get(b, "/readyz") == (200, "ready")
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()


async def test_second_sigterm_exits_at_once_and_everyone_is_told_to_rejoin(etcd, clients):
    """A long deadline and participants that never leave on their own: the drain moves one
    room a second; a second SIGTERM stops the node at once, and the participants of rooms not
    moved yet are told to rejoin all the same."""
    cluster = TestCluster(etcd, unique_prefix("drain2"))
    try:
        rooms = {f"stay{i}": [f"p{i}"] for i in range(4)}
        a, b, control, joined = await rooms_on_a_then_b(cluster, clients, rooms, node={"drain_timeout": 60})

        a.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        first = await wait_until(lambda: _any_leave(joined), "the first room to move", timeout=WAIT)
        timing("SIGTERM to the first leave{RECONNECT}", time.monotonic() - started)
        assert first.action == RECONNECT
        assert a.alive()  # three rooms still to move, a second apart: still draining
        assert (await http_get(a, "/readyz"))[0] == 503

        a.proc.send_signal(signal.SIGTERM)
        second = time.monotonic()
        assert await wait_exit(a, 5.0) == 0
        timing("second SIGTERM to exit", time.monotonic() - second)
        timing("drain duration until the second SIGTERM cut it short", second - started)
        for identity, (client, _) in joined.items():
            leave = await client.expect("leave", timeout=WAIT)
            assert leave.action == RECONNECT, (identity, leave)
            assert leave.reason == models.DisconnectReason.SERVER_SHUTDOWN
        assert a.node_id not in await cluster.read("nodes/")
        _, rejoin = await join(control, clients, "p3", "stay3")
        assert rejoin.server_info.node_id == b.node_id
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()


async def test_readyz_is_503_on_every_cluster_role_while_etcd_is_unreachable():
    etcd = EtcdServer().start()
    cluster = TestCluster(etcd, unique_prefix("ready"))
    try:
        nodes = cluster.add("media", "control")
        await cluster.wait_media(1)
        for node in nodes:
            assert await http_get(node, "/readyz") == (200, "ready")
        etcd.stop()
        for node in nodes:
            status, text = await wait_until(lambda n=node: _status_if(n, "/readyz", 503),
                                            f"{node.node_id}'s /readyz to turn 503", timeout=WAIT)
            assert "etcd" in text, text
            assert await http_get(node, "/healthz") == (200, "OK")  # never depends on etcd
        etcd.start()
        for node in nodes:
            await wait_until(lambda n=node: _status_if(n, "/readyz", 200), f"{node.node_id} ready again", timeout=WAIT)
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()
        etcd.cleanup()


async def _status_if(node, path: str, status: int):
    got = await http_get(node, path)
    return got if got[0] == status else None


async def _state_if(cluster, node_id: str, state: str):
    nodes = await cluster.read("nodes/")
    return nodes if nodes.get(node_id, {}).get("state") == state else None


async def _any_leave(joined):
    for client, _ in joined.values():
        leaves = client.of("leave")
        if leaves:
            return leaves[0]
    return None
