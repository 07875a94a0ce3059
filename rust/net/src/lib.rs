//! Batched UDP for the media node (and the tools that load or measure it): receive with
//! `recvmmsg`, send with `sendmmsg`, a peer's datagrams coalesced by UDP GSO.
//!
//! One socket serves every peer of a media node. Buffers are allocated once per batch slot
//! and reused; nothing on this path allocates per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Datagrams up to this size are received whole (larger ones are truncated and dropped).
pub const MAX_DATAGRAM: usize = 1500;
/// Datagrams moved per system call.
pub const BATCH: usize = 32;

pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    let size: libc::c_int = 4 * 1024 * 1024;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // best effort: the kernel caps these at net.core.{r,w}mem_max
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, opt, &size as *const _ as *const libc::c_void,
                             size_of::<libc::c_int>() as libc::socklen_t);
        }
    }
    Ok(socket)
}

fn to_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let sin = storage as *mut _ as *mut libc::sockaddr_in;
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_port = v4.port().to_be();
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            }
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let sin6 = storage as *mut _ as *mut libc::sockaddr_in6;
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_port = v6.port().to_be();
                (*sin6).sin6_addr.s6_addr = v6.ip().octets();
                (*sin6).sin6_flowinfo = v6.flowinfo();
                (*sin6).sin6_scope_id = v6.scope_id();
            }
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Receive side: `BATCH` reusable slots.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// The raw pointers inside point into the struct's own heap buffers, which never move.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new() -> Self {
        let mut batch = RecvBatch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            batch.iovs.push(libc::iovec {
                iov_base: batch.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: MAX_DATAGRAM,
            });
        }
        for i in 0..BATCH {
            let mut hdr: libc::mmsghdr = unsafe { zeroed() };
            hdr.msg_hdr.msg_name = &mut batch.addrs[i] as *mut _ as *mut libc::c_void;
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &mut batch.iovs[i] as *mut libc::iovec;
            hdr.msg_hdr.msg_iovlen = 1;
            batch.hdrs.push(hdr);
        }
        batch
    }

    /// Receive up to BATCH datagrams without blocking; returns how many arrived.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for hdr in self.hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
        }
        let n = unsafe {
            libc::recvmmsg(socket.as_raw_fd(), self.hdrs.as_mut_ptr(), BATCH as libc::c_uint,
                           libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The i-th received datagram: (data, sender). Truncated datagrams are reported as None.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = hdr.msg_len as usize;
        let addr = from_sockaddr(&self.addrs[i])?;
        Some((&mut self.bufs[i][..len], addr))
    }
}

/// `setsockopt`/cmsg option of UDP generic segmentation offload (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
/// Datagrams a send queue holds before it flushes on its own (one receive batch's egress
/// normally fits, so a subscriber's packets of that batch can leave in one GSO send).
pub const SEND_QUEUE: usize = 4096;
/// Kernel limits of one GSO send: segments and payload bytes.
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 64000;
/// sendmmsg's per-call message limit (UIO_MAXIOV).
const MAX_MSGS_PER_CALL: usize = 1024;
/// Size of one send slot.
pub const SLOT: usize = MAX_DATAGRAM + 64;

/// Control-message space for one UDP_SEGMENT option (a u16), 8-byte aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentCmsg([u8; 32]);

/// A destination as a sortable number (exact for IPv4; a hash for IPv6, where runs also
/// compare the full address).
fn dest_key(addr: &SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(v4) => (u64::from(u32::from_ne_bytes(v4.ip().octets())) << 16) | u64::from(v4.port()),
        SocketAddr::V6(v6) => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(v6.port()) ^ (u64::from(v6.scope_id()) << 16);
            for b in v6.ip().octets() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            h | (1 << 63)
        }
    }
}

