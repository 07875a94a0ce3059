//! Periodic work between receive batches: RTCP towards publishers (NACKs, PLIs, receiver
//! reports, transport-wide feedback) and subscribers (sender reports), layer activity, the
//! subscribers' bandwidth allocation (layer caps from their REMB estimates, every 500 ms), and
//! the batched events for Python (layers, audio levels, statistics).
//!
//! Reports are spread out: every 100 ms a tenth of the streams and down-tracks get theirs,
//! so each one reports about once a second without a burst every second.

use std::time::{SystemTime, UNIX_EPOCH};

use trackyard_core::allocator::{Demand, Outcome};
use trackyard_core::forwarder::{layers_of, MAX_LAYERS};
use trackyard_core::reports::ntp_from_unix_us;
use trackyard_core::rtcp::{write_nack, write_pli, write_rr, write_sdes_cname, write_sr};

use super::rtcp::send_rtcp;
use super::state::{IdMap, Kind, DEFAULT_RTT_US};
use super::Node;
use crate::events::{Event, StatsEntry};
use crate::stats::Stats;

const FAST_US: u64 = 20_000;
const SLOW_US: u64 = 100_000;
const LEVELS_US: u64 = 250_000;
const STATS_US: u64 = 2_000_000;
const CONSENT_US: u64 = 1_000_000;
/// Sequence numbers per NACK message.
const NACK_CHUNK: usize = 128;
/// The bandwidth allocation runs every this many slow ticks (500 ms).
const ALLOC_TICKS: u64 = 5;

