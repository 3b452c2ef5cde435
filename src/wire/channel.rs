//! A framed, buffered Unix stream socket that can carry descriptors.
//!
//! The same type serves both sides. Workers use it in blocking mode: one `read` pulls in as many
//! frames as the kernel has, and replies are batched in `out` until the worker would block.
//! The pool's supervisor uses it in non-blocking mode under `poll`, so that it never blocks on a
//! slow or dead worker.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::bulk;
use super::{HEADER, MAX_FRAME};
use crate::error::{Error, Result};
use crate::sys;

/// One received frame. The payload is a range of an owned buffer, or the sealed memory a bulk
/// frame came in, so large frames are handed over without a copy.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    body: Body,
    /// Descriptors that came with the frame (for handles that carry them, such as queues).
    pub(crate) fds: Vec<OwnedFd>,
}

#[derive(Debug)]
enum Body {
    Inline { buf: Vec<u8>, range: Range<usize> },
    Bulk(bulk::Payload),
}

impl Frame {
    pub(crate) fn payload(&self) -> &[u8] {
        match &self.body {
            Body::Inline { buf, range } => &buf[range.clone()],
            Body::Bulk(payload) => payload.as_slice(),
        }
    }
}

/// Payloads from this size up travel as bulk frames: in shared memory whose descriptor rides
/// with a small frame, instead of through the socket (see `bulk.rs`). The reader decodes
/// straight from that memory.
const BULK_MIN: usize = 128 << 10;
/// A channel idle this long lets go of the memory it keeps for the next large messages
/// (see [`Channel::release_memory`]): a pool that once moved a large payload does not hold its
/// memory for ever.
pub(crate) const BULK_IDLE: std::time::Duration = std::time::Duration::from_secs(1);
/// The most memory a channel end keeps between messages for the next ones, in all: its bulk
/// buffers (`bulk.rs`) and its socket buffers (`inbuf`, `out`). Holding gigabytes for a rare
/// payload costs more than the page faults it saves (see [`Channel::settle`]).
const KEEP_MAX: usize = 256 << 20;
/// Room each socket buffer keeps whatever the budget: ordinary traffic needs no more. Only a
/// large message grows one past it: encoding one (before it goes to shared memory), or one that
/// goes through the socket.
const SMALL: usize = 1 << 20;
/// Header flag (byte 6) of a bulk frame. Its payload is the real payload's length (`u64`); the
/// last of its descriptors is the shared memory holding the payload.
const FLAG_BULK: u8 = 1;

/// Frames larger than this are read straight into their own buffer and handed over whole.
const BIG_FRAME: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// How a channel's owner uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Io {
    /// Calls block until done: a worker, a `Process`'s owner, a pipe end.
    Blocking,
    /// Calls never block; the owner polls the socket (a pool's supervisor).
    Polled,
}

#[derive(Debug)]
pub(crate) struct Channel {
    sock: OwnedFd,
    nonblocking: bool,
    /// Received bytes live in `inbuf[start..end]`; the rest of `inbuf` is spare room that was
    /// zeroed once, so reads never pay for initialising memory again.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    in_fds: VecDeque<OwnedFd>,
    /// When bytes last arrived (see [`Channel::stalled_for`]).
    last_read: Instant,
    out: Vec<u8>,
    out_pos: usize,
    /// Descriptors to attach at absolute offsets of `out`.
    out_fds: VecDeque<(usize, Vec<OwnedFd>)>,
    eof: bool,
    bulk_out: bulk::Sender,
    bulk_in: bulk::Receiver,
    /// The largest frame this channel accepts (see [`limit_frames`](Self::limit_frames)).
    max_frame: usize,
    /// Whether descriptors (and so bulk frames) can cross this socket: not over a network.
    passes_fds: bool,
}

impl Channel {
    pub(crate) fn new(sock: OwnedFd, io: Io) -> io::Result<Self> {
        let nonblocking = io == Io::Polled;
        sys::fd::set_nonblocking(sock.as_fd(), nonblocking)?;
        Ok(Self {
            sock,
            nonblocking,
            inbuf: Vec::new(),
            start: 0,
            end: 0,
            in_fds: VecDeque::new(),
            last_read: Instant::now(),
            out: Vec::new(),
            out_pos: 0,
            out_fds: VecDeque::new(),
            eof: false,
            bulk_out: bulk::Sender::default(),
            bulk_in: bulk::Receiver::default(),
            max_frame: MAX_FRAME,
            passes_fds: true,
        })
    }

