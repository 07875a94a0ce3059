"""The WebRTC path end to end on 127.0.0.1, with aiortc peers as clients.

A publishes a 440 Hz tone over `/rtc/v1`; B joins over `/rtc` (v0): the server offers B's
subscriber connection, forwards A's audio through the Rust engine, and relays A's data
packets to B with A's identity stamped.
"""


import asyncio

import pytest
from livekit.protocol import models, rtc

from support.aiortc_client import AiortcParticipant, SineTrack, loopback_only
from support.servers import InProcessServer, ServerProcess, make_config, wait_for
from support.tokens import join_token


@pytest.fixture
async def media_server():
    with loopback_only():
        server = await InProcessServer(make_config()).start()
        try:
            yield server
        finally:
            await server.stop()


async def publish_tone(server, identity: str, room_name: str, frequency: float):
    """A v1 participant publishing a tone, connected, its track published: (participant, track sid)."""
    publisher = await AiortcParticipant.join_v1(server.ws_url, join_token(identity, room_name), identity,
                                                publish=SineTrack(frequency))
    await publisher.wait_connected(publisher.pc)
    room = server.node.rooms.get(room_name)
    tracks = await wait_for(lambda: room.participants[identity].tracks, timeout=10,
                            what=f"{identity}'s track published")
    return publisher, next(iter(tracks))


async def test_audio_and_data_flow_from_v1_publisher_to_v0_subscriber(media_server):
    server = media_server
    alice, track_sid = await publish_tone(server, "alice", "r1", 440)

    bob = await AiortcParticipant.join_v0(server.ws_url, join_token("bob", "r1"), "bob")
    await bob.wait_connected(bob.sub_pc)
    await alice.signal.expect("track_subscribed", lambda t: t.track_sid == track_sid, timeout=10)
    await wait_for(lambda: len(bob.audio) > 100, timeout=15, what="bob receives audio")
    frequency = bob.audio_frequency()
    assert abs(frequency - 440) < 10, frequency
    stats = server.node.media.engine.stats()
    assert stats["forwarded"] > 50 and stats["srtp_failures"] == 0

    # data: reliable to everyone, lossy to bob by identity; identity stamped by the server
    await wait_for(lambda: all(c.readyState == "open" for c in alice.channels.values()), what="channels open")
    alice.send_data(b"hello everyone")
    alice.send_data(b"psst bob", lossy=True, to=["bob"])
    await wait_for(lambda: len(bob.data) >= 2, timeout=10, what="bob receives data")
    got = {(p.user.payload, p.participant_identity, p.kind) for p in bob.data}
    assert (b"hello everyone", "alice", 0) in got and (b"psst bob", "alice", 1) in got
    await alice.close()
    await bob.close()


async def test_v1_subscriber_gets_sections_requested_and_audio(media_server):
    server = media_server
    alice, track_sid = await publish_tone(server, "alice", "r2", 660)

    carol = await AiortcParticipant.join_v1(server.ws_url, join_token("carol", "r2"), "carol", recv_audio=2)
    await carol.wait_connected(carol.pc)
    requirement = await carol.signal.expect("media_sections_requirement", timeout=10)
    assert (requirement.num_audios, requirement.num_videos) == (1, 0)
    await wait_for(lambda: track_sid in carol.mid_to_track_id.values(), timeout=10, what="mid_to_track_id")
    await wait_for(lambda: len(carol.audio) > 100, timeout=15, what="carol receives audio")
    assert abs(carol.audio_frequency() - 660) < 10
    # alice's data reaches carol on carol's own (v1) channels
    await wait_for(lambda: all(c.readyState == "open" for c in alice.channels.values()), what="channels open")
    await wait_for(lambda: all(c.readyState == "open" for c in carol.channels.values()), what="channels open")
    alice.send_data(b"to carol", to=["carol"])
    await wait_for(lambda: carol.data, timeout=10, what="carol receives data")
    assert carol.data[0].user.payload == b"to carol" and carol.data[0].participant_identity == "alice"
    await alice.close()
    await carol.close()


