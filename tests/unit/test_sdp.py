"""Tests for trackyard.media.sdp (parse/serialize) and trackyard.media.negotiation (answers,
subscriber offers), against the libwebrtc SDP captured from the livekit Python SDK 1.2.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from trackyard.media.negotiation import (
    SendTrack,
    build_answer,
    build_offer,
    negotiate_codecs,
    track_mids,
)
from trackyard.media.sdp import (
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    Candidate,
    Codec,
    MediaSection,
    Rid,
    SdpError,
    SessionDescription,
    Simulcast,
    SimulcastRid,
    is_ice_restart,
    mid_to_track_info,
    parse_sdp,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "sdp"
PREFIX = "python-sdk-1.2.1_"

UFRAG = "tYrd"
PWD = "0123456789abcdefghijklmn"
FP = ":".join(["AB"] * 32)
CANDIDATES = [("10.77.0.1", 7882)]


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{PREFIX}{name}.sdp").read_bytes().decode()


def fixture(name: str) -> SessionDescription:
    return parse_sdp(fixture_text(name))


def answer(offer: SessionDescription, **kw) -> SessionDescription:
    kw.setdefault("candidates", CANDIDATES)
    return build_answer(offer, ice_ufrag=UFRAG, ice_pwd=PWD, fingerprint=FP, **kw)


def reparse(sd: SessionDescription) -> SessionDescription:
    text = sd.to_sdp()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    again = parse_sdp(text)
    assert again == sd
    return again


def fixture_names() -> list[str]:
    assert FIXTURES.is_dir(), f"SDP fixtures missing: {FIXTURES}"
    return sorted(p.name for p in FIXTURES.glob("*.sdp"))


# -- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_round_trip(name: str) -> None:
    text = (FIXTURES / name).read_bytes().decode()
    sd = parse_sdp(text)
    assert sd.media
    # libwebrtc's line order is ours: byte-identical, and parse(serialize(x)) == x
    assert sd.to_sdp() == text
    reparse(sd)
    # LF-only input parses to the same model
    assert parse_sdp(text.replace("\r\n", "\n")) == sd


@pytest.mark.parametrize(
    "name,kinds",
    [
        ("v1-join-offer", ["audio"] * 3 + ["video"] * 3 + ["application"]),
        ("v1-offer_publish-audio", ["audio"] * 3 + ["video"] * 3 + ["application", "audio"]),
        ("v1-offer_after-unpublish", ["audio"] * 3 + ["video"] * 3 + ["application", "audio"]),
        ("v1-ice-restart-offer", ["audio"] * 3 + ["video"] * 3 + ["application"]),
        (
            "v0-publisher-offer_audio-and-simulcast-video",
            ["audio"] * 3 + ["video"] * 3 + ["audio", "video", "application"],
        ),
        ("v0-subscriber-answer_data-only", ["application"]),
        ("v0-subscriber-answer_audio", ["application", "audio"]),
    ],
)
def test_fixture_sections(name: str, kinds: list[str]) -> None:
    sd = fixture(name)
    assert [m.kind for m in sd.media] == kinds
    assert sd.bundle_mids == [m.mid for m in sd.media]


def test_parse_v0_publisher_offer_details() -> None:
    sd = fixture("v0-publisher-offer_audio-and-simulcast-video")
    assert sd.origin.session_id == "7290133204678509244" and sd.origin.session_version == 3
    assert sd.extmap_allow_mixed and sd.msid_semantic == "WMS" and not sd.ice_lite
    assert sd.bundle_mids == [str(i) for i in range(7, 16)]

    first = sd.media[0]
    assert first.ice_ufrag == "UF7N" and first.ice_options == "trickle goog-sped-v1"
    assert first.setup == "actpass" and first.fingerprints[0].algorithm == "sha-256"
    assert sd.ice_credentials() == ("UF7N", "yaeY91nJpLr9n0IpU0TZPl7r")
    assert first.direction == "recvonly" and first.rtcp_mux and first.rtcp_rsize
    opus = first.codec(111)
    assert opus is not None and (opus.name, opus.clock_rate, opus.channels) == ("opus", 48000, 2)
    assert opus.params == {"minptime": "10", "stereo": "1", "useinbandfec": "1"}
    assert opus.rtcp_fb == ["transport-cc"]
    red = first.codec(63)
    assert red is not None and red.fmtp == "111/111" and red.params == {"": "111/111"}
    assert first.codec(0).name == "PCMU"  # static pt with rtpmap

    video = sd.section("10")
    assert video is not None and video.codec(97).apt == 96
    assert video.codec(96).rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    h264 = video.codec(109)
    assert h264.params["profile-level-id"] == "42e01f" and h264.params["packetization-mode"] == "1"

    audio = sd.section("13")
    assert audio.direction == "sendonly"
    assert audio.msids[0].stream_id == "-" and audio.msids[0].track_id == "0ad106d7-d015-42b3-9a9f-28009f471033"
    assert audio.ssrc_attribute(1133140111, "cname") == "gtUqd6xUtIXAU8Iv"

    sim = sd.section("14")
    assert [(r.id, r.direction) for r in sim.rids] == [("f", "send"), ("h", "send"), ("q", "send")]
    assert sim.simulcast is not None and sim.simulcast.send_rids == ["f", "h", "q"] and not sim.simulcast.recv
    ids = sim.extmap_ids()
    assert (ids[EXT_MID], ids[EXT_RID], ids[EXT_RRID]) == (4, 10, 11)
    assert [c.name for c in sim.codecs] == ["VP8"]

    data = sd.section("15")
    assert data.is_datachannel and data.sctp_port == 5000 and data.max_message_size == 262144
    assert [a.name for a in data.other_attributes] == ["sctp-init"]


def test_parse_candidates() -> None:
    sd = fixture("v1-offer_after-unpublish")
    first = sd.media[0]
    assert first.port == 41969 and first.connection == "IN IP4 10.77.0.1"
    c = first.candidates[0]
    assert (c.foundation, c.component, c.transport, c.priority) == ("1684384935", 1, "udp", 2122260223)
    assert (c.ip, c.port, c.type) == ("10.77.0.1", 41969, "host")
    assert c.extensions == [("generation", "0"), ("network-id", "3"), ("network-cost", "50")]

    trickle = (
        "candidate:4123194844 1 udp 2122260223 10.77.0.1 60399 typ host generation 0 "
        "ufrag SOul network-id 3 network-cost 50"
    )
    parsed = Candidate.parse(trickle)
    assert str(parsed) == trickle and dict(parsed.extensions)["ufrag"] == "SOul"
    srflx = Candidate.parse("a=candidate:1 1 UDP 1686052607 1.2.3.4 5 typ srflx raddr 10.0.0.1 rport 6")
    assert dict(srflx.extensions) == {"raddr": "10.0.0.1", "rport": "6"}
    with pytest.raises(SdpError):
        Candidate.parse("candidate:1 1 udp")

    host = Candidate.host("10.77.0.1", 7882)
    assert host.priority == 2130706431 and Candidate.parse(str(host)) == host
    # ICE-TCP (RFC 6544): passive, below every UDP host candidate, and round-trips
    tcp = Candidate.host("10.77.0.1", 7881, transport="tcp")
    assert tcp.value().endswith(f" 1 tcp {tcp.priority} 10.77.0.1 7881 typ host tcptype passive")
    assert tcp.priority == (126 << 24) | ((4 << 13) + 8191) << 8 | 255
    assert tcp.priority < Candidate.host("10.77.0.2", 7882, index=9).priority < host.priority
    assert Candidate.parse(str(tcp)) == tcp and tcp.foundation != host.foundation


def test_parse_simulcast_rid_and_unknown_lines() -> None:
    text = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE a",
            "a=x-session-thing:42",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "c=IN IP4 0.0.0.0",
            "b=AS:2000",
            "a=mid:a",
            "a=extmap:7/sendonly urn:example:ext attr",
            "a=sendonly",
            "a=msid:s1 t1",
            "a=rtcp-mux",
            "a=rtcp-fb:* nack",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=ssrc-group:SIM 1 2 3",
            "a=ssrc-group:FID 1 11",
            "a=ssrc:1 cname:c",
            "a=rid:1 send pt=96,97;max-width=1280",
            "a=rid:2 send",
            "a=rid:3 send",
            "a=simulcast:send 1,~2;3 recv 4",
            "a=goog-sped-v1-thing",
            "",
        ]
    )
    sd = parse_sdp(text)
    media = sd.media[0]
    assert media.bandwidths == ["AS:2000"] and media.rtcp_fb_all == ["nack"]
    assert media.extmaps[0].direction == "sendonly" and media.extmaps[0].attributes == "attr"
    assert media.rids[0] == Rid("1", "send", [("pt", "96,97"), ("max-width", "1280")])
    assert media.rids[0].payload_types == [96, 97]
    assert media.simulcast == Simulcast(
        send=[[SimulcastRid("1"), SimulcastRid("2", paused=True)], [SimulcastRid("3")]],
        recv=[[SimulcastRid("4")]],
    )
    assert str(media.simulcast) == "send 1,~2;3 recv 4"
    assert [g.semantics for g in media.ssrc_groups] == ["SIM", "FID"]
    assert [a.name for a in media.other_attributes] == ["goog-sped-v1-thing"]
    assert [a.name for a in sd.other_attributes] == ["x-session-thing"]
    reparse(sd)


def test_parse_errors() -> None:
    with pytest.raises(SdpError):
        parse_sdp("hello")
    with pytest.raises(SdpError):
        parse_sdp("v=0\r\nm=audio\r\n")
    with pytest.raises(SdpError):
        parse_sdp("v=0\r\nm=audio 9 RTP/SAVPF 111\r\na=rtpmap:x opus/48000\r\n")
    with pytest.raises(SdpError):
        parse_sdp("m=audio 9 RTP/SAVPF 111\r\n")


def test_session_level_transport_fallback() -> None:
    sd = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
        "a=fingerprint:SHA-256 AA:BB\r\na=setup:actpass\r\nm=audio 9 RTP/SAVPF 0\r\n"
    )
    assert sd.ice_credentials() == ("u", "p")
    assert sd.fingerprint().algorithm == "sha-256" and sd.setup_role() == "actpass"
    assert sd.media[0].codec(0) is None  # no rtpmap line, nothing invented
    reparse(sd)


# -- answers ----------------------------------------------------------------------------


def assert_server_transport(ans: SessionDescription, bundle: list[str]) -> None:
    assert ans.ice_lite
    assert ans.bundle_mids == bundle
    for media in ans.media:
        assert media.ice_ufrag == UFRAG and media.ice_pwd == PWD
        assert media.fingerprints[0].algorithm == "sha-256" and media.fingerprints[0].value == FP
        assert media.setup == "passive"
        assert media.ice_options is None  # never echo trickle goog-sped-v1
    # every accepted section carries the host candidates (peers that keep a transport per
    # section find them too); rejected sections carry none
    for media in ans.media:
        if media.rejected:
            assert not media.candidates and media.port == 0
        else:
            assert [(c.ip, c.port, c.type) for c in media.candidates] == [("10.77.0.1", 7882, "host")]
            assert media.end_of_candidates and media.port == 7882 and media.connection == "IN IP4 10.77.0.1"
    text = ans.to_sdp()
    assert "sctp-init" not in text and "goog-sped" not in text
    assert "telephone-event" not in text and "G722" not in text and "ulpfec" not in text


def test_answer_v1_join_offer() -> None:
    offer = fixture("v1-join-offer")
    ans = reparse(answer(offer))
    assert [(m.kind, m.mid) for m in ans.media] == [(m.kind, m.mid) for m in offer.media]
    assert_server_transport(ans, [str(i) for i in range(7)])
    assert ans.extmap_allow_mixed
    for media in ans.media[:6]:
        # recvonly sections with no down-track bound yet: inactive, not an unbound sendonly
        assert media.direction == "inactive" and media.rtcp_mux and media.rtcp_rsize and not media.msids
    for media in ans.media[:3]:
        assert [c.name for c in media.codecs] == ["opus", "red"]
        assert media.codec(111).fmtp == "minptime=10;useinbandfec=1"
        assert media.codec(63).fmtp == "111/111"
    for offered, media in zip(offer.media[3:6], ans.media[3:6]):
        # the RID header-extension rule: ids kept, already in the first answer
        ids, offered_ids = media.extmap_ids(), offered.extmap_ids()
        for uri in (EXT_MID, EXT_RID, EXT_RRID):
            assert ids[uri] == offered_ids[uri]
        assert "urn:ietf:params:rtp-hdrext:toffset" not in ids
        names = [c.name for c in media.codecs]
        assert names[:2] == ["VP8", "rtx"] and "ulpfec" not in names and "red" not in names
        assert media.codecs[2].params["profile-level-id"] == "42e01f"  # H264 preference
        assert all(c.params.get("packetization-mode") == "1" for c in media.codecs if c.name == "H264")
        assert all(c.params.get("profile-id", "0") == "0" for c in media.codecs if c.name == "VP9")
        assert media.codec(96).fmtp is None  # x-google-start-bitrate not echoed
        assert media.codec(96).rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    data = ans.media[6]
    assert data.proto == "UDP/DTLS/SCTP" and data.formats == ["webrtc-datachannel"]
    assert data.sctp_port == 5000 and data.max_message_size == 262144 and not data.other_attributes


def test_answer_v0_publisher_offer_with_simulcast() -> None:
    offer = fixture("v0-publisher-offer_audio-and-simulcast-video")
    ans = reparse(answer(offer))
    assert_server_transport(ans, [str(i) for i in range(7, 16)])
    assert [m.direction for m in ans.media[:6]] == ["inactive"] * 6  # v1 leftovers

    audio = ans.section("13")
    assert audio.direction == "recvonly" and not audio.msids and not audio.ssrcs
    assert [c.name for c in audio.codecs] == ["opus", "red"]
    assert audio.codec(111).fmtp == "minptime=10;stereo=1;useinbandfec=1"
    assert audio.codec(111).rtcp_fb == ["transport-cc"]

    video = ans.section("14")
    assert video.direction == "recvonly"
    assert [c.name for c in video.codecs] == ["VP8"] and video.formats == ["96"]
    assert [(r.id, r.direction, r.restrictions) for r in video.rids] == [
        ("f", "recv", []),
        ("h", "recv", []),
        ("q", "recv", []),
    ]
    assert str(video.simulcast) == "recv f;h;q"
    offered_ids = offer.section("14").extmap_ids()
    ids = video.extmap_ids()
    for uri in (EXT_MID, EXT_RID, EXT_RRID):
        assert ids[uri] == offered_ids[uri]
    assert {e.id for e in video.extmaps} <= {e.id for e in offer.section("14").extmaps}
    text = ans.to_sdp()
    assert "a=simulcast:recv f;h;q\r\n" in text and "a=rid:f recv\r\n" in text
    assert "a=ice-lite\r\n" in text and "a=setup:passive\r\n" in text

    data = ans.section("15")
    assert data.sctp_port == 5000 and data.max_message_size == 262144


def test_answer_simulcast_restrictions_and_paused() -> None:
    offer = fixture("v0-publisher-offer_audio-and-simulcast-video")
    video = offer.section("14")
    video.rids = [
        Rid("q", "send", [("pt", "96,120"), ("max-width", "320")]),
        Rid("h", "send", [("pt", "120")]),  # no accepted pt left → dropped
        Rid("f", "send"),
    ]
    video.simulcast = Simulcast(send=[[SimulcastRid("q")], [SimulcastRid("h")], [SimulcastRid("f", True)]])
    out = answer(offer).section("14")
    assert [str(r) for r in out.rids] == ["q recv pt=96", "f recv"]
    assert str(out.simulcast) == "recv q;~f"


def test_answer_ice_restart_offer() -> None:
    join, restart = fixture("v1-join-offer"), fixture("v1-ice-restart-offer")
    assert is_ice_restart(join, restart) and not is_ice_restart(join, fixture("v1-join-offer"))
    ans = build_answer(restart, ice_ufrag="new1", ice_pwd="newpassword0123456789abc", fingerprint=FP, candidates=CANDIDATES)
    assert {m.ice_ufrag for m in ans.media} == {"new1"}
    assert ans.bundle_mids == [str(i) for i in range(7)]
    audio = ans.media[0]
    # the restart offer dropped abs-send-time/transport-cc for audio; we only keep what is offered
    assert audio.extmap_ids() == {"urn:ietf:params:rtp-hdrext:ssrc-audio-level": 1, EXT_MID: 4}
    # This offer followed a negotiation with a test peer whose answer dropped the RID
    # extensions: libwebrtc re-offers only what was negotiated, so they are gone for good.
    # That is why the first answer must keep them (checked in test_answer_v1_join_offer).
    for offered, media in zip(restart.media[3:6], ans.media[3:6]):
        assert EXT_RID not in offered.extmap_ids()
        assert media.extmap_ids() == offered.extmap_ids() == {
            "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 2,
            EXT_MID: 4,
        }


def test_answer_publish_then_unpublish() -> None:
    published = answer(fixture("v1-offer_publish-audio"))
    assert published.section("7").direction == "recvonly"
    assert published.bundle_mids == [str(i) for i in range(8)]
    # the tag section (mid 0) carries the candidates even though the offer embedded its own
    assert published.media[0].candidates[0].ip == "10.77.0.1" and published.media[0].port == 7882

    after = fixture("v1-offer_after-unpublish")
    assert after.section("7").direction == "recvonly"
    ans = answer(after)
    assert ans.section("7").direction == "inactive"  # the section stays, nothing flows either way
    assert ans.bundle_mids == [str(i) for i in range(8)] and ans.section("7").port == 7882
    assert mid_to_track_info(after) == {}

    # the flipped section can carry a down-track: recvonly → sendonly
    track = SendTrack.for_track("PA_remote0001", "TR_remoteaudio1", 1111, kind="audio")
    bound = reparse(answer(after, senders={"7": track}))
    assert bound.section("7").direction == "sendonly"
    assert bound.section("7").msids[0].stream_id == "PA_remote0001|TR_remoteaudio1"


def test_answer_v1_subscription_senders() -> None:
    offer = fixture("v1-join-offer")
    senders = {
        "0": SendTrack.for_track("PA_pub", "TR_aud", 1001, kind="audio", codecs=("opus",)),
        "3": SendTrack.for_track("PA_pub", "TR_vid", 2001, rtx_ssrc=2002, kind="video", codecs=("VP8",)),
        "6": SendTrack.for_track("PA_pub", "TR_oops", 3001),  # data section: ignored
    }
    ans = reparse(answer(offer, senders=senders))
    audio, video = ans.section("0"), ans.section("3")
    assert audio.direction == "sendonly" and video.direction == "sendonly"
    assert [c.name for c in audio.codecs] == ["opus"]
    assert [c.name for c in video.codecs] == ["VP8", "rtx"]
    assert str(audio.msids[0]) == "PA_pub|TR_aud TR_aud"
    assert str(video.msids[0]) == "PA_pub|TR_vid TR_vid"
    assert [(g.semantics, g.ssrcs) for g in video.ssrc_groups] == [("FID", [2001, 2002])]
    assert [str(s) for s in video.ssrcs] == [
        "2001 cname:PA_pub",
        "2001 msid:PA_pub|TR_vid TR_vid",
        "2002 cname:PA_pub",
        "2002 msid:PA_pub|TR_vid TR_vid",
    ]
    assert ans.section("1").direction == "inactive"
    assert track_mids(ans) == {"TR_aud": "0", "TR_vid": "3"}
    # the RID extensions stay on the sendonly video section too
    assert EXT_RID in video.extmap_ids()


def test_answer_sender_codec_mismatch_is_not_bound() -> None:
    offer = fixture("v1-join-offer")
    track = SendTrack.for_track("PA_p", "TR_t", 5, kind="video", codecs=("H265",))
    media = answer(offer, senders={"3": track}).section("3")
    assert media.direction == "inactive" and not media.msids and media.port == 7882
    assert media.codecs[0].name == "VP8"


def test_answer_direction_policy() -> None:
    offer = fixture("v0-publisher-offer_audio-and-simulcast-video")
    offer.section("13").direction = "sendrecv"
    assert answer(offer).section("13").direction == "recvonly"
    track = SendTrack.for_track("PA_p", "TR_a", 7, kind="audio")
    assert answer(offer, senders={"13": track}).section("13").direction == "sendrecv"

    seen = []

    def policy(section: MediaSection, proposed: str) -> str:
        seen.append((section.mid, proposed))
        return "inactive" if section.mid == "13" else "sendrecv"  # sendrecv gets clipped

    ans = answer(offer, senders={"13": track}, direction_policy=policy)
    assert ans.section("13").direction == "inactive" and not ans.section("13").msids
    assert ans.section("14").direction == "recvonly" and ans.section("14").simulcast is not None
    assert ans.section("7").direction == "inactive"  # recvonly offer, no track → cannot send
    assert ("13", "sendrecv") in seen


MINIMAL_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 42 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2 3",
        "m=video 9 UDP/TLS/RTP/SAVPF 100 101",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + FP,
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:100 H265/90000",
        "a=rtpmap:101 rtx/90000",
        "a=fmtp:101 apt=100",
        "m=text 9 UDP/TLS/RTP/SAVPF 98",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "m=video 9 UDP/TLS/RTP/SAVPF 102 103 104 105",
        "c=IN IP4 0.0.0.0",
        "a=mid:2",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 packetization-mode=0;profile-level-id=42e01f",
        "a=rtpmap:103 H264/90000",
        "a=fmtp:103 profile-level-id=4d001f;packetization-mode=1;level-asymmetry-allowed=1;x-google-max-bitrate=9",
        "a=rtpmap:104 H264/90000",
        "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:105 rtx/90000",
        "a=fmtp:105 apt=104",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:3",
        "a=sctp-port:5000",
        "a=max-message-size:1073741823",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=mid:4",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "",
    ]
)


def test_answer_rejects_what_it_cannot_take() -> None:
    ans = reparse(answer(parse_sdp(MINIMAL_OFFER)))
    assert [(m.kind, m.mid, m.port) for m in ans.media] == [
        ("video", "0", 0),  # no common codec
        ("text", "1", 0),  # unknown kind
        ("video", "2", 7882),
        ("application", "3", 7882),
        ("audio", "4", 0),  # not in the offered BUNDLE group
    ]
    assert ans.bundle_mids == ["2", "3"]
    rejected = ans.section("0")
    assert rejected.direction == "inactive" and rejected.formats == ["100"] and not rejected.candidates
    h264 = ans.section("2")
    assert [c.pt for c in h264.codecs] == [104, 105, 103]  # 42e01f pm1 first, pm0 dropped
    assert h264.codec(103).fmtp == "profile-level-id=4d001f;packetization-mode=1;level-asymmetry-allowed=1"
    assert h264.direction == "recvonly"
    assert ans.section("3").max_message_size == 262144
    assert "x-google" not in ans.to_sdp()


def test_answer_max_message_size_default_and_red_needs_opus() -> None:
    offer = parse_sdp(MINIMAL_OFFER)
    offer.section("3").max_message_size = None
    assert answer(offer).section("3").max_message_size == 65536
    red_only = MediaSection("audio", 9, "UDP/TLS/RTP/SAVPF", ["63", "111"], mid="9")
    red_only.codecs = [Codec(63, "red", 48000, 2, "111/111"), Codec(111, "opus", 48000, 2)]
    assert [c.name for c in negotiate_codecs(red_only, ("red", "opus"))] == ["red", "opus"]
    assert [c.name for c in negotiate_codecs(red_only, ("red",))] == []


def test_answer_arguments() -> None:
    offer = fixture("v1-join-offer")
    with pytest.raises(ValueError):
        answer(offer, setup="actpass")
    no_cands = build_answer(offer, ice_ufrag=UFRAG, ice_pwd=PWD, fingerprint="sha-256 " + FP)
    assert not any(m.candidates for m in no_cands.media) and no_cands.media[0].port == 9
    v6 = answer(offer, candidates=[("fd00::1", 7882), ("10.77.0.1", 7882)])
    assert v6.media[0].connection == "IN IP6 fd00::1" and len(v6.media[0].candidates) == 2
    assert v6.media[0].candidates[0].priority > v6.media[0].candidates[1].priority


# -- helpers ----------------------------------------------------------------------------


def test_mid_to_track_info() -> None:
    info = mid_to_track_info(fixture("v0-publisher-offer_audio-and-simulcast-video"))
    assert list(info) == ["13", "14"]
    audio, video = info["13"], info["14"]
    assert (audio.kind, audio.track_id, audio.stream_id) == ("audio", "0ad106d7-d015-42b3-9a9f-28009f471033", "-")
    assert audio.ssrcs == [1133140111] and audio.rtx_ssrcs == {} and audio.rids == []
    assert [c.name for c in audio.codecs][:2] == ["opus", "red"]
    assert audio.extmap[EXT_MID] == 4
    assert video.track_id == "1f8fe51d-7c75-45dc-9e84-43edde5fb3bc"
    assert video.rids == ["f", "h", "q"] and video.ssrcs == []
    assert video.extmap[EXT_RID] == 10 and video.extmap[EXT_RRID] == 11
    assert [c.pt for c in video.codecs] == [96]

    publish = mid_to_track_info(fixture("v1-offer_publish-audio"))
    assert list(publish) == ["7"] and publish["7"].track_id == "8644a19a-0888-4c75-983b-958b88c00a6c"
    assert publish["7"].ssrcs == [3892592204]

    plan_b = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
        "a=mid:v\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
        "a=ssrc-group:FID 10 11\r\na=ssrc:10 cname:x\r\na=ssrc:10 msid:s t\r\na=ssrc:11 cname:x\r\n"
        "a=rid:a send\r\na=rid:b send\r\n"
    )
    v = mid_to_track_info(plan_b)["v"]
    assert (v.stream_id, v.track_id, v.ssrcs, v.rtx_ssrcs, v.rids) == ("s", "t", [10], {10: 11}, ["a", "b"])


# -- server offers (v0 subscriber connection) -------------------------------------------


def offer_for(tracks, previous=None, **kw) -> SessionDescription:
    kw.setdefault("candidates", CANDIDATES)
    return build_offer(ice_ufrag=UFRAG, ice_pwd=PWD, fingerprint=FP, tracks=tracks, previous=previous, **kw)


def check_msid_and_ssrcs(sd: SessionDescription) -> None:
    for media in sd.media:
        if media.direction != "sendonly":
            assert not media.msids and not media.ssrcs
            continue
        msid = media.msids[0]
        assert "|" in msid.stream_id and msid.stream_id.startswith("PA_")
        assert msid.stream_id.split("|")[1] == msid.track_id and msid.track_id.startswith("TR_")
        for attr in media.ssrcs:
            if attr.attribute == "msid":
                assert attr.value == f"{msid.stream_id} {msid.track_id}"
        ssrcs = media.ssrc_list()
        assert all(media.ssrc_attribute(s, "cname") for s in ssrcs)
        assert all(media.ssrc_attribute(s, "msid") for s in ssrcs)


def test_build_offer_fresh() -> None:
    audio = SendTrack.for_track("PA_remote0001", "TR_remoteaudio1", 1234, kind="audio")
    video = SendTrack.for_track("PA_remote0001", "TR_remotevideo1", 5678, rtx_ssrc=5679, kind="video", codecs=("VP8",))
    sd = reparse(offer_for([audio, video]))
    assert sd.ice_lite and sd.bundle_mids == ["0", "1", "2"]
    assert [(m.kind, m.mid, m.direction) for m in sd.media] == [
        ("application", "0", None),
        ("audio", "1", "sendonly"),
        ("video", "2", "sendonly"),
    ]
    assert all(m.setup == "actpass" and m.ice_ufrag == UFRAG for m in sd.media)
    assert sd.media[0].candidates and sd.media[0].end_of_candidates and sd.media[0].port == 7882
    assert sd.media[0].sctp_port == 5000 and sd.media[0].max_message_size == 262144
    assert "a=msid:PA_remote0001|TR_remoteaudio1 TR_remoteaudio1\r\n" in sd.to_sdp()
    assert [c.name for c in sd.media[1].codecs] == ["opus", "red"]
    assert [c.name for c in sd.media[2].codecs] == ["VP8", "rtx"]
    assert sd.media[2].ssrc_groups[0].ssrcs == [5678, 5679]
    check_msid_and_ssrcs(sd)
    assert track_mids(sd) == {"TR_remoteaudio1": "1", "TR_remotevideo1": "2"}
    # extension ids agree across the bundle
    ids: dict[str, int] = {}
    for media in sd.media:
        for ext in media.extmaps:
            assert ids.setdefault(ext.uri, ext.id) == ext.id

    data_only = offer_for([])
    assert [m.kind for m in data_only.media] == ["application"]
    with pytest.raises(ValueError):
        offer_for([], data_channel=False)
    with pytest.raises(ValueError):
        offer_for([SendTrack("PA_a|TR_b", "TR_b", 1)])  # no kind


def test_build_offer_renegotiation() -> None:
    a = SendTrack.for_track("PA_x", "TR_a", 1, kind="audio")
    b = SendTrack.for_track("PA_x", "TR_b", 2, kind="video", rtx_ssrc=3)
    c = SendTrack.for_track("PA_y", "TR_c", 4, kind="audio")
    d = SendTrack.for_track("PA_y", "TR_d", 5, kind="audio")
    first = offer_for([a, b])
    second = reparse(offer_for([b, c], previous=first))
    assert second.origin.session_id == first.origin.session_id
    assert second.origin.session_version == first.origin.session_version + 1
    assert [(m.mid, m.kind, m.direction) for m in second.media] == [
        ("0", "application", None),
        ("1", "audio", "inactive"),  # TR_a gone; not recycled in the same round
        ("2", "video", "sendonly"),
        ("3", "audio", "sendonly"),
    ]
    assert track_mids(second) == {"TR_b": "2", "TR_c": "3"}
    check_msid_and_ssrcs(second)

    third = reparse(offer_for([b, c, d], previous=second))
    assert track_mids(third) == {"TR_d": "1", "TR_b": "2", "TR_c": "3"}  # mid 1 recycled
    assert third.bundle_mids == ["0", "1", "2", "3"]

    fourth = offer_for([b, c, d, a], previous=third, recycle=False)
    assert track_mids(fourth)["TR_a"] == "4"

    # a previous offer without a data section gets it appended, order kept
    no_data = offer_for([a], data_channel=False)
    assert [m.mid for m in no_data.media] == ["0"]
    with_data = offer_for([a], previous=no_data)
    assert [(m.mid, m.kind) for m in with_data.media] == [("0", "audio"), ("1", "application")]


# -- cross-check with aiortc (if installed) ---------------------------------------------


def _aiortc():
    return pytest.importorskip("aiortc", minversion="1.16.0")


async def test_aiortc_accepts_our_subscriber_offer() -> None:
    aiortc = _aiortc()
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        audio = SendTrack.for_track("PA_remote0001", "TR_remoteaudio1", 1234, kind="audio")
        video = SendTrack.for_track("PA_remote0001", "TR_remotevideo1", 5678, rtx_ssrc=5679, kind="video", codecs=("VP8",))
        offer = offer_for([audio, video], candidates=[("127.0.0.1", 9)])
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=offer.to_sdp(), type="offer"))
        reply = await pc.createAnswer()  # no setLocalDescription: nothing is gathered or sent
        ans = parse_sdp(reply.sdp)
        assert [(m.kind, m.mid) for m in ans.media] == [("application", "0"), ("audio", "1"), ("video", "2")]
        assert ans.section("1").direction == "recvonly" and ans.section("2").direction == "recvonly"
        assert ans.section("2").codecs[0].name == "VP8"
        assert ans.setup_role(ans.media[0]) == "active"
    finally:
        await pc.close()


async def test_aiortc_accepts_our_answer() -> None:
    aiortc = _aiortc()
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        pc.createDataChannel("_reliable")
        await pc.setLocalDescription(await pc.createOffer())
        offer = parse_sdp(pc.localDescription.sdp)
        ans = reparse(answer(offer, candidates=[("127.0.0.1", 9)]))
        assert [m.direction for m in ans.media if m.is_rtp] == ["recvonly", "recvonly"]
        assert all(m.port != 0 for m in ans.media)
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=ans.to_sdp(), type="answer"))
        assert pc.signalingState == "stable"
        await asyncio.sleep(0)
    finally:
        await pc.close()


def test_simulcast_rids_map_to_layers_by_rank() -> None:
    from trackyard.media.simulcast import simulcast_layer

    assert [simulcast_layer(["f", "h", "q"], r) for r in ("q", "h", "f")] == [0, 1, 2]
    assert [simulcast_layer(["h", "q"], r) for r in ("q", "h")] == [0, 1]  # h is the top of two
    assert simulcast_layer(["q", "h", "f"], "x") == 0
    assert [simulcast_layer(["a", "b"], r) for r in ("a", "b")] == [0, 1]


def test_subscriber_settings_choose_a_layer() -> None:
    from livekit.protocol import models

    from trackyard.media.simulcast import layer_for_settings

    track = models.TrackInfo(type=models.TrackType.VIDEO, layers=[
        models.VideoLayer(quality=models.VideoQuality.HIGH, width=1280, height=720),
        models.VideoLayer(quality=models.VideoQuality.MEDIUM, width=640, height=360),
        models.VideoLayer(quality=models.VideoQuality.LOW, width=320, height=180)])
    q = models.VideoQuality
    assert [layer_for_settings(track, quality, 0, 0) for quality in (q.LOW, q.MEDIUM, q.HIGH)] == [0, 1, 2]
    assert layer_for_settings(track, q.OFF, 0, 0) is None
    assert layer_for_settings(track, q.HIGH, 320, 180) == 0  # adaptive stream: the rendered size wins
    assert layer_for_settings(track, q.HIGH, 600, 300) == 1
    assert layer_for_settings(track, q.LOW, 1920, 1080) == 2
    two = models.TrackInfo(layers=[models.VideoLayer(quality=q.LOW, width=320, height=180),
                                   models.VideoLayer(quality=q.MEDIUM, width=640, height=360)])
    assert layer_for_settings(two, q.HIGH, 0, 0) == 1
