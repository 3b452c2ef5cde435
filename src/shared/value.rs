//! `Value<T>` and `RawValue<T>`: one plain-old-data value in shared memory (an array of one).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::{ArrayGuard, Cells, serde_via_cells};
use super::element::Element;
use crate::error::Result;
use crate::mem::parking;
use crate::mem::segment::Kind;

/// A value in shared memory with a lock, like `multiprocessing.Value`.
///
/// [`get`](Self::get) and [`set`](Self::set) are each atomic; a read-modify-write needs the
/// lock: `*value.lock()? += 10`. The lock is not re-entrant: while a guard lives, `get`, `set`
/// and `lock` on the same thread return [`Error::Deadlock`](crate::Error::Deadlock) (use the
/// guard).
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
serde_via_cells!(RawValue, Kind::RawValue);

impl<T: Element> Value<T> {
    /// A shared value, initially `value`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`](crate::Error::Io)).
    pub fn new(value: T) -> Result<Self> {
        Ok(Self {
            cells: Cells::filled(Kind::Value, &[value])?,
        })
    }

    /// The value, read under the lock.
    ///
    /// # Errors
    /// - [`Error::OwnerDied`](crate::Error::OwnerDied): a process died holding the lock (it is
    ///   free again).
    /// - [`Error::Deadlock`](crate::Error::Deadlock): this thread holds the lock already (a
    ///   guard from [`lock`](Self::lock) is alive; the lock is not re-entrant).
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
        Ok(ValueGuard {
            inner: self.cells.lock_until(None)?,
        })
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout), or as [`get`](Self::get).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>> {
        Ok(ValueGuard {
            inner: self.cells.lock_until(parking::deadline(timeout))?,
        })
    }

    /// Takes the lock if it is free now; `Ok(None)` if it is held, by another thread or process
    /// or by this thread (the lock is not re-entrant), as [`Lock::try_acquire`](crate::Lock::try_acquire)
    /// and Python's `acquire(False)` say.
    ///
    /// # Errors
    /// [`Error::OwnerDied`](crate::Error::OwnerDied): a process died holding the lock.
    pub fn try_lock(&self) -> Result<Option<ValueGuard<'_, T>>> {
        Ok(self.cells.try_lock()?.map(|inner| ValueGuard { inner }))
    }
}

impl<T: Element> RawValue<T> {
    /// A shared value without a lock, initially `value`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`](crate::Error::Io)).
    pub fn new(value: T) -> Result<Self> {
        Ok(Self {
            cells: Cells::filled(Kind::RawValue, &[value])?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;
    use crate::wire::fds::{self, FdSet};

    /// Encodes `value` as a message would, and decodes it as a `U`.
    fn retype<T: Serialize, U: serde::de::DeserializeOwned>(value: &T) -> crate::Result<U> {
        let mut set = FdSet::default();
        let bytes = fds::collect(&mut set, || codec::encode(value))?;
        Ok(fds::receive(set.into_fds(), || codec::decode(&bytes))?)
    }

    #[test]
    fn a_locked_value_cannot_be_received_as_a_raw_one_or_another_type() {
        let v = Value::new(5u32).unwrap();
        assert!(
            retype::<_, RawValue<u32>>(&v).is_err(),
            "would bypass the lock"
        );
        assert!(retype::<_, Value<u64>>(&v).is_err(), "another element type");
        assert!(retype::<_, crate::Array<u32>>(&v).is_err(), "another kind");
        let back: Value<u32> = retype(&v).unwrap();
        assert_eq!(back.get().unwrap(), 5);
    }
}
