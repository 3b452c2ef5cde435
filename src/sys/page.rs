//! One page of memory shared between a parent and a child, with no name in any filesystem.
//!
//! Backed by a memfd: it exists while a descriptor or a mapping refers to it, so it can never
//! be left behind. The page holds only atomics, the one safe way to share words with a process
//! that may be writing them.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;

use super::shm::Mapping;

const PAGE: usize = 4096;
/// The memfd name of every shared page (shown in `/proc/<pid>/fd`).
const LABEL: &str = "multiproc-page";

/// Number of `AtomicU64` slots in a page.
pub(crate) const SLOTS: usize = PAGE / std::mem::size_of::<AtomicU64>();

/// A shared, zero-initialised page of `AtomicU64` slots.
#[derive(Debug)]
pub(crate) struct SharedPage {
    map: Mapping,
}

impl SharedPage {
    /// Creates a new page.
    pub(crate) fn create() -> io::Result<Self> {
        Ok(Self {
            map: Mapping::anonymous(LABEL, PAGE)?,
        })
    }

    /// Maps a page received from the process that created it.
    pub(crate) fn map(fd: OwnedFd) -> io::Result<Self> {
        let map = Mapping::map(fd)?;
        if map.len() < PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared page is too small",
            ));
        }
        Ok(Self { map })
    }

    /// Slot `i` of the page.
    ///
    /// # Panics
    /// If `i >= SLOTS` (a bug in this crate, never user input).
    pub(crate) fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < SLOTS, "shared page slot out of range");
        self.map.atomic(i * std::mem::size_of::<AtomicU64>())
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}

/// Whether descriptor number `raw` of this process is open on a shared page (as made by
/// [`SharedPage::create`], in this process or the one that handed it over).
pub(crate) fn is_page(raw: RawFd) -> bool {
    super::fd::target(raw).is_some_and(|t| t.starts_with(&format!("/memfd:{LABEL} ")))
}
