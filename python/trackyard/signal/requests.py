"""What a joined participant's signal requests do, and the media events that come back.

`ParticipantSignal` is the glue between one participant, its room and its media session:
it handles each SignalRequest and implements `MediaEvents` for the media transport.
"""

from __future__ import annotations

import logging

from livekit.protocol import models, rtc

from trackyard import ids
from trackyard.media.simulcast import TOP_LAYER, layer_for_settings
from trackyard.rooms.quality import Sample
from trackyard.rooms.participant import Participant
from trackyard.rooms.room import Room

log = logging.getLogger(__name__)

Reason = rtc.RequestResponse.Reason


def track_info_from_request(request: rtc.AddTrackRequest) -> models.TrackInfo:
    """The TrackInfo announced for an AddTrack request (before any media arrives)."""
    track = models.TrackInfo(
        sid=ids.new_id(ids.TRACK),
        type=request.type,
        name=request.name,
        muted=request.muted,
        width=request.width,
        height=request.height,
        source=request.source,
        disable_dtx=request.disable_dtx,
        disable_red=request.disable_red,
        stereo=request.stereo,
        encryption=request.encryption,
        stream=request.stream,
        backup_codec_policy=request.backup_codec_policy,
    )
    track.layers.extend(request.layers)
    track.audio_features.extend(request.audio_features)
    track.packet_trailer_features.extend(request.packet_trailer_features)
    for codec in request.simulcast_codecs:
        info = track.codecs.add(cid=codec.cid)
        if codec.codec:
            kind = "audio" if request.type == models.TrackType.AUDIO else "video"
            info.mime_type = f"{kind}/{codec.codec}" if "/" not in codec.codec else codec.codec
        info.layers.extend(codec.layers)
    if track.codecs and track.codecs[0].mime_type:
        track.mime_type = track.codecs[0].mime_type
    return track


