//! `Condition`: a condition variable with its own re-entrant lock, across processes.
//!
//! A waiter counts itself in `waiting` while it still holds the lock, releases the lock
//! completely (whatever its depth), sleeps until it can take a token, and takes the lock back
//! at the same depth. `notify(n)` adds up to `n` tokens (never more than there are waiters) and
//! wakes that many sleepers; `notify_all` gives one to every waiter. Because the notifier holds
//! the lock, every waiter that released it before is counted: no notification is lost, and
//! `notify()` wakes one waiter, not all. A token left over by a waiter that timed out at that
//! very moment may wake a later waiter early; [`wait_for`] re-checks its predicate anyway.
//!
//! [`wait_for`]: ConditionGuard::wait_for

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::parking::{self, Parking};
use crate::mem::segment::{Kind, Segment, SharedCell, segment_handle};
use crate::sync::lock::{LockCell, acquire_recursive, release_recursive, try_acquire_recursive};

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct CondCell {
    lock: LockCell,
    notified: Parking,
    /// Threads inside a wait.
    waiting: AtomicU32,
    /// Notifications not yet taken by a waiter.
    tokens: AtomicU32,
}

impl CondCell {
    fn take_token(&self) -> Option<()> {
        self.tokens
            .fetch_update(SeqCst, SeqCst, |t| t.checked_sub(1))
            .ok()
            .map(|_| ())
    }
}

// SAFETY: repr(C) of `SharedCell`s and atomics; zero is "unlocked, nobody waiting".
unsafe impl SharedCell for CondCell {}

/// A condition variable shared between processes, like `multiprocessing.Condition` (with its
/// default re-entrant lock).
///
/// # Examples
/// ```
/// # multiproc::init();
/// use std::time::Duration;
/// let cond = multiproc::Condition::new()?;
/// let mut guard = cond.acquire()?;
/// // Nobody notifies: the wait times out, holding the lock again afterwards.
/// assert!(!guard.wait_timeout(Duration::from_millis(5))?);
/// guard.notify_all();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Condition {
    seg: Segment<CondCell>,
}

segment_handle!(Condition, Kind::Condition, CondCell);

/// Holds a [`Condition`]'s lock; waits and notifies through it. Releases on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ConditionGuard<'a> {
    cell: &'a CondCell,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        release_recursive(&self.cell.lock);
    }
}

impl Condition {
    /// A new condition with its own lock.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new() -> Result<Self> {
        Ok(Self {
            seg: Segment::new(Kind::Condition, 0)?,
        })
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cell: self.seg.cell(),
            _not_send: PhantomData,
        }
    }

    /// Takes the condition's lock (re-entrant).
    ///
    /// # Errors
    /// [`Error::OwnerDied`]: its holder died; the lock is free again.
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        acquire_recursive(&self.seg.cell().lock, None)?;
        Ok(self.guard())
    }

    /// Takes the condition's lock if it is free (or already this thread's); `Ok(None)` if
    /// another thread holds it.
    ///
    /// # Errors
    /// [`Error::OwnerDied`], as for [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<ConditionGuard<'_>>> {
        match try_acquire_recursive(&self.seg.cell().lock)? {
            true => Ok(Some(self.guard())),
            false => Ok(None),
        }
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], or as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>> {
        acquire_recursive(&self.seg.cell().lock, parking::deadline(timeout))?;
        Ok(self.guard())
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notification, and takes the lock back.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] if, while this thread waited, another holder of the lock died;
    /// the lock is held again when this returns, whatever the outcome.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; returns `false` if it timed out.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_until(parking::deadline(timeout))
    }

    /// Waits until `predicate()` holds (checked with the lock held, first before waiting).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// Like [`wait_for`](Self::wait_for), for at most `timeout`; returns the predicate's last
    /// value.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<bool> {
        let deadline = parking::deadline(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if !self.wait_until(deadline)? {
                return Ok(predicate());
            }
        }
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let cell = self.cell;
        let lock = &cell.lock;
        cell.waiting.fetch_add(1, SeqCst);
        let depth = lock.depth().swap(0, SeqCst);
        lock.give();
        let notified = cell.take_token().is_some()
            || cell
                .notified
                .wait(deadline, |_| cell.take_token())
                .is_some()
            || cell.take_token().is_some();
        cell.waiting.fetch_sub(1, SeqCst);
        let owner_died = lock.take_through_deaths();
        lock.depth().store(depth, SeqCst);
        match owner_died {
            Some(thread) => Err(Error::OwnerDied { thread }),
            None => Ok(notified),
        }
    }

    /// Wakes one waiter (if any waits).
    pub fn notify(&self) {
        self.notify_n(1);
    }

    /// Wakes up to `n` waiters, like Python's `notify(n)`.
    pub fn notify_n(&self, n: u32) {
        let cell = self.cell;
        let waiting = cell.waiting.load(SeqCst);
        let _ = cell.tokens.fetch_update(SeqCst, SeqCst, |t| {
            Some(t.saturating_add(n).min(waiting.max(t)))
        });
        cell.notified.wake(n.min(waiting));
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let cell = self.cell;
        let waiting = cell.waiting.load(SeqCst);
        let _ = cell
            .tokens
            .fetch_update(SeqCst, SeqCst, |t| Some(t.max(waiting)));
        cell.notified.wake_all();
    }
}
