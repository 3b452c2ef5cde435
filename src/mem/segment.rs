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

use std::marker::PhantomData;
use std::ptr::NonNull;
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

/// The tag at the start of a segment's memory.
///
/// # Panics
/// If the memory is too small to hold one (constructors check before they ask).
fn tag(map: &Mapping) -> &AtomicU64 {
    map.atomic(0)
}

/// A handle's shared memory, mapped in this process, holding a `C`.
///
/// The cell's type is part of the segment's: every constructor checks that the memory holds a
/// `C` (a new segment is made for one, a received one is checked for its tag and size), so
/// [`cell`](Self::cell) has no precondition left to its callers.
pub(crate) struct Segment<C: SharedCell> {
    /// At least `CELL_OFFSET + size_of::<C>()` bytes: the invariant every constructor checks.
    map: Arc<Mapping>,
    _cell: PhantomData<C>,
}

impl<C: SharedCell> Clone for Segment<C> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _cell: PhantomData,
        }
    }
}

impl<C: SharedCell> std::fmt::Debug for Segment<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("map", &self.map).finish()
    }
}

impl<C: SharedCell> Segment<C> {
    /// Bytes from the start of the memory to the end of the cell.
    const CELL_END: usize = CELL_OFFSET + std::mem::size_of::<C>();

    /// A new zeroed segment holding a `kind` with a cell `C`, and room for `extra` bytes after
    /// the cell.
    pub(crate) fn new(kind: Kind, extra: usize) -> std::io::Result<Self> {
        let len = Self::CELL_END + extra;
        let map = Mapping::anonymous("multiproc", len)?;
        let seg = Self {
            map: Arc::new(map),
            _cell: PhantomData,
        };
        tag(&seg.map).store(kind as u64, std::sync::atomic::Ordering::Release);
        Ok(seg)
    }

    /// Maps a segment received from another process and checks that it holds a `kind` with a
    /// cell `C`.
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd, kind: Kind) -> Result<Self, String> {
        let map = Mapping::map_sealed(fd).map_err(|e| format!("could not map a handle: {e}"))?;
        if map.len() < CELL_OFFSET {
            return Err("a received handle is too small".into());
        }
        let tag = tag(&map).load(std::sync::atomic::Ordering::Acquire);
        if tag != kind as u64 {
            return Err(format!(
                "the received descriptor does not hold a {kind:?} (tag {tag:#x})"
            ));
        }
        if map.len() < Self::CELL_END {
            return Err(format!("the received {kind:?} segment is too small"));
        }
        Ok(Self {
            map: Arc::new(map),
            _cell: PhantomData,
        })
    }

    /// The segment's cell.
    pub(crate) fn cell(&self) -> &C {
        // SAFETY: the mapping holds a `C` at CELL_OFFSET (the type's invariant, checked by
        // every constructor), which is aligned enough for any `SharedCell` (page-aligned base,
        // offset 64); `C` is valid for every bit pattern and only accessed atomically (the
        // `SharedCell` contract); the mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().add(CELL_OFFSET).cast::<C>() }
    }

    /// Where `len` bytes after the cell start, at the first address aligned to `align` (a
    /// power of two, at most a page); `None` if the segment does not hold them. The bytes
    /// live as long as the segment; what they hold, and how they may be accessed, is the
    /// caller's business.
    pub(crate) fn tail(&self, align: usize, len: usize) -> Option<NonNull<u8>> {
        assert!(
            align.is_power_of_two() && align <= 4096,
            "bad alignment {align}"
        );
        // The base is page-aligned, so an offset aligned to `align` is an aligned address.
        let start = Self::CELL_END.next_multiple_of(align);
        let end = start.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        // SAFETY: `start <= end <= len` of the mapping (checked just above), so the pointer
        // stays inside it (or one past its end for an empty tail).
        NonNull::new(unsafe { self.map.as_ptr().add(start) })
    }

    /// Whether two handles share one segment.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }

    /// The segment's descriptor.
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// Decodes a segment that travelled in a message (see [`Serialize`]), checking that it
    /// holds a `kind` with a cell `C`.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        d: D,
        kind: Kind,
    ) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        let fd = fds::take(index).map_err(serde::de::Error::custom)?;
        Self::from_fd(fd, kind).map_err(serde::de::Error::custom)
    }
}

/// Travels as the index of its descriptor in the message.
impl<C: SharedCell> Serialize for Segment<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = fds::attach(self.map.as_fd()).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

/// Implements `Serialize`/`Deserialize` for a handle that is a `Segment<$cell>` (field `seg`),
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
                let seg = $crate::mem::segment::Segment::<$cell>::deserialize_as(d, $kind)?;
                Ok(Self { seg })
            }
        }
    };
}
pub(crate) use segment_handle;

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell of one word, for tests.
    #[repr(C)]
    struct Word(AtomicU64);
    // SAFETY: one atomic, repr(C); zero is a valid state.
    unsafe impl SharedCell for Word {}

    /// Regression: a process holding a handle could shrink its memory under every other
    /// holder (who then died of SIGBUS on their next access).
    #[test]
    fn segments_cannot_change_size_and_unsealed_memory_is_refused() {
        let seg = Segment::<Word>::new(Kind::Lock, 0).unwrap();
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
        assert!(Segment::<Word>::from_fd(loose, Kind::Lock).is_err());
    }
}
