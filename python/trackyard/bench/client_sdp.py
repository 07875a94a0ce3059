"""The SDP a simulated participant writes and reads, shaped like a libwebrtc client's.

- `publisher_offer`: the offer of a publisher connection: one sendonly section per track
  (Opus; VP8 with `a=rid`/`a=simulcast:send` for simulcast, no SSRC lines then, as the SDKs
  write it), then the data channel section; BUNDLE, rtcp-mux, `a=setup:actpass`, our host
  candidate; header extensions mid, rid, repaired rid, audio level, abs-send-time and
  transport-wide cc with libwebrtc's ids.
- `subscriber_answer`: the answer to the server's subscriber offer (`a=setup:active`),
  built by the server's own negotiation rules (`media.negotiation.build_answer`) but as a
  full ICE agent.
- `remote_candidates`: the server's candidates a simulated peer may check (see `allowed`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass, field

from trackyard.media.negotiation import build_answer
from trackyard.media.sdp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    EXT_TWCC,
    Candidate,
    Codec,
    Extmap,
    Fingerprint,
    Group,
    MediaSection,
    Msid,
    Origin,
    Rid,
    SessionDescription,
    Simulcast,
    SimulcastRid,
    SsrcAttribute,
)

OPUS_PT = 111
VP8_PT = 96
AUDIO_EXTMAPS = [(1, EXT_AUDIO_LEVEL), (2, EXT_ABS_SEND_TIME), (3, EXT_TWCC), (4, EXT_MID)]
VIDEO_EXTMAPS = [(2, EXT_ABS_SEND_TIME), (3, EXT_TWCC), (4, EXT_MID), (10, EXT_RID), (11, EXT_RRID)]
VIDEO_FB = ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]


@dataclass
class OfferedTrack:
    """A track in a publisher offer: `cid` is the AddTrack cid (the msid track id)."""

    kind: str
    mid: str
    cid: str
    cname: str
    ssrc: int | None = None  # audio, and video without simulcast
    rids: list[str] = field(default_factory=list)  # simulcast, lowest first


def ext_ids(kind: str) -> dict[str, int]:
    return {uri: i for i, uri in (AUDIO_EXTMAPS if kind == "audio" else VIDEO_EXTMAPS)}


def _section(track: OfferedTrack) -> MediaSection:
    if track.kind == "audio":
        codecs = [Codec(OPUS_PT, "opus", 48000, 2, "minptime=10;useinbandfec=1", ["transport-cc"])]
        extmaps = AUDIO_EXTMAPS
    else:
        codecs = [Codec(VP8_PT, "VP8", 90000, None, None, list(VIDEO_FB))]
        extmaps = VIDEO_EXTMAPS
    media = MediaSection(track.kind, 9, "UDP/TLS/RTP/SAVPF", [str(c.pt) for c in codecs])
    media.connection = "IN IP4 0.0.0.0"
    media.rtcp = "9 IN IP4 0.0.0.0"
    media.mid = track.mid
    media.extmaps = [Extmap(i, uri) for i, uri in extmaps]
    media.direction = "sendonly"
    media.msids = [Msid("-", track.cid)]
    media.rtcp_mux = True
    media.rtcp_rsize = True
    media.codecs = codecs
    if track.ssrc is not None:
        media.ssrcs = [SsrcAttribute(track.ssrc, "cname", track.cname),
                       SsrcAttribute(track.ssrc, "msid", f"- {track.cid}")]
    if track.rids:
        order = list(reversed(track.rids))  # libwebrtc lists f;h;q
        media.rids = [Rid(r, "send") for r in order]
        media.simulcast = Simulcast(send=[[SimulcastRid(r)] for r in order])
    return media


def _data_section(mid: str) -> MediaSection:
    media = MediaSection("application", 9, "UDP/DTLS/SCTP", ["webrtc-datachannel"])
    media.connection = "IN IP4 0.0.0.0"
    media.mid = mid
    media.sctp_port = 5000
    media.max_message_size = 262144
    return media


def publisher_offer(*, ufrag: str, pwd: str, fingerprint: str, candidate: tuple[str, int],
                    tracks: list[OfferedTrack], version: int = 2) -> SessionDescription:
    sd = SessionDescription(origin=Origin("-", str(secrets.randbits(62) + 1), version), msid_semantic="WMS",
                            extmap_allow_mixed=True)
    sections = [_section(t) for t in tracks]
    sections.append(_data_section(str(len(tracks))))
    host = Candidate.host(candidate[0], candidate[1])
    for media in sections:
        media.ice_ufrag, media.ice_pwd, media.ice_options = ufrag, pwd, "trickle"
        media.fingerprints = [Fingerprint("sha-256", fingerprint)]
        media.setup = "actpass"
        media.candidates = [host]
        media.extmap_allow_mixed = media.kind != "application"
    sd.media = sections
    sd.groups = [Group("BUNDLE", [m.mid or "" for m in sections])]
    return sd


def subscriber_answer(offer: SessionDescription, *, ufrag: str, pwd: str, fingerprint: str,
                      candidate: tuple[str, int]) -> SessionDescription:
    answer = build_answer(offer, ice_ufrag=ufrag, ice_pwd=pwd, fingerprint=f"sha-256 {fingerprint}",
                          candidates=[candidate], setup="active")
    answer.ice_lite = False
    return answer


def dtls_role(remote: SessionDescription) -> str:
    """Our DTLS role from the remote description's a=setup: 'client' unless it is active."""
    setups = {m.setup or remote.setup for m in remote.media if not m.rejected}
    return "server" if "active" in setups else "client"


def allowed(ip: str, loopback_only: bool) -> bool:
    """Whether a server candidate may be checked: UDP-reachable IPv4/IPv6, and only loopback
    addresses when the server was named by a loopback address (the bench then never sends
    to anything else)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False  # mDNS names and the like
    return addr.is_loopback if loopback_only else not addr.is_unspecified


def remote_candidates(sd: SessionDescription, loopback_only: bool) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for media in sd.media:
        if media.rejected:
            continue
        for c in media.candidates:
            if c.transport.lower() == "udp" and allowed(c.ip, loopback_only) and (c.ip, c.port) not in found:
                found.append((c.ip, c.port))
    return found


def candidate_from_trickle(candidate_init: str, loopback_only: bool) -> tuple[str, int] | None:
    """A server trickle (JSON RTCIceCandidateInit) → (ip, port), if usable."""
    try:
        text = json.loads(candidate_init).get("candidate", "")
        c = Candidate.parse(text)
    except (ValueError, AttributeError):
        return None
    if c.transport.lower() != "udp" or not allowed(c.ip, loopback_only):
        return None
    return c.ip, c.port
