"""Control and media roles against a real etcd: clients join through any control node, the
signal relay carries them to the media node that hosts their room, RoomService calls are
routed there (real `livekit-api`), and etcd outages and node crashes behave as documented.

Every trackyard node is a real process (`trackyard server --role ...`, tests/support/
cluster_nodes.py) on loopback, ended by PID. Timings are printed (run with ``-s``), never
asserted tightly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time

import aiohttp
import pytest
from livekit import api
from livekit.protocol import models, rtc
from livekit.protocol import room as rs

from support.cluster_nodes import LEASE_TTL, TestCluster
from support.etcd import EtcdServer, etcd_available, unique_prefix
from support.servers import API_KEY, API_SECRET, ServerProcess, make_config
from support.signal_client import SignalClient, encode_join_request
from support.timing import timing
from support.tokens import join_token
from trackyard.rpc.auth import NodeCredentials
from trackyard.rpc.client import NodeClient

if not etcd_available():  # fail loudly: these are the cluster's acceptance tests
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

Reason = models.DisconnectReason
State = models.ParticipantInfo.State
WAIT = 15.0


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(etcd):
    """Two media nodes and two control nodes, shared by the tests that neither kill nodes
    nor stop etcd (each uses rooms of its own)."""
    c = TestCluster(etcd, unique_prefix("roles"))
    try:
        c.add("media", "media", "control", "control")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


@pytest.fixture
async def ready(cluster, request):
    await cluster.wait_media(2)
    failed = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed:  # the nodes' logs, past pytest's capture
        print(f"\n{request.node.name} failed; node logs:\n{cluster.logs()}", file=sys.__stderr__)


def controls(cluster):
    return [n for n in cluster.nodes if n.role == "control" and n.alive()]


def medias(cluster):
    return [n for n in cluster.nodes if n.role == "media" and n.alive()]


async def join(node, clients, identity: str, room: str, *, v1: bool = True, **grants):
    client = await SignalClient.connect(node.ws_url, join_token(identity, room, **grants), v1=v1)
    clients.append(client)
    return client, await client.expect("join", timeout=WAIT)


async def upgrade_status(node, token: str, room: str = "") -> tuple[int, str]:
    """The HTTP answer to a /rtc/v1 upgrade request (101 when accepted)."""
    query = {"join_request": encode_join_request(rtc.JoinRequest(client_info=models.ClientInfo(protocol=17)))}
    if room:
        query["room"] = room
    headers = {"Authorization": f"Bearer {token}", "Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{node.url}/rtc/v1", params=query, headers=headers) as resp:
            return resp.status, (await resp.text() if resp.status != 101 else "")


async def room_api(node) -> api.LiveKitAPI:
    return api.LiveKitAPI(node.url, API_KEY, API_SECRET)


async def twirp_error(awaitable) -> tuple[str, str, int]:
    with pytest.raises(api.TwirpError) as info:
        await awaitable
    return info.value.code, info.value.message, info.value.status


async def node_rooms(cluster) -> dict[str, list[str]]:
    """Each live media node's own rooms, asked over the internal RoomAdmin gRPC."""
    out = {}
    registered = await cluster.read("nodes/")
    for node_id, info in registered.items():
        client = NodeClient(node_id, info["signal_address"], NodeCredentials({API_KEY: API_SECRET}))
        try:
            response = await client.admin.call("ListRooms", rs.ListRoomsRequest())
            out[node_id] = sorted(r.name for r in response.rooms)
        finally:
            await client.close()
    return out


# ---------------------------------------------------------------- joining through the relay


