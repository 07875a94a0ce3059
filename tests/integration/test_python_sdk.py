"""The real `livekit` Python SDK (1.2.1) against a trackyard server process.

trackyard has no media engine yet, so the SDK can join but never reports "connected" (it
waits 15 s per attempt for a peer connection). These tests prove the signaling part:
`Room.connect` reaches the server, the server admits the join (seen through the real
`livekit.api.LiveKitAPI`), and the SDK receives and accepts the JoinResponse (seen in the
SDK's own log).

The SDK runs in a subprocess (tests/support/sdk_probe.py): its FFI is built with
panic=abort, so a malformed server message would kill the process that loaded it. Every
SDK process is killed by PID when its test ends, pass or fail. Signaling only, on
127.0.0.1: no ICE is needed (libwebrtc gathers no loopback candidates anyway).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import subprocess
import time

import pytest
from livekit import api
from livekit.protocol import models

from support.sdk_probe import SdkProbe
from support.servers import API_KEY, API_SECRET, ServerProcess, http_get, make_config
from support.signal_client import SignalClient
from support.tokens import join_token

State = models.ParticipantInfo.State

# SDK log lines that mean the join went wrong, or that the process is about to die
BAD_MARKERS = (
    "failed to receive",            # "failed to receive livekit_protocol::JoinResponse"
    "missing participant info",     # "Join response missing participant info"
    "FFI Panic",
    "panicked",
    "signal failure",
    "failed to connect",
    "before ReconnectResponse",
)

JOIN_RESPONSE = re.compile(
    r'received JoinResponse: JoinResponse \{ room: Some\(Room \{ sid: "(?P<room_sid>[^"]*)", name: "(?P<room>[^"]*)"'
    r'.*?participant: Some\(ParticipantInfo \{ sid: "(?P<sid>[^"]*)", identity: "(?P<identity>[^"]*)"'
)


# --- fixtures -------------------------------------------------------------------------
@pytest.fixture
def server():
    srv = ServerProcess(make_config()).start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def sdk():
    """Start SDK subprocesses; all of them are SIGKILLed by PID at teardown."""
    started: list[SdkProbe] = []

    def start(url: str, token: str, *, v0: bool = False) -> SdkProbe:
        probe = SdkProbe.start(url, token, v0=v0)
        started.append(probe)
        return probe

    try:
        yield start
    finally:
        for probe in started:
            probe.cleanup()


@pytest.fixture
async def lkapi(server):
    client = api.LiveKitAPI(server.url, API_KEY, API_SECRET)
    try:
        yield client
    finally:
        await client.aclose()


# --- helpers --------------------------------------------------------------------------
async def poll(fetch, check, *, timeout: float, what: str, probe: SdkProbe | None = None):
    """Await `fetch()` until `check(result)` is truthy; return that truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await fetch()
        found = check(last)
        if found:
            return found
        if probe is not None and not probe.alive():
            raise AssertionError(f"SDK process died while waiting for {what}\n{probe.report()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}"
                                 + (f"\n{probe.report()}" if probe else ""))
        await asyncio.sleep(0.05)


async def log_line(probe: SdkProbe, needle: str, *, timeout: float = 5.0) -> str:
    async def lines():
        return probe.log_lines()

    return await poll(lines, lambda ls: next((line for line in ls if needle in line), None),
                      timeout=timeout, what=f"SDK log line {needle!r}", probe=probe)


def participant_named(identity: str, state: int | None = None):
    def check(resp: api.ListParticipantsResponse):
        for p in resp.participants:
            if p.identity == identity and (state is None or p.state == state):
                return p
        return None

    return check


def assert_healthy_sdk(probe: SdkProbe) -> None:
    """Still running, no abort, no join errors, no connect error reported."""
    code = probe.returncode()
    assert code is None, f"SDK process exited with {code} (134 = abort)\n{probe.report()}"
    bad = [line for line in probe.log_lines() if any(m in line for m in BAD_MARKERS) or " ERROR " in line]
    assert not bad, "SDK logged errors:\n" + "\n".join(bad) + "\n" + probe.report()
    # without a media engine Room.connect is still waiting for its peer connection
    assert set(probe.probe_lines()) <= {"PROBE start", "PROBE connected"}, probe.report()


def parse_join_response(line: str) -> dict[str, str]:
    match = JOIN_RESPONSE.search(line)
    assert match, f"unexpected JoinResponse log line: {line}"
    return match.groupdict()


