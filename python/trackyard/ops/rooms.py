"""``trackyard rooms list``: rooms placed in etcd (and the node hosting each) merged with the
RoomService API's ListRooms (participants, publishers) when ``--url`` is given."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

from trackyard.ops.access import Failed, Output, UsageError, etcd_config, run, table

COLUMNS = [("name", "ROOM"), ("node_id", "NODE"), ("sid", "SID"), ("participants", "PARTICIPANTS"),
           ("publishers", "PUBLISHERS"), ("age", "AGE")]


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="a control node's URL for RoomService ListRooms (default $LIVEKIT_URL)")
    parser.add_argument("--api-key", help="API key (default $LIVEKIT_API_KEY)")
    parser.add_argument("--api-secret", help="API secret (default $LIVEKIT_API_SECRET)")


async def placed_rooms(args: argparse.Namespace) -> dict[str, dict] | None:
    """rooms/ records from etcd by name, or None when no etcd is named."""
    cfg = etcd_config(args)
    if cfg is None:
        return None
    from trackyard.cluster import EtcdStore
    from trackyard.cluster.placement import ROOMS

    async with EtcdStore.from_config(cfg) as store:
        entries, _ = await store.get_prefix(ROOMS)
    out = {}
    for entry in entries:
        with contextlib.suppress(ValueError, TypeError):
            out[entry.key[len(ROOMS):]] = json.loads(entry.value)
    return out


async def api_rooms(args: argparse.Namespace) -> dict[str, dict] | None:
    """ListRooms over Twirp, by name, or None without --url."""
    url = args.url or os.environ.get("LIVEKIT_URL", "")
    if not url:
        return None
    key = args.api_key or os.environ.get("LIVEKIT_API_KEY", "")
    secret = args.api_secret or os.environ.get("LIVEKIT_API_SECRET", "")
    if not key or not secret:
        raise UsageError("--url needs --api-key and --api-secret (or $LIVEKIT_API_KEY / $LIVEKIT_API_SECRET)")
    import aiohttp
    from livekit.protocol.room import ListRoomsRequest, ListRoomsResponse

    from trackyard.auth.grants import VideoGrant
    from trackyard.auth.tokens import mint_token

    token = mint_token(key, secret, ttl_seconds=60, video=VideoGrant(room_list=True))
    base = url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/protobuf"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"{base}/twirp/livekit.RoomService/ListRooms", headers=headers,
                                    data=ListRoomsRequest().SerializeToString()) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise Failed(f"ListRooms at {base}: HTTP {resp.status} {body[:200].decode(errors='replace')}")
    except aiohttp.ClientError as exc:
        raise Failed(f"ListRooms at {base}: {exc}") from None
    answer = ListRoomsResponse.FromString(body)
    return {r.name: {"sid": r.sid, "participants": r.num_participants, "publishers": r.num_publishers,
                     "created": r.creation_time} for r in answer.rooms}


async def _list(args: argparse.Namespace) -> Output:
    placed = await placed_rooms(args)
    listed = await api_rooms(args)
    if placed is None and listed is None:
        raise UsageError("name the cluster: --config/--etcd (placement in etcd) and/or --url (RoomService)")
    now = time.time()
    rows = []
    for name in sorted(set(placed or {}) | set(listed or {})):
        record, info = (placed or {}).get(name, {}), (listed or {}).get(name, {})
        created = info.get("created") or record.get("created") or 0
        rows.append({
            "name": name,
            "node_id": record.get("node_id") if placed is not None else None,
            "sid": info.get("sid") or record.get("room_sid", ""),
            "participants": info.get("participants") if listed is not None else None,
            "publishers": info.get("publishers") if listed is not None else None,
            "created": created,
            "age": f"{max(0, int(now - created))}s" if created else "",
        })
    return Output(rows, table(rows, COLUMNS))


def list_rooms(args: argparse.Namespace) -> int:
    return run(_list, args)