/// Send side: datagrams queued during one loop turn, flushed with as few system calls as
/// possible. At a flush the datagrams are grouped by destination (keeping each
/// destination's order); with GSO on, consecutive datagrams to one destination of one size
/// (the last may be shorter) leave as ONE message that the kernel segments (`UDP_SEGMENT`),
/// and all messages go out through `sendmmsg`. Slots are allocated on first use and reused.
pub struct SendQueue {
    bufs: Vec<Box<[u8; SLOT]>>,
    lens: Vec<usize>,
    keys: Vec<u64>,
    dests: Vec<libc::sockaddr_storage>,
    destlens: Vec<libc::socklen_t>,
    order: Vec<(u64, u32)>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<SegmentCmsg>,
    queued: usize,
    gso: bool,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (dropped).
    pub failed: u64,
    /// Send system calls made.
    pub syscalls: u64,
    /// Messages handed to the kernel (a GSO message carries several datagrams).
    pub messages: u64,
    /// Messages that carried several datagrams (GSO).
    pub gso_messages: u64,
}

unsafe impl Send for SendQueue {}

impl SendQueue {
    /// A queue; `gso` asks for segmentation offload (turned off by itself if the kernel
    /// refuses it).
    pub fn new(gso: bool) -> Self {
        SendQueue {
            bufs: Vec::with_capacity(SEND_QUEUE),
            lens: vec![0; SEND_QUEUE],
            keys: vec![0; SEND_QUEUE],
            dests: vec![unsafe { zeroed() }; SEND_QUEUE],
            destlens: vec![0; SEND_QUEUE],
            order: Vec::with_capacity(SEND_QUEUE),
            iovs: Vec::with_capacity(SEND_QUEUE),
            hdrs: Vec::with_capacity(SEND_QUEUE),
            cmsgs: vec![SegmentCmsg([0; 32]); SEND_QUEUE],
            queued: 0,
            gso,
            sent: 0,
            failed: 0,
            syscalls: 0,
            messages: 0,
            gso_messages: 0,
        }
    }

    /// Whether datagrams to one destination are coalesced.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// A slot to write the next datagram into; commit it with `push`.
    /// Flushes first when the queue is full.
    pub fn slot(&mut self, socket: &UdpSocket) -> &mut [u8] {
        if self.is_full() {
            self.flush(socket);
        }
        self.next_slot()
    }

    /// Whether the queue holds `SEND_QUEUE` datagrams (it must be flushed before the next).
    pub fn is_full(&self) -> bool {
        self.queued == SEND_QUEUE
    }

    /// The next slot of a queue that is not full.
    fn next_slot(&mut self) -> &mut [u8] {
        if self.queued == self.bufs.len() {
            self.bufs.push(Box::new([0u8; SLOT]));
        }
        &mut self.bufs[self.queued][..]
    }

    /// Whether datagrams are queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The slot `slot` handed out last, not yet committed (callers that send it elsewhere
    /// read it here; the next `slot` reuses it).
    pub fn current_slot(&self) -> &[u8] {
        self.bufs.get(self.queued).map_or(&[][..], |b| &b[..])
    }

    pub fn push(&mut self, len: usize, dest: &SocketAddr) {
        let i = self.queued;
        self.lens[i] = len;
        self.keys[i] = dest_key(dest);
        self.destlens[i] = to_sockaddr(dest, &mut self.dests[i]);
        self.queued += 1;
    }

    /// Copy `data` into the queue for `dest`.
    pub fn send_copy(&mut self, socket: &UdpSocket, data: &[u8], dest: &SocketAddr) {
        if data.len() > SLOT {
            self.failed += 1;
            return;
        }
        let slot = self.slot(socket);
        slot[..data.len()].copy_from_slice(data);
        self.push(data.len(), dest);
    }

