//! Subscriber bandwidth allocation: which simulcast layer each video down-track of one
//! subscriber transport may forward, from the subscriber's receive-side estimate (REMB).
//!
//! Inputs per decision ([`Allocator::allocate`], called periodically): the estimate (fed with
//! [`Allocator::on_estimate`] as REMBs arrive) and, per down-track of the transport, what the
//! subscriber asked for, its current cap and the measured bitrate of each active layer
//! ([`Demand`]). Output: a new cap per down-track (`None` = uncapped) and what happened
//! ([`Outcome`]). Caps are layer numbers; the forwarder switches on the next keyframe.
//!
//! A receive-side estimate does not grow much beyond what is actually sent (libwebrtc keeps it
//! under 1.5× the incoming rate and raises it by a few percent a second), and it drops when
//! the path congests. Hence:
//! - **downgrade** at once when the estimate *falls* (drops below [`Config::fall_ratio`] of
//!   its recent peak) and is then below what the current caps cost (or stays far below it,
//!   [`Config::starved_ratio`]): new caps are the best allocation fitting `headroom × estimate`;
//! - **upgrade** one step (one down-track, one layer) when the next step has fitted in
//!   `headroom × estimate` without a fall for [`Config::upgrade_hold_us`];
//! - otherwise **probe** one step up after a quiet period without a fall; a downgrade within
//!   [`Config::probe_window_us`] of a probe doubles the quiet period (up to
//!   [`Config::max_backoff_us`]), a probe that survives the window resets it.
//!
//! Audio down-tracks are never capped; their rates are taken off the budget first. Without a
//! fresh estimate (none yet, or older than [`Config::estimate_max_age_us`]) nothing is capped.

use std::collections::VecDeque;

use crate::forwarder::{layers_of, select_layer, LayerMask, MAX_LAYERS};

/// Tuning of the allocation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Share of the estimate the chosen layers may use (upgrades and downgrade targets).
    pub headroom: f64,
    /// An estimate below this share of its peak over [`peak_window_us`](Self::peak_window_us)
    /// is a fall (congestion).
    pub fall_ratio: f64,
    pub peak_window_us: u64,
    /// A fall counts for this long.
    pub fall_memory_us: u64,
    /// An estimate below this share of the current cost for [`starved_us`](Self::starved_us)
    /// downgrades even without a visible fall (not while probing).
    pub starved_ratio: f64,
    pub starved_us: u64,
    /// The next step must fit this long before an upgrade.
    pub upgrade_hold_us: u64,
    /// The first quiet period before a probe, and its cap when backing off.
    pub probe_quiet_us: u64,
    pub max_backoff_us: u64,
    /// A downgrade this soon after a probe makes the probe a failure.
    pub probe_window_us: u64,
    /// An estimate older than this is ignored (the transport is uncapped).
    pub estimate_max_age_us: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            headroom: 0.9,
            fall_ratio: 0.95,
            peak_window_us: 3_000_000,
            fall_memory_us: 1_500_000,
            starved_ratio: 0.5,
            starved_us: 3_000_000,
            upgrade_hold_us: 3_000_000,
            probe_quiet_us: 4_000_000,
            max_backoff_us: 20_000_000,
            probe_window_us: 6_000_000,
            estimate_max_age_us: 10_000_000,
        }
    }
}

/// One down-track of the transport, as the allocation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Audio: never capped, its rate comes off the budget.
    pub audio: bool,
    /// Paused or muted: costs nothing, keeps its cap.
    pub paused: bool,
    /// The subscriber's top layer.
    pub requested: u8,
    /// The cap in force (None: uncapped).
    pub cap: Option<u8>,
    /// Measured bitrate (bit/s) of each active layer of the track (None: not active).
    pub rates: [Option<u64>; MAX_LAYERS as usize],
}

impl Demand {
    fn active(&self) -> LayerMask {
        (0..MAX_LAYERS).filter(|&l| self.rates[usize::from(l)].is_some()).fold(0, |m, l| m | (1 << l))
    }

