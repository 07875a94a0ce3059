"""End to end through a cluster with the real `livekit` Python SDK (issue 4, acceptance).

`support.cluster_lab.ClusterLab`: etcd, two control nodes behind haproxy, two media nodes,
each process in a network namespace with an address of its own, and SDK clients in client
namespaces that dial only the load balancer. alice publishes a 440 Hz tone, bob checks
what he hears (FFT, 0.25 s windows). The failures are real: SIGKILL or SIGTERM of a node's
process by PID; after it the test only watches: the SDKs find their way back by themselves.

Gaps and re-placement times are measured and written to bench/out/cluster_e2e_sdk.json,
never asserted as timings: the one bound (`RECOVERY`, 30 s) is a correctness bound.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from support.cluster_calls import RECOVERY, fail_media_node, record, start_call, stop_agents, tone
from support.etcd import etcd_available

MEDIA_RTP_PER_S = 25  # alice's Opus is 50 packets/s: half of it, at least, must reach the hosting node


@pytest.fixture
def cluster():
    from support.cluster_lab import ClusterLab
    from support.netns import netns_available

    ok, reason = netns_available()
    if not ok:
        pytest.skip(f"network namespaces unavailable: {reason}")
    if not etcd_available() or shutil.which("haproxy") is None:
        pytest.skip("needs etcd and haproxy (scripts/bootstrap --tests installs both)")
    cl = ClusterLab(controls=2, media=2, clients=2).start()
    try:
        yield cl
    finally:
        cl.close()
        assert cl.lab.leftovers() == [], f"namespaces left behind: {cl.lab.leftovers()}"


async def check_media_on(cl, host: str, seconds: float = 2.0) -> dict:
    """A packet census on every media node's link: the tone's RTP reaches `host`, and only
    `host` (each node advertised its own address, and the SDKs used it)."""
    census = await asyncio.to_thread(cl.census, cl.media_names, seconds)
    assert census[host]["in"]["rtp"] >= MEDIA_RTP_PER_S * seconds, census  # alice's tone
    for other in cl.media_names:
        if other != host:  # the other node gets none (bob hears alice, so he hears her via `host`)
            assert census[other]["in"]["rtp"] == 0, (other, census)
    return census


async def test_cluster_call_survives_media_node_kill_and_control_node_kill(cluster):
    """(a) alice's tone reaches bob through the cluster, media on the room's node's own
    address; (b) SIGKILL of that media node: both SDKs rejoin, the room is re-placed on the
    other node and the tone flows again there; (d) SIGKILL of a control node holding
    WebSockets: those clients reconnect through the load balancer to the other control node
    and resume (same participants), and the tone goes on."""
    cl, room = cluster, "cluster-e2e"
    nodes = await cl.wait_media_registered()
    for host in cl.media_names:  # every media node advertises its own address for ICE
        assert nodes[cl.node_id(host)]["rtc_address"] == f"{cl.lab.address(host)}:7882", nodes

    call = await start_call(cl, room)
    first_host = call.host
    assert call.heard["freq"] == pytest.approx(440.0, abs=20)
    # alice's WebSocket went through ctl0, bob's through ctl1 (the balancer is sticky by
    # address); the least of 3 looks, so that a health check's brief connection is not counted
    held = {h: min(cl.established(h) for _ in range(3)) for h in cl.control_names}
    assert held == {"ctl0": 1, "ctl1": 1}, held
    await check_media_on(cl, first_host)

    # (b) the hosting media node dies
    killed = await fail_media_node(cl, call, "kill")
    assert killed["new_host"] != first_host and not cl.nodes[first_host].alive()
    await check_media_on(cl, call.host)
    info = await asyncio.to_thread(cl.api, "participants", room, "--wait-for", "alice,bob", "--timeout", "10")
    assert sorted(p["identity"] for p in info["participants"]) == ["alice", "bob"], info
    sids = {p["identity"]: p["sid"] for p in info["participants"]}

    # (d) the control node holding alice's WebSocket dies (the balancer is sticky by client
    # address: alice -> ctl0, bob -> ctl1, see support.cluster_lab)
    victim, survivor = cl.control_of(0), cl.control_of(1)
    assert victim != survivor
    started = time.time()
    cl.nodes[victim].process.kill()
    back = await call.alice.wait_event(lambda e: e.get("event") == "reconnected" and e["wall"] > started,
                                       timeout=RECOVERY)
    after = await call.bob.wait_event(tone(time.time() + 0.5), timeout=RECOVERY)
    info = await asyncio.to_thread(cl.api, "participants", room, "--wait-for", "alice,bob", "--timeout", "10")
    assert {p["identity"]: p["sid"] for p in info["participants"]} == sids, info  # resumed, not rejoined
    assert after["track_sid"] == call.track_sid  # the same track: a resume does not touch media
    assert not [e for e in call.bob.events("reconnecting") if e["wall"] > started], call.bob.report()
    heard = [e for e in call.bob.events("audio_frame_stats") if e["wall"] > started and tone()(e)]
    await stop_agents(call.alice, call.bob)
    windows = [e for e in call.bob.events("audio_frame_stats") if started < e["wall"] <= after["wall"]]
    assert len(heard) >= 1 and len(windows) == len([e for e in windows if tone()(e)]), windows  # no silence
    control = {"how": "kill-control", "old_host": victim, "new_host": survivor,
               "resumed": round(back["wall"] - started, 3)}
    path = record("cluster_e2e_sdk_kill", [killed, control])
    print(f"kill -9 media: {killed}; kill -9 control: {control}; written to {path}")


async def test_cluster_drain_moves_sdk_clients(cluster):
    """(c) SIGTERM of the hosting media node: it drains, the SDKs are told to rejoin and do
    so on the other node without the test doing anything, the tone flows again there, and
    the drained node exits 0 within its deadline."""
    cl, room = cluster, "cluster-drain"
    await cl.wait_media_registered()
    call = await start_call(cl, room)
    first_host = call.host
    drained = await fail_media_node(cl, call, "drain")
    assert drained["new_host"] != first_host
    await check_media_on(cl, call.host)
    code = await asyncio.to_thread(cl.nodes[first_host].process.wait, 15)
    assert code == 0, cl.nodes[first_host].logs()[-3000:]
    info = await asyncio.to_thread(cl.api, "participants", room, "--wait-for", "alice,bob", "--timeout", "10")
    assert sorted(p["identity"] for p in info["participants"]) == ["alice", "bob"], info
    await stop_agents(call.alice, call.bob)
    path = record("cluster_e2e_sdk_drain", [drained])
    print(f"drain: {drained}; written to {path}")
