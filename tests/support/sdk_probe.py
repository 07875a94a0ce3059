"""Run the real `livekit` Python SDK's `Room.connect` in its own process.

The SDK's native FFI is built with panic=abort: a malformed server message kills the
whole process. Tests therefore never load the SDK themselves; they run this script as a
subprocess (see `start_probe`), read the lines it prints and kill it by PID.

    python sdk_probe.py URL TOKEN [--v0]

Prints, one line each (stdout, flushed):
    PROBE start
    PROBE connected                          Room.connect returned
    PROBE connect_error <elapsed_s> <message>  Room.connect raised ConnectError
    PROBE error <elapsed_s> <type>: <message>  anything else
and then stays alive (for connected) or exits 3 (for errors). The FFI's own log goes to
stderr at the level given by RUST_LOG.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time


async def main(url: str, token: str, v0: bool) -> int:
    # the FFI forwards its log records to the "livekit" Python logger; debug records only
    # when LIVEKIT_RTC_DEBUG=1 (and the FFI's own filter is RUST_LOG)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from livekit import rtc

    options = rtc.RoomOptions(single_peer_connection=False) if v0 else rtc.RoomOptions()
    room = rtc.Room()
    print("PROBE start", flush=True)
    started = time.monotonic()
    try:
        await room.connect(url, token, options)
    except rtc.ConnectError as exc:
        print(f"PROBE connect_error {time.monotonic() - started:.2f} {exc}", flush=True)
        return 3
    except Exception as exc:  # noqa: BLE001 - reported to the test
        print(f"PROBE error {time.monotonic() - started:.2f} {type(exc).__name__}: {exc}", flush=True)
        return 3
    print("PROBE connected", flush=True)
    await asyncio.Event().wait()  # stay until killed
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(asyncio.run(main(args[0], args[1], "--v0" in sys.argv)))
