"""`/metrics` of real trackyard processes, parsed with prometheus_client's own parser.

- A single node (a real process) while aiortc clients on loopback publish and subscribe
  audio: the room, participant and track gauges match, and the packet, byte and forwarding
  counters and the forwarding-delay histogram move.
- Servers in one process keep separate registries; basic auth; metrics switched off.
- A cluster (real etcd, a media and a control node): etcd request metrics on both, the
  cluster view on the control node, and etcd errors counted while etcd is down.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.aiortc_client import AiortcParticipant, SineTrack, loopback_only
from support.cluster_nodes import TestCluster
from support.etcd import EtcdServer, etcd_available, unique_prefix
from support.servers import InProcessServer, ServerProcess, make_config
from support.signal_client import SignalClient
from support.tokens import join_token
from support.webhook_sink import WebhookSink

WAIT = 15.0


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def scrape(url: str, *, headers: dict | None = None) -> dict[str, list]:
    """{family name: [(sample name, labels, value), ...]} from `url`/metrics."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics", headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def value(metrics: dict, family: str, sample: str | None = None, **labels: str) -> float:
    """The one sample of `family` (named `sample`, default the family) whose labels include `labels`."""
    found = [v for name, lbls, v in metrics.get(family, []) if name == (sample or family)
             and all(lbls.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (family, sample, labels, metrics.get(family))
    return found[0]


async def wait_metrics(url: str, predicate, what: str, timeout: float = WAIT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = await scrape(url)
        if predicate(metrics):
            return metrics
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
def node():
    # clients that vanish without a leave are removed a second later (not after 15 s)
    server = ServerProcess(make_config(signal={"reconnect_timeout": 1.0})).start()
    yield server
    server.cleanup()


async def test_metrics_move_when_audio_flows_through_a_node(node):
    before = await scrape(node.url)
    assert value(before, "trackyard_build_info") == 1
    for family in ("trackyard_rooms", "trackyard_participants", "trackyard_packets"):
        for _, labels, _ in before[family]:
            assert labels["role"] == "all" and labels["node_id"].startswith("ND_")
    assert value(before, "trackyard_rooms") == 0
    assert value(before, "trackyard_forward_delay_seconds", "trackyard_forward_delay_seconds_count") == 0

    with loopback_only():
        alice = await AiortcParticipant.join_v1(node.ws_url, join_token("alice", "m1"), "alice",
                                                publish=SineTrack(440))
        bob = None
        try:
            await alice.wait_connected(alice.pc)
            await wait_metrics(node.url, lambda m: value(m, "trackyard_tracks_published", kind="audio") == 1,
                               "alice's track published")
            bob = await AiortcParticipant.join_v0(node.ws_url, join_token("bob", "m1"), "bob")
            await bob.wait_connected(bob.sub_pc)
            await asyncio.wait_for(_until(lambda: len(bob.audio) > 50), 2 * WAIT)
            during = await wait_metrics(
                node.url, lambda m: value(m, "trackyard_tracks_subscribed", kind="audio") == 1,
                "bob's subscription in the metrics")
        except BaseException:
            print(node.logs()[-5000:], file=sys.__stderr__)
            raise
        finally:
            await alice.close()
            if bob is not None:
                await bob.close()

    assert value(during, "trackyard_rooms") == 1
    assert value(during, "trackyard_participants") == 2
    assert value(during, "trackyard_tracks_published", kind="audio") == 1
    assert value(during, "trackyard_tracks_published", kind="video") == 0
    assert value(during, "trackyard_tracks_subscribed", kind="video") == 0
    assert value(during, "trackyard_signal_connections") == 2
    assert value(during, "trackyard_signal_accept_seconds", "trackyard_signal_accept_seconds_count", kind="join") == 2
    for direction in ("in", "out"):
        grew = value(during, "trackyard_packets", "trackyard_packets_total", direction=direction)
        assert grew > value(before, "trackyard_packets", "trackyard_packets_total", direction=direction) + 40
        assert value(during, "trackyard_bytes", "trackyard_bytes_total", direction=direction) > value(
            before, "trackyard_bytes", "trackyard_bytes_total", direction=direction) + 4_000
    forwarded = value(during, "trackyard_forwarded_packets", "trackyard_forwarded_packets_total")
    assert forwarded > 40
    # every datagram out left in some send call; a call carries one or more of them
    calls = value(during, "trackyard_send_syscalls", "trackyard_send_syscalls_total")
    out = value(during, "trackyard_packets", "trackyard_packets_total", direction="out")
    assert 0 < calls <= out
    assert 0 <= value(during, "trackyard_gso_messages", "trackyard_gso_messages_total") <= out / 2
    # every forwarded copy is one observation of the delay histogram (same worker, same moment)
    count = value(during, "trackyard_forward_delay_seconds", "trackyard_forward_delay_seconds_count")
    assert 40 < count <= forwarded + 5
    inf = value(during, "trackyard_forward_delay_seconds", "trackyard_forward_delay_seconds_bucket", le="+Inf")
    assert inf == count
    buckets = [v for name, lbls, v in during["trackyard_forward_delay_seconds"] if name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert value(during, "trackyard_forward_delay_seconds", "trackyard_forward_delay_seconds_sum") > 0
    assert value(during, "trackyard_packets_lost", "trackyard_packets_lost_total", direction="in") >= 0
    assert value(during, "trackyard_node_draining") == 0

    after = await wait_metrics(node.url, lambda m: value(m, "trackyard_participants") == 0, "participants gone")
    assert value(after, "trackyard_tracks_published", kind="audio") == 0
    assert value(after, "trackyard_forwarded_packets", "trackyard_forwarded_packets_total") >= forwarded  # monotonic


async def test_refused_signal_connections_are_counted_by_status(node):
    async with aiohttp.ClientSession() as session:
        for token in ("not-a-token", join_token("mallory", "r", secret="wrong-secret-wrong-secret-wrong!!")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(node.ws_url + "/rtc/v1", headers={"Authorization": f"Bearer {token}"})
            assert refused.value.status == 401
    metrics = await scrape(node.url)
    assert value(metrics, "trackyard_signal_refused", "trackyard_signal_refused_total", status="401") == 2
    assert metrics.get("trackyard_signal_accept_seconds", []) == []  # nobody was accepted


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.05)


async def test_webhook_outcomes_are_counted():
    sink = await WebhookSink().start()
    # one receiver takes the events, the other path answers 404 (not retried): failed at once
    urls = [sink.url, sink.url.replace("/hooks", "/nowhere")]
    server = ServerProcess(make_config(webhook={"urls": urls})).start()
    try:
        before = await scrape(server.url)
        assert value(before, "trackyard_webhooks", "trackyard_webhooks_total", result="sent") == 0
        assert value(before, "trackyard_webhook_queue_depth") == 0
        client = await SignalClient.connect(server.ws_url, join_token("alice", "hooked"))
        await client.expect("join", timeout=WAIT)
        await sink.wait_event("room_started", room="hooked", timeout=WAIT)
        # the sink records an event before the server reads its answer and counts it as sent
        after = await wait_metrics(server.url, lambda m: value(m, "trackyard_webhooks", "trackyard_webhooks_total",
                                                               result="failed") >= 1 and value(
            m, "trackyard_webhooks", "trackyard_webhooks_total", result="sent") >= 1,
                                   "a failed and a sent delivery counted")
        await client.close()
        # room_started reached the sink and failed on the 404 path
        assert value(after, "trackyard_webhooks", "trackyard_webhooks_total", result="sent") >= 1
        assert value(after, "trackyard_webhooks", "trackyard_webhooks_total", result="dropped") == 0
        assert value(after, "trackyard_webhook_retries", "trackyard_webhook_retries_total") == 0
    finally:
        server.cleanup()
        await sink.stop()


async def test_servers_in_one_process_have_their_own_registries():
    first = await InProcessServer(make_config()).start()
    second = await InProcessServer(make_config(metrics={"username": "prom", "password": "scrape-me"})).start()
    third = await InProcessServer(make_config(metrics={"enabled": False})).start()
    try:
        one = await scrape(first.url)
        (_, labels, _), = one["trackyard_rooms"]
        assert labels["node_id"] == first.server.node_id
        async with aiohttp.ClientSession() as session:
            async with session.get(second.url + "/metrics") as resp:
                assert resp.status == 401 and "Basic" in resp.headers["WWW-Authenticate"]
            async with session.get(second.url + "/metrics", headers=basic("prom", "wrong")) as resp:
                assert resp.status == 401
            async with session.get(third.url + "/metrics") as resp:
                assert resp.status == 404
        two = await scrape(second.url, headers=basic("prom", "scrape-me"))
        (_, labels, _), = two["trackyard_rooms"]
        assert labels["node_id"] == second.server.node_id != first.server.node_id
    finally:
        for server in (first, second, third):
            await server.stop()


@pytest.mark.skipif(not etcd_available(), reason="needs the etcd binary (scripts/bootstrap --tests)")
async def test_cluster_nodes_report_etcd_requests_and_errors():
    etcd = EtcdServer().start()
    cluster = TestCluster(etcd, unique_prefix("metrics"))
    try:
        media, control = cluster.add("media", "control")
        await cluster.wait_media(1)
        m = await wait_metrics(control.url, lambda m: value(m, "trackyard_cluster_media_nodes", state="serving") == 1,
                               "the control node to see the media node")
        assert value(m, "trackyard_cluster_media_nodes", state="draining") == 0
        assert value(m, "trackyard_cluster_rooms") == 0
        assert "trackyard_rooms" not in m  # a control node hosts no room
        for node in (media, control):
            metrics = await scrape(node.url)
            requests = sum(v for name, _, v in metrics["trackyard_etcd_request_duration_seconds"]
                           if name.endswith("_count"))
            assert requests > 0, node.node_id
            for _, labels, _ in metrics["trackyard_etcd_request_duration_seconds"]:
                assert labels["node_id"] == node.node_id and labels["role"] == node.role

        etcd.stop()
        # readiness probes (one etcd read each) and the media node's keepalives fail meanwhile
        for node in (media, control):
            deadline = time.monotonic() + WAIT
            while True:
                async with aiohttp.ClientSession() as session:
                    async with session.get(node.url + "/readyz") as resp:
                        assert resp.status == 503 or time.monotonic() < deadline
                errors = sum(v for name, _, v in (await scrape(node.url)).get("trackyard_etcd_request_errors", [])
                             if name.endswith("_total"))
                if errors > 0:
                    break
                assert time.monotonic() < deadline, f"no etcd error counted on {node.node_id}"
                await asyncio.sleep(0.2)
    except BaseException:
        print(cluster.logs(), file=sys.__stderr__)
        raise
    finally:
        cluster.close()
        etcd.cleanup()


def test_metrics_config_keys():
    from trackyard.config import load_config
    from trackyard.errors import ConfigError

    keys = {"LIVEKIT_KEYS": "k: " + "s" * 40}
    cfg = load_config(body="metrics: {username: prom}", env={**keys, "TRACKYARD_METRICS_PASSWORD": "from-a-secret"})
    assert (cfg.metrics.enabled, cfg.metrics.username, cfg.metrics.password) == (True, "prom", "from-a-secret")
    with pytest.raises(ConfigError, match="metrics.password"):
        load_config(body="metrics: {username: prom}", env=keys)
    assert load_config(body="metrics: {enabled: false}", env=keys).metrics.enabled is False


def test_loss_totals_only_grow_and_follow_each_stream():
    from trackyard.metrics.collector import LossTracker

    loss = LossTracker()
    inbound = {"kind": "inbound", "track": 1, "ssrc": 11}
    outbound = {"kind": "outbound", "downtrack": 7}
    assert loss.update([{**inbound, "lost": 3}, {**outbound, "lost": 2}]) == {"in": 3, "out": 2}
    # a lower report (reordered packets arrived late) takes nothing back
    assert loss.update([{**inbound, "lost": 1}, {**outbound, "lost": 5}]) == {"in": 3, "out": 5}
    # the same report scraped twice counts once; a new stream adds its own
    assert loss.update([{**inbound, "lost": 4}, {"kind": "inbound", "track": 2, "ssrc": 22, "lost": 6}]) == {
        "in": 10, "out": 5}
    assert loss.update([{**inbound, "lost": 4}]) == {"in": 10, "out": 5}


def test_etcd_operations_are_named_without_keys():
    from trackyard.metrics.etcd import operation

    assert operation("get nodes/ND_x") == "get"
    assert operation("list rooms/") == "list"
    assert operation("lease keepalive") == "lease_keepalive"
    assert operation("create rooms/r") == "create"
