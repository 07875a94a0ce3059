"""Log lines: JSON objects in production with node, room and participant fields; readable
lines in development; the fields follow the task that bound them."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from trackyard import logs
from trackyard.config import load_config


@pytest.fixture
def capture():
    """A logger writing through a trackyard handler into a buffer: (logger, buffer, set_json)."""
    buffer = io.StringIO()
    logger = logging.getLogger("trackyard.test_logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    state = {}

    def use(json_lines: bool) -> None:
        if "handler" in state:
            logger.removeHandler(state["handler"])
        state["handler"] = logs.make_handler(buffer, json_lines=json_lines)
        logger.addHandler(state["handler"])

    use(True)
    saved = dict(logs._process)
    yield logger, buffer, use
    logger.removeHandler(state["handler"])
    logs._process.clear()
    logs._process.update(saved)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_node_and_the_bound_room_and_participant(capture):
    logger, buffer, _ = capture
    logs.set_node("ND_test", "media")

    async def participant_task():
        logs.bind(room="lobby", participant="alice", participant_sid="PA_1")
        logger.info("participant %s joined", "alice")
        # a task started from here carries the same fields
        await asyncio.get_running_loop().create_task(child())

    async def child():
        logger.warning("child of %s", "alice")

    async def main():
        await asyncio.get_running_loop().create_task(participant_task())
        logger.info("outside any participant")

    asyncio.run(main())
    first, second, third = lines(buffer)
    assert first["msg"] == "participant alice joined" and first["level"] == "info"
    assert first["logger"] == "trackyard.test_logs" and first["ts"].endswith("Z")
    for entry in (first, second):
        assert (entry["node"], entry["role"], entry["room"], entry["participant"], entry["participant_sid"]) == (
            "ND_test", "media", "lobby", "alice", "PA_1")
    assert second["level"] == "warning"
    # the binding stayed in the participant's task
    assert third["node"] == "ND_test" and "room" not in third and "participant" not in third


def test_extra_fields_win_and_errors_carry_the_traceback(capture):
    logger, buffer, _ = capture
    logs.set_node("ND_x", "all")

    async def main():
        logs.bind(room="a", participant="bob")
        logger.info("room closed", extra={"room": "b"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("handling failed")

    asyncio.run(main())
    closed, failed = lines(buffer)
    assert closed["room"] == "b" and closed["participant"] == "bob"
    assert "participant_sid" not in closed  # empty fields are left out
    assert failed["level"] == "error" and "ValueError: boom" in failed["error"] and "Traceback" in failed["error"]


def test_readable_lines_name_room_and_participant(capture):
    logger, buffer, use = capture
    use(False)
    logs.set_node("ND_dev", "all")
    logger.info("plain line")

    async def main():
        logs.bind(room="r1", participant="carol", participant_sid="PA_2")
        logger.info("joined")

    asyncio.run(main())
    plain, joined = buffer.getvalue().splitlines()
    assert plain.endswith("trackyard.test_logs: plain line")  # node/role stay out of dev lines
    assert joined.endswith("joined [room=r1 participant=carol participant_sid=PA_2]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(joined)


def test_bind_refuses_unknown_fields():
    with pytest.raises(ValueError):
        logs.bind(rooom="typo")


def test_json_is_the_default_outside_dev_and_readable_with_dev():
    keys = {"LIVEKIT_KEYS": "k: " + "s" * 40}
    assert load_config(body="{}", env=keys).logging.json is True
    assert load_config(body="{}", env={}, dev=True).logging.json is False
    assert load_config(body="logging: {json: true}", env={}, dev=True).logging.json is True
    assert load_config(body="logging: {json: false}", env=keys).logging.json is False