class ParticipantSignal:
    """Handles one participant's requests; also its media session's event sink."""

    def __init__(self, room: Room, participant: Participant) -> None:
        self.room = room
        self.participant = participant
        self.cid_by_sid: dict[str, str] = {}

    # --- requests from the client -----------------------------------------------------
    async def handle(self, request: rtc.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        log.debug("%s sent %s", self.participant.identity, kind)
        handler = getattr(self, f"_on_{kind}", None) if kind else None
        if handler is None:
            log.debug("ignoring %s from %s", kind, self.participant.identity)
            return
        await handler(getattr(request, kind))

    def _reply(self, **message) -> None:
        self.participant.send(rtc.SignalResponse(**message))

    async def _on_offer(self, offer: rtc.SessionDescription) -> None:
        self.room.mark_joined(self.participant)
        if self.participant.media is not None:
            await self.participant.media.handle_offer(offer)

    async def _on_answer(self, answer: rtc.SessionDescription) -> None:
        if self.participant.media is not None:
            await self.participant.media.handle_answer(answer)

    async def _on_trickle(self, trickle: rtc.TrickleRequest) -> None:
        if self.participant.media is not None:
            await self.participant.media.handle_trickle(trickle)

    async def _on_add_track(self, request: rtc.AddTrackRequest) -> None:
        self.add_track(request)

    def add_track(self, request: rtc.AddTrackRequest) -> None:
        p = self.participant
        perm = p.permission
        allowed = perm.can_publish and (not perm.can_publish_sources or request.source in perm.can_publish_sources)
        if not allowed or not request.cid or request.type not in (models.TrackType.AUDIO, models.TrackType.VIDEO):
            log.info("refused add_track %r from %s", request.name, p.identity)
            reason = Reason.NOT_ALLOWED if not allowed else Reason.INVALID_REQUEST
            self._reply(request_response=rtc.RequestResponse(reason=reason, add_track=request))
            return
        track = p.pending_tracks.get(request.cid)
        if track is None:
            track = track_info_from_request(request)
            p.pending_tracks[request.cid] = track
            self.cid_by_sid[track.sid] = request.cid
        self._reply(track_published=rtc.TrackPublishedResponse(cid=request.cid, track=track))

    async def _on_mute(self, request: rtc.MuteTrackRequest) -> None:
        pending = next((t for t in self.participant.pending_tracks.values() if t.sid == request.sid), None)
        if pending is not None:
            pending.muted = request.muted
        self.room.set_track_muted(self.participant, request.sid, request.muted)

    async def _on_subscription(self, request: rtc.UpdateSubscription) -> None:
        sids = list(request.track_sids)
        for pt in request.participant_tracks:
            sids.extend(pt.track_sids)
        self.room.update_subscriptions(self.participant, sids, request.subscribe)

    async def _on_subscription_permission(self, permission: rtc.SubscriptionPermission) -> None:
        self.room.set_subscription_permission(self.participant, permission)

    async def _on_track_setting(self, request: rtc.UpdateTrackSettings) -> None:
        media = self.participant.media
        for sid in request.track_sids:
            track = self.room.track(sid)
            layer = layer_for_settings(track, request.quality, request.width, request.height) \
                if track is not None and track.type == models.TrackType.VIDEO else TOP_LAYER
            paused = request.disabled or layer is None
            if paused:
                self.participant.disabled_tracks.add(sid)
            else:
                self.participant.disabled_tracks.discard(sid)
            if media is not None:
                media.set_paused(sid, paused)
                if layer is not None:
                    media.set_max_layer(sid, layer)

    async def _on_update_metadata(self, request: rtc.UpdateParticipantMetadata) -> None:
        p = self.participant
        if not p.permission.can_update_metadata:
            self._reply(request_response=rtc.RequestResponse(
                request_id=request.request_id, reason=Reason.NOT_ALLOWED, update_metadata=request))
            return
        self.room.update_participant(p, name=request.name, metadata=request.metadata, attributes=dict(request.attributes))
        self._reply(request_response=rtc.RequestResponse(request_id=request.request_id, reason=Reason.OK))

    async def _on_leave(self, request: rtc.LeaveRequest) -> None:
        self.room.remove(self.participant, models.DisconnectReason.CLIENT_INITIATED, tell_client=False)

    # --- events from the media transport (MediaEvents) --------------------------------
    def on_transport_connected(self) -> None:
        self.room.mark_active(self.participant)

    def on_transport_failed(self) -> None:
        """ICE or DTLS failed: ask the client to resume (new signal connection + ICE restart),
        as LiveKit does; the participant keeps its place for the resume window."""
        p = self.participant
        log.info("media transport of %s failed; asking the client to resume", p.identity)
        if p.sink is not None and not p.closed:
            p.send(rtc.SignalResponse(leave=rtc.LeaveRequest(
                reason=models.DisconnectReason.MEDIA_FAILURE, action=rtc.LeaveRequest.Action.RESUME)))
            p.sink.close()

    def on_media_fault(self) -> None:
        """A bug in the media engine hit this participant's traffic: its room is closed (the
        clients are told to rejoin, getting a fresh room); the node and other rooms go on."""
        log.error("media engine fault on %s: closing room %s", self.participant.identity, self.room.name)
        self.room.close(models.DisconnectReason.MEDIA_FAILURE, rejoin=True)

    def on_track_received(self, cid: str, mid: str, mime_type: str) -> str | None:
        track = self.participant.pending_tracks.pop(cid, None)
        if track is None:
            log.debug("media for unknown cid %s from %s", cid, self.participant.identity)
            return None
        track.mid = mid
        if mime_type:
            track.mime_type = mime_type
        self.room.publish_track(self.participant, track)
        return track.sid

    def on_track_ended(self, cid: str) -> None:
        sid = next((s for s, c in self.cid_by_sid.items() if c == cid), None)
        if sid is not None:
            self.room.unpublish_track(self.participant, sid)

    def on_data_received(self, packet: models.DataPacket) -> None:
        p = self.participant
        if not p.permission.can_publish_data:
            return
        packet.participant_identity = p.identity
        packet.participant_sid = p.sid
        self.room.deliver_data(packet, p)

    def on_audio_level(self, dbov: int, voice: bool) -> None:
        self.room.report_audio_level(self.participant, dbov, voice)

    def on_connection_sample(self, packets: int, lost: int, jitter_ms: float, rtt_ms: float) -> None:
        self.room.report_connection(self.participant, Sample(packets, lost, jitter_ms, rtt_ms, expected_traffic=False))

    def send_signal(self, response: rtc.SignalResponse) -> None:
        self.participant.send(response)
