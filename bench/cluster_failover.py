"""Failover and drain numbers for a cluster carrying a real-SDK call (recorded, not asserted).

One `ClusterLab` (tests/support/cluster_lab.py: etcd, 2 control nodes behind haproxy, 2 media
nodes, each in a network namespace of its own) carries one call: alice publishes a tone,
bob listens. Then, --repeat times each (bounded):

- kill: SIGKILL the media node hosting the room; measure until bob hears alice again on the
  other node (`gap`), until the room's etcd record is gone (`released`), names the new node
  (`replaced`), and until both SDKs joined again (`rejoined`); restart the killed node;
- drain: SIGTERM the hosting node the same way; it drains and exits; restart it.

Writes bench/out/cluster_failover.json (git-ignored) with the commit and the machine and
prints a summary (p50 and max per kind). Needs root (network namespaces), etcd and haproxy
(`scripts/bootstrap --tests`). Run: ``.venv/bin/python bench/cluster_failover.py --repeat 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.cluster_calls import fail_media_node, record, start_call  # noqa: E402
from support.cluster_lab import ClusterLab  # noqa: E402

LEASE_TTL = 3  # the lab's node lease (s): a killed node's room record vanishes this long after


async def wait_registered(cl, host: str, timeout: float = 30.0) -> None:
    node_id = cl.node_id(host)
    await cl.recorder.wait(lambda s: s["nodes"].get(node_id, {}).get("state") == "serving", timeout=timeout,
                           what=f"{host} serving again")


async def run(repeat: int) -> dict:
    results = []
    started = time.monotonic()
    with ClusterLab(controls=2, media=2, clients=2, lease_ttl=LEASE_TTL, drain_timeout=10.0) as cl:
        await cl.wait_media_registered()
        call = await start_call(cl, "bench-failover")
        for how in ("kill", "drain"):
            for n in range(repeat):
                old = call.host
                result = await fail_media_node(cl, call, how)
                print(f"{how} #{n + 1}: {result}", flush=True)
                results.append(result)
                if how == "drain":
                    result["exit_code"] = await asyncio.to_thread(cl.nodes[old].process.wait, 20)
                    result["drain_exit"] = round(time.time() - result["at"], 3)
                await asyncio.to_thread(cl.restart_node, old)
                await wait_registered(cl, old)
                await asyncio.sleep(1.0)  # the call settles before the next failure
    summary = {}
    for how in ("kill", "drain"):
        rows = [r for r in results if r["how"] == how]
        for key in ("gap", "released", "replaced", "rejoined"):
            values = [r[key] for r in rows if r[key] is not None]
            if not values:
                continue
            summary[f"{how}_{key}_p50"] = round(statistics.median(values), 3)
            summary[f"{how}_{key}_max"] = round(max(values), 3)
    summary["seconds"] = round(time.monotonic() - started, 1)
    return {"results": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 11), metavar="1..10")
    args = parser.parse_args()
    out = asyncio.run(run(args.repeat))
    path = record("cluster_failover", out["results"], summary=out["summary"], lease_ttl=LEASE_TTL,
                  repeat=args.repeat)
    print(out["summary"])
    print(f"written to {path}")


if __name__ == "__main__":
    main()
