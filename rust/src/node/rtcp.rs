//! RTCP from peers, and the helper that sends ours.
//!
//! A transport's compound packets are walked once; each sub-packet is routed by the SSRC it
//! is about:
//! - sender reports from publishers: LSR for our receiver reports; their report blocks (a
//!   peer that also receives) and receiver reports from subscribers: loss, jitter and RTT of
//!   our down-tracks;
//! - NACK from a subscriber: each lost output number is mapped back to the source packet
//!   (down-track sequencer), fetched from the source stream's cache and resent with the same
//!   output number and timestamp;
//! - PLI/FIR from a subscriber: a keyframe request for the layer it receives, paced per
//!   source stream by the timers;
//! - REMB from a subscriber: its bandwidth estimate, kept for the layer allocation (timers).
//!
//! A malformed sub-packet ends the walk and is counted.

use trackyard_core::rtcp::{parse_compound, Nack, ReportBlock, RtcpError, RtcpPacket};

use super::forward::{write_rtp, Rewrite};
use super::state::{Transport, RESEND_MIN_INTERVAL_US};
use super::Node;
use crate::stats::Stats;
use super::tcp::Egress;

/// Builds an RTCP packet with `build` in the send queue, protects it with the transport's
/// keys and queues it. False when the transport is not ready or building fails.
pub(super) fn send_rtcp(send: &mut Egress, stats: &Stats, t: &mut Transport,
                        build: impl FnOnce(&mut [u8]) -> Result<usize, RtcpError>) -> bool {
    let (Some(addr), Some(tx)) = (t.addr, t.tx.as_mut()) else { return false };
    let slot = send.slot();
    let room = slot.len() - 64; // the SRTCP trailer goes after
    let Ok(n) = build(&mut slot[..room]) else { return false };
    match tx.protect_rtcp(slot, n) {
        Ok(m) => {
            send.push(m, &addr);
            Stats::add(&stats.tx_bytes, m as u64);
            true
        }
        Err(_) => {
            Stats::bump(&stats.srtp_failures);
            false
        }
    }
}

impl Node {
    pub(super) fn handle_rtcp(&mut self, transport: u32, len: usize, now: u64) {
        // the walk borrows the packet while the handlers change the node: lend the buffer out
        let buf = std::mem::take(&mut self.scratch);
        for item in parse_compound(&buf[..len]) {
            match item {
                Ok(packet) => self.on_rtcp(transport, packet, now),
                Err(_) => {
                    Stats::bump(&self.stats.malformed);
                    break;
                }
            }
        }
        self.scratch = buf;
    }

    fn on_rtcp(&mut self, transport: u32, packet: RtcpPacket<'_>, now: u64) {
        match packet {
            RtcpPacket::SenderReport(sr) => {
                if let Some(route) = self.streams.get(&(transport, sr.info.ssrc)).copied() {
                    let source = self.tracks.get_mut(&route.track)
                        .and_then(|t| t.sources.iter_mut().find(|s| s.ssrc == sr.info.ssrc));
                    if let Some(s) = source {
                        s.rx.on_sender_report(sr.info.ntp_time, now);
                    }
                }
                for block in sr.blocks {
                    self.on_report_block(transport, &block, now);
                }
            }
            RtcpPacket::ReceiverReport(rr) => {
                for block in rr.blocks {
                    self.on_report_block(transport, &block, now);
                }
            }
            RtcpPacket::Nack(nack) => self.on_nack(transport, &nack, now),
            RtcpPacket::Pli(pli) => {
                Stats::bump(&self.stats.plis_received);
                self.on_keyframe_request(transport, pli.media_ssrc);
            }
            RtcpPacket::Fir(fir) => {
                Stats::bump(&self.stats.firs_received);
                for (ssrc, _) in fir.entries() {
                    self.on_keyframe_request(transport, ssrc);
                }
            }
            RtcpPacket::Remb(remb) => {
                // a subscriber's receive-side estimate: input of the layer allocation (timers)
                Stats::bump(&self.stats.remb_received);
                if let Some(t) = self.transports.get_mut(&transport) {
                    t.alloc.on_estimate(remb.bitrate, now);
                }
            }
            _ => {} // SDES, BYE, TWCC from subscribers (no sender-side BWE), APP, XR
        }
    }

    fn on_report_block(&mut self, transport: u32, block: &ReportBlock, now: u64) {
        let Some(&id) = self.dt_routes.get(&(transport, block.ssrc)) else { return };
        let Some((t, i)) = self.find_downtrack(id) else { return };
        let dt = &mut t.downtracks[i];
        dt.tx.on_report_block(block, now);
        let rtt = dt.tx.rtt_us;
        if let (Some(rtt), Some(tr)) = (rtt, self.transports.get_mut(&transport)) {
            tr.rtt_us = Some(rtt);
        }
    }

    fn on_keyframe_request(&mut self, transport: u32, media_ssrc: u32) {
        let Some(&id) = self.dt_routes.get(&(transport, media_ssrc)) else { return };
        if let Some((t, i)) = self.find_downtrack(id) {
            let dt = &mut t.downtracks[i];
            dt.plis += 1;
            dt.fwd.request_keyframe();
        }
    }

    fn on_nack(&mut self, transport: u32, nack: &Nack<'_>, now: u64) {
        Stats::bump(&self.stats.nacks_received);
        let Some(&id) = self.dt_routes.get(&(transport, nack.media_ssrc)) else { return };
        let Some(&track_id) = self.dt_track.get(&id) else { return };
        let Node { tracks, transports, send, stats, .. } = self;
        let Some(track) = tracks.get_mut(&track_id) else { return };
        let Some(dt) = track.downtracks.iter_mut().find(|d| d.id == id) else { return };
        for seq in nack.lost() {
            dt.nacks += 1;
            Stats::bump(&stats.nacked_packets);
            let Ok(sent) = dt.seqr.lookup_for_resend(seq, now, RESEND_MIN_INTERVAL_US) else {
                Stats::bump(&stats.rtx_missed);
                continue;
            };
            let Some(source) = track.sources.iter().find(|s| s.ssrc == sent.src_ssrc) else {
                Stats::bump(&stats.rtx_missed);
                continue;
            };
            let Ok(packet) = source.cache.get(sent.src_seq, now) else {
                Stats::bump(&stats.rtx_missed);
                continue;
            };
            let from_ext = transports.get(&source.transport).map(|t| t.ext).unwrap_or_default();
            let Some(sub) = transports.get_mut(&transport) else { return };
            let rw = Rewrite { ssrc: dt.ssrc, payload_type: dt.payload_type, seq, timestamp: sent.timestamp,
                               from_ext: &from_ext };
            match write_rtp(send, sub, packet, &rw, now) {
                Some(n) => {
                    dt.retransmitted += 1;
                    dt.tx.on_resend(n);
                    Stats::bump(&stats.retransmitted);
                    Stats::add(&stats.tx_bytes, n as u64);
                }
                None => Stats::bump(&stats.rtx_missed),
            }
        }
    }
}