    /// The layers a cap may choose among, lowest first: the active ones up to the request
    /// (or the one the forwarder would take when none is).
    fn options(&self) -> Vec<u8> {
        let active = self.active();
        let mut v: Vec<u8> = layers_of(active).filter(|&l| l <= self.requested).collect();
        if v.is_empty() {
            v.extend(select_layer(self.requested, active));
        }
        v
    }

    fn rate(&self, layer: u8) -> u64 {
        self.rates.get(usize::from(layer)).copied().flatten().unwrap_or(0)
    }
}

/// What one decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No fresh estimate: everything uncapped.
    NoEstimate,
    /// Caps kept.
    Hold,
    /// Caps lowered to fit the estimate.
    Downgrade,
    /// One step up: the estimate had room for it.
    Upgrade,
    /// One step up to find out whether the path carries it.
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    started_us: u64,
}

/// The allocation state of one subscriber transport.
#[derive(Debug, Clone)]
pub struct Allocator {
    cfg: Config,
    /// Recent estimates (time, bit/s), newest last, within the peak window.
    history: VecDeque<(u64, u64)>,
    last_fall_us: Option<u64>,
    fits_since_us: Option<u64>,
    starved_since_us: Option<u64>,
    backoff_us: u64,
    next_probe_us: u64,
    probe: Option<Probe>,
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Allocator {
    pub fn new(cfg: Config) -> Self {
        let backoff_us = cfg.probe_quiet_us;
        Allocator {
            cfg,
            history: VecDeque::with_capacity(32),
            last_fall_us: None,
            fits_since_us: None,
            starved_since_us: None,
            backoff_us,
            next_probe_us: 0,
            probe: None,
        }
    }

    /// The latest estimate (bit/s), if any.
    pub fn estimate(&self) -> Option<u64> {
        self.history.back().map(|&(_, bps)| bps)
    }

    /// The current quiet period before the next probe.
    pub fn backoff_us(&self) -> u64 {
        self.backoff_us
    }

    /// A receive-side estimate (REMB) arrived.
    pub fn on_estimate(&mut self, bps: u64, now_us: u64) {
        let horizon = now_us.saturating_sub(self.cfg.peak_window_us);
        while self.history.front().is_some_and(|&(t, _)| t < horizon) || self.history.len() >= 32 {
            self.history.pop_front();
        }
        let peak = self.history.iter().map(|&(_, b)| b).max();
        if peak.is_some_and(|p| (bps as f64) < p as f64 * self.cfg.fall_ratio) {
            // one fall: later estimates compare with this one
            self.last_fall_us = Some(now_us);
            self.history.clear();
        }
        self.history.push_back((now_us, bps));
    }

    fn fresh_estimate(&self, now_us: u64) -> Option<u64> {
        let &(at, bps) = self.history.back()?;
        (now_us.saturating_sub(at) <= self.cfg.estimate_max_age_us).then_some(bps)
    }

    fn fell(&self, now_us: u64) -> bool {
        self.last_fall_us.is_some_and(|t| now_us.saturating_sub(t) <= self.cfg.fall_memory_us)
    }

    /// Decides the caps of the transport's down-tracks (`demands`) at `now_us`; `caps` gets
    /// one entry per demand (audio and paused ones: unchanged / None).
    pub fn allocate(&mut self, now_us: u64, demands: &[Demand], caps: &mut Vec<Option<u8>>) -> Outcome {
        caps.clear();
        let Some(estimate) = self.fresh_estimate(now_us) else {
            caps.extend(demands.iter().map(|_| None));
            self.probe = None;
            self.fits_since_us = None;
            return Outcome::NoEstimate;
        };
        let audio: u64 = demands.iter().filter(|d| d.audio && !d.paused).map(|d| d.rate(0)).sum();
        let budget = (estimate as f64 * self.cfg.headroom) as u64;
        let budget = budget.saturating_sub(audio);
        let video_estimate = estimate.saturating_sub(audio);

        // per capped down-track: its options and the index of its current cap
        let managed: Vec<(usize, Vec<u8>)> = demands
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.audio && !d.paused)
            .map(|(i, d)| (i, d.options()))
            .filter(|(_, o)| !o.is_empty())
            .collect();
        let current: Vec<usize> = managed
            .iter()
            .map(|(i, o)| {
                let cap = demands[*i].cap.unwrap_or(demands[*i].requested);
                o.iter().rposition(|&l| l <= cap).unwrap_or(0)
            })
            .collect();
        let cost = |idx: &[usize]| -> u64 {
            managed.iter().zip(idx).map(|((i, o), &k)| demands[*i].rate(o[k])).sum()
        };
        let finish = |idx: &[usize], caps: &mut Vec<Option<u8>>| {
            caps.extend(demands.iter().map(|d| if d.audio { None } else { d.cap }));
            for ((i, o), &k) in managed.iter().zip(idx) {
                caps[*i] = if k + 1 == o.len() { None } else { Some(o[k]) };
            }
        };

        let now_cost = cost(&current);
        if self.probe.is_some_and(|p| now_us.saturating_sub(p.started_us) > self.cfg.probe_window_us) {
            // the probe survived: the path carries it
            self.probe = None;
            self.backoff_us = self.cfg.probe_quiet_us;
        }
        // a probe's estimate takes a while to grow to the new rate: not starved meanwhile
        let starved = self.probe.is_none() && (video_estimate as f64) < now_cost as f64 * self.cfg.starved_ratio;
        if !starved {
            self.starved_since_us = None;
        } else if self.starved_since_us.is_none() {
            self.starved_since_us = Some(now_us);
        }
        let starved_long = self.starved_since_us.is_some_and(|t| now_us.saturating_sub(t) >= self.cfg.starved_us);
        if (self.fell(now_us) && now_cost > video_estimate) || starved_long {
            let fit = best_fit(&managed, demands, budget);
            if cost(&fit) < now_cost {
                if self.probe.take().is_some() {
                    self.backoff_us = (self.backoff_us * 2).min(self.cfg.max_backoff_us);
                }
                self.next_probe_us = now_us + self.backoff_us;
                self.fits_since_us = None;
                self.starved_since_us = None;
                finish(&fit, caps);
                return Outcome::Downgrade;
            }
        }
        let Some(step) = next_step(&managed, &current) else {
            self.fits_since_us = None;
            finish(&current, caps);
            return Outcome::Hold;
        };
        let step_cost = cost(&step);
        if self.fell(now_us) {
            self.fits_since_us = None;
            // quiet means without a fall: no probe sooner than a quiet period after this one
            let fall = self.last_fall_us.unwrap_or(now_us);
            self.next_probe_us = self.next_probe_us.max(fall + self.backoff_us.min(self.cfg.probe_quiet_us));
            finish(&current, caps);
            return Outcome::Hold;
        }
        if step_cost <= budget {
            let since = *self.fits_since_us.get_or_insert(now_us);
            if now_us.saturating_sub(since) >= self.cfg.upgrade_hold_us {
                self.fits_since_us = None;
                finish(&step, caps);
                return Outcome::Upgrade;
            }
        } else {
            self.fits_since_us = None;
            if now_us >= self.next_probe_us && self.probe.is_none() {
                self.probe = Some(Probe { started_us: now_us });
                self.next_probe_us = now_us + self.backoff_us;
                finish(&step, caps);
                return Outcome::Probe;
            }
        }
        finish(&current, caps);
        Outcome::Hold
    }
}

