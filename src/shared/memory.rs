//! `SharedMemory`: a block of bytes shared between processes, anonymous or by name — Python's
//! `multiprocessing.shared_memory.SharedMemory`.
//!
//! The user's bytes are the whole memory object, from offset 0, exactly `size` bytes long.
//! Unlike the crate's other handles (whose segments start with a tag), nothing of ours is
//! stored in it, so a named segment made here can be opened by Python or C code and the other
//! way round, and a received descriptor needs no check: any bytes are valid bytes.
//!
//! **Anonymous segments** ([`SharedMemory::new`]) are memfds: they have no name to leak and
//! disappear with the last descriptor or mapping in any process. They reach other processes
//! only by descriptor, inside a `Process` or `Pool` argument, which is also how named handles
//! travel (keeping their name).
//!
//! **Named segments** ([`SharedMemory::create`], [`SharedMemory::open`]) live in `/dev/shm`.
//! The process that created the name owns it. The name is removed at the first of:
//! [`unlink`](SharedMemory::unlink) (from any process); the last handle of the creating
//! process being dropped; the creating process ending in any way, `SIGKILL` included. Handles
//! in other processes, whether opened by name or received, never remove it, so a child exiting
//! does not pull the name from under its siblings. [`persist`](SharedMemory::persist) opts a
//! name out, for data that must outlive its creator (Python 3.13's `track=False`).
//!
//! The crash case needs someone outside the creator: the [`tracker`] process, started on the
//! first named `create`, learns each name *before* it exists (the object is made without a
//! name and linked into `/dev/shm` afterwards, atomically) and removes what is left when the
//! creator's socket reaches end of file. Names are only ever removed if they still refer to
//! the object that was created, so a late clean-up never deletes somebody else's segment that
//! reuses the name. Where `/dev/shm` has no `O_TMPFILE`, creation falls back to `shm_open`
//! and tells the tracker right after, leaving a window of a few instructions in which a
//! `SIGKILL` would leave the name behind. The price is one helper process per process that
//! creates names (about 15 ms to start, once) rather than Python's one per program; it buys
//! independence from the rest of the process tree, which may be killed along with the creator.
//!
//! **Access.** Other processes may write the bytes at any moment, so safe code touches them
//! only through atomics: [`read`](SharedMemory::read) and [`write`](SharedMemory::write) copy
//! with atomic loads and stores, and [`as_slice`](SharedMemory::as_slice) /
//! [`as_mut_slice`](SharedMemory::as_mut_slice) are `unsafe`, for callers who synchronise by
//! other means (a `Lock`, an `Event`, a `Barrier`). Rust forbids racing atomic accesses of
//! different sizes to overlapping bytes, so the access size depends on the address only, never
//! on the call: every whole aligned 8-byte word inside the segment is always accessed as an
//! `AtomicU64` (a partial write of one is a compare-and-swap that keeps the other bytes), and
//! only the last `size % 8` bytes, which belong to no whole word, as `AtomicU8`.
//!
//! A named object can be shrunk by another program (`ftruncate`); touching the bytes past its
//! new end then kills this process with `SIGBUS`, as it would a C or Python program.

pub(crate) mod tracker;

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sys;
use crate::sys::fd::ObjectId;
use crate::sys::shm::Mapping;
use crate::wire::fds;

/// Bytes in the words that `read` and `write` access as `AtomicU64`.
const WORD: usize = 8;
/// Longest name accepted (as `sys::shm`; tmpfs allows 255 bytes).
const MAX_NAME: usize = 250;

