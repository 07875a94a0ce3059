//! Synthetic media for the load generator (sans-IO): what a simulated publisher puts on the
//! wire, and how a simulated subscriber reads it back.
//!
//! - Audio: one Opus-sized packet per `ptime` (50 packets/s at 20 ms), RFC 6464 audio level.
//! - Video: frames at `fps`, `bitrate / 8 / fps` bytes each (key frames 3×), cut into packets
//!   of at most [`MAX_CHUNK`] payload bytes, marker on a frame's last packet. Every packet
//!   starts with a VP8 payload descriptor (RFC 7741, S bit on a frame's first packet) and a
//!   frame's first packet with a VP8 frame tag, so an SFU's keyframe detection sees real VP8
//!   key frames (start code and dimensions included).
//! - Header extensions (one-byte form, RFC 8285) as negotiated: mid, rid (simulcast), audio
//!   level, abs-send-time, transport-wide sequence number.
//! - Every payload ends with a [`TAG_LEN`]-byte tag: magic, the send time (µs since the Unix
//!   epoch, for end-to-end latency across processes on one host), the sending stream's SSRC
//!   (a subscriber can tell which simulcast layer the SFU forwarded) and its packet index.

use trackyard_core::downtrack::abs_send_time;

/// Largest payload chunk of a video packet (a 1200-byte-class datagram after headers and SRTP).
pub const MAX_CHUNK: usize = 1100;
/// Bytes of the tag at the end of every payload.
pub const TAG_LEN: usize = 20;
const MAGIC: [u8; 4] = *b"TYLG";
/// Room for the RTP header with extensions in front of a payload.
pub const MAX_HEADER: usize = 64;

/// Negotiated one-byte header extension ids of a transport (0 = not negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    pub mid: u8,
    pub rid: u8,
    pub audio_level: u8,
    pub abs_send_time: u8,
    pub twcc: u8,
}

/// Per-packet inputs the stream does not own.
#[derive(Debug, Clone, Copy)]
pub struct PacketContext {
    pub now_unix_us: u64,
    pub twcc_seq: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Audio { payload: usize, ptime_us: u64 },
    Video { bitrate: u64, fps: u32, width: u16, height: u16, keyframe_interval_us: u64 },
}

/// One outgoing RTP stream of a simulated publisher.
#[derive(Debug, Clone)]
pub struct SendStream {
    pub ssrc: u32,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub mid: Vec<u8>,
    pub rid: Vec<u8>,
    pub kind: StreamKind,
    pub seq: u16,
    ts_base: u32,
    /// Frames (video) or packets (audio) produced so far.
    pub frames: u64,
    /// Packets produced so far (the tag's packet index).
    pub packets: u64,
    /// Payload bytes produced so far.
    pub payload_bytes: u64,
    pub keyframes: u64,
    /// A keyframe was asked for (PLI/FIR): the next frame is one.
    pub keyframe_wanted: bool,
    last_keyframe_us: Option<u64>,
    /// RTP timestamp and wall-clock time of the last frame (for sender reports).
    last_frame: Option<(u32, u64)>,
}

