"""Tokens for tests, minted with the real livekit-api SDK (as a backend would)."""

from __future__ import annotations

from livekit import api

from support.servers import API_KEY, API_SECRET


def join_token(identity: str, room: str, *, key: str = API_KEY, secret: str = API_SECRET, **grants) -> str:
    name = grants.pop("name", "")
    metadata = grants.pop("metadata", "")
    kind = grants.pop("kind", None)
    token = api.AccessToken(key, secret).with_identity(identity).with_grants(
        api.VideoGrants(room_join=True, room=room, **grants))
    if name:
        token = token.with_name(name)
    if metadata:
        token = token.with_metadata(metadata)
    if kind:
        token = token.with_kind(kind)
    return token.to_jwt()
