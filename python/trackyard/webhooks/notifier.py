"""Webhook delivery: per-resource ordered queues, signed POSTs, bounded retries.

Behaviour follows LiveKit's resource URL notifier (see the reference, §4):

* each (url, resource key) pair has its own FIFO and a single worker task, so one room's events
  reach a receiver in order while different rooms (and different URLs) progress concurrently;
* a queue holding ``max_depth`` events refuses new ones, and an event that waited more than
  ``max_age`` seconds is dropped when dequeued;
* each event is POSTed with up to ``max_retries`` retries (exponential backoff, Retry-After
  honoured on 429/503) on connection errors, timeouts, 429 and 5xx other than 501.

``notify`` is synchronous, never blocks and never raises; all I/O happens in worker tasks on the
event loop ``notify`` was first called from.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import aiohttp
import jwt
from livekit.protocol.webhook import WebhookEvent

from trackyard.webhooks.events import encode

__all__ = ["WebhookNotifier", "resource_key", "sign_body"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/webhook+json"
USER_AGENT = "LiveKit"
TOKEN_TTL = 5 * 60  # seconds


def sign_body(body: bytes, api_key: str, api_secret: str, *, now: float | None = None) -> str:
    """The raw HS256 JWT LiveKit puts in ``Authorization``: iss, nbf, iat, exp (+5 min), sha256."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": api_key,
        "nbf": issued,
        "iat": issued,
        "exp": issued + TOKEN_TTL,
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode("ascii"),
    }
    return jwt.encode(claims, api_secret, algorithm="HS256")


def resource_key(event: WebhookEvent) -> str:
    """Queue key: egress id › ingress id › room name › participant identity › track sid › ""."""
    for candidate in (
        event.egress_info.egress_id,
        event.ingress_info.ingress_id,
        event.room.name,
        event.participant.identity,
        event.track.sid,
    ):
        if candidate:
            return candidate
    return ""


def _retryable(status: int | None) -> bool:
    """None means a connection error or timeout."""
    return status is None or status == 429 or (500 <= status < 600 and status != 501)


def _retry_after(status: int, header: str | None) -> float | None:
    """A numeric Retry-After (seconds) on 429/503, else None."""
    if status not in (429, 503) or not header:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass(slots=True)
class _Pending:
    """One encoded event waiting for delivery."""

    name: str
    body: bytes
    queued_at: float  # time.monotonic()


