//! The forwarding graph the worker owns: transports, tracks with their source streams
//! (one per simulcast layer), and down-tracks. Everything a packet needs is allocated when
//! the object is created (caches, rings), never per packet.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

use trackyard_core::allocator::{Allocator, BitrateWindow};
use trackyard_core::audio_level::AudioLevelMeter;
use trackyard_core::codec::Codec;
use trackyard_core::congestion::TwccRecorder;
use trackyard_core::forwarder::{Forwarder, KeyframeRequester, LayerActivity, LayerMask};
use trackyard_core::munger::Munger;
use trackyard_core::nack::{NackConfig, NackTracker, RtxCache};
use trackyard_core::reports::{ReceiverStats, SenderStats};
use trackyard_core::sequencer::Sequencer;
use trackyard_core::srtp::SrtpContext;

/// A map keyed by engine handles and SSRCs. Keys are inserted by commands only (an SSRC a
/// peer makes up is looked up, never inserted), so a fast non-keyed hash is safe here.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiply-rotate hashing of integer keys (the FxHash idea).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl IdHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
}

/// A layer without packets for this long is inactive.
pub const LAYER_TIMEOUT_US: u64 = 1_500_000;
/// Audio pauses during silence (DTX): its one layer only counts as gone after this long.
pub const AUDIO_TIMEOUT_US: u64 = 10_000_000;
/// At most one keyframe request per source stream per this interval.
pub const PLI_INTERVAL_US: u64 = 500_000;
/// Source packets kept for retransmissions, per video layer / audio stream, and their age.
pub const VIDEO_CACHE_SLOTS: usize = 512;
pub const AUDIO_CACHE_SLOTS: usize = 128;
pub const VIDEO_SLOT_SIZE: usize = crate::udp::MAX_DATAGRAM;
pub const AUDIO_SLOT_SIZE: usize = 640;
pub const CACHE_MAX_AGE_US: u64 = 2_000_000;
/// Output packets remembered per down-track for NACKs (video / audio).
pub const VIDEO_SEQUENCER_SLOTS: usize = 1024;
pub const AUDIO_SEQUENCER_SLOTS: usize = 128;
/// The same packet is not resent to the same subscriber more often than this.
pub const RESEND_MIN_INTERVAL_US: u64 = 30_000;
/// Round-trip time assumed for NACK pacing until one is measured.
pub const DEFAULT_RTT_US: u64 = 50_000;
/// Arrivals buffered for transport-wide feedback between two feedback messages.
pub const TWCC_CAPACITY: usize = 2048;
/// Layer bitrates for the bandwidth allocation are averaged over this long.
pub const LAYER_RATE_WINDOW_US: u64 = 2_000_000;

/// Negotiated RTP header extension ids of a transport.
pub use trackyard_core::downtrack::ExtIds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

pub struct Transport {
    pub ufrag: String,
    pub pwd: Vec<u8>,
    pub addr: Option<SocketAddr>,
    pub nominated: bool,
    pub last_check_us: u64,
    pub consent_lost: bool,
    pub rx: Option<SrtpContext>,
    pub tx: Option<SrtpContext>,
    pub ext: ExtIds,
    /// SSRCs already reported as new streams.
    pub reported: Vec<u32>,
    /// Test hook: the next SRTP datagram from this transport panics (see `Engine.inject_fault`).
    pub fault_injected: bool,
    /// Our SSRC in the RTCP we send on this transport (RR, NACK, PLI, TWCC).
    pub rtcp_ssrc: u32,
    /// Arrivals awaiting transport-wide feedback (when the peer negotiated it).
    pub twcc_in: Option<TwccRecorder>,
    /// A media SSRC of this peer, named in its feedback.
    pub twcc_media_ssrc: u32,
    /// Round-trip time measured on this transport's down-tracks.
    pub rtt_us: Option<u64>,
    /// Layer caps of this subscriber's down-tracks from its bandwidth estimates (REMB).
    pub alloc: Allocator,
}

