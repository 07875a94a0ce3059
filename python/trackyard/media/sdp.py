"""trackyard's own SDP model: parse, inspect and serialize WebRTC session descriptions.

Why not `aiortc.sdp`: it silently drops `a=rid`, `a=simulcast`, `a=extmap-allow-mixed` and
`a=rtcp-rsize` (dependencies.md §3.5), and an SFU that loses the rids cannot accept simulcast.
This module is standard-library only and keeps everything a libwebrtc offer carries:

* session level: `o=`, `s=`, `t=`, `c=`/`b=`, `a=group` (BUNDLE), `a=msid-semantic`,
  `a=extmap-allow-mixed`, `a=ice-lite`, and ICE/DTLS attributes (`ice-ufrag`, `ice-pwd`,
  `ice-options`, `fingerprint`, `setup`), which libwebrtc puts in every media section but other
  stacks may hoist to the session;
* per media section: kind, port (0 = rejected unless `a=bundle-only`), proto, formats, `c=`,
  `b=`, `a=rtcp`, mid, direction, msid(s), codecs (`rtpmap` + `fmtp` + `rtcp-fb` by payload
  type, in order), `extmap` (id, direction, uri), `rid` (id, direction, restrictions such as
  `pt=`), `simulcast` (send/recv streams with alternatives and paused `~` rids), `ssrc` and
  `ssrc-group` (FID, SIM), `rtcp-mux`, `rtcp-rsize`, candidates, `end-of-candidates`,
  `sctp-port`, `max-message-size`;
* anything else (new libwebrtc experiments such as `a=sctp-init:...`, unknown session lines)
  lands in `other_attributes` / `other_lines`, so a parse → serialize → parse round trip is
  lossless. Serialization writes libwebrtc's canonical line order with CRLF endings; for the
  captured libwebrtc offers the output is byte-identical to the input.

The answers and offers trackyard *sends* are built in `trackyard.media.negotiation` from fresh
sections, so unknown attributes are never echoed (libwebrtc would switch on experiments such as
"SPED" SCTP-over-DTLS only if the answer advertised them too), and `ice-options:... goog-sped-v1`
is never copied.

The RID header-extension rule (livekit-signaling.md §4): an answer to a video section that
offers simulcast must negotiate `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (and
`repaired-rtp-stream-id`, `sdes:mid`), otherwise libwebrtc refuses its own next offer
("negotiates simulcast but does not negotiate the RID RTP header extension"). Inside a BUNDLE the
extension ids are shared, so this already applies to the very first answer (the v1 join offer
with only recvonly video sections). `negotiation.build_answer` enforces it; `mid_to_track_info`
here exposes the offered ids so the media engine can read mid/rid from incoming RTP.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

__all__ = [
    "SdpError",
    "Origin",
    "Group",
    "Fingerprint",
    "Msid",
    "Codec",
    "Extmap",
    "Rid",
    "SimulcastRid",
    "Simulcast",
    "SsrcAttribute",
    "SsrcGroup",
    "Candidate",
    "Attribute",
    "MediaSection",
    "SessionDescription",
    "TrackSectionInfo",
    "parse_sdp",
    "mid_to_track_info",
    "is_ice_restart",
    "EXT_MID",
    "EXT_RID",
    "EXT_RRID",
    "EXT_AUDIO_LEVEL",
    "EXT_ABS_SEND_TIME",
    "EXT_TWCC",
    "EXT_DEPENDENCY_DESCRIPTOR",
    "EXT_VIDEO_LAYERS_ALLOCATION",
    "EXT_ABS_CAPTURE_TIME",
    "EXT_PLAYOUT_DELAY",
]

EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
EXT_DEPENDENCY_DESCRIPTOR = (
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
)
EXT_VIDEO_LAYERS_ALLOCATION = "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00"
EXT_ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
EXT_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# Static RTP payload types (RFC 3551) that may appear without an a=rtpmap line.
_STATIC_PT: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, None),
    8: ("PCMA", 8000, None),
    9: ("G722", 8000, None),
    13: ("CN", 8000, None),
}


class SdpError(ValueError):
    """The text is not a session description this module can make sense of."""


@dataclass
class Origin:
    """The `o=` line."""

    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Group:
    """`a=group:<semantics> <mid>...` (BUNDLE, LS, ...)."""

    semantics: str
    mids: list[str] = field(default_factory=list)


@dataclass
class Fingerprint:
    """`a=fingerprint:<algorithm> <AA:BB:...>`."""

    algorithm: str
    value: str


@dataclass
class Msid:
    """`a=msid:<stream id> [<track id>]`. LiveKit packs `<PA_sid>|<TR_sid>` into the stream id."""

    stream_id: str
    track_id: str | None = None

    def __str__(self) -> str:
        return self.stream_id if self.track_id is None else f"{self.stream_id} {self.track_id}"


@dataclass
class Codec:
    """One payload type: its `rtpmap`, raw `fmtp` parameter string and `rtcp-fb` values."""

    pt: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None
    rtcp_fb: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, str]:
        """`fmtp` as key/value pairs (`a=b;c=d`); a bare token such as RED's `111/111` is
        returned under the empty key."""
        out: dict[str, str] = {}
        if self.fmtp:
            for part in self.fmtp.split(";"):
                part = part.strip()
                if not part:
                    continue
                key, sep, value = part.partition("=")
                if sep:
                    out[key.strip().lower()] = value.strip()
                else:
                    out[""] = part
        return out

    @property
    def apt(self) -> int | None:
        """For RTX: the payload type this one repairs."""
        value = self.params.get("apt")
        return int(value) if value and value.isdigit() else None

    def is_named(self, name: str) -> bool:
        return self.name.lower() == name.lower()

    def rtpmap(self) -> str:
        base = f"{self.pt} {self.name}/{self.clock_rate}"
        return base if self.channels is None else f"{base}/{self.channels}"


@dataclass
class Extmap:
    """`a=extmap:<id>[/<direction>] <uri> [<attributes>]`."""

    id: int
    uri: str
    direction: str | None = None
    attributes: str | None = None

    def __str__(self) -> str:
        head = str(self.id) if self.direction is None else f"{self.id}/{self.direction}"
        tail = "" if self.attributes is None else f" {self.attributes}"
        return f"{head} {self.uri}{tail}"


@dataclass
class Rid:
    """`a=rid:<id> <send|recv> [<restrictions>]` (RFC 8851); restrictions kept in order."""

    id: str
    direction: str
    restrictions: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def payload_types(self) -> list[int]:
        for key, value in self.restrictions:
            if key == "pt" and value:
                return [int(p) for p in value.split(",") if p.strip().isdigit()]
        return []

    def __str__(self) -> str:
        if not self.restrictions:
            return f"{self.id} {self.direction}"
        rest = ";".join(k if v is None else f"{k}={v}" for k, v in self.restrictions)
        return f"{self.id} {self.direction} {rest}"


@dataclass
class SimulcastRid:
    """One rid inside an `a=simulcast` stream; `paused` is the `~` prefix."""

    rid: str
    paused: bool = False

    def __str__(self) -> str:
        return f"~{self.rid}" if self.paused else self.rid


def _streams_str(streams: list[list[SimulcastRid]]) -> str:
    return ";".join(",".join(str(alt) for alt in stream) for stream in streams)


@dataclass
class Simulcast:
    """`a=simulcast:send f;h;q recv a` (RFC 8853): each stream is a list of alternatives."""

    send: list[list[SimulcastRid]] = field(default_factory=list)
    recv: list[list[SimulcastRid]] = field(default_factory=list)

    @property
    def send_rids(self) -> list[str]:
        """First alternative of each send stream, in the offered order."""
        return [stream[0].rid for stream in self.send if stream]

    @property
    def recv_rids(self) -> list[str]:
        return [stream[0].rid for stream in self.recv if stream]

    def __str__(self) -> str:
        parts = []
        if self.send:
            parts.append(f"send {_streams_str(self.send)}")
        if self.recv:
            parts.append(f"recv {_streams_str(self.recv)}")
        return " ".join(parts)


@dataclass
class SsrcAttribute:
    """`a=ssrc:<ssrc> <attribute>[:<value>]` (cname, msid, ...)."""

    ssrc: int
    attribute: str
    value: str | None = None

    def __str__(self) -> str:
        tail = self.attribute if self.value is None else f"{self.attribute}:{self.value}"
        return f"{self.ssrc} {tail}"


@dataclass
class SsrcGroup:
    """`a=ssrc-group:<FID|SIM|...> <ssrc>...`."""

    semantics: str
    ssrcs: list[int] = field(default_factory=list)


@dataclass
class Candidate:
    """An ICE candidate line (`candidate:...`). `extensions` keeps every name/value pair after
    the type in order (`raddr`, `rport`, `generation`, `ufrag`, `network-id`, ...)."""

    foundation: str
    component: int
    transport: str
    priority: int
    ip: str
    port: int
    type: str
    extensions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """Parse `a=candidate:...`, `candidate:...` or the bare value."""
        text = text.strip()
        for prefix in ("a=", "candidate:"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        bits = text.split()
        if len(bits) < 8 or bits[6] != "typ":
            raise SdpError(f"bad candidate: {text!r}")
        try:
            ext = [(bits[i], bits[i + 1]) for i in range(8, len(bits) - 1, 2)]
            return cls(bits[0], int(bits[1]), bits[2], int(bits[3]), bits[4], int(bits[5]), bits[7], ext)
        except ValueError as exc:
            raise SdpError(f"bad candidate: {text!r}") from exc

    @classmethod
    def host(cls, ip: str, port: int, *, index: int = 0, transport: str = "udp") -> Candidate:
        """A host candidate with RFC 8445 priority (type preference 126, local preference
        decreasing with `index`) and a foundation derived from the address. A "tcp" one is
        passive (RFC 6544 `tcptype passive`: the peer connects) with the RFC 6544 local
        preference 2^13 * 4 (passive) + 8191 - index, below every UDP host candidate's."""
        tcp = transport.lower() == "tcp"
        local = (4 << 13) + 8191 - index if tcp else 65535 - index
        priority = (126 << 24) | (local << 8) | 255
        foundation = str(zlib.crc32(f"host {ip} {transport}".encode()))
        extensions = [("tcptype", "passive")] if tcp else []
        return cls(foundation, 1, transport, priority, ip, port, "host", extensions)

    def value(self) -> str:
        """The attribute value: what follows `a=candidate:`."""
        base = (
            f"{self.foundation} {self.component} {self.transport} {self.priority} "
            f"{self.ip} {self.port} typ {self.type}"
        )
        return base + "".join(f" {k} {v}" for k, v in self.extensions)

    def __str__(self) -> str:
        """The `candidate:...` string used in RTCIceCandidateInit / trickle."""
        return "candidate:" + self.value()


