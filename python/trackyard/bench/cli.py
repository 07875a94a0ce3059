"""`trackyard bench` / `python -m trackyard.bench`: run a scenario (flags like
`lk load-test`, or a named preset with overrides) or compare two results."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from .scenario import PRESETS, Scenario, ScenarioError, from_preset


def _pids(text: str) -> list[int]:
    try:
        return [int(p) for p in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"PIDs must be integers separated by commas, got {text!r}") from None


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named scenario (performance.md §5); flags override it")
    p.add_argument("--url", help="server URL (default $LIVEKIT_URL or ws://127.0.0.1:7880)")
    p.add_argument("--api-key", help="API key (default $LIVEKIT_API_KEY or devkey)")
    p.add_argument("--api-secret", help="API secret (default $LIVEKIT_API_SECRET or secret)")
    p.add_argument("--rooms", type=int, help="rooms (default 1)")
    p.add_argument("--video-publishers", type=int, help="video publishers per room")
    p.add_argument("--audio-publishers", type=int, help="audio publishers per room")
    p.add_argument("--subscribers", type=int, help="subscribers per room")
    p.add_argument("--duration", type=float, help="seconds measured after everyone joined (default 10)")
    p.add_argument("--join-rate", type=float, help="joins per second (default 10)")
    p.add_argument("--simulcast", action=argparse.BooleanOptionalAction, default=None,
                   help="publish simulcast layers (default on)")
    p.add_argument("--video-resolution", choices=("high", "medium", "low"), help="top layer 720p/360p/180p")
    p.add_argument("--layout", choices=("speaker", "3x3", "4x4", "5x5"), help="which layers subscribers ask for")
    p.add_argument("--room-prefix", help="room names are PREFIX-0, PREFIX-1, ... (default bench)")
    p.add_argument("--join-timeout", type=float, help="seconds a join may take (default 20)")
    p.add_argument("--local-ip", help="address of the simulated peers (default: the one routing to the server)")
    p.add_argument("--server-pid", "--server-pids", dest="server_pids", type=_pids, action="append",
                   help="PID(s) of the server's processes, for CPU (comma-separated, repeatable)")
    p.add_argument("--server-process-name", help="find the server's processes by name (e.g. livekit-server)")
    p.add_argument("--out", type=Path, help="directory for result.json, summary.md and plots "
                                            "(default bench/out/<preset>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    values = {
        "url": args.url or os.environ.get("LIVEKIT_URL") or None,
        "api_key": args.api_key or os.environ.get("LIVEKIT_API_KEY") or None,
        "api_secret": args.api_secret or os.environ.get("LIVEKIT_API_SECRET") or None,
        "rooms": args.rooms,
        "video_publishers": args.video_publishers,
        "audio_publishers": args.audio_publishers,
        "subscribers": args.subscribers,
        "duration": args.duration,
        "join_rate": args.join_rate,
        "simulcast": args.simulcast,
        "video_resolution": args.video_resolution,
        "layout": args.layout,
        "room_prefix": args.room_prefix,
        "join_timeout": args.join_timeout,
        "local_ip": args.local_ip,
        "server_pids": [p for group in (args.server_pids or []) for p in group] or None,
        "server_process_name": args.server_process_name,
    }
    if args.preset:
        sc = from_preset(args.preset, **values)
    else:
        sc = Scenario(**{k: v for k, v in values.items() if v is not None})
    return sc.validate()


def _run(args: argparse.Namespace) -> int:
    from .report import markdown, write
    from .runner import Run

    try:
        sc = scenario_from_args(args)
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        run = Run(sc, progress)
    except ScenarioError as exc:
        print(f"trackyard bench: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("bench/out") / f"{sc.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.quiet:
        print(f"trackyard bench: {sc.participants} participants in {sc.rooms} room(s) against {sc.url}, "
              f"about {sc.expected_seconds():.0f} s", file=sys.stderr)
    try:
        result = asyncio.run(run.run())
    except ScenarioError as exc:
        print(f"trackyard bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    files = write(result, out)
    print(markdown(result))
    print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)
    return 0 if result["joins"]["failed"] == 0 else 1


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare

    try:
        print(compare(args.a, args.b), end="")
    except (OSError, ValueError) as exc:
        print(f"trackyard bench compare: {exc}", file=sys.stderr)
        return 2
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """The `bench` command's arguments (shared by `trackyard bench` and `python -m trackyard.bench`)."""
    sub = parser.add_subparsers(dest="bench_command")
    run = sub.add_parser("run", help="run a scenario (the default)", prog="trackyard bench [run]",
                         description="Load-test a LiveKit-compatible server (like lk load-test). "
                                     "`trackyard bench compare A.json B.json` compares two results.")
    add_run_arguments(run)
    run.set_defaults(run=_run)
    cmp = sub.add_parser("compare", help="compare two result.json files as a markdown table")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.set_defaults(run=_compare)
    parser.set_defaults(run=None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "compare"):
        argv = ["run", *argv]  # `trackyard bench --preset x` means `trackyard bench run --preset x`
    parser = argparse.ArgumentParser(prog="trackyard bench",
                                     description="Load-test a LiveKit-compatible server (like lk load-test).")
    configure(parser)
    args = parser.parse_args(argv)
    if args.run is None:
        parser.print_help()
        return 2
    return args.run(args)
