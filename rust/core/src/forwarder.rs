//! Simulcast layer selection and switching for one down-track, layer activity of a published
//! track, and keyframe request pacing. Pure state machines: packets and times go in,
//! decisions come out.
//!
//! - [`LayerActivity`] (one per published track): a layer is *active* while its packets keep
//!   arriving; it becomes inactive after [`LayerActivity::new`]'s timeout without one.
//! - [`Forwarder`] (one per down-track): forwards exactly one layer at a time, the best
//!   active layer at or below the subscriber's `max_layer` (see [`select_layer`]). It changes
//!   layer only on a keyframe of the new layer ([`Verdict::Switch`]); until then the current
//!   layer keeps flowing. A down-track that has nothing decodable yet (new, resumed after a
//!   pause, its layer gone) waits for a keyframe. [`Forwarder::keyframe_wanted`] says which
//!   layer a keyframe is needed from.
//! - [`KeyframeRequester`] (one per source stream): rate-limits the PLIs sent to a publisher,
//!   whatever number of down-tracks want a keyframe from it.
//!
//! Audio fits the same model: one layer, and every packet counts as a keyframe.

/// Simulcast layers supported (indexes 0..MAX_LAYERS, 0 = lowest quality).
pub const MAX_LAYERS: u8 = 3;

/// A set of layers as a bit mask (bit `l` = layer `l`).
pub type LayerMask = u8;

/// The layer to forward: the best active layer at or below `max_layer`; when none is active
/// there, the lowest active layer above it (something rather than nothing).
pub fn select_layer(max_layer: u8, active: LayerMask) -> Option<u8> {
    let max = max_layer.min(MAX_LAYERS - 1);
    (0..=max)
        .rev()
        .chain(max + 1..MAX_LAYERS)
        .find(|l| active & (1 << l) != 0)
}

/// The layers in a mask, lowest first.
pub fn layers_of(mask: LayerMask) -> impl Iterator<Item = u8> {
    (0..MAX_LAYERS).filter(move |l| mask & (1 << l) != 0)
}

/// Which layers of a track are being sent, from packet arrival times.
#[derive(Debug, Clone)]
pub struct LayerActivity {
    last_us: [Option<u64>; MAX_LAYERS as usize],
    timeout_us: u64,
    mask: LayerMask,
}

impl LayerActivity {
    /// A layer without packets for `timeout_us` is inactive.
    pub fn new(timeout_us: u64) -> Self {
        LayerActivity {
            last_us: [None; MAX_LAYERS as usize],
            timeout_us,
            mask: 0,
        }
    }

    /// The active layers.
    pub fn mask(&self) -> LayerMask {
        self.mask
    }

    /// Records a packet of `layer`; returns true when the layer just became active.
    pub fn on_packet(&mut self, layer: u8, now_us: u64) -> bool {
        let Some(slot) = self.last_us.get_mut(usize::from(layer)) else {
            return false;
        };
        *slot = Some(now_us);
        let bit = 1 << layer;
        let became = self.mask & bit == 0;
        self.mask |= bit;
        became
    }

    /// Marks layers silent for the timeout as inactive; returns true when the set changed.
    pub fn sweep(&mut self, now_us: u64) -> bool {
        let before = self.mask;
        for (l, last) in self.last_us.iter().enumerate() {
            if last.is_none_or(|t| now_us.saturating_sub(t) > self.timeout_us) {
                self.mask &= !(1 << l);
            }
        }
        before != self.mask
    }

    /// Forgets a layer (its stream was unbound).
    pub fn forget(&mut self, layer: u8) {
        if let Some(slot) = self.last_us.get_mut(usize::from(layer)) {
            *slot = None;
            self.mask &= !(1 << layer);
        }
    }
}

/// What to do with a source packet on one down-track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it: it belongs to the layer being forwarded.
    Forward,
    /// Forward it as the first packet of a newly selected layer (a keyframe): the caller
    /// re-bases its sequence/timestamp rewriting onto this packet's stream.
    Switch {
        /// The layer forwarded before, if any (None: starting or resuming).
        from: Option<u8>,
    },
    /// Do not forward it.
    Drop(DropCause),
}

/// Why a packet is not forwarded on a down-track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The down-track is paused or the track muted.
    Paused,
    /// It is from a layer that is not forwarded.
    OtherLayer,
    /// It is from the wanted layer, which is not decodable before its next keyframe.
    WaitingForKeyframe,
}

/// Layer selection state of one down-track.
#[derive(Debug, Clone)]
pub struct Forwarder {
    max_layer: u8,
    /// A bandwidth cap below the subscriber's choice (see `allocator`).
    cap: Option<u8>,
    active: LayerMask,
    target: Option<u8>,
    current: Option<u8>,
    paused: bool,
    keyframe_asked: bool,
    switches: u64,
}

