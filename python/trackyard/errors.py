"""One error hierarchy for trackyard, mapped to Twirp codes and HTTP statuses.

Twirp code → HTTP status follows twirp's ServerHTTPStatusFromErrorCode, which LiveKit's
server and SDKs rely on (see docs/api.md).
"""

from __future__ import annotations

TWIRP_STATUS = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
}


class TrackyardError(Exception):
    """Base error: carries a Twirp code, a message and optional metadata."""

    code = "internal"

    def __init__(self, msg: str, *, meta: dict[str, str] | None = None, code: str | None = None):
        super().__init__(msg)
        self.msg = msg
        self.meta = dict(meta or {})
        if code is not None:
            if code not in TWIRP_STATUS:
                raise ValueError(f"unknown twirp code {code!r}")
            self.code = code

    @property
    def status(self) -> int:
        return TWIRP_STATUS[self.code]

    def twirp_body(self) -> dict:
        body: dict = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return body


class InvalidArgument(TrackyardError):
    code = "invalid_argument"


class Malformed(TrackyardError):
    code = "malformed"


class NotFound(TrackyardError):
    code = "not_found"


class Unauthenticated(TrackyardError):
    code = "unauthenticated"


class PermissionDenied(TrackyardError):
    code = "permission_denied"


class FailedPrecondition(TrackyardError):
    code = "failed_precondition"


class ResourceExhausted(TrackyardError):
    code = "resource_exhausted"


class Unimplemented(TrackyardError):
    code = "unimplemented"


class Unavailable(TrackyardError):
    code = "unavailable"


class BadRoute(TrackyardError):
    code = "bad_route"


class Internal(TrackyardError):
    code = "internal"


class ConfigError(Exception):
    """A configuration problem; the message names the offending key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem
