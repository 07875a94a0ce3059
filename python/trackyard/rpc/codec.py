"""An admitted signal connection (`signal.admission.Admission`) as a `trackyard.v1.SessionStart`
and back. LiveKit messages inside it travel as their serialized bytes."""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from trackyard.auth.grants import ClaimGrants
from trackyard.rpc import relay_pb2 as pb
from trackyard.signal.admission import Admission
from trackyard.signal.join_params import JoinParams


def encode_start(admission: Admission, *, room_sid: str = "", validate_only: bool = False,
                 control_node_id: str = "") -> pb.SessionStart:
    p = admission.params
    params = pb.JoinParams(
        single_pc=p.single_pc,
        auto_subscribe=p.auto_subscribe,
        adaptive_stream=p.adaptive_stream,
        client_info=p.client_info.SerializeToString(),
        reconnect=p.reconnect,
        participant_sid=p.participant_sid,
        reconnect_reason=p.reconnect_reason,
        metadata=p.metadata,
        attributes=p.attributes,
        add_track_requests=[r.SerializeToString() for r in p.add_track_requests],
    )
    if p.publisher_offer is not None:
        params.publisher_offer = p.publisher_offer.SerializeToString()
    if p.sync_state is not None:
        params.sync_state = p.sync_state.SerializeToString()
    return pb.SessionStart(
        room_name=admission.room_name,
        grants_json=json.dumps(admission.grants.to_claims(), separators=(",", ":")),
        params=params,
        room_sid=room_sid,
        validate_only=validate_only,
        control_node_id=control_node_id,
    )


def decode_start(start: pb.SessionStart) -> Admission:
    """Raises ValueError on a malformed message."""
    try:
        grants = ClaimGrants.from_claims(json.loads(start.grants_json))
        p = start.params
        params = JoinParams(
            single_pc=p.single_pc,
            auto_subscribe=p.auto_subscribe,
            adaptive_stream=p.adaptive_stream,
            client_info=models.ClientInfo.FromString(p.client_info),
            reconnect=p.reconnect,
            participant_sid=p.participant_sid,
            reconnect_reason=p.reconnect_reason,
            publisher_offer=(rtc.SessionDescription.FromString(p.publisher_offer)
                             if p.HasField("publisher_offer") else None),
            metadata=p.metadata,
            attributes=dict(p.attributes),
            add_track_requests=[rtc.AddTrackRequest.FromString(b) for b in p.add_track_requests],
            sync_state=rtc.SyncState.FromString(p.sync_state) if p.HasField("sync_state") else None,
        )
    except (DecodeError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed session start: {exc}") from exc
    if grants.video is None or not start.room_name:
        raise ValueError("malformed session start: no video grant or room")
    return Admission(grants=grants, room_name=start.room_name, params=params)
