"""Who may open a signal connection, to which room, with which options.

Runs on the node that holds the client's connection, before the WebSocket upgrade (and for
the `/validate` endpoints), so every refusal is an HTTP status with a text body, never a
leave message: 401 bad or missing token · 403 token without roomJoin (or for another room) ·
400 bad parameters. The room's host decides the rest, still before the upgrade (see
``signal.host``): 404 unknown room when rooms are not auto-created · 500 room full
("room has exceeded its max participants", as LiveKit's server answers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trackyard import errors
from trackyard.auth.grants import ClaimGrants
from trackyard.auth.tokens import token_from_request, verify_token
from trackyard.config import Config
from trackyard.signal import join_params
from trackyard.signal.join_params import JoinParams


class Refused(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Admission:
    grants: ClaimGrants
    room_name: str
    params: JoinParams


def admit_request(
    config: Config, headers: Mapping[str, str], query: Mapping[str, str], *, single_pc: bool
) -> Admission:
    """Authenticate and parse a signal connection request; raise Refused with the HTTP status."""
    try:
        token = token_from_request(headers, query)
        if token is None:
            raise Refused(401, "no authorization token provided")
        grants = verify_token(token, config.keys)
    except errors.Unauthenticated as exc:
        raise Refused(401, exc.msg) from None
    video = grants.video
    if video is None or not video.room_join:
        raise Refused(403, "no permissions to access the room")
    if not grants.identity:
        raise Refused(400, "identity cannot be empty")
    limits = config.limit
    if len(grants.identity) > limits.max_participant_identity_length:
        raise Refused(400, "participant identity exceeds limits")
    requested = query.get("room", "")
    room_name = video.room or requested
    if not room_name:
        raise Refused(400, "room name is required")
    if requested and video.room and requested != video.room:
        raise Refused(403, "token is not valid for this room")
    try:
        if single_pc:
            encoded = query.get("join_request")
            if not encoded:
                raise Refused(400, "join_request is required")
            params = join_params.from_join_request(encoded, max_bytes=limits.signal_message_size_limit)
        else:
            params = join_params.from_query(query)
    except errors.InvalidArgument as exc:
        raise Refused(400, exc.msg) from None
    return Admission(grants=grants, room_name=room_name, params=params)
