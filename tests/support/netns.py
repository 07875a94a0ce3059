"""Private network namespaces for end-to-end tests with libwebrtc clients.

libwebrtc (the `livekit` Python SDK, browsers) gathers no ICE candidates on loopback, so a
test that wants real media runs the server and every client in namespaces of its own.
`NetLab` creates them, starts processes inside them, optionally impairs a link, and
removes everything again (by PID and by name), pass or fail.

Topology (one lab; names ``ty-<creator pid>-<4 hex>-srv`` / ``-c0`` / ``-c1`` ...)::

      ns "…-srv"                              ns "…-c<i>"
    +--------------------------+            +------------------------+
    | lo 127.0.0.1             |            | lo 127.0.0.1           |
    | to-c0 10.77.0.1 ---------+-- veth ----+- ty0 10.77.1.1         |  client 0
    |       peer 10.77.1.1/32  |            |   peer 10.77.0.1/32    |
    | to-c1 10.77.0.1 ---------+-- veth ----+- ty0 10.77.1.2         |  client 1
    |       peer 10.77.1.2/32  |            |   peer 10.77.0.1/32    |
    +--------------------------+            +------------------------+

* Point-to-point veth pairs, one per client, created directly inside their namespaces
  (``ip link add … netns A type veth peer … netns B``): the root namespace never holds an
  end, no bridge, no host interface is touched.
* The server has ONE address, ``10.77.0.1`` (`NetLab.server_ip`), on every link (an
  ``address peer`` /32 route per client), so a UDP socket bound to 0.0.0.0 always answers
  from the address the client dialled (what ICE needs). Client ``i`` is ``10.77.1.<i+1>``.
* Routes: each client has exactly one, to 10.77.0.1; the server one per client. No default
  route anywhere, no NAT, IP forwarding off (the kernel default in a new namespace), so
  clients cannot reach each other directly (media has to go through the server) and no
  packet can leave the lab. IPv6 is disabled in the lab's namespaces.
* ``lo`` is up everywhere: a server in "…-srv" can be reached by helpers started in that
  namespace at 127.0.0.1.

Running things inside: `NetLab.run` starts ``ip netns exec NS [setpriv --pdeathsig KILL
--] argv…`` (iproute2 and setpriv exec the command directly, so the Popen PID is the
command's PID; the parent-death signal kills it if the test process dies). A virtualenv's interpreter needs
nothing special: run ``.venv/bin/python`` (``sys.executable``) by path; the environment is
passed through unchanged. ``/etc/netns/NAME`` is not needed (it only overrides
resolv.conf/hosts; tests use literal addresses).

Impairment: `NetLab.set_loss(ns, percent)` drops that share of packets (optionally UDP
only, so signaling stays intact) on a client's link, or on every link of the server
namespace, in either or both directions. ``tc netem`` is not used for loss: this machine's
kernel has no sch_netem (nor the gact action). Instead a clsact classic-BPF filter (``ld
rand`` against a threshold) picks packets and its ``mirred`` action redirects them into a
veth pair inside the same namespace that leads nowhere (``tyblk0``/``tyblk1``), where they
die; `dropped_by_loss` counts them. Delay (`set_delay`) needs netem and raises
`ImpairmentUnsupported` without it. A rate limit (`set_rate`) is a ``tbf`` root qdisc.

Routed labs (`RoutedLab`, for a cluster: several server-side hosts, each with an address of
its own)::

    ns "…-<host>" 10.78.0.<n>  ──veth──┐                    ┌──veth── ns "…-c<i>" 10.78.1.<i+1>
    (one per named host: "lb",        ns "…-rt" 10.78.0.254 (IP forwarding on, one
     "db", "ctl0", "med0", …)          to-<host> / to-c<i> link each, a /32 route per peer)

* A distinct range (10.78.0.0/16) from the single-server lab. Every host and client has one
  point-to-point link to the router and one route, 10.78.0.0/16 via 10.78.0.254; the router
  forwards between them. Nothing else is routed, so no packet leaves the lab.
* Host names are short lowercase words (``[a-z][a-z0-9]{0,9}``), host ``k`` (in the order
  given) gets ``10.78.0.<k+1>``: `RoutedLab.address`. Processes in different hosts never
  share ports, so every node of a cluster can use the same ones.
* `run`, `exec`, `set_loss` (on a host's, client's or the router's links), `close` and
  `leftovers` work as for `NetLab`; `server_ns` / `server_ip` name the router.

Cleanup: `NetLab.close` SIGTERMs, then SIGKILLs every process it started (by PID), kills
any other process still inside its namespaces (``ip netns pids``), and deletes the
namespaces (which destroys the veths). `cleanup_stale` does the same for leftovers of
crashed runs: namespaces named ``ty-<pid>-…`` whose creator pid no longer exists.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Sequence

PREFIX = "ty-"
SERVER_IP = "10.77.0.1"
ROUTED_NET = "10.78.0.0/16"
ROUTER_IP = "10.78.0.254"
_CMD_TIMEOUT = 10.0
_HAVE_SETPRIV = shutil.which("setpriv") is not None  # util-linux


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root / no CAP_NET_ADMIN / no ip)."""


