"""A trackyard cluster of real processes for tests: media and control nodes (`trackyard
server --role ...`) on free loopback ports, sharing one etcd (tests/support/etcd.py) under a
key prefix of their own.

    cluster = TestCluster(etcd, prefix)
    m1, m2 = cluster.add("media", "media")          # started in parallel
    c1, c2 = cluster.add("control", "control")
    await cluster.wait_media(2)                      # both registered in etcd
    ...
    cluster.close()                                  # every process stopped by PID

Every node's id is fixed (``ND_<role><n>``), so a test can read placement records.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

from support.servers import ServerProcess, free_port, make_config
from trackyard.cluster import EtcdStore
from trackyard.config import NodeCapacityConfig

LEASE_TTL = 3        # seconds: a killed media node's records vanish this long after its death
LOAD_INTERVAL = 0.5  # seconds between load reports


class NodeProcess(ServerProcess):
    """A ServerProcess that can be launched and awaited separately (so nodes start in parallel)."""

    def __init__(self, config, role: str) -> None:
        super().__init__(config, extra_args=("--role", role))
        self.role = role
        self.node_id = config.node.id

    def launch(self) -> "NodeProcess":
        import os
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trackyard", "server", "--config", str(self.config_path), *self.extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        return self

    def wait_started(self, timeout: float = 30.0) -> "NodeProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.node_id} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.config.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.node_id} did not start:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int | None:
        return self.stop(timeout)


class TestCluster:
    __test__ = False  # not a pytest class

    def __init__(self, etcd, prefix: str, **sections) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.sections = sections  # config overrides for every node, e.g. room={...}
        self.nodes: list[NodeProcess] = []
        self._counts: dict[str, int] = {}

    def config(self, role: str, **sections):
        n = self._counts[role] = self._counts.get(role, 0) + 1
        merged = {k: dict(v) for k, v in self.sections.items()}
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        etcd = {"endpoints": [self.etcd.endpoint], "prefix": self.prefix, "dial_timeout": 1.0, **merged.pop("etcd", {})}
        node = {"id": f"ND_{role}{n}", "grpc_port": free_port(), "lease_ttl": LEASE_TTL,
                "load_interval": LOAD_INTERVAL, **merged.pop("node", {})}
        if "capacity" in node:
            node["capacity"] = NodeCapacityConfig(**node["capacity"])
        return make_config(etcd=etcd, node=node, **merged)

    def add(self, *roles: str, **sections) -> list[NodeProcess]:
        """Start one node per role given, in parallel; wait until each serves HTTP."""
        started = [NodeProcess(self.config(role, **sections), role).launch() for role in roles]
        self.nodes.extend(started)
        for node in started:
            node.wait_started()
        return started

    async def store(self) -> EtcdStore:
        return await EtcdStore([self.etcd.endpoint], self.prefix, timeout=2.0).connect()

    async def read(self, what: str) -> dict[str, dict]:
        """`nodes/`, `load/` or `rooms/` records as {name: value}."""
        store = await self.store()
        try:
            entries, _ = await store.get_prefix(what)
        finally:
            await store.close()
        return {e.key[len(what):]: json.loads(e.value) for e in entries}

    async def wait_media(self, count: int, timeout: float = 20.0) -> dict[str, dict]:
        """Until exactly `count` media nodes are registered."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = await self.read("nodes/")
            if len(nodes) == count:
                return nodes
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} registered media nodes, have {sorted(nodes)}")
            await asyncio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"===== {n.node_id} =====\n{n.logs()[-6000:]}" for n in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.cleanup()
