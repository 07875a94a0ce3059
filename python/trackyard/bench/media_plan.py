"""What the simulated publishers send and which layers the simulated subscribers ask for.

Video layers per `--video-resolution` (simulcast sends every layer up to the top one, lowest
first with rids q, h, f as the SDKs do; without simulcast only the top layer is sent), and
the `--layout` rule that maps a room's video tracks to requested qualities, like
`lk load-test --layout`.
"""

from __future__ import annotations

from dataclasses import dataclass

from livekit.protocol import models


@dataclass(frozen=True)
class VideoLayer:
    rid: str
    quality: int  # models.VideoQuality
    width: int
    height: int
    fps: int
    bitrate: int  # bit/s


_Q = VideoLayer("q", models.VideoQuality.LOW, 320, 180, 15, 150_000)
_H = VideoLayer("h", models.VideoQuality.MEDIUM, 640, 360, 30, 500_000)
_F = VideoLayer("f", models.VideoQuality.HIGH, 1280, 720, 30, 1_700_000)

RESOLUTIONS: dict[str, tuple[VideoLayer, ...]] = {
    "high": (_Q, _H, _F),
    "medium": (_Q, _H),
    "low": (_Q,),
}
AUDIO_PAYLOAD = 80  # bytes of Opus-like payload per 20 ms packet (~32 kbit/s with headers)
AUDIO_PTIME_MS = 20
KEYFRAME_INTERVAL_MS = 3000

# layout → (tiles, quality of the first tile, quality of the others); tracks beyond the tiles
# are subscribed but disabled (off screen), as an adaptive-stream client does
LAYOUTS: dict[str, tuple[int, int, int]] = {
    "speaker": (6, models.VideoQuality.HIGH, models.VideoQuality.LOW),
    "3x3": (9, models.VideoQuality.MEDIUM, models.VideoQuality.MEDIUM),
    "4x4": (16, models.VideoQuality.LOW, models.VideoQuality.LOW),
    "5x5": (25, models.VideoQuality.LOW, models.VideoQuality.LOW),
}


def video_layers(resolution: str, simulcast: bool) -> tuple[VideoLayer, ...]:
    """The layers a video publisher sends (without simulcast: the top one, no rid)."""
    layers = RESOLUTIONS[resolution]
    if simulcast:
        return layers
    top = layers[-1]
    return (VideoLayer("", top.quality, top.width, top.height, top.fps, top.bitrate),)


def requested_qualities(layout: str, video_tracks: list[str]) -> dict[str, int | None]:
    """Track sid → requested quality (None: disabled), for a room's video tracks in display
    order (the first is the speaker)."""
    tiles, first, others = LAYOUTS[layout]
    out: dict[str, int | None] = {}
    for i, sid in enumerate(video_tracks):
        out[sid] = None if i >= tiles else (first if i == 0 else others)
    return out


def forwarded_layer(layers: tuple[VideoLayer, ...], quality: int | None) -> VideoLayer | None:
    """The layer an SFU forwards for a requested quality: the best one at or below it."""
    if quality is None:
        return None
    fitting = [layer for layer in layers if layer.quality <= quality]
    return fitting[-1] if fitting else layers[0]


def size_for(quality: int) -> tuple[int, int]:
    """The rendered size a subscriber reports for a quality (UpdateTrackSettings width/height)."""
    layer = next((lay for lay in (_Q, _H, _F) if lay.quality == quality), _F)
    return layer.width, layer.height