impl SendStream {
    pub fn new(ssrc: u32, payload_type: u8, clock_rate: u32, mid: &str, rid: &str, kind: StreamKind, seed: u32) -> Self {
        SendStream {
            ssrc,
            payload_type,
            clock_rate: clock_rate.max(1),
            mid: mid.as_bytes().to_vec(),
            rid: rid.as_bytes().to_vec(),
            kind,
            seq: (seed & 0x7FFF) as u16,
            ts_base: seed.rotate_left(13),
            frames: 0,
            packets: 0,
            payload_bytes: 0,
            keyframes: 0,
            keyframe_wanted: true,
            last_keyframe_us: None,
            last_frame: None,
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(self.kind, StreamKind::Video { .. })
    }

    /// Time between two frames (video) or packets (audio), µs.
    pub fn interval_us(&self) -> u64 {
        match self.kind {
            StreamKind::Audio { ptime_us, .. } => ptime_us.max(1000),
            StreamKind::Video { fps, .. } => 1_000_000 / u64::from(fps.max(1)),
        }
    }

    fn timestamp(&self) -> u32 {
        let ticks = match self.kind {
            StreamKind::Audio { ptime_us, .. } => self.frames * u64::from(self.clock_rate) * ptime_us / 1_000_000,
            StreamKind::Video { fps, .. } => self.frames * u64::from(self.clock_rate) / u64::from(fps.max(1)),
        };
        self.ts_base.wrapping_add(ticks as u32)
    }

    /// The payload sizes of the next frame and whether it is a keyframe (advances nothing).
    pub fn next_frame_plan(&self, now_us: u64) -> (bool, Vec<usize>) {
        match self.kind {
            StreamKind::Audio { payload, .. } => (false, vec![payload.max(TAG_LEN + 1)]),
            StreamKind::Video { bitrate, fps, keyframe_interval_us, .. } => {
                let key = self.keyframe_wanted
                    || self.last_keyframe_us.is_none_or(|t| keyframe_interval_us > 0
                        && now_us.saturating_sub(t) >= keyframe_interval_us);
                let mut bytes = (bitrate / 8 / u64::from(fps.max(1))) as usize;
                if key {
                    bytes *= 3;
                }
                let bytes = bytes.max(TAG_LEN + 12);
                let n = bytes.div_ceil(MAX_CHUNK);
                let each = bytes / n;
                let mut sizes = vec![each; n];
                sizes[n - 1] += bytes - each * n;
                (key, sizes)
            }
        }
    }

    /// Writes the next frame's packets (plain RTP) with `emit(packet)`; returns the count.
    /// `buf` must hold MAX_HEADER + MAX_CHUNK + TAG_LEN bytes (plus the SRTP trailer, which
    /// the caller adds in place).
    pub fn next_frame(&mut self, ext: &Extensions, ctx: &mut PacketContext, buf: &mut [u8],
                      mut emit: impl FnMut(&mut [u8], usize)) -> usize {
        let (key, sizes) = self.next_frame_plan(ctx.now_unix_us);
        if key && self.is_video() {
            self.keyframe_wanted = false;
            self.last_keyframe_us = Some(ctx.now_unix_us);
            self.keyframes += 1;
        }
        let ts = self.timestamp();
        let n = sizes.len();
        for (i, &size) in sizes.iter().enumerate() {
            let len = self.write_packet(ext, ctx, buf, ts, i == n - 1, i == 0, key, size);
            ctx.twcc_seq = ctx.twcc_seq.wrapping_add(u16::from(ext.twcc != 0));
            emit(buf, len);
        }
        self.frames += 1;
        self.last_frame = Some((ts, ctx.now_unix_us));
        n
    }

    /// The RTP time matching wall-clock `now_unix_us` (extrapolated from the last frame), for
    /// a sender report.
    pub fn rtp_time_at(&self, now_unix_us: u64) -> u32 {
        match self.last_frame {
            Some((ts, at)) => {
                let elapsed = now_unix_us.saturating_sub(at);
                ts.wrapping_add((u128::from(elapsed) * u128::from(self.clock_rate) / 1_000_000) as u32)
            }
            None => self.timestamp(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_packet(&mut self, ext: &Extensions, ctx: &PacketContext, buf: &mut [u8], ts: u32, last: bool,
                    first: bool, key: bool, payload_len: usize) -> usize {
        let marker = match self.kind {
            StreamKind::Audio { .. } => self.frames == 0,
            StreamKind::Video { .. } => last,
        };
        buf[0] = 0x80;
        buf[1] = (self.payload_type & 0x7F) | if marker { 0x80 } else { 0 };
        buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        buf[4..8].copy_from_slice(&ts.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut pos = 12;
        let hdr_len = write_extensions(&mut buf[12..MAX_HEADER], ext, self, ctx);
        if hdr_len > 0 {
            buf[0] |= 0x10;
            pos += hdr_len;
        }
        let payload = &mut buf[pos..pos + payload_len];
        self.fill_payload(payload, first, key);
        let tail = payload_len - TAG_LEN;
        payload[tail..tail + 4].copy_from_slice(&MAGIC);
        payload[tail + 4..tail + 12].copy_from_slice(&ctx.now_unix_us.to_be_bytes());
        payload[tail + 12..tail + 16].copy_from_slice(&self.ssrc.to_be_bytes());
        payload[tail + 16..].copy_from_slice(&(self.packets as u32).to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.packets += 1;
        self.payload_bytes += payload_len as u64;
        pos + payload_len
    }

    fn fill_payload(&self, p: &mut [u8], first: bool, key: bool) {
        let body = p.len() - TAG_LEN;
        p[..body].fill(0x5A);
        match self.kind {
            StreamKind::Audio { .. } => p[0] = 0x78, // an Opus TOC byte (SILK-only WB 20 ms, mono)
            StreamKind::Video { width, height, .. } => {
                // VP8 payload descriptor: S on a frame's first packet, partition 0
                p[0] = if first { 0x10 } else { 0x00 };
                if first && body >= 11 {
                    // frame tag: bit 0 = 0 on key frames, show_frame set; then start code and size
                    p[1] = if key { 0x10 } else { 0x11 };
                    p[2] = 0;
                    p[3] = 0;
                    if key {
                        p[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                        p[7..9].copy_from_slice(&(width & 0x3FFF).to_le_bytes());
                        p[9..11].copy_from_slice(&(height & 0x3FFF).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// Writes the one-byte extension block; returns its length (0: none).
fn write_extensions(out: &mut [u8], ext: &Extensions, s: &SendStream, ctx: &PacketContext) -> usize {
    let mut pos = 4;
    let mut put = |id: u8, value: &[u8], out: &mut [u8]| {
        if id == 0 || id > 14 || value.is_empty() || value.len() > 16 || pos + 1 + value.len() > out.len() {
            return;
        }
        out[pos] = (id << 4) | (value.len() as u8 - 1);
        out[pos + 1..pos + 1 + value.len()].copy_from_slice(value);
        pos += 1 + value.len();
    };
    put(ext.mid, &s.mid, out);
    if !s.rid.is_empty() {
        put(ext.rid, &s.rid, out);
    }
    if !s.is_video() {
        put(ext.audio_level, &[0x80 | 30], out); // voice, -30 dBov
    }
    put(ext.abs_send_time, &abs_send_time(ctx.now_unix_us).to_be_bytes()[1..], out);
    put(ext.twcc, &ctx.twcc_seq.to_be_bytes(), out);
    if pos == 4 {
        return 0;
    }
    while pos % 4 != 0 {
        out[pos] = 0;
        pos += 1;
    }
    out[..2].copy_from_slice(&0xBEDEu16.to_be_bytes());
    out[2..4].copy_from_slice(&(((pos - 4) / 4) as u16).to_be_bytes());
    pos
}

/// The tag at the end of a received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Send time, µs since the Unix epoch.
    pub sent_unix_us: u64,
    /// The SSRC the publisher sent it with.
    pub source_ssrc: u32,
    /// The publisher stream's packet index.
    pub index: u32,
}

pub fn read_tag(payload: &[u8]) -> Option<Tag> {
    let tail = payload.len().checked_sub(TAG_LEN)?;
    let t = &payload[tail..];
    if t[..4] != MAGIC {
        return None;
    }
    Some(Tag {
        sent_unix_us: u64::from_be_bytes(t[4..12].try_into().ok()?),
        source_ssrc: u32::from_be_bytes(t[12..16].try_into().ok()?),
        index: u32::from_be_bytes(t[16..20].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackyard_core::codec::{vp8_is_keyframe, vp8_keyframe_size};
    use trackyard_core::rtp::RtpHeader;

    fn video(bitrate: u64, fps: u32) -> SendStream {
        let kind = StreamKind::Video { bitrate, fps, width: 1280, height: 720, keyframe_interval_us: 3_000_000 };
        SendStream::new(0x1234, 96, 90_000, "1", "f", kind, 77)
    }

    fn frame(s: &mut SendStream, ext: &Extensions, now: u64) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; MAX_HEADER + MAX_CHUNK + TAG_LEN + 32];
        let mut ctx = PacketContext { now_unix_us: now, twcc_seq: 7 };
        let mut out = Vec::new();
        s.next_frame(ext, &mut ctx, &mut buf, |b, n| out.push(b[..n].to_vec()));
        out
    }

    #[test]
    fn video_frames_are_vp8_with_keyframes_tags_and_extensions() {
        let ext = Extensions { mid: 4, rid: 10, audio_level: 1, abs_send_time: 2, twcc: 3 };
        let mut s = video(1_700_000, 30);
        let first = frame(&mut s, &ext, 1_000_000);
        // 1.7 Mbit/s at 30 fps = 7083 B per frame, ×3 for the first (key) frame
        assert_eq!(first.len(), (7083 * 3usize).div_ceil(MAX_CHUNK));
        let h = RtpHeader::parse(&first[0]).unwrap();
        assert_eq!((h.ssrc(), h.payload_type(), h.marker()), (0x1234, 96, false));
        assert_eq!(h.extension(4), Some(&b"1"[..]));
        assert_eq!(h.extension(10), Some(&b"f"[..]));
        assert_eq!(h.extension(3), Some(&7u16.to_be_bytes()[..]));
        assert!(h.extension(1).is_none(), "no audio level on video");
        assert!(vp8_is_keyframe(h.payload()).unwrap());
        assert_eq!(vp8_keyframe_size(h.payload()), Some((1280, 720)));
        assert_eq!(read_tag(h.payload()), Some(Tag { sent_unix_us: 1_000_000, source_ssrc: 0x1234, index: 0 }));
        let last = RtpHeader::parse(first.last().unwrap()).unwrap();
        assert!(last.marker());
        assert_eq!(last.sequence(), h.sequence().wrapping_add(first.len() as u16 - 1));
        assert_eq!(last.timestamp(), h.timestamp());
        assert!(!vp8_is_keyframe(last.payload()).unwrap(), "only a frame's first packet starts it");
        // the second frame is a delta frame, one frame interval later in RTP time
        let second = frame(&mut s, &ext, 1_033_333);
        assert_eq!(second.len(), 7083usize.div_ceil(MAX_CHUNK));
        let h2 = RtpHeader::parse(&second[0]).unwrap();
        assert!(!vp8_is_keyframe(h2.payload()).unwrap());
        assert_eq!(h2.timestamp().wrapping_sub(h.timestamp()), 3000);
        assert_eq!(h2.sequence(), last.sequence().wrapping_add(1));
        let total: usize = second.iter().map(|p| RtpHeader::parse(p).unwrap().payload_len()).sum();
        assert_eq!(total, 7083);
        // a PLI makes the next frame a key frame; so does the keyframe interval
        s.keyframe_wanted = true;
        assert!(vp8_is_keyframe(RtpHeader::parse(&frame(&mut s, &ext, 1_066_666)[0]).unwrap().payload()).unwrap());
        assert!(!s.next_frame_plan(3_000_000).0);
        assert!(s.next_frame_plan(4_066_666).0);
        assert_eq!(s.keyframes, 2);
    }

    #[test]
    fn audio_packets_carry_level_and_no_rid() {
        let ext = Extensions { mid: 4, rid: 10, audio_level: 1, abs_send_time: 2, twcc: 0 };
        let kind = StreamKind::Audio { payload: 80, ptime_us: 20_000 };
        let mut s = SendStream::new(9, 111, 48_000, "0", "", kind, 5);
        assert_eq!(s.interval_us(), 20_000);
        let p = frame(&mut s, &ext, 5_000_000);
        assert_eq!(p.len(), 1);
        let h = RtpHeader::parse(&p[0]).unwrap();
        assert_eq!(h.payload_len(), 80);
        assert_eq!(h.extension(1), Some(&[0x80 | 30][..]));
        assert!(h.extension(10).is_none() && h.extension(3).is_none());
        assert_eq!(h.extension(2).map(|v| v.len()), Some(3));
        let q = frame(&mut s, &ext, 5_020_000);
        let h2 = RtpHeader::parse(&q[0]).unwrap();
        assert_eq!(h2.timestamp().wrapping_sub(h.timestamp()), 960);
        assert_eq!(read_tag(h2.payload()), Some(Tag { sent_unix_us: 5_020_000, source_ssrc: 9, index: 1 }));
        assert_eq!(read_tag(&[0u8; 24]), None);
        // sender reports extrapolate the RTP clock from the last packet
        assert_eq!(s.rtp_time_at(5_030_000), h2.timestamp().wrapping_add(480));
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point() {
        assert_eq!(abs_send_time(1_000_000), 1 << 18);
        assert_eq!(abs_send_time(64_500_000), (((64u32 << 18) | (1 << 17)) & 0xFF_FFFF));
    }
}