async def test_clients_of_different_control_nodes_see_each_other(ready, clients):
    c1, c2 = controls(ready)
    alice, join_a = await join(c1, clients, "alice", "meet")
    bob, join_b = await join(c2, clients, "bob", "meet", v1=False)
    assert join_a.room.sid == join_b.room.sid and join_a.room.sid.startswith("RM_")
    assert [p.identity for p in join_b.other_participants] == ["alice"]
    assert join_b.subscriber_primary is True and join_a.subscriber_primary is False  # v0 / v1 carried
    seen = await alice.expect_update_for("bob", timeout=WAIT)
    assert seen.sid == join_b.participant.sid
    record = (await ready.read("rooms/"))["meet"]
    assert record["room_sid"] == join_a.room.sid  # the room took its placement record's sid
    assert join_a.server_info.node_id == record["node_id"]
    # requests and their answers keep flowing both ways
    assert (await alice.ping()).last_ping_timestamp > 0 and (await bob.ping()).last_ping_timestamp > 0
    start = len(alice.received)
    await bob.send(update_metadata=rtc.UpdateParticipantMetadata(metadata="hi", request_id=7))
    assert (await bob.expect("request_response", lambda r: r.request_id == 7)).reason == rtc.RequestResponse.NOT_ALLOWED
    await bob.leave()
    gone = await alice.expect_update_for("bob", lambda p: p.state == State.DISCONNECTED, timeout=WAIT)
    assert gone.disconnect_reason == Reason.CLIENT_INITIATED
    assert len(alice.received) > start


async def test_resume_through_the_other_control_node(ready, clients):
    c1, c2 = controls(ready)
    alice, _ = await join(c1, clients, "alice", "resume-room")
    bob, join_b = await join(c1, clients, "bob", "resume-room")
    await bob.drop()  # vanishes without a leave: the media node keeps bob for a resume
    again = await SignalClient.connect(c2.ws_url, join_token("bob", "resume-room"), reconnect_sid=join_b.participant.sid)
    clients.append(again)
    assert (await again.expect("reconnect", timeout=WAIT)).server_info.node_id == join_b.server_info.node_id
    update = await again.expect("update")
    assert {p.identity for p in update.participants} == {"alice", "bob"}
    # a resume of a room hosted nowhere gets the leave any host would send
    stray = await SignalClient.connect(c2.ws_url, join_token("carol", "no-such-room"), reconnect_sid="PA_nothere")
    clients.append(stray)
    leave = await stray.expect("leave", timeout=WAIT)
    assert (leave.reason, leave.action) == (Reason.STATE_MISMATCH, rtc.LeaveRequest.Action.RECONNECT)
    await asyncio.wait_for(stray.closed.wait(), WAIT)


async def test_concurrent_first_joins_end_in_one_room_on_one_node(ready, clients):
    c1, c2 = controls(ready)
    started = time.monotonic()
    results = await asyncio.gather(*(join(c1 if i % 2 else c2, clients, f"p{i}", "race") for i in range(6)))
    timing("6 concurrent first joins of one room through 2 control nodes", time.monotonic() - started)
    sids = {response.room.sid for _, response in results}
    hosts = {response.server_info.node_id for _, response in results}
    assert len(sids) == 1 and len(hosts) == 1, (sids, hosts)
    record = (await ready.read("rooms/"))["race"]
    assert record["room_sid"] in sids and record["node_id"] in hosts
    per_node = await node_rooms(ready)
    assert [n for n, names in per_node.items() if "race" in names] == [record["node_id"]]
    lk = await room_api(c2)
    try:
        listed = await lk.room.list_participants(rs.ListParticipantsRequest(room="race"))
        assert sorted(p.identity for p in listed.participants) == [f"p{i}" for i in range(6)]
    finally:
        await lk.aclose()


