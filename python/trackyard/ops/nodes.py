"""``trackyard nodes list`` and ``trackyard node drain|undrain <id>``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter

from trackyard.ops.access import Failed, Output, etcd_config, run, table

COLUMNS = [("node_id", "NODE"), ("state", "STATE"), ("drain_requested", "DRAIN REQUESTED"), ("region", "REGION"),
           ("rooms", "ROOMS"), ("participants", "PARTICIPANTS"), ("tracks", "TRACKS"), ("cpu", "CPU %"),
           ("load_age", "LOAD AGE"), ("rtc_address", "RTC ADDRESS"), ("signal_address", "SIGNAL ADDRESS")]


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace):
    from trackyard.cluster import EtcdStore

    store = await EtcdStore.from_config(etcd_config(args)).connect()
    try:
        yield store
    finally:
        await store.close()


async def read_nodes(store) -> list[dict]:
    """One dict per registered media node (plus nodes with a drain request but not registered)."""
    from trackyard.cluster.placement import ROOMS
    from trackyard.cluster.registry import LOAD, NODES, NodeInfo, NodeLoad, drain_requests

    infos, _ = await store.get_prefix(NODES)
    loads, _ = await store.get_prefix(LOAD)
    placed, _ = await store.get_prefix(ROOMS)
    requests = await drain_requests(store)
    load_of = {e.key[len(LOAD):]: e.value for e in loads}
    placed_on = Counter()
    for entry in placed:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            placed_on[json.loads(entry.value)["node_id"]] += 1
    now = time.time()
    rows = []
    for entry in infos:
        try:
            info = NodeInfo.decode(entry.value)
        except (ValueError, TypeError):
            continue
        load = NodeLoad(updated_at=0.0)
        if info.node_id in load_of:
            with contextlib.suppress(ValueError, TypeError):
                load = NodeLoad.decode(load_of[info.node_id])
        request = requests.get(info.node_id)
        rows.append({
            "node_id": info.node_id, "state": info.state, "registered": True,
            "drain_requested": request is not None, "drain_reason": request.reason if request else "",
            "region": info.region, "rtc_address": info.rtc_address, "signal_address": info.signal_address,
            "rooms": max(load.rooms, placed_on[info.node_id]), "participants": load.participants,
            "tracks": load.tracks, "cpu": round(load.cpu, 1),
            "load_age": f"{max(0.0, now - load.updated_at):.1f}s" if load.updated_at else "",
            "started_at": info.started_at,
        })
    known = {row["node_id"] for row in rows}
    for node_id, request in sorted(requests.items()):
        if node_id not in known:  # a request for a node that is not registered (gone, or not up yet)
            rows.append({"node_id": node_id, "state": "not registered", "registered": False,
                         "drain_requested": True, "drain_reason": request.reason})
    return rows


async def _list(args: argparse.Namespace) -> Output:
    async with connected(args) as store:
        rows = await read_nodes(store)
    text = table([{**r, "drain_requested": "yes" if r["drain_requested"] else ""} for r in rows], COLUMNS)
    return Output(rows, text)


async def _node_row(store, node_id: str) -> dict | None:
    return next((r for r in await read_nodes(store) if r["node_id"] == node_id and r["registered"]), None)


async def _wait(store, node_id: str, seconds: float, done, what: str) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        row = await _node_row(store, node_id)
        if row is not None and done(row):
            return row
        if time.monotonic() > deadline:
            raise Failed(f"node {node_id} is not {what} after {seconds:g}s")
        await asyncio.sleep(0.2)


async def _drain(args: argparse.Namespace) -> Output:
    from trackyard.cluster.registry import DRAINING, request_drain

    async with connected(args) as store:
        if await _node_row(store, args.node_id) is None:
            raise Failed(f"no registered media node {args.node_id!r} (see `trackyard nodes list`)")
        await request_drain(store, args.node_id, args.reason)
        row = {"node_id": args.node_id, "drain_requested": True}
        text = f"drain requested for {args.node_id}"
        if args.wait > 0:
            row = await _wait(store, args.node_id, args.wait,
                              lambda r: r["state"] == DRAINING and r["rooms"] == 0, "drained")
            text += "; it is draining and hosts no room"
    return Output(row, text)


async def _undrain(args: argparse.Namespace) -> Output:
    from trackyard.cluster.registry import SERVING, cancel_drain

    async with connected(args) as store:
        had = await cancel_drain(store, args.node_id)
        registered = await _node_row(store, args.node_id) is not None
        if not had and not registered:
            raise Failed(f"no registered media node {args.node_id!r} and no drain request for it")
        row = {"node_id": args.node_id, "drain_requested": False, "had_request": had}
        text = f"drain request for {args.node_id} taken back" if had else f"{args.node_id} had no drain request"
        if args.wait > 0 and registered:
            row = await _wait(store, args.node_id, args.wait, lambda r: r["state"] == SERVING, "serving")
            text += "; it is serving"
    return Output(row, text)


def list_nodes(args: argparse.Namespace) -> int:
    return run(_list, args)


def drain_node(args: argparse.Namespace) -> int:
    return run(_drain, args)


def undrain_node(args: argparse.Namespace) -> int:
    return run(_undrain, args)
