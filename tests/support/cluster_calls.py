"""A call through a `ClusterLab` and the failures it survives, measured.

`start_call` connects two real-SDK agents (tests/support/sdk_agent.py) through the load
balancer: alice publishes a 440 Hz tone, bob analyses what he receives in short windows.
`fail_media_node` kills (SIGKILL) or drains (SIGTERM) the media node that hosts the room and
waits, doing nothing else, until bob hears alice again; it returns what it measured:

    gap          seconds from the kill/SIGTERM to the start of the first window of the tone
                 on alice's republished track (the SDKs rejoined on another node)
    released     seconds from the kill/SIGTERM until etcd's record of the room was gone (the
                 dead node's lease expired, or the draining node released it; None if the
                 recorder, polling every 0.1 s, never saw it absent)
    replaced     seconds from the kill/SIGTERM until etcd's record of the room names another
                 node (the first rejoin placed it again)
    rejoined     seconds from the kill/SIGTERM until both SDKs had a JoinResponse again
    old_host / new_host

Used by tests/integration/test_cluster_e2e_sdk.py (which asserts what a user would check)
and bench/cluster_failover.py (which repeats it and records the numbers).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.sdk_agent import SdkAgent, reports
from support.tokens import join_token

FREQ = 440.0
WINDOW = 0.25      # seconds of audio per analysed window
JOIN = 25.0        # connect, publish, first audio
RECOVERY = 30.0    # a failure -> the tone again: the correctness bound (measured gaps are far lower)
LONG = 600.0       # agents' --duration: they are stopped by PID when the test is done
OUT = Path(__file__).resolve().parents[2] / "bench" / "out"


def tone(after: float = 0.0, *, track_sid: str | None = None, not_track: str | None = None):
    """Matches a window of alice's tone received by bob, ending after wall time `after`."""
    def match(e: dict) -> bool:
        return (e.get("event") == "audio_frame_stats" and e.get("identity") == "alice" and e["wall"] > after
                and e["rms"] > 1000 and abs(e["freq"] - FREQ) <= 20
                and (track_sid is None or e["track_sid"] == track_sid)
                and (not_track is None or e["track_sid"] != not_track))
    return match


@dataclass
class Call:
    room: str
    alice: SdkAgent
    bob: SdkAgent
    host: str          # the media host (``med0``…) the room is on
    track_sid: str     # alice's audio track, as bob receives it
    heard: dict        # bob's first window of the tone


async def start_call(cl, room: str) -> Call:
    """alice (client 0) publishes, bob (client 1) listens, both through the load balancer;
    returns once bob hears the tone."""
    lab = cl.lab
    alice = SdkAgent.start(lab, lab.client_ns[0], cl.lb_url, join_token("alice", room), "publish-audio",
                           duration=LONG, name="alice", freq=FREQ, connect_timeout=JOIN)
    bob = SdkAgent.start(lab, lab.client_ns[1], cl.lb_url, join_token("bob", room), "subscribe-audio",
                         duration=LONG, name="bob", from_=["alice"], window=WINDOW, warmup=0, connect_timeout=JOIN)
    cl.agents.extend([alice, bob])
    await alice.wait_event("audio_published", timeout=JOIN)
    heard = await bob.wait_event(tone(), timeout=JOIN)
    await cl.wait_room_on(room, lambda h: h in cl.media_names, timeout=5, what=f"a record of {room}")
    return Call(room, alice, bob, cl.room_host(room), heard["track_sid"], heard)


async def fail_media_node(cl, call: Call, how: str) -> dict:
    """SIGKILL (``kill``) or SIGTERM (``drain``) the room's media node; wait (bounded) until
    the room is recorded on another node and bob hears alice's republished track."""
    old = call.host
    node = cl.nodes[old]
    started = time.time()
    if how == "kill":
        node.process.kill()
    elif how == "drain":
        node.process.proc.send_signal(15)
    else:
        raise ValueError(how)
    moved = await cl.wait_room_on(call.room, lambda h: h != old, timeout=RECOVERY, what=f"{call.room} re-placed",
                                  after=started)
    try:
        back = await call.bob.wait_event(tone(started, not_track=call.track_sid), timeout=RECOVERY)
    except AssertionError as exc:
        raise AssertionError(f"no tone after the {how} of {old}\n{reports(call.alice, call.bob)}\n{cl.logs()}") from exc
    new = cl.host_of(moved["rooms"][call.room]["node_id"])
    gone = next((snap["wall"] for snap in cl.recorder.snapshots()
                 if started < snap["wall"] <= moved["wall"] and call.room not in snap["rooms"]), None)
    joins = [next((e["wall"] for e in a.events("signal_join") if e["wall"] > started), None)
             for a in (call.alice, call.bob)]
    result = {"how": how, "at": round(started, 3), "old_host": old, "new_host": new,
              "gap": round(back["wall"] - WINDOW - started, 3),
              "released": round(gone - started, 3) if gone is not None else None,
              "replaced": round(moved["wall"] - started, 3),
              "rejoined": round(max(joins) - started, 3) if None not in joins else None}
    call.host, call.track_sid, call.heard = new, back["track_sid"], back
    return result


def record(name: str, results: list[dict], **context) -> Path:
    """Write measurements to bench/out/<name>.json (git-ignored) with the commit and machine."""
    import os
    import platform

    OUT.mkdir(parents=True, exist_ok=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=OUT.parent, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                f"{platform.system()} {platform.release()}", "wall": time.time(),
                                "results": results, **context}, indent=2))
    return path


async def stop_agents(*agents: SdkAgent) -> None:
    await asyncio.gather(*(asyncio.to_thread(a.process.stop, 5.0) for a in agents))
