"""A room: its settings, its participants and everything they tell each other.

All mutations are synchronous (no awaits) so that, on one event loop, a room's state
changes are atomic. Slow work (media teardown, webhook delivery) is handed off.

Close cascade: closing a room sends each participant a leave with the reason, closes its
signal connection and media session, broadcasts nothing further, then emits room_finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from livekit.protocol import models, rtc
from livekit.protocol.webhook import WebhookEvent

from trackyard import errors, ids
from trackyard.rooms.participant import Participant, State
from trackyard.rooms.quality import Sample, score
from trackyard.rooms.speakers import SpeakerTracker
from trackyard.signal.validate import encode
from trackyard.webhooks import events as hooks

AUDIO_STALE = 1.0  # seconds without a level report after which a participant counts as silent
#: Rooms with more participants than this send updates about participants that publish
#: nothing (joins, leaves, metadata of listeners) in batches instead of one by one, so that a
#: join storm does not cost O(N) messages per join. Publishers' updates always go at once.
LARGE_ROOM = 50
#: How often a large room sends its batched participant updates (seconds).
UPDATE_BATCH_INTERVAL = 1.0

log = logging.getLogger(__name__)

Reason = models.DisconnectReason
Action = rtc.LeaveRequest.Action


class EventSink(Protocol):
    def notify(self, event: WebhookEvent) -> None: ...


def allowed_by(permission: rtc.SubscriptionPermission | None, subscriber: Participant, track_sid: str) -> bool:
    """Does a publisher's subscription permission let this subscriber have this track?"""
    if permission is None or permission.all_participants:
        return True
    for rule in permission.track_permissions:
        if rule.participant_sid == subscriber.sid or (rule.participant_identity
                                                     and rule.participant_identity == subscriber.identity):
            return rule.all_tracks or track_sid in rule.track_sids
    return False


class RoomSettings:
    def __init__(self, *, empty_timeout: int, departure_timeout: int, max_participants: int, metadata: str = ""):
        self.empty_timeout = empty_timeout
        self.departure_timeout = departure_timeout
        self.max_participants = max_participants
        self.metadata = metadata


