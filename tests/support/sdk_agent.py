"""A scripted participant with the real `livekit` Python SDK, reporting JSON lines.

Like `sdk_probe.py`, the SDK runs in a process of its own (its FFI is built with
panic=abort) — here typically inside a `NetLab` client namespace, because libwebrtc needs
a non-loopback interface for ICE. The test starts it with `SdkAgent.start`, reads the
events it prints and kills it by PID.

As a script::

    python sdk_agent.py URL TOKEN --scenario NAME[,NAME…] --duration SECONDS [options]

Scenarios (several may run together, e.g. ``publish-audio,receive-data``):

* ``join-and-wait``    connect, report room events for --duration seconds, disconnect
* ``publish-audio``    publish a microphone track: an AudioSource playing a --freq Hz sine
* ``subscribe-audio``  for each subscribed audio track (of --from, if given) read frames
                       with rtc.AudioStream and report the dominant frequency (numpy FFT)
                       of every --window seconds after a --warmup
* ``send-data``        wait for the --wait-for identities (and for --go-file to exist, if
                       given), then publish_data --count times
                       (--data TEXT#n, reliable unless --lossy, --to ids, --topic)
* ``receive-data``     report received data packets (every scenario does; this one just
                       names the intent)
* ``publish-video``    publish a camera track from an rtc.VideoSource: --width x --height
                       at --fps, simulcast unless --no-simulcast, --codec (vp8), frames of
                       the `video_pattern.py` picture (colour bars + frame number);
                       --first-frame-after-subscribed S: first frame S seconds after the
                       first subscriber (so the stream starts with a keyframe for it)
* ``subscribe-video``  for each subscribed video track (of --from, if given) read frames
                       with rtc.VideoStream (I420) and report every --window seconds the
                       frames, their size, the decoded frame numbers and the bar check;
                       with --quality low|medium|high, set_video_quality after
                       --quality-after seconds (or once --quality-file exists)
* ``mute-cycle``       (with a publish scenario) mute the --control-track (video; SDK 1.2.1:
                       LocalVideoTrack.mute()/unmute(), the publication has none) --mute-at
                       seconds after publishing it, unmute it at --unmute-at (or once
                       --control-file's .mute / .unmute exist)
* ``unpublish-after``  (with a publish scenario) unpublish the --control-track
                       --unpublish-at seconds after publishing it (or once --control-file's
                       .unpublish exists)

Options: --connect-timeout (default 15 s; the SDK's own per-attempt limits apply inside),
--v0 (RoomOptions.single_peer_connection=False: dial /rtc), --no-auto-subscribe,
--debug (the FFI's debug records on stderr; otherwise info and above).

stdout: one JSON object per line, flushed, each with ``event``, ``t`` (seconds since the
start of the process) and ``wall`` (time.time(), to compare agents)::

    start                 {scenarios, pid}
    signal_join           {identity, sid, room, room_sid, other_participants: [identity…]}
                          (from the SDK's log of the JoinResponse: before any media)
    connected             {identity, sid, room, room_sid, remote_participants: [identity…], elapsed}
    connect_error         {error, elapsed}      connect_timeout {elapsed}
    participant_connected / participant_disconnected   {identity, sid}
    track_published / track_unpublished / track_subscribed / track_unsubscribed
                          {identity, sid, kind, source, name}
    track_muted / track_unmuted                       {identity, sid}
    local_track_published / local_track_unpublished / local_track_subscribed {sid, kind, name}
    data_received         {payload, sender, topic, kind: "reliable"|"lossy"}
    data_sent             {payload, reliable, to, topic}
    audio_published       {sid, freq}           audio_publish_done {frames, seconds}
    audio_frame_stats     {identity, track_sid, freq, rms, sample_rate, channels, frames, seconds}
    audio_stream_end      {identity, track_sid, frames}
    video_published       {sid, width, height, fps, simulcast, codec}
    video_publish_stats   {sid, frames (captured so far), layers: [{rid, width, height, fps,
                          frames_encoded, key_frames, packets_sent, retransmitted, nacks, plis,
                          firs, target_bitrate, limitation, active}]}  (libwebrtc outbound-rtp,
                          every second)
    video_publish_done    {frames, seconds}
    video_subscribed_by_first {sid}     (--first-frame-after-subscribed: the wait is over)
    video_size_changed    {identity, track_sid, width, height, counter}
    video_stats           {identity, track_sid, frames, fps, width, height, sizes, decoded
                          (frames whose number read back), bad (unreadable numbers), gaps
                          (frames skipped between decoded numbers), repeats, black, first, last,
                          bar_error (worst bar deviation 0-255 of one sampled frame, null if
                          none), rtp: {packets_received, packets_lost, nacks, plis, firs,
                          frames_decoded, frames_dropped, key_frames, freezes, width, height,
                          retransmitted}}        (every --window seconds, also with 0 frames)
    video_stream_end      {identity, track_sid, frames}
    video_quality_set     {sid, quality}
    local_muted / local_unmuted / unpublish_done {sid, kind}
    connection_state_changed {state}    reconnecting / reconnected    disconnected {reason}
                          (on a client-initiated disconnect the SDK does not always emit it)
    disconnect_done       {elapsed, state}      Room.disconnect() returned
    active_speakers_changed {speakers: [identity…]}
    error                 {where, error}
    stopped               {by: "signal"}        SIGTERM/SIGINT (then disconnect, exit)
    exit                  {code}

The process always disconnects (bounded) and prints ``exit``; SIGTERM ends it early the
same way (printing ``stopped`` first). Exit codes: 0 ok, 3 connect error, 4 connect timeout,
5 a scenario failed.
The FFI's log records go to stderr (debug records with --debug or LIVEKIT_RTC_DEBUG=1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

AGENT = Path(__file__).resolve()

EXIT_OK, EXIT_CONNECT_ERROR, EXIT_CONNECT_TIMEOUT, EXIT_SCENARIO_FAILED = 0, 3, 4, 5
AGENT_DURATION = 4.0    # default --duration of agents started by the `agents` fixture
CONNECT_TIMEOUT = 10.0  # default --connect-timeout of those agents


# --- the test side --------------------------------------------------------------------
class SdkAgent:
    """One agent process (normally inside a lab namespace) and its captured output."""

    def __init__(self, name: str, process, directory: tempfile.TemporaryDirectory) -> None:
        self.name = name
        self.process = process  # support.netns.LabProcess
        self._dir = directory
        self.out_path = Path(directory.name) / "events.jsonl"
        self.err_path = Path(directory.name) / "stderr.txt"

    @classmethod
    def start(cls, lab, ns: str, url: str, token: str, scenario: str, *, duration: float,
              name: str = "", debug: bool = False, **options: Any) -> "SdkAgent":
        """Start the agent in namespace `ns` of `lab`. `options` become command-line
        flags: freq=440 -> --freq 440, lossy=True -> --lossy, to=["b"] -> --to b."""
        directory = tempfile.TemporaryDirectory(prefix="trackyard-agent-")
        argv = [sys.executable, str(AGENT), url, token, "--scenario", scenario, "--duration", str(duration)]
        for key, value in options.items():
            flag = "--" + key.rstrip("_").replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value in (False, None):
                continue
            elif isinstance(value, (list, tuple)):
                argv += [flag, ",".join(map(str, value))]
            else:
                argv += [flag, str(value)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if debug:
            argv.append("--debug")
        out, err = Path(directory.name) / "events.jsonl", Path(directory.name) / "stderr.txt"
        process = lab.run(ns, argv, env=env, stdout=out, stderr=err)
        return cls(name or ns, process, directory)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.alive()

    def returncode(self) -> int | None:
        return self.process.returncode()

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict]:
        found = []
        for line in self.stdout().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a partly written last line, or stray output
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def first(self, name: str) -> dict | None:
        events = self.events(name)
        return events[0] if events else None

    async def wait_event(self, match: str | Callable[[dict], bool], *, timeout: float) -> dict:
        """The first event named `match` (or for which `match(event)` is true); raises
        AssertionError after `timeout` s or when the agent exits without it."""
        check = (lambda e: e.get("event") == match) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()
            for event in self.events():
                if check(event):
                    return event
            if exited:
                raise AssertionError(f"agent {self.name} exited without {match!r}\n{self.report()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {self.name}: no {match!r} within {timeout}s\n{self.report()}")
            await asyncio.sleep(0.05)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {self.name} still running after {timeout}s\n{self.report()}")
            await asyncio.sleep(0.05)
        return self.returncode()

    def kill(self) -> int | None:
        return self.process.kill()

    def cleanup(self) -> None:
        self.process.stop(timeout=3.0)
        self._dir.cleanup()

    def report(self, log_lines: int = 40) -> str:
        err = self.stderr().splitlines()
        return (f"--- agent {self.name} pid {self.pid} returncode {self.returncode()} ---\n"
                f"--- events ---\n{self.stdout()}"
                f"--- stderr (last {log_lines} lines) ---\n" + "\n".join(line[:400] for line in err[-log_lines:]))


def reports(*agents: SdkAgent) -> str:
    """Every agent's report, for assertion messages."""
    return "\n".join(a.report() for a in agents)