# --- tests ----------------------------------------------------------------------------
async def test_sdk_v1_join_reaches_server_and_join_response_is_accepted(server, sdk, lkapi):
    room_name, identity = "sdk-room", "sdk-alice"
    probe = sdk(server.ws_url, join_token(identity, room_name))

    # server side: the SDK's /rtc/v1 join (join_request with a publisher offer) was admitted;
    # the offer in the join request moved the participant JOINING -> JOINED
    joined = await poll(lambda: lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name)),
                        participant_named(identity, State.JOINED), timeout=10, what="participant JOINED", probe=probe)
    assert joined.sid.startswith("PA_")
    rooms = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))).rooms
    assert [(r.name, r.num_participants) for r in rooms] == [(room_name, 1)]
    assert rooms[0].sid.startswith("RM_")

    # client side: the SDK dialled /rtc/v1 in single-PC mode and accepted the JoinResponse
    await log_line(probe, f"connecting to {server.ws_url}/rtc/v1")
    await log_line(probe, "signal connection successful: path=v1, single_pc_mode=true")
    line = await log_line(probe, "received JoinResponse")
    seen = parse_join_response(line)
    assert seen == {"room_sid": rooms[0].sid, "room": room_name, "sid": joined.sid, "identity": identity}
    assert "subscriber_primary: false" in line and 'server_version: "' in line
    await log_line(probe, "server protocol 17, negotiated data channels: false")

    # the SDK stays alive and error-free while it waits for a peer connection
    await asyncio.sleep(3)
    assert_healthy_sdk(probe)

    logs = server.logs()
    assert f"participant {identity} ({joined.sid}) joined room {room_name} via /rtc/v1" in logs
    # (the publisher offer in the join request is answered; see the SDK log check above)
    assert "Traceback" not in logs
    assert server.alive()

    assert probe.kill() is not None
    assert not probe.alive()


@pytest.mark.parametrize("bad_token", ["wrong-secret", "expired"])
async def test_sdk_refused_token_gets_prompt_401(server, sdk, lkapi, bad_token):
    room_name = "sdk-denied"
    if bad_token == "wrong-secret":
        token = join_token("sdk-mallory", room_name, secret="not-the-secret-not-the-secret-not-the")
        reason = "Signature verification failed"
    else:
        token = (api.AccessToken(API_KEY, API_SECRET).with_identity("sdk-mallory")
                 .with_grants(api.VideoGrants(room_join=True, room=room_name))
                 .with_ttl(datetime.timedelta(seconds=-60)).to_jwt())
        reason = "expired"
    probe = sdk(server.ws_url, token)
    try:
        probe.proc.wait(10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"Room.connect did not fail within 10 s\n{probe.report()}") from None

    assert probe.returncode() == 3, probe.report()  # the probe's "ConnectError raised" exit code
    lines = probe.probe_lines()
    assert lines[0] == "PROBE start" and lines[1].startswith("PROBE connect_error "), probe.report()
    elapsed, message = lines[1].split(" ", 3)[2:]
    assert float(elapsed) < 3.0, probe.report()  # 401 is terminal: no retries
    assert "401" in message and reason in message, message
    # (the SDK's own "Handshake { status: 401 }" log line may not be flushed before it exits,
    # so the ConnectError text above is the evidence)

    # the server is unaffected: alive, no room created, still admitting valid joins
    assert server.alive()
    status, body, _ = await http_get(server.url + "/")
    assert (status, body) == (200, "OK")
    rooms = (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms
    assert room_name not in [r.name for r in rooms]
    client = await SignalClient.connect(server.ws_url, join_token("sdk-bob", room_name))
    try:
        join = await client.expect("join")
        assert join.participant.identity == "sdk-bob" and join.participant.sid.startswith("PA_")
    finally:
        await client.close()
    assert "Traceback" not in server.logs()


async def test_sdk_v0_join_with_single_peer_connection_off(server, sdk, lkapi):
    room_name, identity = "sdk-room-v0", "sdk-carol"
    probe = sdk(server.ws_url, join_token(identity, room_name), v0=True)

    # server side: a v0 (/rtc) join was admitted; the SDK's fast-publish publisher offer
    # (fast_publish=true in the JoinResponse) then moves it JOINING -> JOINED
    present = await poll(lambda: lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name)),
                         participant_named(identity), timeout=10, what="participant present", probe=probe)
    assert present.sid.startswith("PA_")
    assert present.state in (State.JOINING, State.JOINED)
    joined = await poll(lambda: lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name)),
                        participant_named(identity, State.JOINED), timeout=5, what="participant JOINED", probe=probe)
    assert joined.sid == present.sid

    # client side: straight to /rtc, two-PC mode, JoinResponse accepted
    await log_line(probe, "signal connection successful: path=v0, single_pc_mode=false")
    line = await log_line(probe, "received JoinResponse")
    seen = parse_join_response(line)
    assert (seen["sid"], seen["identity"], seen["room"]) == (joined.sid, identity, room_name)
    assert "subscriber_primary: true" in line and "fast_publish: true" in line
    await log_line(probe, "negotiating the publisher (fast mode)")
    assert not any("/rtc/v1" in line for line in probe.log_lines()), probe.report()

    await asyncio.sleep(2)
    assert_healthy_sdk(probe)

    logs = server.logs()
    assert f"participant {identity} ({joined.sid}) joined room {room_name} via /rtc (v0, two peer connections)" in logs
    assert "via /rtc/v1" not in logs
    assert "Traceback" not in logs
    assert server.alive()
