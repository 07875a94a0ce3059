"""CPU time of the server under test, from /proc (utime + stime of every thread of every
process given by PID or found by name), so a run can report CPU per forwarded packet."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """utime + stime of a process (all its threads, as the kernel sums them), in seconds."""
    text = (proc / str(pid) / "stat").read_text()
    # the command name may contain spaces and parentheses: fields start after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pids_by_name(name: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs whose command name (comm) or first command-line word's basename is `name`
    (never this process: `trackyard bench` must not measure itself as a trackyard server)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if name in (comm, os.path.basename(argv0)):
            found.append(int(entry.name))
    return sorted(found)


class ServerCpu:
    """Sums the CPU seconds of a fixed set of processes; processes that exit keep their last
    reading (their time up to then counts)."""

    def __init__(self, pids: list[int], proc: Path = Path("/proc")) -> None:
        self.pids = list(pids)
        self.proc = proc
        self._last: dict[int, float] = {}
        for pid in self.pids:
            process_cpu_seconds(pid, proc)  # fail early on a bad PID

    def seconds(self) -> float:
        for pid in self.pids:
            try:
                self._last[pid] = process_cpu_seconds(pid, self.proc)
            except (OSError, ValueError):
                pass
        return sum(self._last.values())


def own_cpu_seconds() -> float:
    """This process's CPU time (the load generator's cost), seconds."""
    t = os.times()
    return t.user + t.system
