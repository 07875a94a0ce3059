"""trackyard's CPU per egress packet in a preset against the forwarding floor for that load,
measured back to back in one window (recorded, not asserted).

The issue's per-packet goal compares two numbers that move with this shared VM's load by
10–30 % between minutes: `trackyard bench`'s server CPU per egress packet and the forwarding
micro-benchmark's floor at the same pace (`forward_bench` section (d)). Taken minutes apart,
their ratio carries that noise. This alternates them: for each of `--runs` rounds, the (d)
row for the preset (10 s), then the preset against a fresh trackyard (`bench/run-preset`),
and reports every round's pair, the medians and the median ratio.

    .venv/bin/python bench/floor_ratio.py join-storm --runs 3
    .venv/bin/python bench/floor_ratio.py audio-room --subscribers 800

Every preset has (d) rows: audio-room (400, 800), livestream (500, 1000), join-storm (500),
small-rooms and meeting (one row each, the preset's own mix of streams). Writes bench/out/floor-ratio-<preset>-<time>.json (git-ignored)
and prints a markdown table. Bounded: each round is one 10 s (d) run and one preset run.
Needs the engine build (scripts/bootstrap); builds forward_bench if it is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORWARD_BENCH = ROOT / "target/bench/release/forward_bench"
DEFAULT_SUBSCRIBERS = {"audio-room": 400, "livestream": 500, "join-storm": 500, "small-rooms": None, "meeting": None}


def floor_run(preset: str, subscribers: int | None, out: Path) -> float:
    """forward_bench (d) for the preset: the forwarder thread's CPU µs per egress packet."""
    subprocess.run([str(FORWARD_BENCH), "--sections", "d", "--paced", preset, "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT / "rust/bench")
    rows = json.loads(out.read_text())["fanout_udp_paced"]
    rows = [r for r in rows if subscribers is None or r["subscribers"] == subscribers]
    if len(rows) != 1:
        sys.exit(f"forward_bench has no single (d) row for {preset} with {subscribers} subscribers")
    return float(rows[0]["cpu_us_per_egress_pkt_forwarder"])


def preset_run(preset: str, subscribers: int | None) -> tuple[float, Path]:
    """bench/run-preset trackyard: the server's CPU µs per egress packet and the result dir."""
    before = set((ROOT / "bench/out").glob(f"trackyard-{preset}-*"))
    extra = ["--subscribers", str(subscribers)] if subscribers and subscribers != DEFAULT_SUBSCRIBERS[preset] else []
    subprocess.run([str(ROOT / "bench/run-preset"), "trackyard", preset, *extra],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    (new,) = set((ROOT / "bench/out").glob(f"trackyard-{preset}-*")) - before
    result = json.loads((new / "result.json").read_text())
    return float(result["server"]["cpu_us_per_egress_packet"]), new


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", choices=sorted(DEFAULT_SUBSCRIBERS))
    ap.add_argument("--subscribers", type=int, help="which (d) row: audio-room 400/800, livestream 500/1000")
    ap.add_argument("--runs", type=int, default=3, help="rounds of (d) + preset, 1–10 (default 3)")
    args = ap.parse_args()
    if not 1 <= args.runs <= 10:
        ap.error("--runs must be 1–10")
    subscribers = args.subscribers or DEFAULT_SUBSCRIBERS[args.preset]
    if not FORWARD_BENCH.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "forward_bench"], check=True, cwd=ROOT / "rust/bench")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = ROOT / "bench/out"
    out_dir.mkdir(parents=True, exist_ok=True)
    rounds = []
    for i in range(args.runs):
        floor = floor_run(args.preset, subscribers, out_dir / f"floor-ratio-{args.preset}-{stamp}-d{i}.json")
        server, result_dir = preset_run(args.preset, subscribers)
        rounds.append({"floor_us": floor, "trackyard_us": server, "ratio": server / floor,
                       "result": str(result_dir.relative_to(ROOT))})
        print(f"round {i + 1}: floor {floor:.2f} µs, trackyard {server:.2f} µs, {server / floor:.2f}×",
              file=sys.stderr)
    floor_med = statistics.median(r["floor_us"] for r in rounds)
    server_med = statistics.median(r["trackyard_us"] for r in rounds)
    ratio_med = statistics.median(r["ratio"] for r in rounds)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    summary = {"preset": args.preset, "subscribers": subscribers, "commit": commit, "started": stamp,
               "rounds": rounds, "median_floor_us": floor_med, "median_trackyard_us": server_med,
               "median_ratio": ratio_med}
    (out_dir / f"floor-ratio-{args.preset}-{stamp}.json").write_text(json.dumps(summary, indent=2) + "\n")
    label = f"{args.preset} {subscribers}" if subscribers else args.preset
    print(f"| {label} | " + " / ".join(f"{r['trackyard_us']:.2f}" for r in rounds)
          + " | " + " / ".join(f"{r['floor_us']:.2f}" for r in rounds)
          + " | " + " / ".join(f"{r['ratio']:.2f}×" for r in rounds) + f" | **{ratio_med:.2f}×** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
