"""The chart's configuration boots a working cluster.

`helm template` renders the chart; for a control pod and a media pod this test takes the
rendered ConfigMap, the container's command and args and its environment (secretKeyRef
resolved from the rendered Secret, fieldRef status.hostIP / status.podIP = 127.0.0.1,
$(VAR) expansion as Kubernetes does it; tests/support/helm.py `local_pod`) and runs them as
real `trackyard` processes on loopback next to a real etcd. Nothing else is changed, except:

- ports: both pods use 7880 (and the media pod 7881, 7882, 7890) on their own IPs in
  Kubernetes; here each gets free local ports, in its config file and in host:port values;
- file paths: the ConfigMap mounted at /etc/trackyard is written to a temporary directory;
- the bundled etcd's Service name, which only cluster DNS resolves, points at the test etcd.

Then the kubelet's probes (/healthz, /readyz on the port the probe names) answer 200 on
both pods, a client joins a room through the control node with the API key from the
rendered Secret, the room is placed on the media node (which registered with the address
NODE_IP gave it), `trackyard nodes list` run with the control pod's config and env sees the
node, RoomService lists the room, /metrics answers as the ServiceMonitor expects, and SIGTERM
drains the media node within the grace period the chart gives it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
import yaml
from livekit import api
from prometheus_client.parser import text_string_to_metric_families

from support.cluster_nodes import NodeProcess
from support.etcd import EtcdServer, etcd_available
from support.helm import LOOPBACK, LocalPod, NAMESPACE, RELEASE, container, local_pod, one, render, require_helm
from support.servers import free_port, free_udp_port
from support.signal_client import SignalClient
from support.tokens import join_token
from trackyard.cluster import EtcdStore
from trackyard.config import load_config

require_helm()
if not etcd_available():
    raise RuntimeError("the etcd binary is missing: install Debian etcd-server (scripts/bootstrap --tests)")

WAIT = 30.0
METRICS_PASSWORD = "boot-test-metrics-" + "m" * 20
VARIANTS = {
    # helm install with no values at all: bundled etcd, a generated API key
    "defaults": ({}, {f"{RELEASE}-trackyard-etcd.{NAMESPACE}.svc": LOOPBACK}),
    # external etcd, keys from the values, /metrics behind basic auth, a short drain
    "external-etcd": ({
        "etcd": {"bundled": {"enabled": False}, "external": {"endpoints": [f"http://{LOOPBACK}:2379"]},
                 "prefix": "/prod-trackyard/"},
        "apiKeys": {"keys": {"bootkey": "boot-test-secret-" + "s" * 30}},
        "metrics": {"basicAuth": {"username": "prometheus", "password": METRICS_PASSWORD}},
        "config": {"region": "eu-west", "room": {"empty_timeout": 30}, "node": {"drain_timeout": 10}},
    }, {}),
}


class PodProcess(NodeProcess):
    """A `LocalPod` run as a subprocess, stopped by PID (SIGTERM, like the kubelet)."""

    def __init__(self, pod: LocalPod) -> None:
        super().__init__(load_config(body=pod.config_text, env=pod.env, role=pod.role), pod.role)
        self.pod = pod

    def launch(self) -> "PodProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.pod.argv, env=self.pod.env, cwd=self.pod.root,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        return self


async def probe(url: str, *, headers: dict | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.text()


async def until_ready(process: PodProcess) -> float:
    """Poll the readiness probe the way the kubelet does, until 200 (bounded)."""
    start = time.monotonic()
    url = process.pod.probe_url("readinessProbe")
    while True:
        if process.proc.poll() is not None:
            raise AssertionError(f"{process.role} exited with {process.proc.returncode}:\n{process.logs()}")
        try:
            status, text = await probe(url)
            if status == 200:
                return time.monotonic() - start
        except aiohttp.ClientError:
            status, text = None, "no answer"
        if time.monotonic() - start > WAIT:
            raise AssertionError(f"{process.role} not ready after {WAIT}s ({status} {text}):\n{process.logs()}")
        await asyncio.sleep(0.2)


def secret_value(docs: list[dict], ref: dict) -> str:
    return base64.b64decode(one(docs, "Secret", ref["name"])["data"][ref["key"]]).decode()


def pod_ports(etcd: EtcdServer) -> dict[int, int]:
    return {7880: free_port(), 7881: free_port(), 7882: free_udp_port(), 7890: free_port(),
            2379: etcd.client_port}


@pytest.fixture
def etcd():
    server = EtcdServer().start()
    yield server
    server.cleanup()


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_the_charts_configuration_boots_a_working_cluster(variant, etcd, tmp_path):
    values, hosts = VARIANTS[variant]
    docs = render(values)
    pods = {role: local_pod(docs, role, tmp_path / role, free_ports=pod_ports(etcd), rewrite_hosts=hosts)
            for role in ("media", "control")}
    media_pod, control_pod = pods["media"], pods["control"]
    # what the chart made of the pods, before running them
    assert media_pod.env["NODE_IP"] == LOOPBACK == media_pod.env["HOST_IP"]
    assert media_pod.env["TRACKYARD_GRPC_ADDRESS"] == f"{LOOPBACK}:{media_pod.ports[7890]}"
    assert media_pod.argv[1:4] == ["server", "--config", str(tmp_path / "media" / "etc/trackyard/config.yaml")]

    processes = [PodProcess(pods[role]).launch() for role in ("media", "control")]
    media, control = processes
    client = None
    try:
        for process in processes:
            print(f"[timing] {process.role} ready after {await until_ready(process):.2f} s")
            for probe_name, expected in (("livenessProbe", "OK"), ("readinessProbe", "ready")):
                assert await probe(process.pod.probe_url(probe_name)) == (200, expected)

        # the API key the pods got from the rendered Secret
        keys_ref = {e["name"]: e for e in container(docs, "control")["env"]}["LIVEKIT_KEYS"]["valueFrom"]["secretKeyRef"]
        [(api_key, api_secret)] = yaml.safe_load(secret_value(docs, keys_ref)).items()

        prefix = media.config.etcd.prefix
        store = await EtcdStore([etcd.endpoint], prefix, timeout=2.0).connect()
        try:
            entries, _ = await store.get_prefix("nodes/")
            [node] = [json.loads(e.value) for e in entries]
            assert node["rtc_address"] == f"{LOOPBACK}:{media_pod.ports[7882]}"  # NODE_IP <- status.hostIP
            assert node["signal_address"] == f"{LOOPBACK}:{media_pod.ports[7890]}"
            assert node["state"] == "serving"

            token = join_token("alice", "boot-room", key=api_key, secret=api_secret)
            client = await SignalClient.connect(control.ws_url, token)
            join = await client.expect("join", timeout=WAIT)
            assert join.participant.identity == "alice" and join.room.name == "boot-room"
            assert join.server_info.node_id == node["node_id"]
            record = json.loads((await store.get("rooms/boot-room")).value)
            assert record["node_id"] == node["node_id"] and record["room_sid"] == join.room.sid
        finally:
            await store.close()

        # the operator's view from a control pod (docs/deploy.md): its config file and env
        listing = subprocess.run([control_pod.argv[0], "nodes", "list", "--json", "--config",
                                  control_pod.argv[control_pod.argv.index("--config") + 1]],
                                 env=control_pod.env, capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0 and node["node_id"] in listing.stdout, listing.stderr

        async with api.LiveKitAPI(control.url, api_key, api_secret) as lkapi:
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=["boot-room"]))
        assert [(r.name, r.num_participants) for r in listed.rooms] == [("boot-room", 1)]

        basic = values.get("metrics", {}).get("basicAuth")
        for process in processes:
            url = f"http://{LOOPBACK}:{process.config.port}/metrics"
            headers = None
            if basic:  # what the ServiceMonitor's basicAuth sends
                assert (await probe(url))[0] == 401
                pair = f"{basic['username']}:{basic['password']}".encode()
                headers = {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
            status, text = await probe(url, headers=headers)
            assert status == 200
            assert list(text_string_to_metric_families(text)), "Prometheus text format"

        await client.leave()
        await client.close()
        client = None
        # SIGTERM (what the kubelet sends): the media node drains and exits 0 well within the
        # grace period the chart gave it
        daemonset = one(docs, "DaemonSet")
        grace = daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        start = time.monotonic()
        media.proc.send_signal(signal.SIGTERM)
        assert media.proc.wait(grace) == 0, media.logs()
        print(f"[timing] media node drained and exited {time.monotonic() - start:.2f} s after SIGTERM (grace {grace} s)")
    except BaseException:
        for process in processes:
            print(f"===== {process.role} =====\n{process.logs()[-6000:]}", file=sys.__stderr__)
        raise
    finally:
        if client is not None:
            await client.close()
        for process in processes:
            process.cleanup()