    /// Moves `other`'s datagrams behind this queue's (their slots change owner, nothing is
    /// copied but lengths and addresses), so one flush sends both and a peer's datagrams of
    /// both can share a GSO message. Returns false, moving nothing, when they do not fit.
    pub fn absorb(&mut self, other: &mut SendQueue) -> bool {
        if self.queued + other.queued > SEND_QUEUE {
            return false;
        }
        for i in 0..other.queued {
            let j = self.queued;
            if j == self.bufs.len() {
                // no spare slot here: take `other`'s and give it a new one (only while this
                // queue's pool grows to its high-water mark)
                self.bufs.push(std::mem::replace(&mut other.bufs[i], Box::new([0u8; SLOT])));
            } else {
                std::mem::swap(&mut self.bufs[j], &mut other.bufs[i]);
            }
            self.lens[j] = other.lens[i];
            self.keys[j] = other.keys[i];
            self.dests[j] = other.dests[i];
            self.destlens[j] = other.destlens[i];
            self.queued += 1;
        }
        other.queued = 0;
        true
    }

    fn same_dest(&self, a: usize, b: usize) -> bool {
        let n = self.destlens[a] as usize;
        n == self.destlens[b] as usize && {
            let pa = &self.dests[a] as *const _ as *const u8;
            let pb = &self.dests[b] as *const _ as *const u8;
            unsafe { std::slice::from_raw_parts(pa, n) == std::slice::from_raw_parts(pb, n) }
        }
    }

    /// Builds one message per run of datagrams to one destination (a single datagram when
    /// GSO is off); returns the number of messages.
    fn build_messages(&mut self) -> usize {
        let q = self.queued;
        self.order.clear();
        self.order.extend((0..q).map(|i| (self.keys[i], i as u32)));
        if self.gso {
            self.order.sort_unstable();
        }
        self.iovs.clear();
        self.hdrs.clear();
        // iovs are pushed in message order, so each run's iovecs are contiguous; the vector
        // never grows past its capacity, so the pointers taken below stay valid.
        for &(_, i) in self.order.iter() {
            let i = i as usize;
            self.iovs.push(libc::iovec { iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                                         iov_len: self.lens[i] });
        }
        let mut k = 0;
        while k < q {
            let first = self.order[k].1 as usize;
            let seg = self.lens[first];
            let mut n = 1;
            let mut bytes = seg;
            if self.gso {
                while k + n < q && n < GSO_MAX_SEGMENTS {
                    let next = self.order[k + n].1 as usize;
                    let len = self.lens[next];
                    let prev_full = self.lens[self.order[k + n - 1].1 as usize] == seg;
                    if !prev_full || len > seg || len == 0 || bytes + len > GSO_MAX_BYTES
                        || self.keys[next] != self.keys[first] || !self.same_dest(first, next) {
                        break;
                    }
                    bytes += len;
                    n += 1;
                }
            }
            let m = self.hdrs.len();
            let mut hdr: libc::mmsghdr = unsafe { zeroed() };
            hdr.msg_hdr.msg_name = &mut self.dests[first] as *mut _ as *mut libc::c_void;
            hdr.msg_hdr.msg_namelen = self.destlens[first];
            hdr.msg_hdr.msg_iov = &mut self.iovs[k] as *mut libc::iovec;
            hdr.msg_hdr.msg_iovlen = n as _;
            if n > 1 {
                let buf = &mut self.cmsgs[m];
                hdr.msg_hdr.msg_control = buf.0.as_mut_ptr() as *mut libc::c_void;
                hdr.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&hdr.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
                }
            }
            self.hdrs.push(hdr);
            k += n;
        }
        self.hdrs.len()
    }

    /// Sends a GSO message's datagrams one by one (after the kernel refused the message).
    fn send_unsegmented(&mut self, m: usize, socket: &UdpSocket) {
        let hdr = self.hdrs[m].msg_hdr;
        for j in 0..hdr.msg_iovlen as usize {
            let iov = unsafe { *hdr.msg_iov.add(j) };
            self.syscalls += 1;
            let r = unsafe {
                libc::sendto(socket.as_raw_fd(), iov.iov_base, iov.iov_len, 0,
                             hdr.msg_name as *const libc::sockaddr, hdr.msg_namelen)
            };
            if r < 0 { self.failed += 1 } else { self.sent += 1; self.messages += 1 }
        }
    }

    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.queued == 0 {
            return;
        }
        let msgs = self.build_messages();
        let mut done = 0;
        while done < msgs {
            let count = (msgs - done).min(MAX_MSGS_PER_CALL);
            self.syscalls += 1;
            let n = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), self.hdrs[done..].as_mut_ptr(), count as libc::c_uint, 0)
            };
            if n <= 0 {
                let err = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                let segments = self.hdrs[done].msg_hdr.msg_iovlen as usize;
                if segments > 1 && err != libc::EAGAIN && err != libc::EWOULDBLOCK {
                    // the kernel refused segmentation for this message (no offload on the
                    // route's device, or a datagram over its MTU): send it plainly; EIO means
                    // the device can never do it, so stop asking
                    if err == libc::EIO {
                        self.gso = false;
                    }
                    self.send_unsegmented(done, socket);
                } else {
                    // EAGAIN or a per-destination error: drop this message and go on
                    self.failed += segments as u64;
                }
                done += 1;
            } else {
                self.messages += n as u64;
                for m in done..done + n as usize {
                    let segments = self.hdrs[m].msg_hdr.msg_iovlen as u64;
                    self.sent += segments;
                    if segments > 1 {
                        self.gso_messages += 1;
                    }
                }
                done += n as usize;
            }
        }
        self.queued = 0;
    }
}