@dataclass
class Attribute:
    """An attribute this module does not interpret: `a=<name>[:<value>]`, kept verbatim."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass
class MediaSection:
    """One `m=` section and everything below it."""

    kind: str
    port: int = 9
    proto: str = "UDP/TLS/RTP/SAVPF"
    formats: list[str] = field(default_factory=list)
    title: str | None = None  # i=
    connection: str | None = None  # c= value, e.g. "IN IP4 0.0.0.0"
    bandwidths: list[str] = field(default_factory=list)  # b= values
    other_lines: list[str] = field(default_factory=list)  # k= and other non-a= lines
    rtcp: str | None = None  # a=rtcp value, e.g. "9 IN IP4 0.0.0.0"
    candidates: list[Candidate] = field(default_factory=list)
    end_of_candidates: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    setup: str | None = None
    mid: str | None = None
    bundle_only: bool = False
    extmaps: list[Extmap] = field(default_factory=list)
    extmap_allow_mixed: bool = False
    direction: str | None = None  # None = attribute absent (means sendrecv)
    msids: list[Msid] = field(default_factory=list)
    rtcp_mux: bool = False
    rtcp_mux_only: bool = False
    rtcp_rsize: bool = False
    rtcp_fb_all: list[str] = field(default_factory=list)  # a=rtcp-fb:* ...
    codecs: list[Codec] = field(default_factory=list)
    ssrc_groups: list[SsrcGroup] = field(default_factory=list)
    ssrcs: list[SsrcAttribute] = field(default_factory=list)
    rids: list[Rid] = field(default_factory=list)
    simulcast: Simulcast | None = None
    sctp_port: int | None = None
    max_message_size: int | None = None
    sctpmap: str | None = None  # legacy a=sctpmap value
    other_attributes: list[Attribute] = field(default_factory=list)

    # -- inspection ---------------------------------------------------------------------

    @property
    def rejected(self) -> bool:
        """Port 0 without `a=bundle-only`."""
        return self.port == 0 and not self.bundle_only

    @property
    def effective_direction(self) -> str:
        return self.direction or "sendrecv"

    @property
    def is_rtp(self) -> bool:
        return self.kind in ("audio", "video") and "RTP" in self.proto

    @property
    def is_datachannel(self) -> bool:
        return self.kind == "application" and "SCTP" in self.proto

    def codec(self, pt: int) -> Codec | None:
        for codec in self.codecs:
            if codec.pt == pt:
                return codec
        return None

    def extmap_ids(self) -> dict[str, int]:
        """uri → id."""
        return {e.uri: e.id for e in self.extmaps}

    def ssrc_attribute(self, ssrc: int, name: str) -> str | None:
        for attr in self.ssrcs:
            if attr.ssrc == ssrc and attr.attribute == name:
                return attr.value
        return None

    def ssrc_list(self) -> list[int]:
        """Distinct ssrcs in order of appearance (groups first, then a=ssrc lines)."""
        seen: dict[int, None] = {}
        for group in self.ssrc_groups:
            for ssrc in group.ssrcs:
                seen.setdefault(ssrc)
        for attr in self.ssrcs:
            seen.setdefault(attr.ssrc)
        return list(seen)

    def primary_msid(self) -> Msid | None:
        """The first `a=msid`, else the one carried by `a=ssrc:<n> msid:` (Plan B style)."""
        if self.msids:
            return self.msids[0]
        for attr in self.ssrcs:
            if attr.attribute == "msid" and attr.value:
                stream, _, track = attr.value.partition(" ")
                return Msid(stream, track or None)
        return None

    # -- serialization ------------------------------------------------------------------

    def lines(self) -> list[str]:
        out = [f"m={self.kind} {self.port} {self.proto} {' '.join(self.formats)}".rstrip()]
        if self.title is not None:
            out.append(f"i={self.title}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += self.other_lines
        if self.rtcp is not None:
            out.append(f"a=rtcp:{self.rtcp}")
        out += [f"a=candidate:{c.value()}" for c in self.candidates]
        if self.end_of_candidates:
            out.append("a=end-of-candidates")
        out += _transport_lines(self)
        if self.mid is not None:
            out.append(f"a=mid:{self.mid}")
        if self.bundle_only:
            out.append("a=bundle-only")
        out += [f"a=extmap:{e}" for e in self.extmaps]
        if self.extmap_allow_mixed:
            out.append("a=extmap-allow-mixed")
        if self.direction is not None:
            out.append(f"a={self.direction}")
        out += [f"a=msid:{m}" for m in self.msids]
        if self.rtcp_mux:
            out.append("a=rtcp-mux")
        if self.rtcp_mux_only:
            out.append("a=rtcp-mux-only")
        if self.rtcp_rsize:
            out.append("a=rtcp-rsize")
        out += [f"a=rtcp-fb:* {fb}" for fb in self.rtcp_fb_all]
        for codec in self.codecs:
            if codec.name:
                out.append(f"a=rtpmap:{codec.rtpmap()}")
            out += [f"a=rtcp-fb:{codec.pt} {fb}" for fb in codec.rtcp_fb]
            if codec.fmtp is not None:
                out.append(f"a=fmtp:{codec.pt} {codec.fmtp}")
        out += [f"a=ssrc-group:{g.semantics} {' '.join(map(str, g.ssrcs))}" for g in self.ssrc_groups]
        out += [f"a=ssrc:{s}" for s in self.ssrcs]
        out += [f"a=rid:{r}" for r in self.rids]
        if self.simulcast is not None:
            out.append(f"a=simulcast:{self.simulcast}")
        if self.sctp_port is not None:
            out.append(f"a=sctp-port:{self.sctp_port}")
        if self.max_message_size is not None:
            out.append(f"a=max-message-size:{self.max_message_size}")
        if self.sctpmap is not None:
            out.append(f"a=sctpmap:{self.sctpmap}")
        out += [f"a={a}" for a in self.other_attributes]
        return out


def _transport_lines(obj: MediaSection | SessionDescription) -> list[str]:
    out = []
    if obj.ice_ufrag is not None:
        out.append(f"a=ice-ufrag:{obj.ice_ufrag}")
    if obj.ice_pwd is not None:
        out.append(f"a=ice-pwd:{obj.ice_pwd}")
    if obj.ice_options is not None:
        out.append(f"a=ice-options:{obj.ice_options}")
    out += [f"a=fingerprint:{f.algorithm} {f.value}" for f in obj.fingerprints]
    if obj.setup is not None:
        out.append(f"a=setup:{obj.setup}")
    return out


@dataclass
class SessionDescription:
    """A whole SDP: session-level fields plus the ordered media sections."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    timing: str = "0 0"
    connection: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    extmap_allow_mixed: bool = False
    msid_semantic: str | None = None  # value after "a=msid-semantic:", e.g. "WMS" or "WMS *"
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    setup: str | None = None
    extmaps: list[Extmap] = field(default_factory=list)
    other_attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)  # session lines such as u=, e=, k=
    media: list[MediaSection] = field(default_factory=list)

    @property
    def bundle_mids(self) -> list[str]:
        """Mids of the first BUNDLE group (empty when there is none)."""
        for group in self.groups:
            if group.semantics == "BUNDLE":
                return list(group.mids)
        return []

    def section(self, mid: str) -> MediaSection | None:
        for media in self.media:
            if media.mid == mid:
                return media
        return None

    def ice_credentials(self, media: MediaSection | None = None) -> tuple[str | None, str | None]:
        """(ufrag, pwd) of a section (or of the first section), falling back to session level."""
        media = media if media is not None else (self.media[0] if self.media else None)
        ufrag = media.ice_ufrag if media is not None and media.ice_ufrag else self.ice_ufrag
        pwd = media.ice_pwd if media is not None and media.ice_pwd else self.ice_pwd
        return ufrag, pwd

    def fingerprint(self, media: MediaSection | None = None) -> Fingerprint | None:
        media = media if media is not None else (self.media[0] if self.media else None)
        fps = (media.fingerprints if media is not None else []) or self.fingerprints
        return fps[0] if fps else None

    def setup_role(self, media: MediaSection | None = None) -> str | None:
        media = media if media is not None else (self.media[0] if self.media else None)
        return (media.setup if media is not None else None) or self.setup

    def lines(self) -> list[str]:
        out = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out.append(f"t={self.timing}")
        out += self.other_lines
        out += [f"a=group:{g.semantics} {' '.join(g.mids)}".rstrip() for g in self.groups]
        if self.extmap_allow_mixed:
            out.append("a=extmap-allow-mixed")
        if self.msid_semantic is not None:
            out.append(f"a=msid-semantic: {self.msid_semantic}")
        if self.ice_lite:
            out.append("a=ice-lite")
        out += _transport_lines(self)
        out += [f"a=extmap:{e}" for e in self.extmaps]
        out += [f"a={a}" for a in self.other_attributes]
        for media in self.media:
            out += media.lines()
        return out

    def to_sdp(self) -> str:
        """The SDP text, CRLF line endings, trailing CRLF."""
        return "\r\n".join(self.lines()) + "\r\n"

    def __str__(self) -> str:
        return self.to_sdp()