/// The next step up: the lowest down-track (by option index, then order) that can go one up.
fn next_step(managed: &[(usize, Vec<u8>)], current: &[usize]) -> Option<Vec<usize>> {
    let (j, _) = managed
        .iter()
        .zip(current)
        .enumerate()
        .filter(|(_, ((_, o), &k))| k + 1 < o.len())
        .min_by_key(|(_, (_, &k))| k)?;
    let mut step = current.to_vec();
    step[j] += 1;
    Some(step)
}

/// The best allocation within `budget`: everyone at their lowest option, then one step at a
/// time to the lowest down-track while the total fits.
fn best_fit(managed: &[(usize, Vec<u8>)], demands: &[Demand], budget: u64) -> Vec<usize> {
    let cost = |idx: &[usize]| -> u64 { managed.iter().zip(idx).map(|((i, o), &k)| demands[*i].rate(o[k])).sum() };
    let mut idx = vec![0; managed.len()];
    let mut stuck = vec![false; managed.len()];
    loop {
        let next = (0..managed.len()).filter(|&j| !stuck[j] && idx[j] + 1 < managed[j].1.len()).min_by_key(|&j| idx[j]);
        let Some(j) = next else { return idx };
        idx[j] += 1;
        if cost(&idx) > budget {
            idx[j] -= 1;
            stuck[j] = true;
        }
    }
}