# --- the SDK side (runs in the subprocess) --------------------------------------------
_T0 = time.monotonic()


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "t": round(time.monotonic() - _T0, 3), "wall": round(time.time(), 3),
                       **fields}, default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_JOIN_SELF = re.compile(r'participant: Some\(ParticipantInfo \{ sid: "([^"]*)", identity: "([^"]*)"')
_JOIN_ROOM = re.compile(r'room: Some\(Room \{ sid: "([^"]*)", name: "([^"]*)"')
_JOIN_OTHER = re.compile(r'ParticipantInfo \{ sid: "([^"]*)", identity: "([^"]*)"')


class _SignalTap(logging.Handler):
    """Turns the FFI's debug record of the JoinResponse into a `signal_join` event, so a
    test sees what signaling delivered even if the peer connection never comes up."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return
        if "received JoinResponse" not in message:
            return
        own, others = message.split("other_participants:", 1) if "other_participants:" in message else (message, "")
        me, room = _JOIN_SELF.search(own), _JOIN_ROOM.search(own)
        emit("signal_join", identity=me.group(2) if me else None, sid=me.group(1) if me else None,
             room=room.group(2) if room else None, room_sid=room.group(1) if room else None,
             other_participants=[m.group(2) for m in _JOIN_OTHER.finditer(others.split("server_version:")[0])])


class _DropLibwebrtcDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and record.args and str(record.args[0]) == "libwebrtc")


def dominant_frequency(samples, sample_rate: int) -> tuple[float, float]:
    """(peak frequency in Hz with parabolic interpolation, RMS in int16 units)."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    if x.size < 16 or rms == 0.0:
        return 0.0, rms
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size)))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < k < spectrum.size - 1:
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom else 0.0
    return (k + offset) * sample_rate / x.size, rms


