//! Bulk payloads: large frame payloads travel in shared memory that is reused from one frame to
//! the next.
//!
//! Through the socket, a 64 MiB payload is copied into the kernel and out again in
//! buffer-sized pieces, each a wake-up of both sides. A fresh memfd per payload avoids that but
//! costs a page fault and a zeroed page per 4 KiB (about 25 ms for 64 MiB here, and shared
//! memory cannot use huge pages on a default kernel). So each sending channel keeps the memfds
//! of its last few bulk frames and writes the next ones into the same, already present, pages;
//! the reading channel keeps its mappings, so it does not fault them in again either.
//!
//! A buffer is reused only once the reader is done with it: its first bytes hold a `busy` word
//! that the sender sets before writing and the reader clears when it drops the frame. A busy
//! buffer is left alone (the sender takes a new one), so a reader that keeps frames, or died
//! holding one, costs memory, never correctness. Buffers are sealed against any change of size,
//! so a peer cannot shrink one under our mapping. A channel bounds what its sending and reading
//! sides keep together (`keep_within`, called by `Channel::settle`) and drops it all once idle
//! for `BULK_IDLE` (`Channel::release_memory`); a buffer that cannot be had (no descriptor or
//! memory free) sends the frame through the socket instead.
//!
//! Trust: the reader decodes straight from memory the sender could still write. The protocol
//! above says it does not, and peers are processes of this same program (the handshake checks
//! it for workers; pipes and queues are only ever handed to our own children); the bytes are
//! decoded as untrusted input all the same. A process that broke the protocol on purpose could
//! change a message while it is being decoded — as it could, being the same program with the
//! same shared memory, corrupt any lock or queue it shares. Not a defence against a hostile
//! peer.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::fd::{ObjectId, object_id};
use crate::sys::shm::{Mapping, View};

/// Where a buffer's `busy` word is.
const BUSY: usize = 0;
/// Where the payload starts in a buffer; the bytes before it hold the `busy` word.
const DATA: usize = 64;
/// Buffers are sized in steps of this, so payloads of similar sizes share one.
const STEP: usize = 1 << 20;
/// How many buffers a channel end keeps, sent and received ones together (several frames may be
/// in flight at once: a pool worker holds up to two chunks, and answers each in frames of its
/// own). Measured: with 4, a `map` of 1 M items, whose chunks shrink as it goes, found none
/// to reuse on every call and faulted in fresh shared memory each time (three times the page
/// faults of 8). How much memory they may hold is the channel's business: it counts its other
/// buffers too (see [`keep_within`]).
const KEEP: usize = 8;

/// The sending side: the buffers of the last few bulk frames, kept for the next ones.
#[derive(Debug, Default)]
pub(crate) struct Sender {
    /// Oldest first.
    kept: Vec<Mapping>,
}

impl Sender {
    /// Whether it keeps any buffer.
    pub(crate) fn holds(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Bytes of the buffers it keeps.
    pub(crate) fn held(&self) -> usize {
        self.kept.iter().map(Mapping::len).sum()
    }

    /// Copies `parts`, back to back, into a shared buffer and returns a descriptor of it to
    /// send.
    pub(crate) fn stage(&mut self, parts: &[&[u8]]) -> io::Result<OwnedFd> {
        let need = DATA + parts.iter().map(|p| p.len()).sum::<usize>();
        let free = (0..self.kept.len())
            .filter(|&i| {
                let m = &self.kept[i];
                m.len() >= need && m.atomic::<AtomicU32>(BUSY).load(Ordering::Acquire) == 0
            })
            .min_by_key(|&i| self.kept[i].len());
        let chosen = match free {
            Some(i) => i,
            None => {
                let map = Mapping::anonymous("multiproc-bulk", need.next_multiple_of(STEP))?;
                self.kept.push(map);
                self.kept.len() - 1
            }
        };
        let map = &self.kept[chosen];
        map.atomic::<AtomicU32>(BUSY).store(1, Ordering::Relaxed);
        let mut at = DATA;
        for part in parts {
            // SAFETY: the buffer holds `need` bytes, the sum of the parts' lengths after `DATA`;
            // the reader of its previous payload cleared `busy` (acquire above) and so no
            // longer reads it, and no one else writes it. The parts are our own memory,
            // distinct from the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), map.as_ptr().add(at), part.len())
            };
            at += part.len();
        }
        map.as_fd().try_clone_to_owned().inspect_err(|_| {
            map.atomic::<AtomicU32>(BUSY).store(0, Ordering::Relaxed);
        })
    }
}

/// The reading side: the mappings of the last few buffers received, kept for the next frames
/// (without their descriptors: a mapping keeps its memory alive on its own).
#[derive(Debug, Default)]
pub(crate) struct Receiver {
    /// Least recently used first.
    kept: Vec<(ObjectId, Arc<View>)>,
}

