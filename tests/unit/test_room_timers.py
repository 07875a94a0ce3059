"""Room lifecycle timers: empty timeout, departure timeout, vanished participants."""

import asyncio

from livekit.protocol import models
from livekit.protocol.room import CreateRoomRequest

from trackyard import errors
from trackyard.config import Config
from trackyard.rooms.manager import RoomManager
from trackyard.rooms.participant import ConnectionOptions, Participant

import pytest


class Recorder:
    def __init__(self):
        self.events = []

    def notify(self, event):
        self.events.append(event)


def participant(identity: str, *, kind=0, agent=False) -> Participant:
    perm = models.ParticipantPermission(can_publish=True, can_subscribe=True, agent=agent)
    return Participant(identity=identity, name="", metadata="", attributes={}, kind=kind, permission=perm,
                       options=ConnectionOptions())


def manager(**room) -> tuple[RoomManager, Recorder]:
    cfg = Config()
    for k, v in room.items():
        setattr(cfg.room, k, v)
    rec = Recorder()
    return RoomManager(cfg, rec), rec


async def test_api_room_closes_after_empty_timeout():
    rooms, rec = manager()
    room = rooms.create_room(CreateRoomRequest(name="r", empty_timeout=10))
    t0 = room.created_mono
    rooms.sweep(t0 + 9)
    assert rooms.get("r") is room
    rooms.sweep(t0 + 10.5)
    assert rooms.get("r") is None
    assert [e.event for e in rec.events] == ["room_started", "room_finished"]


async def test_departure_timeout_starts_when_last_member_leaves():
    rooms, rec = manager(departure_timeout=20, empty_timeout=300)
    room = rooms.create_room(CreateRoomRequest(name="r"))
    alice = participant("alice")
    room.admit(alice)
    room.remove(alice, models.DisconnectReason.CLIENT_INITIATED)
    left = room.last_left_mono
    rooms.sweep(left + 19)
    assert rooms.get("r") is room
    rooms.sweep(left + 20.1)
    assert rooms.get("r") is None


async def test_agents_do_not_keep_a_room_open_nor_count():
    rooms, _ = manager(departure_timeout=1)
    room = rooms.create_room(CreateRoomRequest(name="r", max_participants=1))
    alice, agent = participant("alice"), participant("bot", kind=models.ParticipantInfo.Kind.AGENT)
    room.admit(alice)
    room.admit(agent)  # an agent does not count toward max_participants
    with pytest.raises(errors.ResourceExhausted):
        room.admit(participant("bob"))
    room.remove(alice, models.DisconnectReason.CLIENT_INITIATED)
    rooms.sweep(room.last_left_mono + 1.5)
    assert rooms.get("r") is None and agent.closed
    assert agent.disconnect_reason == models.DisconnectReason.ROOM_CLOSED


async def test_vanished_participant_removed_after_reconnect_timeout():
    rooms, rec = manager()
    rooms.config.signal.reconnect_timeout = 15
    room = rooms.create_room(CreateRoomRequest(name="r"))
    alice = participant("alice")
    room.admit(alice)
    alice.signal_lost_at = 100.0
    rooms.sweep(114.0)
    assert "alice" in room.participants
    rooms.sweep(115.5)
    assert "alice" not in room.participants
    assert rec.events[-1].event == "participant_connection_aborted"  # never reached ACTIVE
    await asyncio.sleep(0)
