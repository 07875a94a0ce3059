"""The event loop's handler for aiortc's SCTP tasks that fail after the peer shut DTLS down."""

import asyncio

from OpenSSL import SSL

from trackyard.media.transport import quiet_sctp_teardown


class RTCSctpTransport:  # named like aiortc's: the handler recognises its tasks by qualname
    async def _send_chunk(self):
        raise SSL.Error([("SSL routines", "", "protocol is shutdown")])


async def other_work():
    raise SSL.Error([("SSL routines", "", "something else")])


async def test_sctp_send_after_shutdown_is_quiet_other_failures_are_reported():
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        quiet_sctp_teardown(loop)
        for coro in (RTCSctpTransport()._send_chunk(), other_work()):
            task = loop.create_task(coro)
            await asyncio.sleep(0)
            loop.call_exception_handler({"message": "Task exception was never retrieved",
                                         "exception": task.exception(), "future": task})
        assert [c["future"].get_coro().__qualname__ for c in reported] == ["other_work"]
    finally:
        loop.set_exception_handler(old)