# -- parsing ----------------------------------------------------------------------------


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise SdpError(f"bad {what}: {value!r}") from exc


def _parse_streams(text: str) -> list[list[SimulcastRid]]:
    if text.startswith("rid="):  # old draft syntax
        text = text[4:]
    streams = []
    for stream in text.split(";"):
        alts = []
        for alt in stream.split(","):
            alt = alt.strip()
            if alt:
                alts.append(SimulcastRid(alt[1:], True) if alt.startswith("~") else SimulcastRid(alt))
        if alts:
            streams.append(alts)
    return streams


def _parse_simulcast(value: str) -> Simulcast:
    sim = Simulcast()
    bits = value.split()
    for i in range(0, len(bits) - 1, 2):
        if bits[i] == "send":
            sim.send = _parse_streams(bits[i + 1])
        elif bits[i] == "recv":
            sim.recv = _parse_streams(bits[i + 1])
        else:
            raise SdpError(f"bad simulcast: {value!r}")
    return sim


def _parse_extmap(value: str) -> Extmap:
    bits = value.split(None, 2)
    if len(bits) < 2:
        raise SdpError(f"bad extmap: {value!r}")
    ident, _, direction = bits[0].partition("/")
    attributes = bits[2] if len(bits) > 2 else None
    return Extmap(_int(ident, "extmap id"), bits[1], direction or None, attributes)


