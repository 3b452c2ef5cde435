//! The shared part of a queue: a ring of encoded items in shared memory, a side socket for
//! items that carry descriptors or are too big for the ring, and the table of processes that
//! hold the queue.
//!
//! Items are records in the ring: an 8-byte header (length, kind) and the payload, padded to
//! 8 bytes; a record never wraps (a `WRAP` header sends the reader back to the start). Every
//! change happens under the queue's lock (a `LockCell`, so a process that dies inside is
//! noticed), and is a memcpy and a few stores: no system call on the way unless someone sleeps.
//!
//! An item that carries descriptors, or would take more than a quarter of the ring, goes in a
//! sealed memfd sent over a `SOCK_SEQPACKET` pair shared by all holders; its ring record holds
//! only a nonce. Sending and reading the socket under the ring's lock keeps the two in the same
//! order, and the nonce catches the one way they can drift apart: a process killed between the
//! two steps.
//!
//! Holders: each process holding handles has a seat with a count. A reader that finds the
//! queue empty and no other live holder (counting handles in flight inside messages, see
//! `wire::fds::Pin`) knows no item can ever arrive, and says so instead of waiting forever.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use crate::mem::parking::Parking;
use crate::mem::segment::{Kind, Segment, SharedCell};
use crate::sync::lock::{Held, LockCell};
use crate::sys;
use crate::sys::proc::identity_alive;
use crate::sys::shm::SealedBytes;
use crate::wire::fds::FdSet;

/// Processes whose handles are counted; beyond that, "every writer is gone" is never claimed.
const SEATS: usize = 64;
/// Default size of the ring.
pub(crate) const DEFAULT_RING: usize = 4 << 20;
/// Smallest ring accepted.
pub(crate) const MIN_RING: usize = 4096;

const HEADER: usize = 8;
const INLINE: u32 = 1;
const SIDE: u32 = 2;
const WRAP: u32 = 3;

#[derive(Debug, Default)]
#[repr(C)]
struct Seat {
    process: AtomicU64,
    /// Handles open in the process.
    count: AtomicU32,
    /// 1 if a handle was handed to the process when it started: it counts as a holder until
    /// it exits, whatever its own handles do (its own reads ignore this).
    pinned: AtomicU32,
}

impl Seat {
    fn held(&self) -> bool {
        self.count.load(SeqCst) > 0 || self.pinned.load(SeqCst) != 0
    }
}

#[derive(Debug)]
#[repr(C)]
pub(crate) struct QueueCell {
    lock: LockCell,
    /// Bytes consumed and produced since creation; the ring position is these modulo `ring`.
    head: AtomicU64,
    tail: AtomicU64,
    items: AtomicU64,
    /// Most items at once; 0 for no limit.
    maxsize: AtomicU64,
    ring: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU64,
    /// Handles that found no seat; while any exist, disconnection is never reported.
    untracked: AtomicU64,
    /// Handles inside queue items and pipe messages not yet received: each will be decoded in
    /// some process, which can then write. Counted up when encoded, down when decoded (or when
    /// the message is dropped undelivered); a message lost with a dead reader leaves it up,
    /// which only means readers wait instead of being told "disconnected".
    in_flight: AtomicU64,
    not_empty: Parking,
    not_full: Parking,
    all_done: Parking,
    seats: [Seat; SEATS],
}

// SAFETY: repr(C) atomics, `SharedCell`s and arrays of repr(C) atomics; zero is an empty,
// unlocked queue with a ring of 0 bytes (set at creation).
unsafe impl SharedCell for QueueCell {}

/// Why a record could not be added.
pub(crate) enum PushError {
    /// No room now (items, ring bytes or side socket).
    Full,
    Io(std::io::Error),
    /// The shared state is corrupt (a process wrote garbage into it).
    Corrupt(String),
}

/// An item taken off the queue, not yet decoded.
pub(crate) enum Popped {
    /// The payload was copied into the caller's buffer.
    Inline,
    /// The payload is in sealed memory, with the item's own descriptors.
    Side(SealedBytes, Vec<OwnedFd>),
}

