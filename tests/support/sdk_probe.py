"""Run the real `livekit` Python SDK's `Room.connect` in a process of its own.

The SDK's native FFI is built with panic=abort: one malformed server message kills the
whole Python process. Tests therefore never load `livekit.rtc` themselves; they start
this file as a script (`SdkProbe.start`), read what it prints and kill it by PID.

As a script: ``python sdk_probe.py URL TOKEN [--v0]`` (``--v0``: RoomOptions
single_peer_connection=False, i.e. dial `/rtc` directly). It prints on stdout, flushed:

    PROBE start
    PROBE connected                              Room.connect returned (then it waits)
    PROBE connect_error <seconds> <message>      Room.connect raised rtc.ConnectError (exit 3)
    PROBE error <seconds> <type>: <message>      anything else raised (exit 3)

and the FFI's log records (forwarded by the SDK to the "livekit" Python logger; debug
records only with LIVEKIT_RTC_DEBUG=1) on stderr. libwebrtc's own debug chatter is
dropped; its warnings and errors are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = Path(__file__).resolve()


# --- the test side --------------------------------------------------------------------
class SdkProbe:
    """One SDK subprocess with its stdout/stderr captured to files."""

    def __init__(self, proc: subprocess.Popen, directory: tempfile.TemporaryDirectory) -> None:
        self.proc = proc
        self._dir = directory
        self.out_path = Path(directory.name) / "stdout.txt"
        self.err_path = Path(directory.name) / "stderr.txt"

    @classmethod
    def start(cls, url: str, token: str, *, v0: bool = False) -> "SdkProbe":
        directory = tempfile.TemporaryDirectory(prefix="trackyard-sdk-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        env.update(RUST_LOG="debug", LIVEKIT_RTC_DEBUG="1", PYTHONUNBUFFERED="1")
        out = open(Path(directory.name) / "stdout.txt", "wb")
        err = open(Path(directory.name) / "stderr.txt", "wb")
        try:
            proc = subprocess.Popen([sys.executable, str(PROBE), url, token, *(["--v0"] if v0 else [])],
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        finally:
            out.close()
            err.close()
        return cls(proc, directory)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def probe_lines(self) -> list[str]:
        return [line for line in self.stdout().splitlines() if line.startswith("PROBE ")]

    def log_lines(self) -> list[str]:
        return self.stderr().splitlines()

    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int | None:
        """SIGKILL the SDK process by its PID (if still running) and reap it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        return self.proc.returncode

    def cleanup(self) -> None:
        self.kill()
        self._dir.cleanup()

    def report(self) -> str:
        """The captured output, for assertion messages."""
        return (f"--- SDK pid {self.pid}, returncode {self.proc.poll()} ---\n--- stdout ---\n{self.stdout()}"
                f"--- stderr (last 60 lines) ---\n" + "\n".join(self.log_lines()[-60:]))


# --- the SDK side (runs in the subprocess) --------------------------------------------
class _DropLibwebrtcDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and record.args and str(record.args[0]) == "libwebrtc")


async def _main(url: str, token: str, v0: bool) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropLibwebrtcDebug())
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
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
    await asyncio.Event().wait()  # stay connected until killed
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(asyncio.run(_main(args[0], args[1], "--v0" in sys.argv[1:])))
