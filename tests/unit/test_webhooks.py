"""Webhook events and delivery, checked against a real aiohttp receiver and LiveKit's WebhookReceiver."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from aiohttp import web
from livekit import api as lkapi
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from trackyard.webhooks import events
from trackyard.webhooks.notifier import WebhookNotifier, resource_key, sign_body

API_KEY = "devkey"
API_SECRET = "secret"
WAIT = 5.0  # upper bound for every wait in this module

pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
    # "secret" is LiveKit's dev-mode secret: shorter than PyJWT's recommended HMAC key length.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


# ---- helpers ------------------------------------------------------------------------------


def room(name: str = "room-a", **kw: Any) -> models.Room:
    return models.Room(sid="RM_" + name, name=name, **kw)


def participant(identity: str = "alice", **kw: Any) -> models.ParticipantInfo:
    return models.ParticipantInfo(sid="PA_" + identity, identity=identity, **kw)


def track(sid: str = "TR_abc") -> models.TrackInfo:
    return models.TrackInfo(sid=sid, type=models.TrackType.AUDIO, name="mic", source=models.TrackSource.MICROPHONE)


def joined(room_name: str, identity: str) -> WebhookEvent:
    return events.participant_joined(room(room_name), participant(identity))


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def free_closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    body: str
    headers: dict[str, str]
    event: WebhookEvent
    at: float


Responder = Callable[[Received, int], Awaitable[web.StreamResponse | None]]


class Receiver:
    """An HTTP endpoint that verifies each request with livekit-api's WebhookReceiver."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.errors: list[Exception] = []
        self.respond: Responder | None = None
        self.gate = asyncio.Event()  # set at teardown so blocked handlers finish
        self._verifier = lkapi.WebhookReceiver(lkapi.TokenVerifier(API_KEY, API_SECRET))
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode("utf-8")
        try:
            event = self._verifier.receive(body, request.headers.get("Authorization", ""))
        except Exception as exc:  # recorded and asserted on by the tests
            self.errors.append(exc)
            return web.Response(status=401)
        rec = Received(body, dict(request.headers), event, time.monotonic())
        self.requests.append(rec)
        if self.respond is not None:
            resp = await self.respond(rec, len(self.requests))
            if resp is not None:
                return resp
        return web.Response(text="ok")

    def names(self, room_name: str | None = None) -> list[str]:
        """Participant identities received, optionally for one room, in arrival order."""
        return [r.event.participant.identity for r in self.requests if room_name in (None, r.event.room.name)]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()
    assert rec.errors == []


@pytest.fixture
async def make_notifier(receiver: Receiver) -> AsyncIterator[Callable[..., WebhookNotifier]]:
    """Builds notifiers (tiny backoff by default) and closes them before the receiver stops."""
    made: list[WebhookNotifier] = []

    def make(urls: list[str] | None = None, **kw: Any) -> WebhookNotifier:
        kw.setdefault("backoff_min", 0.01)
        kw.setdefault("backoff_max", 0.05)
        n = WebhookNotifier(urls if urls is not None else [receiver.url], API_KEY, API_SECRET, **kw)
        made.append(n)
        return n

    yield make
    receiver.gate.set()
    for n in made:
        await n.close(timeout=1.0)


# ---- events and encoding ------------------------------------------------------------------


def test_builders_set_name_id_and_created_at() -> None:
    r, p, t = room(), participant(), track()
    built = {
        "room_started": events.room_started(r),
        "room_finished": events.room_finished(r),
        "participant_joined": events.participant_joined(r, p),
        "participant_left": events.participant_left(r, p),
        "participant_connection_aborted": events.participant_connection_aborted(r, p),
        "track_published": events.track_published(r, p, t),
        "track_unpublished": events.track_unpublished(r, p, t),
    }
    ids = set()
    for name, ev in built.items():
        assert ev.event == name
        assert ev.id.startswith("EV_") and len(ev.id) == 15
        assert abs(ev.created_at - time.time()) < 5
        assert ev.room.name == "room-a"
        ids.add(ev.id)
    assert len(ids) == len(built)
    assert built["participant_left"].participant == p
    assert built["track_unpublished"].track == t


def test_builders_copy_their_inputs() -> None:
    r = room(num_participants=1)
    ev = events.room_started(r)
    r.num_participants = 7
    assert ev.room.num_participants == 1