def _kind(track_kind) -> str:
    from livekit import rtc

    return {rtc.TrackKind.KIND_AUDIO: "audio", rtc.TrackKind.KIND_VIDEO: "video"}.get(track_kind, str(track_kind))


def _source(source) -> str:
    from livekit import rtc

    try:
        return rtc.TrackSource.Name(source)
    except ValueError:
        return str(source)


def _pub_fields(publication, participant=None) -> dict:
    fields = {"sid": publication.sid, "kind": _kind(publication.kind), "source": _source(publication.source),
              "name": publication.name}
    if participant is not None:
        fields["identity"] = participant.identity
    return fields


class Agent:
    def __init__(self, args) -> None:
        from livekit import rtc

        self.args = args
        self.rtc = rtc
        self.room = rtc.Room()
        self.tasks: set[asyncio.Task] = set()
        self.audio_tasks: list[asyncio.Task] = []
        self.local: dict[str, tuple] = {}  # kind -> (publication, track) of what we publish
        self.failed = False
        self._wire_events()

    # room events -> JSON lines
    def _wire_events(self) -> None:
        room, rtc = self.room, self.rtc

        @room.on("participant_connected")
        def _(p):
            emit("participant_connected", identity=p.identity, sid=p.sid)

        @room.on("participant_disconnected")
        def _(p):
            emit("participant_disconnected", identity=p.identity, sid=p.sid)

        @room.on("track_published")
        def _(pub, p):
            emit("track_published", **_pub_fields(pub, p))

        @room.on("track_unpublished")
        def _(pub, p):
            emit("track_unpublished", **_pub_fields(pub, p))

        @room.on("track_subscribed")
        def _(track, pub, p):
            emit("track_subscribed", **_pub_fields(pub, p))
            if "subscribe-audio" in self.args.scenarios and track.kind == rtc.TrackKind.KIND_AUDIO:
                if not self.args.from_ or p.identity in self.args.from_:
                    self.audio_tasks.append(self.spawn(self.analyse_audio(track, pub, p)))
            if "subscribe-video" in self.args.scenarios and track.kind == rtc.TrackKind.KIND_VIDEO:
                if not self.args.from_ or p.identity in self.args.from_:
                    self.spawn(self.analyse_video(track, pub, p))

        @room.on("track_unsubscribed")
        def _(track, pub, p):
            emit("track_unsubscribed", **_pub_fields(pub, p))

        @room.on("track_subscription_failed")
        def _(p, track_sid, error):
            emit("track_subscription_failed", identity=p.identity, sid=track_sid, error=str(error))

        @room.on("track_muted")
        def _(p, pub):
            emit("track_muted", identity=p.identity, sid=pub.sid)

        @room.on("track_unmuted")
        def _(p, pub):
            emit("track_unmuted", identity=p.identity, sid=pub.sid)

        @room.on("local_track_published")
        def _(pub, track):
            emit("local_track_published", sid=pub.sid, kind=_kind(pub.kind), name=pub.name)

        @room.on("local_track_unpublished")
        def _(pub):
            emit("local_track_unpublished", sid=pub.sid, kind=_kind(pub.kind), name=pub.name)

        @room.on("local_track_subscribed")
        def _(track):
            emit("local_track_subscribed", sid=track.sid, kind=_kind(track.kind), name=track.name)

        @room.on("data_received")
        def _(packet):
            emit("data_received", payload=packet.data.decode("utf-8", errors="replace"),
                 sender=packet.participant.identity if packet.participant else None, topic=packet.topic,
                 kind="reliable" if packet.kind == rtc.DataPacketKind.KIND_RELIABLE else "lossy")

        @room.on("connection_quality_changed")
        def _(participant, quality):
            from livekit.protocol import models  # the SDK's enum carries LiveKit's protocol values
            emit("connection_quality", identity=participant.identity,
                 quality=models.ConnectionQuality.Name(int(quality)))

        @room.on("active_speakers_changed")
        def _(speakers):
            emit("active_speakers_changed", speakers=[s.identity for s in speakers])

        @room.on("connection_state_changed")
        def _(state):
            emit("connection_state_changed", state=rtc.ConnectionState.Name(state))

        @room.on("reconnecting")
        def _():
            emit("reconnecting")

        @room.on("reconnected")
        def _():
            emit("reconnected")

        @room.on("disconnected")
        def _(reason):
            try:
                reason = rtc.DisconnectReason.Name(reason)
            except (ValueError, AttributeError):
                pass
            emit("disconnected", reason=str(reason))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed = True
            emit("error", where=task.get_coro().__name__, error=f"{type(task.exception()).__name__}: "
                                                                f"{task.exception()}")

    # scenarios
    async def publish_audio(self) -> None:
        import numpy as np

        rtc, a = self.rtc, self.args
        rate, step = 48000, 480  # 10 ms frames
        source = rtc.AudioSource(rate, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        pub = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        emit("audio_published", sid=pub.sid, freq=a.freq)
        self.local["audio"] = (pub, track)
        phase, frames, started = 0.0, 0, time.monotonic()
        increment = 2 * np.pi * a.freq / rate
        try:
            while True:
                # stay at most 100 ms ahead of the wall clock
                ahead = frames * step / rate - (time.monotonic() - started)
                if ahead > 0.1:
                    await asyncio.sleep(ahead - 0.1)
                t = phase + increment * np.arange(step)
                phase = float((phase + increment * step) % (2 * np.pi))
                samples = (np.sin(t) * a.amplitude * 32767).astype(np.int16)
                frame = rtc.AudioFrame(samples.tobytes(), rate, 1, step)
                await source.capture_frame(frame)
                frames += 1
        finally:
            emit("audio_publish_done", frames=frames, seconds=round(frames * step / rate, 3))

    async def analyse_audio(self, track, pub, participant) -> None:
        import numpy as np

        a, rate = self.args, 48000
        stream = self.rtc.AudioStream(track, sample_rate=rate, num_channels=1)
        window = int(a.window * rate)
        skip = int(a.warmup * rate)
        buffered: list = []
        have, frames_total = 0, 0
        try:
            async for ev in stream:
                frames_total += 1
                data = np.frombuffer(ev.frame.data, dtype=np.int16)
                if ev.frame.num_channels > 1:
                    data = data[::ev.frame.num_channels]
                if skip > 0:
                    cut = min(skip, data.size)
                    skip -= cut
                    data = data[cut:]
                if data.size == 0:
                    continue
                buffered.append(data)
                have += data.size
                if have >= window:
                    x = np.concatenate(buffered)
                    buffered, have = [x[window:]], x.size - window
                    freq, rms = dominant_frequency(x[:window], rate)
                    emit("audio_frame_stats", identity=participant.identity, track_sid=pub.sid,
                         freq=round(freq, 2), rms=round(rms, 1), sample_rate=ev.frame.sample_rate,
                         channels=ev.frame.num_channels, frames=frames_total, seconds=a.window)
        finally:
            emit("audio_stream_end", identity=participant.identity, track_sid=pub.sid, frames=frames_total)
            await stream.aclose()

    async def publish_video(self) -> None:
        from video_pattern import PatternWriter

        rtc, a = self.rtc, self.args
        source = rtc.VideoSource(a.width, a.height)
        track = rtc.LocalVideoTrack.create_video_track("cam", source)
        codec = getattr(rtc.VideoCodec, a.codec.upper())
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=not a.no_simulcast,
                                          video_codec=codec)
        # a loaded 2-core machine must not make libwebrtc scale the layers down
        options.degradation_preference = rtc.DegradationPreference.MAINTAIN_RESOLUTION
        pub = await self.room.local_participant.publish_track(track, options)
        emit("video_published", sid=pub.sid, width=a.width, height=a.height, fps=a.fps,
             simulcast=not a.no_simulcast, codec=a.codec)
        self.local["video"] = (pub, track)
        if a.first_frame_after_subscribed is not None:
            # start the stream (and so its first keyframe) only once a subscriber is there
            try:
                await asyncio.wait_for(pub.wait_for_subscription(), a.duration)
            except asyncio.TimeoutError:
                pass
            emit("video_subscribed_by_first", sid=pub.sid)
            await asyncio.sleep(a.first_frame_after_subscribed)
        writer = PatternWriter(a.width, a.height)
        frames, started = 0, time.monotonic()
        stats = self.spawn(self._publish_stats(pub, track, lambda: frames))
        try:
            while True:
                due = started + frames / a.fps
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > 1.0:  # fell far behind (CPU): skip ahead, keep numbering
                    frames = int((now - started) * a.fps)
                pixels = writer.draw(frames)
                frame = rtc.VideoFrame(a.width, a.height, rtc.VideoBufferType.RGBA, pixels.tobytes())
                source.capture_frame(frame, timestamp_us=int((time.monotonic() - started) * 1e6))
                frames += 1
        finally:
            stats.cancel()
            emit("video_publish_done", frames=frames, seconds=round(time.monotonic() - started, 3))

    async def _publish_stats(self, pub, track, frames: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(1.0)
            layers = []
            try:
                stats = await asyncio.wait_for(track.get_stats(), 2)
            except Exception:  # noqa: BLE001 - informational only
                stats = []
            for s in stats:
                if s.WhichOneof("stats") != "outbound_rtp":
                    continue
                o = s.outbound_rtp
                layers.append({"rid": o.outbound.rid, "width": o.outbound.frame_width,
                               "height": o.outbound.frame_height, "fps": round(o.outbound.frames_per_second, 1),
                               "frames_encoded": o.outbound.frames_encoded, "key_frames": o.outbound.key_frames_encoded,
                               "packets_sent": o.sent.packets_sent,
                               "retransmitted": o.outbound.retransmitted_packets_sent,
                               "nacks": o.outbound.nack_count, "plis": o.outbound.pli_count,
                               "firs": o.outbound.fir_count, "target_bitrate": int(o.outbound.target_bitrate),
                               "limitation": o.outbound.quality_limitation_reason,
                               "active": o.outbound.active})
            emit("video_publish_stats", sid=pub.sid, frames=frames(), layers=sorted(layers, key=lambda l: l["rid"]))

    async def control_track(self) -> None:
        """mute-cycle / unpublish-after on the --control-track, timed from its publication."""
        a = self.args
        while a.control_track not in self.local:
            await asyncio.sleep(0.02)
        pub, track = self.local[a.control_track]
        published = time.monotonic()
        plan = []
        if "mute-cycle" in a.scenarios:
            plan += [(a.mute_at, "mute"), (a.unmute_at, "unmute")]
        if "unpublish-after" in a.scenarios:
            plan.append((a.unpublish_at, "unpublish"))
        for at, action in sorted(plan):
            if a.control_file:  # the test says when: it creates <control-file>.<action>
                while not os.path.exists(f"{a.control_file}.{action}"):
                    await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(max(0.0, published + at - time.monotonic()))
            if action == "mute":
                track.mute()
                emit("local_muted", sid=pub.sid, kind=a.control_track)
            elif action == "unmute":
                track.unmute()
                emit("local_unmuted", sid=pub.sid, kind=a.control_track)
            else:
                await asyncio.wait_for(self.room.local_participant.unpublish_track(pub.sid), 10)
                emit("unpublish_done", sid=pub.sid, kind=a.control_track)

    async def analyse_video(self, track, pub, participant) -> None:
        import numpy as np
        from video_pattern import check_bars, counter_gap, read_counter

        rtc, a = self.rtc, self.args
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
        fields = {"identity": participant.identity, "track_sid": pub.sid}
        window = {"frames": 0, "sizes": set(), "decoded": 0, "bad": 0, "gaps": 0, "repeats": 0, "black": 0,
                  "first": None, "last": None, "bar_error": None, "width": 0, "height": 0}
        state = {"total": 0, "size": None, "previous": None, "sample": True}

        async def ticker() -> None:
            nonlocal window
            while True:
                await asyncio.sleep(a.window)
                w, window = window, {**window, "frames": 0, "sizes": set(), "decoded": 0, "bad": 0, "gaps": 0,
                                     "repeats": 0, "black": 0, "first": None, "last": None, "bar_error": None}
                state["sample"] = True
                rtp = {}
                try:
                    for s in await asyncio.wait_for(track.get_stats(), 2):
                        if s.WhichOneof("stats") == "inbound_rtp":
                            i = s.inbound_rtp
                            rtp = {"packets_received": i.received.packets_received,
                                   "packets_lost": i.received.packets_lost, "nacks": i.inbound.nack_count,
                                   "plis": i.inbound.pli_count, "firs": i.inbound.fir_count,
                                   "frames_decoded": i.inbound.frames_decoded,
                                   "frames_dropped": i.inbound.frames_dropped,
                                   "key_frames": i.inbound.key_frames_decoded, "freezes": i.inbound.freeze_count,
                                   "width": i.inbound.frame_width, "height": i.inbound.frame_height,
                                   "retransmitted": i.inbound.retransmitted_packets_received}
                except Exception:  # noqa: BLE001 - informational only
                    pass
                emit("video_stats", **fields, frames=w["frames"], fps=round(w["frames"] / a.window, 1),
                     width=w["width"], height=w["height"], sizes=sorted(f"{x}x{y}" for x, y in w["sizes"]),
                     decoded=w["decoded"], bad=w["bad"], gaps=w["gaps"], repeats=w["repeats"], black=w["black"],
                     first=w["first"], last=w["last"],
                     bar_error=None if w["bar_error"] is None else round(w["bar_error"], 1), rtp=rtp)

        async def quality() -> None:
            if a.quality_file:  # the test says when
                while not os.path.exists(a.quality_file):
                    await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(a.quality_after)
            value = {"low": rtc.VideoQuality.VIDEO_QUALITY_LOW, "medium": rtc.VideoQuality.VIDEO_QUALITY_MEDIUM,
                     "high": rtc.VideoQuality.VIDEO_QUALITY_HIGH}[a.quality]
            pub.set_video_quality(value)
            emit("video_quality_set", sid=pub.sid, quality=a.quality)

        tick = self.spawn(ticker())
        if a.quality:
            self.spawn(quality())
        try:
            async for ev in stream:
                frame = ev.frame
                w, h = frame.width, frame.height
                state["total"] += 1
                window["frames"] += 1
                window["sizes"].add((w, h))
                window["width"], window["height"] = w, h
                luma = np.frombuffer(frame.get_plane(0), dtype=np.uint8)[:w * h].reshape(h, w)
                counter, valid = read_counter(luma)
                if (w, h) != state["size"]:
                    state["size"] = (w, h)
                    emit("video_size_changed", **fields, width=w, height=h, counter=counter if valid else None)
                if luma[::8, ::8].mean() < 24:
                    window["black"] += 1
                if not valid:
                    window["bad"] += 1
                    continue
                window["decoded"] += 1
                if counter == state["previous"]:
                    window["repeats"] += 1
                window["gaps"] += counter_gap(state["previous"], counter)
                state["previous"] = counter
                window["first"] = counter if window["first"] is None else window["first"]
                window["last"] = counter
                if state["sample"]:  # one full colour check per window
                    state["sample"] = False
                    rgba = frame.convert(rtc.VideoBufferType.RGBA)
                    pixels = np.frombuffer(rgba.data, dtype=np.uint8)[:w * h * 4].reshape(h, w, 4)
                    window["bar_error"] = check_bars(pixels)
        finally:
            tick.cancel()
            emit("video_stream_end", **fields, frames=state["total"])
            await stream.aclose()

    async def send_data(self) -> None:
        a, room = self.args, self.room
        wanted = set(a.wait_for)
        while not wanted <= {p.identity for p in room.remote_participants.values()}:
            await asyncio.sleep(0.05)
        if a.go_file:  # the test says when every receiver is connected
            while not os.path.exists(a.go_file):
                await asyncio.sleep(0.05)
        for n in range(a.count):
            payload = f"{a.data}#{n}"
            await room.local_participant.publish_data(payload.encode(), reliable=not a.lossy,
                                                      destination_identities=list(a.to), topic=a.topic)
            emit("data_sent", payload=payload, reliable=not a.lossy, to=list(a.to), topic=a.topic)
            await asyncio.sleep(a.interval)

    async def run(self) -> int:
        rtc, a = self.rtc, self.args
        options = rtc.RoomOptions(auto_subscribe=not a.no_auto_subscribe)
        if a.v0:
            options.single_peer_connection = False
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.room.connect(a.url, a.token, options), a.connect_timeout)
        except asyncio.TimeoutError:
            emit("connect_timeout", elapsed=round(time.monotonic() - started, 3))
            return EXIT_CONNECT_TIMEOUT
        except rtc.ConnectError as exc:
            emit("connect_error", error=str(exc), elapsed=round(time.monotonic() - started, 3))
            return EXIT_CONNECT_ERROR
        lp = self.room.local_participant
        emit("connected", identity=lp.identity, sid=lp.sid, room=self.room.name,
             room_sid=await self._room_sid(), elapsed=round(time.monotonic() - started, 3),
             remote_participants=sorted(p.identity for p in self.room.remote_participants.values()))
        try:
            if "publish-audio" in a.scenarios:
                self.spawn(self.publish_audio())
            if "publish-video" in a.scenarios:
                self.spawn(self.publish_video())
            if {"mute-cycle", "unpublish-after"} & a.scenarios:
                self.spawn(self.control_track())
            if "send-data" in a.scenarios:
                self.spawn(self.send_data())
            await asyncio.sleep(a.duration)
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=3)
            try:
                t = time.monotonic()
                await asyncio.wait_for(self.room.disconnect(), 5)
                emit("disconnect_done", elapsed=round(time.monotonic() - t, 3),
                     state=rtc.ConnectionState.Name(self.room.connection_state))
            except Exception as exc:  # noqa: BLE001 - reported, exit anyway
                emit("error", where="disconnect", error=f"{type(exc).__name__}: {exc}")
        return EXIT_SCENARIO_FAILED if self.failed else EXIT_OK

    async def _room_sid(self) -> str:
        try:
            return await asyncio.wait_for(self.room.sid, 2)
        except Exception:  # noqa: BLE001 - informational only
            return ""


