"""Start real trackyard servers for tests.

`ServerProcess` runs `python -m trackyard server --config FILE` as a subprocess on a free
loopback port (the way an operator runs it) and stops it by PID. `InProcessServer` serves
the same application inside the test's event loop, for tests that plug in a test media
backend.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from trackyard.config import Config, config_to_yaml, load_config

API_KEY = "devkey"
API_SECRET = "secret-secret-secret-secret-secret"


# Ports handed out by this process. The kernel picks a bound-then-released port at random, so
# two picks made before either port is bound (a config's ports, several nodes started at once)
# can be the same port; a port is therefore never handed out twice.
_handed_out: set[tuple[int, int]] = set()


def _free(kind: int) -> int:
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if (kind, port) not in _handed_out:
            _handed_out.add((kind, port))
            return port


def free_port() -> int:
    return _free(socket.SOCK_STREAM)


def free_udp_port() -> int:
    return _free(socket.SOCK_DGRAM)


def make_config(**sections) -> Config:
    """A loopback config with one key; keyword arguments override sections, e.g.
    room={"max_participants": 2}, signal={"reconnect_timeout": 1.0}."""
    cfg = load_config(body="{}", env={"LIVEKIT_KEYS": f"{API_KEY}: {API_SECRET}"})
    cfg.bind_addresses = ["127.0.0.1"]
    cfg.port = free_port()
    cfg.rtc.udp_port = free_udp_port()
    cfg.rtc.tcp_port = free_port()
    cfg.rtc.node_ip = "127.0.0.1"  # ICE candidates on loopback only (tests never reach other addresses)
    for name, values in sections.items():
        section = getattr(cfg, name)
        for key, value in values.items():
            if not hasattr(section, key):
                raise AttributeError(f"{name}.{key}")
            setattr(section, key, value)
    return cfg


def server_env() -> dict[str, str]:
    """The environment a test server runs with: ours, minus LiveKit variables that would
    override its config (LIVEKIT_KEYS, LIVEKIT_CONFIG, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_argv(config_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trackyard", "server", "--config", str(config_path), *extra]


class ServerProcess:
    def __init__(self, config: Config, *, extra_args: tuple[str, ...] = ()) -> None:
        self.config = config
        self._dir = tempfile.TemporaryDirectory(prefix="trackyard-test-")
        self.config_path = Path(self._dir.name) / "trackyard.yaml"
        self.config_path.write_text(config_to_yaml(config))
        self.log_path = Path(self._dir.name) / "server.log"
        self.proc: subprocess.Popen | None = None
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}"

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(server_argv(self.config_path, *self.extra_args),
                                     stdout=self._log, stderr=subprocess.STDOUT, env=server_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.config.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"server did not start:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()


class InProcessServer:
    """The full trackyard application served from the test's own event loop."""

    def __init__(self, config: Config, *, media=None) -> None:
        from trackyard.server import build_server

        self.config = config
        self.server = build_server(config, media=media)
        self._runner: web.AppRunner | None = None

    @property
    def node(self):
        return self.server.node

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}"

    async def start(self) -> "InProcessServer":
        from trackyard.server import make_runner

        self._runner = make_runner(self.server.app, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.config.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def http_get(url: str, **kwargs) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, **kwargs) as resp:
            return resp.status, await resp.text(), dict(resp.headers)


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (bounded); it may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
