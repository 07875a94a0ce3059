"""Connection quality per participant, from the engine's periodic stream statistics.

A participant's quality is the worse of what it sends (loss on its published streams as the
server receives them) and what it receives (loss the subscriber reports on its
down-tracks), with jitter and round-trip time as tie-breakers. LiveKit's scale:
EXCELLENT, GOOD, POOR, LOST (nothing arrived at all while it should have).
"""

from __future__ import annotations

from dataclasses import dataclass

from livekit.protocol import models

Quality = models.ConnectionQuality


@dataclass
class Sample:
    packets: int = 0
    lost: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float = 0.0
    expected_traffic: bool = False

    def add(self, packets: int, lost: int, jitter_ms: float = 0.0, rtt_ms: float = 0.0) -> None:
        self.packets += max(0, packets)
        self.lost += max(0, lost)
        self.jitter_ms = max(self.jitter_ms, jitter_ms)
        self.rtt_ms = max(self.rtt_ms, rtt_ms)


def score(sample: Sample) -> tuple[int, float]:
    """(ConnectionQuality, score 1..5) for one participant's interval."""
    if sample.expected_traffic and sample.packets == 0:
        return Quality.LOST, 1.0
    total = sample.packets + sample.lost
    loss = sample.lost / total if total else 0.0
    penalty = loss * 100 * 0.4 + max(0.0, sample.jitter_ms - 30) / 50 + max(0.0, sample.rtt_ms - 150) / 200
    value = max(1.0, min(5.0, 5.0 - penalty))
    if value >= 4.0:
        return Quality.EXCELLENT, round(value, 2)
    if value >= 3.0:
        return Quality.GOOD, round(value, 2)
    return Quality.POOR, round(value, 2)