async def test_full_room_is_refused_with_the_same_status_through_the_relay(ready, clients):
    c1, c2 = controls(ready)
    lk = await room_api(c1)
    try:
        await lk.room.create_room(rs.CreateRoomRequest(name="tiny", max_participants=1))
    finally:
        await lk.aclose()
    await join(c1, clients, "alice", "tiny")
    for node in (c1, c2):
        status, text = await upgrade_status(node, join_token("bob", "tiny"))
        assert (status, text) == (500, "room has exceeded its max participants")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{node.url}/rtc/validate",
                                   headers={"Authorization": f"Bearer {join_token('bob', 'tiny')}"}) as resp:
                assert (resp.status, await resp.text()) == (500, "room has exceeded its max participants")
    # refusals decided on the control node are unchanged too
    assert (await upgrade_status(c2, "not-a-token"))[0] == 401
    assert (await upgrade_status(c2, join_token("bob", "tiny"), room="other")) == (403, "token is not valid for this room")


# ---------------------------------------------------------------- RoomService through the cluster


async def test_room_service_gives_the_same_answers_through_either_control_node(ready, clients):
    c1, c2 = controls(ready)
    apis = [await room_api(c1), await room_api(c2)]
    try:
        created = await apis[0].room.create_room(rs.CreateRoomRequest(name="svc", metadata="m0", empty_timeout=60))
        alice, join_a = await join(c2, clients, "alice", "svc", name="Alice")
        assert join_a.room.sid == created.sid and join_a.room.metadata == "m0"
        again = await apis[1].room.create_room(rs.CreateRoomRequest(name="svc"))  # create-or-update on its host
        assert again.sid == created.sid

        answers = []
        for lk in apis:
            listed = await lk.room.list_rooms(rs.ListRoomsRequest(names=["svc"]))
            participants = await lk.room.list_participants(rs.ListParticipantsRequest(room="svc"))
            one = await lk.room.get_participant(rs.RoomParticipantIdentity(room="svc", identity="alice"))
            missing = await twirp_error(lk.room.get_participant(rs.RoomParticipantIdentity(room="svc", identity="x")))
            nowhere = await lk.room.list_participants(rs.ListParticipantsRequest(room="never-placed"))
            nowhere_get = await twirp_error(lk.room.get_participant(
                rs.RoomParticipantIdentity(room="never-placed", identity="x")))
            nowhere_delete = await twirp_error(lk.room.delete_room(rs.DeleteRoomRequest(room="never-placed")))
            answers.append((
                [r.sid for r in listed.rooms], [p.SerializeToString(deterministic=True) for p in participants.participants],
                one.SerializeToString(deterministic=True), missing, len(nowhere.participants), nowhere_get,
                nowhere_delete))
        assert answers[0] == answers[1]
        assert answers[0][0] == [created.sid]
        assert answers[0][3] == ("not_found", "participant does not exist", 404)
        assert answers[0][5] == ("not_found", "requested room does not exist", 404)
        assert answers[0][6] == ("not_found", "requested room does not exist", 404)

        # changes through one control node reach the participant on the other
        room = await apis[1].room.update_room_metadata(rs.UpdateRoomMetadataRequest(room="svc", metadata="m1"))
        assert room.metadata == "m1"
        await alice.expect("room_update", lambda u: u.room.metadata == "m1", timeout=WAIT)
        info = await apis[0].room.update_participant(rs.UpdateParticipantRequest(room="svc", identity="alice",
                                                                                 metadata="x"))
        assert info.metadata == "x"
        assert (await apis[1].room.get_participant(rs.RoomParticipantIdentity(room="svc", identity="alice"))).metadata == "x"
        # errors decided on the host travel back as the same Twirp errors
        assert await twirp_error(apis[1].room.mute_published_track(rs.MuteRoomTrackRequest(
            room="svc", identity="alice", track_sid="TR_x", muted=False))) == (
            "failed_precondition", "remote unmute not enabled", 412)
        assert (await twirp_error(apis[0].room.create_room(rs.CreateRoomRequest(name="")))
                )[0] == "invalid_argument"
        await apis[0].room.remove_participant(rs.RoomParticipantIdentity(room="svc", identity="alice"))
        leave = await alice.expect("leave", timeout=WAIT)
        assert leave.reason == Reason.PARTICIPANT_REMOVED
        await apis[1].room.delete_room(rs.DeleteRoomRequest(room="svc"))
        await wait_for_async(lambda: _absent(ready, "svc"), "the room's record released")
    finally:
        for lk in apis:
            await lk.aclose()


