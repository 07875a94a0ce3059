//! The media node's UDP socket: batched receive (`recvmmsg`) and send (`sendmmsg`).
//!
//! One socket serves every peer of the node. Buffers are allocated once per batch slot
//! and reused; nothing on this path allocates per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

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

/// Send side: datagrams queued during one loop turn, flushed with as few calls as possible.
pub struct SendQueue {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    dests: Vec<libc::sockaddr_storage>,
    destlens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    queued: usize,
    pub sent: u64,
    pub failed: u64,
}

unsafe impl Send for SendQueue {}

impl SendQueue {
    pub fn new() -> Self {
        SendQueue {
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM + 64]).collect(),
            lens: vec![0; BATCH],
            dests: vec![unsafe { zeroed() }; BATCH],
            destlens: vec![0; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
            queued: 0,
            sent: 0,
            failed: 0,
        }
    }

    /// A slot to write the next datagram into; commit it with `push`.
    /// Flushes first when the batch is full.
    pub fn slot(&mut self, socket: &UdpSocket) -> &mut [u8] {
        if self.queued == BATCH {
            self.flush(socket);
        }
        &mut self.bufs[self.queued][..]
    }

    pub fn push(&mut self, len: usize, dest: &SocketAddr) {
        let i = self.queued;
        self.lens[i] = len;
        self.destlens[i] = to_sockaddr(dest, &mut self.dests[i]);
        self.queued += 1;
    }

    /// Copy `data` into the queue for `dest`.
    pub fn send_copy(&mut self, socket: &UdpSocket, data: &[u8], dest: &SocketAddr) {
        if data.len() > MAX_DATAGRAM + 64 {
            self.failed += 1;
            return;
        }
        let slot = self.slot(socket);
        slot[..data.len()].copy_from_slice(data);
        self.push(data.len(), dest);
    }

    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.queued == 0 {
            return;
        }
        self.iovs.clear();
        self.hdrs.clear();
        for i in 0..self.queued {
            self.iovs.push(libc::iovec { iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                                         iov_len: self.lens[i] });
        }
        for i in 0..self.queued {
            let mut hdr: libc::mmsghdr = unsafe { zeroed() };
            hdr.msg_hdr.msg_name = &mut self.dests[i] as *mut _ as *mut libc::c_void;
            hdr.msg_hdr.msg_namelen = self.destlens[i];
            hdr.msg_hdr.msg_iov = &mut self.iovs[i] as *mut libc::iovec;
            hdr.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(hdr);
        }
        let mut done = 0;
        while done < self.queued {
            let n = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), self.hdrs[done..].as_mut_ptr(),
                               (self.queued - done) as libc::c_uint, 0)
            };
            if n <= 0 {
                // EAGAIN or a per-destination error: drop this datagram and go on with the rest
                self.failed += 1;
                done += 1;
            } else {
                self.sent += n as u64;
                done += n as usize;
            }
        }
        self.queued = 0;
    }
}
