//! ICE-lite and the DTLS relay.
//!
//! STUN binding requests are checked against the transport named by the USERNAME
//! (MESSAGE-INTEGRITY with its local password, FINGERPRINT), answered, and the sender's
//! address is bound to the transport (on USE-CANDIDATE, or the first valid check). A valid
//! check also refreshes consent (RFC 7675). DTLS datagrams from a bound address go up to
//! Python as events.

use std::net::SocketAddr;

use trackyard_core::stun::{self, StunError, StunMessage};

use super::{Node, CONSENT_TIMEOUT_US};
use crate::events::Event;
use crate::stats::Stats;

impl Node {
    /// Answers a binding request; returns the transport when it passed the checks. `from` is
    /// the sender (a TCP connection's stand-in address for ICE-TCP, whose peer address goes
    /// into the response and the bound event).
    pub(super) fn handle_stun(&mut self, len: usize, from: SocketAddr, now: u64) -> Option<u32> {
        Stats::bump(&self.stats.stun_requests);
        let buf = &self.scratch[..len];
        let Ok(msg) = StunMessage::parse(buf) else {
            Stats::bump(&self.stats.stun_rejected);
            return None;
        };
        if !msg.is_binding_request() {
            return None; // binding indications (keepalives) need no answer
        }
        let Some(id) = msg
            .username_parts()
            .and_then(|(local, _)| std::str::from_utf8(local).ok())
            .and_then(|ufrag| self.by_ufrag.get(ufrag).copied())
        else {
            Stats::bump(&self.stats.stun_rejected);
            return None;
        };
        let Some(t) = self.transports.get_mut(&id) else {
            Stats::bump(&self.stats.stun_rejected);
            return None;
        };
        let fingerprint_ok = matches!(msg.verify_fingerprint(), Ok(()) | Err(StunError::Missing));
        if msg.verify_integrity(&t.pwd).is_err() || !fingerprint_ok {
            Stats::bump(&self.stats.stun_rejected);
            return None;
        }
        let mapped = self.send.tcp.peer(&from).unwrap_or(from);
        t.last_check_us = now;
        t.consent_lost = false;
        let rebind = t.addr != Some(from) && (msg.use_candidate || t.addr.is_none() || !t.nominated);
        if rebind {
            if let Some(old) = t.addr.replace(from) {
                self.by_addr.remove(&old);
            }
            t.nominated |= msg.use_candidate;
            self.by_addr.insert(from, id);
            self.pending.push(Event::Bound { transport: id, addr: mapped });
        } else if msg.use_candidate && t.addr == Some(from) {
            t.nominated = true;
        }
        let txid = msg.transaction_id;
        let slot = self.send.slot();
        if let Ok(n) = stun::write_binding_success(slot, &txid, mapped, &t.pwd) {
            self.send.push(n, &from);
            Stats::add(&self.stats.tx_bytes, n as u64);
        }
        Some(id)
    }

    pub(super) fn handle_dtls(&mut self, len: usize, from: SocketAddr) {
        Stats::bump(&self.stats.dtls_packets);
        match self.by_addr.get(&from) {
            Some(&id) => self.pending.push(Event::Dtls { transport: id, data: self.scratch[..len].to_vec() }),
            None => Stats::bump(&self.stats.unknown_source),
        }
    }

    /// Marks transports without a valid check for the consent timeout (once each).
    pub(super) fn sweep_consent(&mut self, now: u64) {
        for (id, t) in self.transports.iter_mut() {
            if t.addr.is_some() && !t.consent_lost && now.saturating_sub(t.last_check_us) > CONSENT_TIMEOUT_US {
                t.consent_lost = true;
                self.pending.push(Event::ConsentLost { transport: *id });
            }
        }
    }
}
