"""The etcd adapter: the only module in trackyard that imports the etcd client library.

Everything else in :mod:`trackyard.cluster` talks to etcd through :class:`EtcdStore`, a small
asyncio interface over `etcd3aio` 0.3.0 (pinned; see docs/cluster.md for why, and for the
fallback, `aetcd`, should it ever be needed — only this file would change):

=============================================  =============================================
``get(key)``                                   one :class:`Entry` or ``None``
``get_prefix(prefix)``                         ``(entries, revision)``: a consistent listing
``put(key, value, lease=0)``                   write (optionally bound to a lease)
``delete(key)`` / ``delete_prefix(prefix)``    remove; ``delete_if_unchanged(key, rev)``
``grant(ttl)`` / ``keepalive(id)`` / ``revoke``  leases; ``keepalive`` returns the remaining
                                               TTL, ``0`` when the lease no longer exists
``txn_create_if_absent(key, value, lease)``    ``(created, current)``: atomic create-only
``watch_prefix(prefix, start_revision)``       async iterator of event batches
``close()``                                    release the channel
=============================================  =============================================

Keys are given *relative* to the store's prefix (``etcd.prefix``, default ``/trackyard/``):
``store.put("nodes/ND_x", ...)`` writes ``/trackyard/nodes/ND_x``. Values are bytes (callers
encode JSON). Every call is bounded by ``timeout`` (``etcd.dial_timeout``).

Errors: a call that cannot reach etcd (refused, timed out, bad credentials, permission
denied) raises :class:`EtcdUnavailable`, a :class:`trackyard.errors.Unavailable` (503), within
``timeout``. Writing with a lease that no longer exists raises :class:`LeaseNotFound`.

Watches survive an etcd restart: the library reconnects and resumes from the revision after
the last one delivered (keys and revisions persist in etcd's data dir), so no event is lost
or repeated. A watch that cannot be resumed (the revision was compacted, or etcd cancelled
it) raises :class:`WatchLost`; callers then list again (:mod:`trackyard.cluster.view`).

Two deliberate touches on etcd3aio internals, both checked by the integration tests:
the gRPC target is computed here (the library only knows ``ipv4:`` address lists, so a DNS
name such as a Kubernetes Service would not resolve), and channel options are added: the
reconnect backoff is capped at 1 s (gRPC's default grows to 2 minutes, which would delay
recovery after an etcd outage by as much) and the connect timeout is ``timeout``.

Every call's duration and failure is recorded in ``metrics`` (:mod:`trackyard.metrics.etcd`),
which the node's ``/metrics`` reports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import grpc
import grpc.aio
from etcd3aio import (
    Etcd3Client,
    EtcdConnectionError,
    EtcdError,
    EtcdPermissionDeniedError,
    EtcdTransientError,
    EtcdUnauthenticatedError,
    prefix_range_end,
)
from etcd3aio._protobuf import Compare  # KVService has no mod-revision compare builder
from etcd3aio.kv import KVService

from trackyard.errors import NotFound, Unavailable
from trackyard.metrics.etcd import EtcdRequestMetrics

if TYPE_CHECKING:
    from trackyard.config import EtcdConfig

T = TypeVar("T")



class EtcdUnavailable(Unavailable):
    """etcd could not be reached or refused the call (503)."""


class LeaseNotFound(NotFound):
    """The lease a write names does not exist (expired or revoked)."""


class WatchLost(Exception):
    """A watch ended in a way it cannot resume from; list the prefix again."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One key as stored: ``key`` is relative to the store prefix."""

    key: str
    value: bytes
    lease: int = 0
    create_revision: int = 0
    mod_revision: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch; for ``delete`` the value is empty."""

    kind: Literal["put", "delete"]
    key: str
    value: bytes
    lease: int
    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


async def grpc_target(endpoints: list[str]) -> tuple[str, str | None]:
    """etcd endpoints (``[scheme://]host:port``) → (gRPC target, hostname for TLS checks).

    IP literals become an ``ipv4:``/``ipv6:`` list (round robin; IPv4 wins if both occur);
    a single DNS name becomes ``dns:///name:port`` (gRPC re-resolves it, e.g. a Kubernetes
    Service); several DNS names are resolved once, here (names that do not resolve are
    skipped; none resolving raises :class:`EtcdUnavailable`).
    """
    hosts: list[tuple[str, int]] = []
    for endpoint in endpoints:
        rest = endpoint.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        hosts.append((host.strip("[]"), int(port)))
    if len(hosts) == 1 and not _is_ip(hosts[0][0]):
        return f"dns:///{hosts[0][0]}:{hosts[0][1]}", hosts[0][0]
    loop = asyncio.get_running_loop()
    addrs: list[tuple[str, int]] = []
    tls_name = None
    for host, port in hosts:
        if _is_ip(host):
            addrs.append((host, port))
            continue
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            logging.getLogger(__name__).warning("etcd endpoint %s:%s does not resolve: %s", host, port, exc)
            continue
        addrs += [(info[4][0], port) for info in infos]
        tls_name = tls_name or host
    if not addrs:
        raise EtcdUnavailable(f"etcd unreachable: no endpoint of {endpoints} resolves")
    v4 = [f"{h}:{p}" for h, p in addrs if ipaddress.ip_address(h).version == 4]
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4)), tls_name
    return "ipv6:" + ",".join(dict.fromkeys(f"[{h}]:{p}" for h, p in addrs)), tls_name


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


class EtcdStore:
    """See the module docstring. Create, ``await connect()``, use, ``await close()``."""

    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "/trackyard/",
        *,
        username: str = "",
        password: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        timeout: float = 3.0,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.timeout = timeout
        self._username, self._password = username, password
        self._tls = {"ca_cert": _read(ca_file), "cert_chain": _read(cert_file), "cert_key": _read(key_file)}
        self._client: Etcd3Client | None = None
        self._auth_lock = asyncio.Lock()
        self._token_generation = 0
        self.metrics = EtcdRequestMetrics()

    @classmethod
    def from_config(cls, cfg: "EtcdConfig", *, prefix: str | None = None) -> "EtcdStore":
        return cls(
            cfg.endpoints, cfg.prefix if prefix is None else prefix,
            username=cfg.username, password=cfg.password,
            ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file,
            timeout=cfg.dial_timeout,
        )

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> "EtcdStore":
        """Create the channel. Does not wait for etcd: the first call does (bounded).
        Raises :class:`EtcdUnavailable` only when several DNS endpoints all fail to resolve."""
        if self._client is not None:
            return self
        target, tls_name = await grpc_target(self.endpoints)
        tls = {k: v for k, v in self._tls.items() if v is not None}
        client = Etcd3Client(
            ["127.0.0.1:1"],  # placeholder: the real target is set below
            rpc_max_attempts=2,
            watch_reconnect_backoff_seconds=0.1,
            watch_max_reconnect_backoff_seconds=1.0,
            tls_server_name=tls_name if tls else None,
            **tls,
        )
        client._manager.target = target  # noqa: SLF001 - see module docstring
        client._manager.grpc_options.extend([  # noqa: SLF001
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # gRPC's name for the connect timeout (TCP + TLS + HTTP/2 handshake): dial_timeout.
            ("grpc.min_reconnect_backoff_ms", max(int(self.timeout * 1000), 100)),
        ])
        await client.connect()
        self._client = client
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> "EtcdStore":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------ keys

    def _full(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _rel(self, key: bytes) -> str:
        return key.decode()[len(self.prefix):]

    def _entry(self, kv) -> Entry:
        return Entry(self._rel(kv.key), kv.value, kv.lease, kv.create_revision, kv.mod_revision)

    # ------------------------------------------------------------ calls

    @property
    def client(self) -> Etcd3Client:
        if self._client is None:
            raise RuntimeError("EtcdStore is not connected")
        return self._client

    async def _authenticate(self, seen_generation: int) -> None:
        async with self._auth_lock:
            if self._token_generation != seen_generation:
                return  # another call already re-authenticated
            self.client.set_token(None)
            try:
                resp = await self.client.auth.authenticate(self._username, self._password, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                raise EtcdUnavailable(
                    f"etcd rejected the credentials of user {self._username!r}: {exc.details()}") from None
            self.client.set_token(resp.token)
            self._token_generation += 1

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one etcd call, bounded by ``timeout``, mapping failures (module docstring),
        and record its duration (and failure) in ``metrics``."""
        started, failed = time.monotonic(), False
        try:
            return await self._call_unmetered(what, fn)
        except EtcdUnavailable:
            failed = True
            raise
        finally:
            self.metrics.observe(what, time.monotonic() - started, failed=failed)

    async def _call_unmetered(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in range(2):
                    generation = self._token_generation
                    try:
                        if self._username and generation == 0:
                            await self._authenticate(generation)
                        return await fn()
                    except EtcdUnauthenticatedError:
                        if not self._username or attempt:
                            raise
                        await self._authenticate(generation)  # token lost (e.g. etcd restarted)
                raise AssertionError("unreachable")
        except TimeoutError:
            raise EtcdUnavailable(f"etcd unreachable: {what} timed out after {self.timeout}s") from None
        except (EtcdConnectionError, EtcdTransientError) as exc:
            raise EtcdUnavailable(f"etcd unreachable: {exc}") from None
        except EtcdUnauthenticatedError as exc:
            raise EtcdUnavailable(f"etcd rejected the credentials: {exc}") from None
        except EtcdPermissionDeniedError as exc:
            raise EtcdUnavailable(f"etcd denied access: {exc}") from None
        except EtcdError as exc:
            raise EtcdUnavailable(f"etcd error in {what}: {exc}") from None
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and "lease not found" in (exc.details() or ""):
                raise LeaseNotFound(f"{what}: lease not found") from None
            raise EtcdUnavailable(f"etcd error in {what}: {exc.code().name} {exc.details()}") from None

    async def get(self, key: str) -> Entry | None:
        resp = await self._call(f"get {key}", lambda: self.client.kv.get(self._full(key), timeout=self.timeout))
        return self._entry(resp.kvs[0]) if resp.kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[Entry], int]:
        """All keys under ``prefix`` and the revision the listing is consistent at."""
        full = self._full(prefix)
        resp = await self._call(
            f"list {prefix}", lambda: self.client.kv.get(full, prefix_range_end(full), timeout=self.timeout))
        return [self._entry(kv) for kv in resp.kvs], resp.header.revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; returns the revision of the write."""
        resp = await self._call(
            f"put {key}", lambda: self.client.kv.put(self._full(key), value, lease=lease, timeout=self.timeout))
        return resp.header.revision

    async def delete(self, key: str) -> bool:
        resp = await self._call(f"delete {key}", lambda: self.client.kv.delete(self._full(key), timeout=self.timeout))
        return resp.deleted > 0

    async def delete_if_unchanged(self, key: str, mod_revision: int) -> bool:
        """Delete ``key`` only if it still has ``mod_revision``; returns whether it did."""
        full = self._full(key)
        compare = [Compare(result=Compare.EQUAL, target=Compare.MOD, key=full, mod_revision=mod_revision)]
        resp = await self._call(f"delete {key}", lambda: self.client.kv.txn(
            compare, success=[KVService.txn_op_delete(full)], timeout=self.timeout))
        return resp.succeeded

    async def delete_prefix(self, prefix: str) -> int:
        full = self._full(prefix)
        resp = await self._call(
            f"delete {prefix}*", lambda: self.client.kv.delete(full, prefix_range_end(full), timeout=self.timeout))
        return resp.deleted

    # ------------------------------------------------------------ leases

    async def grant(self, ttl: int) -> Lease:
        resp = await self._call("lease grant", lambda: self.client.lease.grant(ttl, timeout=self.timeout))
        return Lease(resp.ID, resp.TTL)

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns its TTL, or ``0`` if it no longer exists."""

        async def once() -> int:
            call = self.client.lease.keep_alive(lease_id)
            try:
                async for resp in call:
                    return max(resp.TTL, 0)
                raise EtcdConnectionError("lease keepalive stream ended without an answer")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise EtcdUnauthenticatedError(exc.details() or "") from exc
                raise EtcdConnectionError(f"lease keepalive: {exc.code().name} {exc.details()}") from exc
            finally:
                call.cancel()

        return await self._call("lease keepalive", once)

    async def revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys are deleted with it); a missing lease is not an error."""
        try:
            await self._call("lease revoke", lambda: self.client.lease.revoke(lease_id, timeout=self.timeout))
        except LeaseNotFound:
            pass

    # ------------------------------------------------------------ transactions

    async def txn_create_if_absent(
        self, key: str, value: bytes, lease: int = 0, *, unchanged: Mapping[str, int] | None = None,
    ) -> tuple[bool, Entry | None]:
        """Create ``key`` only if it does not exist, atomically.

        ``unchanged`` maps other keys to the ``mod_revision`` they must still have (0 = must
        not exist); placement uses it to check that the chosen node is still registered as
        it saw it. Returns ``(True, entry)`` when created, else ``(False, current)`` where
        ``current`` is the existing entry (``None`` if the key is absent and a guard failed).
        """
        full = self._full(key)
        compare = [KVService.txn_compare_create_revision(full, 0)]
        for other, mod_revision in (unchanged or {}).items():
            compare.append(Compare(result=Compare.EQUAL, target=Compare.MOD, key=self._full(other),
                                   mod_revision=mod_revision))
        resp = await self._call(f"create {key}", lambda: self.client.kv.txn(
            compare,
            success=[KVService.txn_op_put(full, value, lease=lease)],
            failure=[KVService.txn_op_get(full)],
            timeout=self.timeout,
        ))
        if resp.succeeded:
            rev = resp.header.revision
            return True, Entry(key, value, lease, rev, rev)
        kvs = resp.responses[0].response_range.kvs
        return False, (self._entry(kvs[0]) if kvs else None)

    # ------------------------------------------------------------ watches

    async def watch_prefix(self, prefix: str, *, start_revision: int = 0) -> AsyncIterator[list[Event]]:
        """Yield batches of changes under ``prefix`` from ``start_revision`` (0 = from now).

        Survives etcd restarts (see the module docstring); raises :class:`WatchLost` when
        it cannot resume and :class:`EtcdUnavailable` on a non-transient error.
        """
        full = self._full(prefix)
        stream = self.client.watch.watch(full, prefix_range_end(full), start_revision=start_revision)
        try:
            async for resp in stream:
                if resp.canceled or resp.compact_revision:
                    raise WatchLost(f"watch on {prefix} cancelled: {resp.cancel_reason or 'compacted'}")
                if resp.events:
                    yield [
                        Event("delete" if ev.type == 1 else "put", self._rel(ev.kv.key), ev.kv.value,
                              ev.kv.lease, ev.kv.mod_revision)
                        for ev in resp.events
                    ]
            raise WatchLost(f"watch on {prefix} ended")
        except grpc.aio.AioRpcError as exc:
            raise EtcdUnavailable(f"etcd watch on {prefix} failed: {exc.code().name} {exc.details()}") from None
        finally:
            await stream.aclose()
