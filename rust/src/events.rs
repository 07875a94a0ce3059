//! Events from the engine's worker thread to Python, in batches.
//!
//! The worker pushes events into a mutex-protected vector and, when the vector goes from
//! empty to non-empty, bumps an eventfd. Python watches the eventfd with
//! `loop.add_reader` and drains everything in one call. The worker never touches the GIL.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A transport's ICE check from a new remote address succeeded (address in use now).
    Bound { transport: u32, addr: SocketAddr },
    /// A DTLS datagram for the transport's DTLS session (handshake, alerts, SCTP data).
    Dtls { transport: u32, data: Vec<u8> },
    /// No valid ICE check for the consent timeout: the peer is gone.
    ConsentLost { transport: u32 },
    /// Handling this transport's traffic panicked: the transport was removed.
    Fault { transport: u32 },
    /// An RTP stream the engine has no route for yet: Python decides which track it is.
    NewStream { transport: u32, ssrc: u32, payload_type: u8, mid: String, rid: String, rrid: String },
    /// The set of layers a track's publisher is sending changed (indexes, lowest first).
    Layers { track: u32, layers: Vec<u8> },
    /// The layer a down-track forwards changed (None: nothing forwarded).
    DownTrackLayer { downtrack: u32, layer: Option<u8> },
    /// Per audio track with levels in the interval: (track, loudest smoothed level in -dBov
    /// (0 loudest … 127 silence), voice activity).
    AudioLevels(Vec<(u32, u8, bool)>),
    /// Periodic statistics: one entry per received stream and per down-track.
    Stats(Vec<StatsEntry>),
}

/// A statistics value.
#[derive(Debug, Clone, PartialEq)]
pub enum StatValue {
    Int(i64),
    Float(f64),
    Str(&'static str),
}

/// One statistics record: (field, value) pairs, a dict in Python.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsEntry(pub Vec<(&'static str, StatValue)>);

impl StatsEntry {
    pub fn int(mut self, key: &'static str, v: impl TryInto<i64>) -> Self {
        self.0.push((key, StatValue::Int(v.try_into().unwrap_or(i64::MAX))));
        self
    }

    pub fn float(mut self, key: &'static str, v: f64) -> Self {
        self.0.push((key, StatValue::Float(v)));
        self
    }

    pub fn text(mut self, key: &'static str, v: &'static str) -> Self {
        self.0.push((key, StatValue::Str(v)));
        self
    }
}

/// An eventfd (a counter the kernel exposes as a file descriptor).
pub struct Notifier {
    fd: RawFd,
}

impl Notifier {
    pub fn new() -> io::Result<Self> {
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Notifier { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn notify(&self) {
        let one: u64 = 1;
        unsafe { libc::write(self.fd, &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Reset the counter (after waking up).
    pub fn clear(&self) {
        let mut value: u64 = 0;
        unsafe { libc::read(self.fd, &mut value as *mut u64 as *mut libc::c_void, 8) };
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}

pub struct EventQueue<E = Event> {
    events: Mutex<Vec<E>>,
    notifier: Notifier,
    /// Events beyond this many undrained ones are dropped (Python is not keeping up).
    limit: usize,
}

impl<E> EventQueue<E> {
    pub fn new(limit: usize) -> io::Result<Self> {
        Ok(EventQueue { events: Mutex::new(Vec::new()), notifier: Notifier::new()?, limit })
    }

    pub fn fd(&self) -> RawFd {
        self.notifier.fd()
    }

    /// Queue a batch of events; returns how many were dropped for lack of room.
    pub fn push_all(&self, batch: &mut Vec<E>) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = events.is_empty();
        let room = self.limit.saturating_sub(events.len());
        let dropped = batch.len().saturating_sub(room);
        events.extend(batch.drain(..).take(room));
        batch.clear();
        drop(events);
        if was_empty {
            self.notifier.notify();
        }
        dropped
    }

    pub fn take(&self) -> Vec<E> {
        self.notifier.clear();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_delivered_in_order_and_bounded() {
        let q = EventQueue::new(3).unwrap();
        let mut batch: Vec<Event> = (0..5).map(|t| Event::ConsentLost { transport: t }).collect();
        assert_eq!(q.push_all(&mut batch), 2);
        let got = q.take();
        assert_eq!(got, (0..3).map(|t| Event::ConsentLost { transport: t }).collect::<Vec<_>>());
        assert!(q.take().is_empty());
    }
}
