"""A whole trackyard cluster in network namespaces, for end-to-end tests with the real SDK.

`ClusterLab` builds a `RoutedLab` (tests/support/netns.py) with one namespace per host:

    host    address      runs
    lb      10.78.0.1    haproxy (Debian), TCP mode, :7880 -> every control node's :7880
    db      10.78.0.2    etcd (Debian etcd-server) on :2379
    ctl<i>  10.78.0.3…   trackyard --role control (port 7880)
    med<j>  …            trackyard --role media (port 7880, UDP 7882, gRPC 7890),
                         rtc.node_ip = its own address: the ICE candidate it advertises
    c<k>    10.78.1.<k+1> SDK clients (`SdkAgent`), dialling ws://10.78.0.1:7880

Each process sits in a namespace of its own, so they all use the same ports. The test
process never sends a packet outside loopback: it reads etcd through `EtcdRecorder` (this
file run as a script inside the db namespace, printing the records on every change) and
calls RoomService through `lab_api.py` inside the lb namespace, against the load balancer.

The load balancer checks ``GET /healthz`` of each control node every 0.5 s. Client k's
connections go to control node k mod n (``ctl0`` for client 0, ``ctl1`` for client 1…)
while it is up, else to another (the others are backup servers): sticky by source address,
so a test knows whose WebSocket a control node holds (`control_of`).

As a script (inside the db namespace)::

    python cluster_lab.py watch ENDPOINT PREFIX --seconds S

prints ``{"wall": time.time(), "nodes": {...}, "rooms": {...}, "room_state": {...}}`` each time
one of these prefixes changes (polled every 0.1 s), for at most S seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

CLUSTER_LAB = Path(__file__).resolve()
ETCD_PORT = 2379
ETCD_PREFIX = "/trackyard/"
LB_PORT = 7880
WATCHED = ("nodes/", "rooms/", "room_state/")
HEALTH_CHECK_INTERVAL_MS = 500


def haproxy_config(lb_address: str, controls: list[str], clients: list[str], port: int) -> str:
    """Client k's connections go to control node k mod n while it is up, else to the others
    (backup servers): so a test knows which control node holds whose WebSocket."""
    backends, rules = [], []
    for k, client in enumerate(clients):
        primary = k % len(controls)
        servers = "\n".join(f"  server ctl{i} {address}:{port} check{'' if i == primary else ' backup'}"
                            for i, address in enumerate(controls))
        backends.append(f"backend via_c{k}\n  balance roundrobin\n  option httpchk GET /healthz\n"
                        f"  default-server inter {HEALTH_CHECK_INTERVAL_MS}ms fall 2 rise 1\n{servers}\n")
        rules.append(f"  use_backend via_c{k} if {{ src {client} }}")
    rules_text = "\n".join(rules)
    return f"""global
  maxconn 512
  log stderr format raw local0 info
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 500ms
  timeout client 1h
  timeout server 1h
  retries 3
  option redispatch 1
