//! ICE over TCP: the passive TCP host candidate (RFC 6544) next to the UDP port, for peers
//! whose UDP does not get through.
//!
//! The listener and every connection are non-blocking and polled with the UDP socket. Each
//! connection carries RFC 4571 frames (a 2-byte length, then one STUN, DTLS, RTP or RTCP
//! packet). A new connection is *pending* until a STUN binding request on it passes the same
//! checks as on UDP (USERNAME names a transport, MESSAGE-INTEGRITY with its password); from
//! then on its frames go through the same demultiplexing as datagrams. At most
//! `MAX_PENDING` connections may be pending, each for at most `PENDING_TIMEOUT_US`.
//!
//! Inside the node a connection is addressed by a stand-in socket address (`conn_addr`: the
//! discard-only prefix 100::/64, RFC 6666, port 0) that no UDP peer can have. A transport
//! bound to a connection has that address, so `by_addr`, consent and the send paths work
//! unchanged: `Egress::push` sends datagrams to such an address as frames on the
//! connection, into its bounded write buffer (partial writes and EAGAIN keep the rest for
//! the next flush; a frame that does not fit is dropped and counted).
//!
//! A connection is closed (and its transport unbound from it) when the peer closes it, on
//! a read or write error, on garbage (a frame over `MAX_FRAME`, a first byte no packet kind
//! has, anything but STUN before authentication) and when its transport is removed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use trackyard_core::framing::{FrameReader, FrameWriter};

use super::state::IdMap;
use super::Node;
use crate::stats::Stats;
use crate::udp::{SendPipeline, MAX_DATAGRAM};

/// Unauthenticated connections held at once; more are closed at once.
pub const MAX_PENDING: usize = 64;
/// Connections held at once (pending or not).
pub const MAX_CONNECTIONS: usize = 4096;
/// A connection without a valid binding request for this long is closed.
pub const PENDING_TIMEOUT_US: u64 = 10_000_000;
/// STUN messages that fail the checks before a connection is closed as pending garbage.
const MAX_PENDING_REJECTS: u8 = 8;
/// Largest packet accepted in a frame (as on UDP).
pub const MAX_FRAME: usize = MAX_DATAGRAM;
/// Bytes read per system call and kept per connection.
const READ_BUFFER: usize = 16 * 1024;
/// Framed bytes waiting to be written per connection (about a second of 2 Mbit/s video).
pub const WRITE_BUFFER: usize = 256 * 1024;
/// Reads per connection per loop turn, and connections accepted per turn.
const READS_PER_TURN: usize = 16;
const ACCEPTS_PER_TURN: usize = 32;
const SWEEP_US: u64 = 100_000;

/// The stand-in address of connection `id` (see the module documentation).
fn conn_addr(id: u32) -> SocketAddr {
    let ip = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, (id >> 16) as u16, id as u16);
    SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))
}

/// The connection a stand-in address names.
pub fn conn_of(addr: &SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V6(v6) if v6.port() == 0 => {
            let s = v6.ip().segments();
            (s[..6] == [0x100, 0, 0, 0, 0, 0]).then(|| (u32::from(s[6]) << 16) | u32::from(s[7]))
        }
        _ => None,
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    reader: FrameReader,
    writer: FrameWriter,
    /// The transport whose check authenticated the connection (None: pending).
    transport: Option<u32>,
    accepted_us: u64,
    rejects: u8,
    /// In `TcpConns::dirty` (has unwritten bytes to try).
    dirty: bool,
    /// The last write would have blocked: no more tries until poll says writable.
    blocked: bool,
    /// A read or write failed or the peer closed: to be closed by the node.
    broken: bool,
}

/// Counters of the TCP side, copied into `Stats` with the UDP ones.
#[derive(Default)]
pub struct TcpCounters {
    pub frames_sent: u64,
    pub dropped: u64,
}

/// The listener and the connections.
pub struct TcpConns {
    listener: Option<TcpListener>,
    conns: IdMap<u32, Conn>,
    next_id: u32,
    pending: usize,
    /// Connections with unwritten bytes.
    dirty: Vec<u32>,
    /// Connection ids in the order their poll entries were added.
    polled: Vec<u32>,
    next_sweep: u64,
    pub counters: TcpCounters,
}

impl TcpConns {
    pub fn new(listener: Option<TcpListener>) -> Self {
        TcpConns {
            listener,
            conns: IdMap::default(),
            next_id: 1,
            pending: 0,
            dirty: Vec::new(),
            polled: Vec::new(),
            next_sweep: 0,
            counters: TcpCounters::default(),
        }
    }

    /// The peer's real address behind a stand-in address.
    pub fn peer(&self, addr: &SocketAddr) -> Option<SocketAddr> {
        self.conns.get(&conn_of(addr)?).map(|c| c.peer)
    }

