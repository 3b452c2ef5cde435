//! Shared memory: mappings of memfds (no name anywhere, gone with the last descriptor or
//! mapping) and of POSIX shared-memory objects (a name under `/dev/shm`).
//!
//! A mapping hands out its memory as raw pointers, for the types built on it to give meaning
//! to, or as atomics ([`Mapping::atomics`]): the one view of memory that other processes may
//! write at any moment that is sound whatever they write, checked here to lie inside it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm::OFlags;

mod sealed {
    pub trait Sealed {}
}

/// Atomic integers: what memory shared with other processes may be viewed as, since every
/// bit pattern is a valid value and every access is atomic.
pub(crate) trait Atomic: sealed::Sealed + Sized {}

macro_rules! atomic {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Atomic for $t {}
    )*};
}
atomic!(AtomicU8, AtomicU32, AtomicU64);

/// A read-write, shared mapping of `len` bytes, unmapped on drop.
#[derive(Debug)]
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; what is stored in it, and how it is
// accessed, is the business of the types built on top (atomics, or accessors marked unsafe).
unsafe impl Send for Region {}
// SAFETY: as above; a region itself hands out only raw pointers and atomics.
unsafe impl Sync for Region {}

impl Region {
    /// `n` atomics `A` from byte `at` on.
    ///
    /// # Panics
    /// If `at` is not a multiple of `A`'s alignment or the atomics are not all inside.
    fn atomics<A: Atomic>(&self, at: usize, n: usize) -> &[A] {
        let end = n
            .checked_mul(std::mem::size_of::<A>())
            .and_then(|bytes| at.checked_add(bytes));
        assert!(
            at % std::mem::align_of::<A>() == 0 && end.is_some_and(|end| end <= self.len),
            "{n} atomics at byte {at} of a {}-byte mapping",
            self.len
        );
        // SAFETY: the atomics lie inside the mapping (checked just above), which lives as long
        // as `self`; the mapping is page-aligned, so an offset aligned for `A` is an aligned
        // address. Atomic integers are valid for every bit pattern and accessed only
        // atomically, so other processes writing the same bytes meanwhile is no data race.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at).cast::<A>(), n) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from one mmap; the types built on a mapping tie every
        // reference into it to a borrow of the mapping, so none outlives this.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A read-write, shared mapping of a whole memory object.
#[derive(Debug)]
pub(crate) struct Mapping {
    region: Region,
    fd: OwnedFd,
}

impl Mapping {
    /// A new zero-filled memory object of `len` bytes with no name (a memfd), sealed against
    /// any change of size: a process that receives it cannot shrink it under the others'
    /// mappings (which would kill them with `SIGBUS` on their next access).
    pub(crate) fn anonymous(label: &str, len: usize) -> io::Result<Self> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create(label, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL)?;
        Self::map(fd)
    }

    /// Maps a memory object received from another process, after checking that its size is
    /// sealed (see [`anonymous`](Self::anonymous)).
    pub(crate) fn map_sealed(fd: OwnedFd) -> io::Result<Self> {
        use rustix::fs::SealFlags;
        let seals = rustix::fs::fcntl_get_seals(&fd).unwrap_or(SealFlags::empty());
        if !seals.contains(SealFlags::GROW | SealFlags::SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a received handle's memory can change size (not sealed)",
            ));
        }
        Self::map(fd)
    }

    /// Creates the POSIX shared-memory object `name` (`/dev/shm/<name>`) of `len` bytes; fails
    /// if it exists.
    pub(crate) fn create_named(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::shm::open(
            shm_path(name)?.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
            let _ = unlink_named(name);
            return Err(e.into());
        }
        Self::map(fd).inspect_err(|_| {
            let _ = unlink_named(name);
        })
    }

    /// Opens the existing POSIX shared-memory object `name`.
    pub(crate) fn open_named(name: &str) -> io::Result<Self> {
        let fd = rustix::shm::open(shm_path(name)?.as_str(), OFlags::RDWR, Mode::empty())?;
        Self::map(fd)
    }

    /// Maps the whole object behind `fd` (received from another process, say).
    pub(crate) fn map(fd: OwnedFd) -> io::Result<Self> {
        let len = rustix::fs::fstat(&fd)?.st_size as usize;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory object is empty",
            ));
        }
        // SAFETY: a fresh mapping (null hint) of `len` bytes of a descriptor we own; it does
        // not alias any Rust object. It is unmapped in `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            region: Region { ptr, len },
            fd,
        })
    }

    /// Start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.region.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.region.len
    }

    /// `n` atomics `A` from byte `at` on, shared with every process that maps the object.
    ///
    /// # Panics
    /// If `at` is not a multiple of `A`'s alignment or the atomics are not all inside the
    /// mapping.
    pub(crate) fn atomics<A: Atomic>(&self, at: usize, n: usize) -> &[A] {
        self.region.atomics(at, n)
    }

    /// The atomic `A` at byte `at`; see [`atomics`](Self::atomics).
    pub(crate) fn atomic<A: Atomic>(&self, at: usize) -> &A {
        &self.region.atomics(at, 1)[0]
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Mapping {
    /// The mapping without its descriptor, which is closed: the mapping alone keeps the memory
    /// object alive, and a process that keeps many mappings need not keep as many descriptors.
    pub(crate) fn into_view(self) -> View {
        let Mapping { region, fd } = self;
        drop(fd);
        View { region }
    }
}

/// A read-write, shared mapping of a memory object whose descriptor is closed.
#[derive(Debug)]
pub(crate) struct View {
    region: Region,
}

impl View {
    /// Start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.region.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.region.len
    }

    /// The atomic `A` at byte `at`; see [`Mapping::atomics`].
    pub(crate) fn atomic<A: Atomic>(&self, at: usize) -> &A {
        &self.region.atomics(at, 1)[0]
    }
}