frontend clients
  bind {lb_address}:{LB_PORT}
{rules_text}
  default_backend via_c0
{"".join(backends)}"""


class EtcdRecorder:
    """The `watch` script in the db namespace: every change of the cluster's records, with
    its wall time, so a test can tell when a room moved."""

    def __init__(self, lab, ns: str, endpoint: str, prefix: str, *, seconds: float, directory: Path) -> None:
        self.out_path = directory / f"etcd-watch-{time.monotonic_ns()}.jsonl"
        self.process = lab.run(ns, [sys.executable, str(CLUSTER_LAB), "watch", endpoint, prefix,
                                    "--seconds", str(seconds)], stdout=self.out_path,
                               stderr=self.out_path.with_suffix(".stderr"))

    def snapshots(self) -> list[dict]:
        out = []
        text = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a partly written last line
        return out

    def latest(self) -> dict:
        snaps = self.snapshots()
        return snaps[-1] if snaps else {"wall": 0.0, "nodes": {}, "rooms": {}, "room_state": {}}

    async def wait(self, predicate, *, timeout: float, what: str) -> dict:
        """The first snapshot for which `predicate(snapshot)` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            for snap in self.snapshots():
                if predicate(snap):
                    return snap
            if time.monotonic() > deadline or not self.process.alive():
                raise AssertionError(f"etcd records: no {what} within {timeout}s; last {self.latest()}\n"
                                     f"{self.process.stderr()[-2000:]}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.process.stop(3.0)


class ClusterLab:
    """See the module docstring. ``with ClusterLab(controls=2, media=2, clients=2) as cl:``."""

    def __init__(self, *, controls: int = 2, media: int = 2, clients: int = 2, lease_ttl: int = 3,
                 load_interval: float = 0.5, drain_timeout: float = 10.0, watch_seconds: float = 300.0,
                 **sections) -> None:
        from support.netns import RoutedLab

        self.control_names = [f"ctl{i}" for i in range(controls)]
        self.media_names = [f"med{j}" for j in range(media)]
        self.lab = RoutedLab(["lb", "db", *self.control_names, *self.media_names], clients)
        self.node_settings = {"lease_ttl": lease_ttl, "load_interval": load_interval, "drain_timeout": drain_timeout}
        self.sections = sections
        self.watch_seconds = watch_seconds
        self._dir = tempfile.TemporaryDirectory(prefix="trackyard-cluster-lab-")
        self.dir = Path(self._dir.name)
        self.nodes: dict = {}  # host name -> LabServer
        self.etcd = None
        self.haproxy = None
        self.recorder: EtcdRecorder | None = None
        self.agents: list = []  # SdkAgents started against this cluster, stopped in close()

    # --- addresses ------------------------------------------------------------------
    @property
    def lb_url(self) -> str:
        return f"ws://{self.lab.address('lb')}:{LB_PORT}"

    @property
    def etcd_endpoint(self) -> str:
        return f"{self.lab.address('db')}:{ETCD_PORT}"

    def node_id(self, host: str) -> str:
        return f"ND_{host}"

    def host_of(self, node_id: str) -> str:
        return node_id.removeprefix("ND_")

    def control_of(self, client: int) -> str:
        """The control node that the load balancer sends client `client`'s connections to."""
        return self.control_names[client % len(self.control_names)]

    def ns(self, host: str) -> str:
        return self.lab.host_ns[host]

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> "ClusterLab":
        from support.etcd import EtcdServer
        from support.lab_server import LabServer, lab_config

        lab = self.lab.start()
        try:
            etcd = EtcdServer(host=lab.address("db"), client_port=ETCD_PORT, peer_port=ETCD_PORT + 1)
            self.etcd = lab.run(self.ns("db"), etcd._argv(), stdout=self.dir / "etcd.log",
                                stderr=self.dir / "etcd.stderr")
            self._etcd_files = etcd  # its temporary data directory, removed in close()
            self._wait_etcd()
            for role, names in (("control", self.control_names), ("media", self.media_names)):
                for host in names:
                    config = lab_config(lab, address=lab.address(host), **self._sections(host))
                    self.nodes[host] = LabServer(lab, config, ns=self.ns(host), extra_args=("--role", role)).launch()
            for node in self.nodes.values():
                node.wait_started(30.0)
            lb_cfg = self.dir / "haproxy.cfg"
            lb_cfg.write_text(haproxy_config(lab.address("lb"), [lab.address(h) for h in self.control_names],
                                             [lab.client_ip(k) for k in range(len(lab.client_ns))], LB_PORT))
            self.haproxy = lab.run(self.ns("lb"), ["haproxy", "-db", "-f", str(lb_cfg)],
                                   stdout=self.dir / "haproxy.log", stderr=self.dir / "haproxy.stderr")
            self.recorder = EtcdRecorder(lab, self.ns("db"), self.etcd_endpoint, ETCD_PREFIX,
                                         seconds=self.watch_seconds, directory=self.dir)
            self._wait_lb()
        except BaseException:
            self.close()
            raise
        return self

    def _sections(self, host: str) -> dict:
        sections = {k: dict(v) for k, v in self.sections.items()}
        sections["node"] = {"id": self.node_id(host), **self.node_settings, **sections.get("node", {})}
        sections["etcd"] = {"endpoints": [self.etcd_endpoint], "prefix": ETCD_PREFIX, "dial_timeout": 1.0,
                            **sections.get("etcd", {})}
        return sections

    def _probe(self, ns: str, url: str) -> bool:
        code = ("import sys, urllib.request\n"
                f"sys.exit(0 if urllib.request.urlopen({url!r}, timeout=1).status == 200 else 1)")
        return self.lab.exec(ns, [sys.executable, "-c", code], timeout=10).returncode == 0

    def _wait_etcd(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._probe(self.ns("db"), f"http://{self.etcd_endpoint}/health"):
            if time.monotonic() > deadline or not self.etcd.alive():
                raise RuntimeError(f"etcd did not start:\n{self.etcd.stderr()[-3000:]}")
            time.sleep(0.1)

    def _wait_lb(self, timeout: float = 20.0) -> None:
        """Until a client namespace gets /healthz through the load balancer."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.lab.address('lb')}:{LB_PORT}/healthz"
        while not self._probe(self.lab.client_ns[0], url):
            if time.monotonic() > deadline or not self.haproxy.alive():
                raise RuntimeError(f"load balancer not serving:\n{self.haproxy.stderr()[-3000:]}")
            time.sleep(0.1)

    def restart_node(self, host: str, timeout: float = 30.0) -> None:
        """Start a node again (same config, same namespace) after it was killed or stopped."""
        node = self.nodes[host]
        if node.alive():
            raise RuntimeError(f"{host} is still running")
        node.launch().wait_started(timeout)

    def close(self) -> None:
        for agent in self.agents:
            agent.cleanup()
        if self.recorder is not None:
            self.recorder.stop()
        self.lab.close()  # every process by PID, then the namespaces
        for node in self.nodes.values():
            node._dir.cleanup()
        if self.etcd is not None:
            self._etcd_files.cleanup()
        self._dir.cleanup()

    def __enter__(self) -> "ClusterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- observing ------------------------------------------------------------------
    async def wait_media_registered(self, timeout: float = 20.0) -> dict:
        wanted = {self.node_id(h) for h in self.media_names}
        snap = await self.recorder.wait(lambda s: wanted <= set(s["nodes"]), timeout=timeout,
                                        what=f"registration of {sorted(wanted)}")
        return snap["nodes"]

    def room_host(self, room: str) -> str | None:
        """The host name (``med0``…) whose node the room's placement record names, now."""
        record = self.recorder.latest()["rooms"].get(room)
        return self.host_of(record["node_id"]) if record else None

    async def wait_room_on(self, room: str, predicate, *, timeout: float, what: str, after: float = 0.0) -> dict:
        """The first etcd snapshot (taken after wall time `after`) in which the room's record
        names a host for which `predicate(host)` holds; returns it (its ``wall`` says when)."""
        def placed(snap: dict) -> bool:
            record = snap["rooms"].get(room)
            return snap["wall"] > after and record is not None and predicate(self.host_of(record["node_id"]))
        return await self.recorder.wait(placed, timeout=timeout, what=what)

    def api(self, *args: str, timeout: float = 20.0) -> dict:
        """``lab_api.py <args>`` in the lb namespace, through the load balancer."""
        from support.lab_server import LAB_API
        from support.servers import API_KEY, API_SECRET, server_env

        proc = self.lab.exec(self.ns("lb"), [sys.executable, str(LAB_API), "--url",
                                             f"http://{self.lab.address('lb')}:{LB_PORT}", "--key", API_KEY,
                                             "--secret", API_SECRET, *args], timeout=timeout, env=server_env())
        if proc.returncode != 0:
            raise RuntimeError(f"lab_api {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def established(self, host: str, port: int = 7880) -> int:
        """TCP connections established to `port` in a host's namespace (e.g. WebSockets that
        the load balancer opened to a control node)."""
        out = self.lab.exec(self.ns(host), ["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def census(self, hosts: list[str], seconds: float) -> dict[str, dict]:
        """A UDP packet census (`udp_census.py`) on each host's link over the same window."""
        census = Path(__file__).resolve().with_name("udp_census.py")
        procs = {h: self.lab.run(self.ns(h), [sys.executable, str(census), "--dev", "ty0", "--seconds",
                                              str(seconds)], stdout=self.dir / f"census-{h}-{time.monotonic_ns()}")
                 for h in hosts}
        out = {}
        for host, proc in procs.items():
            if proc.wait(seconds + 15) != 0:
                raise RuntimeError(f"census on {host} failed: {proc.stderr()}")
            out[host] = json.loads(proc.stdout().strip().splitlines()[-1])
        return out

    def logs(self, tail: int = 4000) -> str:
        parts = [f"===== {h} =====\n{n.logs()[-tail:]}" for h, n in self.nodes.items()]
        if self.haproxy is not None:
            parts.append(f"===== haproxy =====\n{self.haproxy.stderr()[-tail:]}")
        return "\n".join(parts)


# --- the script side (inside the db namespace) ---------------------------------------
async def _watch(endpoint: str, prefix: str, seconds: float) -> None:
    from trackyard.cluster import EtcdStore, EtcdUnavailable

    store = await EtcdStore([endpoint], prefix, timeout=1.0).connect()
    deadline = time.monotonic() + seconds
    last = None
    try:
        while time.monotonic() < deadline:
            snapshot = {}
            try:
                for what in WATCHED:
                    entries, _ = await store.get_prefix(what)
                    snapshot[what.rstrip("/")] = {e.key[len(what):]: json.loads(e.value) for e in entries}
            except EtcdUnavailable:
                await asyncio.sleep(0.2)
                continue
            if snapshot != last:
                last = snapshot
                print(json.dumps({"wall": round(time.time(), 3), **snapshot}), flush=True)
            await asyncio.sleep(0.1)
    finally:
        await store.close()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    watch = sub.add_parser("watch")
    watch.add_argument("endpoint")
    watch.add_argument("prefix")
    watch.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(_watch(args.endpoint, args.prefix, args.seconds))


if __name__ == "__main__":
    # this directory holds an etcd.py of its own: keep it from shadowing the etcd3aio's `etcd` package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != CLUSTER_LAB.parent]
    main()
