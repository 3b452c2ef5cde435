//! `Lock` and `RLock`: mutual exclusion across processes, with dead holders detected.
//!
//! The lock word holds the holder's thread identity (thread id and start time, see
//! `sys::proc::thread_identity`), or 0 when free. Taking the lock is one compare-and-swap;
//! waiters spin briefly, then sleep on the segment's futex. A waiter that sleeps a whole slice
//! without a wake-up looks the holder up in `/proc`: if that thread is gone (its process was
//! killed, say), the waiter takes the word over and reports [`Error::OwnerDied`] — the lock is
//! then free again, and the caller knows that the data it protects may be half-updated.
//!
//! Guards are not `Send`: the thread that took a lock releases it, which is what makes the
//! "holder died" test sound.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::parking::{self, Parking};
use crate::mem::segment::{Kind, Segment, SharedCell, segment_handle};
use crate::sys::proc::{identity_alive, thread_identity};

/// The shared state of a lock.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct LockCell {
    owner: AtomicU64,
    /// Recursion depth of an `RLock` (only its holder touches it).
    depth: AtomicU32,
    _pad: AtomicU32,
    parking: Parking,
}

// SAFETY: repr(C) atomics and a `Parking`; all-zero is "free".
unsafe impl SharedCell for LockCell {}

/// How an attempt to take a lock ended.
pub(crate) enum Taken {
    /// This thread holds it now.
    Yes,
    /// It was held by a thread that died; it is free again.
    OwnerDied(u32),
}

impl LockCell {
    fn try_take(&self, me: u64) -> bool {
        self.owner.compare_exchange(0, me, SeqCst, SeqCst).is_ok()
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.owner.load(SeqCst) == thread_identity()
    }

    /// Takes the lock, waiting until `deadline`. `None` if the deadline passed.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Option<Taken> {
        let me = thread_identity();
        if self.try_take(me) {
            return Some(Taken::Yes);
        }
        self.parking.wait(deadline, |stale| {
            let holder = self.owner.load(SeqCst);
            if holder == 0 {
                self.try_take(me).then_some(Taken::Yes)
            } else if stale {
                self.clear_dead(holder, me)
            } else {
                None
            }
        })
    }

    /// Takes the lock if it is free; `None` if it is held. A holder found dead is reported.
    pub(crate) fn take_now(&self) -> Option<Taken> {
        let me = thread_identity();
        if self.try_take(me) {
            return Some(Taken::Yes);
        }
        match self.owner.load(SeqCst) {
            0 => None,
            holder => self.clear_dead(holder, me),
        }
    }

    /// If `holder` is dead, frees the lock (once, whoever sees it first) and reports it.
    fn clear_dead(&self, holder: u64, me: u64) -> Option<Taken> {
        if identity_alive(holder)
            || self
                .owner
                .compare_exchange(holder, me, SeqCst, SeqCst)
                .is_err()
        {
            return None;
        }
        // The dead holder's recursion depth means nothing now.
        self.depth.store(0, SeqCst);
        self.give();
        Some(Taken::OwnerDied(holder as u32))
    }

    /// Takes the lock however long it takes, taking over from holders that died; returns the
    /// thread id of the last dead holder, if any (the state it guarded may be half-updated).
    pub(crate) fn take_through_deaths(&self) -> Option<u32> {
        let mut died = None;
        loop {
            match self.take(None) {
                Some(Taken::Yes) => return died,
                Some(Taken::OwnerDied(tid)) => died = Some(tid),
                None => {}
            }
        }
    }

    /// Takes the lock for the crate's own bookkeeping (a queue's ring, a barrier's counters):
    /// a guard, and whether a holder died inside since the last time.
    pub(crate) fn hold(&self) -> (Held<'_>, bool) {
        let died = self.take_through_deaths().is_some();
        (Held(self), died)
    }

    /// Releases the lock (the caller holds it).
    pub(crate) fn give(&self) {
        self.owner.store(0, SeqCst);
        self.parking.wake_one();
    }

    /// Depth bookkeeping for `RLock`.
    pub(crate) fn depth(&self) -> &AtomicU32 {
        &self.depth
    }
}

/// Holds a [`LockCell`] taken with [`LockCell::hold`]; releases it on drop.
pub(crate) struct Held<'a>(&'a LockCell);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.give();
    }
}

/// Turns the outcome of a take into the public result.
pub(crate) fn taken(outcome: Option<Taken>) -> Result<()> {
    match outcome {
        Some(Taken::Yes) => Ok(()),
        Some(Taken::OwnerDied(tid)) => Err(Error::OwnerDied { thread: tid }),
        None => Err(Error::Timeout),
    }
}

