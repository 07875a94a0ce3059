//! The RTP path: a decrypted packet from a publisher goes to its track's source stream
//! (reception statistics, loss tracking, retransmission cache, layer activity, audio level)
//! and then to every down-track whose forwarder selects its layer, rewritten and
//! re-encrypted per subscriber.
//!
//! Per down-track rewrite (in a reused send slot, no allocation): SSRC, sequence number and
//! timestamp from the munger (continuous across layer switches and pauses), payload type,
//! header extensions mapped to the subscriber's ids (mid/rid and anything unknown blanked
//! to padding), a fresh transport-wide sequence number and our abs-send-time when the
//! subscriber negotiated them. The same writer serves retransmissions (see `rtcp`).

use trackyard_core::downtrack::{rewrite_rtp, select, Selected};
use trackyard_core::rtp::{unwrap_rtx, RtpHeader};
use trackyard_core::sequencer::SentPacket;

pub(super) use trackyard_core::downtrack::Rewrite;

use super::state::{ExtIds, Kind, Transport};
use super::Node;
use crate::events::Event;
use crate::stats::Stats;
use super::tcp::Egress;

/// Writes the source packet `src`, rewritten for a subscriber, into the send queue and
/// protects it with the subscriber's keys. Returns the datagram size, or None when the
/// subscriber is not ready (no address or keys) or the packet cannot be protected.
pub(super) fn write_rtp(send: &mut Egress, sub: &mut Transport, src: &[u8],
                        rw: &Rewrite<'_>, now: u64) -> Option<usize> {
    let (Some(addr), Some(tx)) = (sub.addr, sub.tx.as_mut()) else { return None };
    let slot = send.slot();
    // No transport-wide sequence numbers on what we forward: there is no send-side
    // estimation to use the feedback, and packets without them make libwebrtc receivers
    // estimate on their own and send REMB, which the bandwidth allocator uses (on the v1
    // single connection transport-cc is negotiated for the client's publishing).
    let to = ExtIds { twcc: 0, ..sub.ext };
    let len = rewrite_rtp(slot, src, rw, &to, None, now)?;
    let n = tx.protect_rtp(slot, len).ok()?;
    send.push(n, &addr);
    Some(n)
}

impl Node {
    pub(super) fn handle_rtp(&mut self, transport: u32, len: usize, now: u64) {
        let Ok(h) = RtpHeader::parse(&self.scratch[..len]) else {
            Stats::bump(&self.stats.malformed);
            return;
        };
        let ssrc = h.ssrc();
        let Some(t) = self.transports.get_mut(&transport) else { return };
        let from_ext = t.ext;
        // transport-wide arrivals: every RTP packet of the transport counts
        if let (Some(rec), true) = (t.twcc_in.as_mut(), from_ext.twcc != 0) {
            if let Some(v) = h.extension(from_ext.twcc).filter(|v| v.len() >= 2) {
                rec.record(u16::from_be_bytes([v[0], v[1]]), now);
                self.timers.twcc_full |= rec.is_full();
            }
        }
        let Some(route) = self.streams.get(&(transport, ssrc)).copied() else {
            self.report_new_stream(transport, len);
            return;
        };
        let Node { tracks, transports, send, stats, scratch, epoch, .. } = self;
        let Some(track) = tracks.get_mut(&route.track) else { return };
        let Some(si) = track.sources.iter().position(|s| s.layer == route.layer) else { return };
        let mut len = len;
        if route.repair {
            let src = &mut track.sources[si];
            src.rtx_received += 1;
            Stats::bump(&stats.rtx_received);
            let Some(pt) = src.payload_type else { return };
            match unwrap_rtx(scratch, len, src.ssrc, pt) {
                Ok(n) => len = n,
                Err(_) => {
                    Stats::bump(&stats.padding_dropped);
                    return;
                }
            }
        }
        let Ok(h) = RtpHeader::parse(&scratch[..len]) else {
            Stats::bump(&stats.malformed);
            return;
        };
        let (ssrc, seq, ts, payload_len) = (h.ssrc(), h.sequence(), h.timestamp(), h.payload_len());
        let layer = route.layer;
        let src = &mut track.sources[si];
        if !route.repair {
            src.payload_type = Some(h.payload_type());
        }
        src.rx.on_packet(seq, ts, len, now);
        if let Some(n) = src.nack.as_mut() {
            n.on_packet(seq, now);
        }
        if payload_len == 0 {
            // padding only (bandwidth probing): not forwarded, and no hole for it
            Stats::bump(&stats.padding_dropped);
            for dt in track.downtracks.iter_mut() {
                dt.munger.drop_packet(ssrc, seq);
            }
            return;
        }
        src.cache.insert(seq, &scratch[..len], now);
        if track.activity.on_packet(layer, now) {
            track.publish_activity();
        }
        if track.kind == Kind::Audio && from_ext.audio_level != 0 {
            if let Some(v) = h.extension(from_ext.audio_level) {
                track.audio.on_extension(v);
            }
        }
        if track.muted {
            return;
        }
        let keyframe = track.is_keyframe(h.payload());
        let packet = &scratch[..len];
        // counted here and added to the shared counters once per ingress packet: an atomic
        // add per copy would fence every copy's stores
        let (mut copies, mut bytes, mut switches, mut failures) = (0u64, 0u64, 0u64, 0u64);
        for dt in track.downtracks.iter_mut() {
            // a subscriber not connected yet must not use up the keyframe it will need
            let Some(sub) = transports.get_mut(&dt.transport).filter(|t| t.is_ready()) else { continue };
            let Selected::Send { seq: out_seq, timestamp: out_ts, switched } =
                select(&mut dt.fwd, &mut dt.munger, layer, keyframe, ssrc, seq, ts, now)
            else {
                continue;
            };
            switches += u64::from(switched);
            let rw = Rewrite { ssrc: dt.ssrc, payload_type: dt.payload_type, seq: out_seq, timestamp: out_ts,
                               from_ext: &from_ext };
            match write_rtp(send, sub, packet, &rw, now) {
                Some(n) => {
                    dt.seqr.record(out_seq, SentPacket { src_ssrc: ssrc, src_seq: seq, timestamp: out_ts }, now);
                    dt.tx.on_packet(out_ts, payload_len, n, now);
                    bytes += n as u64;
                    copies += 1;
                }
                None => failures += 1,
            }
        }
        for (counter, n) in [(&stats.forwarded, copies), (&stats.tx_bytes, bytes),
                             (&stats.layer_switches, switches), (&stats.srtp_failures, failures)] {
            if n > 0 {
                Stats::add(counter, n);
            }
        }
        if copies > 0 {
            // from the receive batch (`now`) to the last copy queued: one clock read per packet
            let delay = (epoch.elapsed().as_micros() as u64).saturating_sub(now);
            stats.forward_delay.observe(delay, copies);
        }
    }

    fn report_new_stream(&mut self, transport: u32, len: usize) {
        let Some(t) = self.transports.get_mut(&transport) else { return };
        let Ok(h) = RtpHeader::parse(&self.scratch[..len]) else { return };
        let ssrc = h.ssrc();
        if t.reported.contains(&ssrc) || t.reported.len() > 64 {
            return;
        }
        t.reported.push(ssrc);
        let text = |id: u8| -> String {
            if id == 0 {
                return String::new();
            }
            h.extension(id).and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("").to_string()
        };
        let event = Event::NewStream {
            transport,
            ssrc,
            payload_type: h.payload_type(),
            mid: text(t.ext.mid),
            rid: text(t.ext.rid),
            rrid: text(t.ext.rrid),
        };
        self.pending.push(event);
    }
}