class ImpairmentUnsupported(RuntimeError):
    """The kernel lacks what the requested impairment needs."""


def _ip(*args: str, check: bool = True, timeout: float = _CMD_TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _tc(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"tc -n {ns} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _sysctl(ns: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"],
                   capture_output=True, timeout=_CMD_TIMEOUT, check=True)


def list_namespaces() -> list[str]:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pids_in(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids(pids: Sequence[int], timeout: float = 3.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL the given PIDs."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def delete_namespace(ns: str) -> None:
    """Kill whatever runs inside `ns` (by PID) and delete it; missing namespaces are fine."""
    if ns not in list_namespaces():
        return
    pids = [p for p in _pids_in(ns) if p != os.getpid()]
    if pids:
        _kill_pids(pids)
    _ip("netns", "del", ns, check=False)


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete lab namespaces left by crashed runs (creator pid gone). Returns their names."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-[0-9a-f]{{4}}-[a-z][a-z0-9]*$")
    removed = []
    for ns in list_namespaces():
        match = pattern.match(ns)
        if not match:
            continue
        if _pid_alive(int(match.group(1))):
            continue  # a live run (maybe another test process) owns it
        delete_namespace(ns)
        removed.append(ns)
    return removed


@functools.lru_cache(maxsize=1)
def netns_available() -> tuple[bool, str]:
    """Can this process create namespaces and veth pairs? (False, reason) if not. Probed
    once per process with a throwaway namespace."""
    if os.geteuid() != 0:
        return False, "network-namespace tests need root (CAP_NET_ADMIN); running as uid %d" % os.geteuid()
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}-c0"
    try:
        proc = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return False, "the `ip` command (iproute2) is not installed"
    except subprocess.TimeoutExpired:
        return False, "`ip netns add` timed out"
    if proc.returncode != 0:
        return False, f"`ip netns add` failed: {proc.stderr.strip()}"
    try:
        veth = _ip("link", "add", "a0", "netns", name, "type", "veth", "peer", "name", "a1", "netns", name,
                   check=False)
        if veth.returncode != 0:
            return False, f"cannot create veth pairs: {veth.stderr.strip()}"
    finally:
        _ip("netns", "del", name, check=False)
    return True, ""


_netem_supported: bool | None = None


def _loss_bytecode(percent: float, *, udp_only: bool = False) -> str:
    """Classic BPF for cls_bpf: match (ret -1 -> the drop action) when a random u32 is below
    percent% of 2**32; with `udp_only`, only IPv4 UDP packets are candidates. Offsets are
    from the Ethernet header (tc runs classifiers with skb->data at the MAC header)."""
    threshold = min(int(percent / 100.0 * 2**32), 2**32 - 1)
    skf_ad_random = 0xFFFFF000 + 56  # SKF_AD_OFF + SKF_AD_RANDOM
    insns = []
    if udp_only:
        insns += [
            (0x28, 0, 0, 12),       # ldh [12]           ethertype
            (0x15, 0, 5, 0x0800),   # jeq #IPv4, next, keep
            (0x30, 0, 0, 23),       # ldb [23]           IPv4 protocol
            (0x15, 0, 3, 17),       # jeq #UDP, next, keep
        ]
    insns += [
        (0x20, 0, 0, skf_ad_random),  # ld  [rand]
        (0x35, 1, 0, threshold),      # jge #threshold, keep, drop
        (0x06, 0, 0, 0xFFFFFFFF),     # drop: ret #-1 (match -> action)
        (0x06, 0, 0, 0),              # keep: ret #0 (no match)
    ]
    return ",".join([str(len(insns))] + [f"{c} {jt} {jf} {k}" for c, jt, jf, k in insns])