def test_track_events_reduce_room_and_participant() -> None:
    r = room(empty_timeout=30, metadata="m", num_participants=2, creation_time=1700000000)
    p = participant(name="Alice", metadata="x", joined_at=1700000001, state=models.ParticipantInfo.State.ACTIVE)
    t = track()
    for ev in (events.track_published(r, p, t), events.track_unpublished(r, p, t)):
        assert ev.room == models.Room(sid=r.sid, name=r.name)
        assert ev.participant == models.ParticipantInfo(sid=p.sid, identity=p.identity)
        assert ev.track == t
        doc = json.loads(events.encode(ev))
        assert set(doc["room"]) == {"sid", "name"}
        assert set(doc["participant"]) == {"sid", "identity"}


def _keys(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys(v)}
    return set()


def test_encode_is_compact_camel_case_protojson() -> None:
    r = room("salle-é", empty_timeout=300, creation_time=1700000000)
    p = participant(joined_at=1700000001, state=models.ParticipantInfo.State.ACTIVE)
    ev = events.participant_joined(r, p)
    body = events.encode(ev)
    assert isinstance(body, bytes)
    text = body.decode("utf-8")
    assert "salle-é" in text and ": " not in text and "\n" not in text
    doc = json.loads(text)
    assert doc["createdAt"] == str(ev.created_at)  # int64 as a string
    assert doc["participant"]["joinedAt"] == "1700000001"
    assert doc["participant"]["state"] == "ACTIVE"  # enum as its name
    assert doc["room"]["emptyTimeout"] == 300
    assert not any("_" in k for k in _keys(doc))
    assert "numParticipants" not in doc["room"]  # zero values omitted
    assert "numDropped" not in doc


def test_resource_key_precedence() -> None:
    assert resource_key(joined("r1", "alice")) == "r1"
    assert resource_key(WebhookEvent(participant=participant("bob"), track=track("TR_x"))) == "bob"
    assert resource_key(WebhookEvent(track=track("TR_x"))) == "TR_x"
    assert resource_key(WebhookEvent()) == ""


