//! RTCP as it arrives after SRTCP unprotect: `parse_compound` and every packet's accessors,
//! with consistency checks on what the walker promises (report block counts, the NACK
//! expansion size, one TWCC status per covered sequence number).
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use trackyard_core::rtcp::{self, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    black_box(rtcp::is_rtcp(data));
    let mut walked = 0usize;
    for p in rtcp::parse_compound(data) {
        walked += 1;
        assert!(walked <= data.len() / 4 + 1, "walker does not advance");
        let Ok(p) = p else { continue };
        match p {
            RtcpPacket::SenderReport(sr) => {
                black_box(sr.info);
                black_box(sr.blocks.map(|b| b.cumulative_lost as i64).sum::<i64>());
            }
            RtcpPacket::ReceiverReport(rr) => {
                black_box(rr.ssrc);
                black_box(rr.blocks.map(|b| u64::from(b.jitter)).sum::<u64>());
            }
            RtcpPacket::Sdes(b) => {
                black_box(b.len());
            }
            RtcpPacket::Bye(bye) => {
                black_box((bye.ssrcs().count(), bye.reason));
            }
            RtcpPacket::Nack(n) => {
                let expected: usize = n
                    .pairs()
                    .map(|(_, blp)| 1 + blp.count_ones() as usize)
                    .sum();
                let mut count = 0usize;
                for seq in n.lost() {
                    black_box(seq);
                    count += 1;
                }
                assert_eq!(count, expected, "NACK expansion size");
                black_box((n.sender_ssrc, n.media_ssrc));
            }
            RtcpPacket::Twcc(t) => {
                let mut count = 0usize;
                let mut seq = t.base_seq;
                for pkt in t.packets() {
                    assert_eq!(pkt.seq, seq, "TWCC sequence numbers are consecutive");
                    seq = seq.wrapping_add(1);
                    black_box(pkt.arrival_us);
                    count += 1;
                }
                assert_eq!(
                    count,
                    usize::from(t.status_count),
                    "one status per covered packet"
                );
                black_box((t.sender_ssrc, t.media_ssrc, t.reference_time, t.fb_count));
            }
            RtcpPacket::Pli(pli) => {
                black_box(pli);
            }
            RtcpPacket::Fir(f) => {
                black_box((f.sender_ssrc, f.entries().count()));
            }
            RtcpPacket::Remb(r) => {
                black_box((r.sender_ssrc, r.bitrate, r.ssrcs().count()));
            }
            RtcpPacket::Other { pt, count, body } => {
                black_box((pt, count, body.len()));
            }
        }
    }
});