class Room:
    def __init__(self, name: str, settings: RoomSettings, events: EventSink, *,
                 on_closed: Callable[["Room"], None], sid: str = ""):
        self.sid = sid or ids.new_id(ids.ROOM)
        self.name = name
        self.settings = settings
        self.created_at = time.time()
        self.created_mono = time.monotonic()
        self.last_left_mono: float | None = None
        self.participants: dict[str, Participant] = {}  # by identity
        self.closed = False
        self._events = events
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task] = set()
        self._speakers = SpeakerTracker()
        self._audio: dict[str, tuple[int, bool, float]] = {}  # participant sid → (dBov, voice, when)
        self._batched: dict[str, models.ParticipantInfo] = {}  # sid → latest not yet sent
        self._batch_timer: asyncio.TimerHandle | None = None

    # --- queries ----------------------------------------------------------------------
    def by_sid(self, sid: str) -> Participant | None:
        return next((p for p in self.participants.values() if p.sid == sid), None)

    def count_members(self) -> int:
        """Participants that count toward limits and keep the room open."""
        return sum(1 for p in self.participants.values() if not p.dependent)

    def is_full_for(self, identity: str, *, dependent: bool) -> bool:
        """Would one more participant with this identity exceed max_participants?

        Dependent participants never count; a same-identity join replaces its predecessor.
        """
        limit = self.settings.max_participants
        if limit <= 0 or dependent:
            return False
        old = self.participants.get(identity)
        members = self.count_members() - (1 if old is not None and not old.dependent else 0)
        return members >= limit

    def visible_to(self, viewer: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not viewer and not p.hidden]

    def to_proto(self) -> models.Room:
        room = models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=self.settings.empty_timeout,
            departure_timeout=self.settings.departure_timeout,
            max_participants=self.settings.max_participants,
            creation_time=int(self.created_at),
            creation_time_ms=int(self.created_at * 1000),
            metadata=self.settings.metadata,
            num_participants=self.count_members(),
            num_publishers=sum(1 for p in self.participants.values() if p.is_publisher),
        )
        return room

    # --- membership -------------------------------------------------------------------
    def admit(self, participant: Participant) -> None:
        """Add a participant (evicting an older session of the same identity).

        The caller sends the JoinResponse and then calls `announce`.
        """
        if self.closed:
            raise errors.NotFound("room has already closed")
        if self.is_full_for(participant.identity, dependent=participant.dependent):
            raise errors.ResourceExhausted("room has exceeded its max participants")
        old = self.participants.get(participant.identity)
        if old is not None:
            self.remove(old, Reason.DUPLICATE_IDENTITY)
        self.participants[participant.identity] = participant

    def announce(self, participant: Participant) -> None:
        self.broadcast_participant(participant)

    def remove(self, participant: Participant, reason: int, *, tell_client: bool = True, rejoin: bool = False) -> None:
        """Take a participant out of the room (leave, removal, eviction or timeout).

        With `rejoin` the client is told to join again (the room lives on elsewhere)."""
        if self.participants.get(participant.identity) is not participant or participant.closed:
            return
        del self.participants[participant.identity]
        if tell_client:
            action = Action.RECONNECT if rejoin else Action.DISCONNECT
            participant.send(rtc.SignalResponse(leave=rtc.LeaveRequest(reason=reason, action=action)))
        participant.disconnect_reason = reason
        participant.set_state(State.DISCONNECTED)
        participant.closed = True
        self._detach(participant)
        if not participant.dependent:
            self.last_left_mono = time.monotonic()
        self._audio.pop(participant.sid, None)
        self._send_speakers(self._speakers.forget(participant.sid))
        if not participant.hidden:
            self._broadcast_update([participant.to_proto()], exclude=participant)
        room = self.to_proto()
        info = participant.to_proto()
        for track in participant.tracks.values():
            self._unsubscribe_all(track.sid)
            self._events.notify(hooks.track_unpublished(room, info, track))
        if participant.was_active:
            self._events.notify(hooks.participant_left(room, info))
        else:
            self._events.notify(hooks.participant_connection_aborted(room, info))
        log.info("participant %s left room %s (%s)", participant.identity, self.name, Reason.Name(reason),
                 extra={"room": self.name, "participant": participant.identity, "participant_sid": participant.sid})

    def _detach(self, participant: Participant) -> None:
        if participant.sink is not None:
            participant.sink.close()
            participant.sink = None
        if participant.media is not None:
            self.spawn(participant.media.close())
            participant.media = None

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for the work the room handed off, such as media
        teardown, so that a shutdown does not stop the engine under it."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    # --- broadcasting -----------------------------------------------------------------
    def _broadcast_update(self, infos: list[models.ParticipantInfo], *, exclude: Participant | None = None) -> None:
        """Send participant infos to everyone in the room (but `exclude`).

        In a large room, infos of participants that publish nothing wait for the next batch
        (the latest info per participant wins; recipients are those present at the flush, so
        `exclude` only matters for participants still in the room and is honoured by sending
        at once). Anything else goes at once, after the batch, so that no client sees an
        older info after a newer one."""
        if exclude is None or exclude.identity not in self.participants:
            if self._batch(infos):
                return
        self.flush_updates()
        message = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=infos))
        self._send_all(message, (p for p in self.participants.values() if p is not exclude))

    def _send_all(self, message: rtc.SignalResponse, recipients) -> None:
        """One message to many: checked and serialized once."""
        data = encode(message)
        if data is not None:
            for p in recipients:
                p.send_encoded(data)

    def _batch(self, infos: list[models.ParticipantInfo]) -> bool:
        if len(self.participants) <= LARGE_ROOM or any(i.is_publisher or i.tracks for i in infos):
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        for info in infos:
            self._batched[info.sid] = info
        if self._batch_timer is None:
            self._batch_timer = loop.call_later(UPDATE_BATCH_INTERVAL, self.flush_updates)
        return True

    def flush_updates(self) -> None:
        """Send the batched participant updates now (one message to everyone)."""
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        if not self._batched or self.closed:
            self._batched.clear()
            return
        message = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=list(self._batched.values())))
        self._batched.clear()
        self._send_all(message, self.participants.values())

    def broadcast_participant(self, participant: Participant) -> None:
        """Tell everyone (the participant included) its current info; hidden ones only learn of themselves."""
        info = participant.to_proto()
        if participant.hidden:
            participant.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[info])))
        else:
            self._broadcast_update([info])

    def broadcast_room(self) -> None:
        message = rtc.SignalResponse(room_update=rtc.RoomUpdate(room=self.to_proto()))
        self._send_all(message, self.participants.values())

    # --- participant lifecycle events -------------------------------------------------
    def mark_joined(self, participant: Participant) -> None:
        if participant.set_state(State.JOINED):
            self.broadcast_participant(participant)

    def mark_active(self, participant: Participant) -> None:
        if participant.closed:
            return
        participant.set_state(State.JOINED)
        if participant.set_state(State.ACTIVE):
            self.broadcast_participant(participant)
            self._events.notify(hooks.participant_joined(self.to_proto(), participant.to_proto()))

    def update_participant(
        self,
        participant: Participant,
        *,
        name: str = "",
        metadata: str = "",
        attributes: dict[str, str] | None = None,
        permission: models.ParticipantPermission | None = None,
    ) -> None:
        """Apply LiveKit's update semantics: empty name/metadata leave them unchanged,
        attributes merge (an empty value deletes the key), a permission replaces all flags."""
        if name:
            participant.name = name
        if metadata:
            participant.metadata = metadata
        for key, value in (attributes or {}).items():
            if value:
                participant.attributes[key] = value
            else:
                participant.attributes.pop(key, None)
        if permission is not None:
            replaced = models.ParticipantPermission()
            replaced.CopyFrom(permission)
            participant.permission = replaced
            for sid, track in list(participant.tracks.items()):
                allowed = permission.can_publish and (
                    not permission.can_publish_sources or track.source in permission.can_publish_sources
                )
                if not allowed:
                    self.unpublish_track(participant, sid)
        participant.touch()
        self.broadcast_participant(participant)

    # --- speakers and connection quality -----------------------------------------------
    def report_audio_level(self, participant: Participant, dbov: int, voice: bool) -> None:
        """A participant's audio level for the last interval; broadcasts speakers_changed on change."""
        self._audio[participant.sid] = (dbov, voice, time.monotonic())
        self.refresh_speakers()

    def refresh_speakers(self) -> None:
        """Re-evaluate speakers; one whose audio stopped arriving counts as silent."""
        if not self._audio:
            return
        now = time.monotonic()
        levels = {sid: (d, v) if now - t < AUDIO_STALE else (127, False) for sid, (d, v, t) in self._audio.items()}
        self._send_speakers(self._speakers.update(levels))

    def _send_speakers(self, infos: list[models.SpeakerInfo] | None) -> None:
        if not infos:
            return
        message = rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=infos))
        self._send_all(message, self.participants.values())

    def report_connection(self, participant: Participant, sample: Sample) -> None:
        """A participant's traffic for the last stats interval. On change its quality goes to
        itself and, when it publishes (others watch its media), to everyone else too; a
        listener's quality concerns only itself, which keeps this O(N) in a large audience."""
        quality, value = score(sample)
        if quality == participant.quality:
            return
        participant.quality = quality
        info = rtc.ConnectionQualityInfo(participant_sid=participant.sid, quality=quality, score=value)
        message = rtc.SignalResponse(connection_quality=rtc.ConnectionQualityUpdate(updates=[info]))
        if participant.hidden or not participant.is_publisher:
            participant.send(message)
        else:
            self._send_all(message, self.participants.values())

    # --- subscriptions ----------------------------------------------------------------
    def _wants(self, subscriber: Participant, publisher: Participant, track_sid: str) -> bool:
        if subscriber.closed or subscriber.media is None or not subscriber.permission.can_subscribe:
            return False
        if not allowed_by(publisher.subscription_permission, subscriber, track_sid):
            return False
        choice = subscriber.subscription_requests.get(track_sid)
        return choice if choice is not None else subscriber.options.auto_subscribe

    def set_subscription_permission(self, publisher: Participant, permission: rtc.SubscriptionPermission) -> None:
        """A publisher says who may subscribe to its tracks: subscribers that lost access are
        unsubscribed, those that gained it are subscribed (if they want), and both are told."""
        before = publisher.subscription_permission
        publisher.subscription_permission = permission
        for subscriber in list(self.participants.values()):
            if subscriber is publisher:
                continue
            for sid in publisher.tracks:
                was = allowed_by(before, subscriber, sid)
                now = allowed_by(permission, subscriber, sid)
                if was == now:
                    continue
                subscriber.send(rtc.SignalResponse(subscription_permission_update=rtc.SubscriptionPermissionUpdate(
                    participant_sid=publisher.sid, track_sid=sid, allowed=now)))
                if not now and subscriber.media is not None:
                    subscriber.media.unsubscribe(sid)
                elif now and self._wants(subscriber, publisher, sid):
                    self._subscribe(subscriber, publisher, sid)

    def _subscribe(self, subscriber: Participant, publisher: Participant, track_sid: str) -> None:
        if subscriber.media is not None and subscriber.media.subscribe(track_sid):
            if track_sid not in publisher.subscribed_tracks:
                publisher.subscribed_tracks.add(track_sid)
                publisher.send(rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=track_sid)))
            if track_sid in subscriber.disabled_tracks:
                subscriber.media.set_paused(track_sid, True)

    def subscribe_existing(self, subscriber: Participant) -> None:
        """A newcomer gets every published track it wants."""
        for publisher in list(self.participants.values()):
            if publisher is subscriber:
                continue
            for sid in publisher.tracks:
                if self._wants(subscriber, publisher, sid):
                    self._subscribe(subscriber, publisher, sid)

    def update_subscriptions(self, subscriber: Participant, track_sids: list[str], subscribe: bool) -> None:
        for sid in track_sids:
            subscriber.subscription_requests[sid] = subscribe
            publisher = self.publisher_of(sid)
            if publisher is None or publisher is subscriber or subscriber.media is None:
                continue
            if subscribe and self._wants(subscriber, publisher, sid):
                self._subscribe(subscriber, publisher, sid)
            elif not subscribe:
                subscriber.media.unsubscribe(sid)

    # --- tracks -----------------------------------------------------------------------
    def publish_track(self, participant: Participant, track: models.TrackInfo) -> None:
        participant.tracks[track.sid] = track
        participant.touch()
        self.broadcast_participant(participant)
        self._events.notify(hooks.track_published(self.to_proto(), participant.to_proto(), track))
        # subscribe after the update, so subscribers know the track before media for it arrives
        asyncio.get_running_loop().call_soon(self._subscribe_all, participant, track.sid)

    def _subscribe_all(self, publisher: Participant, track_sid: str) -> None:
        if publisher.closed or track_sid not in publisher.tracks:
            return
        for subscriber in list(self.participants.values()):
            if subscriber is not publisher and self._wants(subscriber, publisher, track_sid):
                self._subscribe(subscriber, publisher, track_sid)

    def _unsubscribe_all(self, track_sid: str) -> None:
        for p in self.participants.values():
            if p.media is not None:
                p.media.unsubscribe(track_sid)

    def unpublish_track(self, participant: Participant, track_sid: str) -> None:
        track = participant.tracks.pop(track_sid, None)
        if track is None:
            return
        participant.subscribed_tracks.discard(track_sid)
        self._unsubscribe_all(track_sid)
        participant.touch()
        participant.send(rtc.SignalResponse(track_unpublished=rtc.TrackUnpublishedResponse(track_sid=track_sid)))
        self.broadcast_participant(participant)
        self._events.notify(hooks.track_unpublished(self.to_proto(), participant.to_proto(), track))

    def publisher_of(self, track_sid: str) -> Participant | None:
        return next((p for p in self.participants.values() if track_sid in p.tracks), None)

    def track(self, track_sid: str) -> models.TrackInfo | None:
        """A published track of any participant."""
        publisher = self.publisher_of(track_sid)
        return publisher.tracks[track_sid] if publisher is not None else None

    def set_track_muted(self, participant: Participant, track_sid: str, muted: bool) -> models.TrackInfo | None:
        track = participant.tracks.get(track_sid)
        if track is None:
            return None
        if participant.media is not None:
            participant.media.set_track_muted(track_sid, muted)
        if track.muted != muted:
            track.muted = muted
            participant.touch()
            self.broadcast_participant(participant)
        return track

    # --- data -------------------------------------------------------------------------
    def deliver_data(self, packet: models.DataPacket, sender: Participant | None) -> int:
        """Relay a data packet to its destinations (all others when none named); returns recipients."""
        wanted = set(packet.destination_identities)
        wanted_sids: set[str] = set()
        if packet.WhichOneof("value") == "user":
            # older SDKs name destinations only inside the UserPacket (identities or deprecated sids)
            wanted.update(packet.user.destination_identities)
            wanted_sids.update(packet.user.destination_sids)
        targeted = bool(wanted or wanted_sids)
        targets = [
            p for p in self.participants.values()
            if p is not sender and p.media is not None
            and (not targeted or p.identity in wanted or p.sid in wanted_sids)
        ]
        delivered = 0
        for p in targets:
            if p.permission.can_subscribe and p.media.send_data(packet):
                delivered += 1
        return delivered

    # --- closing ----------------------------------------------------------------------
    def should_close(self, now: float) -> bool:
        if self.closed or self.count_members() > 0:
            return False
        if self.last_left_mono is not None:
            return now - self.last_left_mono >= self.settings.departure_timeout
        return now - self.created_mono >= self.settings.empty_timeout

    def close(self, reason: int, *, rejoin: bool = False) -> None:
        if self.closed:
            return
        for participant in list(self.participants.values()):
            self.remove(participant, reason, rejoin=rejoin)
        self.closed = True
        self.flush_updates()  # nobody is left to tell: drops the batch and its timer
        self._events.notify(hooks.room_finished(self.to_proto()))
        self._on_closed(self)
        log.info("room %s closed (%s)", self.name, Reason.Name(reason), extra={"room": self.name})
