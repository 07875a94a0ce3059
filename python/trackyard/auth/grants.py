"""LiveKit access-token grants: the claims of a verified token as Python objects.

``VideoGrant`` mirrors the ``video`` claim (camelCase JSON in the JWT) and turns
into a ``ParticipantPermission`` with LiveKit's defaults for the tri-state fields.
``ClaimGrants`` holds everything the server reads from a token (identity, name,
metadata, attributes, kind, video grant, room configuration, ...).

Parsing is strict about types (a wrongly typed field raises ``ValueError``) and
lenient about unknown keys (ignored), like LiveKit's Go server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from livekit.protocol import models
from livekit.protocol.room import RoomConfiguration

__all__ = ["VideoGrant", "ClaimGrants", "source_from_claim", "kind_from_claim", "KIND_NAMES"]

# Field groups of VideoGrant, by how they are encoded in the JWT.
_PLAIN_BOOLS = (
    "room_create",
    "room_list",
    "room_record",
    "room_admin",
    "room_join",
    "ingress_admin",
    "hidden",
    "recorder",
    "agent",
)
# Tri-state: absent (None) means "use the default"; an explicit False is meaningful.
_TRI_BOOLS = (
    "can_publish",
    "can_subscribe",
    "can_publish_data",
    "can_update_own_metadata",
    "can_subscribe_metrics",
    "can_manage_agent_session",
)
_STRINGS = ("room", "destination_room")
_STRING_LISTS = ("can_publish_sources",)

_SOURCES: dict[str, int] = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}

#: Lower-case ``kind`` claim value -> ``ParticipantInfo.Kind``.
KIND_NAMES: dict[str, int] = {
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
    "sip": models.ParticipantInfo.Kind.SIP,
    "agent": models.ParticipantInfo.Kind.AGENT,
    "connector": models.ParticipantInfo.Kind.CONNECTOR,
    "bridge": models.ParticipantInfo.Kind.BRIDGE,
}


_KIND_CLAIMS: dict[int, str] = {v: k for k, v in KIND_NAMES.items() if k != "standard"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def source_from_claim(name: str) -> int:
    """Map a ``canPublishSources`` entry (e.g. ``"screen_share"``) to a ``TrackSource``; unknown -> UNKNOWN."""
    return _SOURCES.get(name.lower(), models.TrackSource.UNKNOWN)


def kind_from_claim(kind: str) -> int:
    """Map the ``kind`` claim to a ``ParticipantInfo.Kind`` value; empty or unknown -> STANDARD."""
    return KIND_NAMES.get(kind.lower(), models.ParticipantInfo.Kind.STANDARD)


@dataclass
class VideoGrant:
    """The ``video`` claim of a LiveKit access token."""

    room_create: bool = False
    room_list: bool = False
    room_record: bool = False
    room_admin: bool = False
    room_join: bool = False
    room: str = ""
    can_publish: bool | None = None
    can_subscribe: bool | None = None
    can_publish_data: bool | None = None
    can_publish_sources: list[str] = field(default_factory=list)
    can_update_own_metadata: bool | None = None
    ingress_admin: bool = False
    hidden: bool = False
    recorder: bool = False
    agent: bool = False
    can_subscribe_metrics: bool | None = None
    can_manage_agent_session: bool | None = None
    destination_room: str = ""

    @classmethod
    def from_claim(cls, d: Mapping[str, Any]) -> VideoGrant:
        """Build from the camelCase ``video`` object. Unknown keys are ignored, JSON null
        counts as absent, and a wrongly typed value raises ``ValueError``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"video grant must be an object, got {type(d).__name__}")
        kwargs: dict[str, Any] = {}
        for name in _PLAIN_BOOLS + _TRI_BOOLS:
            value = d.get(_camel(name))
            if value is None:
                continue
            if not isinstance(value, bool):
                raise ValueError(f"video.{_camel(name)} must be a boolean")
            kwargs[name] = value
        for name in _STRINGS:
            value = d.get(_camel(name))
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValueError(f"video.{_camel(name)} must be a string")
            kwargs[name] = value
        for name in _STRING_LISTS:
            value = d.get(_camel(name))
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"video.{_camel(name)} must be a list of strings")
            kwargs[name] = list(value)
        return cls(**kwargs)

    def to_claim(self) -> dict[str, Any]:
        """The camelCase ``video`` object for a JWT. Omits plain booleans that are False,
        empty strings and empty lists; tri-state fields are omitted only when None (an
        explicit False is kept, as LiveKit's minters do, so it does not fall back to the
        default True)."""
        out: dict[str, Any] = {}
        for name in _PLAIN_BOOLS:
            if getattr(self, name):
                out[_camel(name)] = True
        for name in _TRI_BOOLS:
            value = getattr(self, name)
            if value is not None:
                out[_camel(name)] = bool(value)
        for name in _STRINGS:
            if getattr(self, name):
                out[_camel(name)] = getattr(self, name)
        for name in _STRING_LISTS:
            if getattr(self, name):
                out[_camel(name)] = list(getattr(self, name))
        return out

    # Effective values of the tri-state fields (LiveKit's defaults).
    @property
    def effective_can_publish(self) -> bool:
        return True if self.can_publish is None else self.can_publish

    @property
    def effective_can_subscribe(self) -> bool:
        return True if self.can_subscribe is None else self.can_subscribe

    @property
    def effective_can_publish_data(self) -> bool:
        return self.effective_can_publish if self.can_publish_data is None else self.can_publish_data

    def permission(self) -> models.ParticipantPermission:
        """The participant permission this grant confers, with LiveKit's defaults applied."""
        return models.ParticipantPermission(
            can_publish=self.effective_can_publish,
            can_subscribe=self.effective_can_subscribe,
            can_publish_data=self.effective_can_publish_data,
            can_publish_sources=[source_from_claim(s) for s in self.can_publish_sources],
            can_update_metadata=bool(self.can_update_own_metadata),
            hidden=self.hidden,
            recorder=self.recorder,
            agent=self.agent,
            can_subscribe_metrics=bool(self.can_subscribe_metrics),
            can_manage_agent_session=bool(self.can_manage_agent_session),
        )


