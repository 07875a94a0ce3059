"""The `trackyard` command: run a server, mint tokens, operate a cluster (`trackyard.ops`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from trackyard import errors


def _server(args: argparse.Namespace) -> int:
    import uvloop

    from trackyard.config import load_config
    from trackyard.logs import setup_logging
    from trackyard.server import serve

    try:
        config = load_config(args.config, dev=args.dev, role=args.role)
    except errors.ConfigError as exc:
        print(f"trackyard: {exc}", file=sys.stderr)
        return 2
    if args.bind:
        config.bind_addresses = list(args.bind)
    if args.port:
        config.port = args.port
    setup_logging(config.logging.level, json_lines=config.logging.json)
    try:
        uvloop.run(serve(config))
    except errors.ConfigError as exc:  # found at startup, e.g. rtc.use_external_ip without an answer
        print(f"trackyard: {exc}", file=sys.stderr)
        return 2
    return 0


def _token(args: argparse.Namespace) -> int:
    from trackyard.auth.grants import VideoGrant
    from trackyard.auth.tokens import mint_token

    api_key = args.api_key or os.environ.get("LIVEKIT_API_KEY") or "devkey"
    api_secret = args.api_secret or os.environ.get("LIVEKIT_API_SECRET") or "secret"
    video = VideoGrant(
        room_join=args.join or bool(args.room and args.identity),
        room=args.room or "",
        room_create=args.create,
        room_list=args.list,
        room_admin=args.admin,
        can_publish=False if args.no_publish else None,
        can_subscribe=False if args.no_subscribe else None,
        can_update_own_metadata=True if args.allow_update_metadata else None,
        hidden=args.hidden,
    )
    if video.room_join and not (args.identity and args.room):
        print("trackyard token: --join needs --identity and --room", file=sys.stderr)
        return 2
    token = mint_token(api_key, api_secret, identity=args.identity or "", name=args.name or "",
                       ttl_seconds=args.valid_for, video=video, metadata=args.metadata or "",
                       attributes=dict(a.split("=", 1) for a in args.attribute))
    if args.json:
        print(json.dumps({"access_token": token, "identity": args.identity, "room": args.room}))
    else:
        print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackyard", description="A LiveKit-compatible media server.")
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="run a server")
    server.add_argument("--dev", action="store_true",
                        help="development defaults: 127.0.0.1, keys devkey/secret, port 7880, UDP 7882, debug logs")
    server.add_argument("--config", metavar="FILE", help="YAML configuration (LiveKit key names)")
    server.add_argument("--bind", action="append", metavar="ADDR", help="address to listen on (repeatable)")
    server.add_argument("--port", type=int, help="HTTP/WebSocket port (default 7880)")
    server.add_argument("--role", choices=("all", "control", "media"),
                        help="cluster role (default: node.role, else all = everything in one process); "
                             "control and media need etcd.endpoints")
    server.set_defaults(run=_server)

    token = sub.add_parser("token", help="mint an access token (like `lk token create`)")
    token.add_argument("create", nargs="?", help=argparse.SUPPRESS)
    token.add_argument("--api-key", help="API key (default $LIVEKIT_API_KEY or devkey)")
    token.add_argument("--api-secret", help="API secret (default $LIVEKIT_API_SECRET or secret)")
    token.add_argument("--identity", "-i", help="participant identity")
    token.add_argument("--name", "-n", help="participant name")
    token.add_argument("--room", "-r", help="room name")
    token.add_argument("--join", action="store_true", help="roomJoin grant (implied by --room with --identity)")
    token.add_argument("--create", action="store_true", help="roomCreate grant")
    token.add_argument("--list", action="store_true", help="roomList grant")
    token.add_argument("--admin", action="store_true", help="roomAdmin grant (for --room)")
    token.add_argument("--no-publish", action="store_true", help="canPublish false")
    token.add_argument("--no-subscribe", action="store_true", help="canSubscribe false")
    token.add_argument("--allow-update-metadata", action="store_true", help="canUpdateOwnMetadata")
    token.add_argument("--hidden", action="store_true", help="hidden participant")
    token.add_argument("--metadata", help="participant metadata")
    token.add_argument("--attribute", action="append", default=[], metavar="K=V", help="participant attribute")
    token.add_argument("--valid-for", type=float, default=6 * 3600, metavar="SECONDS", help="lifetime (default 6 h)")
    token.add_argument("--json", action="store_true", help="print JSON instead of the bare token")
    token.set_defaults(run=_token)

    sub.add_parser("bench", help="load-test a LiveKit-compatible server, like lk load-test "
                                 "(`trackyard bench --help`, docs/benchmarks.md)")

    from trackyard.ops import add_commands  # nodes list, rooms list, node drain|undrain

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own parser: run (default) and compare
        from trackyard.bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
