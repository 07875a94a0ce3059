"""RoomService queries from inside a lab namespace (run by `LabServer.api`).

``python lab_api.py --url http://127.0.0.1:7880 --key K --secret S participants ROOM
[--wait-for id1,id2] [--timeout SECONDS]`` prints one JSON line
``{"participants": [{"identity", "sid", "state", "tracks": [...]}, ...]}``;
``… rooms`` prints ``{"rooms": [{"name", "sid", "num_participants"}]}``.
Uses the real `livekit.api.LiveKitAPI`; every wait is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from livekit import api
from livekit.protocol import models


def _participant(p: models.ParticipantInfo) -> dict:
    return {
        "identity": p.identity,
        "sid": p.sid,
        "state": models.ParticipantInfo.State.Name(p.state),
        "tracks": [{"sid": t.sid, "type": models.TrackType.Name(t.type), "muted": t.muted, "mime": t.mime_type}
                   for t in p.tracks],
    }


async def _main(args: argparse.Namespace) -> dict:
    lk = api.LiveKitAPI(args.url, args.key, args.secret)
    try:
        if args.command == "rooms":
            rooms = (await lk.room.list_rooms(api.ListRoomsRequest())).rooms
            return {"rooms": [{"name": r.name, "sid": r.sid, "num_participants": r.num_participants} for r in rooms]}
        wanted = {i for i in (args.wait_for or "").split(",") if i}
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                resp = await lk.room.list_participants(api.ListParticipantsRequest(room=args.room))
                found = [_participant(p) for p in resp.participants]
            except api.TwirpError as exc:  # e.g. the room does not exist yet
                found = []
                error = f"{exc.code}: {exc.message}"
            else:
                error = None
            if wanted <= {p["identity"] for p in found} or time.monotonic() > deadline:
                return {"participants": found, **({"error": error} if error else {})}
            await asyncio.sleep(0.1)
    finally:
        await lk.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("participants")
    p.add_argument("room")
    p.add_argument("--wait-for", default="")
    p.add_argument("--timeout", type=float, default=0.0)
    sub.add_parser("rooms")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_main(args))), flush=True)


if __name__ == "__main__":
    main()