async def _absent(cluster, room: str) -> bool:
    return room not in await cluster.read("rooms/")


async def wait_for_async(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_list_rooms_covers_rooms_on_both_media_nodes(etcd):
    # Placement is least-loaded by CPU first, and both nodes share this machine's CPU, so a
    # room limit makes the spread deterministic: the third room cannot go where two are.
    cluster = TestCluster(etcd, unique_prefix("spread"), node={"capacity": {"max_rooms": 2}})
    try:
        cluster.add("media", "media", "control", "control")
        await cluster.wait_media(2)
        c1, c2 = controls(cluster)
        lk = await room_api(c1)
        names = [f"spread-{i}" for i in range(4)]
        try:
            for name in names:
                await lk.room.create_room(rs.CreateRoomRequest(name=name, empty_timeout=60))
            records = await cluster.read("rooms/")
            assert {records[n]["node_id"] for n in names} == {"ND_media1", "ND_media2"}
            assert await twirp_error(lk.room.create_room(rs.CreateRoomRequest(name="one-too-many"))) == (
                "unavailable", "placement unavailable: no serving media node with free capacity", 503)
            for node in (c1, c2):
                other = await room_api(node)
                try:
                    listed = await other.room.list_rooms(rs.ListRoomsRequest())
                    assert sorted(r.name for r in listed.rooms) == names
                    some = await other.room.list_rooms(rs.ListRoomsRequest(names=[names[0], names[-1]]))
                    assert sorted(r.name for r in some.rooms) == [names[0], names[-1]]
                finally:
                    await other.aclose()
            per_node = await node_rooms(cluster)
            assert sorted(per_node["ND_media1"] + per_node["ND_media2"]) == names
            # load reports count the rooms (real load from the RoomManager)
            await wait_for_async(lambda: _loads_count(cluster, names), "load reports with the new rooms")
        finally:
            await lk.aclose()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def _loads_count(cluster, names) -> bool:
    loads = await cluster.read("load/")
    records = await cluster.read("rooms/")
    expected: dict[str, int] = {}
    for name in names:
        expected[records[name]["node_id"]] = expected.get(records[name]["node_id"], 0) + 1
    return all(loads[node]["rooms"] >= count for node, count in expected.items())


async def test_internal_grpc_needs_node_credentials(ready):
    media = (await ready.read("nodes/"))
    node_id, info = next(iter(media.items()))
    client = NodeClient(node_id, info["signal_address"], NodeCredentials({"otherkey": "x" * 32}))
    try:
        from trackyard import errors
        with pytest.raises(errors.Unavailable):
            await client.admin.call("ListRooms", rs.ListRoomsRequest())
    finally:
        await client.close()


async def test_a_node_that_lost_its_lease_reclaims_its_rooms_or_closes_taken_ones(ready, clients):
    c1, _ = controls(ready)
    alice, join_a = await join(c1, clients, "alice", "claimed")
    host = join_a.server_info.node_id
    store = await ready.store()
    try:
        nodes = {e.key[len("nodes/"):]: e for e in (await store.get_prefix("nodes/"))[0]}
        other = next(n for n in nodes if n != host)
        # etcd drops the host's lease (as after a long cut-off): it registers again and
        # claims the room back under the new lease, with the same sid
        await store.revoke(nodes[host].lease)
        await wait_for_async(lambda: _recorded(ready, "claimed", host, join_a.room.sid), "the room re-claimed")
        assert (await alice.ping()).last_ping_timestamp > 0
        # again, but this time the room is placed on the other node before the host is back
        entry = await store.get(f"nodes/{host}")
        await store.revoke(entry.lease)
        created, _ = await store.txn_create_if_absent(
            "rooms/claimed", json.dumps({"node_id": other, "room_sid": "RM_elsewhere", "created": 0}).encode(),
            nodes[other].lease)
        assert created
        leave = await alice.expect("leave", timeout=WAIT)  # the host closed its copy: rejoin elsewhere
        assert (leave.reason, leave.action) == (Reason.MIGRATION, rtc.LeaveRequest.Action.RECONNECT)
        assert (await ready.read("rooms/"))["claimed"]["node_id"] == other
        await store.delete("rooms/claimed")
    finally:
        await store.close()


async def _recorded(cluster, room: str, node_id: str, sid: str) -> bool:
    record = (await cluster.read("rooms/")).get(room)
    return record is not None and (record["node_id"], record["room_sid"]) == (node_id, sid)


def test_roles_that_need_etcd_refuse_to_start_without_it(tmp_path):
    path = tmp_path / "trackyard.yaml"
    path.write_text(f"keys: {{{API_KEY}: {API_SECRET}}}\n")
    for role in ("control", "media"):
        out = subprocess.run([sys.executable, "-m", "trackyard", "server", "--role", role, "--config", str(path)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "etcd.endpoints" in out.stderr and "needs etcd" in out.stderr, out.stderr


# ---------------------------------------------------------------- etcd outage


async def test_etcd_outage_keeps_existing_rooms_and_refuses_new_ones(clients):
    etcd = EtcdServer().start()
    cluster = TestCluster(etcd, unique_prefix("outage"))
    try:
        cluster.add("media", "control", "control")
        await cluster.wait_media(1)
        c1, c2 = controls(cluster)
        alice, join_a = await join(c1, clients, "alice", "steady")
        await join(c2, clients, "bob", "steady")  # both control nodes know the room now

        etcd.stop()
        started = time.monotonic()
        carol, join_c = await join(c2, clients, "carol", "steady")
        timing("join of an existing room with etcd down", time.monotonic() - started)
        assert join_c.room.sid == join_a.room.sid
        await alice.expect_update_for("carol", timeout=WAIT)
        assert (await alice.ping()).last_ping_timestamp > 0
        started = time.monotonic()
        status, text = await upgrade_status(c1, join_token("dave", "brand-new"))
        timing("join of a new room with etcd down → 503", time.monotonic() - started)
        assert (status, text) == (503, "placement unavailable: etcd unreachable")
        lk = await room_api(c2)
        try:
            code = await twirp_error(lk.room.create_room(rs.CreateRoomRequest(name="brand-new-api")))
            assert code == ("unavailable", "placement unavailable: etcd unreachable", 503)
            # calls about rooms in progress still reach their host
            listed = await lk.room.list_participants(rs.ListParticipantsRequest(room="steady"))
            assert {p.identity for p in listed.participants} == {"alice", "bob", "carol"}
        finally:
            await lk.aclose()

        etcd.start()
        started = time.monotonic()
        deadline = time.monotonic() + WAIT
        while True:
            status, _ = await upgrade_status(c1, join_token("dave", "brand-new"))
            if status == 101 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        timing("first successful new-room join after etcd restarted", time.monotonic() - started)
        assert status == 101
        assert all(node.alive() for node in cluster.nodes)
        assert (await cluster.read("rooms/")).keys() >= {"steady", "brand-new"}
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()
        etcd.cleanup()


# ---------------------------------------------------------------- node crash


async def test_killed_media_node_room_is_placed_again_on_the_survivor(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("crash"))
    try:
        m1, m2, c1 = cluster.add("media", "media", "control")
        await cluster.wait_media(2)
        alice, join_a = await join(c1, clients, "alice", "fragile")
        host = join_a.server_info.node_id
        victim = next(n for n in (m1, m2) if n.node_id == host)
        survivor = next(n for n in (m1, m2) if n is not victim)

        victim.kill()
        killed = time.monotonic()
        await asyncio.wait_for(alice.closed.wait(), WAIT)  # the relay broke: the client's socket closes
        timing("client socket closed after the media node died", time.monotonic() - killed)
        await wait_for_async(lambda: _absent(cluster, "fragile"), "the dead node's room record", LEASE_TTL + WAIT)
        timing(f"room record gone after kill -9 (lease TTL {LEASE_TTL} s)", time.monotonic() - killed)
        assert victim.node_id not in await cluster.read("nodes/")

        again, rejoin = await join(c1, clients, "alice", "fragile")
        timing("from kill -9 to a successful rejoin", time.monotonic() - killed)
        assert rejoin.server_info.node_id == survivor.node_id
        assert rejoin.room.sid != join_a.room.sid
        assert (await cluster.read("rooms/"))["fragile"]["node_id"] == survivor.node_id
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def test_sigterm_on_control_then_media_nodes(etcd, clients):
    """A control node that stops closes its sockets and the clients resume through another
    one; a media node that stops tells its clients to rejoin, and they land on the survivor."""
    cluster = TestCluster(etcd, unique_prefix("term"))
    try:
        m1, m2, c1, c2 = cluster.add("media", "media", "control", "control")
        await cluster.wait_media(2)
        alice, join_a = await join(c1, clients, "alice", "moving")
        bob, join_b = await join(c2, clients, "bob", "moving")
        assert c2.terminate() == 0
        await asyncio.wait_for(bob.closed.wait(), WAIT)
        assert not any(r.WhichOneof("message") == "leave" for r in bob.received)  # no leave: resume
        again = await SignalClient.connect(c1.ws_url, join_token("bob", "moving"), reconnect_sid=join_b.participant.sid)
        clients.append(again)
        await again.expect("reconnect", timeout=WAIT)

        victim = next(n for n in (m1, m2) if n.node_id == join_a.server_info.node_id)
        survivor = next(n for n in (m1, m2) if n is not victim)
        assert victim.terminate() == 0
        for client in (alice, again):
            leave = await client.expect("leave", timeout=WAIT)
            assert (leave.reason, leave.action) == (Reason.SERVER_SHUTDOWN, rtc.LeaveRequest.Action.RECONNECT)
        assert "moving" not in await cluster.read("rooms/") and victim.node_id not in await cluster.read("nodes/")
        _, rejoin = await join(c1, clients, "alice", "moving")
        assert rejoin.server_info.node_id == survivor.node_id
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


# ---------------------------------------------------------------- role all with etcd


async def test_all_in_one_nodes_with_etcd_relay_to_each_other(etcd, clients):
    cluster = TestCluster(etcd, unique_prefix("allnodes"))
    try:
        n1, n2 = cluster.add("all", "all")
        await cluster.wait_media(2)
        _, first = await join(n1, clients, "alice", "shared")
        bob, second = await join(n2, clients, "bob", "shared")  # one of them relays over gRPC
        assert first.room.sid == second.room.sid
        assert [p.identity for p in second.other_participants] == ["alice"]
        assert (await bob.ping()).last_ping_timestamp > 0
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


# ---------------------------------------------------------------- timings


async def test_record_join_time_through_the_relay_vs_in_process(ready, clients):
    single = ServerProcess(make_config()).start()
    try:
        c1 = controls(ready)[0]
        samples: dict[str, list[float]] = {"relay": [], "single": []}
        for i in range(15):
            for label, node in (("relay", c1), ("single", single)):
                started = time.monotonic()
                client = await SignalClient.connect(node.ws_url, join_token(f"t{i}", f"timing-{label}"))
                await client.expect("join", timeout=WAIT)
                samples[label].append(time.monotonic() - started)
                await client.leave()
        for label, values in samples.items():
            values = values[1:]  # the first join also creates (and places) the room
            timing(f"join via {'control → media relay' if label == 'relay' else 'single process'} (median of "
                   f"{len(values)})", statistics.median(values))
        assert len(samples["relay"]) == len(samples["single"]) == 15
    finally:
        single.cleanup()
