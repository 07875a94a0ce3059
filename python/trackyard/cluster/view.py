"""A live local copy of one etcd key prefix: list once, then follow a watch.

`PrefixView` keeps ``{relative key: Entry}`` current for the keys under a prefix. It lists the
prefix, watches from the revision after the listing, and applies each change. If the watch
cannot go on (etcd was unreachable when it started, the revision was compacted, etcd
cancelled it) it waits briefly and lists again; while etcd is down the copy simply keeps its
last contents, which is what lets placement answer lookups of known rooms from the cache.

Ordering rule: the view remembers the revision it is consistent at. A watch batch only
applies events newer than that, and a listing older than it is dropped, so a re-list racing
a watch (or a forced :meth:`refresh`) never moves the copy backwards. :meth:`observe` folds in
an entry learnt from a direct read or transaction the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from trackyard.cluster.store import EtcdStore, EtcdUnavailable, Entry, Event, WatchLost
from trackyard.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class PrefixView:
    def __init__(self, store: EtcdStore, prefix: str, *, name: str = "") -> None:
        self.store = store
        self.prefix = prefix
        self.name = name or prefix
        self.entries: dict[str, Entry] = {}  # key relative to `prefix`
        self.revision = 0  # the view reflects etcd at least as of this revision
        self.synced = asyncio.Event()  # set after the first successful listing
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "PrefixView":
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"etcd-view {self.name}")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.refresh()
                watch = self.store.watch_prefix(self.prefix, start_revision=self.revision + 1)
                async with contextlib.aclosing(watch):
                    async for batch in watch:
                        self._apply(batch)
                        backoff = 0.1
            except (EtcdUnavailable, WatchLost) as exc:
                logger.info("etcd view %s: %s; listing again in %.1fs", self.name, exc, backoff)
            except Exception:  # keep following etcd whatever happens; log loudly
                logger.exception("etcd view %s failed; listing again in %.1fs", self.name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # ------------------------------------------------------------ updates

    async def refresh(self) -> None:
        """List the prefix now (raises :class:`EtcdUnavailable`) and adopt it unless older."""
        entries, revision = await self.store.get_prefix(self.prefix)
        if revision < self.revision:
            return
        self.entries = {e.key[len(self.prefix):]: e for e in entries}
        self.revision = revision
        self.synced.set()
        self._notify()

    def _apply(self, batch: list[Event]) -> None:
        floor = self.revision
        for ev in batch:
            if ev.revision <= floor:
                continue
            key = ev.key[len(self.prefix):]
            if ev.kind == "delete":
                self.entries.pop(key, None)
            else:
                self.entries[key] = Entry(ev.key, ev.value, ev.lease, 0, ev.revision)
            self.revision = max(self.revision, ev.revision)
        self._notify()

    def observe(self, entry: Entry) -> None:
        """Fold in an entry read or written directly (ignored if the view is already newer)."""
        key = entry.key[len(self.prefix):]
        known = self.entries.get(key)
        if entry.mod_revision > max(self.revision, known.mod_revision if known else 0):
            self.entries[key] = entry
            self._notify()

    def forget(self, key: str, revision: int) -> None:
        """Drop ``key`` (relative) if it is not newer than ``revision`` (a read found it absent)."""
        known = self.entries.get(key)
        if known is not None and known.mod_revision <= revision:
            del self.entries[key]
            self._notify()

    # ------------------------------------------------------------ waiting

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """An event that is set at the view's next change."""
        return self._changed

    async def wait_until(self, predicate: Callable[[], object], timeout: float) -> object:
        """Wait (bounded) until ``predicate()`` is truthy, re-checking after every change."""
        return await wait_until([self], predicate, timeout)


async def wait_until(views: list[PrefixView], predicate: Callable[[], object], timeout: float) -> object:
    """Wait (bounded) until ``predicate()`` is truthy, re-checking after any view changes."""
    deadline = time.monotonic() + timeout
    while True:
        events = [v.changed() for v in views]  # taken before the check: no change is missed
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"condition on {[v.name for v in views]} not met within {timeout}s")
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