    /// Adds the listener's and connections' poll entries.
    pub fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>) {
        self.polled.clear();
        if let Some(l) = &self.listener {
            fds.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        for (id, c) in self.conns.iter() {
            let events = if c.writer.pending() > 0 { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
            self.polled.push(*id);
        }
    }

    /// Queues a packet for connection `id`; false if there is no such connection.
    fn push(&mut self, id: u32, packet: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&id) else { return false };
        if c.writer.push(packet) {
            self.counters.frames_sent += 1;
            if !c.dirty && !c.blocked {
                c.dirty = true;
                self.dirty.push(id);
            }
        } else {
            self.counters.dropped += 1;
        }
        true
    }

    /// Writes what the kernel takes of every connection with unwritten bytes.
    fn write_out(&mut self) {
        let TcpConns { conns, dirty, .. } = self;
        dirty.retain(|id| {
            let Some(c) = conns.get_mut(id) else { return false };
            while c.writer.pending() > 0 && !c.broken {
                match c.stream.write(c.writer.unwritten()) {
                    Ok(0) => c.broken = true,
                    Ok(n) => c.writer.consume(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        c.blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => c.broken = true,
                }
            }
            c.dirty = c.writer.pending() > 0 && !c.broken && !c.blocked;
            c.dirty
        });
    }
}

/// The send side of the node: datagrams to UDP peers go through the batched UDP queues
/// (sent by their own thread, see `SendPipeline`), datagrams to a connection's stand-in
/// address become frames on that connection.
pub struct Egress {
    pub udp: SendPipeline,
    pub tcp: TcpConns,
}

impl Egress {
    pub fn new(socket: &UdpSocket, gso: bool, listener: Option<TcpListener>) -> std::io::Result<Self> {
        Ok(Egress { udp: SendPipeline::new(socket, gso)?, tcp: TcpConns::new(listener) })
    }

    /// A slot to write the next datagram into; commit it with `push`.
    pub fn slot(&mut self) -> &mut [u8] {
        self.udp.slot()
    }

    /// Sends the first `len` bytes of the slot to `dest`.
    pub fn push(&mut self, len: usize, dest: &SocketAddr) {
        match conn_of(dest) {
            None => self.udp.push(len, dest),
            Some(id) => {
                let Egress { udp, tcp } = self;
                // the slot is not committed to the UDP queue: the next `slot` reuses it
                let packet = &udp.current_slot()[..len];
                if !tcp.push(id, packet) {
                    tcp.counters.dropped += 1; // the connection is gone
                }
            }
        }
    }

    /// Copies `data` out to `dest`.
    pub fn send_copy(&mut self, data: &[u8], dest: &SocketAddr) {
        match conn_of(dest) {
            None => self.udp.send_copy(data, dest),
            Some(id) => {
                if !self.tcp.push(id, data) {
                    self.tcp.counters.dropped += 1;
                }
            }
        }
    }

    pub fn flush(&mut self) {
        self.udp.flush();
        if !self.tcp.dirty.is_empty() {
            self.tcp.write_out();
        }
    }
}

/// What the first bytes of a frame say it is (RFC 7983), as the UDP demultiplexer sees it.
fn is_packet(first: u8) -> bool {
    matches!(first, 0..=3 | 20..=63 | 128..=191)
}

impl Node {
    /// After a poll: accepts new connections, reads every readable one and handles its
    /// frames, closes broken and timed-out ones. `revents` are the poll results of the
    /// entries `TcpConns::poll_fds` added, in order.
    pub(super) fn service_tcp(&mut self, revents: &[i16], now: u64) {
        let mut entries = revents.iter();
        if self.send.tcp.listener.is_some() && entries.next().is_some_and(|r| *r != 0) {
            self.accept_tcp(now);
        }
        // taken out while connections are served (and put back: its allocation is reused)
        let polled = std::mem::take(&mut self.send.tcp.polled);
        for (&id, &r) in polled.iter().zip(entries).filter(|(_, r)| **r != 0) {
            if r & libc::POLLOUT != 0 {
                let tcp = &mut self.send.tcp;
                if let Some(c) = tcp.conns.get_mut(&id) {
                    c.blocked = false;
                    if !c.dirty && c.writer.pending() > 0 {
                        c.dirty = true;
                        tcp.dirty.push(id);
                    }
                }
            }
            if r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read_tcp(id, now);
            }
        }
        self.send.tcp.polled = polled;
        if now >= self.send.tcp.next_sweep {
            self.send.tcp.next_sweep = now + SWEEP_US;
            let tcp = &self.send.tcp;
            let stale: Vec<u32> = tcp.conns.iter().filter(|(_, c)| match c.transport {
                None => now.saturating_sub(c.accepted_us) > PENDING_TIMEOUT_US,
                Some(t) => !self.transports.contains_key(&t),
            }).map(|(id, _)| *id).collect();
            for id in stale {
                if self.send.tcp.conns.get(&id).is_some_and(|c| c.transport.is_none()) {
                    Stats::bump(&self.stats.tcp_timeouts);
                }
                self.close_tcp(id);
            }
        }
        self.close_broken_tcp();
    }

    /// Closes connections a write found broken (after a flush).
    pub(super) fn close_broken_tcp(&mut self) {
        if self.send.tcp.conns.values().any(|c| c.broken) {
            let broken: Vec<u32> = self.send.tcp.conns.iter().filter(|(_, c)| c.broken).map(|(id, _)| *id).collect();
            for id in broken {
                self.close_tcp(id);
            }
        }
    }

    fn accept_tcp(&mut self, now: u64) {
        for _ in 0..ACCEPTS_PER_TURN {
            let tcp = &mut self.send.tcp;
            let Some(listener) = &tcp.listener else { return };
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock, or out of descriptors: try again next turn
            };
            if tcp.pending >= MAX_PENDING || tcp.conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
                Stats::bump(&self.stats.tcp_rejected);
                continue; // dropped: closed
            }
            let _ = stream.set_nodelay(true);
            let id = loop {
                let id = tcp.next_id;
                tcp.next_id = tcp.next_id.wrapping_add(1).max(1);
                if !tcp.conns.contains_key(&id) {
                    break id;
                }
            };
            tcp.conns.insert(id, Conn {
                stream,
                peer,
                reader: FrameReader::new(READ_BUFFER, MAX_FRAME),
                writer: FrameWriter::new(WRITE_BUFFER),
                transport: None,
                accepted_us: now,
                rejects: 0,
                dirty: false,
                blocked: false,
                broken: false,
            });
            tcp.pending += 1;
            Stats::bump(&self.stats.tcp_accepted);
        }
    }

    /// Reads what connection `id` has (bounded per turn) and handles its frames.
    fn read_tcp(&mut self, id: u32, now: u64) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.send.tcp.conns.get_mut(&id) else { return };
            let spare = c.reader.spare();
            if spare.is_empty() {
                break; // cannot happen: frames are taken as soon as they are whole
            }
            match c.stream.read(spare) {
                Ok(0) => c.broken = true,
                Ok(n) => c.reader.filled(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => c.broken = true,
            }
            if c.broken {
                self.close_tcp(id);
                return;
            }
            if !self.take_frames(id, now) {
                Stats::bump(&self.stats.tcp_garbage);
                self.close_tcp(id);
                return;
            }
        }
    }

    /// Handles the whole frames read on connection `id`; false when the stream is garbage.
    fn take_frames(&mut self, id: u32, now: u64) -> bool {
        let from = conn_addr(id);
        loop {
            let Node { send, scratch, .. } = self;
            let Some(c) = send.tcp.conns.get_mut(&id) else { return true };
            let len = match c.reader.next_frame() {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(frame)) => {
                    scratch[..frame.len()].copy_from_slice(frame);
                    frame.len()
                }
            };
            let pending = c.transport.is_none();
            if len == 0 {
                Stats::bump(&self.stats.malformed);
                continue;
            }
            if !is_packet(self.scratch[0]) {
                return false;
            }
            if !pending {
                self.guarded(|node| node.dispatch(len, from, now));
                continue;
            }
            if self.scratch[0] > 3 {
                return false; // before authentication only STUN
            }
            let mut checked = None;
            self.guarded(|node| checked = node.handle_stun(len, from, now));
            let tcp = &mut self.send.tcp;
            let Some(c) = tcp.conns.get_mut(&id) else { return true };
            match checked {
                Some(transport) => {
                    c.transport = Some(transport);
                    tcp.pending -= 1;
                }
                None => {
                    c.rejects += 1;
                    if c.rejects >= MAX_PENDING_REJECTS {
                        return false;
                    }
                }
            }
        }
    }

    /// Closes connection `id`; a transport bound to it stays unbound until a check arrives
    /// on another path (or consent runs out).
    pub(super) fn close_tcp(&mut self, id: u32) {
        let tcp = &mut self.send.tcp;
        let Some(c) = tcp.conns.remove(&id) else { return };
        if c.transport.is_none() {
            tcp.pending -= 1;
        }
        Stats::bump(&self.stats.tcp_closed);
        let addr = conn_addr(id);
        if let Some(t) = self.by_addr.remove(&addr).and_then(|t| self.transports.get_mut(&t)) {
            t.nominated = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_in_addresses_name_connections_only() {
        for id in [1, 2, 0xFFFF, 0x1_0000, u32::MAX] {
            assert_eq!(conn_of(&conn_addr(id)), Some(id));
        }
        for real in ["127.0.0.1:0", "[::1]:0", "[100::1]:5000", "[100:0:0:1::1]:0", "10.0.0.1:7882"] {
            assert_eq!(conn_of(&real.parse().unwrap()), None, "{real}");
        }
    }

    #[test]
    fn first_bytes_that_are_packets() {
        assert!(is_packet(0) && is_packet(3) && is_packet(22) && is_packet(128) && is_packet(191));
        assert!(!is_packet(4) && !is_packet(19) && !is_packet(64) && !is_packet(127) && !is_packet(192));
    }
}