/// Bitrate of a byte counter over a sliding window of samples.
#[derive(Debug, Clone)]
pub struct BitrateWindow {
    samples: VecDeque<(u64, u64)>,
    span_us: u64,
}

impl BitrateWindow {
    /// Averages over about `span_us`.
    pub fn new(span_us: u64) -> Self {
        BitrateWindow { samples: VecDeque::with_capacity(8), span_us }
    }

    /// Records the counter (`bytes` so far) at `now_us`; returns the bit rate over the window
    /// (None until two samples).
    pub fn update(&mut self, bytes: u64, now_us: u64) -> Option<u64> {
        self.samples.push_back((now_us, bytes));
        while self.samples.len() > 2 && self.samples[1].0 + self.span_us <= now_us {
            self.samples.pop_front();
        }
        let &(t0, b0) = self.samples.front()?;
        let elapsed = now_us.checked_sub(t0).filter(|&e| e > 0)?;
        Some(bytes.saturating_sub(b0).saturating_mul(8_000_000) / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 500_000;
    /// A simulcast track at 150 k / 500 k / 1.5 Mbit/s.
    const RATES: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn video(requested: u8, cap: Option<u8>) -> Demand {
        Demand { audio: false, paused: false, requested, cap, rates: RATES }
    }

    fn audio() -> Demand {
        Demand { audio: true, paused: false, requested: 2, cap: None, rates: [Some(40_000), None, None] }
    }

    /// Runs the allocator every tick from `from` to `to`, with the estimate `est(t)` (a REMB per
    /// tick) and the caps fed back; returns the outcomes with their times.
    fn run(a: &mut Allocator, d: &mut [Demand], from: u64, to: u64, est: impl Fn(u64) -> u64)
           -> Vec<(u64, Outcome)> {
        let mut caps = Vec::new();
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            a.on_estimate(est(t), t);
            let o = a.allocate(t, d, &mut caps);
            for (dm, c) in d.iter_mut().zip(&caps) {
                dm.cap = *c;
            }
            if o != Outcome::Hold {
                out.push((t, o));
            }
            t += TICK;
        }
        out
    }

    #[test]
    fn nothing_capped_without_an_estimate() {
        let mut a = Allocator::default();
        let mut caps = Vec::new();
        assert_eq!(a.allocate(0, &[video(2, Some(0))], &mut caps), Outcome::NoEstimate);
        assert_eq!(caps, vec![None]);
        a.on_estimate(100_000, 0);
        assert_eq!(a.allocate(20_000_000, &[video(2, Some(0))], &mut caps), Outcome::NoEstimate, "stale");
    }

    #[test]
    fn a_ramping_estimate_below_the_cost_does_not_downgrade() {
        // libwebrtc's first REMB is about the incoming rate, then it grows
        let mut a = Allocator::default();
        let mut d = [video(2, None)];
        let out = run(&mut a, &mut d, 0, 10_000_000, |t| 1_400_000 + t / 10);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(d[0].cap, None);
    }

    #[test]
    fn downgrades_when_the_estimate_falls_then_holds() {
        let mut a = Allocator::default();
        let mut d = [video(2, None)];
        run(&mut a, &mut d, 0, 3_000_000, |_| 2_000_000);
        // congestion: the estimate drops to 600 k (540 k with headroom: the 500 k layer)
        let out = run(&mut a, &mut d, 3_000_000, 3_600_000, |_| 600_000);
        assert_eq!(out, vec![(3_000_000, Outcome::Downgrade)], "at once");
        assert_eq!(d[0].cap, Some(1));
        // it stays there: no probe before the quiet period
        let out = run(&mut a, &mut d, 3_500_000, 7_000_000, |_| 600_000);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(d[0].cap, Some(1));
    }

    #[test]
    fn a_persistently_starved_estimate_downgrades_without_a_fall() {
        let mut a = Allocator::default();
        let mut d = [video(2, None)];
        let out = run(&mut a, &mut d, 0, 4_000_000, |_| 400_000);
        assert_eq!(out, vec![(3_000_000, Outcome::Downgrade)]);
        assert_eq!(d[0].cap, Some(0), "400 k × 0.9 fits only the 150 k layer");
    }

    #[test]
    fn upgrades_after_the_estimate_has_room_for_a_while() {
        let mut a = Allocator::default();
        let mut d = [video(2, Some(0))];
        // 800 k: room for layer 1 (500 k ≤ 720 k), not 2
        let out = run(&mut a, &mut d, 0, 2_900_000, |_| 800_000);
        assert!(out.is_empty(), "not before the hold time: {out:?}");
        let out = run(&mut a, &mut d, 3_000_000, 3_500_000, |_| 800_000);
        assert_eq!(out, vec![(3_000_000, Outcome::Upgrade)]);
        assert_eq!(d[0].cap, Some(1));
        // room for the top layer: uncapped after another hold
        let out = run(&mut a, &mut d, 3_500_000, 7_000_000, |_| 2_000_000);
        assert_eq!(out, vec![(6_500_000, Outcome::Upgrade)]);
        assert_eq!(d[0].cap, None);
    }

    #[test]
    fn probes_up_with_exponential_backoff_on_failure() {
        let mut a = Allocator::default();
        let mut d = [video(2, None)];
        run(&mut a, &mut d, 0, 1_000_000, |_| 2_000_000);
        run(&mut a, &mut d, 1_000_000, 1_500_000, |_| 600_000); // downgrade to 1 at 1.0 s
        assert_eq!(d[0].cap, Some(1));
        // the path carries 600 k and no more: every probe to layer 2 congests it
        let mut probes = Vec::new();
        let mut t = 1_500_000;
        while t < 60_000_000 {
            let probing = d[0].cap.is_none();
            let est = if probing { 480_000 } else { 600_000 };
            for (at, o) in run(&mut a, &mut d, t, t + TICK, |_| est) {
                if o == Outcome::Probe {
                    probes.push(at);
                }
            }
            t += TICK;
        }
        let gaps: Vec<u64> = probes.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
        assert_eq!(probes[0], 5_000_000, "first probe a quiet period after the downgrade");
        // each failure doubles the quiet period (+ the 0.5 s the probe lasted), up to 20 s
        assert_eq!(gaps, vec![8, 16, 20], "{probes:?}");
        assert_eq!(a.backoff_us(), 20_000_000);
    }

    #[test]
    fn a_probe_that_holds_stays_and_resets_the_backoff() {
        let mut a = Allocator::default();
        let mut d = [video(2, None)];
        run(&mut a, &mut d, 0, 1_000_000, |_| 2_000_000);
        run(&mut a, &mut d, 1_000_000, 1_500_000, |_| 600_000);
        // one failed probe
        run(&mut a, &mut d, 1_500_000, 5_500_000, |_| 600_000);
        assert_eq!(d[0].cap, None, "probing at 5 s");
        run(&mut a, &mut d, 5_500_000, 6_000_000, |_| 560_000);
        assert_eq!((d[0].cap, a.backoff_us()), (Some(1), 8_000_000));
        // the path is freed: the estimate stays, then grows with what is sent
        let out = run(&mut a, &mut d, 6_000_000, 30_000_000, |t| 600_000 + (t - 6_000_000) / 20);
        assert_eq!(out.iter().map(|x| x.1).collect::<Vec<_>>(), vec![Outcome::Probe], "{out:?}");
        assert_eq!(out[0].0, 13_500_000);
        assert_eq!(d[0].cap, None, "kept");
        assert_eq!(a.backoff_us(), 4_000_000, "reset after the probe window");
    }

    #[test]
    fn video_down_tracks_share_one_budget_and_audio_is_never_capped() {
        let mut a = Allocator::default();
        let mut d = [video(2, None), audio(), video(2, None)];
        run(&mut a, &mut d, 0, 1_000_000, |_| 5_000_000);
        assert_eq!([d[0].cap, d[1].cap, d[2].cap], [None, None, None]);
        // 1.3 M × 0.9 − 40 k audio = 1.13 M: 500 k + 500 k fits, 1.5 M + anything does not
        let out = run(&mut a, &mut d, 1_000_000, 1_500_000, |_| 1_300_000);
        assert_eq!(out, vec![(1_000_000, Outcome::Downgrade)]);
        assert_eq!([d[0].cap, d[1].cap, d[2].cap], [Some(1), None, Some(1)]);
        // 800 k × 0.9 − 40 k = 680 k: 500 k + 150 k
        run(&mut a, &mut d, 1_500_000, 2_000_000, |_| 800_000);
        let mut caps = [d[0].cap, d[2].cap];
        caps.sort();
        assert_eq!(caps, [Some(0), Some(1)]);
        assert_eq!(d[1].cap, None);
    }

    #[test]
    fn never_above_the_request_and_inactive_layers_skipped() {
        let mut a = Allocator::default();
        // wants layer 1 at most: a rich estimate leaves it uncapped (the request limits it)
        let mut d = [video(1, None)];
        let out = run(&mut a, &mut d, 0, 10_000_000, |_| 10_000_000);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(d[0].cap, None);
        // the estimate falls: capped at 0
        run(&mut a, &mut d, 10_000_000, 10_500_000, |_| 300_000);
        assert_eq!(d[0].cap, Some(0));
        // layer 1 not sent by the publisher: a cap never names it
        let mut d = [Demand { rates: [Some(150_000), None, Some(1_500_000)], ..video(2, None) }];
        let mut a = Allocator::default();
        run(&mut a, &mut d, 0, 1_000_000, |_| 3_000_000);
        run(&mut a, &mut d, 1_000_000, 1_500_000, |_| 1_000_000);
        assert_eq!(d[0].cap, Some(0));
    }

    #[test]
    fn paused_down_tracks_cost_nothing() {
        let mut a = Allocator::default();
        let mut d = [Demand { paused: true, ..video(2, None) }, video(2, None)];
        run(&mut a, &mut d, 0, 1_000_000, |_| 2_000_000);
        run(&mut a, &mut d, 1_000_000, 1_500_000, |_| 1_700_000);
        assert_eq!([d[0].cap, d[1].cap], [None, None], "1.5 M fits 1.7 M × 0.9");
    }

    #[test]
    fn bitrate_over_a_sliding_window() {
        let mut w = BitrateWindow::new(2_000_000);
        assert_eq!(w.update(0, 0), None);
        assert_eq!(w.update(62_500, 500_000), Some(1_000_000));
        for i in 2..=8u64 {
            w.update(62_500 * i, 500_000 * i);
        }
        // a burst: the window spreads it over about 2 s
        let r = w.update(62_500 * 9 + 250_000, 4_500_000).unwrap();
        assert!((1_900_000..=2_100_000).contains(&r), "{r}");
    }
}
