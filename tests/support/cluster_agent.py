"""A tiny stand-alone cluster participant, run as a subprocess by the etcd integration tests.

    python -m support.cluster_agent register ENDPOINT PREFIX NODE_ID [--ttl S] [--region R]
        registers a media node, prints "READY <lease id>", then runs until killed
        (tests SIGKILL it to simulate a node crash).
    python -m support.cluster_agent place ENDPOINT PREFIX ROOM --nodes N
        starts a NodeDirectory + Placement, waits until it sees N nodes, prints "WAITING",
        waits for one line on stdin (the test's start signal, so several agents race), places
        ROOM and prints the record as JSON.

Run with ``PYTHONPATH=python:tests`` (see `agent_command`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from trackyard.cluster import EtcdStore, NodeDirectory, NodeInfo, NodeLoad, NodeRegistry, Placement

ROOT = Path(__file__).resolve().parents[2]


def agent_command(*args: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}:{ROOT / 'tests'}")
    return [sys.executable, "-m", "support.cluster_agent", *args], env


async def register(args) -> None:
    store = await EtcdStore([args.endpoint], args.prefix, timeout=2.0).connect()
    info = NodeInfo(args.node_id, rtc_address="127.0.0.1:7882", region=args.region)
    # A fixed load: the tests must not depend on how busy the machine's CPUs are.
    registry = NodeRegistry(store, info, ttl=args.ttl, load_interval=0.5, load=lambda: NodeLoad(rooms=0)).start()
    lease = await registry.wait_registered(15)
    print(f"READY {lease}", flush=True)
    await asyncio.Event().wait()


async def place(args) -> None:
    store = await EtcdStore([args.endpoint], args.prefix, timeout=2.0).connect()
    directory = NodeDirectory(store).start()
    placement = Placement(store, directory).start()
    await directory.wait_synced(15)
    await placement.wait_synced(15)
    await directory.wait_until(lambda d: len(d.nodes()) >= args.nodes, 15)
    print("WAITING", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    record = await placement.place_room(args.room)
    print(json.dumps(dataclasses.asdict(record)), flush=True)
    await placement.stop()
    await directory.stop()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    reg = sub.add_parser("register")
    reg.add_argument("endpoint")
    reg.add_argument("prefix")
    reg.add_argument("node_id")
    reg.add_argument("--ttl", type=int, default=3)
    reg.add_argument("--region", default="")
    pl = sub.add_parser("place")
    pl.add_argument("endpoint")
    pl.add_argument("prefix")
    pl.add_argument("room")
    pl.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(register(args) if args.cmd == "register" else place(args))


if __name__ == "__main__":
    main()
