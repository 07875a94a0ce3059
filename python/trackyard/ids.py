"""LiveKit-style identifiers: a prefix plus 12 characters of the base57 alphabet."""

from __future__ import annotations

import secrets

# shortuuid's alphabet: digits and letters without the look-alikes 0, 1, I, O, l.
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

ROOM = "RM_"
PARTICIPANT = "PA_"
TRACK = "TR_"
NODE = "ND_"
WEBHOOK_EVENT = "EV_"


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def is_id(value: str, prefix: str) -> bool:
    return value.startswith(prefix) and len(value) > len(prefix)