impl Receiver {
    /// Whether it keeps any mapping.
    pub(crate) fn holds(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Bytes of the mappings it keeps.
    pub(crate) fn held(&self) -> usize {
        self.kept.iter().map(|(_, m)| m.len()).sum()
    }

    /// The `len`-byte payload in the buffer behind `fd`.
    ///
    /// # Errors
    /// The descriptor is not a size-sealed memory object, or too small for `len`.
    pub(crate) fn open(&mut self, fd: OwnedFd, len: usize) -> io::Result<Payload> {
        let id = object_id(fd.as_fd())?;
        let map = match self.kept.iter().position(|(kept, _)| *kept == id) {
            Some(i) => {
                let entry = self.kept.remove(i);
                let map = entry.1.clone();
                self.kept.push(entry);
                map
            }
            None => {
                let map = Arc::new(Mapping::map_sealed(fd)?.into_view());
                self.kept.push((id, map.clone()));
                map
            }
        };
        if map.len() < DATA || map.len() - DATA < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a bulk payload of {len} bytes does not fit its {}-byte buffer",
                    map.len()
                ),
            ));
        }
        Ok(Payload { map, len })
    }
}

/// Lets go of the oldest buffers of whichever side holds more, until the two keep at most
/// [`KEEP`] buffers and `bytes` bytes in all; returns what they still hold. A buffer let go of
/// while in use lives on: its reader's mapping (or the [`Payload`]) keeps the memory as long as
/// it needs it.
pub(crate) fn keep_within(tx: &mut Sender, rx: &mut Receiver, bytes: usize) -> usize {
    loop {
        let (sent, received) = (tx.held(), rx.held());
        if tx.kept.len() + rx.kept.len() <= KEEP && sent + received <= bytes {
            return sent + received;
        }
        if sent >= received && !tx.kept.is_empty() {
            tx.kept.remove(0);
        } else if !rx.kept.is_empty() {
            rx.kept.remove(0);
        } else {
            // Both empty: not reached (the test above holds for nothing kept).
            return 0;
        }
    }
}

/// A received bulk payload. Dropping it hands the buffer back to the sender.
#[derive(Debug)]
pub(crate) struct Payload {
    map: Arc<View>,
    len: usize,
}

impl Payload {
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `DATA + len` bytes are mapped (checked in `open`) for as long as `self` holds
        // the mapping. The sender wrote them before sending the descriptor and, by the protocol
        // above, does not write this buffer again until `drop` clears `busy`; the sender is a
        // process of this same program, which keeps the protocol (see "Trust" in the module
        // docs for what that assumes).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(DATA), self.len) }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.map
            .atomic::<AtomicU32>(BUSY)
            .store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_after_its_reader_is_done() {
        let (mut tx, mut rx) = (Sender::default(), Receiver::default());
        let id = |fd: &OwnedFd| object_id(fd.as_fd()).unwrap();
        let first = tx.stage(&[&[1; 3 << 20]]).unwrap();
        let first_id = id(&first);
        let p = rx.open(first, 3 << 20).unwrap();
        // Still being read: the next payload goes elsewhere, and the first stays intact.
        let second = tx.stage(&[&[2; 1000]]).unwrap();
        let second_id = id(&second);
        assert_ne!(second_id, first_id);
        assert!(p.as_slice().iter().all(|&b| b == 1));
        drop(p);
        let q = rx.open(second, 1000).unwrap();
        assert!(q.as_slice().iter().all(|&b| b == 2));
        drop(q);
        // Done with: the same memory serves the next payload.
        let third = tx.stage(&[&[3; 500]]).unwrap();
        assert_eq!(id(&third), second_id);
        let r = rx.open(third, 500).unwrap();
        assert!(r.as_slice().iter().all(|&b| b == 3));
    }

    #[test]
    fn the_two_sides_keep_eight_buffers_and_the_budget_in_all() {
        assert_eq!(KEEP, 8, "the figures below assume it");
        let (mut tx, mut rx) = (Sender::default(), Receiver::default());
        // Nine buffers still being read (none handed back), then two received ones.
        let mut payloads = Vec::new();
        for _ in 0..9 {
            let fd = tx.stage(&[&[1; 100]]).unwrap();
            payloads.push(Receiver::default().open(fd, 100).unwrap());
        }
        let mut other = Sender::default();
        for len in [STEP, 2 * STEP] {
            let fd = other.stage(&[&vec![2; len]]).unwrap();
            drop(rx.open(fd, len).unwrap());
        }
        // Sizes are rounded up to whole steps past the `busy` word: 1 MiB each sent, 2 + 3 MiB
        // received.
        assert_eq!((tx.held(), rx.held()), (9 * STEP, 5 * STEP));
        // Eight buffers in all. The fuller side gives way, oldest first: three sent ones.
        assert_eq!(keep_within(&mut tx, &mut rx, usize::MAX), 11 * STEP);
        assert_eq!((tx.kept.len(), rx.kept.len()), (6, 2));
        // Within 4 MiB: two sent ones (4 + 5), the 2 MiB received one (4 + 3), two sent ones (the
        // sender on a tie: 2 + 3), then the received one (2 + 0).
        assert_eq!(keep_within(&mut tx, &mut rx, 4 * STEP), 2 * STEP);
        assert_eq!((tx.kept.len(), rx.kept.len()), (2, 0));
        // The payloads still being read are intact all the while.
        assert!(payloads.iter().all(|p| p.as_slice() == [1; 100]));
    }

    #[test]
    fn a_buffer_too_small_for_its_claim_is_refused() {
        let mut tx = Sender::default();
        let fd = tx.stage(&[&[7; 100]]).unwrap();
        assert!(Receiver::default().open(fd, STEP).is_err());
        let unsealed = crate::sys::fd::socketpair().unwrap().0;
        assert!(Receiver::default().open(unsealed, 1).is_err());
    }
}
