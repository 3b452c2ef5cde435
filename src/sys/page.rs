//! One page of memory shared between a parent and a child, with no name in any filesystem.
//!
//! Backed by a memfd: it exists while a descriptor or a mapping refers to it, so it can never
//! be left behind. The page holds only atomics, the one safe way to share words with a process
//! that may be writing them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::mm::{MapFlags, ProtFlags};

const PAGE: usize = 4096;

/// Number of `AtomicU64` slots in a page.
pub(crate) const SLOTS: usize = PAGE / std::mem::size_of::<AtomicU64>();

/// A shared, zero-initialised page of `AtomicU64` slots.
#[derive(Debug)]
pub(crate) struct SharedPage {
    ptr: NonNull<AtomicU64>,
    fd: OwnedFd,
}

// SAFETY: the page holds only atomics, which may be used from any thread.
unsafe impl Send for SharedPage {}
// SAFETY: as above: shared access goes through `&AtomicU64`.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Creates a new page.
    pub(crate) fn create() -> io::Result<Self> {
        let fd = rustix::fs::memfd_create("multiproc-page", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, PAGE as u64)?;
        Self::map(fd)
    }

    /// Maps a page received from the process that created it.
    pub(crate) fn map(fd: OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        if (st.st_size as usize) < PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared page is too small",
            ));
        }
        // SAFETY: a fresh mapping (null hint) of `PAGE` bytes of a descriptor we own; it does
        // not alias any Rust object. It is unmapped in `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, fd })
    }

    /// Slot `i` of the page.
    ///
    /// # Panics
    /// If `i >= SLOTS` (a bug in this crate, never user input).
    pub(crate) fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < SLOTS, "shared page slot out of range");
        // SAFETY: the mapping is PAGE bytes, page-aligned, lives as long as `self`, and `i` is in
        // range; `AtomicU64` has no invalid bit patterns, and all access is atomic.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a PAGE-byte mmap in `map` and no reference into it outlives
        // `self` (slot borrows are tied to `&self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), PAGE) };
    }
}
