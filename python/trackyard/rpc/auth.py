"""The credential of internal gRPC calls: a short-lived access token for the identity
`NODE_IDENTITY`, signed with one of the cluster's API keys (every node has the same keys),
sent as ``authorization: Bearer …`` metadata. Media nodes refuse calls without a valid one,
so reaching the gRPC port is not enough to join rooms with made-up grants.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from trackyard import errors
from trackyard.auth.tokens import mint_token, verify_token

NODE_IDENTITY = "trackyard:node"
TOKEN_TTL = 600.0


class NodeCredentials:
    """Mints (and re-mints before expiry) the token a node sends with its calls."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._key = sorted(keys)[0]
        self._secret = keys[self._key]
        self._token = ""
        self._renew_at = 0.0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        now = time.time()
        if now >= self._renew_at:
            self._token = mint_token(self._key, self._secret, identity=NODE_IDENTITY, ttl_seconds=TOKEN_TTL, now=now)
            self._renew_at = now + TOKEN_TTL / 2
        return (("authorization", f"Bearer {self._token}"),)


class NodeAuthenticator:
    """Checks the token of an incoming call (verified tokens are remembered until they expire)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = keys
        self._valid: dict[str, float] = {}

    def check(self, metadata) -> bool:
        token = ""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[7:]
        if not token:
            return False
        now = time.time()
        expires = self._valid.get(token)
        if expires is not None and now < expires:
            return True
        try:
            grants = verify_token(token, self._keys)
        except errors.Unauthenticated:
            return False
        if grants.identity != NODE_IDENTITY:
            return False
        if len(self._valid) > 64:
            self._valid = {t: e for t, e in self._valid.items() if e > now}
        self._valid[token] = grants.expires_at
        return True