/// A lock shared between processes, like Python's `multiprocessing.Lock`.
///
/// Clone it, or pass it to a [`Process`](crate::Process) or a pool task: every copy is the
/// same lock. Dropping a handle does nothing to the lock; it is freed with its last handle in
/// any process.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let lock = multiproc::Lock::new()?;
/// {
///     let _guard = lock.acquire()?;
///     assert!(lock.try_acquire()?.is_none()); // held
/// }
/// assert!(lock.try_acquire()?.is_some()); // released when the guard dropped
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    seg: Segment<LockCell>,
}

segment_handle!(Lock, Kind::Lock, LockCell);

/// Holds a [`Lock`]; releases it on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    cell: &'a LockCell,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.cell.give();
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new() -> Result<Self> {
        Ok(Self {
            seg: Segment::new(Kind::Lock, 0)?,
        })
    }

    fn cell(&self) -> &LockCell {
        self.seg.cell()
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            cell: self.cell(),
            _not_send: PhantomData,
        }
    }

    /// Waits for the lock and takes it.
    ///
    /// # Errors
    /// - [`Error::OwnerDied`]: the thread holding it died (its process was killed, say). The
    ///   lock is free again; the data it protects may be half-updated. Acquire again to go on.
    /// - [`Error::Deadlock`]: this thread already holds it (Python would hang forever).
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.acquire_until(None)
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is still held, otherwise as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.acquire_until(parking::deadline(timeout))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<LockGuard<'_>> {
        if self.cell().held_by_me() {
            return Err(Error::Deadlock);
        }
        taken(self.cell().take(deadline))?;
        Ok(self.guard())
    }

    /// Takes the lock if it is free; `Ok(None)` if it is held.
    ///
    /// # Errors
    /// [`Error::OwnerDied`], as for [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        match self.cell().take_now() {
            None => Ok(None),
            some => taken(some).map(|()| Some(self.guard())),
        }
    }

    /// Whether two handles are the same lock.
    pub fn same_as(&self, other: &Lock) -> bool {
        self.seg.same(&other.seg)
    }
}

/// A re-entrant lock shared between processes, like Python's `multiprocessing.RLock`: the
/// thread holding it may take it again, and it is released when every guard is gone.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the same thread: fine
/// drop(inner);
/// drop(outer);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RLock {
    seg: Segment<LockCell>,
}

segment_handle!(RLock, Kind::RLock, LockCell);

/// Holds an [`RLock`] once; the lock is released when its last guard drops.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    cell: &'a LockCell,
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        release_recursive(self.cell);
    }
}

/// Drops one level of a re-entrant lock held by this thread.
pub(crate) fn release_recursive(cell: &LockCell) {
    if cell.depth().fetch_sub(1, SeqCst) == 1 {
        cell.give();
    }
}

/// Takes a re-entrant lock (or one more level of it).
pub(crate) fn acquire_recursive(cell: &LockCell, deadline: Option<Instant>) -> Result<()> {
    if cell.held_by_me() {
        cell.depth().fetch_add(1, SeqCst);
        return Ok(());
    }
    taken(cell.take(deadline))?;
    cell.depth().store(1, SeqCst);
    Ok(())
}

/// Takes a re-entrant lock if it is free or this thread's; whether it did.
pub(crate) fn try_acquire_recursive(cell: &LockCell) -> Result<bool> {
    if cell.held_by_me() {
        cell.depth().fetch_add(1, SeqCst);
        return Ok(true);
    }
    match cell.take_now() {
        None => Ok(false),
        some => {
            taken(some)?;
            cell.depth().store(1, SeqCst);
            Ok(true)
        }
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new() -> Result<Self> {
        Ok(Self {
            seg: Segment::new(Kind::RLock, 0)?,
        })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            cell: self.seg.cell(),
            _not_send: PhantomData,
        }
    }

    /// Waits for the lock and takes it (at once if this thread already holds it).
    ///
    /// # Errors
    /// [`Error::OwnerDied`]: its holder died; it is free again (see [`Lock::acquire`]).
    pub fn acquire(&self) -> Result<RLockGuard<'_>> {
        acquire_recursive(self.seg.cell(), None)?;
        Ok(self.guard())
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], or as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>> {
        acquire_recursive(self.seg.cell(), parking::deadline(timeout))?;
        Ok(self.guard())
    }

    /// Takes the lock if it is free or already this thread's; `Ok(None)` if another holds it.
    ///
    /// # Errors
    /// [`Error::OwnerDied`], as for [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>> {
        Ok(try_acquire_recursive(self.seg.cell())?.then(|| self.guard()))
    }
}