def _parse_rid(value: str) -> Rid:
    bits = value.split(None, 2)
    if len(bits) < 2:
        raise SdpError(f"bad rid: {value!r}")
    restrictions: list[tuple[str, str | None]] = []
    if len(bits) > 2:
        for part in bits[2].split(";"):
            if part:
                key, sep, val = part.partition("=")
                restrictions.append((key, val if sep else None))
    return Rid(bits[0], bits[1], restrictions)


def _fingerprint(value: str) -> Fingerprint:
    algorithm, _, fp = value.partition(" ")
    return Fingerprint(algorithm.lower(), fp.strip())


def _apply_common(obj: SessionDescription | MediaSection, name: str, value: str | None) -> bool:
    """Attributes valid at both levels. Returns False when `name` is not one of them."""
    v = value or ""
    if name == "ice-ufrag":
        obj.ice_ufrag = v
    elif name == "ice-pwd":
        obj.ice_pwd = v
    elif name == "ice-options":
        obj.ice_options = v
    elif name == "fingerprint":
        obj.fingerprints.append(_fingerprint(v))
    elif name == "setup":
        obj.setup = v
    elif name == "extmap":
        obj.extmaps.append(_parse_extmap(v))
    elif name == "extmap-allow-mixed":
        obj.extmap_allow_mixed = True
    else:
        return False
    return True


