//! The client side of ICE for one simulated transport (RFC 8445, as a full agent with a
//! single host candidate): connectivity checks to the server's candidates with our
//! credentials; binding requests from the server (a full-ICE server checks too) are answered.
//! Controlling (our offer, or an ICE-lite server): aggressive nomination with USE-CANDIDATE,
//! the first pair whose check succeeds is selected. Controlled (answering a full-ICE server's
//! offer): the pair the server nominates is selected. A 487 role conflict flips our role.
//! Consent refreshes (RFC 7675) every [`CONSENT_INTERVAL_US`] on the selected pair.

use std::net::SocketAddr;

use trackyard_core::stun::{
    attr, write_binding_success, StunMessage, StunWriter, BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS,
};

/// Checks are retransmitted at this pace while no pair works.
pub const CHECK_INTERVAL_US: u64 = 50_000;
/// Without a working pair after this long, ICE has failed.
pub const CHECK_TIMEOUT_US: u64 = 15_000_000;
pub const CONSENT_INTERVAL_US: u64 = 2_000_000;
/// Candidates tried at most (the rest are ignored).
pub const MAX_CANDIDATES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Waiting for the remote credentials or a candidate.
    New,
    Checking,
    Connected,
    Failed,
}

#[derive(Debug)]
pub struct IceAgent {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    pub controlling: bool,
    pub tiebreaker: u64,
    pub candidates: Vec<SocketAddr>,
    pub selected: Option<SocketAddr>,
    pub state: IceState,
    started_us: u64,
    next_check_us: u64,
    /// Outstanding transaction ids (most recent first), with the address they went to.
    pending: Vec<([u8; 12], SocketAddr)>,
    txid_counter: u64,
    pub checks_sent: u64,
    pub last_response_us: u64,
}

/// What to do with a received STUN message.
pub enum StunOutcome {
    Nothing,
    /// Our check succeeded: this pair is now selected (first time only).
    Selected(SocketAddr),
    /// Send this response (already written to the buffer, this many bytes).
    Reply(usize),
    /// Send this response; the server nominated this pair, which is now selected.
    ReplySelected(usize, SocketAddr),
}

impl IceAgent {
    pub fn new(local_ufrag: String, local_pwd: String, seed: u64) -> Self {
        IceAgent {
            local_ufrag,
            local_pwd,
            remote_ufrag: String::new(),
            remote_pwd: String::new(),
            controlling: true,
            tiebreaker: seed,
            candidates: Vec::new(),
            selected: None,
            state: IceState::New,
            started_us: 0,
            next_check_us: 0,
            pending: Vec::new(),
            txid_counter: seed.rotate_left(17),
            checks_sent: 0,
            last_response_us: 0,
        }
    }

    fn ready(&self) -> bool {
        !self.remote_ufrag.is_empty() && !self.remote_pwd.is_empty() && !self.candidates.is_empty()
    }

    pub fn add_candidate(&mut self, addr: SocketAddr) {
        if !self.candidates.contains(&addr) && self.candidates.len() < MAX_CANDIDATES {
            self.candidates.push(addr);
        }
    }

    /// Writes the checks due at `now` with `send(addr, packet)`; moves New → Checking →
    /// Failed. Returns true if ICE just failed.
    pub fn poll(&mut self, now: u64, buf: &mut [u8], mut send: impl FnMut(SocketAddr, &[u8])) -> bool {
        match self.state {
            IceState::New if self.ready() => {
                self.state = IceState::Checking;
                self.started_us = now;
                self.next_check_us = now;
            }
            IceState::Checking if now.saturating_sub(self.started_us) > CHECK_TIMEOUT_US => {
                self.state = IceState::Failed;
                return true;
            }
            _ => {}
        }
        if now < self.next_check_us {
            return false;
        }
        let targets: Vec<SocketAddr> = match (self.state, self.selected) {
            (IceState::Checking, _) => self.candidates.clone(),
            (IceState::Connected, Some(sel)) => vec![sel],
            _ => return false,
        };
        let nominate = self.state == IceState::Checking && self.controlling;
        for addr in targets {
            if let Some(n) = self.write_check(buf, addr, nominate) {
                send(addr, &buf[..n]);
            }
        }
        self.next_check_us = now + if self.state == IceState::Connected { CONSENT_INTERVAL_US } else { CHECK_INTERVAL_US };
        false
    }