impl Forwarder {
    /// A down-track whose subscriber wants at most `max_layer`.
    pub fn new(max_layer: u8) -> Self {
        Forwarder {
            max_layer: max_layer.min(MAX_LAYERS - 1),
            cap: None,
            active: 0,
            target: None,
            current: None,
            paused: false,
            keyframe_asked: false,
            switches: 0,
        }
    }

    /// The subscriber's top layer.
    pub fn max_layer(&self) -> u8 {
        self.max_layer
    }

    /// The layer being forwarded.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer selected (forwarded, or waited for).
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Whether forwarding is stopped.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Layer changes made so far (not counting the start or resumes).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The bandwidth cap in force, if any.
    pub fn cap(&self) -> Option<u8> {
        self.cap
    }

    fn retarget(&mut self) {
        let top = self.cap.map_or(self.max_layer, |c| c.min(self.max_layer));
        self.target = select_layer(top, self.active);
    }

    /// Caps the layer for bandwidth (None: the subscriber's top layer applies alone); the
    /// switch happens on a keyframe like any other.
    pub fn set_cap(&mut self, cap: Option<u8>) {
        if cap != self.cap {
            self.cap = cap;
            self.retarget();
        }
    }

    /// Changes the subscriber's top layer.
    pub fn set_max_layer(&mut self, max_layer: u8) {
        self.max_layer = max_layer.min(MAX_LAYERS - 1);
        self.retarget();
    }

    /// Tells which layers the publisher is sending.
    pub fn set_active_layers(&mut self, active: LayerMask) {
        self.active = active;
        if self.current.is_some_and(|c| active & (1 << c) == 0) {
            // the forwarded layer stopped: nothing decodable until the next keyframe
            self.current = None;
        }
        self.retarget();
    }

    /// The stream of `layer` was replaced: its next packets are not a continuation.
    pub fn reset_layer(&mut self, layer: u8) {
        if self.current == Some(layer) {
            self.current = None;
        }
    }

    /// Pauses or resumes. Returns true when this starts a pause (the caller pauses its
    /// sequence number rewriting so that resuming leaves no hole).
    pub fn set_paused(&mut self, paused: bool) -> bool {
        let starts = paused && !self.paused;
        if paused != self.paused && !paused {
            // the subscriber's decoder needs a keyframe after the gap
            self.current = None;
        }
        self.paused = paused;
        starts
    }

    /// The subscriber lost its picture (PLI/FIR): ask for a keyframe of the current layer.
    pub fn request_keyframe(&mut self) {
        self.keyframe_asked = true;
    }

    /// The layer a keyframe is needed from, if any: the selected layer while not forwarding
    /// it yet, or the current one after [`request_keyframe`](Self::request_keyframe).
    pub fn keyframe_wanted(&self) -> Option<u8> {
        if self.paused {
            return None;
        }
        match (self.target, self.current) {
            (Some(t), c) if c != Some(t) => Some(t),
            (_, Some(c)) if self.keyframe_asked => Some(c),
            _ => None,
        }
    }

    /// A keyframe request for `layer` went out: a subscriber's request is answered.
    pub fn keyframe_requested(&mut self, layer: u8) {
        if self.current == Some(layer) {
            self.keyframe_asked = false;
        }
    }

    /// Decides about a packet of `layer` (`keyframe`: it starts a decodable picture).
    pub fn on_packet(&mut self, layer: u8, keyframe: bool) -> Verdict {
        if self.paused {
            return Verdict::Drop(DropCause::Paused);
        }
        if self.target == Some(layer) && self.current != Some(layer) {
            if !keyframe {
                return Verdict::Drop(if self.current.is_some() {
                    DropCause::OtherLayer
                } else {
                    DropCause::WaitingForKeyframe
                });
            }
            let from = self.current.replace(layer);
            if from.is_some() {
                self.switches += 1;
            }
            self.keyframe_asked = false;
            return Verdict::Switch { from };
        }
        if self.current == Some(layer) {
            if keyframe {
                self.keyframe_asked = false;
            }
            return Verdict::Forward;
        }
        Verdict::Drop(DropCause::OtherLayer)
    }
}

/// Paces keyframe requests (PLI) to one source stream.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    interval_us: u64,
    last_us: Option<u64>,
    sent: u64,
}

impl KeyframeRequester {
    /// At most one request per `interval_us`.
    pub fn new(interval_us: u64) -> Self {
        KeyframeRequester {
            interval_us,
            last_us: None,
            sent: 0,
        }
    }