/// What a [`SendPipeline`]'s thread handed to the kernel, summed over its queues.
#[derive(Default)]
pub struct SendTotals {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub syscalls: AtomicU64,
    pub messages: AtomicU64,
    pub gso_messages: AtomicU64,
}

impl SendTotals {
    /// Moves a flushed queue's counters into the totals.
    fn take_from(&self, q: &mut SendQueue) {
        for (total, n) in [(&self.sent, &mut q.sent), (&self.failed, &mut q.failed), (&self.syscalls, &mut q.syscalls),
                           (&self.messages, &mut q.messages), (&self.gso_messages, &mut q.gso_messages)] {
            total.fetch_add(std::mem::take(n), Ordering::Relaxed);
        }
    }
}

/// Queues in a pipeline: the one being filled, plus ones the send thread works on.
const PIPELINE_QUEUES: usize = 4;

/// A send queue whose flushes run on a thread of their own: the caller (the media worker)
/// fills one queue while that thread hands the previous ones to the kernel, which is about
/// half of an egress packet's cost (docs/benchmarks.md) — so a node's fan-out uses two cores.
/// One thread sends the queues in the order they were filled, so each destination's order
/// is kept. At most [`PIPELINE_QUEUES`] queues exist: a caller that gets ahead of the kernel
/// waits at `flush` for one to come back (back-pressure, bounded memory).
pub struct SendPipeline {
    current: SendQueue,
    full: Option<SyncSender<SendQueue>>,
    empty: Receiver<SendQueue>,
    totals: Arc<SendTotals>,
    thread: Option<JoinHandle<()>>,
}

impl SendPipeline {
    /// Sends on (a duplicate of) `socket` from a thread named `trackyard-send`.
    pub fn new(socket: &UdpSocket, gso: bool) -> io::Result<Self> {
        let socket = socket.try_clone()?;
        let (full_tx, full_rx) = sync_channel::<SendQueue>(PIPELINE_QUEUES);
        let (empty_tx, empty_rx) = channel::<SendQueue>();
        for _ in 1..PIPELINE_QUEUES {
            let _ = empty_tx.send(SendQueue::new(gso));
        }
        let totals = Arc::new(SendTotals::default());
        let thread_totals = totals.clone();
        let thread = std::thread::Builder::new().name("trackyard-send".into()).spawn(move || {
            let send = |q: &mut SendQueue| {
                q.flush(&socket);
                thread_totals.take_from(q);
            };
            while let Ok(mut q) = full_rx.recv() {
                // queues that filled while the last ones were being sent leave together: a
                // peer's datagrams from several of them can share GSO messages, and nothing
                // waits longer than it would have waited in line
                let mut open = true;
                while let Ok(mut more) = full_rx.try_recv() {
                    if !q.absorb(&mut more) {
                        send(&mut q);
                        std::mem::swap(&mut q, &mut more);
                    }
                    open &= empty_tx.send(more).is_ok();
                }
                send(&mut q);
                if !open || empty_tx.send(q).is_err() {
                    break;
                }
            }
        })?;
        Ok(SendPipeline { current: SendQueue::new(gso), full: Some(full_tx), empty: empty_rx, totals, thread: Some(thread) })
    }

