"""Join time through the cluster's signal relay against a single node, and placement time
(recorded, not asserted).

Starts a real etcd, one control node and one media node (trackyard processes on loopback),
and, separately, one single-node server; then runs the same `trackyard bench run`
scenarios against each:

- same-room: 1 room, 1 audio publisher and 40 subscribers joining at 10/s: every join but
  the first goes to a room that exists, so the difference between the two servers is the
  relay (control node → gRPC → media node) and nothing else;
- new-rooms: 40 rooms of 1 audio publisher each, at 10 joins/s: every join creates its
  room, which on the cluster means a placement (pick a media node, record the room in etcd
  with a create-if-absent transaction) before the join is relayed.

Placement time ≈ new-rooms JoinResponse p50 on the cluster − same-room p50 on the cluster.
Writes bench/out/cluster_join.json (git-ignored) with the commit and the machine and prints
a markdown table. Bounded: 4 runs of ~10 s each. Needs etcd (`scripts/bootstrap --tests`).
Run: ``.venv/bin/python bench/cluster_join.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster_nodes import TestCluster  # noqa: E402
from support.etcd import EtcdServer, unique_prefix  # noqa: E402
from support.servers import API_KEY, API_SECRET, ServerProcess, make_config  # noqa: E402

SCENARIOS = {
    "same-room": ["--rooms", "1", "--audio-publishers", "1", "--subscribers", "40"],
    "new-rooms": ["--rooms", "40", "--audio-publishers", "1", "--subscribers", "0"],
}
COMMON = ["--join-rate", "10", "--duration", "5", "--quiet"]


def run_bench(url: str, name: str, out: Path, pids: list[int]) -> dict:
    argv = [sys.executable, "-m", "trackyard", "bench", "run", "--url", url, "--api-key", API_KEY,
            "--api-secret", API_SECRET, *SCENARIOS[name], *COMMON, "--out", str(out),
            "--room-prefix", f"{name}-{int(time.time() * 1000)}"]
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    subprocess.run(argv, check=True, timeout=180, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def summary(result: dict) -> dict:
    joins = result["joins"]
    return {
        "joins_ok": joins["succeeded"], "joins_attempted": joins["attempted"],
        "join_response_ms": {k: joins["join_response_ms"].get(k) for k in ("p50", "p90", "p99")},
        "connected_ms": {k: joins["connected_ms"].get(k) for k in ("p50", "p90", "p99")},
    }


async def main() -> None:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ty-cluster-join-") as tmp:
        tmp_path = Path(tmp)
        single = ServerProcess(make_config()).start()
        try:
            for name in SCENARIOS:
                r = run_bench(single.ws_url, name, tmp_path / f"single-{name}", [single.proc.pid])
                results[f"single node, {name}"] = summary(r)
        finally:
            single.cleanup()
        etcd = EtcdServer().start()
        cluster = TestCluster(etcd, unique_prefix("bench"))
        try:
            media, control = cluster.add("media", "control")
            await cluster.wait_media(1)
            for name in SCENARIOS:
                r = run_bench(f"ws://127.0.0.1:{control.config.port}", name, tmp_path / f"cluster-{name}",
                              [control.proc.pid, media.proc.pid])
                results[f"cluster (control → media), {name}"] = summary(r)
        finally:
            cluster.close()
            etcd.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    record = {"commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "scenarios": {k: SCENARIOS[k] + COMMON for k in SCENARIOS}, "results": results}
    out = ROOT / "bench" / "out" / "cluster_join.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"commit {commit}, {record['date']}, load average {os.getloadavg()[0]:.1f}\n")
    print("| server, scenario | joins | JoinResponse ms p50 / p90 / p99 | connected ms p50 / p99 |")
    print("|---|---:|---:|---:|")
    for name, s in results.items():
        jr, cn = s["join_response_ms"], s["connected_ms"]
        print(f"| {name} | {s['joins_ok']}/{s['joins_attempted']} | {jr['p50']} / {jr['p90']} / {jr['p99']} "
              f"| {cn['p50']} / {cn['p99']} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
