"""A room's settings and metadata survive its move to another media node (issue 4): real
etcd, real node processes (tests/support/cluster_nodes.py), real `livekit-api` and signal
clients on loopback.

Settings set with CreateRoom and UpdateRoomMetadata are saved in ``room_state/`` (no lease)
and restored when the room is placed again after its node was killed (SIGKILL) or drained
(SIGTERM): the room keeps its sid, metadata, max_participants, empty and departure
timeouts. A room that ends for good (DeleteRoom, or its departure timeout on a serving node)
takes its saved state with it.
"""

from __future__ import annotations

import pytest
from livekit import api

from support.cluster_nodes import LEASE_TTL, TestCluster
from support.etcd import etcd_available, unique_prefix
from support.servers import API_KEY, API_SECRET, wait_for
from support.signal_client import SignalClient
from support.tokens import join_token

if not etcd_available():  # fail loudly: cluster acceptance tests
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

WAIT = 15.0
SETTINGS = {"empty_timeout": 120, "departure_timeout": 33, "max_participants": 3}


async def join(node, clients, identity: str, room: str):
    client = await SignalClient.connect(node.ws_url, join_token(identity, room))
    clients.append(client)
    return client, await client.expect("join", timeout=WAIT)


def settings_of(room) -> dict:
    return {"empty_timeout": room.empty_timeout, "departure_timeout": room.departure_timeout,
            "max_participants": room.max_participants, "metadata": room.metadata}


async def configured_room(cluster, control_a, control_b, name: str):
    """CreateRoom through one control node, UpdateRoomMetadata through the other."""
    async with api.LiveKitAPI(control_a.url, API_KEY, API_SECRET) as lk:
        created = await lk.room.create_room(api.CreateRoomRequest(name=name, metadata="v1", **SETTINGS))
    async with api.LiveKitAPI(control_b.url, API_KEY, API_SECRET) as lk:
        updated = await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=name, metadata="v2"))
    assert updated.sid == created.sid and updated.metadata == "v2"
    saved = (await cluster.read("room_state/"))[name]
    assert saved["room_sid"] == created.sid and saved["metadata"] == "v2", saved
    assert {k: saved[k] for k in SETTINGS} == SETTINGS, saved
    return created


async def check_moved(cluster, control, clients, name: str, old_sid: str, old_host: str) -> None:
    """A rejoin lands on another node, in a room with the same sid and settings; the
    restored max_participants is enforced there; ListRooms says the same."""
    _, rejoin = await join(control, clients, "alice", name)
    assert rejoin.server_info.node_id != old_host
    assert rejoin.room.sid == old_sid
    assert settings_of(rejoin.room) == {**SETTINGS, "metadata": "v2"}
    async with api.LiveKitAPI(control.url, API_KEY, API_SECRET) as lk:
        listed = (await lk.room.list_rooms(api.ListRoomsRequest(names=[name]))).rooms
    assert [(r.sid, settings_of(r)) for r in listed] == [(old_sid, {**SETTINGS, "metadata": "v2"})]
    assert (await cluster.read("rooms/"))[name]["node_id"] == rejoin.server_info.node_id
    # max_participants 3 came along: two more fit, the fourth is refused
    for identity in ("bob", "carol"):
        await join(control, clients, identity, name)
    with pytest.raises(Exception) as refused:
        await SignalClient.connect(control.ws_url, join_token("dave", name))
    assert "500" in str(refused.value) or "max participants" in str(refused.value), refused.value


async def test_room_settings_survive_media_node_kill(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("state-kill"))
    try:
        m1, m2, c1, c2 = cluster.add("media", "media", "control", "control")
        await cluster.wait_media(2)
        room = await configured_room(cluster, c1, c2, "keeps-settings")
        _, first = await join(c1, clients, "alice", "keeps-settings")
        assert settings_of(first.room) == {**SETTINGS, "metadata": "v2"}
        host = first.server_info.node_id
        victim = next(n for n in (m1, m2) if n.node_id == host)
        victim.kill()
        await wait_for(lambda: _absent(cluster, "keeps-settings"), LEASE_TTL + WAIT, 0.1, "the dead node's record")
        assert "keeps-settings" in await cluster.read("room_state/")  # outlives the node
        await check_moved(cluster, c2, clients, "keeps-settings", room.sid, host)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def test_room_settings_survive_drain(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("state-drain"), node={"drain_timeout": 10})
    try:
        m1, m2, c1, c2 = cluster.add("media", "media", "control", "control")
        await cluster.wait_media(2)
        room = await configured_room(cluster, c2, c1, "drained-settings")
        alice, first = await join(c1, clients, "alice", "drained-settings")
        host = first.server_info.node_id
        victim = next(n for n in (m1, m2) if n.node_id == host)
        victim.proc.send_signal(15)
        leave = await alice.expect("leave", timeout=WAIT)
        assert leave.action == 2  # RECONNECT (LeaveRequest.Action)
        await check_moved(cluster, c1, clients, "drained-settings", room.sid, host)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def test_room_state_goes_with_the_room(etcd, clients):
    """DeleteRoom removes the saved state; so does a room closing by its departure timeout
    on a serving node. A later room of that name starts afresh."""
    cluster = TestCluster(etcd, unique_prefix("state-end"))
    try:
        _, c1 = cluster.add("media", "control")
        await cluster.wait_media(1)
        async with api.LiveKitAPI(c1.url, API_KEY, API_SECRET) as lk:
            gone = await lk.room.create_room(api.CreateRoomRequest(name="deleted", metadata="m"))
            assert "deleted" in await cluster.read("room_state/")
            await lk.room.delete_room(api.DeleteRoomRequest(room="deleted"))
            await wait_for(lambda: _absent(cluster, "deleted", "room_state/"), WAIT, 0.1, "the deleted room's state gone")
            again = await lk.room.create_room(api.CreateRoomRequest(name="deleted"))
            assert again.sid != gone.sid and again.metadata == ""

            await lk.room.create_room(api.CreateRoomRequest(name="short", departure_timeout=1, metadata="m"))
        alice, _ = await join(c1, clients, "alice", "short")
        await alice.leave()
        await wait_for(lambda: _absent(cluster, "short", "room_state/"), WAIT, 0.1, "the closed room's state gone")
        assert "short" not in await cluster.read("rooms/")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def _absent(cluster, name: str, prefix: str = "rooms/") -> bool:
    return name not in await cluster.read(prefix)
