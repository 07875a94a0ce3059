"""Active speakers and connection quality from engine figures."""

from livekit.protocol import models

from trackyard.rooms.quality import Sample, score
from trackyard.rooms.speakers import SpeakerTracker, linear_level


def test_speaker_turns_active_then_quiet_with_full_active_set():
    t = SpeakerTracker()
    first = t.update({"PA_a": (20, True), "PA_b": (127, False)})
    assert [(s.sid, s.active) for s in first] == [("PA_a", True)]
    assert 0 < first[0].level <= 1
    assert t.update({"PA_a": (22, True), "PA_b": (127, False)}) is None  # nothing changed
    both = t.update({"PA_a": (30, True), "PA_b": (10, True)})
    assert [s.sid for s in both if s.active] == ["PA_b", "PA_a"]  # loudest first, full active set
    assert t.update({"PA_a": (127, False), "PA_b": (10, True)}) is None  # one quiet interval is tolerated
    quiet = t.update({"PA_a": (127, False), "PA_b": (10, True)})
    assert [(s.sid, s.active) for s in quiet] == [("PA_b", True), ("PA_a", False)]
    assert t.forget("PA_b")[0].active is False and t.forget("PA_a") is None


def test_quiet_audio_is_not_speech_and_loud_audio_is_even_without_the_voice_flag():
    assert SpeakerTracker().update({"PA_a": (90, True)}) is None
    assert [s.sid for s in SpeakerTracker().update({"PA_a": (5, False)})] == ["PA_a"]


def test_linear_level():
    assert linear_level(0) == 1.0 and linear_level(127) < 0.001 and linear_level(20) == 0.1


def test_quality_scale():
    Q = models.ConnectionQuality
    assert score(Sample(packets=1000))[0] == Q.EXCELLENT
    assert score(Sample(packets=970, lost=30))[0] == Q.GOOD  # 3 % loss
    assert score(Sample(packets=900, lost=100))[0] == Q.POOR  # 10 % loss
    assert score(Sample(packets=0, expected_traffic=True))[0] == Q.LOST
    assert score(Sample(packets=1000, rtt_ms=600))[0] != Q.EXCELLENT