/// A block of bytes shared between processes, anonymous or by name.
///
/// The bytes start at offset 0 and are exactly [`size`](Self::size) long. Clones are handles to
/// the same memory; handles travel to other processes inside `Process` and `Pool` arguments
/// (with their descriptor, so even an anonymous segment can be shared).
///
/// **Drop:** the memory itself lives until the last handle in every process is gone. For a
/// named segment, dropping the creating process's last handle also removes the name from
/// `/dev/shm` (see [`persist`](Self::persist) to keep it); handles in other processes never
/// remove it. If the creating process dies, even by `SIGKILL`, a helper process removes the
/// names it still owned.
///
/// # Examples
/// ```
/// # multiproc::init();
/// use multiproc::{Process, SharedMemory};
///
/// fn fill(shm: SharedMemory) {
///     shm.write(0, b"written by the child").unwrap();
/// }
///
/// let shm = SharedMemory::new(64)?;
/// let mut child = Process::new(fill, shm.clone());
/// child.start()?;
/// child.join()?;
/// let mut seen = [0u8; 20];
/// shm.read(0, &mut seen)?;
/// assert_eq!(&seen, b"written by the child");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    map: Mapping,
    /// Without the leading slash, as Python's `SharedMemory.name`.
    name: Option<String>,
    /// Present in the process that created the name.
    owner: Option<Owner>,
}

struct Owner {
    /// The creating process. A copy of the handle in a forked child is not the owner.
    pid: u32,
    /// The object the name was given to: only that object's name is ever removed.
    id: ObjectId,
    /// The name was removed or handed over ([`SharedMemory::persist`]): nothing left to do.
    released: AtomicBool,
}

impl Owner {
    /// Whether this process still has to remove the name; claims that duty if so.
    fn claim(&self) -> bool {
        self.pid == sys::proc::getpid() && !self.released.swap(true, Ordering::AcqRel)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let (Some(name), Some(owner)) = (&self.name, &self.owner) {
            if owner.claim() {
                // Nobody to report to; the tracker still removes the name at exit if this
                // failed half-way.
                let _ = release(name, owner.id);
            }
        }
    }
}

/// Removes the creator's name, then takes it off the tracker's list (in this order: a crash in
/// between leaves the tracker a name that is already gone, never a name it does not know).
/// Returns whether the name was removed.
fn release(name: &str, id: ObjectId) -> Result<bool> {
    let removed = sys::shm_name::unlink_if(name, id);
    let untracked = tracker::untrack(name, id);
    let removed = removed?;
    untracked?;
    Ok(removed)
}