def test_sign_body_claims() -> None:
    body = b'{"event":"room_started"}'
    token = sign_body(body, API_KEY, API_SECRET)
    claims = jwt.decode(token, API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    assert set(claims) == {"iss", "nbf", "iat", "exp", "sha256"}
    assert claims["exp"] - claims["iat"] == 300
    assert lkapi.TokenVerifier(API_KEY, API_SECRET).verify(token).sha256 == claims["sha256"]


# ---- delivery -----------------------------------------------------------------------------


async def test_delivered_events_verify_and_round_trip(receiver: Receiver, make_notifier) -> None:
    n = make_notifier()
    r = room(empty_timeout=300, creation_time=int(time.time()))
    p = participant(joined_at=int(time.time()), state=models.ParticipantInfo.State.ACTIVE)
    t = track("TR_round")
    sent = [
        events.room_started(r),
        events.participant_joined(r, p),
        events.track_published(r, p, t),
        events.track_unpublished(r, p, t),
        events.participant_left(r, p),
        events.participant_connection_aborted(r, participant("bob")),
        events.room_finished(r),
    ]
    for ev in sent:
        n.notify(ev)
    await wait_until(lambda: len(receiver.requests) == len(sent))

    assert [rec.event for rec in receiver.requests] == sent  # same room: same order, exact round trip
    for rec in receiver.requests:
        ev = rec.event
        assert ev.id.startswith("EV_") and abs(ev.created_at - time.time()) < 5
        assert ev.room.name == "room-a"
        assert rec.headers["Content-Type"] == "application/webhook+json"
        assert rec.headers["User-Agent"] == "LiveKit"
        assert not rec.headers["Authorization"].startswith("Bearer")
        claims = jwt.decode(rec.headers["Authorization"], API_SECRET, algorithms=["HS256"], issuer=API_KEY)
        assert "sub" not in claims and "video" not in claims
        doc = json.loads(rec.body)
        assert "createdAt" in doc and "created_at" not in doc
    assert receiver.requests[2].event.track.sid == "TR_round"
    assert receiver.requests[1].event.participant.identity == "alice"
    assert '"joinedAt"' in receiver.requests[1].body
    # the receiver records a request before the notifier reads its response
    await wait_until(lambda: n.stats["sent"] == len(sent))
    assert n.stats == {"queued": 0, "sent": 7, "failed": 0, "dropped": 0, "retries": 0}


async def test_each_room_is_delivered_in_order(receiver: Receiver, make_notifier) -> None:
    n = make_notifier()
    rooms = ["r1", "r2", "r3"]
    for i in range(50):
        for name in rooms:
            n.notify(joined(name, f"{name}-{i}"))
    await wait_until(lambda: len(receiver.requests) == 150)
    for name in rooms:
        assert receiver.names(name) == [f"{name}-{i}" for i in range(50)]
    await wait_until(lambda: n.stats["sent"] == 150)  # counted once each response is read


async def test_retries_500_then_succeeds(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> web.Response | None:
        return web.Response(status=500) if count <= 2 else None

    receiver.respond = respond
    n = make_notifier()
    n.notify(joined("r1", "alice"))
    await wait_until(lambda: n.stats["sent"] == 1)
    assert len(receiver.requests) == 3
    assert len({rec.event.id for rec in receiver.requests}) == 1
    assert n.stats == {"queued": 0, "sent": 1, "failed": 0, "dropped": 0, "retries": 2}


async def test_retry_after_is_honoured(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> web.Response | None:
        return web.Response(status=503, headers={"Retry-After": "0"}) if count == 1 else None

    receiver.respond = respond
    n = make_notifier(backoff_min=20.0, backoff_max=30.0)  # without Retry-After the retry would wait 20 s
    n.notify(joined("r1", "alice"))
    await wait_until(lambda: n.stats["sent"] == 1, timeout=3.0)
    assert n.stats["retries"] == 1


async def test_gives_up_after_max_retries(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> web.Response:
        return web.Response(status=502)

    receiver.respond = respond
    n = make_notifier(max_retries=3)
    n.notify(joined("r1", "alice"))
    await wait_until(lambda: n.stats["failed"] == 1)
    assert len(receiver.requests) == 4
    assert n.stats == {"queued": 0, "sent": 0, "failed": 1, "dropped": 0, "retries": 3}


@pytest.mark.parametrize("status", [501, 400, 404, 302])
async def test_final_statuses_are_not_retried(receiver: Receiver, make_notifier, status: int) -> None:
    async def respond(rec: Received, count: int) -> web.Response:
        return web.Response(status=status, headers={"Location": receiver.url})

    receiver.respond = respond
    n = make_notifier()
    n.notify(joined("r1", "alice"))
    await wait_until(lambda: n.stats["failed"] == 1)
    await asyncio.sleep(0.1)  # longer than any backoff: a retry would show up here
    assert len(receiver.requests) == 1
    assert n.stats["retries"] == 0 and n.stats["sent"] == 0


async def test_slow_room_does_not_block_others_and_notify_returns_at_once(
    receiver: Receiver, make_notifier
) -> None:
    async def respond(rec: Received, count: int) -> None:
        if rec.event.room.name == "slow":
            await receiver.gate.wait()

    receiver.respond = respond
    n = make_notifier(request_timeout=WAIT * 2)

    start = time.monotonic()
    for i in range(100):
        n.notify(joined("slow", f"s{i}"))
    elapsed = time.monotonic() - start
    assert receiver.requests == []  # notify never awaited: nothing could be delivered yet
    assert elapsed < 1.0
    assert n.stats["queued"] == 100

    await wait_until(lambda: len(receiver.names("slow")) == 1)  # first one is stuck in flight
    for i in range(5):
        n.notify(joined("fast", f"f{i}"))
    await wait_until(lambda: len(receiver.names("fast")) == 5)
    assert receiver.names("slow") == ["s0"]

    receiver.gate.set()
    await wait_until(lambda: len(receiver.names("slow")) == 100)
    assert receiver.names("slow") == [f"s{i}" for i in range(100)]


async def test_request_timeout_counts_as_retryable(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> None:
        await receiver.gate.wait()

    receiver.respond = respond
    n = make_notifier(request_timeout=0.2, max_retries=1)
    n.notify(joined("r1", "alice"))
    await wait_until(lambda: n.stats["failed"] == 1)
    assert len(receiver.requests) == 2
    assert n.stats["retries"] == 1


async def test_dead_url_fails_without_hurting_other_urls(receiver: Receiver, make_notifier) -> None:
    dead = f"http://127.0.0.1:{free_closed_port()}/hook"
    n = make_notifier([dead, receiver.url], max_retries=2)
    for i in range(3):
        n.notify(joined("r1", f"p{i}"))
    await wait_until(lambda: n.stats["failed"] == 3 and n.stats["sent"] == 3)
    assert receiver.names() == ["p0", "p1", "p2"]
    assert n.stats["retries"] == 6


async def test_full_queue_drops_and_counts(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> None:
        await receiver.gate.wait()

    receiver.respond = respond
    n = make_notifier(max_depth=5, request_timeout=WAIT * 2)
    for i in range(8):
        n.notify(joined("r1", f"p{i}"))
    assert n.stats["queued"] == 5 and n.stats["dropped"] == 3

    await wait_until(lambda: len(receiver.requests) == 1)  # p0 in flight, 4 waiting
    for i in range(8, 11):
        n.notify(joined("r1", f"p{i}"))
    assert n.stats["queued"] == 5 and n.stats["dropped"] == 5

    receiver.gate.set()
    await wait_until(lambda: n.stats["sent"] == 6)
    assert receiver.names() == ["p0", "p1", "p2", "p3", "p4", "p8"]
    assert n.stats["queued"] == 0


async def test_events_older_than_max_age_are_dropped(receiver: Receiver, make_notifier) -> None:
    release = asyncio.Event()

    async def respond(rec: Received, count: int) -> None:
        if count == 1:
            await asyncio.wait_for(release.wait(), WAIT)

    receiver.respond = respond
    n = make_notifier(max_age=0.2)
    n.notify(joined("r1", "first"))
    await wait_until(lambda: len(receiver.requests) == 1)
    for i in range(3):
        n.notify(joined("r1", f"stale{i}"))
    n.notify(joined("r2", "other-room"))  # its own queue: delivered right away
    await wait_until(lambda: "other-room" in receiver.names())
    await asyncio.sleep(0.3)
    release.set()
    await wait_until(lambda: n.stats["dropped"] == 3 and n.stats["sent"] == 2)
    assert n.stats["queued"] == 0
    assert receiver.names() == ["first", "other-room"]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (None, None, ["room_started", "participant_joined", "room_finished"]),
        (["room_started"], None, ["room_started"]),
        (None, ["participant_joined"], ["room_started", "room_finished"]),
        (["room_started", "participant_joined"], ["participant_joined"], ["room_started", "participant_joined"]),
        ([], [], ["room_started", "participant_joined", "room_finished"]),
    ],
)
async def test_event_filters(receiver: Receiver, make_notifier, include, exclude, expected) -> None:
    n = make_notifier(include_events=include, exclude_events=exclude)
    r = room()
    n.notify(events.room_started(r))
    n.notify(events.participant_joined(r, participant()))
    n.notify(events.room_finished(r))
    await n.close(timeout=WAIT)
    assert [rec.event.event for rec in receiver.requests] == expected
    assert n.stats["sent"] == len(expected)


async def test_close_flushes_queued_events(receiver: Receiver, make_notifier) -> None:
    n = make_notifier()
    for i in range(20):
        n.notify(joined(f"r{i % 4}", f"p{i}"))
    await n.close(timeout=WAIT)
    assert len(receiver.requests) == 20
    assert n.stats == {"queued": 0, "sent": 20, "failed": 0, "dropped": 0, "retries": 0}


async def test_close_is_bounded_and_later_notifies_drop(receiver: Receiver, make_notifier) -> None:
    async def respond(rec: Received, count: int) -> None:
        await receiver.gate.wait()

    receiver.respond = respond
    n = make_notifier(request_timeout=WAIT * 2)
    for i in range(4):
        n.notify(joined("r1", f"p{i}"))
    await wait_until(lambda: len(receiver.requests) == 1)
    start = time.monotonic()
    await n.close(timeout=0.2)
    assert time.monotonic() - start < 2.0
    assert n.stats == {"queued": 0, "sent": 0, "failed": 0, "dropped": 4, "retries": 0}
    n.notify(joined("r1", "late"))
    assert n.stats["dropped"] == 5


async def test_idle_workers_exit_and_restart(receiver: Receiver, make_notifier) -> None:
    n = make_notifier(idle_timeout=0.05)
    n.notify(joined("r1", "a"))
    await wait_until(lambda: n.stats["sent"] == 1)
    await wait_until(lambda: not n._queues)  # the worker reaped itself
    n.notify(joined("r1", "b"))
    await wait_until(lambda: n.stats["sent"] == 2)
    assert receiver.names() == ["a", "b"]


async def test_notify_from_another_thread(receiver: Receiver, make_notifier) -> None:
    n = make_notifier()
    n.notify(joined("r1", "a"))  # binds the notifier to this loop
    await asyncio.to_thread(n.notify, joined("r1", "b"))
    await wait_until(lambda: n.stats["sent"] == 2)
    assert receiver.names() == ["a", "b"]


async def test_notify_never_raises(make_notifier) -> None:
    n = make_notifier()
    n.notify(None)  # type: ignore[arg-type]
    n.notify("not an event")  # type: ignore[arg-type]
    assert n.stats == {"queued": 0, "sent": 0, "failed": 0, "dropped": 0, "retries": 0}


def test_notify_without_event_loop_drops() -> None:
    n = WebhookNotifier(["http://127.0.0.1:9/hook"], API_KEY, API_SECRET)
    n.notify(joined("r1", "a"))
    assert n.stats["dropped"] == 1


def test_no_urls_is_a_no_op() -> None:
    n = WebhookNotifier([], API_KEY, API_SECRET)
    n.notify(joined("r1", "a"))
    assert n.stats == {"queued": 0, "sent": 0, "failed": 0, "dropped": 0, "retries": 0}
