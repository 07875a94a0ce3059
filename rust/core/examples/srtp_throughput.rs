//! Rough SRTP protect/unprotect throughput per profile, single core, in place, no allocation:
//! `cargo run --release -p trackyard-core --example srtp_throughput`.
//! A quick look at the crypto floor, not the project benchmark (that measures the whole
//! forwarding path).

use std::time::Instant;

use trackyard_core::srtp::{SrtpContext, SrtpProfile};

fn main() {
    let n = 200_000u32;
    for size in [100usize, 1200] {
        for profile in [
            SrtpProfile::Aes128CmHmacSha1_80,
            SrtpProfile::AeadAes128Gcm,
            SrtpProfile::AeadAes256Gcm,
        ] {
            let key = vec![1u8; profile.key_len()];
            let salt = vec![2u8; profile.salt_len()];
            let mut tx = SrtpContext::new(profile, &key, &salt).unwrap();
            let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
            let mut buf = vec![0u8; size + 16];
            let mut protected = Vec::with_capacity(n as usize);
            let t = Instant::now();
            for i in 0..n {
                buf[..12].copy_from_slice(&[
                    0x80,
                    96,
                    (i >> 8) as u8,
                    i as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                ]);
                let len = tx.protect_rtp(&mut buf, size).unwrap();
                if i < 1000 {
                    protected.push(buf[..len].to_vec());
                }
            }
            let p = t.elapsed();
            let mut pkt = protected[0].clone();
            let t = Instant::now();
            for i in 0..n {
                // unprotect the same authentic packet, resetting the replay state each time
                pkt.copy_from_slice(&protected[(i % 1000) as usize]);
                if i % 1000 == 0 {
                    rx.remove_stream(1);
                }
                rx.unprotect_rtp(&mut pkt).unwrap();
            }
            let u = t.elapsed();
            println!(
                "{:<24} {:>5} B  protect {:>6.0} ns ({:>5.2} M pkt/s)  unprotect {:>6.0} ns",
                profile.name(),
                size,
                p.as_nanos() as f64 / f64::from(n),
                f64::from(n) / p.as_secs_f64() / 1e6,
                u.as_nanos() as f64 / f64::from(n),
            );
        }
    }
}
