//! RFC 4571 framing of RTP, RTCP, STUN and DTLS packets on a TCP stream (ICE-TCP, RFC 6544):
//! each packet is preceded by its length as a 16-bit big-endian number.
//!
//! Sans-IO: [`FrameReader`] collects the bytes a socket delivered and hands out whole
//! packets; [`FrameWriter`] queues framed packets and hands out the bytes to write. Both
//! have fixed limits chosen by the caller, so a peer can make neither grow without bound.

/// Bytes of the length prefix.
pub const HEADER: usize = 2;

/// Why a stream cannot be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A frame announced more bytes than the reader accepts (the stream is not what it
    /// should be: garbage, or a peer speaking something else).
    Oversize(usize),
}

/// Reassembles frames from stream reads into one buffer allocated up front.
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max_frame: usize,
}

impl FrameReader {
    /// A reader holding up to `capacity` bytes, accepting frames up to `max_frame` bytes
    /// (`capacity` is raised to hold at least one such frame with its header).
    pub fn new(capacity: usize, max_frame: usize) -> Self {
        let max_frame = max_frame.min(usize::from(u16::MAX));
        let capacity = capacity.max(HEADER + max_frame);
        FrameReader { buf: vec![0u8; capacity].into_boxed_slice(), start: 0, end: 0, max_frame }
    }

    /// Free space to read into (after moving unread bytes to the front); report what was
    /// read with [`filled`](Self::filled). Empty only while a whole frame waits to be taken.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were written into the slice `spare` returned.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next whole frame's payload, `Ok(None)` when more bytes are needed, or an error
    /// when the stream announces a frame over the limit (nothing more can be read from it).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEADER {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
        if len > self.max_frame {
            return Err(FramingError::Oversize(len));
        }
        if avail.len() < HEADER + len {
            return Ok(None);
        }
        let from = self.start + HEADER;
        self.start = from + len;
        if self.start == self.end {
            (self.start, self.end) = (0, 0); // nothing left: the next read starts at the front
        }
        Ok(Some(&self.buf[from..from + len]))
    }
}

/// Framed packets waiting to be written, in one buffer that grows (by doubling, so not per
/// packet) up to a fixed capacity; a packet that does not fit is refused.
pub struct FrameWriter {
    buf: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl FrameWriter {
    /// A writer holding at most `capacity` bytes of framed packets.
    pub fn new(capacity: usize) -> Self {
        FrameWriter { buf: Vec::new(), start: 0, capacity }
    }

    /// Queues `packet` with its length prefix; false (nothing queued) when it is longer than
    /// a frame can say or the queue has no room for it.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Ok(len) = u16::try_from(packet.len()) else { return false };
        if self.pending() + HEADER + packet.len() > self.capacity {
            return false;
        }
        if self.start > 0 && self.buf.len() + HEADER + packet.len() > self.buf.capacity() {
            // reuse the space already written out before growing
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(packet);
        true
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The bytes to write next.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// `n` bytes of `unwritten` were written.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut w = FrameWriter::new(1 << 20);
        for p in packets {
            assert!(w.push(p));
        }
        w.unwritten().to_vec()
    }

    /// Feeds `bytes` in pieces of `step` and collects the frames.
    fn read_all(bytes: &[u8], step: usize) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut r = FrameReader::new(64, 1500);
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let spare = r.spare();
                let n = spare.len().min(rest.len());
                spare[..n].copy_from_slice(&rest[..n]);
                r.filled(n);
                rest = &rest[n..];
                while let Some(f) = r.next_frame()? {
                    out.push(f.to_vec());
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn length_prefix_is_big_endian() {
        assert_eq!(framed(&[b"abc"]), [0, 3, b'a', b'b', b'c']);
        let big = vec![7u8; 0x0102];
        assert_eq!(&framed(&[&big])[..2], &[1, 2]);
        assert_eq!(framed(&[b""]), [0, 0]);
    }

    #[test]
    fn frames_survive_any_split_of_the_stream() {
        let packets: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 70]).collect();
        let refs: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
        let stream = framed(&refs);
        for step in [1, 2, 3, 7, 64, 1000, stream.len()] {
            assert_eq!(read_all(&stream, step).unwrap(), packets, "pieces of {step}");
        }
    }

    #[test]
    fn oversize_frame_is_an_error() {
        let mut stream = framed(&[b"ok"]);
        stream.extend_from_slice(&[0x05, 0xDD]); // 1501 > 1500
        stream.extend_from_slice(&[0u8; 100]);
        let mut r = FrameReader::new(4096, 1500);
        r.spare()[..stream.len()].copy_from_slice(&stream);
        r.filled(stream.len());
        assert_eq!(r.next_frame().unwrap(), Some(&b"ok"[..]));
        assert_eq!(r.next_frame(), Err(FramingError::Oversize(1501)));
        // a frame at the limit is fine, and the buffer holds one however small it was asked
        let max = vec![9u8; 1500];
        assert_eq!(read_all(&framed(&[&max]), 500).unwrap(), vec![max]);
    }

    #[test]
    fn partial_frame_waits() {
        let mut r = FrameReader::new(16, 100);
        r.spare()[..3].copy_from_slice(&[0, 4, 1]);
        r.filled(3);
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.buffered(), 3);
        r.spare()[..3].copy_from_slice(&[2, 3, 4]);
        r.filled(3);
        assert_eq!(r.next_frame().unwrap(), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn writer_is_bounded_and_handles_partial_writes() {
        let mut w = FrameWriter::new(10);
        assert!(w.push(b"abcd")); // 6 bytes
        assert!(!w.push(b"efg")); // 5 more would be 11
        assert!(w.push(b"ef")); // 10
        assert_eq!(w.unwritten(), [0, 4, b'a', b'b', b'c', b'd', 0, 2, b'e', b'f']);
        w.consume(3); // a partial write
        assert_eq!(w.unwritten(), [b'b', b'c', b'd', 0, 2, b'e', b'f']);
        assert!(w.push(b"x")); // room again: 7 + 3
        assert!(!w.push(b""));
        w.consume(7);
        assert_eq!(w.unwritten(), [0, 1, b'x']);
        w.consume(3);
        assert_eq!(w.pending(), 0);
        assert!(!w.push(&[0u8; 70_000]), "longer than a frame can say");
    }

    #[test]
    fn writer_stops_growing_in_steady_state() {
        let mut w = FrameWriter::new(1 << 16);
        for _ in 0..10 {
            assert!(w.push(&[1u8; 1200]));
        }
        w.consume(w.pending());
        let cap = w.buf.capacity();
        for _ in 0..1000 {
            assert!(w.push(&[1u8; 1200]));
            assert!(w.push(&[2u8; 1200]));
            w.consume(1500); // partial writes leave data at the front
            if w.pending() > 5000 {
                w.consume(w.pending());
            }
        }
        assert!(w.buf.capacity() <= cap.max(8192) * 2, "capacity {} grew", w.buf.capacity());
    }
}