impl SharedMemory {
    /// A new anonymous segment of `size` zero bytes: no name, nothing to clean up; other
    /// processes get it inside a `Process` or `Pool` argument.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `size` is 0; [`Error::Io`] if the memory could not be
    /// allocated or mapped.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let shm = multiproc::SharedMemory::new(4096)?;
    /// assert_eq!(shm.size(), 4096);
    /// assert_eq!(shm.name(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(size: usize) -> Result<Self> {
        check_size(size)?;
        let map = Mapping::anonymous("multiproc-shared-memory", size)?;
        Ok(Self::from_parts(map, None, None))
    }

    /// Creates the named segment `name` (`/dev/shm/<name>`) of `size` zero bytes, which other
    /// processes can [`open`](Self::open) — Python's `SharedMemory(name, create=True, size)`.
    ///
    /// This process owns the name: it is removed when this process's last handle is dropped,
    /// when this process ends (in any way), or at [`unlink`](Self::unlink). The first call in
    /// a process starts a small helper process that does the removal if this one is killed.
    ///
    /// A leading `/` in `name` is ignored.
    ///
    /// # Errors
    /// [`Error::Io`] of kind [`AlreadyExists`](std::io::ErrorKind::AlreadyExists) if the name
    /// exists; [`Error::InvalidArgument`] for a size of 0 or a name that is empty, longer than
    /// 250 bytes, or contains `/` or NUL; [`Error::Spawn`] if the helper process could not be
    /// started; [`Error::Io`] for other OS failures.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("doc-create-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 100)?;
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    /// // Taken: a second create fails.
    /// assert!(SharedMemory::create(&name, 100).is_err());
    /// drop(shm); // the creator's last handle: the name goes
    /// assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn create(name: &str, size: usize) -> Result<Self> {
        let name = bare_name(name)?;
        check_size(size)?;
        let (map, id) = create_named(name, size, true)?;
        let owner = Owner {
            pid: sys::proc::getpid(),
            id,
            released: AtomicBool::new(false),
        };
        Ok(Self::from_parts(map, Some(name.to_owned()), Some(owner)))
    }

    /// Opens the existing named segment `name` — Python's `SharedMemory(name)`. The size is
    /// the object's. This handle never removes the name (but [`unlink`](Self::unlink) does).
    ///
    /// # Errors
    /// [`Error::Io`] of kind [`NotFound`](std::io::ErrorKind::NotFound) if there is no such
    /// segment, or another OS failure (an empty object cannot be mapped);
    /// [`Error::InvalidArgument`] for a malformed name.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("doc-open-{}", std::process::id());
    /// let created = SharedMemory::create(&name, 10)?;
    /// created.write(0, b"hello")?;
    ///
    /// let opened = SharedMemory::open(&name)?; // in any process
    /// let mut buf = [0u8; 5];
    /// opened.read(0, &mut buf)?;
    /// assert_eq!(&buf, b"hello");
    /// assert_eq!(opened.size(), 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        let name = bare_name(name)?;
        let map = Mapping::open_named(name).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("there is no shared memory named {name:?}"),
                )
            } else {
                e
            }
        })?;
        Ok(Self::from_parts(map, Some(name.to_owned()), None))
    }

    fn from_parts(map: Mapping, name: Option<String>, owner: Option<Owner>) -> Self {
        Self {
            inner: Arc::new(Inner { map, name, owner }),
        }
    }

    /// The segment's name without a leading `/` (as Python's), or `None` if it is anonymous.
    /// Still the name after [`unlink`](Self::unlink).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let name = format!("doc-name-{}", std::process::id());
    /// let shm = multiproc::SharedMemory::create(&format!("/{name}"), 8)?;
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The number of bytes: exactly what was asked for at creation.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::SharedMemory::new(13)?.size(), 13);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.inner.map.len()
    }

    /// Removes the name now, from any process — Python's `unlink()`. The memory stays mapped
    /// and usable in every process that has it; [`open`](Self::open) no longer finds it.
    /// Does nothing for an anonymous segment.
    ///
    /// Only this segment's name is removed: if the name was removed and reused for another
    /// segment meanwhile, that one is left alone and this is an error.
    ///
    /// # Errors
    /// [`Error::Io`] of kind [`NotFound`](std::io::ErrorKind::NotFound) if the name no longer
    /// refers to this segment (it was already unlinked), or another OS failure.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("doc-unlink-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 8)?;
    /// shm.unlink()?;
    /// assert!(SharedMemory::open(&name).is_err());
    /// shm.write(0, b"still ok")?; // the memory itself stays
    /// assert!(shm.unlink().is_err()); // already gone
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = &self.inner.name else {
            return Ok(());
        };
        let removed = match &self.inner.owner {
            Some(owner) if owner.claim() => release(name, owner.id)?,
            Some(owner) => sys::shm_name::unlink_if(name, owner.id)?,
            None => {
                let id = sys::fd::object_id(self.inner.map.as_fd())?;
                sys::shm_name::unlink_if(name, id)?
            }
        };
        if removed {
            Ok(())
        } else {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("shared memory name {name:?} no longer refers to this segment"),
            )))
        }
    }

    /// Keeps the name after this process's handles are dropped and after it exits, until
    /// someone calls [`unlink`](Self::unlink) — Python 3.13's `track=False`. Only the creating
    /// process removes names, so this does nothing elsewhere, nor for anonymous segments.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Spawn`] if the helper process could not be told (it then
    /// still removes the name when this process ends).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("doc-persist-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 8)?;
    /// shm.persist()?;
    /// drop(shm);
    /// let again = SharedMemory::open(&name)?; // still there
    /// again.unlink()?; // someone has to remove it now
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn persist(&self) -> Result<()> {
        match (&self.inner.name, &self.inner.owner) {
            (Some(name), Some(owner)) if owner.claim() => tracker::untrack(name, owner.id),
            _ => Ok(()),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`, with atomic loads: sound even
    /// while other processes write. A load that sees a byte written by [`write`](Self::write)
    /// also sees everything the writer did before that `write` (acquire/release); the bytes of
    /// one call are not read at one instant, though, so a concurrent write may be seen in part.
    /// Use a `Lock` or an `Event` to read a consistent whole, as in Python.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset + buf.len()` is past [`size`](Self::size).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let shm = multiproc::SharedMemory::new(16)?;
    /// shm.write(3, &[1, 2, 3])?;
    /// let mut buf = [0u8; 5];
    /// shm.read(2, &mut buf)?;
    /// assert_eq!(buf, [0, 1, 2, 3, 0]);
    /// assert!(shm.read(12, &mut buf).is_err()); // 12 + 5 > 16
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        let (words, trailing) = self.atomics();
        let mut at = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let n = if at % WORD == 0 && rest.len() >= WORD {
                // Whole words: the hot loop.
                let whole = rest.len() / WORD * WORD;
                let these = &words[at / WORD..(at + whole) / WORD];
                for (chunk, word) in rest[..whole].chunks_exact_mut(WORD).zip(these) {
                    chunk.copy_from_slice(&word.load(Ordering::Acquire).to_ne_bytes());
                }
                whole
            } else if let Some(word) = words.get(at / WORD) {
                let skip = at % WORD;
                let n = (WORD - skip).min(rest.len());
                let word = word.load(Ordering::Acquire).to_ne_bytes();
                rest[..n].copy_from_slice(&word[skip..skip + n]);
                n
            } else {
                rest[0] = trailing[at - words.len() * WORD].load(Ordering::Acquire);
                1
            };
            at += n;
            rest = &mut rest[n..];
        }
        Ok(())
    }

    /// Copies `data` into the segment starting at `offset`, with atomic stores: sound even
    /// while other processes read or write. Bytes outside `offset..offset + data.len()` are
    /// never changed, even when they share a word with written ones. See [`read`](Self::read)
    /// for what a concurrent reader sees.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset + data.len()` is past [`size`](Self::size).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let shm = multiproc::SharedMemory::new(10)?;
    /// shm.write(0, b"0123456789")?;
    /// shm.write(4, b"--")?;
    /// let mut buf = [0u8; 10];
    /// shm.read(0, &mut buf)?;
    /// assert_eq!(&buf, b"0123--6789");
    /// assert!(shm.write(9, b"xx").is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        let (words, trailing) = self.atomics();
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let n = if at % WORD == 0 && rest.len() >= WORD {
                let whole = rest.len() / WORD * WORD;
                let these = &words[at / WORD..(at + whole) / WORD];
                for (chunk, word) in rest[..whole].chunks_exact(WORD).zip(these) {
                    let mut bytes = [0u8; WORD];
                    bytes.copy_from_slice(chunk);
                    word.store(u64::from_ne_bytes(bytes), Ordering::Release);
                }
                whole
            } else if let Some(word) = words.get(at / WORD) {
                // Part of a word: replace only our bytes, whatever others store meanwhile.
                let skip = at % WORD;
                let n = (WORD - skip).min(rest.len());
                let part = &rest[..n];
                let merge = |old: u64| {
                    let mut bytes = old.to_ne_bytes();
                    bytes[skip..skip + n].copy_from_slice(part);
                    Some(u64::from_ne_bytes(bytes))
                };
                // The closure never returns `None`, so this cannot fail.
                let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, merge);
                n
            } else {
                trailing[at - words.len() * WORD].store(rest[0], Ordering::Release);
                1
            };
            at += n;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The bytes as a plain slice, for code that synchronises by other means.
    ///
    /// # Safety
    /// While the slice lives, no process — this one included — may change the bytes it covers
    /// (through [`write`](Self::write), [`as_mut_slice`](Self::as_mut_slice), another handle
    /// or another program); a `Lock` or `Event` is the usual way to know. Reading racing
    /// writes through a plain slice is a data race: undefined behaviour.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let shm = multiproc::SharedMemory::new(4)?;
    /// shm.write(0, &[1, 2, 3, 4])?;
    /// // SAFETY: no other process has this segment, and this thread does not write it while
    /// // the slice is used.
    /// let sum: u32 = unsafe { shm.as_slice() }.iter().map(|&b| u32::from(b)).sum();
    /// assert_eq!(sum, 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes and lives as long as `self`; the caller
        // guarantees nothing writes the bytes while the slice lives.
        unsafe { std::slice::from_raw_parts(self.inner.map.as_ptr(), self.size()) }
    }

    /// The bytes as a plain mutable slice, for code that synchronises by other means.
    ///
    /// # Safety
    /// While the slice lives, nothing else — in any process, this one included — may read or
    /// write the bytes it covers, and no other slice of them may exist (a second call on any
    /// handle of this segment included): the slice must be exclusive, as `&mut` always is.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let shm = multiproc::SharedMemory::new(4)?;
    /// // SAFETY: no other process has this segment yet and this is the only view of it.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"abcd");
    /// let mut buf = [0u8; 4];
    /// shm.read(0, &mut buf)?;
    /// assert_eq!(&buf, b"abcd");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    // The bytes are shared memory, not data owned by `self`; see # Safety.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is `size` bytes and lives as long as `self`; the caller
        // guarantees the slice is the only access to the bytes while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.inner.map.as_ptr(), self.size()) }
    }

    /// A pointer to the first byte (page-aligned), valid for [`size`](Self::size) bytes as
    /// long as this handle lives: for atomics of other widths (`AtomicU32::from_ptr`, say).
    /// Everything about using it is the caller's responsibility; mixing differently sized
    /// atomics on the same bytes, or atomic with plain accesses, without synchronisation is
    /// undefined behaviour.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// let shm = multiproc::SharedMemory::new(64)?;
    /// // SAFETY: page-aligned, 64 bytes long, alive as long as `shm`; only accessed as
    /// // `AtomicU32` here.
    /// let counter = unsafe { AtomicU32::from_ptr(shm.as_ptr().cast()) };
    /// counter.fetch_add(1, Ordering::Relaxed);
    /// assert_eq!(counter.load(Ordering::Relaxed), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_ptr()
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{len} bytes at offset {offset} do not fit in a shared memory of {} bytes",
                self.size()
            ))),
        }
    }

    /// The bytes as safe code reaches them (see the module docs): every whole word, from
    /// offset 0, as an `AtomicU64`, and the `size % 8` trailing bytes that belong to no whole
    /// word as `AtomicU8`s. The access size of a byte depends on its address only, so no two
    /// racing accesses to it differ in size.
    fn atomics(&self) -> (&[AtomicU64], &[AtomicU8]) {
        let words = self.size() / WORD;
        let map = &self.inner.map;
        (
            map.atomics(0, words),
            map.atomics(words * WORD, self.size() % WORD),
        )
    }
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.inner.name)
            .field("size", &self.size())
            .field("owner", &self.inner.owner.is_some())
            .finish()
    }
}

