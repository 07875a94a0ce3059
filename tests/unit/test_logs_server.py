"""A real server process logs JSON lines (the default outside --dev) whose room, participant
and node fields name what each line is about."""

from __future__ import annotations

import asyncio
import json
import time

from support.servers import ServerProcess, make_config
from support.signal_client import SignalClient
from support.tokens import join_token


async def test_a_server_logs_json_lines_with_room_participant_and_node():
    server = ServerProcess(make_config()).start()
    try:
        client = await SignalClient.connect(server.ws_url, join_token("alice", "lobby"))
        join = await client.expect("join", timeout=10)
        sid = join.participant.sid
        await client.leave()
        await client.close()
        deadline = time.monotonic() + 10
        while "left room" not in server.logs():
            assert time.monotonic() < deadline, server.logs()
            await asyncio.sleep(0.05)
    finally:
        server.stop()
        text = server.logs()
        server.cleanup()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    node_id = join.server_info.node_id
    assert all(e["node"] == node_id and e["role"] == "all" for e in entries)
    started = next(e for e in entries if "listening on" in e["msg"])
    assert "room" not in started and "participant" not in started
    created = next(e for e in entries if e["msg"].startswith("room lobby created"))
    assert created["room"] == "lobby"
    joined = next(e for e in entries if e["msg"].startswith("participant alice"))
    assert (joined["room"], joined["participant"], joined["participant_sid"]) == ("lobby", "alice", sid)
    left = next(e for e in entries if "left room" in e["msg"])
    assert (left["room"], left["participant"], left["participant_sid"]) == ("lobby", "alice", sid)
    assert {"ts", "level", "logger", "msg"} <= set(joined)