def _codec_for(media: MediaSection, pt: int) -> Codec:
    codec = media.codec(pt)
    if codec is None:
        name, rate, channels = _STATIC_PT.get(pt, ("", 0, None))
        codec = Codec(pt, name, rate, channels)
        media.codecs.append(codec)
    return codec


def _apply_media(media: MediaSection, name: str, value: str | None) -> None:
    v = value or ""
    if _apply_common(media, name, value):
        return
    if name == "mid":
        media.mid = v
    elif name in DIRECTIONS:
        media.direction = name
    elif name == "msid":
        stream, _, track = v.partition(" ")
        media.msids.append(Msid(stream, track.strip() or None))
    elif name == "rtcp":
        media.rtcp = v
    elif name == "rtcp-mux":
        media.rtcp_mux = True
    elif name == "rtcp-mux-only":
        media.rtcp_mux_only = True
    elif name == "rtcp-rsize":
        media.rtcp_rsize = True
    elif name == "bundle-only":
        media.bundle_only = True
    elif name == "candidate":
        media.candidates.append(Candidate.parse(v))
    elif name == "end-of-candidates":
        media.end_of_candidates = True
    elif name == "rtpmap":
        pt, _, enc = v.partition(" ")
        parts = enc.strip().split("/")
        if len(parts) < 2:
            raise SdpError(f"bad rtpmap: {v!r}")
        codec = _codec_for(media, _int(pt, "payload type"))
        codec.name = parts[0]
        codec.clock_rate = _int(parts[1], "clock rate")
        codec.channels = _int(parts[2], "channels") if len(parts) > 2 else None
    elif name == "fmtp":
        pt, _, params = v.partition(" ")
        _codec_for(media, _int(pt, "payload type")).fmtp = params.strip()
    elif name == "rtcp-fb":
        pt, _, fb = v.partition(" ")
        if pt == "*":
            media.rtcp_fb_all.append(fb.strip())
        else:
            _codec_for(media, _int(pt, "payload type")).rtcp_fb.append(fb.strip())
    elif name == "ssrc":
        ssrc, _, rest = v.partition(" ")
        attr, sep, val = rest.partition(":")
        media.ssrcs.append(SsrcAttribute(_int(ssrc, "ssrc"), attr, val if sep else None))
    elif name == "ssrc-group":
        bits = v.split()
        if not bits:
            raise SdpError(f"bad ssrc-group: {v!r}")
        media.ssrc_groups.append(SsrcGroup(bits[0], [_int(s, "ssrc") for s in bits[1:]]))
    elif name == "rid":
        media.rids.append(_parse_rid(v))
    elif name == "simulcast":
        media.simulcast = _parse_simulcast(v)
    elif name == "sctp-port":
        media.sctp_port = _int(v, "sctp-port")
    elif name == "max-message-size":
        media.max_message_size = _int(v, "max-message-size")
    elif name == "sctpmap":
        media.sctpmap = v
    else:
        media.other_attributes.append(Attribute(name, value))


