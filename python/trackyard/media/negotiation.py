"""Offer/answer building for trackyard as an ICE-lite SFU (uses the model in `media.sdp`).

`build_answer` answers a client offer (v1 single PeerConnection, v0 publisher connection);
`build_offer` writes the server's offer for the v0 subscriber connection, including
renegotiations. Both start from fresh sections, so nothing unknown from the client (e.g.
`a=sctp-init`, `ice-options:goog-sped-v1`) is ever echoed.

Decisions (see livekit-signaling.md §3–§5):

* Transport: `a=ice-lite` at session level; one BUNDLE transport; ICE/DTLS attributes and our
  host candidates (then `a=end-of-candidates`) in every accepted section, whose `m=` port and
  `c=` carry the first candidate. A BUNDLE-aware peer uses the tag section's; a peer that keeps
  a transport per section (aiortc, for sections added after it connected) still finds them.
  The Rust SDK never sees an empty trickle this way.
* Direction: the answer inverts the offer. sendonly → recvonly. recvonly → sendonly only when
  the caller binds a `SendTrack` to that mid, else inactive: an unbound "sendonly" would make
  libwebrtc fire `ontrack` for a track that does not exist, and later never fire it again for
  the real one (it fires when the receive direction becomes active). sendrecv → sendrecv with a
  bound track, else recvonly. inactive → inactive. `direction_policy` may override, but the
  result is clipped to what the offer allows.
* Codecs: intersection with what the engine forwards, in our preference order, keeping the
  offerer's payload types: Opus 48000/2 (+ RED referencing an accepted Opus), VP8, H.264
  (packetization-mode=1 only — a pm0 receiver cannot take FU-A/STAP-A packets forwarded from a
  pm1 publisher; profile-level-id echoed exactly, 42e01f first), VP9 profile 0, AV1 profile 0;
  each followed by its RTX. Audio RED is ranked after Opus by default, so publishers send
  plain Opus unless a caller puts "red" first.
* Header extensions: only known ones, with the offered ids. For video `sdes:mid`,
  `rtp-stream-id` and `repaired-rtp-stream-id` are always kept when offered, whatever the
  direction (the RID header-extension rule; ids are shared across the BUNDLE).
* Simulcast: `a=rid:<id> send` + `a=simulcast:send ...` are answered with `a=rid:<id> recv` and
  `a=simulcast:recv ...` in the same order with the same ids (paused `~` kept; `pt=`
  restrictions narrowed to the accepted payload types, other restrictions dropped).
* Sections that cannot be accepted (unknown kind or proto, no common codec, outside the
  offered BUNDLE group, rejected by the offerer) get port 0 and stay in place outside BUNDLE.
* Data: `UDP/DTLS/SCTP webrtc-datachannel`, `a=sctp-port:5000`, `a=max-message-size` =
  min(offered or 65536, 262144). The legacy `DTLS/SCTP 5000` + `a=sctpmap` form is rejected.
* Renegotiated server offers keep every previous section (mid, order). A section whose track
  went away becomes `a=inactive` (still bundled) and is recycled, same mid, for the next track
  of that kind — LiveKit's transceiver reuse; libwebrtc fires `ontrack` again when the section
  goes inactive → sendonly with the new msid.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .sdp import (
    EXT_ABS_CAPTURE_TIME,
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_DEPENDENCY_DESCRIPTOR,
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    EXT_TWCC,
    EXT_VIDEO_LAYERS_ALLOCATION,
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
    SsrcGroup,
)

__all__ = [
    "SendTrack",
    "DirectionPolicy",
    "build_answer",
    "build_offer",
    "track_mids",
    "negotiate_codecs",
    "DEFAULT_AUDIO_CODECS",
    "DEFAULT_VIDEO_CODECS",
    "DEFAULT_AUDIO_EXTENSIONS",
    "DEFAULT_VIDEO_EXTENSIONS",
    "MAX_MESSAGE_SIZE",
]

DEFAULT_AUDIO_CODECS: tuple[str, ...] = ("opus", "red")
DEFAULT_VIDEO_CODECS: tuple[str, ...] = ("VP8", "H264", "VP9", "AV1")
DEFAULT_AUDIO_EXTENSIONS: tuple[str, ...] = (EXT_MID, EXT_AUDIO_LEVEL, EXT_ABS_SEND_TIME, EXT_TWCC)
DEFAULT_VIDEO_EXTENSIONS: tuple[str, ...] = (
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    EXT_ABS_SEND_TIME,
    EXT_TWCC,
    EXT_DEPENDENCY_DESCRIPTOR,
    EXT_VIDEO_LAYERS_ALLOCATION,
    EXT_ABS_CAPTURE_TIME,
)
# Always kept when offered (BUNDLE demux and the RID header-extension rule).
_MANDATORY_EXTENSIONS = {"audio": {EXT_MID}, "video": {EXT_MID, EXT_RID, EXT_RRID}}
MAX_MESSAGE_SIZE = 262144
SCTP_PORT = 5000

_RTCP_FB = {
    "audio": ("transport-cc",),
    "video": ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"),
}
_FMTP_KEEP = {
    "opus": ("minptime", "useinbandfec", "stereo", "sprop-stereo", "usedtx"),
    "h264": ("level-asymmetry-allowed", "packetization-mode", "profile-level-id"),
    "vp9": ("profile-id",),
    "av1": ("level-idx", "profile", "tier"),
    "vp8": (),
    "rtx": ("apt", "rtx-time"),
}
_H264_PROFILES = ("42e0", "4200", "42c0", "4d00", "6400")
_RTP_PROTOS = ("UDP/TLS/RTP/SAVPF", "RTP/SAVPF", "TCP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP")
_SCTP_PROTOS = ("UDP/DTLS/SCTP", "TCP/DTLS/SCTP")

# What build_offer offers (payload types as libwebrtc numbers them). Subscribers get REMB and
# abs-send-time, not transport-cc: their receive-side estimate (REMB) drives the engine's layer
# caps (see docs/media.md, "Subscriber bandwidth"); with transport-cc libwebrtc sends no REMB.
_VIDEO_FB = [fb for fb in _RTCP_FB["video"] if fb != "transport-cc"]
_OFFER_CODECS: dict[str, list[Codec]] = {
    "audio": [
        Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
        Codec(63, "red", 48000, 2, "111/111"),
    ],
    "video": [
        Codec(96, "VP8", 90000, None, None, _VIDEO_FB),
        Codec(97, "rtx", 90000, None, "apt=96"),
        Codec(
            109,
            "H264",
            90000,
            None,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            _VIDEO_FB,
        ),
        Codec(114, "rtx", 90000, None, "apt=109"),
        Codec(98, "VP9", 90000, None, "profile-id=0", _VIDEO_FB),
        Codec(99, "rtx", 90000, None, "apt=98"),
        Codec(45, "AV1", 90000, None, "level-idx=5;profile=0;tier=0", _VIDEO_FB),
        Codec(46, "rtx", 90000, None, "apt=45"),
    ],
}
# One id per uri across every section of our offers (BUNDLE shares the id space).
_OFFER_EXTENSIONS: dict[str, list[tuple[int, str]]] = {
    "audio": [(1, EXT_AUDIO_LEVEL), (2, EXT_ABS_SEND_TIME), (4, EXT_MID)],
    "video": [(2, EXT_ABS_SEND_TIME), (4, EXT_MID), (12, EXT_DEPENDENCY_DESCRIPTOR)],
}


@dataclass(frozen=True)
class SendTrack:
    """A track the server sends in one m-section (a subscriber's down-track).

    `stream_id` is LiveKit's packed `<PA_publisher>|<TR_track>` (both SDKs split it at `|`;
    the Python SDK ignores tracks whose stream id lacks it); `track_id` is the `TR_` sid.
    `codecs` narrows the codec names for this section (e.g. `("VP8",)` for a VP8-published
    track); `None` means the session preferences. `kind` is required by `build_offer`.
    """

    stream_id: str
    track_id: str
    ssrc: int
    rtx_ssrc: int | None = None
    kind: str | None = None
    cname: str | None = None
    codecs: tuple[str, ...] | None = None

    @classmethod
    def for_track(
        cls,
        participant_sid: str,
        track_sid: str,
        ssrc: int,
        *,
        rtx_ssrc: int | None = None,
        kind: str | None = None,
        cname: str | None = None,
        codecs: tuple[str, ...] | None = None,
    ) -> SendTrack:
        """A track sent as `a=msid:<participant_sid>|<track_sid> <track_sid>`."""
        return cls(f"{participant_sid}|{track_sid}", track_sid, ssrc, rtx_ssrc, kind, cname, codecs)

    @property
    def effective_cname(self) -> str:
        return self.cname or self.stream_id.split("|", 1)[0]


DirectionPolicy = Callable[[MediaSection, str], str]
"""`(offered section, proposed answer direction) -> direction`. The result is clipped: we
receive only if the offer sends, and send only if the offer receives *and* a `SendTrack` is
bound to the mid (an answer never says sendonly without an msid)."""

CandidateLike = Candidate | tuple[str, int]


# -- small helpers ----------------------------------------------------------------------


def _fingerprint(value: str | Fingerprint) -> Fingerprint:
    if isinstance(value, Fingerprint):
        return value
    algorithm, sep, fp = value.strip().partition(" ")
    return Fingerprint(algorithm.lower(), fp.strip()) if sep else Fingerprint("sha-256", value.strip())


def _candidates(candidates: Sequence[CandidateLike]) -> list[Candidate]:
    out = []
    for i, c in enumerate(candidates):
        out.append(c if isinstance(c, Candidate) else Candidate.host(c[0], int(c[1]), index=i))
    return out


def _connection(ip: str) -> str:
    try:
        v6 = ipaddress.ip_address(ip).version == 6
    except ValueError:
        v6 = False
    return f"IN IP6 {ip}" if v6 else f"IN IP4 {ip}"


def _direction(send: bool, recv: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (send, recv), "inactive"
    )


def _has_send(direction: str) -> bool:
    return direction in ("sendrecv", "sendonly")


def _has_recv(direction: str) -> bool:
    return direction in ("sendrecv", "recvonly")


def _invert_ext_direction(direction: str | None) -> str | None:
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction or "", direction)


def _filter_fmtp(codec: Codec, keys: Sequence[str]) -> str | None:
    if not codec.fmtp:
        return None
    kept = []
    for part in codec.fmtp.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip().lower() in keys:
            kept.append(f"{key.strip()}={value.strip()}")
    return ";".join(kept) or None


def _answer_codec(codec: Codec, kind: str) -> Codec:
    name = codec.name.lower()
    if name == "red":
        fmtp = codec.fmtp  # "111/111": payload types, kept verbatim
    else:
        fmtp = _filter_fmtp(codec, _FMTP_KEEP.get(name, ()))
    fb = [] if name == "rtx" else [f for f in codec.rtcp_fb if f in _RTCP_FB[kind]]
    return Codec(codec.pt, codec.name, codec.clock_rate, codec.channels, fmtp, fb)


def _h264_rank(codec: Codec) -> int | None:
    """None = not accepted; lower = preferred."""
    params = codec.params
    if params.get("packetization-mode", "0") != "1":
        return None
    plid = params.get("profile-level-id", "42001f").lower()
    if plid == "42e01f":
        return 0
    for i, prefix in enumerate(_H264_PROFILES):
        if plid.startswith(prefix):
            return i + 1
    return None


def _primary_rank(codec: Codec, kind: str) -> int | None:
    """Whether the engine forwards this primary codec (and its rank among same-name entries)."""
    name = codec.name.lower()
    params = codec.params
    if kind == "audio":
        if name == "opus":
            return 0 if codec.clock_rate == 48000 and codec.channels == 2 else None
        return None
    if codec.clock_rate != 90000:
        return None
    if name == "vp8":
        return 0
    if name == "h264":
        return _h264_rank(codec)
    if name == "vp9":
        return 0 if params.get("profile-id", "0") == "0" else None
    if name == "av1":
        return 0 if params.get("profile", "0") == "0" else None
    return None


def negotiate_codecs(section: MediaSection, preferences: Sequence[str]) -> list[Codec]:
    """The answer's codec list for an offered RTP section: accepted primaries in preference
    order (then offer order / H.264 rank), each followed by its RTX; offered payload types."""
    kind = section.kind
    order = {f: i for i, f in enumerate(section.formats)}
    offered = [c for c in section.codecs if str(c.pt) in order and c.name]
    offered.sort(key=lambda c: order[str(c.pt)])
    prefs = [p.lower() for p in preferences]
    chosen: list[tuple[int, int, int, Codec]] = []
    for idx, codec in enumerate(offered):
        name = codec.name.lower()
        if name not in prefs or name in ("rtx", "red"):
            continue
        rank = _primary_rank(codec, kind)
        if rank is not None:
            chosen.append((prefs.index(name), rank, idx, codec))
    accepted_pts = {c.pt for *_, c in chosen}
    if kind == "audio" and "red" in prefs:
        for idx, codec in enumerate(offered):
            if codec.is_named("red") and codec.clock_rate == 48000:
                refs = [p for p in (codec.fmtp or "").split("/") if p.strip()]
                if refs and all(r.strip().isdigit() and int(r) in accepted_pts for r in refs):
                    chosen.append((prefs.index("red"), 0, idx, codec))
    chosen.sort(key=lambda t: t[:3])
    out: list[Codec] = []
    for *_, codec in chosen:
        out.append(_answer_codec(codec, kind))
        if kind == "video":
            rtx = next((c for c in offered if c.is_named("rtx") and c.apt == codec.pt), None)
            if rtx is not None:
                out.append(_answer_codec(rtx, kind))
    return out


def _transport(
    media: MediaSection, ufrag: str, pwd: str, fingerprint: Fingerprint, setup: str
) -> MediaSection:
    media.ice_ufrag, media.ice_pwd, media.setup = ufrag, pwd, setup
    media.fingerprints = [fingerprint]
    return media


def _attach_sender(media: MediaSection, track: SendTrack) -> None:
    media.msids = [Msid(track.stream_id, track.track_id)]
    msid = f"{track.stream_id} {track.track_id}"
    ssrcs = [track.ssrc]
    if track.rtx_ssrc is not None and any(c.is_named("rtx") for c in media.codecs):
        ssrcs.append(track.rtx_ssrc)
        media.ssrc_groups = [SsrcGroup("FID", list(ssrcs))]
    for ssrc in ssrcs:
        media.ssrcs += [
            SsrcAttribute(ssrc, "cname", track.effective_cname),
            SsrcAttribute(ssrc, "msid", msid),
        ]


def _place_candidates(sd: SessionDescription, candidates: list[Candidate]) -> None:
    """Candidates go to every accepted section: a BUNDLE-aware peer uses the tag section's, and
    a peer that keeps a transport per section (aiortc for sections it added later) finds them too."""
    if not candidates:
        return
    for media in sd.media:
        if media.rejected:
            continue
        media.candidates = list(candidates)
        media.end_of_candidates = True
        media.port = candidates[0].port
        media.connection = _connection(candidates[0].ip)


def _new_session(session_id: str | None, version: int) -> SessionDescription:
    sid = session_id or str(secrets.randbits(62) + 1)
    return SessionDescription(origin=Origin("-", sid, version), msid_semantic="WMS", ice_lite=True)


# -- answers ----------------------------------------------------------------------------


def _rejected(offered: MediaSection, ufrag: str, pwd: str, fp: Fingerprint, setup: str) -> MediaSection:
    media = MediaSection(offered.kind, 0, offered.proto, offered.formats[:1] or ["0"])
    media.connection = "IN IP4 0.0.0.0"
    media.mid = offered.mid
    if offered.kind in ("audio", "video"):
        media.direction = "inactive"
        media.rtcp_mux = True
        first = offered.codec(int(media.formats[0])) if media.formats[0].isdigit() else None
        if first is not None and first.name:
            media.codecs = [Codec(first.pt, first.name, first.clock_rate, first.channels)]
    return _transport(media, ufrag, pwd, fp, setup)


def _answer_simulcast(offered: MediaSection, answer: MediaSection) -> None:
    sim = offered.simulcast
    if sim is None or not sim.send or not _has_recv(answer.effective_direction):
        return
    accepted_pts = {c.pt for c in answer.codecs}
    rids: dict[str, Rid] = {}
    for rid in offered.rids:
        if rid.direction != "send":
            continue
        restrictions: list[tuple[str, str | None]] = []
        if rid.payload_types:
            pts = [p for p in rid.payload_types if p in accepted_pts]
            if not pts:
                continue
            restrictions.append(("pt", ",".join(map(str, pts))))
        rids[rid.id] = Rid(rid.id, "recv", restrictions)
    streams = []
    for stream in sim.send:
        alts = [SimulcastRid(a.rid, a.paused) for a in stream if a.rid in rids]
        if alts:
            streams.append(alts)
    if not streams:
        return
    used = {a.rid for stream in streams for a in stream}
    answer.rids = [r for r in rids.values() if r.id in used]
    answer.simulcast = Simulcast(recv=streams)


def _answer_rtp(
    offered: MediaSection,
    *,
    codecs: Sequence[str],
    extensions: Sequence[str],
    sender: SendTrack | None,
    policy: DirectionPolicy | None,
) -> MediaSection | None:
    kind = offered.kind
    offered_dir = offered.effective_direction
    may_send, may_recv = _has_recv(offered_dir), _has_send(offered_dir)

    if sender is not None and (sender.kind not in (None, kind) or not may_send):
        sender = None
    direction = _direction(sender is not None, may_recv)
    if policy is not None:
        wanted = policy(offered, direction)
        direction = _direction(_has_send(wanted) and sender is not None, _has_recv(wanted) and may_recv)
    if not _has_send(direction):
        sender = None
    chosen: list[Codec] = []
    if sender is not None and sender.codecs:
        chosen = negotiate_codecs(offered, sender.codecs)
        if not chosen:  # this section cannot carry the track: answer without it
            sender = None
            direction = _direction(False, _has_recv(direction))
    if not chosen:
        chosen = negotiate_codecs(offered, codecs)
    if not chosen:
        return None

    media = MediaSection(kind, 9, offered.proto, [str(c.pt) for c in chosen])
    media.connection = "IN IP4 0.0.0.0"
    media.rtcp = "9 IN IP4 0.0.0.0"
    media.mid = offered.mid
    keep = set(extensions) | _MANDATORY_EXTENSIONS.get(kind, set())
    media.extmaps = [
        Extmap(e.id, e.uri, _invert_ext_direction(e.direction))
        for e in offered.extmaps
        if e.uri in keep
    ]
    media.extmap_allow_mixed = offered.extmap_allow_mixed
    media.direction = direction
    media.rtcp_mux = True
    media.rtcp_rsize = offered.rtcp_rsize
    media.codecs = chosen
    if sender is not None:
        _attach_sender(media, sender)
    _answer_simulcast(offered, media)
    return media


def _answer_data(offered: MediaSection, max_message_size: int) -> MediaSection | None:
    if offered.proto not in _SCTP_PROTOS or offered.formats != ["webrtc-datachannel"]:
        return None
    media = MediaSection("application", 9, offered.proto, ["webrtc-datachannel"])
    media.connection = "IN IP4 0.0.0.0"
    media.mid = offered.mid
    media.sctp_port = SCTP_PORT
    media.max_message_size = min(offered.max_message_size or 65536, max_message_size)
    return media


def build_answer(
    offer: SessionDescription,
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str | Fingerprint,
    candidates: Sequence[CandidateLike] = (),
    setup: str = "passive",
    audio_codecs: Sequence[str] = DEFAULT_AUDIO_CODECS,
    video_codecs: Sequence[str] = DEFAULT_VIDEO_CODECS,
    audio_extensions: Sequence[str] = DEFAULT_AUDIO_EXTENSIONS,
    video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS,
    senders: Mapping[str, SendTrack] | None = None,
    direction_policy: DirectionPolicy | None = None,
    accept_data: bool = True,
    max_message_size: int = MAX_MESSAGE_SIZE,
    session_id: str | None = None,
    session_version: int = 2,
) -> SessionDescription:
    """Answer a client offer as an ICE-lite server (see the module docstring for the rules).

    `fingerprint` is the DTLS certificate's sha-256 (`"AA:BB:..."` or `"sha-256 AA:BB:..."`);
    `candidates` are host `(ip, port)` pairs (or `Candidate`s) put in the BUNDLE-tag section;
    `senders` binds server down-tracks to the offer's mids (v1 subscriptions): those sections
    answer sendonly with `a=msid:<PA>|<TR> <TR>` and `a=ssrc` lines.
    """
    if setup not in ("active", "passive"):
        raise ValueError("an answer's setup must be 'active' or 'passive'")
    fp = _fingerprint(fingerprint)
    senders = senders or {}
    bundle = offer.bundle_mids
    first_live = next((m.mid for m in offer.media if not m.rejected and m.mid is not None), None)
    answer = _new_session(session_id, session_version)
    answer.extmap_allow_mixed = offer.extmap_allow_mixed
    accepted: list[str] = []
    for offered in offer.media:
        media: MediaSection | None = None
        in_bundle = offered.mid in bundle if bundle else offered.mid == first_live
        if not offered.rejected and offered.mid is not None and in_bundle:
            if offered.kind in ("audio", "video") and offered.proto in _RTP_PROTOS:
                media = _answer_rtp(
                    offered,
                    codecs=audio_codecs if offered.kind == "audio" else video_codecs,
                    extensions=audio_extensions if offered.kind == "audio" else video_extensions,
                    sender=senders.get(offered.mid),
                    policy=direction_policy,
                )
            elif offered.kind == "application" and accept_data:
                media = _answer_data(offered, max_message_size)
        if media is None:
            media = _rejected(offered, ice_ufrag, ice_pwd, fp, setup)
        else:
            _transport(media, ice_ufrag, ice_pwd, fp, setup)
            accepted.append(media.mid or "")
        answer.media.append(media)
    if accepted and bundle:  # never answer a BUNDLE group that was not offered
        order = {mid: i for i, mid in enumerate(bundle)}
        accepted.sort(key=lambda mid: order.get(mid, len(order)))
        answer.groups = [Group("BUNDLE", accepted)]
    _place_candidates(answer, _candidates(candidates))
    return answer


# -- offers (v0 subscriber connection) --------------------------------------------------


def _offer_section(kind: str, mid: str, track: SendTrack | None, prefs: Sequence[str]) -> MediaSection:
    names = [n.lower() for n in (track.codecs if track is not None and track.codecs else prefs)]
    catalogue = _OFFER_CODECS[kind]
    codecs: list[Codec] = []
    for name in names:
        for codec in catalogue:
            if codec.is_named(name) and codec not in codecs:
                codecs.append(copy.deepcopy(codec))
                rtx = [c for c in catalogue if c.is_named("rtx") and c.apt == codec.pt]
                codecs += [copy.deepcopy(c) for c in rtx]
    if not codecs:
        raise ValueError(f"no {kind} codec to offer for {names}")
    media = MediaSection(kind, 9, "UDP/TLS/RTP/SAVPF", [str(c.pt) for c in codecs])
    media.connection = "IN IP4 0.0.0.0"
    media.rtcp = "9 IN IP4 0.0.0.0"
    media.mid = mid
    media.extmaps = [Extmap(i, uri) for i, uri in _OFFER_EXTENSIONS[kind]]
    media.direction = "sendonly" if track is not None else "inactive"
    media.rtcp_mux = True
    media.rtcp_rsize = True
    media.codecs = codecs
    if track is not None:
        _attach_sender(media, track)
    return media


def _offer_data(mid: str, max_message_size: int) -> MediaSection:
    media = MediaSection("application", 9, "UDP/DTLS/SCTP", ["webrtc-datachannel"])
    media.connection = "IN IP4 0.0.0.0"
    media.mid = mid
    media.sctp_port = SCTP_PORT
    media.max_message_size = max_message_size
    return media


def build_offer(
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str | Fingerprint,
    candidates: Sequence[CandidateLike] = (),
    tracks: Sequence[SendTrack] = (),
    previous: SessionDescription | None = None,
    data_channel: bool = True,
    recycle: bool = True,
    audio_codecs: Sequence[str] = DEFAULT_AUDIO_CODECS,
    video_codecs: Sequence[str] = DEFAULT_VIDEO_CODECS,
    max_message_size: int = MAX_MESSAGE_SIZE,
    session_id: str | None = None,
) -> SessionDescription:
    """The server's offer on the v0 subscriber PeerConnection (`a=setup:actpass`, ICE-lite).

    Fresh offer: data section mid "0", then one sendonly section per track (mids "1", "2", ...).
    With `previous` (our last offer) the sections keep their mids and order: a track still in
    `tracks` keeps its section; a vanished one's section turns inactive; new tracks take an
    inactive section of their kind that was already inactive in `previous` (if `recycle`),
    else a new section with the next numeric mid. Every track needs `kind`.
    """
    fp = _fingerprint(fingerprint)
    prefs = {"audio": audio_codecs, "video": video_codecs}
    for t in tracks:
        if t.kind not in ("audio", "video"):
            raise ValueError(f"SendTrack {t.track_id} needs kind 'audio' or 'video'")
    wanted = {t.track_id: t for t in tracks}
    if previous is not None:
        offer = _new_session(previous.origin.session_id, previous.origin.session_version + 1)
    else:
        offer = _new_session(session_id, 2)

    placed: set[str] = set()
    free: list[MediaSection] = []  # inactive in `previous`, reusable
    sections: list[MediaSection] = []
    for old in previous.media if previous is not None else []:
        mid = old.mid or str(len(sections))
        if old.rejected:
            sections.append(copy.deepcopy(old))
        elif old.kind == "application":
            sections.append(_offer_data(mid, max_message_size))
        else:
            msid = old.primary_msid() if _has_send(old.effective_direction) else None
            track = wanted.get(msid.track_id) if msid and msid.track_id else None
            if track is not None and track.kind == old.kind and track.track_id not in placed:
                placed.add(track.track_id)
                sections.append(_offer_section(old.kind, mid, track, prefs[old.kind]))
            else:
                media = _offer_section(old.kind, mid, None, prefs[old.kind])
                sections.append(media)
                if old.effective_direction == "inactive":
                    free.append(media)
    if data_channel and not any(s.kind == "application" for s in sections):
        sections.append(_offer_data(_next_mid(sections), max_message_size))

    for track in tracks:
        if track.track_id in placed:
            continue
        placed.add(track.track_id)
        reuse = next((s for s in free if s.kind == track.kind), None) if recycle else None
        if reuse is not None:
            free.remove(reuse)
            kind = reuse.kind
            sections[sections.index(reuse)] = _offer_section(kind, reuse.mid or "", track, prefs[kind])
        else:
            kind = track.kind or ""
            sections.append(_offer_section(kind, _next_mid(sections), track, prefs[kind]))
    if not sections:
        raise ValueError("nothing to offer: no data channel and no tracks")

    for media in sections:
        _transport(media, ice_ufrag, ice_pwd, fp, "actpass")
    offer.media = sections
    bundled = [m.mid or "" for m in sections if not m.rejected]
    if bundled:
        offer.groups = [Group("BUNDLE", bundled)]
    _place_candidates(offer, _candidates(candidates))
    return offer


def _next_mid(sections: Sequence[MediaSection]) -> str:
    numbers = [int(m.mid) for m in sections if m.mid is not None and m.mid.isdigit()]
    return str(max(numbers) + 1 if numbers else len(sections))


def track_mids(sd: SessionDescription) -> dict[str, str]:
    """msid track id → mid for every section that sends (for `mid_to_track_id` and bookkeeping)."""
    out: dict[str, str] = {}
    for media in sd.media:
        if media.rejected or media.mid is None or not _has_send(media.effective_direction):
            continue
        msid = media.primary_msid()
        if msid is not None and msid.track_id:
            out[msid.track_id] = media.mid
    return out