    /// Accepts frames of at most `max` bytes (at most [`MAX_FRAME`]) from now on: a larger
    /// header is an error before anything is allocated for its payload. For a peer that has not
    /// yet proven who it is.
    pub(crate) fn limit_frames(&mut self, max: usize) {
        self.max_frame = max.min(MAX_FRAME);
    }

    /// Lets descriptors (and so bulk frames) cross this socket again: a local peer that has
    /// proven who it is.
    pub(crate) fn allow_descriptors(&mut self) {
        self.passes_fds = true;
    }

    /// Makes this a channel that carries no descriptors either way (a network socket, or a
    /// peer that must not park descriptors in this process): large frames go through the
    /// socket, not through shared memory, and descriptors that arrive are closed at once and
    /// are an error.
    pub(crate) fn without_descriptors(mut self) -> Self {
        self.passes_fds = false;
        self
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Whether the peer has closed its end (and every byte it sent has been read).
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    // ----- writing -----

    /// Appends a frame whose payload `write` produces. If `write` fails, nothing is appended.
    pub(crate) fn push_with(
        &mut self,
        kind: u8,
        fds: Vec<OwnedFd>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let at = self.begin_frame();
        if let Err(e) = write(&mut self.out) {
            self.out.truncate(at);
            return Err(e);
        }
        self.end_frame_with(at, kind, fds)
    }

    /// Starts a frame in the output buffer and returns where it starts; the payload is then
    /// appended to [`out_buf`](Self::out_buf) and the frame closed with
    /// [`end_frame`](Self::end_frame).
    pub(crate) fn begin_frame(&mut self) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; HEADER]);
        at
    }

    /// [`end_frame`](Self::end_frame) for a frame that carries `fds` (at most
    /// `MAX_FDS_PER_MSG`).
    pub(crate) fn end_frame_with(&mut self, at: usize, kind: u8, fds: Vec<OwnedFd>) -> Result<()> {
        if fds.len() > sys::fd::MAX_FDS_PER_MSG {
            self.drop_frame(at);
            return Err(Error::Protocol(format!(
                "{} descriptors in one message (at most {})",
                fds.len(),
                sys::fd::MAX_FDS_PER_MSG
            )));
        }
        let nfds = fds.len() as u8;
        if !fds.is_empty() {
            self.out_fds.push_back((at, fds));
        }
        self.end_frame(at, kind, nfds)
    }

    /// Closes the frame begun at `at`: writes its header. An oversized frame is dropped.
    pub(crate) fn end_frame(&mut self, at: usize, kind: u8, nfds: u8) -> Result<()> {
        let len = self.out.len() - at - HEADER;
        if let Err(e) = check_len(len) {
            self.drop_frame(at);
            return Err(e);
        }
        if self.passes_fds && len >= BULK_MIN && (nfds as usize) < sys::fd::MAX_FDS_PER_MSG {
            let body = at + HEADER;
            // No shared memory to be had (descriptors or memory short): the socket still
            // carries the frame, slower.
            if let Ok(memfd) = self.bulk_out.stage(&[&self.out[body..]]) {
                self.out.truncate(body);
                self.finish_bulk(at, kind, len, memfd);
                self.settle();
                return Ok(());
            }
        }
        self.write_header(at, kind, len, nfds, 0);
        Ok(())
    }

    fn write_header(&mut self, at: usize, kind: u8, len: usize, nfds: u8, flags: u8) {
        let header = &mut self.out[at..at + HEADER];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4] = kind;
        header[5] = nfds;
        header[6] = flags;
    }

    /// Completes the frame begun at `at` (with no payload yet, its descriptors queued) as a
    /// bulk frame: `len` bytes in `memfd`, attached as its last descriptor.
    fn finish_bulk(&mut self, at: usize, kind: u8, len: usize, memfd: OwnedFd) {
        self.out.extend_from_slice(&(len as u64).to_le_bytes());
        let nfds = match self.out_fds.back_mut() {
            Some((fd_at, fds)) if *fd_at == at => {
                fds.push(memfd);
                fds.len()
            }
            _ => {
                self.out_fds.push_back((at, vec![memfd]));
                1
            }
        };
        self.write_header(at, kind, 8, nfds as u8, FLAG_BULK);
    }

    /// Appends a frame whose payload is `parts` back to back. A large one goes straight into
    /// shared memory, without a copy into the output buffer first.
    pub(crate) fn push_parts(
        &mut self,
        kind: u8,
        fds: Vec<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // Refused before anything is copied.
        check_len(len)?;
        let bulk = self.passes_fds && len >= BULK_MIN && fds.len() < sys::fd::MAX_FDS_PER_MSG;
        // As in `end_frame`: without shared memory, the socket carries it.
        let Some(memfd) = bulk.then(|| self.bulk_out.stage(parts).ok()).flatten() else {
            return self.push_with(kind, fds, |out| {
                out.reserve(len);
                parts.iter().for_each(|p| out.extend_from_slice(p));
                Ok(())
            });
        };
        let at = self.begin_frame();
        if !fds.is_empty() {
            self.out_fds.push_back((at, fds));
        }
        self.finish_bulk(at, kind, len, memfd);
        self.settle();
        Ok(())
    }

    /// Brings what the channel keeps for the next messages back within [`KEEP_MAX`], once a
    /// large message is done: at most eight bulk buffers (`bulk::keep_within`), and if with the
    /// socket buffers they would take more, those shrink back to [`SMALL`] first (what they
    /// held is done with; the next large message costs page faults, not a copy), then the
    /// oldest bulk buffers go. So a 64 MiB echo keeps every buffer, and a 400 MiB result none.
    fn settle(&mut self) {
        let bulk = bulk::keep_within(&mut self.bulk_out, &mut self.bulk_in, KEEP_MAX);
        if bulk + self.socket_buffers() > KEEP_MAX {
            self.shrink_socket_buffers(SMALL);
            let room = KEEP_MAX.saturating_sub(self.socket_buffers());
            bulk::keep_within(&mut self.bulk_out, &mut self.bulk_in, room);
        }
    }

    /// Memory the socket buffers take.
    fn socket_buffers(&self) -> usize {
        self.out.capacity() + self.inbuf.len()
    }

    /// Shrinks the socket buffers to `room` each, or to the bytes they hold if more.
    fn shrink_socket_buffers(&mut self, room: usize) {
        if self.out.capacity() > room.max(self.out.len()) {
            self.out.shrink_to(room);
        }
        if self.inbuf.len() > room.max(self.end - self.start) {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.inbuf.truncate(room.max(self.end));
            self.inbuf.shrink_to_fit();
        }
    }

    /// Lets go of all the memory kept for the next messages — the bulk buffers, the socket
    /// buffers' room — for a channel that has been idle for [`BULK_IDLE`].
    pub(crate) fn release_memory(&mut self) {
        self.bulk_out = bulk::Sender::default();
        self.bulk_in = bulk::Receiver::default();
        self.shrink_socket_buffers(0);
    }

    /// Whether the channel keeps memory that [`release_memory`](Self::release_memory) would
    /// let go of (ordinary traffic's few socket buffer bytes do not count).
    pub(crate) fn keeps_memory(&self) -> bool {
        let unread = self.end - self.start;
        self.bulk_out.holds()
            || self.bulk_in.holds()
            || self.out.capacity() > SMALL.max(self.out.len())
            || self.inbuf.len() > SMALL.max(unread)
    }

    /// Removes the frame begun at `at` (the last one) and its descriptors.
    fn drop_frame(&mut self, at: usize) {
        self.out.truncate(at);
        if matches!(self.out_fds.back(), Some((fd_at, _)) if *fd_at == at) {
            self.out_fds.pop_back();
        }
        // A frame refused as too large may have grown the buffer on the way.
        self.settle();
    }

    /// Appends a frame with a ready-made payload.
    pub(crate) fn push(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        self.push_parts(kind, Vec::new(), &[payload])
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Direct access to the output buffer, for writers that patch a frame in place.
    pub(crate) fn out_buf(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes queued bytes. In blocking mode, writes them all; in non-blocking mode, writes what
    /// the socket takes and returns whether everything went.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            let fds_here = matches!(self.out_fds.front(), Some((at, _)) if *at == self.out_pos);
            let end = match self.out_fds.iter().find(|(at, _)| *at > self.out_pos) {
                Some((at, _)) => *at,
                None => self.out.len(),
            };
            let bytes = &self.out[self.out_pos..end];
            let sent = if fds_here {
                let (_, fds) = &self.out_fds[0];
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                sys::fd::send(self.sock.as_fd(), bytes, &borrowed, self.nonblocking)
            } else {
                sys::fd::send(self.sock.as_fd(), bytes, &[], self.nonblocking)
            };
            match sent {
                Ok(n) => {
                    if fds_here && n > 0 {
                        // The descriptors went with the first byte; ours can close now.
                        self.out_fds.pop_front();
                    }
                    self.out_pos += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > SMALL {
            self.settle();
        }
        Ok(true)
    }

    /// Queues a frame and writes everything (blocking mode).
    pub(crate) fn send(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        self.push(kind, payload)?;
        self.flush()?;
        Ok(())
    }

    // ----- reading -----

    /// Reads once from the socket. Returns the number of bytes read; `Ok(0)` at end of stream.
    /// In non-blocking mode, `Ok(None)` means nothing was available.
    pub(crate) fn fill(&mut self) -> io::Result<Option<usize>> {
        self.fill_with(self.nonblocking)
    }

    /// [`fill`](Self::fill) that never blocks, whatever the channel's mode: `Ok(None)` if
    /// nothing was available.
    pub(crate) fn try_fill(&mut self) -> io::Result<Option<usize>> {
        self.fill_with(true)
    }

    fn fill_with(&mut self, dont_wait: bool) -> io::Result<Option<usize>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // Make room for the rest of a large frame, so it is read straight into the buffer that
        // will carry it (and handed over without a copy). The room grows with what has arrived
        // (at most doubling), so a header that merely announces a gigabyte costs nothing.
        let mut want = READ_CHUNK;
        let mut cap = usize::MAX;
        if let Some(len) = self.partial_frame_len() {
            let have = self.end - self.start;
            let missing = (HEADER + len).saturating_sub(have);
            if HEADER + len > BIG_FRAME {
                want = missing.min(have.max(BIG_FRAME).saturating_mul(2)).max(1);
                cap = want;
            }
        }
        if self.inbuf.len() - self.end < want && self.start > 0 {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.inbuf.len() - self.end < want {
            self.inbuf.resize(self.end + want, 0);
        }
        let room = (self.inbuf.len() - self.end).min(cap);
        let mut fds = Vec::new();
        let got = sys::fd::recv(
            self.sock.as_fd(),
            &mut self.inbuf[self.end..self.end + room],
            &mut fds,
            dont_wait,
        );
        if !self.passes_fds && !fds.is_empty() {
            // Closed here, as `fds` goes.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent descriptors on a connection that takes none",
            ));
        }
        self.in_fds.extend(fds);
        // Descriptors arrive before the frames that claim them, but never many frames ahead: a
        // peer that keeps sending descriptors no frame claims would exhaust our descriptors.
        if self.in_fds.len() > 4 * sys::fd::MAX_FDS_PER_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent descriptors that no frame claims",
            ));
        }
        match got {
            Ok(n) => {
                self.end += n;
                if n == 0 {
                    self.eof = true;
                } else {
                    self.last_read = Instant::now();
                }
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(Some(0))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the peer is still there, as far as can be told without waiting: its end is not
    /// closed (what it sent meanwhile is kept for the next `recv`).
    pub(crate) fn peer_there(&mut self) -> bool {
        !matches!(self.try_fill(), Ok(Some(0)) | Err(_))
    }

    /// Watches the socket for up to `span` until a whole frame, the end of the stream or an
    /// error has arrived (what follows, `recv`, deals with each), yielding the core meanwhile:
    /// a peer that answers within `span` is then read without this thread being put to sleep
    /// and woken (several µs each on a virtual machine).
    pub(crate) fn watch(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while !self.has_frame() && Instant::now() < until {
            match self.try_fill() {
                Ok(None) => std::thread::yield_now(),
                Ok(Some(0)) | Err(_) => return,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Length of the frame at the read position, if its header has arrived.
    fn partial_frame_len(&self) -> Option<usize> {
        let rest = &self.inbuf[self.start..self.end];
        (rest.len() >= HEADER)
            .then(|| u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize)
    }

    /// Whether any received bytes or descriptors wait in the buffer.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.end > self.start || !self.in_fds.is_empty()
    }

    /// How long the part of a frame that has arrived has waited for the rest, as of `now` (the
    /// time since bytes last arrived); `None` unless part of a frame is buffered. Peers write
    /// each frame whole, so a frame that stops half-way for long is garbage that will never be
    /// completed (a stray write into the socket, say), not a slow peer.
    pub(crate) fn stalled_for(&self, now: Instant) -> Option<Duration> {
        (self.end > self.start && !self.has_frame())
            .then(|| now.saturating_duration_since(self.last_read))
    }

    /// Whether a whole frame is buffered.
    pub(crate) fn has_frame(&self) -> bool {
        match self.partial_frame_len() {
            Some(len) => self.end - self.start >= HEADER + len,
            None => false,
        }
    }

    /// Takes the next whole frame from the buffer, if there is one. A malformed header is an
    /// error; the channel is useless afterwards.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some(len) = self.partial_frame_len() else {
            return Ok(None);
        };
        let header = &self.inbuf[self.start..self.start + HEADER];
        let (kind, nfds, flags, reserved) = (header[4], header[5] as usize, header[6], header[7]);
        if len > self.max_frame {
            return Err(Error::Protocol(format!(
                "frame of {len} bytes exceeds the {}-byte limit",
                self.max_frame
            )));
        }
        let bulk = flags == FLAG_BULK;
        if (flags != 0 && !bulk) || reserved != 0 || (bulk && (len != 8 || nfds == 0)) {
            return Err(Error::Protocol("malformed frame header".into()));
        }
        if self.end - self.start < HEADER + len {
            return Ok(None);
        }
        if self.in_fds.len() < nfds {
            return Err(Error::Protocol(format!(
                "frame announces {nfds} descriptors but {} arrived",
                self.in_fds.len()
            )));
        }
        let mut fds: Vec<OwnedFd> = self.in_fds.drain(..nfds).collect();
        let body = self.start + HEADER..self.start + HEADER + len;
        let body = if bulk {
            let mut claimed = [0; 8];
            claimed.copy_from_slice(&self.inbuf[body.clone()]);
            self.start = body.end;
            let claimed = u64::from_le_bytes(claimed);
            // `bulk` implies at least one descriptor (checked above).
            let memfd = fds
                .pop()
                .ok_or_else(|| Error::Protocol("bulk frame lost".into()))?;
            if claimed > self.max_frame as u64 {
                return Err(Error::Protocol(format!(
                    "a bulk frame of {claimed} bytes exceeds the {}-byte limit",
                    self.max_frame
                )));
            }
            let payload = self
                .bulk_in
                .open(memfd, claimed as usize)
                .map_err(|e| Error::Protocol(format!("a bulk frame's memory is unusable: {e}")))?;
            self.settle();
            Body::Bulk(payload)
        } else if len >= BIG_FRAME && self.start == 0 && body.end == self.end {
            let buf = std::mem::take(&mut self.inbuf);
            self.start = 0;
            self.end = 0;
            Body::Inline { buf, range: body }
        } else {
            let buf = self.inbuf[body.clone()].to_vec();
            self.start = body.end;
            if len >= BIG_FRAME {
                // The buffer grew to read it.
                self.settle();
            }
            Body::Inline {
                range: 0..buf.len(),
                buf,
            }
        };
        Ok(Some(Frame { kind, body, fds }))
    }

    /// Receives the next frame, blocking until `deadline` (forever if `None`).
    /// End of stream is [`Error::Disconnected`]; a deadline passing is [`Error::Timeout`].
    pub(crate) fn recv(&mut self, deadline: Option<Instant>) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            if self.eof {
                return Err(Error::Disconnected);
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::fd::wait_readable(self.sock.as_fd(), Some(left))? {
                    return Err(Error::Timeout);
                }
            } else if self.nonblocking {
                sys::fd::wait_readable(self.sock.as_fd(), None)?;
            }
            self.fill()?;
        }
    }
}

