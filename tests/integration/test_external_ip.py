"""rtc.use_external_ip: the advertised address comes from a STUN binding request.

A small STUN responder on loopback (aioice's STUN messages) answers binding requests with an
address the test chooses, as a STUN server on the internet would report a NAT's public
address. The server started with ``use_external_ip`` must put that address into its ICE
candidates (UDP and TCP), even over ``rtc.node_ip`` (LiveKit's rule), and must refuse to start
when no STUN server answers.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest
from aioice import stun

from trackyard.config import config_to_yaml
from trackyard.errors import ConfigError
from trackyard.media.external_ip import discover_external_ip
from trackyard.media.sdp import parse_sdp

from support.servers import ServerProcess, make_config, server_argv, server_env
from support.signal_client import SignalClient
from support.tokens import join_token

MAPPED = "203.0.113.45"  # TEST-NET-3: what the "NAT" maps this host to


class StunResponder(asyncio.DatagramProtocol):
    """Answers every binding request with XOR-MAPPED-ADDRESS `mapped` (the port as seen)."""

    def __init__(self, mapped: str) -> None:
        self.mapped = mapped
        self.requests = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            return
        self.requests += 1
        response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                                transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = (self.mapped, addr[1])
        self.transport.sendto(bytes(response), addr)


@pytest.fixture
async def responder():
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: StunResponder(MAPPED),
                                                              local_addr=("127.0.0.1", 0))
    protocol.address = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    yield protocol
    transport.close()


def silent_server() -> tuple[socket.socket, str]:
    """A bound UDP port that never answers (its datagrams are never read)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s, f"127.0.0.1:{s.getsockname()[1]}"


async def test_discovery_returns_the_mapped_address(responder):
    assert await discover_external_ip([responder.address], timeout=3) == MAPPED
    assert responder.requests >= 1


async def test_a_silent_server_does_not_hide_one_that_answers(responder):
    silent, address = silent_server()
    try:
        assert await discover_external_ip([address, responder.address], timeout=3) == MAPPED
    finally:
        silent.close()


async def test_no_answer_is_a_config_error_within_the_bound():
    silent, address = silent_server()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        with pytest.raises(ConfigError) as info:
            await discover_external_ip([address], timeout=1.0)
    finally:
        silent.close()
    assert info.value.key == "rtc.use_external_ip"
    assert address in str(info.value) and "no STUN server answered" in str(info.value)
    assert loop.time() - start < 3


async def test_server_candidates_carry_the_discovered_address(responder):
    config = make_config(rtc={"use_external_ip": True, "stun_servers": [responder.address],
                              "node_ip": "10.9.9.9"})  # STUN wins over node_ip, as in LiveKit
    server = ServerProcess(config)
    # the responder runs on this test's event loop: start the server without blocking it
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    try:
        client = await SignalClient.connect(server.ws_url, join_token("alice", "ext-ip"), v1=False)
        await client.expect("join", timeout=10)
        offer = await client.expect("offer", timeout=10)  # the v0 subscriber connection
        candidates = [c for m in parse_sdp(offer.sdp).media for c in m.candidates]
        assert candidates, offer.sdp
        assert {c.ip for c in candidates} == {MAPPED}
        assert {(c.transport.lower(), c.port) for c in candidates} == {
            ("udp", config.rtc.udp_port), ("tcp", config.rtc.tcp_port)}
        assert responder.requests >= 1
        await client.close()
        server.stop()
        assert "from STUN instead of rtc.node_ip 10.9.9.9" in server.logs()
    finally:
        server.cleanup()


def test_server_refuses_to_start_without_an_answer(tmp_path):
    silent, address = silent_server()
    config = make_config(rtc={"use_external_ip": True, "stun_servers": [address]})
    path = tmp_path / "trackyard.yaml"
    path.write_text(config_to_yaml(config))
    try:
        proc = subprocess.run(server_argv(path), env=server_env(), capture_output=True, text=True, timeout=30)
    finally:
        silent.close()
    assert proc.returncode == 2, proc.stderr
    assert "trackyard: config key 'rtc.use_external_ip': no STUN server answered" in proc.stderr
    assert address in proc.stderr


def test_use_external_ip_needs_stun_servers(tmp_path):
    path = tmp_path / "trackyard.yaml"
    path.write_text("keys: {devkey: secret-secret-secret-secret-secret}\nrtc: {use_external_ip: true}\n")
    proc = subprocess.run(server_argv(path), env=server_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "rtc.use_external_ip" in proc.stderr and "needs rtc.stun_servers" in proc.stderr
