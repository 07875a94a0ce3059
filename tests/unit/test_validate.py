"""Outgoing signal messages that would abort a LiveKit SDK are never sent."""

import json

import pytest
from livekit.protocol import models, rtc

from trackyard.signal.validate import InvalidOutgoingMessage, validate


def good_join() -> rtc.JoinResponse:
    return rtc.JoinResponse(
        room=models.Room(sid="RM_abcdefabcdef", name="r"),
        participant=models.ParticipantInfo(sid="PA_abcdefabcdef", identity="a"),
        server_version="1.9.0", ping_interval=5, ping_timeout=15,
    )


def trickle(init) -> rtc.SignalResponse:
    return rtc.SignalResponse(trickle=rtc.TrickleRequest(candidateInit=json.dumps(init)))


CANDIDATE = "candidate:1 1 udp 2122260223 10.0.0.1 7882 typ host"


def test_good_messages_pass():
    validate(rtc.SignalResponse(join=good_join()))
    validate(trickle({"sdpMid": "0", "sdpMLineIndex": 0, "candidate": CANDIDATE, "usernameFragment": None}))
    validate(rtc.SignalResponse(pong_resp=rtc.Pong(last_ping_timestamp=1, timestamp=2)))


def bad_joins():
    j = good_join(); j.ClearField("room"); yield "room missing", j
    j = good_join(); j.participant.sid = "p1"; yield "participant sid", j
    j = good_join(); j.ping_interval = 0; yield "ping interval 0", j
    j = good_join(); j.ping_timeout = 0; yield "ping timeout 0", j
    j = good_join(); j.server_version = ""; yield "no version", j
    j = good_join(); j.other_participants.add(sid="bogus"); yield "other sid", j
    j = good_join(); j.other_participants.add(sid="PA_x").tracks.add(sid="bogus-track", type=models.TrackType.AUDIO)
    yield "track sid", j
    j = good_join(); j.participant.tracks.add(sid="TR_x", type=models.TrackType.DATA); yield "data track", j


@pytest.mark.parametrize("case,join", list(bad_joins()), ids=[c for c, _ in bad_joins()])
def test_malformed_join_is_rejected(case, join):
    with pytest.raises(InvalidOutgoingMessage):
        validate(rtc.SignalResponse(join=join))


@pytest.mark.parametrize("message", [
    rtc.SignalResponse(),
    trickle({"sdpMid": None, "sdpMLineIndex": 0, "candidate": CANDIDATE}),
    trickle({"sdpMid": "0", "sdpMLineIndex": 0, "candidate": ""}),
    trickle({"sdpMid": "0", "sdpMLineIndex": "0", "candidate": CANDIDATE}),
    rtc.SignalResponse(trickle=rtc.TrickleRequest(candidateInit="not json")),
    rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=[models.SpeakerInfo(sid="bogus")])),
    rtc.SignalResponse(connection_quality=rtc.ConnectionQualityUpdate(
        updates=[rtc.ConnectionQualityInfo(participant_sid="nope")])),
    rtc.SignalResponse(room_update=rtc.RoomUpdate()),
    rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid="c", track=models.TrackInfo(sid="track-1"))),
    rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(
        cid="c", track=models.TrackInfo(sid="TR_1", type=models.TrackType.DATA))),
    rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[models.ParticipantInfo(sid="x")])),
    rtc.SignalResponse(answer=rtc.SessionDescription(type="answer")),
], ids=["empty", "null sdpMid", "empty candidate", "string mline", "not json", "speaker sid", "quality sid",
        "room_update without room", "track_published bad sid", "track_published data", "update sid", "empty sdp"])
def test_abort_cases_are_rejected(message):
    with pytest.raises(InvalidOutgoingMessage):
        validate(message)