/// Asks the kernel to back `spare` — memory this process owns, usually just allocated and not
/// touched yet, such as a fresh vector's spare capacity — with huge pages where it can. Filling 64 MiB of
/// fresh 4 KiB pages costs a fault per page (measured here: 32 ms for a 64 MiB copy, against
/// 8 ms with huge pages); large payloads are decoded into such memory. Only a hint: smaller
/// buffers, and systems with transparent huge pages off, are left as they are.
pub(crate) fn prefer_huge_pages(spare: &mut [std::mem::MaybeUninit<u8>]) {
    const PAGE: usize = 4096;
    const WORTH_IT: usize = 4 << 20;
    if spare.len() < WORTH_IT {
        return;
    }
    let start = (spare.as_mut_ptr() as usize).next_multiple_of(PAGE);
    let end = (spare.as_mut_ptr() as usize + spare.len()) & !(PAGE - 1);
    // SAFETY: `start..end` lies inside `spare`, which we borrow exclusively, and is page-aligned;
    // the huge-page advice changes how the memory is backed, never its contents.
    let _ = unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            end - start,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

/// Removes the name of a POSIX shared-memory object. Existing mappings stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(shm_path(name)?.as_str())?)
}

/// `name` as `shm_open` wants it: one leading slash, no other slash, not empty.
fn shm_path(name: &str) -> io::Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') || bare.contains('\0') || bare.len() > 250 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid shared memory name {name:?}: one path component, at most 250 bytes"),
        ));
    }
    Ok(format!("/{bare}"))
}

/// Bytes in a sealed memfd: nobody, not even the process that wrote them, can change them
/// any more, so they can be read as a plain slice.
#[derive(Debug)]
pub(crate) struct SealedBytes {
    ptr: NonNull<u8>,
    len: usize,
    _fd: OwnedFd,
}

// SAFETY: an immutable mapping; `&[u8]` views of it may be shared between threads.
unsafe impl Send for SealedBytes {}
// SAFETY: as above.
unsafe impl Sync for SealedBytes {}

impl SealedBytes {
    /// Writes `bytes` into a new memfd and seals it against any change.
    pub(crate) fn seal(bytes: &[u8]) -> io::Result<OwnedFd> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create(
            "multiproc-item",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, bytes.len() as u64)?;
        let mut done = 0;
        while done < bytes.len() {
            match rustix::io::pwrite(&fd, &bytes[done..], done as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
        )?;
        Ok(fd)
    }

    /// Maps a memfd received from another process, after checking that it is sealed.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Self> {
        use rustix::fs::SealFlags;
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let needed = SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK;
        if !seals.contains(needed) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a received item's memory is not sealed",
            ));
        }
        let len = rustix::fs::fstat(&fd)?.st_size as usize;
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len: 0,
                _fd: fd,
            });
        }
        // SAFETY: a fresh read-only mapping (null hint) of `len` bytes of a descriptor we own;
        // it aliases no Rust object and is unmapped in `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, _fd: fd })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `ptr` (or an empty slice at a dangling, aligned
        // pointer), alive as long as `self`; the memfd is sealed, so no process can change
        // them while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SealedBytes {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping from `open`; no slice of it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}