    /// A slot to write the next datagram into; commit it with `push`.
    pub fn slot(&mut self) -> &mut [u8] {
        if self.current.is_full() {
            self.flush();
        }
        self.current.next_slot()
    }

    /// The slot `slot` handed out last, not yet committed.
    pub fn current_slot(&self) -> &[u8] {
        self.current.current_slot()
    }

    pub fn push(&mut self, len: usize, dest: &SocketAddr) {
        self.current.push(len, dest);
    }

    /// Copy `data` into the queue for `dest`.
    pub fn send_copy(&mut self, data: &[u8], dest: &SocketAddr) {
        if data.len() > SLOT {
            self.totals.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let slot = self.slot();
        slot[..data.len()].copy_from_slice(data);
        self.push(data.len(), dest);
    }

    /// Hand what is queued to the send thread (waiting for an empty queue if all are busy).
    pub fn flush(&mut self) {
        if self.current.is_empty() {
            return;
        }
        // the thread never stops while `full` is open, so a queue always comes back
        let Ok(next) = self.empty.recv() else { return };
        let filled = std::mem::replace(&mut self.current, next);
        if let Some(full) = &self.full {
            let _ = full.send(filled);
        }
    }

    /// What has been sent so far (datagrams the thread handed to the kernel).
    pub fn totals(&self) -> &SendTotals {
        &self.totals
    }
}

impl Drop for SendPipeline {
    fn drop(&mut self) {
        self.flush();
        drop(self.full.take()); // the thread sends what it has, then ends
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> UdpSocket {
        // 4 MiB receive buffer (as the node's socket) so a burst is held, not dropped
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        s
    }

    fn drain(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n).map(|_| { let k = s.recv(&mut buf).unwrap(); buf[..k].to_vec() }).collect()
    }

    /// Interleaved datagrams to three receivers, of equal and unequal sizes, arrive whole
    /// and in order at each receiver, with or without GSO; with GSO the equal-size runs
    /// share messages, so fewer messages than datagrams are sent.
    fn interleaved(gso: bool) -> SendQueue {
        let sender = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx: Vec<UdpSocket> = (0..3).map(|_| receiver()).collect();
        let addrs: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut q = SendQueue::new(gso);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        for p in 0..10u8 {
            for (d, addr) in addrs.iter().enumerate() {
                // receiver 0 gets 1200-byte datagrams, receiver 1 sizes that vary, receiver 2 100 bytes
                let len = match d { 0 => 1200, 1 => 300 + 50 * (p as usize % 3), _ => 100 };
                let data: Vec<u8> = (0..len).map(|i| p ^ d as u8 ^ (i as u8)).collect();
                q.send_copy(&sender, &data, addr);
                expected[d].push(data);
            }
        }
        q.flush(&sender);
        for (d, s) in rx.iter().enumerate() {
            assert_eq!(drain(s, 10), expected[d], "receiver {d}");
        }
        assert_eq!((q.sent, q.failed), (30, 0));
        q
    }

    #[test]
    fn coalesces_per_destination() {
        let q = interleaved(true);
        assert!(q.gso(), "loopback supports UDP GSO");
        assert!(q.gso_messages >= 2, "runs to receivers 0 and 2 are coalesced: {}", q.gso_messages);
        assert!(q.messages < 30, "fewer messages than datagrams: {}", q.messages);
        assert_eq!(q.syscalls, 1);
    }

    #[test]
    fn plain_sendmmsg_without_gso() {
        let q = interleaved(false);
        assert_eq!((q.gso_messages, q.messages), (0, 30));
        assert_eq!(q.syscalls, 1);
    }

