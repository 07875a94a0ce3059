"""Background-task helpers shared by the long-running parts of a node."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Future | None) -> None:
    """Cancel `task` (if any) and wait until it has ended. Its cancellation is not an error of
    the caller's; an exception it had already ended with is raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