    /// True (and recorded) when a request may be sent now.
    pub fn try_request(&mut self, now_us: u64) -> bool {
        if self
            .last_us
            .is_some_and(|t| now_us.saturating_sub(t) < self.interval_us)
        {
            return false;
        }
        self.last_us = Some(now_us);
        self.sent += 1;
        true
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: LayerMask = 0b111;

    #[test]
    fn selects_best_active_layer_at_or_below_max() {
        assert_eq!(select_layer(2, ALL), Some(2));
        assert_eq!(select_layer(1, ALL), Some(1));
        assert_eq!(select_layer(2, 0b011), Some(1));
        assert_eq!(select_layer(2, 0b101), Some(2));
        assert_eq!(select_layer(1, 0b101), Some(0));
        // nothing at or below max: the lowest layer above it
        assert_eq!(select_layer(0, 0b110), Some(1));
        assert_eq!(select_layer(0, 0), None);
        assert_eq!(select_layer(9, 0b001), Some(0), "max is clamped");
        assert_eq!(layers_of(0b101).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn activity_follows_packets_with_a_timeout() {
        let mut a = LayerActivity::new(1_500_000);
        assert!(a.on_packet(0, 0));
        assert!(!a.on_packet(0, 10));
        assert!(a.on_packet(2, 20));
        assert!(!a.on_packet(7, 20), "out of range layers are ignored");
        assert_eq!(a.mask(), 0b101);
        assert!(!a.sweep(1_000_000));
        a.on_packet(0, 1_400_000);
        assert!(a.sweep(1_600_000), "layer 2 silent for 1.58 s");
        assert_eq!(a.mask(), 0b001);
        a.forget(0);
        assert_eq!(a.mask(), 0);
    }

    #[test]
    fn starts_on_a_keyframe_of_the_selected_layer_only() {
        let mut f = Forwarder::new(2);
        f.set_active_layers(ALL);
        assert_eq!(f.keyframe_wanted(), Some(2));
        assert_eq!(f.on_packet(0, true), Verdict::Drop(DropCause::OtherLayer));
        assert_eq!(
            f.on_packet(2, false),
            Verdict::Drop(DropCause::WaitingForKeyframe)
        );
        assert_eq!(f.on_packet(2, true), Verdict::Switch { from: None });
        assert_eq!(f.keyframe_wanted(), None);
        assert_eq!(f.on_packet(2, false), Verdict::Forward);
        assert_eq!(f.on_packet(1, true), Verdict::Drop(DropCause::OtherLayer));
        assert_eq!(f.switches(), 0);
    }

    #[test]
    fn switches_down_and_up_on_keyframes_only() {
        let mut f = Forwarder::new(2);
        f.set_active_layers(ALL);
        f.on_packet(2, true);
        // the subscriber wants less: layer 2 flows until layer 0's keyframe
        f.set_max_layer(0);
        assert_eq!(f.keyframe_wanted(), Some(0));
        assert_eq!(f.on_packet(2, false), Verdict::Forward);
        assert_eq!(f.on_packet(0, false), Verdict::Drop(DropCause::OtherLayer));
        assert_eq!(f.on_packet(0, true), Verdict::Switch { from: Some(2) });
        assert_eq!(f.on_packet(2, true), Verdict::Drop(DropCause::OtherLayer));
        assert_eq!(f.on_packet(0, false), Verdict::Forward);
        // and more again
        f.set_max_layer(1);
        assert_eq!(f.keyframe_wanted(), Some(1));
        assert_eq!(f.on_packet(0, false), Verdict::Forward);
        assert_eq!(f.on_packet(1, true), Verdict::Switch { from: Some(0) });
        assert_eq!((f.current(), f.switches()), (Some(1), 2));
    }

    #[test]
    fn layer_loss_and_return() {
        let mut f = Forwarder::new(2);
        f.set_active_layers(ALL);
        f.on_packet(2, true);
        // the publisher drops its top layer (bandwidth): wait for layer 1's keyframe
        f.set_active_layers(0b011);
        assert_eq!((f.current(), f.target()), (None, Some(1)));
        assert_eq!(f.keyframe_wanted(), Some(1));
        assert_eq!(f.on_packet(1, true), Verdict::Switch { from: None });
        // it comes back: upgrade on its keyframe
        f.set_active_layers(ALL);
        assert_eq!(f.keyframe_wanted(), Some(2));
        assert_eq!(f.on_packet(1, false), Verdict::Forward);
        assert_eq!(f.on_packet(2, true), Verdict::Switch { from: Some(1) });
        // a replaced stream on the current layer needs a keyframe too
        f.reset_layer(2);
        assert_eq!(
            f.on_packet(2, false),
            Verdict::Drop(DropCause::WaitingForKeyframe)
        );
    }

    #[test]
    fn a_bandwidth_cap_lowers_the_target_never_raises_it() {
        let mut f = Forwarder::new(1);
        f.set_active_layers(ALL);
        f.on_packet(1, true);
        f.set_cap(Some(0));
        assert_eq!((f.target(), f.keyframe_wanted()), (Some(0), Some(0)));
        assert_eq!(f.on_packet(0, true), Verdict::Switch { from: Some(1) });
        f.set_cap(Some(2));
        assert_eq!(f.target(), Some(1), "the subscriber's choice still limits");
        f.set_max_layer(0);
        f.set_cap(None);
        assert_eq!((f.target(), f.max_layer(), f.cap()), (Some(0), 0, None));
    }

    #[test]
    fn pause_and_resume_wait_for_a_keyframe() {
        let mut f = Forwarder::new(0);
        f.set_active_layers(0b001);
        f.on_packet(0, true);
        assert!(f.set_paused(true));
        assert!(!f.set_paused(true), "already paused");
        assert_eq!(f.on_packet(0, true), Verdict::Drop(DropCause::Paused));
        assert_eq!(f.keyframe_wanted(), None, "no requests while paused");
        assert!(!f.set_paused(false));
        assert_eq!(f.keyframe_wanted(), Some(0));
        assert_eq!(
            f.on_packet(0, false),
            Verdict::Drop(DropCause::WaitingForKeyframe)
        );
        assert_eq!(f.on_packet(0, true), Verdict::Switch { from: None });
    }

    #[test]
    fn subscriber_keyframe_requests() {
        let mut f = Forwarder::new(1);
        f.set_active_layers(0b011);
        f.on_packet(1, true);
        f.request_keyframe();
        assert_eq!(f.keyframe_wanted(), Some(1));
        f.keyframe_requested(0); // another layer: not an answer
        assert_eq!(f.keyframe_wanted(), Some(1));
        f.keyframe_requested(1);
        assert_eq!(f.keyframe_wanted(), None);
        // a keyframe passing answers a request too
        f.request_keyframe();
        f.on_packet(1, true);
        assert_eq!(f.keyframe_wanted(), None);
    }

    #[test]
    fn audio_every_packet_is_a_keyframe() {
        let mut f = Forwarder::new(MAX_LAYERS - 1);
        f.set_active_layers(0b001);
        assert_eq!(f.on_packet(0, true), Verdict::Switch { from: None });
        assert_eq!(f.on_packet(0, true), Verdict::Forward);
    }

    #[test]
    fn keyframe_requests_are_rate_limited() {
        let mut k = KeyframeRequester::new(500_000);
        assert!(k.try_request(1_000));
        assert!(!k.try_request(300_000));
        assert!(!k.try_request(500_999));
        assert!(k.try_request(501_000));
        assert_eq!(k.sent(), 2);
    }

    /// A simulated publisher (3 layers, 30 fps, keyframe per layer every 2 s, top layer
    /// dropping out for a while) and a subscriber changing its wanted layer: the forwarded
    /// stream never mixes layers between switches, every switch lands on a keyframe, and the
    /// forwarded layer is always the selected one once its keyframe came.
    #[test]
    fn simulated_publisher_and_subscriber() {
        let mut activity = LayerActivity::new(1_500_000);
        let mut f = Forwarder::new(2);
        let mut pli = [
            KeyframeRequester::new(500_000),
            KeyframeRequester::new(500_000),
            KeyframeRequester::new(500_000),
        ];
        let mut forwarded_layer = None;
        let mut plis = 0;
        for frame in 0..900u64 {
            let now = frame * 33_333;
            // the subscriber changes its mind every 5 s
            if frame % 150 == 0 {
                f.set_max_layer(((frame / 150) % 3) as u8);
            }
            for layer in 0..3u8 {
                // layer 2 is off between 10 s and 16 s
                if layer == 2 && (300..480).contains(&frame) {
                    continue;
                }
                if activity.on_packet(layer, now) {
                    f.set_active_layers(activity.mask());
                }
                let keyframe = (frame + u64::from(layer) * 7) % 60 == 0;
                match f.on_packet(layer, keyframe) {
                    Verdict::Switch { .. } => {
                        assert!(keyframe);
                        forwarded_layer = Some(layer);
                    }
                    Verdict::Forward => assert_eq!(forwarded_layer, Some(layer)),
                    Verdict::Drop(_) => {}
                }
            }
            if activity.sweep(now) {
                f.set_active_layers(activity.mask());
            }
            if let Some(l) = f.keyframe_wanted() {
                if pli[usize::from(l)].try_request(now) {
                    plis += 1;
                    f.keyframe_requested(l);
                }
            }
        }
        assert!(f.switches() >= 4, "{}", f.switches());
        // one PLI per layer per 500 ms at most: 30 s → at most 60 per layer
        assert!(plis > 0 && plis <= 180);
    }
}
