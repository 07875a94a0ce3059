"""The node's external IPv4 address by STUN, for ``rtc.use_external_ip`` (LiveKit's way).

A media node behind 1:1 NAT (a cloud VM's private address mapped to a public one) asks STUN
servers (``rtc.stun_servers``, ``host:port``) what address its UDP packets come from: a
binding request (RFC 8489) to every configured server, resent every half second, and the
first success response's XOR-MAPPED-ADDRESS is the address the ICE candidates advertise.
As in LiveKit, the discovered address replaces ``rtc.node_ip`` (and the ``NODE_IP``
variable). Nothing answers within the time bound: the server does not start.

There is no default server list: trackyard never talks to a host nobody configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence

from aioice import stun

from trackyard.config import RTCConfig
from trackyard.errors import ConfigError

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds for the whole discovery (LiveKit also waits 5 s)
RESEND = 0.5  # seconds between requests to each server


def _split(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)


class _Responses(asyncio.DatagramProtocol):
    """Completes `found` with the mapped IPv4 address of the first success response to one
    of `requests` (transaction ids)."""

    def __init__(self, requests: set[bytes], found: asyncio.Future) -> None:
        self.requests = requests
        self.found = found

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if (message.transaction_id not in self.requests or message.message_class != stun.Class.RESPONSE
                or self.found.done()):
            return
        mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped and ipaddress.ip_address(mapped[0]).version == 4:
            self.found.set_result(mapped[0])


async def discover_external_ip(servers: Sequence[str], *, timeout: float = TIMEOUT) -> str:
    """The IPv4 address STUN servers see this host's UDP packets come from. Raises
    ConfigError (naming ``rtc.use_external_ip``) when none answers within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    targets = []
    for server in servers:
        host, port = _split(server)
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM),
                max(0.0, deadline - loop.time()))
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("STUN server %s: cannot resolve: %s", server, exc or "timeout")
            continue
        targets.append(infos[0][4])
    requests: set[bytes] = set()
    found: asyncio.Future[str] = loop.create_future()
    if targets:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Responses(requests, found),
                                                           family=socket.AF_INET)
        try:
            while not found.done() and loop.time() < deadline:
                for target in targets:
                    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
                    requests.add(request.transaction_id)
                    transport.sendto(bytes(request), target)
                try:
                    await asyncio.wait_for(asyncio.shield(found), max(0.0, min(RESEND, deadline - loop.time())))
                except asyncio.TimeoutError:
                    pass
        finally:
            transport.close()
    if found.done():
        return found.result()
    found.cancel()
    raise ConfigError("rtc.use_external_ip",
                      f"no STUN server answered within {timeout:g} s (rtc.stun_servers: {', '.join(servers)})")


async def apply_external_ip(rtc: RTCConfig, *, timeout: float = TIMEOUT) -> None:
    """With ``use_external_ip``: the discovered address becomes ``rtc.node_ip``."""
    if not rtc.use_external_ip:
        return
    ip = await discover_external_ip(rtc.stun_servers, timeout=timeout)
    if rtc.node_ip and rtc.node_ip != ip:
        log.warning("rtc.use_external_ip: advertising %s from STUN instead of rtc.node_ip %s", ip, rtc.node_ip)
    else:
        log.info("rtc.use_external_ip: advertising %s (from STUN)", ip)
    rtc.node_ip = ip