/// Travels as the index of its descriptor in the message, and its name.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let index = fds::attach(self.inner.map.as_fd()).map_err(serde::ser::Error::custom)?;
        (index, self.inner.name.as_deref()).serialize(s)
    }
}

/// A received handle maps the same memory; it does not own the name.
impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (index, name) = <(u32, Option<String>)>::deserialize(d)?;
        let fd = fds::take(index).map_err(serde::de::Error::custom)?;
        // An anonymous segment is sealed against resizing; a named one cannot be.
        let map = match name {
            None => Mapping::map_sealed(fd),
            Some(_) => Mapping::map(fd),
        }
        .map_err(|e| serde::de::Error::custom(format!("could not map a shared memory: {e}")))?;
        Ok(Self::from_parts(map, name, None))
    }
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::InvalidArgument(
            "a shared memory must have a size of at least 1 byte".into(),
        ));
    }
    Ok(())
}

/// `name` without its leading `/`, checked to be a file name `/dev/shm` accepts.
fn bare_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty()
        || bare == "."
        || bare == ".."
        || bare.contains(['/', '\0'])
        || bare.len() > MAX_NAME
    {
        return Err(Error::InvalidArgument(format!(
            "invalid shared memory name {name:?}: one path component (a leading '/' is \
             allowed), not '.' or '..', 1 to {MAX_NAME} bytes"
        )));
    }
    Ok(bare)
}

