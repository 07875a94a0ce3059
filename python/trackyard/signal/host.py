"""The host side of signaling: a participant's join, resume and requests in a room on this node.

A relay (``signal.relay``) hands the host an admitted connection (``signal.admission``):

1. `SignalHost.open` decides about the room before the client's WebSocket is upgraded, so a
   refusal is still an HTTP status: 404 unknown room when rooms are not auto-created (nor
   allowed by the token), 500 room full, 400 bad room settings. A new participant is
   admitted here (an older session of the same identity is removed). A resume is always
   accepted: whether it can go on is told over the open connection.
2. `HostSession.start` (the upgrade succeeded) runs the session: for a join, the JoinResponse
   first, then the others learn of the newcomer; for a resume, a ReconnectResponse, then the
   full room state, or `leave{STATE_MISMATCH, RECONNECT}` when the participant is gone.
   Then one request at a time from the connection, until it closes.
3. `HostSession.abort` (the upgrade failed) takes an admitted newcomer out again.

A connection that vanishes without a leave, or is silent for `signal.ping_timeout`, keeps
its participant for a resume until `signal.reconnect_timeout` (see ``rooms.manager``).
Silence is watched by one task per host, not by a timer per request: keepalives are
answered by the connection itself (``signal.connection``) and only move its `last_heard`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from livekit.protocol import models, rtc

from trackyard import errors, logs
from trackyard.context import NodeContext
from trackyard.media.session import SessionOptions
from trackyard.rooms.participant import ConnectionOptions, Participant, is_dependent
from trackyard.rooms.room import Room
from trackyard.signal.admission import Admission, Refused
from trackyard.signal.connection import SignalConnection
from trackyard.signal.requests import ParticipantSignal

log = logging.getLogger(__name__)


def state_mismatch_leave() -> rtc.SignalResponse:
    """What a resume of a participant this node does not have gets: SDKs then rejoin."""
    return rtc.SignalResponse(leave=rtc.LeaveRequest(
        reason=models.DisconnectReason.STATE_MISMATCH, action=rtc.LeaveRequest.Action.RECONNECT))


class SignalHost:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.handlers: dict[str, ParticipantSignal] = {}  # by participant sid, for resumes
        self._tasks: set[asyncio.Task] = set()
        self._served: set[SignalConnection] = set()  # watched for silence
        self._watchdog: asyncio.Task | None = None

    # --- before the upgrade -----------------------------------------------------------
    def check(self, admission: Admission) -> None:
        """The `/validate` answer for the room: raises `Refused`, starts nothing."""
        if admission.params.reconnect:
            return
        video = admission.grants.video
        assert video is not None
        room = self.node.rooms.get(admission.room_name)
        if room is None and self.node.rooms.refusing:
            raise Refused(503, self.node.rooms.refusing)
        if room is None and not (self.node.config.room.auto_create or video.room_create):
            raise Refused(404, "requested room does not exist")
        if room is not None and room.is_full_for(admission.grants.identity,
                                                 dependent=is_dependent(admission.grants.kind, video.permission())):
            raise Refused(500, "room has exceeded its max participants")

    def open(self, admission: Admission, room_sid: str = "") -> "HostSession":
        """Take a connection (raises `Refused`); `room_sid` names a room created for it."""
        if admission.params.reconnect:
            return HostSession(self, admission, None, None)
        video = admission.grants.video
        try:
            room = self.node.rooms.room_for_join(admission.room_name, may_create=bool(video and video.room_create),
                                                 room_config=admission.grants.room_config, sid=room_sid)
            participant = self._new_participant(admission)
            room.admit(participant)
        except errors.NotFound as exc:
            raise Refused(404, exc.msg) from None
        except errors.ResourceExhausted as exc:
            raise Refused(500, exc.msg) from None
        except errors.InvalidArgument as exc:
            raise Refused(400, exc.msg) from None
        except errors.Unavailable as exc:  # a draining node creates no room
            raise Refused(503, exc.msg) from None
        return HostSession(self, admission, room, participant)

    def _new_participant(self, admission: Admission) -> Participant:
        grants, params = admission.grants, admission.params
        video = grants.video
        assert video is not None
        permission = video.permission()
        metadata, attributes = grants.metadata, dict(grants.attributes)
        if permission.can_update_metadata:
            metadata = params.metadata or metadata
            attributes.update(params.attributes)
        return Participant(
            identity=grants.identity,
            name=grants.name,
            metadata=metadata,
            attributes=attributes,
            kind=grants.kind,
            permission=permission,
            options=ConnectionOptions(
                auto_subscribe=params.auto_subscribe,
                adaptive_stream=params.adaptive_stream,
                protocol=params.client_info.protocol,
                single_pc=params.single_pc,
                client_info=params.client_info,
            ),
            api_key=grants.api_key,
        )

    # --- silence ----------------------------------------------------------------------
    def watch(self, link: SignalConnection) -> None:
        self._served.add(link)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = self._spawn(self._watch_silence())

    def unwatch(self, link: SignalConnection) -> None:
        self._served.discard(link)

    async def _watch_silence(self) -> None:
        """Times out connections silent for `signal.ping_timeout`, checked a few times per
        timeout (at most every second); ends when nothing is served."""
        timeout = float(self.node.config.signal.ping_timeout)
        while self._served:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for link in list(self._served):
                link.expire_if_silent(timeout, now)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class HostSession:
    """One client connection to this host: created by `SignalHost.open`."""

    def __init__(self, host: SignalHost, admission: Admission, room: Room | None,
                 participant: Participant | None) -> None:
        self.host = host
        self.node = host.node
        self.admission = admission
        self.room = room
        self.participant = participant  # None for a resume until it is found
        what = " (resume)" if admission.params.reconnect else ""
        self.link = SignalConnection(label=f"{admission.grants.identity}@{admission.room_name}{what}")
        self.task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        """The client's connection is open: run the session (in a task of its own)."""
        if self.task is None:
            run = self._resume() if self.participant is None else self._join()
            self.task = self.host._spawn(self._guarded(run))
        return self.task

    def abort(self) -> None:
        """The upgrade failed: take the admitted newcomer out again."""
        if self.task is None and self.room is not None and self.participant is not None:
            self.room.remove(self.participant, models.DisconnectReason.SIGNAL_CLOSE, tell_client=False)

    async def _guarded(self, run) -> None:
        logs.bind(room=self.admission.room_name, participant=self.admission.grants.identity,
                  participant_sid=self.participant.sid if self.participant else self.admission.params.participant_sid)
        try:
            await run
        except Exception:
            log.exception("signal session %s failed", self.link.label)
            self.link.close()

    # --- new session ------------------------------------------------------------------
    async def _join(self) -> None:
        room, participant, link = self.room, self.participant, self.link
        assert room is not None and participant is not None
        if participant.closed:  # removed between admission and the upgrade (e.g. a duplicate)
            link.close()
            return
        participant.sink = link
        handler = ParticipantSignal(room, participant)
        params = self.admission.params
        subscriber_primary = not params.single_pc and participant.permission.can_subscribe
        participant.media = self.node.media.create_session(
            SessionOptions(
                participant_sid=participant.sid,
                single_pc=params.single_pc,
                subscriber_primary=subscriber_primary,
                can_publish=participant.permission.can_publish,
                can_subscribe=participant.permission.can_subscribe,
            ),
            handler,
        )
        participant.send(rtc.SignalResponse(join=self._join_response(room, participant, subscriber_primary)))
        room.announce(participant)
        log.info("participant %s (%s) joined room %s via %s", participant.identity, participant.sid, room.name,
                 "/rtc/v1 (single peer connection)" if params.single_pc else "/rtc (v0, two peer connections)")
        for add_track in params.add_track_requests:
            handler.add_track(add_track)
        if params.publisher_offer is not None:
            await handler.handle(rtc.SignalRequest(offer=params.publisher_offer))
        room.subscribe_existing(participant)
        await self._serve(room, participant, handler)

    def _join_response(self, room: Room, participant: Participant, subscriber_primary: bool) -> rtc.JoinResponse:
        cfg = self.node.config
        info = self.node.server_info()
        response = rtc.JoinResponse(
            room=room.to_proto(),
            participant=participant.to_proto(),
            server_version=info.version,
            server_info=info,
            server_region=cfg.region,
            subscriber_primary=subscriber_primary,
            fast_publish=participant.permission.can_publish and not participant.options.single_pc,
            ping_interval=cfg.signal.ping_interval,
            ping_timeout=cfg.signal.ping_timeout,
        )
        response.other_participants.extend(p.to_proto() for p in room.visible_to(participant))
        return response

    # --- resume -----------------------------------------------------------------------
    async def _resume(self) -> None:
        admission, link = self.admission, self.link
        room = self.node.rooms.get(admission.room_name)
        participant = room.by_sid(admission.params.participant_sid) if room is not None else None
        if (
            room is None
            or participant is None
            or participant.closed
            or participant.identity != admission.grants.identity
            or participant.sid not in self.host.handlers
        ):
            link.send(state_mismatch_leave())
            link.close()
            await link.wait_closed()
            return
        self.room, self.participant = room, participant
        if participant.sink is not None:
            participant.sink.close()
        participant.sink = link
        participant.signal_lost_at = None
        handler = self.host.handlers[participant.sid]
        info = self.node.server_info()
        link.send(rtc.SignalResponse(reconnect=rtc.ReconnectResponse(server_info=info)))
        everyone = [participant.to_proto()] + [p.to_proto() for p in room.visible_to(participant)]
        link.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=everyone)))
        link.send(rtc.SignalResponse(room_update=rtc.RoomUpdate(room=room.to_proto())))
        log.info("participant %s resumed in room %s", participant.identity, room.name)
        if participant.media is not None:
            participant.media.on_resumed()
        await self._serve(room, participant, handler)

    # --- the read loop ----------------------------------------------------------------
    async def _serve(self, room: Room, participant: Participant, handler: ParticipantSignal) -> None:
        link = self.link
        self.host.handlers[participant.sid] = handler
        self.host.watch(link)
        try:
            while not link.closing and not participant.closed and participant.sink is link:
                req = await link.receive()
                if req is None:
                    if link.timed_out:
                        log.info("signal of %s timed out", participant.identity)
                    break
                try:
                    await handler.handle(req)
                except Exception:  # one bad request must not kill the session
                    log.exception("handling %s from %s failed", req.WhichOneof("message"), participant.identity)
        finally:
            self.host.unwatch(link)
            if participant.sink is link:
                # the connection vanished without a leave: keep the participant for a resume
                participant.sink = None
                # a silent client vanished when it was last heard from, so that it is removed
                # about reconnect_timeout after it went quiet, not after timeout + reconnect
                participant.signal_lost_at = link.last_heard if link.timed_out else time.monotonic()
                link.close()
            if participant.closed:
                self.host.handlers.pop(participant.sid, None)
            await link.wait_closed()