async def test_speakers_and_connection_quality(media_server):
    """The engine's audio levels become speakers_changed (PA_ sids, active flag); its stats
    become connection_quality updates (a publisher's to everyone, a listener's to itself)."""
    server = media_server
    alice, _ = await publish_tone(server, "alice", "r3", 440)
    room = server.node.rooms.get("r3")
    bob = await AiortcParticipant.join_v0(server.ws_url, join_token("bob", "r3"), "bob")
    await bob.wait_connected(bob.sub_pc)
    alice_sid = room.participants["alice"].sid
    # aiortc sends the ssrc-audio-level extension with a loud tone: alice becomes an active speaker
    changed = await bob.signal.expect("speakers_changed", lambda m: any(s.sid == alice_sid and s.active
                                                                        for s in m.speakers), timeout=10)
    assert all(s.sid.startswith("PA_") for s in changed.speakers)
    # connection quality: the publisher's goes to everyone, a listener's only to itself
    bob_sid = room.participants["bob"].sid

    def about(sid):
        return lambda m: any(u.participant_sid == sid and u.quality != models.ConnectionQuality.LOST
                             for u in m.updates)
    await bob.signal.expect("connection_quality", about(alice_sid), timeout=15)
    await bob.signal.expect("connection_quality", about(bob_sid), timeout=15)
    await alice.signal.expect("connection_quality", about(alice_sid), timeout=15)
    assert not any(u.participant_sid == bob_sid for m in alice.signal.of("connection_quality") for u in m.updates)
    await alice.close()
    gone = await bob.signal.expect("speakers_changed", lambda m: any(s.sid == alice_sid and not s.active
                                                                     for s in m.speakers), timeout=10)
    assert gone
    await bob.close()


async def test_engine_panic_closes_one_room_not_the_node(media_server):
    """A panic in the engine on one participant's traffic closes that participant's room
    (its clients are told to rejoin); another room keeps its audio and the node keeps serving."""
    server = media_server
    engine = server.node.media.engine
    alice, _ = await publish_tone(server, "alice", "hurt", 440)
    carol, _ = await publish_tone(server, "carol", "fine", 660)
    bob = await AiortcParticipant.join_v0(server.ws_url, join_token("bob", "hurt"), "bob")
    dave = await AiortcParticipant.join_v0(server.ws_url, join_token("dave", "fine"), "dave")
    for p in (bob, dave):
        await p.wait_connected(p.sub_pc)
    await wait_for(lambda: len(bob.audio) > 50 and len(dave.audio) > 50, timeout=15, what="audio in both rooms")

    hurt = server.node.rooms.get("hurt")
    engine.inject_fault(hurt.participants["alice"].media.publisher.handle)
    leave = await bob.signal.expect("leave", timeout=10)
    assert leave.reason == models.DisconnectReason.MEDIA_FAILURE
    assert leave.action == rtc.LeaveRequest.Action.RECONNECT
    await wait_for(lambda: server.node.rooms.get("hurt") is None, timeout=5, what="room closed")
    assert engine.stats()["panics"] == 1

    # the other room carries on: dave keeps hearing 660 Hz after the fault
    heard = len(dave.audio)
    await wait_for(lambda: len(dave.audio) > heard + 50, timeout=10, what="audio after the fault")
    assert abs(dave.audio_frequency() - 660) < 10
    assert server.node.rooms.get("fine") is not None
    # and the node still admits new participants
    eve = await AiortcParticipant.join_v0(server.ws_url, join_token("eve", "fine"), "eve")
    await eve.wait_connected(eve.sub_pc)
    for p in (alice, bob, carol, dave, eve):
        await p.close()


async def test_shutdown_with_media_in_flight_is_clean():
    """SIGTERM while media flows to participants whose signal connections are gone (kept
    for a resume): the node tears their media down before stopping the engine and exits 0
    without an error in its log."""
    server = ServerProcess(make_config()).start()
    try:
        with loopback_only():
            alice = await AiortcParticipant.join_v1(server.ws_url, join_token("alice", "bye"), "alice",
                                                    publish=SineTrack(440))
            bob = await AiortcParticipant.join_v0(server.ws_url, join_token("bob", "bye"), "bob")
            await wait_for(lambda: len(bob.audio) > 25, timeout=15, what="audio at bob")
            # both signal connections vanish (the participants are kept for a resume)
            await alice.signal.drop()
            await bob.signal.drop()
            await asyncio.sleep(0.3)
            assert server.stop() == 0
            logs = server.logs()
            assert '"level": "error"' not in logs and "Traceback" not in logs, logs[-3000:]
            await alice.close()
            await bob.close()
    finally:
        server.cleanup()