    fn write_check(&mut self, buf: &mut [u8], to: SocketAddr, nominate: bool) -> Option<usize> {
        self.txid_counter = self.txid_counter.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let mut txid = [0u8; 12];
        txid[..8].copy_from_slice(&self.txid_counter.to_be_bytes());
        txid[8..].copy_from_slice(&(self.checks_sent as u32).to_be_bytes());
        let username = format!("{}:{}", self.remote_ufrag, self.local_ufrag);
        let mut w = StunWriter::new(buf, BINDING_REQUEST, &txid).ok()?;
        w.attribute(attr::USERNAME, username.as_bytes()).ok()?;
        // host candidate priority: type preference 126, local preference 65535, component 1
        let priority: u32 = (126 << 24) | (65_535 << 8) | 255;
        w.attribute(attr::PRIORITY, &priority.to_be_bytes()).ok()?;
        let role = if self.controlling { attr::ICE_CONTROLLING } else { attr::ICE_CONTROLLED };
        w.attribute(role, &self.tiebreaker.to_be_bytes()).ok()?;
        if nominate {
            w.attribute(attr::USE_CANDIDATE, &[]).ok()?;
        }
        w.message_integrity(self.remote_pwd.as_bytes()).ok()?;
        w.fingerprint().ok()?;
        self.pending.insert(0, (txid, to));
        self.pending.truncate(32);
        self.checks_sent += 1;
        Some(w.finish())
    }

