"""Participant updates in large rooms: listeners' joins and leaves are batched, publishers'
updates go at once (after the batch, so nobody sees an older info after a newer one).

The room-size threshold and the interval are lowered/raised for the test (the server runs in
this process): a room is "large" above 4 participants, and the batch interval is long enough
that only an immediate update can flush the batch during the test.
"""

import asyncio

import pytest
from livekit.protocol import models, rtc

from support.media_standin import offer_sdp
from support.signal_client import SignalClient
from support.tokens import join_token
from trackyard.rooms import room as room_module

LARGE = 4


@pytest.fixture(autouse=True)
def small_large_room(monkeypatch):
    monkeypatch.setattr(room_module, "LARGE_ROOM", LARGE)
    monkeypatch.setattr(room_module, "UPDATE_BATCH_INTERVAL", 60.0)


async def join(server, identity: str) -> SignalClient:
    client = await SignalClient.connect(server.ws_url, join_token(identity, "big"))
    await client.expect("join")
    return client


def identities(update: rtc.ParticipantUpdate) -> set[str]:
    return {p.identity for p in update.participants}


async def test_listener_updates_batched_publisher_update_flushes_first(server):
    clients = [await join(server, f"p{i}") for i in range(LARGE)]
    first = clients[0]
    # a small room: each join reaches the others at once, one participant per update
    await first.expect_update_for(f"p{LARGE - 1}")
    seen_before = len(first.of("update"))

    late = [await join(server, f"p{i}") for i in range(LARGE, LARGE + 4)]
    # p4..p7 made the room large (more than 4 participants): their announcements wait
    await asyncio.sleep(0.5)
    pending = {f"p{i}" for i in range(LARGE, LARGE + 4)}
    told = set().union(*(identities(u) for u in first.of("update")[seen_before:]))
    assert not (pending & told), f"listeners' joins were sent one by one: {told}"

    # p7 publishes: the batch goes out first, then p7's update with its track
    publisher = late[-1]
    await publisher.send(add_track=rtc.AddTrackRequest(cid="mic", name="mic", type=models.TrackType.AUDIO))
    await publisher.expect("track_published")
    await publisher.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic"))))
    for client in clients + late[:-1]:
        await client.expect_update_for("p7", lambda p: len(p.tracks) == 1)
        updates = client.of("update")
        batch_at = next(i for i, u in enumerate(updates) if pending - {client_identity(client)} <= identities(u))
        track_at = next(i for i, u in enumerate(updates)
                        if any(p.identity == "p7" and p.tracks for p in u.participants))
        assert batch_at < track_at, "the batched listeners' updates precede the publisher's"
        batch = updates[batch_at]
        assert len(batch.participants) >= 2, "one message carries several participants"
        # versions only grow per participant, as the SDKs require
        for identity in pending:
            versions = [p.version for u in updates for p in u.participants if p.identity == identity]
            assert versions == sorted(versions)

    # a listener leaving a large room is batched too; everyone learns of it with the next flush
    leaver = late[0]
    await leaver.leave()
    await asyncio.sleep(0.3)
    assert not any(p.identity == "p4" and p.state == models.ParticipantInfo.State.DISCONNECTED
                   for u in first.of("update") for p in u.participants)
    await publisher.send(add_track=rtc.AddTrackRequest(cid="cam", name="cam", type=models.TrackType.VIDEO))
    await publisher.expect("track_published", lambda t: t.cid == "cam")
    await publisher.send(offer=rtc.SessionDescription(type="offer", sdp=offer_sdp(("audio", "mic"), ("video", "cam"))))
    gone = await first.expect_update_for("p4", lambda p: p.state == models.ParticipantInfo.State.DISCONNECTED)
    assert gone.identity == "p4"

    for client in clients + late[1:]:
        await client.close()


def client_identity(client: SignalClient) -> str:
    return client.of("join")[0].participant.identity