def _apply_session(sd: SessionDescription, name: str, value: str | None) -> None:
    v = value or ""
    if _apply_common(sd, name, value):
        return
    if name == "group":
        bits = v.split()
        if not bits:
            raise SdpError(f"bad group: {v!r}")
        sd.groups.append(Group(bits[0], bits[1:]))
    elif name == "msid-semantic":
        sd.msid_semantic = v.strip()
    elif name == "ice-lite":
        sd.ice_lite = True
    else:
        sd.other_attributes.append(Attribute(name, value))


def parse_sdp(text: str) -> SessionDescription:
    """Parse an SDP offer or answer (CRLF or LF). Raises `SdpError` on malformed known lines;
    unknown attributes and line types are kept, never rejected."""
    sd = SessionDescription()
    media: MediaSection | None = None
    seen_version = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad line: {line!r}")
        kind, value = line[0], line[2:]
        if kind == "v":
            seen_version = True
        elif kind == "m":
            bits = value.split()
            if len(bits) < 3:
                raise SdpError(f"bad m-line: {line!r}")
            port = bits[1].split("/")[0]
            media = MediaSection(bits[0], _int(port, "port"), bits[2], bits[3:])
            sd.media.append(media)
        elif kind == "a":
            name, sep, val = value.partition(":")
            if media is None:
                _apply_session(sd, name, val if sep else None)
            else:
                _apply_media(media, name, val if sep else None)
        elif kind == "c":
            if media is None:
                sd.connection = value
            else:
                media.connection = value
        elif kind == "b":
            (sd.bandwidths if media is None else media.bandwidths).append(value)
        elif media is not None and kind == "i":
            media.title = value
        elif media is not None:
            media.other_lines.append(line)
        elif kind == "o":
            bits = value.split()
            if len(bits) != 6:
                raise SdpError(f"bad origin: {line!r}")
            version = _int(bits[2], "session version")
            sd.origin = Origin(bits[0], bits[1], version, bits[3], bits[4], bits[5])
        elif kind == "s":
            sd.session_name = value
        elif kind == "t":
            sd.timing = value
        else:
            sd.other_lines.append(line)
    if not seen_version:
        raise SdpError("not an SDP: no v= line")
    return sd