    /// A STUN datagram from `from` (its bytes in `buf[..len]`; a reply is written over it).
    pub fn on_stun(&mut self, buf: &mut [u8], len: usize, from: SocketAddr, now: u64) -> StunOutcome {
        let Ok(msg) = StunMessage::parse(&buf[..len]) else { return StunOutcome::Nothing };
        if msg.msg_type == BINDING_ERROR {
            let ours = self.pending.iter().any(|(t, a)| *t == msg.transaction_id && *a == from);
            if ours && msg.error_code.is_some_and(|(code, _)| code == 487) {
                self.controlling = !self.controlling; // role conflict: the server keeps its role
                self.next_check_us = now;
            }
            return StunOutcome::Nothing;
        }
        if msg.msg_type == BINDING_SUCCESS {
            let Some(pos) = self.pending.iter().position(|(t, a)| *t == msg.transaction_id && *a == from) else {
                return StunOutcome::Nothing;
            };
            if msg.verify_integrity(self.remote_pwd.as_bytes()).is_err() {
                return StunOutcome::Nothing;
            }
            self.pending.remove(pos);
            self.last_response_us = now;
            if self.selected.is_none() {
                self.selected = Some(from);
                self.state = IceState::Connected;
                self.next_check_us = now + CONSENT_INTERVAL_US;
                return StunOutcome::Selected(from);
            }
            return StunOutcome::Nothing;
        }
        if !msg.is_binding_request() {
            return StunOutcome::Nothing;
        }
        let ours = msg.username_parts().is_some_and(|(local, _)| local == self.local_ufrag.as_bytes());
        if !ours || msg.verify_integrity(self.local_pwd.as_bytes()).is_err() {
            return StunOutcome::Nothing;
        }
        let txid = msg.transaction_id;
        let nominated = msg.use_candidate && !self.controlling;
        if self.state == IceState::Checking || self.state == IceState::New {
            self.add_candidate(from); // a peer-reflexive candidate of the server
        }
        let Ok(n) = write_binding_success(buf, &txid, from, self.local_pwd.as_bytes()) else {
            return StunOutcome::Nothing;
        };
        if nominated && self.selected.is_none() {
            self.selected = Some(from);
            self.state = IceState::Connected;
            self.last_response_us = now;
            self.next_check_us = now + CONSENT_INTERVAL_US;
            return StunOutcome::ReplySelected(n, from);
        }
        StunOutcome::Reply(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> IceAgent {
        let mut a = IceAgent::new("cliu".into(), "client-password-0123456789".into(), 42);
        a.remote_ufrag = "srvu".into();
        a.remote_pwd = "server-password-0123456789".into();
        a
    }

    #[test]
    fn checks_carry_credentials_and_a_response_selects_the_pair() {
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut a = agent();
        let mut buf = [0u8; 512];
        let mut sent = Vec::new();
        a.poll(0, &mut buf, |to, p| sent.push((to, p.to_vec())));
        assert!(sent.is_empty() && a.state == IceState::New, "no candidate yet");
        a.add_candidate(server);
        a.poll(10, &mut buf, |to, p| sent.push((to, p.to_vec())));
        assert_eq!(sent.len(), 1);
        let (to, req) = sent[0].clone();
        assert_eq!(to, server);
        let msg = StunMessage::parse(&req).unwrap();
        assert!(msg.is_binding_request() && msg.use_candidate);
        assert_eq!(msg.username, Some(&b"srvu:cliu"[..]));
        assert_eq!(msg.ice_controlling, Some(42));
        msg.verify_integrity(b"server-password-0123456789").unwrap();
        msg.verify_fingerprint().unwrap();
        // not due again before the check interval
        a.poll(20, &mut buf, |to, p| sent.push((to, p.to_vec())));
        assert_eq!(sent.len(), 1);
        // the server's answer (integrity with its password) selects the pair
        let mut resp = [0u8; 256];
        let n = write_binding_success(&mut resp, &msg.transaction_id, "127.0.0.1:5555".parse().unwrap(),
                                      b"server-password-0123456789").unwrap();
        // from another address: ignored
        assert!(matches!(a.on_stun(&mut resp.clone(), n, "127.0.0.1:1".parse().unwrap(), 30), StunOutcome::Nothing));
        assert!(matches!(a.on_stun(&mut resp, n, server, 30), StunOutcome::Selected(s) if s == server));
        assert_eq!(a.state, IceState::Connected);
        // consent checks go to the selected pair without USE-CANDIDATE
        a.poll(30 + CONSENT_INTERVAL_US, &mut buf, |to, p| sent.push((to, p.to_vec())));
        assert_eq!(sent.len(), 2);
        assert!(!StunMessage::parse(&sent[1].1).unwrap().use_candidate);
    }

    #[test]
    fn server_checks_are_answered_and_silence_fails() {
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut a = agent();
        let mut buf = [0u8; 512];
        let mut req = [0u8; 512];
        let mut w = StunWriter::new(&mut req, BINDING_REQUEST, &[7; 12]).unwrap();
        w.attribute(attr::USERNAME, b"cliu:srvu").unwrap();
        w.message_integrity(b"client-password-0123456789").unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        buf[..n].copy_from_slice(&req[..n]);
        let StunOutcome::Reply(m) = a.on_stun(&mut buf, n, server, 0) else { panic!("no reply") };
        let resp = StunMessage::parse(&buf[..m]).unwrap();
        assert_eq!(resp.msg_type, BINDING_SUCCESS);
        assert_eq!(resp.xor_mapped_address, Some(server));
        resp.verify_integrity(b"client-password-0123456789").unwrap();
        // the server became a (peer-reflexive) candidate; without answers ICE fails in time
        a.poll(1, &mut [0u8; 512], |_, _| {});
        assert_eq!(a.state, IceState::Checking);
        assert!(a.poll(2 + CHECK_TIMEOUT_US, &mut [0u8; 512], |_, _| {}));
        assert_eq!(a.state, IceState::Failed);
    }

    #[test]
    fn controlled_agent_selects_the_pair_the_server_nominates_and_487_flips_the_role() {
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let mut a = agent();
        a.controlling = false;
        a.add_candidate(server);
        let mut sent = Vec::new();
        let mut buf = [0u8; 512];
        a.poll(0, &mut buf, |to, p| sent.push((to, p.to_vec())));
        let check = StunMessage::parse(&sent[0].1).unwrap();
        assert!(!check.use_candidate && check.ice_controlled == Some(42), "controlled checks do not nominate");
        // a 487 to our check: we take the other role
        let mut err = [0u8; 256];
        let n = trackyard_core::stun::write_binding_error(&mut err, &check.transaction_id, 487, "Role Conflict",
                                                          Some(b"server-password-0123456789")).unwrap();
        assert!(matches!(a.on_stun(&mut err, n, server, 1), StunOutcome::Nothing));
        assert!(a.controlling);
        a.controlling = false;
        // the server's nominating check selects its pair
        let mut req = [0u8; 512];
        let mut w = StunWriter::new(&mut req, BINDING_REQUEST, &[9; 12]).unwrap();
        w.attribute(attr::USERNAME, b"cliu:srvu").unwrap();
        w.attribute(attr::USE_CANDIDATE, &[]).unwrap();
        w.message_integrity(b"client-password-0123456789").unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        assert!(matches!(a.on_stun(&mut req, n, server, 2), StunOutcome::ReplySelected(_, s) if s == server));
        assert_eq!((a.state, a.selected), (IceState::Connected, Some(server)));
    }
}