fn already_exists(name: &str) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("a shared memory named {name:?} already exists"),
    ))
}

/// Creates the object, tells the tracker, and gives it the name, in that order (see the module
/// docs); `shm_open` and then the tracker without `O_TMPFILE` (or if `tmpfile` is false).
/// Returns the mapping and the object's identity.
fn create_named(name: &str, size: usize, tmpfile: bool) -> Result<(Mapping, ObjectId)> {
    if let Some(Ok(fd)) = tmpfile.then(|| sys::shm_name::create_unnamed(size)) {
        let id = sys::fd::object_id(fd.as_fd())?;
        // Mapped before it is named, so that no failure below leaves a name behind.
        let map = Mapping::map(fd)?;
        tracker::track(name, id)?;
        match sys::shm_name::link_name(map.as_fd(), name) {
            Ok(()) => return Ok((map, id)),
            Err(e) => {
                let _ = tracker::untrack(name, id);
                if e.kind() == io::ErrorKind::AlreadyExists {
                    return Err(already_exists(name));
                }
                // No `/proc` to link through, say: fall back to `shm_open` below.
            }
        }
    }
    // Without `O_TMPFILE`: the name exists before the tracker knows it, for a moment.
    let map = Mapping::create_named(name, size).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            already_exists(name)
        } else {
            Error::Io(e)
        }
    })?;
    let id = sys::fd::object_id(map.as_fd())?;
    if let Err(e) = tracker::track(name, id) {
        let _ = sys::shm_name::unlink_if(name, id);
        return Err(e);
    }
    Ok((map, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-for-byte model to compare `read`/`write` against, around every edge: sizes that
    /// are and are not multiples of the word, offsets and lengths crossing words and the tail.
    #[test]
    fn reads_and_writes_match_a_plain_buffer() {
        for size in [1, 7, 8, 9, 15, 16, 17, 37, 64] {
            let shm = SharedMemory::new(size).unwrap();
            let mut model = vec![0u8; size];
            let mut stamp = 1u8;
            for offset in 0..size {
                for len in 0..=size - offset {
                    let data: Vec<u8> = (0..len).map(|i| stamp.wrapping_add(i as u8)).collect();
                    stamp = stamp.wrapping_add(31);
                    shm.write(offset, &data).unwrap();
                    model[offset..offset + len].copy_from_slice(&data);
                    let mut all = vec![0xAA; size];
                    shm.read(0, &mut all).unwrap();
                    assert_eq!(all, model, "size {size}, write {len} at {offset}");
                    let mut part = vec![0xAA; len];
                    shm.read(offset, &mut part).unwrap();
                    assert_eq!(part, data);
                }
            }
        }
    }

    #[test]
    fn ranges_past_the_end_are_invalid_arguments() {
        let shm = SharedMemory::new(10).unwrap();
        for (offset, len) in [(0, 11), (10, 1), (11, 0), (usize::MAX, 1), (1, usize::MAX)] {
            assert!(matches!(
                shm.check_range(offset, len),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(shm.check_range(10, 0).is_ok());
        assert!(shm.write(10, &[]).is_ok());
    }

    #[test]
    fn without_tmpfile_a_name_is_created_tracked_and_removed_the_same() {
        let name = format!("mp-unit-fallback-{}", std::process::id());
        let (map, id) = create_named(&name, 10, false).unwrap();
        assert_eq!(map.len(), 10);
        assert_eq!(sys::fd::object_id(map.as_fd()).unwrap(), id);
        assert!(matches!(
            create_named(&name, 10, false),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists
        ));
        assert!(matches!(
            create_named(&name, 10, true),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists
        ));
        assert!(release(&name, id).unwrap());
        assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    }

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SharedMemory>();
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(bare_name("/abc").unwrap(), "abc");
        assert_eq!(bare_name("abc").unwrap(), "abc");
        for bad in ["", "/", "a/b", "//a", ".", "/..", "a\0b", &"x".repeat(251)] {
            assert!(
                matches!(bare_name(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