/// A down-track by its track and its index in the track's list.
type DownTrackAt = (u32, usize);

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Node {
    pub(super) fn on_timers(&mut self, now: u64) {
        self.send_early_twcc(now); // what ICE-TCP frames filled since the last turn
        if now >= self.timers.fast {
            self.timers.fast = now + FAST_US;
            self.send_nacks(now);
            self.send_keyframe_requests(now);
        }
        if now >= self.timers.slow {
            self.timers.slow = now + SLOW_US;
            self.timers.slow_ticks += 1;
            self.sweep_layers(now);
            self.timers.twcc_full = false;
            self.send_twcc(now, false);
            self.send_reports(now, self.timers.slow_ticks % 10);
            if self.timers.slow_ticks.is_multiple_of(ALLOC_TICKS) {
                self.allocate_bandwidth(now);
            }
        }
        if now >= self.timers.levels {
            self.timers.levels = now + LEVELS_US;
            self.emit_audio_levels();
        }
        if now >= self.timers.stats {
            let first = self.timers.stats == 0;
            self.timers.stats = now + STATS_US;
            if !first {
                self.emit_stats(now);
            }
        }
        if now >= self.timers.consent {
            self.timers.consent = now + CONSENT_US;
            self.sweep_consent(now);
        }
    }

    fn send_nacks(&mut self, now: u64) {
        let Node { tracks, transports, send, stats, seq_scratch, .. } = self;
        for track in tracks.values_mut() {
            for src in track.sources.iter_mut() {
                let Some(tracker) = src.nack.as_mut() else { continue };
                let Some(t) = transports.get_mut(&src.transport) else { continue };
                let rtt = t.rtt_us.unwrap_or(DEFAULT_RTT_US);
                if tracker.next_deadline(rtt).is_none_or(|d| d > now) {
                    continue;
                }
                seq_scratch.clear();
                tracker.poll(now, rtt, seq_scratch);
                let sender = t.rtcp_ssrc;
                for chunk in seq_scratch.chunks(NACK_CHUNK) {
                    if send_rtcp(send, stats, t, |b| write_nack(b, sender, src.ssrc, chunk)) {
                        src.nacks_sent += 1;
                        Stats::bump(&stats.nacks_sent);
                    }
                }
            }
        }
    }

    /// PLIs for the layers down-tracks need a keyframe from, at most one per source stream
    /// per interval however many down-tracks ask.
    fn send_keyframe_requests(&mut self, now: u64) {
        let Node { tracks, transports, send, stats, .. } = self;
        for track in tracks.values_mut() {
            if track.kind != Kind::Video || track.muted {
                continue;
            }
            for dt in track.downtracks.iter_mut() {
                let Some(layer) = dt.fwd.keyframe_wanted() else { continue };
                if !transports.get(&dt.transport).is_some_and(|t| t.is_ready()) {
                    continue; // the subscriber is not connected yet
                }
                let Some(src) = track.sources.iter_mut().find(|s| s.layer == layer) else { continue };
                if !src.pli.try_request(now) {
                    continue;
                }
                let Some(t) = transports.get_mut(&src.transport) else { continue };
                let sender = t.rtcp_ssrc;
                if send_rtcp(send, stats, t, |b| write_pli(b, sender, src.ssrc)) {
                    Stats::bump(&stats.plis_sent);
                }
                dt.fwd.keyframe_requested(layer);
            }
        }
    }

    /// Layer activity timeouts; events for changed layer sets and forwarded layers.
    fn sweep_layers(&mut self, now: u64) {
        for (&id, track) in self.tracks.iter_mut() {
            if track.activity.sweep(now) {
                track.publish_activity();
            }
            let mask = track.activity.mask();
            if track.reported_layers != Some(mask) && (mask != 0 || track.reported_layers.is_some()) {
                track.reported_layers = Some(mask);
                self.pending.push(Event::Layers { track: id, layers: layers_of(mask).collect() });
            }
            for dt in track.downtracks.iter_mut() {
                let layer = dt.fwd.current();
                if dt.reported_layer != Some(layer) && (layer.is_some() || dt.reported_layer.is_some()) {
                    dt.reported_layer = Some(layer);
                    self.pending.push(Event::DownTrackLayer { downtrack: dt.id, layer });
                }
            }
        }
    }

    /// Layer caps of every subscriber transport with a bandwidth estimate (see
    /// `trackyard_core::allocator`): the layers' measured rates and the down-tracks' requests
    /// go in, the caps are applied to the forwarders (a changed target asks the publisher for
    /// a keyframe through `send_keyframe_requests`).
    fn allocate_bandwidth(&mut self, now: u64) {
        let Node { tracks, transports, stats, .. } = self;
        // per subscriber transport: each down-track (its track, its index there) and its demand
        let mut per_transport: IdMap<u32, Vec<(DownTrackAt, Demand)>> = IdMap::default();
        for (&id, track) in tracks.iter_mut() {
            for src in track.sources.iter_mut() {
                src.alloc_bps = src.alloc_rate.update(src.rx.bytes(), now);
            }
            let active = track.activity.mask();
            let mut rates = [None; MAX_LAYERS as usize];
            for (l, rate) in rates.iter_mut().enumerate() {
                if active & (1 << l) != 0 {
                    let src = track.sources.iter().find(|s| usize::from(s.layer) == l);
                    *rate = Some(src.and_then(|s| s.alloc_bps).unwrap_or(0));
                }
            }
            for (i, dt) in track.downtracks.iter().enumerate() {
                if transports.get(&dt.transport).is_none_or(|t| t.alloc.estimate().is_none()) {
                    continue;
                }
                let demand = Demand {
                    audio: track.kind == Kind::Audio,
                    paused: dt.fwd.paused(),
                    requested: dt.fwd.max_layer(),
                    cap: dt.fwd.cap(),
                    rates,
                };
                per_transport.entry(dt.transport).or_default().push(((id, i), demand));
            }
        }
        let mut demands = Vec::new();
        let mut caps = Vec::new();
        for (tid, items) in per_transport {
            let Some(t) = transports.get_mut(&tid) else { continue };
            demands.clear();
            demands.extend(items.iter().map(|(_, d)| *d));
            match t.alloc.allocate(now, &demands, &mut caps) {
                Outcome::Downgrade => Stats::bump(&stats.bwe_downgrades),
                Outcome::Upgrade => Stats::bump(&stats.bwe_upgrades),
                Outcome::Probe => Stats::bump(&stats.bwe_probes),
                Outcome::Hold | Outcome::NoEstimate => {}
            }
            for (((track, i), _), cap) in items.iter().zip(&caps) {
                if let Some(dt) = tracks.get_mut(track).and_then(|t| t.downtracks.get_mut(*i)) {
                    dt.fwd.set_cap(*cap);
                }
            }
        }
    }

    /// Transport-wide feedback for recorders that filled up in the receive batch just handled
    /// (a burst between two rounds): reported now rather than dropped. A batch (at most
    /// `BATCH` datagrams) fits in the margin `is_full` leaves.
    pub(super) fn send_early_twcc(&mut self, now: u64) {
        if std::mem::take(&mut self.timers.twcc_full) {
            self.send_twcc(now, true);
        }
    }

    /// Transport-wide feedback to publishers that negotiated it: every 100 ms, or early when
    /// a recorder fills up (`only_full`).
    fn send_twcc(&mut self, _now: u64, only_full: bool) {
        let Node { transports, send, stats, .. } = self;
        for t in transports.values_mut() {
            let Some(mut rec) = t.twcc_in.take() else { continue };
            if !only_full || rec.is_full() {
                let (sender, media) = (t.rtcp_ssrc, t.twcc_media_ssrc);
                for _ in 0..8 {
                    if rec.is_empty() {
                        break;
                    }
                    let mut wrote = false;
                    let ok = send_rtcp(send, stats, t, |b| match rec.write_feedback(b, sender, media)? {
                        Some(n) => {
                            wrote = true;
                            Ok(n)
                        }
                        None => Err(trackyard_core::rtcp::RtcpError::Malformed),
                    });
                    if ok {
                        Stats::bump(&stats.twcc_sent);
                    } else if !wrote {
                        break;
                    }
                }
            }
            t.twcc_in = Some(rec);
        }
    }

    /// Receiver reports to publishers and sender reports to subscribers, for the tenth of
    /// them whose turn it is.
    fn send_reports(&mut self, now: u64, phase: u64) {
        let unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let ntp = ntp_from_unix_us(unix_us);
        let Node { tracks, transports, send, stats, .. } = self;
        for track in tracks.values_mut() {
            for src in track.sources.iter_mut() {
                if u64::from(src.ssrc) % 10 != phase || src.rx.received() == 0 {
                    continue;
                }
                let Some(t) = transports.get_mut(&src.transport) else { continue };
                let block = src.rx.report_block(src.ssrc, now);
                let sender = t.rtcp_ssrc;
                if send_rtcp(send, stats, t, |b| write_rr(b, sender, &[block])) {
                    Stats::bump(&stats.rr_sent);
                }
            }
            for dt in track.downtracks.iter_mut() {
                if u64::from(dt.id) % 10 != phase {
                    continue;
                }
                let Some(t) = transports.get_mut(&dt.transport) else { continue };
                if t.addr.is_none() || t.tx.is_none() {
                    continue;
                }
                let Some(info) = dt.tx.sender_report(dt.ssrc, now, ntp) else { continue };
                let cname = &dt.cname;
                let ok = send_rtcp(send, stats, t, |b| {
                    let mut n = write_sr(b, &info, &[])?;
                    if !cname.is_empty() {
                        n += write_sdes_cname(&mut b[n..], info.ssrc, cname)?;
                    }
                    Ok(n)
                });
                if ok {
                    Stats::bump(&stats.sr_sent);
                }
            }
        }
    }

    fn emit_audio_levels(&mut self) {
        let mut levels = Vec::new();
        for (&id, track) in self.tracks.iter_mut() {
            if track.kind != Kind::Audio {
                continue;
            }
            if let Some((level, voice)) = track.audio.take() {
                if !track.muted {
                    levels.push((id, level, voice));
                }
            }
        }
        if !levels.is_empty() {
            levels.sort_unstable_by_key(|&(_, level, _)| level);
            self.pending.push(Event::AudioLevels(levels));
        }
    }

    fn emit_stats(&mut self, now: u64) {
        let mut entries = Vec::new();
        let Node { tracks, transports, .. } = self;
        for (&id, track) in tracks.iter_mut() {
            for src in track.sources.iter_mut() {
                let bitrate = src.rate.bitrate(src.rx.bytes(), now);
                entries.push(StatsEntry::default()
                    .text("kind", "inbound")
                    .int("track", id)
                    .int("transport", src.transport)
                    .int("ssrc", src.ssrc)
                    .int("layer", src.layer)
                    .int("packets", src.rx.received())
                    .int("bytes", src.rx.bytes())
                    .int("bitrate", bitrate)
                    .int("lost", src.rx.cumulative_lost())
                    .float("jitter_ms", ms(src.rx.jitter_us()))
                    .int("nacks", src.nacks_sent)
                    .int("plis", src.pli.sent())
                    .int("rtx", src.rtx_received));
            }
            for dt in track.downtracks.iter_mut() {
                let bitrate = dt.rate.bitrate(dt.tx.bytes(), now);
                let mut e = StatsEntry::default()
                    .text("kind", "outbound")
                    .int("downtrack", dt.id)
                    .int("track", id)
                    .int("transport", dt.transport)
                    .int("ssrc", dt.ssrc)
                    .int("layer", dt.fwd.current().map_or(-1, i64::from))
                    .int("packets", dt.tx.packets())
                    .int("bytes", dt.tx.bytes())
                    .int("bitrate", bitrate)
                    .int("lost", dt.tx.cumulative_lost)
                    .float("fraction_lost", f64::from(dt.tx.fraction_lost) / 256.0)
                    .float("jitter_ms", ms(dt.tx.jitter_us()))
                    .int("nacks", dt.nacks)
                    .int("plis", dt.plis)
                    .int("retransmitted", dt.retransmitted)
                    .int("layer_switches", dt.fwd.switches())
                    .int("bwe_cap", dt.fwd.cap().map_or(-1, i64::from));
                if let Some(rtt) = dt.tx.rtt_us {
                    e = e.float("rtt_ms", ms(rtt));
                }
                if let Some(bps) = transports.get(&dt.transport).and_then(|t| t.alloc.estimate()) {
                    e = e.int("bwe_estimate", bps);
                }
                entries.push(e);
            }
        }
        if !entries.is_empty() {
            self.pending.push(Event::Stats(entries));
        }
    }
}
