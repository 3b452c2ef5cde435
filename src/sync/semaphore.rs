//! `Semaphore` and `BoundedSemaphore`: a counter shared between processes.
//!
//! The count is one atomic word; `acquire` decrements it when positive, sleeping on the
//! segment's futex otherwise. A semaphore has no owner (any process may release), so a process
//! that dies holding a unit simply takes that unit with it, as in Python.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::parking::{self, Parking};
use crate::mem::segment::{Kind, Segment, SharedCell, segment_handle};

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SemCell {
    value: AtomicU32,
    /// Largest value for a bounded semaphore; `u32::MAX` for an unbounded one.
    bound: AtomicU32,
    parking: Parking,
}

// SAFETY: repr(C) atomics and a `Parking`; zero is a valid (empty) state.
unsafe impl SharedCell for SemCell {}

impl SemCell {
    pub(crate) fn try_down(&self) -> bool {
        self.value
            .fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    /// Takes a unit, waiting until `deadline`; whether it got one.
    pub(crate) fn down(&self, deadline: Option<Instant>) -> bool {
        self.try_down()
            || self
                .parking
                .wait(deadline, |_| self.try_down().then_some(()))
                .is_some()
    }

    /// Gives a unit back.
    pub(crate) fn up(&self) -> Result<()> {
        let bound = self.bound.load(SeqCst);
        self.value
            .fetch_update(SeqCst, SeqCst, |v| {
                if bound != u32::MAX && v >= bound {
                    None
                } else {
                    v.checked_add(1)
                }
            })
            .map_err(|_| Error::ReleasedTooManyTimes)?;
        self.parking.wake_one();
        Ok(())
    }

    pub(crate) fn value(&self) -> u32 {
        self.value.load(SeqCst)
    }

    pub(crate) fn init(&self, value: u32, bound: u32) {
        self.value.store(value, SeqCst);
        self.bound.store(bound, SeqCst);
    }
}

/// A counting semaphore shared between processes, like `multiprocessing.Semaphore`.
///
/// [`acquire`](Self::acquire) gives a guard that releases its unit on drop;
/// [`SemaphoreGuard::forget`] keeps the unit taken, for a [`release`](Self::release) elsewhere
/// (in another process, say).
///
/// # Examples
/// ```
/// # multiproc::init();
/// let slots = multiproc::Semaphore::new(2)?;
/// let a = slots.acquire()?;
/// let b = slots.acquire()?;
/// assert!(slots.try_acquire()?.is_none());
/// drop(a);
/// assert_eq!(slots.get_value(), 1);
/// # drop(b);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    seg: Segment<SemCell>,
}

segment_handle!(Semaphore, Kind::Semaphore, SemCell);

/// A `Semaphore` whose value may never exceed its initial value, like
/// `multiprocessing.BoundedSemaphore`: releasing once too often is an error
/// ([`Error::ReleasedTooManyTimes`]), which catches unbalanced releases early.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let sem = multiproc::BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err()); // already at its initial value
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl serde::Serialize for BoundedSemaphore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Self {
            inner: Semaphore::deserialize(d)?,
        })
    }
}

/// One unit of a semaphore; released on drop.
#[must_use = "the unit is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    cell: &'a SemCell,
    _not_send: PhantomData<*const ()>,
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken: nothing is released when the guard goes.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // The guard's own unit always fits under the bound.
        let _ = self.cell.up();
    }
}

impl Semaphore {
    /// A semaphore with `value` units.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new(value: u32) -> Result<Self> {
        Self::with_bound(value, u32::MAX)
    }

    fn with_bound(value: u32, bound: u32) -> Result<Self> {
        let seg = Segment::<SemCell>::new(Kind::Semaphore, 0)?;
        seg.cell().init(value, bound);
        Ok(Self { seg })
    }

    fn cell(&self) -> &SemCell {
        self.seg.cell()
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            cell: self.cell(),
            _not_send: PhantomData,
        }
    }

    /// Waits for a unit and takes it.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a semaphore whose memory went bad.
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        self.cell().down(None);
        Ok(self.guard())
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if no unit became free.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
        if self.cell().down(parking::deadline(timeout)) {
            Ok(self.guard())
        } else {
            Err(Error::Timeout)
        }
    }

    /// Takes a unit if one is free now; `Ok(None)` if none is.
    ///
    /// The same shape as every `try_` form ([`Lock::try_acquire`](crate::Lock::try_acquire),
    /// [`Queue::try_get`](crate::Queue::try_get)): `None` means "not available now", the
    /// `Result` carries what went wrong.
    ///
    /// # Errors
    /// None today (a semaphore has no owner that could die holding it); the `Result` is there
    /// so that every `try_` form is handled the same way.
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(1)?;
    /// let unit = sem.try_acquire()?.expect("one unit is free");
    /// assert!(sem.try_acquire()?.is_none()); // taken: not available now
    /// drop(unit);
    /// assert!(sem.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
        Ok(self.cell().try_down().then(|| self.guard()))
    }

    /// Adds a unit (one taken with a forgotten guard, or a new one).
    ///
    /// # Errors
    /// [`Error::ReleasedTooManyTimes`] for a bounded semaphore already at its initial value,
    /// or a count that would overflow `u32`.
    pub fn release(&self) -> Result<()> {
        self.cell().up()
    }

    /// The number of free units now (Python's `get_value`).
    pub fn get_value(&self) -> u32 {
        self.cell().value()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` units, never more.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new(value: u32) -> Result<Self> {
        Ok(Self {
            inner: Semaphore::with_bound(value, value)?,
        })
    }

    /// See [`Semaphore::acquire`].
    ///
    /// # Errors
    /// As [`Semaphore::acquire`].
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        self.inner.acquire()
    }

    /// See [`Semaphore::acquire_timeout`].
    ///
    /// # Errors
    /// As [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
        self.inner.acquire_timeout(timeout)
    }

    /// Takes a unit if one is free now; `Ok(None)` if none is (see
    /// [`Semaphore::try_acquire`]).
    ///
    /// # Errors
    /// As [`Semaphore::try_acquire`] (none today).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let unit = sem.try_acquire()?.expect("one unit is free");
    /// assert!(sem.try_acquire()?.is_none());
    /// drop(unit);
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
        self.inner.try_acquire()
    }

    /// Gives a unit back.
    ///
    /// # Errors
    /// [`Error::ReleasedTooManyTimes`] if the value is already at its initial value.
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }

    /// The number of free units now.
    pub fn get_value(&self) -> u32 {
        self.inner.get_value()
    }
}