def _open_output(target):
    """(file for Popen, path to read back or None, whether we opened it)."""
    if isinstance(target, (str, Path)):
        return open(target, "wb"), Path(target), True
    if target is None:
        return subprocess.DEVNULL, None, False
    return target, None, False


class LabProcess:
    """A process started inside a lab namespace."""

    def __init__(self, ns: str, argv: list[str], proc: subprocess.Popen, stdout_path: Path | None,
                 stderr_path: Path | None) -> None:
        self.ns = ns
        self.argv = argv
        self.proc = proc
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path and self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path and self.stderr_path.exists() else ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; reap. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.poll()

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        return self.proc.poll()


class NetLab:
    """One server namespace and `clients` client namespaces (see the module docstring).

    Use as ``with NetLab(2) as lab:`` (or call `start` / `close`). Raises `NetnsUnavailable`
    from `start` when namespaces cannot be created.
    """

    def __init__(self, clients: int = 2, *, prefix: str = PREFIX) -> None:
        if not 1 <= clients <= 250:
            raise ValueError("clients must be 1..250")
        self.prefix = prefix
        self.id = f"{prefix}{os.getpid()}-{secrets.token_hex(2)}"
        self.server_ns = f"{self.id}-srv"
        self.client_ns = [f"{self.id}-c{i}" for i in range(clients)]
        self.server_ip = SERVER_IP
        self._created: list[str] = []
        self._processes: list[LabProcess] = []
        self._blackholes: set[str] = set()

    # --- addressing -------------------------------------------------------------------
    @property
    def namespaces(self) -> list[str]:
        return [self.server_ns, *self.client_ns]

    def client_ip(self, index: int) -> str:
        return f"10.77.1.{index + 1}"

    def links(self, ns: str) -> list[str]:
        """The lab interfaces of a namespace: ["ty0"] in a client, ["to-c0", …] in the server."""
        if ns == self.server_ns:
            return [f"to-c{i}" for i in range(len(self.client_ns))]
        if ns in self.client_ns:
            return ["ty0"]
        raise KeyError(ns)

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> "NetLab":
        ok, reason = netns_available()
        if not ok:
            raise NetnsUnavailable(reason)
        cleanup_stale(self.prefix)
        try:
            self._add_namespaces()
            self._link()
        except BaseException:
            self.close()
            raise
        return self

    def _link(self) -> None:
        """The links and addresses (the namespaces exist): a veth pair per client."""
        for i, ns in enumerate(self.client_ns):
            srv_dev, cli_dev, cli_ip = f"to-c{i}", "ty0", self.client_ip(i)
            _ip("link", "add", srv_dev, "netns", self.server_ns, "type", "veth",
                "peer", "name", cli_dev, "netns", ns)
            _ip("-n", self.server_ns, "addr", "add", self.server_ip, "peer", f"{cli_ip}/32", "dev", srv_dev)
            _ip("-n", ns, "addr", "add", cli_ip, "peer", f"{self.server_ip}/32", "dev", cli_dev)
            _ip("-n", self.server_ns, "link", "set", srv_dev, "up")
            _ip("-n", ns, "link", "set", cli_dev, "up")

    def _add_namespaces(self) -> None:
        for ns in self.namespaces:
            _ip("netns", "add", ns)
            self._created.append(ns)
            for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                _sysctl(ns, key, "1")
            _ip("-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        """Stop every process it started (SIGTERM, at most 3 s in all, then SIGKILL, by PID),
        then delete the namespaces (killing anything else still inside). Safe to call twice."""
        running = [p for p in self._processes if p.alive()]
        for p in running:
            try:
                p.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(p.alive() for p in running):
            time.sleep(0.05)
        for p in running:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - keep cleaning up
                pass
        self._blackholes.clear()
        for ns in reversed(self._created):
            try:
                delete_namespace(ns)
            except Exception:  # noqa: BLE001
                pass
        self._created.clear()

    def __enter__(self) -> "NetLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (empty after `close`)."""
        return [ns for ns in list_namespaces() if ns.startswith(self.id)]

    # --- processes --------------------------------------------------------------------
    def run(self, ns: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
            stdout: str | Path | IO | None = None, stderr: str | Path | IO | None = None,
            cwd: str | Path | None = None, die_with_parent: bool = True) -> LabProcess:
        """Start ``argv`` inside namespace `ns`. `stdout`/`stderr`: a path (opened for writing,
        kept on the LabProcess for reading back), an open file, or None (discarded).
        The process is stopped by PID in `close` if still running. With `die_with_parent`
        (``setpriv --pdeathsig KILL``, kept across exec) it is also SIGKILLed when the
        thread that started it ends, e.g. when the test process is killed: start it from
        the test's main thread, not from a short-lived worker thread."""
        if ns not in self._created:
            raise KeyError(f"{ns} is not a namespace of this lab")
        wrapper = ["setpriv", "--pdeathsig", "KILL", "--"] if die_with_parent and _HAVE_SETPRIV else []
        (out, out_path, out_owned), (err, err_path, err_owned) = _open_output(stdout), _open_output(stderr)
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *wrapper, *argv], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        finally:
            for f, owned in ((out, out_owned), (err, err_owned)):
                if owned:
                    f.close()
        lp = LabProcess(ns, list(argv), proc, out_path, err_path)
        self._processes.append(lp)
        return lp

    def exec(self, ns: str, argv: Sequence[str], *, timeout: float = 20.0,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` inside `ns` to completion (bounded), capturing text output."""
        if ns not in self._created:
            raise KeyError(f"{ns} is not a namespace of this lab")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            raise TimeoutError(f"{argv} in {ns} did not finish in {timeout}s\n{out}\n{err}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # --- impairment -------------------------------------------------------------------
    @staticmethod
    def netem_supported() -> bool:
        global _netem_supported
        if _netem_supported is None:
            config = Path("/proc/config.gz")
            if config.exists():

                text = gzip.decompress(config.read_bytes()).decode(errors="replace")
                _netem_supported = bool(re.search(r"^CONFIG_NET_SCH_NETEM=[ym]$", text, re.M))
            else:  # probe: a throwaway namespace
                name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}-c0"
                _ip("netns", "add", name)
                try:
                    _netem_supported = _tc(name, "qdisc", "add", "dev", "lo", "root", "netem",
                                           "delay", "1ms", check=False).returncode == 0
                finally:
                    _ip("netns", "del", name, check=False)
        return _netem_supported

    def _targets(self, ns: str) -> list[str]:
        if ns not in self._created:
            raise KeyError(f"{ns} is not a namespace of this lab")
        return self.links(ns)

    def _ensure_blackhole(self, ns: str) -> None:
        if ns in self._blackholes:
            return
        _ip("link", "add", "tyblk0", "netns", ns, "type", "veth", "peer", "name", "tyblk1", "netns", ns)
        _ip("-n", ns, "link", "set", "tyblk0", "up")
        _ip("-n", ns, "link", "set", "tyblk1", "up")
        self._blackholes.add(ns)

    def set_loss(self, ns: str, percent: float, *, direction: str = "both", udp_only: bool = False) -> None:
        """Drop `percent` % of the packets on the lab link(s) of `ns` (a client: its one link;
        the server: every link), at random, independently per packet. `direction`: "egress"
        (leaving `ns`), "ingress" (arriving) or "both". `udp_only`: leave TCP (signaling)
        alone and drop only UDP (media). 0 removes the loss. Independent of `set_delay`."""
        if direction not in ("both", "egress", "ingress"):
            raise ValueError(direction)
        if not 0 <= percent <= 100:
            raise ValueError(percent)
        for dev in self._targets(ns):
            _tc(ns, "qdisc", "del", "dev", dev, "clsact", check=False)
        if percent == 0:
            return
        self._ensure_blackhole(ns)
        code = _loss_bytecode(percent, udp_only=udp_only)
        hooks = ["egress", "ingress"] if direction == "both" else [direction]
        for dev in self._targets(ns):
            _tc(ns, "qdisc", "add", "dev", dev, "clsact")
            for hook in hooks:
                _tc(ns, "filter", "add", "dev", dev, hook, "bpf", "bytecode", code,
                    "action", "mirred", "egress", "redirect", "dev", "tyblk0")

    def set_delay(self, ns: str, ms: float) -> None:
        """Delay packets leaving `ns` on its lab link(s) by `ms` (netem; 0 removes it).
        Raises `ImpairmentUnsupported` on kernels without sch_netem (like this machine's)."""
        for dev in self._targets(ns):
            _tc(ns, "qdisc", "del", "dev", dev, "root", check=False)
        if ms == 0:
            return
        if not self.netem_supported():
            raise ImpairmentUnsupported("this kernel has no sch_netem (CONFIG_NET_SCH_NETEM); no delay emulation")
        for dev in self._targets(ns):
            _tc(ns, "qdisc", "replace", "dev", dev, "root", "netem", "delay", f"{ms}ms")

    def set_rate(self, ns: str, kbit: float, *, link: str | None = None) -> None:
        """Limit what leaves `ns` on its lab link(s) (or only `link`, e.g. the server's
        ``to-c1``: that client's downlink) to `kbit` kbit/s with a token bucket (``tc tbf``;
        a queue of about 100 ms, beyond which packets are dropped). 0 removes the limit.
        Uses the root qdisc, like `set_delay` (one or the other); deleting the namespaces
        in `close` removes it too."""
        if kbit < 0:
            raise ValueError(kbit)
        devs = self._targets(ns)
        if link is not None:
            if link not in devs:
                raise KeyError(f"{link} is not a lab link of {ns}")
            devs = [link]
        for dev in devs:
            _tc(ns, "qdisc", "del", "dev", dev, "root", check=False)
        if kbit == 0:
            return
        burst = max(4000, int(kbit * 1000 / 8 * 0.02))  # bytes: 20 ms at the rate, at least a few packets
        for dev in devs:
            _tc(ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{int(kbit)}kbit",
                "burst", str(burst), "latency", "100ms")

    def clear_impairment(self, ns: str) -> None:
        """Remove loss and delay from the lab link(s) of `ns`."""
        self.set_loss(ns, 0)
        self.set_delay(ns, 0)

    def dropped_by_loss(self, ns: str) -> int:
        """Packets diverted by the BPF loss filter in `ns` so far (its black hole's rx count)."""
        if ns not in self._blackholes:
            return 0

        info = json.loads(_ip("-n", ns, "-s", "-j", "link", "show", "tyblk1").stdout)
        return int(info[0]["stats64"]["rx"]["packets"])


class RoutedLab(NetLab):
    """Named server-side hosts and client namespaces around a router namespace (see
    "Routed labs" in the module docstring). ``with RoutedLab(["lb", "db", "med0"], 2) as lab``."""

    def __init__(self, hosts: Sequence[str], clients: int = 2, *, prefix: str = PREFIX) -> None:
        super().__init__(clients, prefix=prefix)
        hosts = list(hosts)
        if not 1 <= len(hosts) <= 200 or len(set(hosts)) != len(hosts):
            raise ValueError("1..200 distinct host names")
        for name in hosts:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name) or name == "rt" or re.fullmatch(r"c\d+", name):
                raise ValueError(f"bad host name {name!r}")
        self.server_ns = f"{self.id}-rt"
        self.server_ip = ROUTER_IP
        self.host_ns = {name: f"{self.id}-{name}" for name in hosts}
        self._host_ip = {name: f"10.78.0.{k + 1}" for k, name in enumerate(hosts)}

    @property
    def router_ns(self) -> str:
        return self.server_ns

    @property
    def namespaces(self) -> list[str]:
        return [self.server_ns, *self.host_ns.values(), *self.client_ns]

    def address(self, host: str) -> str:
        return self._host_ip[host]

    def client_ip(self, index: int) -> str:
        return f"10.78.1.{index + 1}"

    def _peers(self) -> list[tuple[str, str, str]]:
        """(router-side device, namespace, address) for every host and client."""
        peers = [(f"to-{name}", ns, self._host_ip[name]) for name, ns in self.host_ns.items()]
        return peers + [(f"to-c{i}", ns, self.client_ip(i)) for i, ns in enumerate(self.client_ns)]

    def links(self, ns: str) -> list[str]:
        if ns == self.server_ns:
            return [dev for dev, _, _ in self._peers()]
        if ns in self.client_ns or ns in self.host_ns.values():
            return ["ty0"]
        raise KeyError(ns)

    def _link(self) -> None:
        """A veth pair from the router to every host and client; the router forwards."""
        _sysctl(self.server_ns, "net.ipv4.ip_forward", "1")
        for dev, ns, address in self._peers():
            _ip("link", "add", dev, "netns", self.server_ns, "type", "veth", "peer", "name", "ty0", "netns", ns)
            _ip("-n", self.server_ns, "addr", "add", ROUTER_IP, "peer", f"{address}/32", "dev", dev)
            _ip("-n", ns, "addr", "add", address, "peer", f"{ROUTER_IP}/32", "dev", "ty0")
            _ip("-n", self.server_ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "ty0", "up")
            _ip("-n", ns, "route", "add", ROUTED_NET, "via", ROUTER_IP, "dev", "ty0")
