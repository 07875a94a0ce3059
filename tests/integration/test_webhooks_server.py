"""Webhooks from a running server: what a participant's life in a room produces, in which
order, signed so that livekit-api's WebhookReceiver accepts every delivery; and a dead
webhook receiver must not slow signaling down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from livekit import api
from livekit.protocol import models, rtc

from support.media_standin import StandInMediaBackend, offer_sdp
from support.servers import API_KEY, API_SECRET, InProcessServer, free_port, http_get, make_config
from support.signal_client import SignalClient
from support.tokens import join_token
from support.webhook_sink import WebhookSink

State = models.ParticipantInfo.State
WEBHOOK_CONTENT_TYPE = "application/webhook+json"


@contextlib.asynccontextmanager
async def running(urls: list[str], **sections):
    config = make_config(webhook={"urls": urls, "api_key": API_KEY}, **sections)
    server = await InProcessServer(config, media=StandInMediaBackend()).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def webhook_sink():
    sink = await WebhookSink().start()
    try:
        yield sink
    finally:
        await sink.stop()


async def connect(server, identity: str, room: str) -> tuple[SignalClient, rtc.JoinResponse]:
    client = await SignalClient.connect(server.ws_url, join_token(identity, room))
    try:
        return client, await client.expect("join")
    except BaseException:
        await client.close()
        raise


async def test_room_lifecycle_events_in_order():
    room = "hooks"
    async with webhook_sink() as sink, running([sink.url], room={"departure_timeout": 1}) as server:
        alice, join = await connect(server, "alice", room)
        try:
            started = await sink.wait_event("room_started", room=room)
            assert started.room.sid == join.room.sid and started.room.departure_timeout == 1

            await alice.send(add_track=rtc.AddTrackRequest(cid="mic", name="mic", type=models.TrackType.AUDIO,
                                                           source=models.TrackSource.MICROPHONE))
            track = (await alice.expect("track_published")).track
            # the track is not published until media for it arrives
            await alice.ping()
            assert "track_published" not in sink.names(room)

            await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic"))))
            joined = await sink.wait_event("participant_joined", room=room)
            published = await sink.wait_event("track_published", room=room)

            await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp()))  # the track is gone
            unpublished = await sink.wait_event("track_unpublished", room=room)
            assert (await alice.expect("track_unpublished")).track_sid == track.sid

            left_at = time.monotonic()
            await alice.leave()
            left = await sink.wait_event("participant_left", room=room)
            finished = await sink.wait_event("room_finished", room=room, timeout=10)
            waited = time.monotonic() - left_at
        finally:
            await alice.close()

        # the departure timeout (1 s, swept every second) was honoured
        assert 0.9 <= waited <= 5, waited

        assert sink.rejected == []
        assert sink.content_types == {WEBHOOK_CONTENT_TYPE}
        assert sink.names(room) == ["room_started", "participant_joined", "track_published",
                                    "track_unpublished", "participant_left", "room_finished"]
        assert sink.names() == sink.names(room)  # nothing about other rooms, nothing without a room
        events = [e for e in sink.events if e.room.name == room]
        assert len({e.id for e in events}) == len(events) and all(e.id.startswith("EV_") for e in events)
        assert all(abs(e.created_at - time.time()) < 30 for e in events)
        assert {e.room.sid for e in events} == {join.room.sid}

        # participant events carry the full room and participant
        assert (joined.participant.identity, joined.participant.sid) == ("alice", join.participant.sid)
        assert joined.participant.state == State.ACTIVE and joined.room.num_participants == 1
        assert left.participant.sid == join.participant.sid and left.participant.state == State.DISCONNECTED
        assert left.participant.disconnect_reason == models.DisconnectReason.CLIENT_INITIATED

        # track events carry the full track and a reduced room and participant
        for event in (published, unpublished):
            assert event.track.sid == track.sid and event.track.type == models.TrackType.AUDIO
            assert event.track.source == models.TrackSource.MICROPHONE and event.track.name == "mic"
            assert (event.participant.sid, event.participant.identity) == (join.participant.sid, "alice")
            assert event.participant.state == State.JOINING and not event.participant.tracks  # reduced
            assert (event.room.sid, event.room.name, event.room.departure_timeout) == (join.room.sid, room, 0)
        assert published.track.mime_type == "audio/opus"

        assert finished.room.sid == join.room.sid and finished.room.num_participants == 0
        assert server.node.rooms.get(room) is None


async def test_connection_aborted_versus_left():
    """A participant that never got a media connection is 'aborted', one that had one 'left'
    (after its published tracks are unpublished)."""
    room = "aborts"
    async with webhook_sink() as sink, running([sink.url], signal={"reconnect_timeout": 0.5}) as server:
        alice, join_a = await connect(server, "alice", room)
        bob, join_b = await connect(server, "bob", room)
        try:
            await alice.send(add_track=rtc.AddTrackRequest(cid="cam", name="cam", type=models.TrackType.VIDEO,
                                                           source=models.TrackSource.CAMERA))
            track = (await alice.expect("track_published")).track
            await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("video", "cam"))))
            await sink.wait_event("track_published", room=room)
            await bob.ping()
            await bob.drop()  # never sent an offer: never reached ACTIVE
            aborted = await sink.wait_event("participant_connection_aborted", room=room, identity="bob")
            await alice.drop()  # vanishes while still publishing
            left = await sink.wait_event("participant_left", room=room, identity="alice")
        finally:
            await alice.close()
            await bob.close()

        assert aborted.participant.sid == join_b.participant.sid
        assert aborted.participant.state == State.DISCONNECTED and aborted.room.sid == join_a.room.sid
        assert left.participant.sid == join_a.participant.sid
        assert left.participant.disconnect_reason == models.DisconnectReason.CONNECTION_TIMEOUT
        assert [(e.event, e.participant.identity) for e in sink.events if e.participant.identity] == [
            ("participant_joined", "alice"),
            ("track_published", "alice"),
            ("participant_connection_aborted", "bob"),
            ("track_unpublished", "alice"),
            ("participant_left", "alice"),
        ]
        unpublished = next(e for e in sink.events if e.event == "track_unpublished")
        assert unpublished.track.sid == track.sid and unpublished.track.mime_type == "video/VP8"
        assert sink.rejected == [] and sink.content_types == {WEBHOOK_CONTENT_TYPE}


async def test_api_created_and_deleted_room():
    room = "by-api"
    async with webhook_sink() as sink, running([sink.url]) as server:
        lkapi = api.LiveKitAPI(server.url, API_KEY, API_SECRET)
        try:
            created = await lkapi.room.create_room(api.CreateRoomRequest(name=room, metadata="m"))
            started = await sink.wait_event("room_started", room=room)  # active before anyone joins
            assert (started.room.sid, started.room.metadata) == (created.sid, "m")
            alice, join = await connect(server, "alice", room)
            try:
                await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp()))
                await sink.wait_event("participant_joined", room=room)
                await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
                finished = await sink.wait_event("room_finished", room=room)
            finally:
                await alice.close()
        finally:
            await lkapi.aclose()
        assert sink.names(room) == ["room_started", "participant_joined", "participant_left", "room_finished"]
        left = next(e for e in sink.events if e.event == "participant_left")
        assert left.participant.sid == join.participant.sid
        assert left.participant.disconnect_reason == models.DisconnectReason.ROOM_DELETED
        assert finished.room.sid == created.sid
        assert sink.rejected == []


async def test_dead_webhook_url_does_not_block_signaling():
    dead = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    room = "dead-hooks"
    async with webhook_sink() as sink, running([dead, sink.url]) as server:
        clients: list[SignalClient] = []
        try:
            began = time.monotonic()
            alice, _ = await connect(server, "alice", room)
            clients.append(alice)
            assert time.monotonic() - began < 1.0
            await alice.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp()))
            # the live receiver gets its events promptly despite the dead one
            await sink.wait_event("participant_joined", room=room, timeout=3)

            # keep signaling for a while, across the dead URL's first retries
            deadline = time.monotonic() + 2.5
            worst = 0.0
            while time.monotonic() < deadline:
                sent = time.monotonic()
                await alice.ping()
                worst = max(worst, time.monotonic() - sent)
                await asyncio.sleep(0.1)
            assert worst < 0.5, worst

            stats = server.server.webhooks.stats
            assert stats["retries"] >= 1, stats  # the dead URL was tried and is being retried

            began = time.monotonic()
            bob, _ = await connect(server, "bob", room)
            clients.append(bob)
            assert time.monotonic() - began < 1.0
            await alice.expect_update_for("bob")
            status, body, _ = await http_get(server.url + "/")
            assert (status, body) == (200, "OK")
        finally:
            for client in clients:
                await client.close()
        assert sink.rejected == []
        assert sink.names(room)[:2] == ["room_started", "participant_joined"]