/// The one rule on a frame's size: a payload larger than [`MAX_FRAME`] cannot be sent.
fn check_len(len: usize) -> Result<()> {
    if len > MAX_FRAME {
        return Err(Error::Encode(format!(
            "message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two blocking channels on the ends of a socket pair (for tests here and elsewhere).
    pub(crate) fn pair() -> (Channel, Channel) {
        let (a, b) = sys::fd::socketpair().unwrap();
        (
            Channel::new(a, Io::Blocking).unwrap(),
            Channel::new(b, Io::Blocking).unwrap(),
        )
    }

    #[test]
    fn frames_arrive_whole_and_in_order() {
        let (mut a, mut b) = pair();
        for i in 0..50u8 {
            a.push(i, &vec![i; i as usize * 100]).unwrap();
        }
        a.flush().unwrap();
        for i in 0..50u8 {
            let f = b.recv(None).unwrap();
            assert_eq!(f.kind, i);
            assert_eq!(f.payload(), &vec![i; i as usize * 100][..]);
        }
    }

    #[test]
    fn a_big_frame_crosses_intact() {
        let (a, mut b) = pair();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let expect = payload.clone();
        let t = std::thread::spawn(move || {
            let mut a = a;
            a.send(7, &payload).unwrap();
        });
        let f = b.recv(None).unwrap();
        assert_eq!(f.kind, 7);
        assert!(f.payload() == &expect[..]);
        t.join().unwrap();
    }

    #[test]
    fn a_bulk_frame_travels_in_sealed_memory_with_its_descriptors() {
        let (mut a, mut b) = pair();
        let (x, y) = sys::fd::socketpair().unwrap();
        let payload: Vec<u8> = (0..BULK_MIN as u32 + 5).map(|i| (i % 251) as u8).collect();
        a.push(1, b"small first").unwrap();
        a.push_with(2, vec![x], |out| {
            out.extend_from_slice(&payload);
            Ok(())
        })
        .unwrap();
        a.push(3, b"small after").unwrap();
        let queued = a.pending_out();
        assert!(
            queued < 100,
            "the payload left the socket's path ({queued} bytes)"
        );
        a.flush().unwrap();
        assert_eq!(b.recv(None).unwrap().payload(), b"small first");
        let f = b.recv(None).unwrap();
        assert_eq!(
            (f.kind, f.fds.len()),
            (2, 1),
            "the user's descriptor, not the memfd"
        );
        assert!(matches!(f.body, Body::Bulk(_)));
        assert!(f.payload() == &payload[..]);
        let mut far = Channel::new(f.fds.into_iter().next().unwrap(), Io::Blocking).unwrap();
        far.send(9, b"hi").unwrap();
        assert_eq!(
            Channel::new(y, Io::Blocking)
                .unwrap()
                .recv(None)
                .unwrap()
                .payload(),
            b"hi"
        );
        assert_eq!(b.recv(None).unwrap().payload(), b"small after");
    }

    #[test]
    fn a_limited_channel_refuses_a_larger_frame_on_its_header() {
        let (mut a, mut b) = pair();
        b.limit_frames(1024);
        a.send(1, &[5; 1024]).unwrap();
        assert_eq!(b.recv(None).unwrap().payload(), &[5; 1024]);
        // Only the header of a claimed gigabyte arrives: refused without waiting for the rest.
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        a.out_buf().extend_from_slice(&header);
        a.flush().unwrap();
        let e = b.recv(Some(Instant::now() + std::time::Duration::from_secs(5)));
        assert!(matches!(e, Err(Error::Protocol(m)) if m.contains("1024-byte limit")));
        assert!(b.inbuf.len() <= READ_CHUNK);
    }

    #[test]
    fn a_channel_without_descriptors_sends_large_frames_through_the_socket() {
        let (a, mut b) = pair();
        let payload: Vec<u8> = (0..BULK_MIN as u32 + 5).map(|i| (i % 251) as u8).collect();
        let expect = payload.clone();
        let t = std::thread::spawn(move || a.without_descriptors().send(2, &payload).unwrap());
        let f = b.recv(None).unwrap();
        assert!(f.fds.is_empty() && matches!(f.body, Body::Inline { .. }));
        assert!(f.payload() == &expect[..]);
        t.join().unwrap();

        // Descriptors sent to it are refused.
        let (mut a, b) = pair();
        let mut b = b.without_descriptors();
        let (x, _y) = sys::fd::socketpair().unwrap();
        a.push_with(1, vec![x], |_| Ok(())).unwrap();
        a.flush().unwrap();
        let e = b.recv(None).unwrap_err();
        assert!(e.to_string().contains("takes none"), "{e}");
    }

    #[test]
    fn an_oversized_message_is_refused_before_it_is_copied() {
        let (mut a, _b) = pair();
        // Untouched (calloc'd) memory: a copy would fault in a GiB.
        let huge = vec![0u8; MAX_FRAME + 1];
        let t = Instant::now();
        let e = a.push_parts(1, Vec::new(), &[&huge[..8], &huge[8..]]);
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        let size = format!("{} bytes", MAX_FRAME + 1);
        assert!(matches!(e, Err(Error::Encode(m)) if m.contains(&size)));
        assert_eq!((a.pending_out(), a.out.capacity()), (0, 0));
        assert!(!a.keeps_memory());
    }

    #[test]
    fn a_channel_keeps_at_most_its_budget_between_messages_and_nothing_once_released() {
        let (mut a, mut b) = pair();
        let send = |ch: &mut Channel, len: usize| {
            let payload = vec![7u8; len];
            ch.push_with(1, Vec::new(), |out| {
                out.extend_from_slice(&payload);
                Ok(())
            })
            .unwrap();
            ch.flush().unwrap();
        };
        // A 64 MiB message: its buffers are kept for the next one (what makes echoes fast)...
        send(&mut a, 64 << 20);
        assert_eq!(b.recv(None).unwrap().payload().len(), 64 << 20);
        assert!(a.out.capacity() >= 64 << 20 && a.bulk_out.holds() && b.bulk_in.holds());
        // ... until the channel has been idle a while.
        for ch in [&mut a, &mut b] {
            assert!(ch.keeps_memory());
            ch.release_memory();
            assert!(!ch.keeps_memory());
            assert_eq!((ch.out.capacity(), ch.inbuf.len()), (0, 0));
        }
        // Over the budget (64 MiB kept, then 300 MiB): nothing stays, on either side.
        send(&mut a, 64 << 20);
        drop(b.recv(None).unwrap());
        send(&mut a, 300 << 20);
        assert_eq!(b.recv(None).unwrap().payload().len(), 300 << 20);
        for ch in [&a, &b] {
            let kept = ch.bulk_out.held() + ch.bulk_in.held() + ch.socket_buffers();
            assert!(kept <= 2 * SMALL, "{kept} bytes kept");
        }
    }

    #[test]
    fn a_large_frame_through_the_socket_leaves_the_read_buffer_small() {
        let (a, mut b) = pair();
        // A small frame, a 3 MB one written raw (as if no shared memory could be had), and a
        // small one again, in one stream.
        let len = 3_000_000usize;
        let mut bytes = vec![2, 0, 0, 0, 6, 0, 0, 0, b'h', b'i'];
        bytes.extend_from_slice(&(len as u32).to_le_bytes());
        bytes.extend_from_slice(&[5, 0, 0, 0]);
        bytes.resize(bytes.len() + len, 9);
        bytes.extend_from_slice(&[2, 0, 0, 0, 6, 0, 0, 0, b'h', b'o']);
        let t = std::thread::spawn(move || sys::fd::send(a.as_fd(), &bytes, &[], false).map(|_| a));
        assert_eq!(b.recv(None).unwrap().payload(), b"hi");
        assert_eq!(b.recv(None).unwrap().payload().len(), len);
        assert_eq!(b.recv(None).unwrap().payload(), b"ho");
        let _a = t.join().unwrap().unwrap();
        assert!(b.inbuf.len() <= SMALL && !b.keeps_memory());
    }

    #[test]
    fn a_forged_bulk_frame_is_a_protocol_error() {
        // No descriptor, a descriptor that is not sealed memory, a length that lies.
        let bulk_header = |nfds: u8| [8, 0, 0, 0, 2, nfds, FLAG_BULK, 0];
        let (a, mut b) = pair();
        let mut bytes = bulk_header(0).to_vec();
        bytes.extend_from_slice(&5u64.to_le_bytes());
        sys::fd::send(a.as_fd(), &bytes, &[], false).unwrap();
        assert!(matches!(b.recv(None), Err(Error::Protocol(_))));

        let (a, mut b) = pair();
        let (x, _y) = sys::fd::socketpair().unwrap();
        let mut bytes = bulk_header(1).to_vec();
        bytes.extend_from_slice(&5u64.to_le_bytes());
        sys::fd::send(a.as_fd(), &bytes, &[x.as_fd()], false).unwrap();
        assert!(matches!(b.recv(None), Err(Error::Protocol(_))));

        let (a, mut b) = pair();
        let memfd = bulk::Sender::default().stage(&[b"four"]).unwrap();
        let mut bytes = bulk_header(1).to_vec();
        bytes.extend_from_slice(&(2u64 << 20).to_le_bytes());
        sys::fd::send(a.as_fd(), &bytes, &[memfd.as_fd()], false).unwrap();
        assert!(matches!(b.recv(None), Err(Error::Protocol(_))));
    }

    #[test]
    fn descriptors_travel_with_their_frame() {
        let (mut a, mut b) = pair();
        let (x, y) = sys::fd::socketpair().unwrap();
        a.push(1, b"no fds").unwrap();
        a.push_with(2, vec![x], |out| {
            out.extend_from_slice(b"one fd");
            Ok(())
        })
        .unwrap();
        a.flush().unwrap();
        assert!(b.recv(None).unwrap().fds.is_empty());
        let f = b.recv(None).unwrap();
        assert_eq!(f.fds.len(), 1);
        // The received descriptor is the same socket: talk through it.
        let mut far = Channel::new(f.fds.into_iter().next().unwrap(), Io::Blocking).unwrap();
        let mut near = Channel::new(y, Io::Blocking).unwrap();
        far.send(9, b"hi").unwrap();
        assert_eq!(near.recv(None).unwrap().payload(), b"hi");
    }

    #[test]
    fn malformed_and_oversized_headers_are_errors() {
        let (a, mut b) = pair();
        let mut bad = [0u8; HEADER];
        bad[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        sys::fd::send(a.as_fd(), &bad, &[], false).unwrap();
        assert!(matches!(b.recv(None), Err(Error::Protocol(_))));

        let (a, mut b) = pair();
        let bad = [1, 0, 0, 0, 3, 0, 9, 9, 0];
        sys::fd::send(a.as_fd(), &bad, &[], false).unwrap();
        assert!(matches!(b.recv(None), Err(Error::Protocol(_))));
    }

    #[test]
    fn a_frame_cut_short_is_seen_stalling_and_a_whole_one_is_not() {
        let (a, mut b) = pair();
        let now = Instant::now();
        assert_eq!(b.stalled_for(now), None);
        // A header that announces 4,000 bytes, and 3 of them.
        let mut bytes = vec![0xa0, 0x0f, 0, 0, 5, 0, 0, 0];
        bytes.extend_from_slice(b"abc");
        sys::fd::send(a.as_fd(), &bytes, &[], false).unwrap();
        assert!(b.fill().unwrap().is_some());
        let later = Instant::now() + Duration::from_secs(3);
        assert!(b.stalled_for(later).unwrap() >= Duration::from_secs(3));
        // Three bytes of a header stall too; a whole frame does not.
        let (a, mut b) = pair();
        sys::fd::send(a.as_fd(), &[1, 0, 0], &[], false).unwrap();
        b.fill().unwrap();
        assert!(b.stalled_for(later).is_some());
        sys::fd::send(a.as_fd(), &[0, 7, 0, 0, 0, 42], &[], false).unwrap();
        b.fill().unwrap();
        assert_eq!(b.stalled_for(later), None);
        assert_eq!(b.recv(None).unwrap().payload(), [42]);
    }

    #[test]
    fn closed_peer_is_disconnected_and_deadline_is_timeout() {
        let (a, mut b) = pair();
        let deadline = Instant::now() + std::time::Duration::from_millis(20);
        assert!(matches!(b.recv(Some(deadline)), Err(Error::Timeout)));
        drop(a);
        assert!(matches!(b.recv(None), Err(Error::Disconnected)));
    }
}
