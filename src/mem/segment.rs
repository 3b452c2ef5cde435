//! A segment: one anonymous shared-memory object holding one handle's state.
//!
//! Every cross-process handle (locks, queues, values, arrays) is a segment: a memfd mapped in
//! each process that holds the handle, so it has no name to leak and disappears with its last
//! descriptor or mapping, whichever process that is, crash or not. The segment begins with a
//! tag naming what it holds; a handle decoded from another process's message checks the tag and
//! the size before it touches anything else, so a descriptor of the wrong kind is a decode
//! error, not undefined behaviour.
//!
//! A segment travels as the index of its descriptor in the message (see `wire::fds`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::shm::Mapping;
use crate::wire::fds;

/// Where a segment's cell starts: the tag takes the first cache line.
pub(crate) const CELL_OFFSET: usize = 64;

/// What a segment holds; the tag at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Kind {
    Lock = 0x6d70_6c6f_636b_0001,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    Value,
    Array,
    Queue,
    RawValue,
    RawArray,
}

/// Types that may live in a segment and be read while other processes write them: made only of
/// atomics (and arrays of them), so every bit pattern is a valid value and all access is
/// atomic. All-zero bytes must be a valid initial state.
///
/// # Safety
/// The implementing type must be `#[repr(C)]`, contain only atomic integers (directly, in
/// arrays or in other `SharedCell`s), and have an alignment of at most 64.
pub(crate) unsafe trait SharedCell: Sized {}

/// A handle's shared memory, mapped in this process.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    map: Arc<Mapping>,
}

impl Segment {
    /// A new zeroed segment with room for `extra` bytes after the cell `C`.
    pub(crate) fn new<C: SharedCell>(kind: Kind, extra: usize) -> std::io::Result<Self> {
        let len = CELL_OFFSET + std::mem::size_of::<C>() + extra;
        let map = Mapping::anonymous("multiproc", len)?;
        let seg = Self { map: Arc::new(map) };
        seg.tag()
            .store(kind as u64, std::sync::atomic::Ordering::Release);
        Ok(seg)
    }

    fn tag(&self) -> &AtomicU64 {
        // SAFETY: every mapping is at least one page, page-aligned, and lives as long as
        // `self`; the tag is only accessed atomically.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }
    }

    /// Checks that a segment received from elsewhere holds a `kind` with a cell `C`.
    pub(crate) fn check<C: SharedCell>(&self, kind: Kind) -> Result<(), String> {
        let tag = self.tag().load(std::sync::atomic::Ordering::Acquire);
        if tag != kind as u64 {
            return Err(format!(
                "the received descriptor does not hold a {kind:?} (tag {tag:#x})"
            ));
        }
        if self.map.len() < CELL_OFFSET + std::mem::size_of::<C>() {
            return Err(format!("the received {kind:?} segment is too small"));
        }
        Ok(())
    }

    /// The segment's cell.
    pub(crate) fn cell<C: SharedCell>(&self) -> &C {
        debug_assert!(self.map.len() >= CELL_OFFSET + std::mem::size_of::<C>());
        // SAFETY: the segment was created for (or checked to fit) a `C` at CELL_OFFSET, which is
        // aligned enough for any `SharedCell` (page-aligned base, offset 64); `C` is valid for
        // every bit pattern and only accessed atomically (the `SharedCell` contract).
        unsafe { &*self.map.as_ptr().add(CELL_OFFSET).cast::<C>() }
    }

    /// The bytes after cell `C`: start and length.
    pub(crate) fn tail<C: SharedCell>(&self) -> (*mut u8, usize) {
        let start = CELL_OFFSET + std::mem::size_of::<C>();
        // SAFETY: `start` is within the mapping (checked at creation or by `check`).
        let ptr = unsafe { self.map.as_ptr().add(start) };
        (ptr, self.map.len().saturating_sub(start))
    }

    /// Whether two handles share one segment.
    pub(crate) fn same(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = fds::attach(self.map.as_fd()).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        let fd = fds::take(index).map_err(serde::de::Error::custom)?;
        Segment::from_fd(fd).map_err(serde::de::Error::custom)
    }
}

impl Segment {
    /// Maps a segment received from another process (check its kind before use).
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Self, String> {
        let map = Mapping::map_sealed(fd).map_err(|e| format!("could not map a handle: {e}"))?;
        if map.len() < CELL_OFFSET {
            return Err("a received handle is too small".into());
        }
        Ok(Self { map: Arc::new(map) })
    }

    /// The segment's descriptor.
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.as_fd()
    }
}

/// Implements `Serialize`/`Deserialize` for a handle that is a `Segment` holding `$cell`,
/// checking the kind on the way in.
macro_rules! segment_handle {
    ($handle:ident, $kind:expr, $cell:ty) => {
        impl serde::Serialize for $handle {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.seg.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $handle {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let seg = $crate::mem::segment::Segment::deserialize(d)?;
                seg.check::<$cell>($kind)
                    .map_err(serde::de::Error::custom)?;
                Ok(Self { seg })
            }
        }
    };
}
pub(crate) use segment_handle;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::parking::Parking;

    /// Regression: a process holding a handle could shrink its memory under every other
    /// holder (who then died of SIGBUS on their next access).
    #[test]
    fn segments_cannot_change_size_and_unsealed_memory_is_refused() {
        let seg = Segment::new::<Parking>(Kind::Lock, 0).unwrap();
        assert!(
            rustix::fs::ftruncate(seg.as_fd(), 0).is_err(),
            "shrink refused"
        );
        assert!(
            rustix::fs::ftruncate(seg.as_fd(), 1 << 20).is_err(),
            "growth refused"
        );
        let loose = rustix::fs::memfd_create("loose", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&loose, 4096).unwrap();
        assert!(Segment::from_fd(loose).is_err());
    }
}
