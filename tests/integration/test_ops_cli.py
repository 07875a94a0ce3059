"""Operator commands (`trackyard nodes list`, `rooms list`, `node drain|undrain`) run as real
processes against a real etcd and real media and control nodes on loopback.

A drain requested this way moves the node's rooms like a SIGTERM drain, but the node stays
up: unready (`/readyz` 503, `/healthz` 200), `draining` in etcd, skipped by placement, until
`node undrain` puts it back in service.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp
from livekit.protocol import rtc

from support.cluster_nodes import TestCluster
from support.etcd import EtcdServer, etcd_available, unique_prefix
from support.servers import API_KEY, API_SECRET, http_get, wait_for
from support.signal_client import SignalClient
from support.tokens import join_token

if not etcd_available():
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

WAIT = 15.0
RECONNECT = rtc.LeaveRequest.Action.RECONNECT


async def trackyard(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run `python -m trackyard ARGS` (no LIVEKIT_ variables): (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "TRACKYARD_"))}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "trackyard", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


def at(cluster: TestCluster) -> list[str]:
    return ["--etcd", cluster.etcd.endpoint, "--prefix", cluster.prefix]


async def ops_json(*args: str):
    code, out, err = await trackyard(*args, "--json")
    assert code == 0, err
    return json.loads(out)


async def probe(node, path: str) -> tuple[int, str]:
    status, text, _ = await http_get(node.url + path, timeout=aiohttp.ClientTimeout(total=5))
    return status, text


async def join(node, clients, identity: str, room: str):
    client = await SignalClient.connect(node.ws_url, join_token(identity, room))
    clients.append(client)
    return client, await client.expect("join", timeout=WAIT)


async def test_nodes_and_rooms_list(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("ops-list"))
    try:
        (a, control) = cluster.add("media", "control")
        await cluster.wait_media(1)
        _, joined = await join(control, clients, "alice", "standup")
        assert joined.server_info.node_id == a.node_id
        (b,) = cluster.add("media")
        await cluster.wait_media(2)

        nodes = {n["node_id"]: n for n in await ops_json("nodes", "list", *at(cluster))}
        assert set(nodes) == {a.node_id, b.node_id}  # media nodes only: control nodes do not register
        assert nodes[a.node_id]["state"] == nodes[b.node_id]["state"] == "serving"
        assert nodes[a.node_id]["rooms"] == 1 and nodes[b.node_id]["rooms"] == 0
        assert nodes[a.node_id]["rtc_address"] == f"127.0.0.1:{a.config.rtc.udp_port}"
        assert not nodes[a.node_id]["drain_requested"]
        code, table, err = await trackyard("nodes", "list", *at(cluster))
        assert code == 0, err
        header, *rows = table.splitlines()
        assert header.split()[:3] == ["NODE", "STATE", "DRAIN"]
        assert sorted(r.split()[0] for r in rows) == sorted([a.node_id, b.node_id])

        # the same through the config file a node runs with
        code, out, err = await trackyard("nodes", "list", "--config", str(control.config_path), "--json")
        assert code == 0, err
        assert {n["node_id"] for n in json.loads(out)} == {a.node_id, b.node_id}

        api = ["--url", control.ws_url, "--api-key", API_KEY, "--api-secret", API_SECRET]
        (room,) = await ops_json("rooms", "list", *at(cluster), *api)
        assert (room["name"], room["node_id"], room["participants"]) == ("standup", a.node_id, 1)
        assert room["sid"] == joined.room.sid
        (room,) = await ops_json("rooms", "list", *at(cluster))  # etcd only: no participant counts
        assert room["node_id"] == a.node_id and room["participants"] is None
        (room,) = await ops_json("rooms", "list", *api)  # RoomService only: no node
        assert room["participants"] == 1 and room["node_id"] is None
        code, table, _ = await trackyard("rooms", "list", *at(cluster), *api)
        assert code == 0 and "standup" in table and a.node_id in table
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()


async def test_drain_and_undrain_a_node(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("ops-drain"), node={"drain_timeout": 10})
    try:
        (a, control) = cluster.add("media", "control")
        await cluster.wait_media(1)
        alice, _ = await join(control, clients, "alice", "moving")
        (b,) = cluster.add("media")
        await cluster.wait_media(2)
        for node in (a, b):
            assert await probe(node, "/readyz") == (200, "ready")

        code, out, err = await trackyard("node", "drain", a.node_id, "--reason", "kernel upgrade", *at(cluster))
        assert code == 0, err
        assert a.node_id in out
        # the same drain as SIGTERM: unready at once, rooms moved, clients told to rejoin...
        await wait_for(lambda: _status_is(a, "/readyz", 503), WAIT, what="A's /readyz to turn 503")
        assert await probe(a, "/readyz") == (503, "draining")
        assert await probe(a, "/healthz") == (200, "OK")
        leave = await alice.expect("leave", timeout=WAIT)
        assert leave.action == RECONNECT
        _, rejoined = await join(control, clients, "alice", "moving")
        assert rejoined.server_info.node_id == b.node_id
        # ...but the node stays up and drained; placement skips it
        nodes = await wait_for(lambda: _nodes_if(cluster, lambda n: n[a.node_id]["rooms"] == 0), WAIT, what="A empty")
        assert nodes[a.node_id]["state"] == "draining" and nodes[a.node_id]["drain_requested"]
        assert nodes[a.node_id]["drain_reason"] == "kernel upgrade"
        for i in range(3):
            _, response = await join(control, clients, f"p{i}", f"new{i}")
            assert response.server_info.node_id == b.node_id
        await asyncio.sleep(1.0)
        assert a.alive()
        assert (await probe(a, "/readyz"))[0] == 503
        code, out, _ = await trackyard("node", "drain", a.node_id, "--wait", "10", *at(cluster))
        assert code == 0 and "hosts no room" in out  # already drained: returns at once

        code, out, err = await trackyard("node", "undrain", a.node_id, "--wait", "10", *at(cluster))
        assert code == 0, err
        assert "serving" in out
        await wait_for(lambda: _status_is(a, "/readyz", 200), WAIT, what="A ready again")
        nodes = {n["node_id"]: n for n in await ops_json("nodes", "list", *at(cluster))}
        assert nodes[a.node_id]["state"] == "serving" and not nodes[a.node_id]["drain_requested"]

        # A takes new rooms again: with B drained, a new room can only land on A
        code, _, err = await trackyard("node", "drain", b.node_id, "--wait", "15", *at(cluster))
        assert code == 0, err
        _, response = await join(control, clients, "zoe", "after-undrain")
        assert response.server_info.node_id == a.node_id

        # SIGTERM on an operator-drained node: it exits as usual
        b.proc.terminate()
        assert b.proc.wait(15) == 0
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()


async def test_undrain_during_a_drain_keeps_the_rooms_not_moved_yet(etcd, clients):
    """With a long deadline rooms move a second apart; an undrain after the first move stops
    the drain: the other rooms stay on their node, their participants are not told to leave."""
    cluster = TestCluster(etcd, unique_prefix("ops-undrain"), node={"drain_timeout": 60})
    try:
        (a, control) = cluster.add("media", "control")
        await cluster.wait_media(1)
        joined = {f"stay{i}": (await join(control, clients, f"p{i}", f"stay{i}"))[0] for i in range(4)}
        (b,) = cluster.add("media")
        await cluster.wait_media(2)

        code, _, err = await trackyard("node", "drain", a.node_id, *at(cluster))
        assert code == 0, err
        moved = await wait_for(lambda: [r for r, c in joined.items() if c.of("leave")], WAIT, what="a first move")
        code, _, err = await trackyard("node", "undrain", a.node_id, "--wait", "10", *at(cluster))
        assert code == 0, err
        await wait_for(lambda: _status_is(a, "/readyz", 200), WAIT, what="A ready again")
        await asyncio.sleep(2.5)  # longer than the gap between two moves: nothing else moves
        moved = [r for r, c in joined.items() if c.of("leave")]
        assert 1 <= len(moved) < 4, moved
        rooms = {r["name"]: r["node_id"] for r in await ops_json("rooms", "list", *at(cluster))}
        for room in set(joined) - set(moved):
            assert rooms[room] == a.node_id
        _, response = await join(control, clients, "late", sorted(set(joined) - set(moved))[0])
        assert response.server_info.node_id == a.node_id  # the room is still there, on A
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()


async def test_errors_are_reported_with_an_exit_status(etcd):
    cluster = TestCluster(etcd, unique_prefix("ops-errors"))
    code, _, err = await trackyard("node", "drain", "ND_nobody", *at(cluster))
    assert code == 1 and "no registered media node 'ND_nobody'" in err
    code, _, err = await trackyard("node", "undrain", "ND_nobody", *at(cluster))
    assert code == 1 and "ND_nobody" in err
    code, _, err = await trackyard("nodes", "list")
    assert code == 2 and "--etcd" in err
    code, _, err = await trackyard("rooms", "list")
    assert code == 2 and "--url" in err
    code, _, err = await trackyard("nodes", "list", "--etcd", "no-port-here")
    assert code == 2 and "host:port" in err
    closed = EtcdServer()  # never started: its port refuses connections
    code, _, err = await trackyard("nodes", "list", "--etcd", closed.endpoint, "--timeout", "0.5")
    assert code == 1 and "etcd unreachable" in err, err
    closed.cleanup()


async def _status_is(node, path: str, status: int):
    got = await probe(node, path)
    return got if got[0] == status else None


async def _nodes_if(cluster, predicate):
    code, out, _ = await trackyard("nodes", "list", *at(cluster), "--json")
    if code != 0:
        return None
    nodes = {n["node_id"]: n for n in json.loads(out)}
    return nodes if predicate(nodes) else None
