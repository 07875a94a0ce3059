"""How an operator command reaches the cluster's etcd: the server's configuration file
(``--config``, else ``LIVEKIT_CONFIG``) or explicit ``--etcd`` endpoints."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable

from trackyard import errors
from trackyard.config import EtcdConfig


class UsageError(Exception):
    """Bad flags or configuration: exit status 2."""


class Failed(Exception):
    """The command could not do its job: exit status 1."""


def add_access_flags(parser: argparse.ArgumentParser, *, etcd_optional: bool = False) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="the cluster's trackyard config (its etcd section); default $LIVEKIT_CONFIG")
    parser.add_argument("--etcd", metavar="ENDPOINTS",
                        help="etcd endpoints, comma-separated (instead of --config); credentials from "
                             "$TRACKYARD_ETCD_USERNAME / $TRACKYARD_ETCD_PASSWORD")
    parser.add_argument("--prefix", help="etcd key prefix (default: the config's, else /trackyard/)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                        help="bound on each etcd call with --etcd (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(etcd_optional=etcd_optional)


def etcd_config(args: argparse.Namespace) -> EtcdConfig | None:
    """The etcd to use, or None when none is named and the command can do without."""
    if args.etcd:
        endpoints = [e.strip() for e in args.etcd.split(",") if e.strip()]
        for endpoint in endpoints:
            host, sep, port = endpoint.split("://", 1)[-1].rpartition(":")
            if not sep or not host or not port.isdigit():
                raise UsageError(f"--etcd: expected [http(s)://]host:port, got {endpoint!r}")
        cfg = EtcdConfig(endpoints=endpoints, dial_timeout=args.timeout,
                         username=os.environ.get("TRACKYARD_ETCD_USERNAME", ""),
                         password=os.environ.get("TRACKYARD_ETCD_PASSWORD", ""))
    elif args.config or os.environ.get("LIVEKIT_CONFIG"):
        from trackyard.config import load_config

        try:
            cfg = load_config(args.config).etcd
        except errors.ConfigError as exc:
            raise UsageError(str(exc)) from None
    elif args.etcd_optional:
        return None
    else:
        raise UsageError("name the cluster's etcd: --config FILE, --etcd ENDPOINTS or $LIVEKIT_CONFIG")
    if args.prefix:
        cfg.prefix = args.prefix if args.prefix.endswith("/") else args.prefix + "/"
    if not cfg.endpoints:
        raise UsageError("the configuration names no etcd endpoints (etcd.endpoints)")
    return cfg


def run(command: Callable[[argparse.Namespace], Awaitable[object]], args: argparse.Namespace) -> int:
    """Run an async command: print its result (table or JSON), map failures to exit codes."""
    from trackyard.cluster import EtcdUnavailable

    try:
        result = asyncio.run(command(args))
    except UsageError as exc:
        print(f"trackyard: {exc}", file=sys.stderr)
        return 2
    except (Failed, EtcdUnavailable) as exc:
        print(f"trackyard: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, Output):
        print(json.dumps(result.data, indent=2) if args.json else result.text)
    return 0


class Output:
    """What a command prints: ``data`` with ``--json``, else ``text``."""

    def __init__(self, data: object, text: str) -> None:
        self.data = data
        self.text = text


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain text table: ``columns`` are (key, heading)."""
    cells = [[heading for _, heading in columns]]
    cells += [["" if row.get(key) is None else str(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)
