"""Active speakers from audio levels, as `speakers_changed` wants them.

The engine reports, a few times a second, the loudest level of each audio track
(RFC 6464: 0 = loudest … 127 dBov = silence) and whether voice activity was flagged; the
flag is not relied on, since several senders (aiortc among them) never set it.
`SpeakerTracker` turns that into LiveKit's SpeakerInfo list: level as a linear 0..1 value,
`active` for speakers above the threshold. An update lists every active speaker plus those
that just went quiet (the Rust SDK replaces its list with each message's active entries,
the JS SDK merges deltas: both end up right).
"""

from __future__ import annotations

from livekit.protocol import models

ACTIVE_DBOV = 50  # louder than -50 dBov counts as speaking (many senders never set the V flag)
QUIET_AFTER = 2  # intervals below the threshold before a speaker turns inactive


def linear_level(dbov: int) -> float:
    return round(10 ** (-max(0, min(127, dbov)) / 20), 4)


class SpeakerTracker:
    def __init__(self) -> None:
        self._levels: dict[str, float] = {}  # participant sid → last linear level
        self._quiet: dict[str, int] = {}  # participant sid → consecutive quiet intervals
        self.active: set[str] = set()
        self._just_quiet: set[str] = set()

    def update(self, levels: dict[str, tuple[int, bool]]) -> list[models.SpeakerInfo] | None:
        """`levels`: participant sid → (loudest dBov of its audio tracks, voice flag) for one
        interval. Returns the SpeakerInfo list to broadcast, or None when nothing changed."""
        changed = False
        for sid, (dbov, voice) in levels.items():
            speaking = dbov <= ACTIVE_DBOV
            self._levels[sid] = linear_level(dbov)
            if speaking:
                self._quiet[sid] = 0
                if sid not in self.active:
                    self.active.add(sid)
                    changed = True
            elif sid in self.active:
                self._quiet[sid] = self._quiet.get(sid, 0) + 1
                if self._quiet[sid] >= QUIET_AFTER:
                    self.active.discard(sid)
                    changed = True
                    self._just_quiet.add(sid)
        if not changed:
            return None
        infos = [models.SpeakerInfo(sid=sid, level=self._levels.get(sid, 0.0), active=True)
                 for sid in sorted(self.active, key=lambda s: -self._levels.get(s, 0.0))]
        infos += [models.SpeakerInfo(sid=sid, level=0.0, active=False) for sid in sorted(self._just_quiet)]
        self._just_quiet.clear()
        return infos

    def forget(self, sid: str) -> list[models.SpeakerInfo] | None:
        """A participant left: if it was speaking, the others must hear it stopped."""
        self._levels.pop(sid, None)
        self._quiet.pop(sid, None)
        if sid in self.active:
            self.active.discard(sid)
            return [models.SpeakerInfo(sid=sid, level=0.0, active=False)]
        return None
