"""Runs a scenario: joins the simulated participants at the join rate, waits until the
subscriptions are in place, measures for `duration` seconds, stops the media, leaves.

While it runs, a line per second goes to the progress callback (stderr in the CLI) and a
time series is kept (participants connected, server CPU, packets and loss per second) for
the ramp plots. The numbers are put together by `results.build`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable

import aiohttp

from trackyard.engine import LoadGenerator
from trackyard.media.dtls import node_certificate

from . import results, stats
from .cpu import ServerCpu, own_cpu_seconds, pids_by_name
from .media_plan import video_layers
from .participant import Participant, Publisher, RunContext, Subscriber
from .scenario import Scenario, ScenarioError

log = logging.getLogger(__name__)

# after the media stops, the last snapshot waits until nothing more arrives (bounded)
DRAIN_QUIET_S = 0.3
DRAIN_MAX_S = 5.0


def route_source_ip(url: str) -> tuple[str, bool]:
    """The local address that routes to the server (nothing is sent), and whether the
    server is on loopback (then only loopback candidates are ever checked)."""
    host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ScenarioError(f"cannot resolve {host}: {exc}") from exc
    family, _, _, _, addr = infos[0]
    loopback = ipaddress.ip_address(addr[0]).is_loopback
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((addr[0], 9))
        return s.getsockname()[0], loopback


def build_participants(sc: Scenario, ctx: RunContext) -> list[Participant]:
    """Publishers of every room first (round-robin over rooms), then subscribers."""
    layers = video_layers(sc.video_resolution, sc.simulcast)
    rooms = [f"{sc.room_prefix}-{r}" for r in range(sc.rooms)]
    order: list[Participant] = []
    for i in range(sc.video_publishers):
        order += [Publisher(ctx, room, f"vpub-{i:03d}", audio=False, video=layers) for room in rooms]
    for i in range(sc.audio_publishers):
        order += [Publisher(ctx, room, f"apub-{i:03d}", audio=True, video=None) for room in rooms]
    for i in range(sc.subscribers):
        order += [Subscriber(ctx, room, f"sub-{i:04d}") for room in rooms]
    return order


def ensure_file_limit(participants: int) -> None:
    """Each simulated participant holds a WebSocket and a UDP socket: raise the soft limit of
    open files as far as the hard limit allows, or say clearly that it is too low."""
    import resource

    need = 2 * participants + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need or soft == resource.RLIM_INFINITY:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ScenarioError(f"{participants} participants need about {need} open files; the limit is {hard} "
                            f"(raise it with `ulimit -n`)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class Run:
    def __init__(self, sc: Scenario, progress: Callable[[str], None] | None = None) -> None:
        self.sc = sc.validate()
        ensure_file_limit(sc.participants)
        self.progress = progress or (lambda line: None)
        pids = list(sc.server_pids)
        if sc.server_process_name:
            found = pids_by_name(sc.server_process_name)
            if not found:
                raise ScenarioError(f"no process named {sc.server_process_name!r}")
            pids += found
        try:
            self.cpu = ServerCpu(pids) if pids else None
        except OSError as exc:
            raise ScenarioError(f"cannot read the CPU time of server PIDs {pids}: {exc}") from exc
        self.series: list[dict] = []
        self.loop_lag_ms: list[float] = []
        self.participants: list[Participant] = []
        self.phase = "joining"
        self._t0 = 0.0

    def _sample(self, gen: LoadGenerator, last: dict) -> None:
        totals = gen.totals()
        now = time.monotonic()
        rx, expected = totals["rx_packets"], totals["rx_expected"]
        cpu = self.cpu.seconds() if self.cpu else None
        dt = max(1e-6, now - last.get("t", now - 1))
        d_rx, d_exp = rx - last.get("rx", 0), expected - last.get("expected", 0)
        entry = {
            "t": round(now - self._t0, 2),
            "phase": self.phase,
            "publishers": sum(1 for p in self.participants if isinstance(p, Publisher) and p.timings.connected),
            "subscribers": sum(1 for p in self.participants if isinstance(p, Subscriber) and p.timings.connected),
            "failed": sum(1 for p in self.participants if p.error),
            "rx_pps": round(d_rx / dt, 1),
            "tx_pps": round((totals["sent_packets"] - last.get("sent", 0)) / dt, 1),
            "loss_pct": round(100.0 * max(0, d_exp - d_rx) / d_exp, 3) if d_exp > 0 else 0.0,
            "server_cpu_pct": round(100.0 * (cpu - last["cpu"]) / dt, 1) if cpu is not None and "cpu" in last else None,
        }
        last.update(t=now, rx=rx, expected=expected, sent=totals["sent_packets"], cpu=cpu)
        self.series.append(entry)
        cpu_text = f" server cpu {entry['server_cpu_pct']}%" if entry["server_cpu_pct"] is not None else ""
        self.progress(f"[{entry['t']:7.1f}s {self.phase:>9}] pubs {entry['publishers']} subs {entry['subscribers']}"
                      f" failed {entry['failed']} | rx {entry['rx_pps']:.0f} pkt/s tx {entry['tx_pps']:.0f} pkt/s"
                      f" loss {entry['loss_pct']:.2f}%{cpu_text}")

    async def _lag_probe(self) -> None:
        """How late this event loop runs a 100 ms timer: the bench's own delay, which also
        lands in the join timings it measures (reported so they can be judged)."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.1)
            self.loop_lag_ms.append(round((time.monotonic() - start - 0.1) * 1000, 3))

    async def _sampler(self, gen: LoadGenerator) -> None:
        last: dict = {}
        while True:
            await asyncio.sleep(1.0)
            try:
                self._sample(gen, last)
            except Exception:
                log.exception("progress sample failed")

    async def _drain(self, gen: LoadGenerator) -> None:
        """Wait until no media packet arrived for DRAIN_QUIET_S (at most DRAIN_MAX_S)."""
        deadline = time.monotonic() + DRAIN_MAX_S
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = gen.totals()["rx_packets"]
            if got != last:
                last, quiet_since = got, time.monotonic()
            elif time.monotonic() - quiet_since >= DRAIN_QUIET_S:
                return
            await asyncio.sleep(0.1)

    def _settled(self, gen: LoadGenerator) -> bool:
        """Every connected subscriber has all tracks, and a packet on every enabled one."""
        snap = gen.snapshot()
        got = {(t["id"], s["ssrc"]) for t in snap["transports"] for s in t["rx"] if s["packets"] > 0}
        for p in self.participants:
            if not isinstance(p, Subscriber) or not p.timings.connected or p.peer is None:
                continue
            if len(p.subscriptions) < self.sc.tracks_per_room:
                return False
            for sub in p.subscriptions.values():
                if sub.quality is None:
                    continue
                if not any((p.peer.handle, ssrc) in got for ssrc in sub.ssrcs):
                    return False
        return True

    async def run(self) -> dict:
        sc = self.sc
        local_ip, loopback = route_source_ip(sc.url)
        if sc.local_ip:
            local_ip = sc.local_ip
        gen = LoadGenerator()
        gen.start()
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        ctx = RunContext(gen, node_certificate(), http, sc.url, sc.api_key, sc.api_secret, local_ip, loopback,
                         join_timeout=sc.join_timeout, layout=sc.layout)
        self.participants = build_participants(sc, ctx)
        self._t0 = time.monotonic()
        sampler = asyncio.get_running_loop().create_task(self._sampler(gen))
        lag = asyncio.get_running_loop().create_task(self._lag_probe())
        cpu_start_own = own_cpu_seconds()
        try:
            tasks = []
            for i, p in enumerate(self.participants):
                delay = self._t0 + i / sc.join_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.get_running_loop().create_task(p.run_join()))
            await asyncio.gather(*tasks)
            joined_at = time.monotonic()
            self.phase = "settling"
            deadline = joined_at + sc.settle_timeout
            while time.monotonic() < deadline and not self._settled(gen):
                await asyncio.sleep(0.2)
            settle_s = time.monotonic() - joined_at
            self.phase = "measuring"
            gen.mark_window(True)
            before = gen.snapshot(histograms=True)
            cpu0, own0, t_start = (self.cpu.seconds() if self.cpu else None), own_cpu_seconds(), time.monotonic()
            await asyncio.sleep(sc.duration)
            cpu1, own1, t_end = (self.cpu.seconds() if self.cpu else None), own_cpu_seconds(), time.monotonic()
            gen.set_sending(False)
            gen.mark_window(False)
            self.phase = "draining"
            await self._drain(gen)
            after = gen.snapshot(histograms=True)
            window = {
                "seconds": t_end - t_start,
                "settle_seconds": settle_s,
                "server_cpu_seconds": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
                "loadgen_cpu_seconds": own1 - own0,
                "server_pids": self.cpu.pids if self.cpu else [],
                "data_channels": results.data_channels(self.participants),  # before anyone leaves
            }
        finally:
            sampler.cancel()
            lag.cancel()
            self.phase = "leaving"
            await asyncio.gather(*(p.close() for p in self.participants), return_exceptions=True)
            await http.close()
            gen.close()
        result = results.build(sc, self.participants, before, after, window, self.series,
                               loadgen_cpu_total=own_cpu_seconds() - cpu_start_own)
        result["loadgen"]["event_loop_lag_ms"] = stats.summary(self.loop_lag_ms, 1)
        return result