/// Why nothing was taken.
pub(crate) enum PopError {
    /// The queue is empty (and the deadline, if any, passed).
    Empty,
    /// The queue is empty and no other holder is left to put anything (reported only to a
    /// wait without a deadline).
    Disconnected,
    /// The shared state is corrupt (a process wrote garbage into it).
    Corrupt(String),
}

/// A queue's shared memory and side socket, mapped in this process.
pub(crate) struct Ring {
    seg: Segment<QueueCell>,
    /// The ring's `len` bytes, inside `seg`; reached only through [`Inside`].
    bytes: *mut u8,
    len: usize,
    side_tx: OwnedFd,
    side_rx: OwnedFd,
}

// SAFETY: `bytes` points into `seg`'s mapping, kept alive by `seg`; the ring's bytes are only
// touched under the queue's cross-process lock (through `Inside`), which also orders threads of
// this process.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

fn padded(len: usize) -> usize {
    (len + 7) & !7
}

impl Ring {
    pub(crate) fn create(maxsize: usize, ring: usize) -> std::io::Result<Self> {
        let ring = padded(ring.max(MIN_RING));
        let seg = Segment::new(Kind::Queue, ring + 64)?;
        let cell: &QueueCell = seg.cell();
        cell.maxsize.store(maxsize as u64, SeqCst);
        cell.ring.store(ring as u64, SeqCst);
        let (side_tx, side_rx) = sys::fd::seqpacket_pair()?;
        Self::from_parts(seg, side_tx, side_rx).map_err(std::io::Error::other)
    }

    /// Assembles a ring from a segment (kind already checked) and the side socket's ends.
    pub(crate) fn from_parts(
        seg: Segment<QueueCell>,
        side_tx: OwnedFd,
        side_rx: OwnedFd,
    ) -> Result<Self, String> {
        let cell: &QueueCell = seg.cell();
        let len = usize::try_from(cell.ring.load(SeqCst)).map_err(|_| "bad ring size")?;
        let bytes = seg
            .tail(64, len)
            .filter(|_| len >= MIN_RING && len % 8 == 0)
            .ok_or_else(|| {
                format!("a received queue's ring of {len} bytes does not fit its memory")
            })?
            .as_ptr();
        Ok(Self {
            seg,
            bytes,
            len,
            side_tx,
            side_rx,
        })
    }

    pub(crate) fn segment(&self) -> &Segment<QueueCell> {
        &self.seg
    }

    pub(crate) fn side_fds(&self) -> (std::os::fd::BorrowedFd<'_>, std::os::fd::BorrowedFd<'_>) {
        (self.side_tx.as_fd(), self.side_rx.as_fd())
    }

    fn cell(&self) -> &QueueCell {
        self.seg.cell()
    }