def _parse(argv: list[str]):
    import argparse

    def ids(text: str) -> list[str]:
        return [i for i in text.split(",") if i]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--scenario", required=True, type=ids)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to stay after connecting")
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument("--v0", action="store_true")
    parser.add_argument("--no-auto-subscribe", action="store_true")
    parser.add_argument("--freq", type=float, default=440.0)
    parser.add_argument("--amplitude", type=float, default=0.5)
    parser.add_argument("--from", dest="from_", type=ids, default=[])
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--data", default="hello")
    parser.add_argument("--lossy", action="store_true")
    parser.add_argument("--to", type=ids, default=[])
    parser.add_argument("--topic", default="")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--wait-for", type=ids, default=[])
    parser.add_argument("--go-file", default="", help="send-data: also wait until this file exists")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--codec", default="vp8", choices=["vp8", "h264", "vp9", "av1"])
    parser.add_argument("--no-simulcast", action="store_true")
    parser.add_argument("--first-frame-after-subscribed", type=float, default=None,
                        help="capture the first frame this many seconds after the first subscriber")
    parser.add_argument("--quality", choices=["low", "medium", "high"], default=None)
    parser.add_argument("--quality-after", type=float, default=3.0,
                        help="seconds after the video track is subscribed")
    parser.add_argument("--quality-file", default="",
                        help="set the --quality once this file exists (instead of --quality-after)")
    parser.add_argument("--control-track", choices=["audio", "video"], default="video")
    parser.add_argument("--control-file", default="",
                        help="mute/unmute/unpublish once FILE.mute / FILE.unmute / FILE.unpublish exists "
                             "(instead of the --*-at times)")
    parser.add_argument("--mute-at", type=float, default=3.0, help="seconds after publishing")
    parser.add_argument("--unmute-at", type=float, default=6.0, help="seconds after publishing")
    parser.add_argument("--unpublish-at", type=float, default=3.0, help="seconds after publishing")
    parser.add_argument("--debug", action="store_true", help="FFI debug records on stderr")
    args = parser.parse_args(argv)
    known = {"join-and-wait", "publish-audio", "subscribe-audio", "send-data", "receive-data",
             "publish-video", "subscribe-video", "mute-cycle", "unpublish-after"}
    unknown = set(args.scenario) - known
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(known)}")
    args.scenarios = set(args.scenario)
    return args


