"""Machine CPU use, for load reports (`cluster.registry`) and metrics (no etcd imports here)."""

from __future__ import annotations

import os


class CpuSampler:
    """Machine CPU use in percent between successive calls, from /proc/stat (else loadavg)."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def __call__(self) -> float:
        now = self._read()
        if now is None or self._last is None:
            return min(100.0, 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1))
        (total0, idle0), (total1, idle1) = self._last, now
        self._last = now
        busy = (total1 - total0) - (idle1 - idle0)
        return round(100.0 * busy / (total1 - total0), 1) if total1 > total0 else 0.0