def _opt_str(claims: Mapping[str, Any], key: str) -> str:
    value = claims.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} claim must be a string")
    return value


@dataclass
class ClaimGrants:
    """What the server takes from a verified access token."""

    api_key: str = ""  # iss
    identity: str = ""  # sub, falling back to jti when sub is empty
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    kind: int = 0  # models.ParticipantInfo.Kind value
    video: VideoGrant | None = None
    room_config: RoomConfiguration | None = None
    room_preset: str = ""
    sha256: str = ""
    expires_at: float = 0.0  # exp, unix seconds

    def to_claims(self) -> dict[str, Any]:
        """The JWT claims these grants were read from (``from_claims`` reads them back to
        equal grants); control nodes hand them to the media node that hosts the room."""
        claims: dict[str, Any] = {"iss": self.api_key, "sub": self.identity, "exp": self.expires_at}
        optional: dict[str, Any] = {
            "name": self.name,
            "metadata": self.metadata,
            "attributes": dict(self.attributes),
            "kind": _KIND_CLAIMS.get(self.kind, ""),
            "roomPreset": self.room_preset,
            "sha256": self.sha256,
        }
        claims.update({k: v for k, v in optional.items() if v})
        if self.room_config is not None:
            claims["roomConfig"] = json_format.MessageToDict(self.room_config)
        if self.video is not None:
            claims["video"] = self.video.to_claim()
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> ClaimGrants:
        """Build from a decoded JWT payload (signature/time checks are the caller's job).
        Raises ``ValueError`` on wrongly typed claims."""
        identity = _opt_str(claims, "sub") or _opt_str(claims, "jti")

        attributes = claims.get("attributes")
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise ValueError("attributes claim must be an object of strings")

        video_claim = claims.get("video")
        video = None if video_claim is None else VideoGrant.from_claim(video_claim)

        room_config = None
        rc_claim = claims.get("roomConfig")
        if rc_claim is not None:
            if not isinstance(rc_claim, Mapping):
                raise ValueError("roomConfig claim must be an object")
            try:
                room_config = json_format.ParseDict(
                    dict(rc_claim), RoomConfiguration(), ignore_unknown_fields=True
                )
            except json_format.ParseError as e:
                raise ValueError(f"roomConfig claim: {e}") from e

        exp = claims.get("exp")
        expires_at = float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else 0.0

        return cls(
            api_key=_opt_str(claims, "iss"),
            identity=identity,
            name=_opt_str(claims, "name"),
            metadata=_opt_str(claims, "metadata"),
            attributes=dict(attributes),
            kind=kind_from_claim(_opt_str(claims, "kind")),
            video=video,
            room_config=room_config,
            room_preset=_opt_str(claims, "roomPreset"),
            sha256=_opt_str(claims, "sha256"),
            expires_at=expires_at,
        )