async def _main(args) -> int:
    # the SDK forwards the FFI's debug records only with LIVEKIT_RTC_DEBUG set (it reads the
    # variable per record); the signal tap needs them, stderr gets them only with --debug
    debug = args.debug or os.environ.get("LIVEKIT_RTC_DEBUG", "").lower() in ("1", "true")
    os.environ["LIVEKIT_RTC_DEBUG"] = "1"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropLibwebrtcDebug())
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    logging.getLogger("livekit").addHandler(_SignalTap(logging.DEBUG))
    emit("start", scenarios=sorted(args.scenarios), pid=os.getpid())
    agent = Agent(args)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        return await agent.run()
    except asyncio.CancelledError:  # SIGTERM/SIGINT: the test has what it needs
        emit("stopped", by="signal")
        return EXIT_SCENARIO_FAILED if agent.failed else EXIT_OK


def main() -> None:
    args = _parse(sys.argv[1:])
    code = 1
    try:
        code = asyncio.run(_main(args))
    except BaseException as exc:  # noqa: BLE001 - always report, always exit
        emit("error", where="main", error=f"{type(exc).__name__}: {exc}")
    finally:
        emit("exit", code=code)
        sys.stderr.flush()
        # the FFI's native threads may outlive the room; don't wait for them at exit
        os._exit(code)


if __name__ == "__main__":
    main()