# -- helpers for the media layer --------------------------------------------------------


@dataclass
class TrackSectionInfo:
    """What the media layer needs to bind incoming RTP of one published m-section."""

    mid: str
    kind: str
    track_id: str | None  # msid track id = the AddTrack `cid`
    stream_id: str | None
    rids: list[str]  # simulcast send order (first alternatives), else rid-line order
    codecs: list[Codec]  # in m-line order
    ssrcs: list[int]  # media ssrcs (not the RTX ones)
    rtx_ssrcs: dict[int, int]  # media ssrc → its RTX ssrc (ssrc-group FID)
    extmap: dict[str, int]  # uri → id


def mid_to_track_info(offer: SessionDescription) -> dict[str, TrackSectionInfo]:
    """For every section of a client offer that sends media (sendonly/sendrecv, not rejected),
    keyed by mid: the msid track id (AddTrack cid), rids, codecs, ssrcs and extension ids."""
    out: dict[str, TrackSectionInfo] = {}
    for media in offer.media:
        if not media.is_rtp or media.rejected or media.mid is None:
            continue
        if media.effective_direction not in ("sendonly", "sendrecv"):
            continue
        msid = media.primary_msid()
        if media.simulcast is not None and media.simulcast.send:
            rids = media.simulcast.send_rids
        else:
            rids = [r.id for r in media.rids if r.direction == "send"]
        rtx: dict[int, int] = {}
        for group in media.ssrc_groups:
            if group.semantics == "FID" and len(group.ssrcs) == 2:
                rtx[group.ssrcs[0]] = group.ssrcs[1]
        repair = set(rtx.values())
        ssrcs = [s for s in media.ssrc_list() if s not in repair]
        order = {f: i for i, f in enumerate(media.formats)}
        codecs = sorted(media.codecs, key=lambda c: order.get(str(c.pt), len(order)))
        out[media.mid] = TrackSectionInfo(
            mid=media.mid,
            kind=media.kind,
            track_id=msid.track_id if msid else None,
            stream_id=msid.stream_id if msid else None,
            rids=rids,
            codecs=codecs,
            ssrcs=ssrcs,
            rtx_ssrcs=rtx,
            extmap=media.extmap_ids(),
        )
    return out


def is_ice_restart(previous: SessionDescription, offer: SessionDescription) -> bool:
    """True when the offer carries ICE credentials different from the previous one's."""
    return previous.ice_credentials() != offer.ice_credentials()

