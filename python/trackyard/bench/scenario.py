"""A benchmark scenario (what `trackyard bench` runs), its bounds and the named presets.

The presets follow `shared/reference/performance.md` §5 (B1 audio room, B2 livestream, B3
meeting, B4 many small rooms, B5 join storm), sized so that the server AND this load
generator fit on one 2-core machine; every field can be overridden on the command line.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import asdict, dataclass, field, fields

from .media_plan import LAYOUTS, RESOLUTIONS

MAX_PARTICIPANTS = 3000
MAX_DURATION_S = 1800.0
MAX_ROOMS = 1000
MAX_JOIN_RATE = 500.0


class ScenarioError(ValueError):
    """The scenario cannot run: the message says which argument and why."""


@dataclass
class Scenario:
    url: str = "ws://127.0.0.1:7880"
    api_key: str = "devkey"
    api_secret: str = "secret"
    rooms: int = 1
    video_publishers: int = 0  # per room
    audio_publishers: int = 0  # per room
    subscribers: int = 0  # per room
    duration: float = 10.0  # seconds of measurement after everyone joined
    join_rate: float = 10.0  # joins per second, whole run
    simulcast: bool = True
    video_resolution: str = "high"
    layout: str = "speaker"
    room_prefix: str = "bench"
    join_timeout: float = 20.0
    settle_timeout: float = 10.0
    local_ip: str = ""  # "" = the address that routes to the server
    server_pids: list[int] = field(default_factory=list)
    server_process_name: str = ""
    preset: str = ""

    @property
    def participants_per_room(self) -> int:
        return self.video_publishers + self.audio_publishers + self.subscribers

    @property
    def participants(self) -> int:
        return self.rooms * self.participants_per_room

    @property
    def tracks_per_room(self) -> int:
        return self.video_publishers + self.audio_publishers

    def validate(self) -> "Scenario":
        def bad(msg: str) -> ScenarioError:
            return ScenarioError(msg)

        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
            raise bad(f"--url must be ws://host:port (or wss/http/https), got {self.url!r}")
        if not self.api_key or not self.api_secret:
            raise bad("--api-key and --api-secret must not be empty")
        if not 1 <= self.rooms <= MAX_ROOMS:
            raise bad(f"--rooms must be 1..{MAX_ROOMS}, got {self.rooms}")
        for name in ("video_publishers", "audio_publishers", "subscribers"):
            if getattr(self, name) < 0:
                raise bad(f"--{name.replace('_', '-')} must not be negative")
        if self.tracks_per_room == 0:
            raise bad("nothing to measure: give --video-publishers and/or --audio-publishers")
        if self.participants > MAX_PARTICIPANTS:
            raise bad(f"{self.participants} participants ({self.rooms} rooms × {self.participants_per_room}) "
                      f"exceed the limit of {MAX_PARTICIPANTS}")
        if not 0 < self.duration <= MAX_DURATION_S:
            raise bad(f"--duration must be > 0 and at most {MAX_DURATION_S:.0f} s, got {self.duration}")
        if not 0 < self.join_rate <= MAX_JOIN_RATE:
            raise bad(f"--join-rate must be > 0 and at most {MAX_JOIN_RATE:.0f} per second, got {self.join_rate}")
        if self.video_resolution not in RESOLUTIONS:
            raise bad(f"--video-resolution must be one of {', '.join(RESOLUTIONS)}, got {self.video_resolution!r}")
        if self.layout not in LAYOUTS:
            raise bad(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not 1 <= self.join_timeout <= 120 or not 0 <= self.settle_timeout <= 120:
            raise bad("--join-timeout must be 1..120 s and --settle-timeout 0..120 s")
        if any(p <= 0 for p in self.server_pids):
            raise bad("--server-pids must be positive process ids")
        return self

    def expected_seconds(self) -> float:
        """About how long the run takes: joins, settling, measurement, leaving."""
        return self.participants / self.join_rate + 2.0 + self.duration + 1.5

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("api_secret")
        return d


PRESETS: dict[str, dict] = {
    # B1: one room, 10 audio publishers (lk load-test --audio-publishers 10 --subscribers N);
    # the target is N >= 800 (--subscribers 800)
    "audio-room": dict(rooms=1, audio_publishers=10, subscribers=400, duration=30.0, join_rate=50.0),
    # B2: one simulcast 720p publisher, speaker layout (subscribers take the top layer);
    # the target is N >= 1000 (--subscribers 1000)
    "livestream": dict(rooms=1, video_publishers=1, subscribers=500, duration=30.0, join_rate=50.0,
                       video_resolution="high", layout="speaker"),
    # B3: N video publishers, N subscribers, speaker layout (1 HIGH + 5 LOW), with audio
    "meeting": dict(rooms=1, video_publishers=25, audio_publishers=25, subscribers=25, duration=30.0,
                    join_rate=25.0, video_resolution="high", layout="speaker"),
    # B4: many rooms of 4 A/V participants at 360p in a grid (the target is 100 rooms)
    "small-rooms": dict(rooms=50, video_publishers=2, audio_publishers=2, subscribers=4, duration=30.0,
                        join_rate=50.0, video_resolution="medium", layout="3x3"),
    # B5: 500 participants join one room at 50 joins/s (JoinResponse and first-packet times)
    "join-storm": dict(rooms=1, audio_publishers=1, subscribers=500, duration=10.0, join_rate=50.0),
}


def scenario_fields() -> set[str]:
    return {f.name for f in fields(Scenario)}


def from_preset(name: str, **overrides) -> Scenario:
    if name not in PRESETS:
        raise ScenarioError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - scenario_fields()
    if unknown:
        raise ScenarioError(f"unknown scenario fields {sorted(unknown)}")
    return Scenario(preset=name, **values)
