//! `Value<T>` and `RawValue<T>`: one plain-old-data value in shared memory (an array of one).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::{ArrayGuard, Cells, serde_via_cells};
use super::element::Element;
use super::segment::Kind;
use crate::error::Result;
use crate::sync::lock::try_acquire_recursive;
use crate::sync::parking;

/// A value in shared memory with a lock, like `multiprocessing.Value`.
///
/// [`get`](Self::get) and [`set`](Self::set) are each atomic; a read-modify-write needs the
/// lock: `*value.lock()? += 10`.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let counter = multiproc::Value::new(1000i64)?;
/// *counter.lock()? += 10;
/// assert_eq!(counter.get()?, 1010);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Value<T: Element> {
    cells: Cells<T>,
}

/// A value in shared memory without a lock, like `multiprocessing.RawValue`.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let flag = multiproc::RawValue::new(false)?;
/// flag.set(true);
/// assert!(flag.get());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RawValue<T: Element> {
    cells: Cells<T>,
}

serde_via_cells!(Value, Kind::Value);
serde_via_cells!(RawValue, Kind::Value);

impl<T: Element> Value<T> {
    /// A shared value, initially `value`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`](crate::Error::Io)).
    pub fn new(value: T) -> Result<Self> {
        let cells = Cells::new(Kind::Value, 1)?;
        cells.set(0, value);
        Ok(Self { cells })
    }

    /// The value, read under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`](crate::Error::OwnerDied): a process died holding the lock (it is
    /// free again).
    pub fn get(&self) -> Result<T> {
        Ok(self.lock()?.get())
    }

    /// Sets the value under the lock.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, value: T) -> Result<()> {
        self.lock()?.set(value);
        Ok(())
    }

    /// Takes the lock; the guard reads and writes the value (`*guard` for number types).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        self.cells.lock_until(None)?;
        Ok(ValueGuard {
            inner: ArrayGuard::new(&self.cells),
        })
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout), or as [`get`](Self::get).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>> {
        self.cells.lock_until(parking::deadline(timeout))?;
        Ok(ValueGuard {
            inner: ArrayGuard::new(&self.cells),
        })
    }

    /// Takes the lock if it is free (or already this thread's); `Ok(None)` if it is held.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn try_lock(&self) -> Result<Option<ValueGuard<'_, T>>> {
        Ok(
            try_acquire_recursive(self.cells.lock_cell())?.then(|| ValueGuard {
                inner: ArrayGuard::new(&self.cells),
            }),
        )
    }

    /// The same memory without the lock.
    pub fn raw(&self) -> RawValue<T> {
        RawValue {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Element> RawValue<T> {
    /// A shared value without a lock, initially `value`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`](crate::Error::Io)).
    pub fn new(value: T) -> Result<Self> {
        Ok(Value::new(value)?.raw())
    }

    /// The value (an atomic read).
    pub fn get(&self) -> T {
        self.cells.get(0)
    }

    /// Sets the value (an atomic write; a read-modify-write needs a [`Value`] and its lock).
    pub fn set(&self, value: T) {
        self.cells.set(0, value)
    }
}

/// The lock of a [`Value`], held. Number types dereference to the value itself.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ValueGuard<'a, T: Element> {
    inner: ArrayGuard<'a, T>,
}

impl<T: Element> ValueGuard<'_, T> {
    /// The value.
    pub fn get(&self) -> T {
        self.inner.get(0)
    }

    /// Sets the value.
    pub fn set(&mut self, value: T) {
        self.inner.set(0, value)
    }
}

impl<T: Element + bytemuck::Pod> std::ops::Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner[0]
    }
}

impl<T: Element + bytemuck::Pod> std::ops::DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner[0]
    }
}