@dataclass(slots=True)
class _ResourceQueue:
    """FIFO of one (url, key) and the state of its worker."""

    items: deque[_Pending] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class WebhookNotifier:
    """Delivers webhook events to every configured URL (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        api_key: str,
        api_secret: str,
        *,
        max_depth: int = 200,
        max_age: float = 30.0,
        max_retries: int = 4,
        backoff_min: float = 1.0,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
        idle_timeout: float = 300.0,
    ) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._urls = list(dict.fromkeys(urls))  # de-duplicated, order kept
        self._api_key = api_key
        self._api_secret = api_secret
        self._max_depth = max_depth
        self._max_age = max_age
        self._max_retries = max_retries
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._include = frozenset(include_events or ())
        self._exclude = frozenset(exclude_events or ())
        self._idle_timeout = idle_timeout

        self._queues: dict[tuple[str, str], _ResourceQueue] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._queued = 0
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._retries = 0

    # ---- public -------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: queued (waiting now), sent, failed (gave up), dropped (full/old/closed), retries."""
        return {
            "queued": self._queued,
            "sent": self._sent,
            "failed": self._failed,
            "dropped": self._dropped,
            "retries": self._retries,
        }

    def wants(self, name: str) -> bool:
        """Event filter: a non-empty include list wins; else the exclude list; else everything."""
        if self._include:
            return name in self._include
        return name not in self._exclude

    def notify(self, event: WebhookEvent) -> None:
        """Queue ``event`` for every URL. Never blocks, never raises.

        Call it from the event loop thread; a call from another thread is handed over to the
        loop the notifier already runs on (or dropped if there is none).
        """
        try:
            if not self._urls or not self.wants(event.event):
                return
            pending = (event.event, encode(event), resource_key(event), time.monotonic())
        except Exception:
            log.exception("webhook: cannot encode event %r", getattr(event, "event", "?"))
            return
        try:
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not None and self._loop in (None, running):
                self._loop = running
                self._enqueue(*pending)
            elif running is None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._enqueue, *pending)
            else:
                self._drop(len(self._urls), pending[0], "no usable event loop")
        except Exception:
            log.exception("webhook: cannot queue event %s", pending[0])

    async def close(self, timeout: float = 5.0) -> None:
        """Flush queued events for up to ``timeout`` seconds, then cancel workers and close HTTP.

        Events still queued or in flight afterwards count as dropped; later ``notify`` calls drop.
        """
        self._closing = True
        for queue in self._queues.values():
            queue.wake.set()
        tasks = [q.task for q in self._queues.values() if q.task is not None and not q.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for key, queue in list(self._queues.items()):
            if queue.items:
                self._queued -= len(queue.items)
                self._drop(len(queue.items), queue.items[0].name, f"notifier closed before delivery to {key[0]}")
                queue.items.clear()
        self._queues.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- queueing -------------------------------------------------------------------------

    def _drop(self, count: int, name: str, why: str) -> None:
        self._dropped += count
        log.warning("webhook: dropped %d %s event(s): %s", count, name, why)

    def _enqueue(self, name: str, body: bytes, key: str, queued_at: float) -> None:
        """Append to each URL's queue for ``key``; runs on the loop thread."""
        if self._closing:
            self._drop(len(self._urls), name, "notifier closed")
            return
        for url in self._urls:
            queue = self._queues.get((url, key))
            if queue is None:
                queue = self._queues[(url, key)] = _ResourceQueue()
            if len(queue.items) >= self._max_depth:
                self._drop(1, name, f"queue for {key!r} at {url} is full")
                continue
            queue.items.append(_Pending(name, body, queued_at))
            self._queued += 1
            queue.wake.set()
            if queue.task is None:
                queue.task = asyncio.get_running_loop().create_task(
                    self._worker(url, key, queue), name=f"webhook {url} {key}"
                )

    async def _worker(self, url: str, key: str, queue: _ResourceQueue) -> None:
        """Deliver ``queue`` in order; exit when idle for ``idle_timeout`` or when closing."""
        try:
            while True:
                if not queue.items:
                    if self._closing:
                        return
                    queue.wake.clear()
                    try:
                        async with asyncio.timeout(self._idle_timeout):
                            await queue.wake.wait()
                    except TimeoutError:
                        if not queue.items:
                            return
                    continue
                item = queue.items.popleft()
                self._queued -= 1
                age = time.monotonic() - item.queued_at
                if age > self._max_age:
                    self._drop(1, item.name, f"{age:.1f}s old for {key!r} at {url}")
                    continue
                try:
                    await self._deliver(url, item)
                except asyncio.CancelledError:
                    self._drop(1, item.name, "cancelled in flight")
                    raise
                except Exception:  # defensive: a bug here must not stop the queue
                    self._failed += 1
                    log.exception("webhook: delivery of %s to %s crashed", item.name, url)
        finally:
            if self._queues.get((url, key)) is queue and (not queue.items or not self._closing):
                if queue.items:  # unexpected exit with work left: restart on the next notify
                    queue.task = None
                else:
                    del self._queues[(url, key)]

    # ---- HTTP -------------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Delay before retry number ``attempt`` (0-based); Retry-After is capped at backoff_max."""
        if retry_after is not None:
            return min(retry_after, self._backoff_max)
        return min(self._backoff_min * (2**attempt), self._backoff_max)

    async def _deliver(self, url: str, item: _Pending) -> None:
        """POST with retries; counts the outcome in the stats."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                status, retry_after_header = await self._post(url, item.body)
                retry_after = _retry_after(status, retry_after_header)
                reason = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status, reason = None, f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                self._sent += 1
                return
            if not _retryable(status) or attempt >= self._max_retries:
                self._failed += 1
                log.warning("webhook: %s to %s failed after %d attempt(s): %s", item.name, url, attempt + 1, reason)
                return
            delay = self._backoff(attempt, retry_after)
            attempt += 1
            self._retries += 1
            log.debug("webhook: %s to %s: %s, retry %d in %.2fs", item.name, url, reason, attempt, delay)
            await asyncio.sleep(delay)

    async def _post(self, url: str, body: bytes) -> tuple[int, str | None]:
        """One signed POST; returns (status, Retry-After header)."""
        if self._session is None or self._session.closed:
            # limit=0: a slow receiver must not starve other queues of connections.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        headers = {
            "Authorization": sign_body(body, self._api_key, self._api_secret),
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
        }
        async with self._session.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
        ) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")
