"""A trackyard server process inside a `NetLab`'s server namespace.

`LabServer` runs ``ip netns exec <srv-ns> python -m trackyard server --config FILE`` (the
way an operator runs it). It listens on 0.0.0.0 inside that namespace, so SDK clients in
the client namespaces reach it at ``ws://10.77.0.1:<port>`` (`ws_url`) and helpers started
in the server namespace at ``http://127.0.0.1:<port>`` (`local_url`). ICE candidates
advertise the server's lab address (``rtc.node_ip``) and the UDP port ``rtc.udp_port``.

The test process stays in the root namespace and never sends a packet anywhere but
loopback: RoomService queries go through `lab_api.py`, run inside the server namespace
(`LabServer.api`), which uses the real `livekit.api.LiveKitAPI` against 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from trackyard.config import Config, config_to_yaml, load_config

from support.netns import LabProcess, NetLab
from support.servers import API_KEY, API_SECRET, server_argv, server_env

LAB_API = Path(__file__).resolve().with_name("lab_api.py")
_LISTENING = re.compile(r"trackyard\b[^\n]* listening on")  # "trackyard listening on", "trackyard (role all) listening on"
HTTP_PORT = 7880
UDP_PORT = 7882


def lab_config(lab: NetLab, *, address: str = "", **sections) -> Config:
    """A config for a server in `lab`'s server namespace (or, with `address`, a host of a
    `RoutedLab` with that address); keyword arguments override sections as in
    `support.servers.make_config`, e.g. logging={"level": "debug"}."""
    cfg = load_config(body="{}", env={"LIVEKIT_KEYS": f"{API_KEY}: {API_SECRET}"})
    cfg.bind_addresses = ["0.0.0.0"]  # the namespace's lo and every lab link
    cfg.port = HTTP_PORT
    cfg.rtc.udp_port = UDP_PORT
    cfg.rtc.tcp_port = HTTP_PORT + 1
    cfg.rtc.node_ip = address or lab.server_ip
    for name, values in sections.items():
        section = getattr(cfg, name)
        for key, value in values.items():
            if not hasattr(section, key):
                raise AttributeError(f"{name}.{key}")
            setattr(section, key, value)
    return cfg


class LabServer:
    def __init__(self, lab: NetLab, config: Config | None = None, *, ns: str = "",
                 extra_args: tuple[str, ...] = ()) -> None:
        """`ns`: the namespace to run in (default: the lab's server namespace, reached at
        ``lab.server_ip``; elsewhere at the config's ``rtc.node_ip``). `extra_args`: more
        ``trackyard server`` arguments, e.g. ("--role", "media")."""
        self.lab = lab
        self.config = config or lab_config(lab)
        self.ns = ns or lab.server_ns
        self.address = lab.server_ip if self.ns == lab.server_ns else self.config.rtc.node_ip
        self.extra_args = extra_args
        self._dir = tempfile.TemporaryDirectory(prefix="trackyard-lab-")
        self.dir = Path(self._dir.name)
        self.config_path = self.dir / "trackyard.yaml"
        self.config_path.write_text(config_to_yaml(self.config))
        self.log_path = self.dir / "server.log"
        self.process: LabProcess | None = None

    @property
    def ws_url(self) -> str:
        """What clients in the client namespaces dial."""
        return f"ws://{self.address}:{self.config.port}"

    @property
    def local_url(self) -> str:
        """What helpers inside the server namespace use."""
        return f"http://127.0.0.1:{self.config.port}"

    def start(self, timeout: float = 20.0) -> "LabServer":
        self.launch()
        return self.wait_started(timeout)

    def launch(self) -> "LabServer":
        """Start the process without waiting (`wait_started` waits), so nodes start in parallel."""
        self.process = self.lab.run(self.ns, server_argv(self.config_path, *self.extra_args), env=server_env(),
                                    stdout=self.log_path, stderr=self.log_path.with_suffix(".stderr"))
        return self

    def wait_started(self, timeout: float = 20.0) -> "LabServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"server exited with {self.process.returncode()}:\n{self.logs()}")
            if _LISTENING.search(self.logs()):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"server did not start within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in (self.log_path, self.log_path.with_suffix(".stderr")):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, timeout: float = 10.0) -> int | None:
        return self.process.stop(timeout) if self.process else None

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()

    # --- RoomService through a helper inside the server namespace ----------------------
    def api(self, *args: str, timeout: float = 20.0) -> dict:
        """Run ``lab_api.py <args>`` in the server namespace; return its JSON answer."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        proc = self.lab.exec(self.ns,
                             [sys.executable, str(LAB_API), "--url", self.local_url, "--key", API_KEY,
                              "--secret", API_SECRET, *args], timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"lab_api {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def participants(self, room: str, *, wait_for: list[str] | None = None, timeout: float = 10.0) -> list[dict]:
        """ListParticipants(room). With `wait_for`, polls (inside the helper, bounded by
        `timeout`) until all those identities are present; returns the last list either way."""
        args = ["participants", room, "--timeout", str(timeout)]
        if wait_for:
            args += ["--wait-for", ",".join(wait_for)]
        return self.api(*args, timeout=timeout + 15)["participants"]

    def rooms(self) -> list[dict]:
        return self.api("rooms")["rooms"]


class ReferenceLabServer(LabServer):
    """`livekit-server` (a binary given by path) in the lab's server namespace, with the
    same addresses, ports and API key as `LabServer`: the e2e tests can be run against the
    reference SFU to tell a test bug from a trackyard bug (set
    ``TRACKYARD_E2E_REFERENCE=/path/to/livekit-server``; see tests/integration/conftest.py).
    Nothing is downloaded: without the variable the tests use trackyard."""

    def __init__(self, lab: NetLab, binary: str) -> None:
        super().__init__(lab)
        self.binary = binary
        self.config_path.write_text(json.dumps({
            "port": HTTP_PORT, "bind_addresses": ["0.0.0.0"],
            "rtc": {"udp_port": UDP_PORT, "tcp_port": HTTP_PORT + 1, "use_external_ip": False,
                    "node_ip": lab.server_ip, "enable_loopback_candidate": False,
                    # every lab link carries the same address: one interface, one UDP socket
                    "interfaces": {"includes": [lab.links(lab.server_ns)[0]]}},
            "keys": {API_KEY: API_SECRET}, "logging": {"level": "info"},
        }))  # JSON is YAML

    def start(self, timeout: float = 20.0) -> "ReferenceLabServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        self.process = self.lab.run(self.lab.server_ns, [self.binary, "--config", str(self.config_path)],
                                    env=env, stdout=self.log_path, stderr=self.log_path.with_suffix(".stderr"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"livekit-server exited with {self.process.returncode()}:\n{self.logs()}")
            probe = self.lab.exec(self.lab.server_ns, [sys.executable, "-c",
                                                       "import socket; socket.create_connection(('127.0.0.1', %d), 1)"
                                                       % HTTP_PORT], timeout=5)
            if probe.returncode == 0:
                return self
            time.sleep(0.2)
        raise TimeoutError(f"livekit-server did not start within {timeout}s:\n{self.logs()}")
