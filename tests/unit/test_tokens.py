"""Access tokens: verifying SDK-made tokens, minting tokens SDKs accept, request extraction."""

from __future__ import annotations

import time
import warnings

import jwt
import pytest
from livekit import api as lkapi
from livekit.protocol import models
from livekit.protocol.room import RoomConfiguration
from multidict import CIMultiDict

from trackyard import errors
from trackyard.auth.grants import ClaimGrants, VideoGrant
from trackyard.auth.tokens import LEEWAY_SECONDS, mint_token, token_from_request, verify_token

KEYS = {"devkey": "secret"}


@pytest.fixture(autouse=True)
def _short_dev_secret_ok():
    # "secret" is LiveKit's dev secret; PyJWT warns about its length when tests sign with it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        yield


def raw_token(claims: dict, *, secret: str = "secret", alg: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def base_claims(now: float | None = None, **extra) -> dict:
    t = int(time.time() if now is None else now)
    claims = {"iss": "devkey", "sub": "alice", "nbf": t, "exp": t + 600, "video": {"roomJoin": True, "room": "r1"}}
    claims.update(extra)
    return claims


def expect_invalid_token(token: str, **kw) -> errors.Unauthenticated:
    with pytest.raises(errors.Unauthenticated) as info:
        verify_token(token, KEYS, **kw)
    assert info.value.msg.startswith("invalid authorization token: "), info.value.msg
    assert info.value.status == 401
    return info.value


# --- tokens made by LiveKit SDKs -------------------------------------------------------


def test_python_sdk_token_all_fields_come_through():
    tok = (
        lkapi.AccessToken("devkey", "secret")
        .with_identity("alice")
        .with_name("Alice")
        .with_metadata("m")
        .with_attributes({"a": "b"})
        .with_kind("agent")
        .with_grants(lkapi.VideoGrants(room_join=True, room="r1", can_publish_sources=["camera"]))
        .with_room_config(RoomConfiguration(name="r1", max_participants=3, empty_timeout=7))
        .to_jwt()
    )
    g = verify_token(tok, KEYS)
    assert g.api_key == "devkey"
    assert g.identity == "alice"
    assert g.name == "Alice"
    assert g.metadata == "m"
    assert g.attributes == {"a": "b"}
    assert g.kind == models.ParticipantInfo.Kind.AGENT
    assert g.video is not None
    assert g.video.room_join is True
    assert g.video.room == "r1"
    perm = g.video.permission()
    assert perm.can_publish is True
    assert list(perm.can_publish_sources) == [models.TrackSource.CAMERA]
    assert g.room_config is not None
    assert g.room_config.name == "r1"
    assert g.room_config.max_participants == 3
    assert g.room_config.empty_timeout == 7
    assert abs(g.expires_at - (time.time() + 6 * 3600)) < 120


def test_node_style_token_without_typ_and_sub_verifies():
    # Node's livekit-server-sdk: header {"alg":"HS256"} only, no sub when there is no identity.
    claims = base_claims()
    del claims["sub"]
    tok = jwt.encode(claims, "secret", algorithm="HS256", headers={"typ": None})
    header = jwt.get_unverified_header(tok)
    assert header == {"alg": "HS256"}
    g = verify_token(tok, KEYS)
    assert g.identity == ""
    assert g.video is not None and g.video.room == "r1"


def test_identity_falls_back_to_jti():
    g = verify_token(raw_token(base_claims(sub="", jti="legacy-id")), KEYS)
    assert g.identity == "legacy-id"
    g = verify_token(raw_token(base_claims(jti="ignored")), KEYS)
    assert g.identity == "alice"


def test_kind_claim_mapping():
    for name, value in [("ingress", models.ParticipantInfo.Kind.INGRESS), ("sip", models.ParticipantInfo.Kind.SIP),
                        ("bridge", models.ParticipantInfo.Kind.BRIDGE), ("nonsense", models.ParticipantInfo.Kind.STANDARD),
                        ("", models.ParticipantInfo.Kind.STANDARD)]:
        assert verify_token(raw_token(base_claims(kind=name)), KEYS).kind == value, name


def test_room_config_snake_case_and_unknown_fields():
    claims = base_claims(roomConfig={"max_participants": 5, "departureTimeout": 9, "someFutureField": 1})
    g = verify_token(raw_token(claims), KEYS)
    assert g.room_config.max_participants == 5
    assert g.room_config.departure_timeout == 9


# --- grant defaults --------------------------------------------------------------------


def test_default_permissions_from_minimal_video_grant():
    g = verify_token(raw_token(base_claims()), KEYS)
    perm = g.video.permission()
    assert perm.can_publish is True
    assert perm.can_subscribe is True
    assert perm.can_publish_data is True
    assert perm.can_update_metadata is False
    assert perm.can_subscribe_metrics is False
    assert perm.hidden is False
    assert list(perm.can_publish_sources) == []


def test_can_publish_data_follows_can_publish_unless_set():
    g = verify_token(raw_token(base_claims(video={"roomJoin": True, "room": "r1", "canPublish": False})), KEYS)
    perm = g.video.permission()
    assert perm.can_publish is False
    assert perm.can_publish_data is False
    assert perm.can_subscribe is True

    video = {"roomJoin": True, "room": "r1", "canPublish": False, "canPublishData": True}
    perm = verify_token(raw_token(base_claims(video=video)), KEYS).video.permission()
    assert perm.can_publish is False
    assert perm.can_publish_data is True


def test_video_grant_flags_and_sources_map_to_permission():
    video = {
        "roomJoin": True, "room": "r1", "canSubscribe": False, "canUpdateOwnMetadata": True, "hidden": True,
        "recorder": True, "agent": True, "canSubscribeMetrics": True, "canManageAgentSession": True,
        "canPublishSources": ["microphone", "screen_share", "screen_share_audio"], "unknownKey": 1,
    }
    perm = verify_token(raw_token(base_claims(video=video)), KEYS).video.permission()
    assert perm.can_subscribe is False
    assert perm.can_update_metadata is True
    assert (perm.hidden, perm.recorder, perm.agent) == (True, True, True)
    assert perm.can_subscribe_metrics is True
    assert perm.can_manage_agent_session is True
    assert list(perm.can_publish_sources) == [
        models.TrackSource.MICROPHONE, models.TrackSource.SCREEN_SHARE, models.TrackSource.SCREEN_SHARE_AUDIO,
    ]


def test_video_grant_claim_round_trip():
    v = VideoGrant(room_join=True, room="r1", can_publish=False, can_publish_sources=["camera"], destination_room="d")
    claim = v.to_claim()
    assert claim == {"roomJoin": True, "room": "r1", "canPublish": False, "canPublishSources": ["camera"],
                     "destinationRoom": "d"}
    assert VideoGrant.from_claim(claim) == v
    assert VideoGrant().to_claim() == {}


@pytest.mark.parametrize("bad", [{"roomJoin": "yes"}, {"room": 5}, {"canPublishSources": "camera"},
                                 {"canPublish": 1}])
def test_video_grant_wrong_types_raise_value_error(bad):
    with pytest.raises(ValueError):
        VideoGrant.from_claim(bad)


# --- rejections ------------------------------------------------------------------------


def test_expired_beyond_leeway_fails():
    now = time.time()
    tok = raw_token(base_claims(now=now - 3600, exp=int(now) - LEEWAY_SECONDS - 5))
    err = expect_invalid_token(tok)
    assert "expired" in err.msg


def test_expired_within_leeway_passes():
    now = time.time()
    tok = raw_token(base_claims(now=now - 3600, exp=int(now) - LEEWAY_SECONDS + 20))
    assert verify_token(tok, KEYS).identity == "alice"


def test_explicit_clock_and_leeway():
    tok = raw_token(base_claims(now=1000))  # nbf 1000, exp 1600
    assert verify_token(tok, KEYS, now=1650).identity == "alice"
    expect_invalid_token(tok, now=1650, leeway=0)
    expect_invalid_token(tok, now=900, leeway=10)


def test_nbf_in_future_beyond_leeway_fails_within_passes():
    now = int(time.time())
    err = expect_invalid_token(raw_token(base_claims(nbf=now + LEEWAY_SECONDS + 30, exp=now + 3600)))
    assert "nbf" in err.msg
    assert verify_token(raw_token(base_claims(nbf=now + 30, exp=now + 3600)), KEYS).identity == "alice"


def test_missing_exp_fails():
    claims = base_claims()
    del claims["exp"]
    err = expect_invalid_token(raw_token(claims))
    assert "exp" in err.msg


def test_wrong_secret_fails():
    err = expect_invalid_token(raw_token(base_claims(), secret="not-the-secret"))
    assert "Signature" in err.msg or "signature" in err.msg


@pytest.mark.parametrize("iss", ["otherkey", None, ""])
def test_unknown_or_missing_api_key(iss):
    claims = base_claims(iss=iss)
    if iss is None:
        del claims["iss"]
    with pytest.raises(errors.Unauthenticated) as info:
        verify_token(raw_token(claims), KEYS)
    assert info.value.msg == "invalid API key"


def test_alg_none_fails():
    tok = jwt.encode(base_claims(), None, algorithm="none")
    assert tok.endswith(".")
    expect_invalid_token(tok)


def test_hs512_fails():
    expect_invalid_token(raw_token(base_claims(), secret="secret" * 11, alg="HS512"))
    expect_invalid_token(raw_token(base_claims(), alg="HS384"))


def test_forged_alg_none_header_fails():
    # rewriting the header of a valid token to alg "none" must not get past verification
    good = raw_token(base_claims())
    _, payload, sig = good.split(".")
    forged_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    expect_invalid_token(f"{forged_header}.{payload}.{sig}")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "....", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.x"])
def test_garbage_fails(garbage):
    expect_invalid_token(garbage)


@pytest.mark.parametrize("extra", [
    {"video": "roomJoin"},
    {"video": ["x"]},
    {"video": {"roomJoin": "true", "room": "r1"}},
    {"video": {"roomJoin": True, "room": ["r1"]}},
    {"attributes": {"a": 1}},
    {"name": 3},
    {"roomConfig": "r1"},
    {"roomConfig": {"maxParticipants": "lots"}},
    {"exp": "tomorrow"},
])
def test_wrongly_typed_claims_fail(extra):
    expect_invalid_token(raw_token(base_claims(**extra)))


# --- minting ---------------------------------------------------------------------------


def test_minted_token_verifies_with_livekit_and_with_us():
    video = VideoGrant(room_join=True, room="r1", can_publish=False, can_publish_sources=["microphone"],
                       can_update_own_metadata=True)
    rc = RoomConfiguration(name="r1", max_participants=4)
    tok = mint_token("devkey", "secret", identity="bob", name="Bob", video=video, metadata="md",
                     attributes={"k": "v"}, kind="sip", room_config=rc, room_preset="p", sha256="abc",
                     ttl_seconds=600)

    assert jwt.get_unverified_header(tok) == {"alg": "HS256", "typ": "JWT"}

    lk = lkapi.TokenVerifier("devkey", "secret").verify(tok)
    assert lk.identity == "bob"
    assert lk.name == "Bob"
    assert lk.metadata == "md"
    assert lk.attributes == {"k": "v"}
    assert lk.kind == "sip"
    assert lk.video.room_join is True
    assert lk.video.room == "r1"
    assert lk.video.can_publish is False
    assert lk.video.can_publish_sources == ["microphone"]
    assert lk.video.can_update_own_metadata is True
    assert lk.room_config.max_participants == 4
    assert lk.room_preset == "p"
    assert lk.sha256 == "abc"

    ours = verify_token(tok, KEYS)
    assert ours.identity == "bob"
    assert ours.name == "Bob"
    assert ours.kind == models.ParticipantInfo.Kind.SIP
    assert ours.video == video
    assert ours.room_config == rc
    assert ours.room_preset == "p"
    assert ours.sha256 == "abc"
    perm = ours.video.permission()
    assert perm.can_publish is False and perm.can_publish_data is False
    assert abs(ours.expires_at - (time.time() + 600)) < 5


def test_minted_claims_are_minimal_and_timed():
    tok = mint_token("devkey", "secret", identity="bob", video=VideoGrant(room_join=True, room="r"), now=1000,
                     ttl_seconds=60)
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert claims == {"iss": "devkey", "sub": "bob", "nbf": 1000, "exp": 1060,
                      "video": {"roomJoin": True, "room": "r"}}


def test_minted_token_expires():
    tok = mint_token("devkey", "secret", identity="bob", ttl_seconds=10, now=time.time() - 3600)
    expect_invalid_token(tok)
    with pytest.raises(jwt.ExpiredSignatureError):
        lkapi.TokenVerifier("devkey", "secret").verify(tok)


def test_extra_claims_are_merged():
    tok = mint_token("devkey", "secret", identity="bob", extra_claims={"jti": "j1", "custom": 1})
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert claims["jti"] == "j1" and claims["custom"] == 1
    assert verify_token(tok, KEYS).identity == "bob"


def test_minted_with_other_secret_rejected():
    tok = mint_token("devkey", "other-secret", identity="bob")
    expect_invalid_token(tok)


def test_claim_grants_defaults():
    g = ClaimGrants()
    assert (g.identity, g.kind, g.video, g.room_config, g.attributes) == ("", 0, None, None, {})


# --- token_from_request ----------------------------------------------------------------


def test_header_wins_over_query():
    assert token_from_request({"Authorization": "Bearer hdr"}, {"access_token": "qry"}) == "hdr"


def test_non_bearer_header_is_an_error_even_with_query_token():
    with pytest.raises(errors.Unauthenticated) as info:
        token_from_request({"Authorization": "Basic x"}, {"access_token": "qry"})
    assert info.value.msg == "invalid authorization header. Must start with Bearer "


def test_bearer_prefix_is_case_sensitive():
    with pytest.raises(errors.Unauthenticated):
        token_from_request({"Authorization": "bearer x"}, {})


def test_header_name_case_insensitive():
    assert token_from_request({"authorization": "Bearer low"}, {}) == "low"
    assert token_from_request({"AUTHORIZATION": "Bearer up"}, {}) == "up"
    assert token_from_request(CIMultiDict({"authorization": "Bearer ci"}), {}) == "ci"


def test_query_fallback_and_nothing():
    assert token_from_request({}, {"access_token": "qry"}) == "qry"
    assert token_from_request(CIMultiDict(), {"other": "x"}) is None
    assert token_from_request({}, {}) is None


def test_end_to_end_from_request():
    tok = mint_token("devkey", "secret", identity="carol", video=VideoGrant(room_join=True, room="r"))
    assert verify_token(token_from_request({"authorization": f"Bearer {tok}"}, {}), KEYS).identity == "carol"
