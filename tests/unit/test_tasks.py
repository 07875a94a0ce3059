"""cancel_and_wait: a running task is cancelled and awaited; a failed one raises its error."""

import asyncio

import pytest

from trackyard.tasks import cancel_and_wait


async def test_running_task_is_cancelled_and_awaited():
    task = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to do


async def test_a_task_that_already_failed_raises_its_error():
    async def fail():
        raise ValueError("boom")
    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)