impl Transport {
    pub fn new(ufrag: String, pwd: String, now_us: u64, rtcp_ssrc: u32) -> Self {
        Transport {
            ufrag,
            pwd: pwd.into_bytes(),
            addr: None,
            nominated: false,
            last_check_us: now_us,
            consent_lost: false,
            rx: None,
            tx: None,
            ext: ExtIds::default(),
            reported: Vec::new(),
            fault_injected: false,
            rtcp_ssrc,
            twcc_in: None,
            twcc_media_ssrc: 0,
            rtt_us: None,
            alloc: Allocator::default(),
        }
    }

    /// Has an address and keys: media can be sent.
    pub fn is_ready(&self) -> bool {
        self.addr.is_some() && self.tx.is_some()
    }

    pub fn set_extensions(&mut self, ext: ExtIds) {
        self.ext = ext;
        if ext.twcc == 0 {
            self.twcc_in = None;
        } else if self.twcc_in.is_none() {
            self.twcc_in = Some(TwccRecorder::new(TWCC_CAPACITY));
        }
    }
}

/// Bytes counted at the last statistics event, for bitrates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rate {
    bytes: u64,
    at_us: u64,
}

impl Rate {
    /// Bits per second since the last call.
    pub fn bitrate(&mut self, bytes: u64, now_us: u64) -> u64 {
        let elapsed = now_us.saturating_sub(self.at_us).max(1);
        let bps = bytes.saturating_sub(self.bytes).saturating_mul(8_000_000) / elapsed;
        (self.bytes, self.at_us) = (bytes, now_us);
        bps
    }
}

/// One received stream: a simulcast layer of a track (or its only stream).
pub struct Source {
    pub ssrc: u32,
    pub transport: u32,
    pub layer: u8,
    /// The media payload type (learned from the stream; RTX unwrapping restores it).
    pub payload_type: Option<u8>,
    pub rx: ReceiverStats,
    /// Loss tracking for NACKs to the publisher (video).
    pub nack: Option<NackTracker>,
    pub cache: RtxCache,
    pub pli: KeyframeRequester,
    pub nacks_sent: u64,
    pub rtx_received: u64,
    pub rate: Rate,
    /// Bitrate for the bandwidth allocation (bit/s, sliding window).
    pub alloc_rate: BitrateWindow,
    pub alloc_bps: Option<u64>,
}

impl Source {
    pub fn new(ssrc: u32, transport: u32, layer: u8, kind: Kind, clock_rate: u32) -> Self {
        let video = kind == Kind::Video;
        let (slots, size) = if video {
            (VIDEO_CACHE_SLOTS, VIDEO_SLOT_SIZE)
        } else {
            (AUDIO_CACHE_SLOTS, AUDIO_SLOT_SIZE)
        };
        Source {
            ssrc,
            transport,
            layer,
            payload_type: None,
            rx: ReceiverStats::new(clock_rate),
            nack: video.then(|| NackTracker::new(NackConfig::default())),
            cache: RtxCache::new(slots, size, CACHE_MAX_AGE_US),
            pli: KeyframeRequester::new(PLI_INTERVAL_US),
            nacks_sent: 0,
            rtx_received: 0,
            rate: Rate::default(),
            alloc_rate: BitrateWindow::new(LAYER_RATE_WINDOW_US),
            alloc_bps: None,
        }
    }
}

/// One subscription: the track forwarded to one transport.
pub struct DownTrack {
    pub id: u32,
    pub transport: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub cname: Vec<u8>,
    pub munger: Munger,
    pub fwd: Forwarder,
    pub seqr: Sequencer,
    pub tx: SenderStats,
    pub user_paused: bool,
    /// The forwarded layer last reported to Python (outer None: never reported).
    pub reported_layer: Option<Option<u8>>,
    pub nacks: u64,
    pub plis: u64,
    pub retransmitted: u64,
    pub rate: Rate,
}

