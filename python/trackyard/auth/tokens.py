"""LiveKit access tokens: verify, mint, and extract them from HTTP requests.

- ``verify_token`` checks an HS256 JWT the way LiveKit's server does (``iss`` picks the
  secret; signature, issuer, required ``exp``, ``nbf`` and ``iat`` with a 60 s leeway)
  and returns its ``ClaimGrants``; every failure is ``errors.Unauthenticated``.
- ``mint_token`` writes a token compatible with LiveKit's SDK verifiers.
- ``token_from_request`` finds the token in the ``Authorization: Bearer`` header or the
  ``access_token`` query parameter, as LiveKit's auth middleware does.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import jwt
from google.protobuf import json_format
from livekit.protocol.room import RoomConfiguration

from trackyard.auth.grants import ClaimGrants, VideoGrant
from trackyard.errors import Unauthenticated

__all__ = ["LEEWAY_SECONDS", "verify_token", "mint_token", "token_from_request"]

LEEWAY_SECONDS = 60
_ALGORITHM = "HS256"
_BEARER = "Bearer "


def _invalid(reason: object) -> Unauthenticated:
    return Unauthenticated(f"invalid authorization token: {reason}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decode(token: str, secret: str, issuer: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer=issuer,
            options={
                "require": ["exp"],
                # time claims are checked below, against the caller's clock
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                # LiveKit's server does not check the audience
                "verify_aud": False,
            },
        )


def verify_token(
    token: str,
    keys: Mapping[str, str],
    *,
    leeway: float = LEEWAY_SECONDS,
    now: float | None = None,
) -> ClaimGrants:
    """Verify an access token against ``keys`` (API key -> secret) and return its grants.

    Raises ``Unauthenticated("invalid API key")`` when ``iss`` is missing or unknown, and
    ``Unauthenticated("invalid authorization token: <reason>")`` for anything else.
    """
    if not isinstance(token, str):
        raise _invalid("token must be a string")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise _invalid(e) from e

    api_key = unverified.get("iss")
    if api_key is not None and not isinstance(api_key, str):
        raise _invalid("iss claim must be a string")
    secret = keys.get(api_key) if api_key else None
    if not secret:
        raise Unauthenticated("invalid API key")

    try:
        claims = _decode(token, secret, api_key)
    except jwt.PyJWTError as e:
        raise _invalid(e) from e

    t = time.time() if now is None else now
    exp = claims["exp"]
    if not _is_number(exp):
        raise _invalid("exp claim must be a number")
    if t - leeway > exp:
        raise _invalid("token is expired (exp)")
    for claim, reason in (("nbf", "token not valid yet (nbf)"), ("iat", "token issued in the future (iat)")):
        value = claims.get(claim)
        if value is None:
            continue
        if not _is_number(value):
            raise _invalid(f"{claim} claim must be a number")
        if t + leeway < value:
            raise _invalid(reason)

    try:
        return ClaimGrants.from_claims(claims)
    except ValueError as e:
        raise _invalid(e) from e


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    identity: str = "",
    name: str = "",
    ttl_seconds: float = 6 * 3600,
    video: VideoGrant | None = None,
    metadata: str = "",
    attributes: dict[str, str] | None = None,
    kind: str = "",
    room_config: RoomConfiguration | None = None,
    room_preset: str = "",
    sha256: str = "",
    extra_claims: dict | None = None,
    now: float | None = None,
) -> str:
    """Mint an HS256 access token. Optional claims are written only when non-empty;
    ``extra_claims`` are merged last (they may override the standard ones)."""
    t = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": int(t),
        "exp": int(t + ttl_seconds),
    }
    optional: dict[str, Any] = {
        "name": name,
        "metadata": metadata,
        "attributes": dict(attributes or {}),
        "kind": kind,
        "roomPreset": room_preset,
        "sha256": sha256,
    }
    if room_config is not None:
        optional["roomConfig"] = json_format.MessageToDict(room_config)
    claims.update({k: v for k, v in optional.items() if v})
    if video is not None:
        claims["video"] = video.to_claim()  # kept even when empty: it still marks a video grant
    if extra_claims:
        claims.update(extra_claims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, api_secret, algorithm=_ALGORITHM, headers={"alg": _ALGORITHM, "typ": "JWT"})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if isinstance(key, str) and key.lower() == lowered:
            return val
    return None


def token_from_request(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The request's access token: from ``Authorization: Bearer <jwt>`` if that header is
    present (any other scheme raises ``Unauthenticated``), else from the ``access_token``
    query parameter; ``None`` when there is no token."""
    auth = _header(headers, "Authorization")
    if auth:
        if not auth.startswith(_BEARER):
            raise Unauthenticated("invalid authorization header. Must start with Bearer ")
        return auth[len(_BEARER):] or None
    return query.get("access_token") or None