    /// Takes the lock. If a process died holding it, the item count may be off: recount.
    fn enter(&self) -> Inside<'_> {
        let (held, died) = self.cell().lock.hold();
        let inside = Inside {
            ring: self,
            _held: held,
        };
        if died {
            inside.recount();
        }
        inside
    }

    /// Head and tail, checked: both 8-aligned, head not past tail, at most a ring apart, and
    /// far from overflowing. Another process may have written anything there; every walk over
    /// the records starts here, so it stays inside the ring and ends.
    fn bounds(&self) -> Result<(u64, u64), String> {
        let cell = self.cell();
        let (head, tail) = (cell.head.load(SeqCst), cell.tail.load(SeqCst));
        if head % 8 != 0
            || tail % 8 != 0
            || tail < head
            || tail - head > self.len as u64
            || tail > u64::MAX / 2
        {
            return Err(format!("corrupt queue counters: head {head}, tail {tail}"));
        }
        Ok((head, tail))
    }

    /// Whether a payload of `len` bytes may go in the ring (else it goes aside).
    pub(crate) fn fits_inline(&self, len: usize) -> bool {
        HEADER + padded(len) <= self.len / 4
    }

    /// Adds one record: `payload` inline, or (with `side`) a memfd and the item's descriptors
    /// over the side socket. Waits for room until `deadline`.
    pub(crate) fn push(
        &self,
        payload: &[u8],
        side: Option<(&OwnedFd, &FdSet)>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        let cell = self.cell();
        let pushed = |stale: bool| -> Option<Result<(), PushError>> {
            let _ = stale;
            let nonce;
            let body: &[u8] = match side {
                Some(_) => {
                    nonce = next_nonce().to_le_bytes();
                    &nonce
                }
                None => payload,
            };
            let rec = HEADER + padded(body.len());
            let inside = self.enter();
            let skip = match inside.room(rec) {
                Ok(Some(skip)) => skip,
                Ok(None) => return None,
                Err(e) => return Some(Err(PushError::Corrupt(e))),
            };
            if let Some((memfd, fds)) = side {
                let dups = match fds.duplicate() {
                    Ok(d) => d,
                    Err(e) => return Some(Err(PushError::Io(e))),
                };
                let mut all = vec![memfd.as_fd()];
                all.extend(dups.iter().map(|f| f.as_fd()));
                match sys::fd::send(self.side_tx.as_fd(), body, &all, true) {
                    Ok(_) => {}
                    Err(e) if is_full(&e) => return None,
                    Err(e) => return Some(Err(PushError::Io(e))),
                }
            }
            let kind = if side.is_some() { SIDE } else { INLINE };
            // Room checked by `room` just above, under the same lock.
            match inside.write_record(cell.tail.load(SeqCst), skip, kind, body) {
                Ok(tail) => cell.tail.store(tail, SeqCst),
                Err(e) => return Some(Err(PushError::Corrupt(e))),
            }
            cell.items.fetch_add(1, SeqCst);
            cell.unfinished.fetch_add(1, SeqCst);
            Some(Ok(()))
        };
        let outcome = match pushed(false) {
            Some(r) => r,
            None => cell
                .not_full
                .wait(deadline, pushed)
                .unwrap_or(Err(PushError::Full)),
        };
        if outcome.is_ok() {
            cell.not_empty.wake_one();
        }
        outcome
    }

    /// Takes the oldest record, copying an inline payload into `buf`. Waits until `deadline`.
    ///
    /// Only a wait without a deadline ends in [`PopError::Disconnected`]: when the queue is
    /// empty and nobody but the reading handle (of process `me`) could ever put, it would
    /// otherwise wait forever. A bounded wait ends anyway, and the reader's own handle can put
    /// once it returns: for it the queue is just empty.
    pub(crate) fn pop(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        me: u64,
    ) -> Result<Popped, PopError> {
        let cell = self.cell();
        let forever = deadline.is_none();
        let mut take = |stale: bool| -> Option<Result<Popped, PopError>> {
            if self.is_empty() {
                // Look again after deciding: a writer may have put an item, then left.
                if forever && (stale || self.alone()) && self.writers_gone(me) && self.is_empty() {
                    return Some(Err(PopError::Disconnected));
                }
                return None;
            }
            let inside = self.enter();
            inside.take_record(buf).transpose()
        };
        let popped = match take(false) {
            Some(r) => r,
            None if deadline.is_some_and(|d| d <= Instant::now()) => Err(PopError::Empty),
            None => cell
                .not_empty
                .wait(deadline, take)
                .unwrap_or(Err(PopError::Empty)),
        };
        if popped.is_ok() {
            cell.not_full.wake_one();
        }
        popped
    }

    pub(crate) fn len(&self) -> usize {
        self.cell().items.load(SeqCst) as usize
    }

    fn is_empty(&self) -> bool {
        let cell = self.cell();
        cell.head.load(SeqCst) == cell.tail.load(SeqCst)
    }

    /// A handle to this queue was put inside a message that is on its way.
    pub(crate) fn departed(&self) {
        self.cell().in_flight.fetch_add(1, SeqCst);
    }

    /// A handle that was on its way arrived (was decoded), or its message was dropped.
    pub(crate) fn arrived(&self) {
        let _ = self
            .cell()
            .in_flight
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.cell().maxsize.load(SeqCst) as usize
    }

    /// Marks one item done; `false` if none was outstanding.
    pub(crate) fn task_done(&self) -> bool {
        let cell = self.cell();
        match cell
            .unfinished
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        {
            Ok(1) => {
                cell.all_done.wake_all();
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Waits until every item put has been marked done; `false` if the deadline passed.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let cell = self.cell();
        let done = || (cell.unfinished.load(SeqCst) == 0).then_some(());
        done().is_some() || cell.all_done.wait(deadline, |_| done()).is_some()
    }

    /// Counts one more handle in process `identity`.
    pub(crate) fn hold(&self, identity: u64) {
        let inside = self.enter();
        match inside.seat_for(identity) {
            Some(seat) => {
                seat.count.fetch_add(1, SeqCst);
            }
            None => {
                self.cell().untracked.fetch_add(1, SeqCst);
            }
        }
    }

    /// Counts process `identity` as a holder until it exits.
    pub(crate) fn pin(&self, identity: u64) {
        let inside = self.enter();
        match inside.seat_for(identity) {
            Some(seat) => seat.pinned.store(1, SeqCst),
            None => {
                self.cell().untracked.fetch_add(1, SeqCst);
            }
        }
    }

    /// Counts one handle less in process `identity`.
    pub(crate) fn release(&self, identity: u64) {
        let cell = self.cell();
        let gone = {
            let _inside = self.enter();
            match cell
                .seats
                .iter()
                .find(|s| s.process.load(SeqCst) == identity)
            {
                Some(seat) => {
                    if seat.count.fetch_sub(1, SeqCst) <= 1 {
                        seat.count.store(0, SeqCst);
                        if seat.pinned.load(SeqCst) == 0 {
                            seat.process.store(0, SeqCst);
                        }
                    }
                }
                None => {
                    let _ = cell
                        .untracked
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
                }
            }
            self.alone()
        };
        // A reader blocked on an empty queue may now be alone: let it look.
        if gone {
            cell.not_empty.wake_all();
        }
    }

    /// Whether at most one process holds the queue (a cheap first test for `writers_gone`).
    fn alone(&self) -> bool {
        let cell = self.cell();
        cell.untracked.load(SeqCst) == 0
            && cell.in_flight.load(SeqCst) == 0
            && cell.seats.iter().filter(|s| s.held()).count() <= 1
    }

    /// Whether nobody but the one handle of process `me` that is reading could still put: no
    /// other live process holds the queue, and `me` holds it once.
    pub(crate) fn writers_gone(&self, me: u64) -> bool {
        let cell = self.cell();
        if cell.untracked.load(SeqCst) > 0 || cell.in_flight.load(SeqCst) > 0 {
            return false;
        }
        cell.seats.iter().all(|s| {
            let process = s.process.load(SeqCst);
            if process == me {
                // The reading handle is one of this process's own.
                s.count.load(SeqCst) <= 1
            } else {
                process == 0 || !s.held() || !identity_alive(process)
            }
        })
    }
}

/// The ring under the queue's lock, made by [`Ring::enter`]; the lock is released when it
/// drops. The ring's bytes, and everything else the lock guards, are reached only through it,
/// so "the lock is held" is a fact of the type, not a comment; each access is checked to lie
/// inside the ring.
struct Inside<'a> {
    ring: &'a Ring,
    _held: Held<'a>,
}