pub struct DownTrackSpec {
    pub id: u32,
    pub transport: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub max_layer: u8,
    pub cname: String,
}

impl DownTrack {
    pub fn new(spec: DownTrackSpec, kind: Kind, clock_rate: u32, seed: u32) -> Self {
        let slots = if kind == Kind::Video { VIDEO_SEQUENCER_SLOTS } else { AUDIO_SEQUENCER_SLOTS };
        DownTrack {
            id: spec.id,
            transport: spec.transport,
            ssrc: spec.ssrc,
            payload_type: spec.payload_type,
            cname: spec.cname.into_bytes(),
            munger: Munger::new(clock_rate, (seed & 0x7fff) as u16, seed.rotate_left(7)),
            fwd: Forwarder::new(spec.max_layer),
            seqr: Sequencer::new(slots, CACHE_MAX_AGE_US),
            tx: SenderStats::new(clock_rate),
            user_paused: false,
            reported_layer: None,
            nacks: 0,
            plis: 0,
            retransmitted: 0,
            rate: Rate::default(),
        }
    }

    /// Applies the pause state (the subscriber's pause or the publisher's mute).
    pub fn apply_pause(&mut self, muted: bool) {
        if self.fwd.set_paused(self.user_paused || muted) {
            self.munger.pause();
        }
    }
}

/// A published track.
pub struct Track {
    pub kind: Kind,
    pub codec: Codec,
    pub clock_rate: u32,
    pub muted: bool,
    pub sources: Vec<Source>,
    pub activity: LayerActivity,
    pub reported_layers: Option<LayerMask>,
    pub downtracks: Vec<DownTrack>,
    pub audio: AudioLevelMeter,
}

impl Track {
    pub fn new(kind: Kind, codec: Codec, clock_rate: u32) -> Self {
        Track {
            kind,
            codec,
            clock_rate,
            muted: false,
            sources: Vec::new(),
            activity: LayerActivity::new(if kind == Kind::Audio { AUDIO_TIMEOUT_US } else { LAYER_TIMEOUT_US }),
            reported_layers: None,
            downtracks: Vec::new(),
            audio: AudioLevelMeter::new(),
        }
    }

    /// Tells every down-track which layers are active.
    pub fn publish_activity(&mut self) {
        let mask = self.activity.mask();
        for dt in self.downtracks.iter_mut() {
            dt.fwd.set_active_layers(mask);
        }
    }

    /// Whether this packet starts a decodable picture (audio, and codecs without keyframe
    /// detection, always do).
    pub fn is_keyframe(&self, payload: &[u8]) -> bool {
        match self.codec {
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => {
                trackyard_core::codec::is_keyframe(self.codec, payload).unwrap_or(false)
            }
            Codec::Opus | Codec::Other => true,
        }
    }
}

/// Where an incoming SSRC goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub track: u32,
    pub layer: u8,
    /// An RFC 4588 repair stream of that layer.
    pub repair: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_ids_map_to_the_subscriber_or_blank() {
        let publisher = ExtIds { mid: 1, rid: 10, rrid: 11, audio_level: 3, twcc: 5, abs_send_time: 2 };
        let subscriber = ExtIds { mid: 4, audio_level: 7, twcc: 9, ..Default::default() };
        let map: Vec<u8> = (0..=12).map(|id| publisher.map_to(&subscriber, id)).collect();
        // 0, mid, abs-send-time (not negotiated), level, -, twcc, ..., rid, rrid: all blanked but two
        assert_eq!(map, vec![0, 0, 0, 7, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        // nothing negotiated on the publisher side: everything blanked
        assert!((0..=255).all(|id| ExtIds::default().map_to(&subscriber, id) == 0));
    }

    #[test]
    fn bitrate_over_the_interval() {
        let mut r = Rate::default();
        r.bitrate(0, 0);
        assert_eq!(r.bitrate(250_000, 2_000_000), 1_000_000);
        assert_eq!(r.bitrate(250_000, 4_000_000), 0);
    }
}