    /// A queue that absorbs another sends both in one flush, each receiver's datagrams in
    /// the order they were queued, and a receiver's datagrams from both share GSO messages.
    /// A queue too full to take the other refuses and keeps both unchanged.
    #[test]
    fn absorbed_queues_leave_together_in_order() {
        let sender = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx: Vec<UdpSocket> = (0..2).map(|_| receiver()).collect();
        let addrs: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let (mut a, mut b) = (SendQueue::new(true), SendQueue::new(true));
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 2];
        for (q, first) in [(&mut a, 0u8), (&mut b, 100u8)] {
            for p in first..first + 5 {
                for (d, addr) in addrs.iter().enumerate() {
                    let data = vec![p ^ d as u8; 400];
                    q.send_copy(&sender, &data, addr);
                    expected[d].push(data);
                }
            }
        }
        assert!(a.absorb(&mut b));
        assert!(b.is_empty());
        a.flush(&sender);
        for (d, s) in rx.iter().enumerate() {
            assert_eq!(drain(s, 10), expected[d], "receiver {d}");
        }
        assert_eq!((a.sent, a.messages, a.syscalls), (20, 2, 1), "one message per receiver, one call");

        let mut full = SendQueue::new(false);
        for _ in 0..SEND_QUEUE {
            full.send_copy(&sender, &[1], &addrs[0]);
        }
        b.send_copy(&sender, &[2], &addrs[1]);
        assert!(!full.absorb(&mut b));
        assert_eq!((full.queued, b.queued), (SEND_QUEUE, 1));
    }

    /// A queue fuller than one sendmmsg call allows still delivers everything.
    #[test]
    fn large_queue_flushes_in_chunks() {
        let sender = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx = receiver();
        let addr = rx.local_addr().unwrap();
        let mut q = SendQueue::new(false);
        for i in 0..1100u32 {
            q.send_copy(&sender, &i.to_be_bytes(), &addr);
        }
        q.flush(&sender);
        let got = drain(&rx, 1100);
        assert!(got.iter().enumerate().all(|(i, d)| d[..] == (i as u32).to_be_bytes()));
        assert_eq!(q.syscalls, 2);
    }

    /// Several flushes through the pipeline: every receiver gets its datagrams whole and in
    /// order, and the totals count them once they are sent.
    #[test]
    fn pipeline_keeps_order_across_flushes() {
        let sender = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx: Vec<UdpSocket> = (0..3).map(|_| receiver()).collect();
        let addrs: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut p = SendPipeline::new(&sender, true).unwrap();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        for round in 0..20u8 {
            for (d, addr) in addrs.iter().enumerate() {
                let data: Vec<u8> = vec![round ^ d as u8; 200 + d * 100];
                p.send_copy(&data, addr);
                expected[d].push(data);
            }
            if round % 3 == 0 {
                p.flush();
            }
        }
        drop(p); // flushes the rest and waits for the thread
        for (d, s) in rx.iter().enumerate() {
            assert_eq!(drain(s, 20), expected[d], "receiver {d}");
        }
    }

    #[test]
    fn pipeline_totals_count_what_was_sent() {
        let sender = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx = receiver();
        let addr = rx.local_addr().unwrap();
        let mut p = SendPipeline::new(&sender, false).unwrap();
        for i in 0..50u32 {
            p.send_copy(&i.to_be_bytes(), &addr);
        }
        p.flush();
        assert_eq!(drain(&rx, 50).len(), 50);
        // the thread adds a queue's counts right after its send call returns
        let totals = p.totals();
        for _ in 0..200 {
            if totals.sent.load(Ordering::Relaxed) == 50 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!((totals.sent.load(Ordering::Relaxed), totals.failed.load(Ordering::Relaxed)), (50, 0));
        p.send_copy(&[0u8; SLOT + 1], &addr);
        assert_eq!(p.totals().failed.load(Ordering::Relaxed), 1, "an oversize datagram is refused and counted");
    }
}