impl std::ops::Deref for Inside<'_> {
    type Target = Ring;

    fn deref(&self) -> &Ring {
        self.ring
    }
}

impl Inside<'_> {
    /// Recounts the items between head and tail.
    fn recount(&self) {
        let cell = self.cell();
        let Ok((mut at, tail)) = self.bounds() else {
            return; // corrupt: every later use reports it
        };
        let mut n = 0;
        while at < tail {
            let Ok((len, kind)) = self.header_at(at) else {
                break;
            };
            if kind == WRAP {
                at += (self.len - (at as usize % self.len)) as u64;
            } else {
                at += (HEADER + padded(len)) as u64;
                n += 1;
            }
        }
        cell.items.store(n, SeqCst);
    }

    /// Reads the record header at stream position `at`.
    fn header_at(&self, at: u64) -> Result<(usize, u32), String> {
        if at % 8 != 0 {
            return Err(format!(
                "corrupt queue: a record at unaligned position {at}"
            ));
        }
        let pos = at as usize % self.len;
        let mut raw = [0u8; HEADER];
        // Inside the ring: `pos` is 8-aligned (every record is padded to 8) and the ring's
        // length a multiple of 8.
        self.read_at(pos, &mut raw)?;
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        let kind = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let fits = match kind {
            WRAP => true,
            INLINE | SIDE => HEADER + padded(len) <= self.len - pos,
            _ => false,
        };
        if !fits {
            return Err(format!(
                "corrupt queue record at {at}: kind {kind}, {len} bytes"
            ));
        }
        Ok((len, kind))
    }

    /// Where the ring's bytes `pos..pos + len` start; an error if they are not all inside it.
    fn span(&self, pos: usize, len: usize) -> Result<*mut u8, String> {
        match pos.checked_add(len) {
            // SAFETY: `pos <= end <= self.len`: the result is inside the ring (or one past its
            // end, for nothing).
            Some(end) if end <= self.len => Ok(unsafe { self.bytes.add(pos) }),
            _ => Err(format!(
                "corrupt queue: {len} bytes at ring position {pos} pass the ring's end"
            )),
        }
    }

    /// Copies `bytes` to ring position `pos`; an error if they would pass the ring's end.
    fn write_at(&self, pos: usize, bytes: &[u8]) -> Result<(), String> {
        let to = self.span(pos, bytes.len())?;
        // SAFETY: `span` checked that the bytes lie inside the ring, which `self.seg` keeps
        // mapped; holding the lock (`self`) excludes every other cooperating reader and writer
        // of them; `bytes` is our own memory, not the ring's.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len()) };
        Ok(())
    }

    /// Writes a record of `kind` holding `body` at stream position `tail`, after `skip` bytes
    /// to the ring's start (marked by a `WRAP` header) if `room` asked for them. Returns the
    /// new tail.
    fn write_record(&self, tail: u64, skip: usize, kind: u32, body: &[u8]) -> Result<u64, String> {
        let mut tail = tail;
        if skip > 0 {
            self.write_at(tail as usize % self.len, &header(0, WRAP))?;
            tail += skip as u64;
        }
        let pos = tail as usize % self.len;
        self.write_at(pos, &header(body.len(), kind))?;
        self.write_at(pos + HEADER, body)?;
        Ok(tail + (HEADER + padded(body.len())) as u64)
    }

    /// Fills `out` from ring position `pos`; an error if that would pass the ring's end.
    fn read_at(&self, pos: usize, out: &mut [u8]) -> Result<(), String> {
        let from = self.span(pos, out.len())?;
        // SAFETY: as in `write_at`, the other way.
        unsafe { std::ptr::copy_nonoverlapping(from, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Replaces the contents of `buf` with the `len` bytes at ring position `pos` (without
    /// zeroing `buf` first); an error if they would pass the ring's end.
    fn copy_out(&self, pos: usize, len: usize, buf: &mut Vec<u8>) -> Result<(), String> {
        let from = self.span(pos, len)?;
        buf.clear();
        buf.reserve(len);
        // SAFETY: the source as in `write_at`; `buf` has room for `len` bytes, which the copy
        // initialises before `set_len`, and a heap allocation cannot overlap the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), len);
            buf.set_len(len);
        }
        Ok(())
    }

    /// Where a record of `rec` bytes goes: the bytes to skip to the ring's start first, or
    /// `None` without room.
    fn room(&self, rec: usize) -> Result<Option<usize>, String> {
        let cell = self.cell();
        let (head, tail) = self.bounds()?;
        let maxsize = cell.maxsize.load(SeqCst);
        if maxsize != 0 && cell.items.load(SeqCst) >= maxsize {
            return Ok(None);
        }
        let free = self.len - (tail - head) as usize;
        let to_end = self.len - tail as usize % self.len;
        Ok(if rec <= to_end {
            (rec <= free).then_some(0)
        } else {
            (to_end + rec <= free).then_some(to_end)
        })
    }

    /// Takes the record at the head, if any.
    fn take_record(&self, buf: &mut Vec<u8>) -> Result<Option<Popped>, PopError> {
        let cell = self.cell();
        loop {
            let (head, tail) = self.bounds().map_err(PopError::Corrupt)?;
            if head == tail {
                return Ok(None);
            }
            let (len, kind) = self.header_at(head).map_err(PopError::Corrupt)?;
            let pos = head as usize % self.len;
            if kind == WRAP {
                cell.head.store(head + (self.len - pos) as u64, SeqCst);
                continue;
            }
            self.copy_out(pos + HEADER, len, buf)
                .map_err(PopError::Corrupt)?;
            cell.head
                .store(head + (HEADER + padded(len)) as u64, SeqCst);
            cell.items.fetch_sub(1, SeqCst);
            if kind == INLINE {
                return Ok(Some(Popped::Inline));
            }
            match self.take_side(buf) {
                Ok(Some(popped)) => return Ok(Some(popped)),
                // Its message went with a reader that died holding the lock: the item is lost
                // with that reader; go on with the next.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives the side message whose nonce is in `buf`. `None` if that message is gone.
    fn take_side(&self, buf: &[u8]) -> Result<Option<Popped>, PopError> {
        let want: [u8; 8] = buf
            .try_into()
            .map_err(|_| PopError::Corrupt("bad side record".into()))?;
        loop {
            let mut nonce = [0u8; 8];
            match sys::fd::peek(self.side_rx.as_fd(), &mut nonce) {
                Ok(8) => {}
                Ok(_) => return Err(PopError::Corrupt("bad side message".into())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(PopError::Corrupt(format!("side socket: {e}"))),
            }
            if nonce != want && self.nonce_ahead(nonce) {
                return Ok(None);
            }
            let mut fds = Vec::new();
            sys::fd::recv(self.side_rx.as_fd(), &mut nonce, &mut fds, true)
                .map_err(|e| PopError::Corrupt(format!("side socket: {e}")))?;
            if nonce != want {
                continue; // left by a writer that died before adding its record
            }
            if fds.is_empty() {
                return Err(PopError::Corrupt("side message without its memory".into()));
            }
            let memfd = fds.remove(0);
            let bytes = SealedBytes::open(memfd).map_err(|e| PopError::Corrupt(e.to_string()))?;
            return Ok(Some(Popped::Side(bytes, fds)));
        }
    }

    /// Whether a side record further on carries `nonce`.
    fn nonce_ahead(&self, nonce: [u8; 8]) -> bool {
        let Ok((mut at, tail)) = self.bounds() else {
            return false;
        };
        while at < tail {
            let Ok((len, kind)) = self.header_at(at) else {
                return false;
            };
            let pos = at as usize % self.len;
            if kind == WRAP {
                at += (self.len - pos) as u64;
                continue;
            }
            if kind == SIDE && len == 8 {
                let mut seen = [0u8; 8];
                // Inside the ring: `header_at` checked that the record fits.
                if self.read_at(pos + HEADER, &mut seen).is_ok() && seen == nonce {
                    return true;
                }
            }
            at += (HEADER + padded(len)) as u64;
        }
        false
    }

    /// The seat of process `identity`, claimed if it has none.
    fn seat_for(&self, identity: u64) -> Option<&Seat> {
        let cell = self.cell();
        let seat = cell
            .seats
            .iter()
            .find(|s| s.process.load(SeqCst) == identity)
            .or_else(|| cell.seats.iter().find(|s| s.process.load(SeqCst) == 0))
            .or_else(|| {
                cell.seats
                    .iter()
                    .find(|s| !identity_alive(s.process.load(SeqCst)))
            });
        if let Some(seat) = seat
            && seat.process.load(SeqCst) != identity
        {
            seat.count.store(0, SeqCst);
            seat.pinned.store(0, SeqCst);
            seat.process.store(identity, SeqCst);
        }
        seat
    }
}

fn header(len: usize, kind: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
    h
}

fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(105 /* ENOBUFS */)
}

/// A number no other side message of any process carries: this process's identity mixed with
/// a counter.
fn next_nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, SeqCst);
    sys::proc::own_process_identity().rotate_left(24) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(ring: &Ring, bytes: &[u8]) {
        let inside = ring.enter();
        inside.write_at(0, bytes).unwrap();
        let cell = ring.cell();
        cell.tail.store(bytes.len().max(HEADER) as u64, SeqCst);
        cell.items.store(1, SeqCst);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_crash() {
        let me = sys::proc::own_process_identity();
        let mut buf = Vec::new();
        for garbage in [
            header(1 << 30, INLINE).to_vec(), // longer than the ring
            header(4, 77).to_vec(),           // unknown kind
            [header(8, SIDE).as_slice(), &[1; 8]].concat(), // side record with no message
        ] {
            let ring = Ring::create(0, MIN_RING).unwrap();
            ring.hold(me);
            corrupt(&ring, &garbage);
            match ring.pop(&mut buf, Some(Instant::now()), me) {
                // A side record whose message is missing counts as an item lost with a dead
                // reader: the queue is then empty.
                Err(PopError::Corrupt(_) | PopError::Empty | PopError::Disconnected) => {}
                Ok(_) => panic!("garbage {garbage:?} was taken as an item"),
            }
        }
    }

    /// Regressions from fuzzing: counters written by a hostile or broken process made the
    /// reader loop forever, yield items forever, or write and read past the ring.
    #[test]
    fn corrupt_counters_are_errors_for_readers_and_writers() {
        let me = sys::proc::own_process_identity();
        let mut buf = Vec::new();
        let len = MIN_RING as u64;
        for (head, tail, first) in [
            (0, 1 << 50, header(0, WRAP)), // a wrap at 0 with an unreachable tail
            (4093, 4093, header(0, 0)),    // unaligned
            (800, 8, header(0, 0)),        // head past tail
            (u64::MAX - 7, u64::MAX - 7, header(0, 0)), // about to overflow
            (0, 2 * len, header(0, 0)),    // more than a ring apart
        ] {
            let ring = Ring::create(0, MIN_RING).unwrap();
            ring.hold(me);
            {
                let inside = ring.enter();
                inside.write_at(0, &first).unwrap();
                ring.cell().head.store(head, SeqCst);
                ring.cell().tail.store(tail, SeqCst);
            }
            let t = Instant::now();
            match ring.pop(&mut buf, Some(Instant::now()), me) {
                Err(PopError::Corrupt(_)) | Err(PopError::Empty) => {}
                Ok(_) => panic!("({head}, {tail}) gave an item"),
                Err(PopError::Disconnected) => {}
            }
            assert!(matches!(
                ring.push(&[1, 2, 3], None, Some(Instant::now())),
                Err(PushError::Corrupt(_))
            ));
            assert!(t.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn records_wrap_around_the_ring() {
        let me = sys::proc::own_process_identity();
        let ring = Ring::create(0, MIN_RING).unwrap();
        ring.hold(me);
        let mut buf = Vec::new();
        for round in 0..200u32 {
            let item = vec![round as u8; (round as usize * 7) % 900];
            ring.push(&item, None, None).ok().unwrap();
            assert!(matches!(ring.pop(&mut buf, None, me), Ok(Popped::Inline)));
            assert_eq!(buf, item);
        }
        assert_eq!(ring.len(), 0);
    }
}
