//! `Array<T>` and `RawArray<T>`: a fixed-length array of plain-old-data in shared memory.
//!
//! The segment holds a lock, the length and element type, then the elements, each an atomic
//! of its width (see `element.rs`). `Array` takes the lock for every whole-array operation and
//! gives a guard for longer work; `RawArray` has no lock (Python's `RawArray`), for data
//! partitioned by index or guarded by something else. `Value` is an array of one element
//! (`value.rs`).
//!
//! A guard hands out `&mut [T]`, so it must be the only way into the elements while it lives:
//! the lock is not re-entrant (a second `lock()` on the same thread is [`Error::Deadlock`],
//! where Python's default `RLock` would allow it), and a locked array is never viewed as a
//! `RawArray` (their segments have different kinds, so one cannot be decoded as the other).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::element::Element;
use crate::error::{Error, Result};
use crate::mem::parking;
use crate::mem::segment::{Kind, Segment, SharedCell};
use crate::sync::lock::{LockCell, Taken, taken};

/// Elements start at this alignment after the cell.
const DATA_ALIGN: usize = 64;

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct ArrayCell {
    lock: LockCell,
    len: AtomicU64,
    tag: AtomicU32,
    _pad: AtomicU32,
}

// SAFETY: repr(C) atomics and a `LockCell`; zero is a valid (empty, unlocked) state.
unsafe impl SharedCell for ArrayCell {}

/// The shared memory of an array of `T`, lock or no lock.
pub(crate) struct Cells<T: Element> {
    seg: Segment<ArrayCell>,
    data: *const T::Atomic,
    len: usize,
    _t: PhantomData<T>,
}

// SAFETY: `data` points into `seg`'s mapping, which `Cells` keeps alive; elements are atomics
// (Send + Sync), so sharing the pointer between threads is as safe as sharing `&[T::Atomic]`.
unsafe impl<T: Element> Send for Cells<T> {}
// SAFETY: as above.
unsafe impl<T: Element> Sync for Cells<T> {}

impl<T: Element> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            data: self.data,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Element> std::fmt::Debug for Cells<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cells").field("len", &self.len).finish()
    }
}

impl<T: Element> Cells<T> {
    pub(crate) fn new(kind: Kind, len: usize) -> Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T::Atomic>())
            .and_then(|b| b.checked_add(DATA_ALIGN))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("an array of {len} elements is too large"))
            })?;
        let seg = Segment::new(kind, bytes)?;
        let cell: &ArrayCell = seg.cell();
        cell.len.store(len as u64, SeqCst);
        cell.tag.store(T::TAG, SeqCst);
        Self::from_segment(seg).map_err(|e| Error::Io(std::io::Error::other(e)))
    }

    /// A new array of `kind` holding a copy of `init`.
    pub(crate) fn filled(kind: Kind, init: &[T]) -> Result<Self> {
        let cells = Self::new(kind, init.len())?;
        for (slot, v) in cells.slots().iter().zip(init) {
            T::store(slot, *v);
        }
        Ok(cells)
    }

    /// Locates the elements of a segment created (here or elsewhere) for an array of `T`.
    fn from_segment(seg: Segment<ArrayCell>) -> std::result::Result<Self, String> {
        let cell: &ArrayCell = seg.cell();
        let tag = cell.tag.load(SeqCst);
        if tag != T::TAG {
            return Err(format!(
                "the received array holds elements of another type (tag {tag:#x}, expected {:#x})",
                T::TAG
            ));
        }
        let len = usize::try_from(cell.len.load(SeqCst)).map_err(|_| "bad array length")?;
        let data = len
            .checked_mul(std::mem::size_of::<T::Atomic>())
            .and_then(|bytes| seg.tail(DATA_ALIGN, bytes))
            .ok_or_else(|| {
                format!("the received array of {len} elements does not fit its memory")
            })?;
        // Atomics of at most 8 bytes: aligned at `DATA_ALIGN`.
        let data = data.as_ptr().cast::<T::Atomic>().cast_const();
        Ok(Self {
            seg,
            data,
            len,
            _t: PhantomData,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn lock_cell(&self) -> &LockCell {
        &self.seg.cell().lock
    }

    /// The elements as atomics.
    pub(crate) fn slots(&self) -> &[T::Atomic] {
        // SAFETY: `data` points at `len` atomics inside the mapping that `self.seg` keeps
        // alive (checked in `from_segment`); atomics may be shared freely.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    pub(crate) fn get(&self, i: usize) -> T {
        T::load(&self.slots()[i])
    }

    pub(crate) fn set(&self, i: usize, v: T) {
        T::store(&self.slots()[i], v)
    }

    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.slots().iter().map(T::load).collect()
    }

    /// Takes the array's lock until `deadline`; the guard gives it back.
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> Result<ArrayGuard<'_, T>> {
        let cell = self.lock_cell();
        if cell.held_by_me() {
            return Err(Error::Deadlock);
        }
        taken(cell.take(deadline))?;
        Ok(ArrayGuard::new(self))
    }

    /// Takes the array's lock if it is free; `None` if it is held.
    pub(crate) fn try_lock(&self) -> Result<Option<ArrayGuard<'_, T>>> {
        let cell = self.lock_cell();
        if cell.held_by_me() {
            // Held, if by this very thread: a try says so as `Lock::try_acquire` does.
            return Ok(None);
        }
        match cell.take_now() {
            None => Ok(None),
            Some(Taken::Yes) => Ok(Some(ArrayGuard::new(self))),
            died => taken(died).map(|()| None),
        }
    }

    pub(crate) fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
        kind: Kind,
    ) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize_as(d, kind)?;
        Self::from_segment(seg).map_err(serde::de::Error::custom)
    }
}

/// A fixed-length array in shared memory with a lock, like `multiprocessing.Array`.
///
/// Clones and copies sent to other processes all see the same elements. Single reads and
/// writes ([`get`](Self::get), [`set`](Self::set)) and whole copies ([`to_vec`](Self::to_vec),
/// [`iter`](Self::iter)) take the lock for their duration; [`lock`](Self::lock) holds it
/// across several steps and, for number types, gives the elements as a slice.
///
/// **Indexing:** take [`lock`](Self::lock) and index the guard (`guard[i]`, `guard[i] = x`).
/// `Array` itself does not implement `Index`: `arr[i]` would be a `&T` into memory that other
/// processes write while the reference lives, which no Rust reference may point at. The guard
/// can hand out `&T` and `&mut T` because the lock keeps every other writer out for as long as
/// it lives.
///
/// ```compile_fail
/// let arr = multiproc::Array::new(&[1u8, 2]).unwrap();
/// let first: &u8 = &arr[0]; // no `Index`: `arr.lock()?[0]` instead
/// ```
///
/// # Examples
/// ```
/// # multiproc::init();
/// let arr = multiproc::Array::new(&[11, 22, 33])?;
/// arr.set(1, 100)?;
/// {
///     let mut guard = arr.lock()?;
///     guard[0] += 1; // number types deref to a slice under the lock
/// }
/// assert_eq!(arr.to_vec()?, vec![12, 100, 33]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Array<T: Element> {
    cells: Cells<T>,
}

/// An array in shared memory without a lock, like `multiprocessing.RawArray`: every element
/// read and write is atomic on its own, nothing more.
///
/// There is no indexing (`arr[i]`): a `&T` into memory that other processes write at any time
/// would be unsound. Read with [`get`](Self::get), [`iter`](Self::iter) or
/// [`to_vec`](Self::to_vec), which copy elements out atomically.
///
/// ```compile_fail
/// let arr = multiproc::RawArray::new(&[1u8, 2]).unwrap();
/// let first: &u8 = &arr[0]; // no `Index`: `arr.get(0)` instead
/// ```
///
/// # Examples
/// ```
/// # multiproc::init();
/// let arr = multiproc::RawArray::<f64>::zeroed(4)?;
/// arr.set(3, 1.5);
/// assert_eq!(arr.to_vec(), vec![0.0, 0.0, 0.0, 1.5]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RawArray<T: Element> {
    cells: Cells<T>,
}

macro_rules! serde_via_cells {
    ($handle:ident, $kind:expr) => {
        impl<T: Element> Serialize for $handle<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.cells.serialize(s)
            }
        }

        impl<'de, T: Element> Deserialize<'de> for $handle<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok(Self {
                    cells: Cells::deserialize(d, $kind)?,
                })
            }
        }
    };
}
pub(crate) use serde_via_cells;

serde_via_cells!(Array, Kind::Array);
serde_via_cells!(RawArray, Kind::RawArray);

impl<T: Element> Array<T> {
    /// An array holding a copy of `init`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new(init: &[T]) -> Result<Self> {
        Ok(Self {
            cells: Cells::filled(Kind::Array, init)?,
        })
    }

    /// An array of `len` zeroes (`false`, `'\0'`).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn zeroed(len: usize) -> Result<Self> {
        Ok(Self {
            cells: Cells::new(Kind::Array, len)?,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len() == 0
    }

    /// Takes the lock and gives access to the elements until the guard drops.
    ///
    /// # Errors
    /// - [`Error::OwnerDied`]: a process died holding the lock; it is free again, the elements
    ///   may be half-updated.
    /// - [`Error::Deadlock`]: this thread holds the lock already (it is not re-entrant).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        self.cells.lock_until(None)
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], or as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>> {
        self.cells.lock_until(parking::deadline(timeout))
    }

    /// Takes the lock if it is free now; `Ok(None)` if it is held, by another thread or process
    /// or by this thread (the lock is not re-entrant), as [`Lock::try_acquire`](crate::Lock::try_acquire)
    /// and Python's `acquire(False)` say.
    ///
    /// # Errors
    /// [`Error::OwnerDied`]: a process died holding the lock; it is free again, the elements
    /// may be half-updated.
    pub fn try_lock(&self) -> Result<Option<ArrayGuard<'_, T>>> {
        self.cells.try_lock()
    }

    /// Element `i`, read under the lock.
    ///
    /// # Errors
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> Result<T> {
        Ok(self.lock()?.get(i))
    }

    /// Sets element `i` under the lock.
    ///
    /// # Errors
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.lock()?.set(i, value);
        Ok(())
    }

    /// A copy of all elements, taken under the lock.
    ///
    /// # Errors
    /// As [`lock`](Self::lock).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }

    /// An iterator over a snapshot of the elements: all of them are copied under the lock in
    /// one go, then the lock is released before the first is yielded. The snapshot is
    /// consistent (no other process wrote while it was taken), and writes made after it —
    /// by this process or any other — are not seen. To iterate while holding the lock (and
    /// see the elements as they are, with nobody else writing), iterate `&guard` from
    /// [`lock`](Self::lock).
    ///
    /// # Errors
    /// As [`lock`](Self::lock): [`Error::OwnerDied`] or [`Error::Deadlock`].
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let arr = multiproc::Array::new(&[1u32, 2, 3])?;
    /// let snapshot = arr.iter()?;
    /// arr.set(0, 100)?; // not seen: the snapshot was taken before
    /// assert_eq!(snapshot.collect::<Vec<_>>(), [1, 2, 3]);
    /// assert_eq!(arr.iter()?.sum::<u32>(), 105);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }
}

impl<T: Element> RawArray<T> {
    /// An array holding a copy of `init`.
    ///
    /// # Errors
    /// The shared memory could not be created ([`Error::Io`]).
    pub fn new(init: &[T]) -> Result<Self> {
        Ok(Self {
            cells: Cells::filled(Kind::RawArray, init)?,
        })
    }

    /// An array of `len` zeroes.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn zeroed(len: usize) -> Result<Self> {
        Ok(Self {
            cells: Cells::new(Kind::RawArray, len)?,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len() == 0
    }

    /// Element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> T {
        self.cells.get(i)
    }

    /// Sets element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) {
        self.cells.set(i, value)
    }

    /// A copy of all elements (each read atomically; the whole is not a snapshot).
    pub fn to_vec(&self) -> Vec<T> {
        self.cells.to_vec()
    }

    /// An iterator over the elements, each read atomically when the iterator reaches it (not
    /// a snapshot): an element written by another process before the iterator gets to it is
    /// seen with its new value, one already passed is not, and no two elements are read at
    /// one instant. With no lock there is nothing more to have; for a consistent copy use an
    /// [`Array`] and its [`iter`](Array::iter).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let arr = multiproc::RawArray::new(&[1.0f64, 2.0, 4.0])?;
    /// let mut elements = arr.iter();
    /// assert_eq!(elements.next(), Some(1.0));
    /// arr.set(2, 8.0); // ahead of the iterator: seen
    /// assert_eq!(elements.collect::<Vec<_>>(), [2.0, 8.0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn iter(&self) -> ArrayIter<'_, T> {
        ArrayIter::new(self.cells.slots())
    }
}

/// An iterator over the elements of an array in shared memory, each read atomically when the
/// iterator reaches it: what [`RawArray::iter`] gives, and what iterating `&guard` (an
/// [`ArrayGuard`]) gives, where the lock keeps other writers out. It yields copies (`T`, not
/// `&T`): a reference into memory that other processes write would be unsound.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let arr = multiproc::RawArray::new(&[3u8, 1, 2])?;
/// let elements: multiproc::ArrayIter<'_, u8> = arr.iter();
/// assert_eq!(elements.len(), 3);
/// assert_eq!(elements.rev().collect::<Vec<_>>(), [2, 1, 3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ArrayIter<'a, T: Element> {
    slots: std::slice::Iter<'a, T::Atomic>,
}

impl<'a, T: Element> ArrayIter<'a, T> {
    fn new(slots: &'a [T::Atomic]) -> Self {
        Self {
            slots: slots.iter(),
        }
    }
}

impl<T: Element> Clone for ArrayIter<'_, T> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
        }
    }
}

impl<T: Element> std::fmt::Debug for ArrayIter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayIter")
            .field("left", &self.slots.len())
            .finish()
    }
}

impl<T: Element> Iterator for ArrayIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.slots.next().map(T::load)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<T> {
        self.slots.nth(n).map(T::load)
    }
}

impl<T: Element> DoubleEndedIterator for ArrayIter<'_, T> {
    fn next_back(&mut self) -> Option<T> {
        self.slots.next_back().map(T::load)
    }
}

impl<T: Element> ExactSizeIterator for ArrayIter<'_, T> {}

impl<T: Element> std::iter::FusedIterator for ArrayIter<'_, T> {}

/// The lock of an [`Array`] (or [`Value`](crate::Value)), held; the elements are this
/// thread's to read and write until it drops. For number types it dereferences to a slice
/// (`guard[i]`, `guard.iter()` of `&T`); for every element type, `for x in &guard` yields the
/// elements by value (`bool` and `char` have no slice: not every bit pattern is one of them).
///
/// # Examples
/// ```
/// # multiproc::init();
/// let flags = multiproc::Array::new(&[true, false, true])?;
/// let guard = flags.lock()?;
/// let set: Vec<usize> = (&guard).into_iter().enumerate().filter(|(_, on)| *on).map(|(i, _)| i).collect();
/// assert_eq!(set, [0, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element> {
    cells: &'a Cells<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Element> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_vec()).finish()
    }
}

impl<T: Element> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.cells.lock_cell().give();
    }
}

impl<'a, T: Element> ArrayGuard<'a, T> {
    /// The guard of `cells`, whose lock this thread has just taken: only `Cells::lock_until`
    /// and `Cells::try_lock` make one, so a guard's existence means the lock is held (what
    /// its `&mut [T]` relies on).
    fn new(cells: &'a Cells<T>) -> Self {
        Self {
            cells,
            _not_send: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len() == 0
    }

    /// Element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> T {
        self.cells.get(i)
    }

    /// Sets element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn set(&mut self, i: usize, value: T) {
        self.cells.set(i, value)
    }

    /// A copy of the elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.cells.to_vec()
    }

    /// Overwrites the elements with `src`.
    ///
    /// # Panics
    /// If `src.len() != len()`.
    pub fn copy_from_slice(&mut self, src: &[T]) {
        assert_eq!(src.len(), self.len(), "copy_from_slice: length mismatch");
        for (slot, v) in self.cells.slots().iter().zip(src) {
            T::store(slot, *v);
        }
    }
}

/// The elements by value, each read when reached; the lock held by the guard keeps every other
/// writer out meanwhile, so together they are as consistent as a copy.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let arr = multiproc::Array::new(&['a', 'b', 'c'])?;
/// let guard = arr.lock()?;
/// let mut word = String::new();
/// for c in &guard {
///     word.push(c);
/// }
/// assert_eq!(word, "abc");
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<'g, T: Element> IntoIterator for &'g ArrayGuard<'_, T> {
    type Item = T;
    type IntoIter = ArrayIter<'g, T>;

    fn into_iter(self) -> ArrayIter<'g, T> {
        ArrayIter::new(self.cells.slots())
    }
}

impl<T: Element + bytemuck::Pod> std::ops::Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        const {
            assert!(std::mem::size_of::<T::Atomic>() == std::mem::size_of::<T>());
            assert!(std::mem::align_of::<T::Atomic>() >= std::mem::align_of::<T>());
        }
        let slots = self.cells.slots();
        // SAFETY: `T::Atomic` has the size and alignment of `T` (checked above), `T` is Pod
        // (every bit pattern valid), and this thread holds the array's lock, which is not
        // re-entrant: no other guard, `get`/`set` or copy of this array runs meanwhile, and no
        // `RawArray` can view a locked array's memory.
        unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<T>(), slots.len()) }
    }
}

impl<T: Element + bytemuck::Pod> std::ops::DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let slots = self.cells.slots();
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the one guard
        // that exists, and the lock keeps every other access out.
        unsafe {
            std::slice::from_raw_parts_mut(slots.as_ptr().cast::<T>().cast_mut(), slots.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_iterate_from_both_ends_and_know_how_many_are_left() {
        let arr = RawArray::new(&[1i16, -2, 3, -4, 5]).unwrap();
        let mut elements = arr.iter();
        assert_eq!(elements.size_hint(), (5, Some(5)));
        assert_eq!(elements.next_back(), Some(5));
        assert_eq!(elements.nth(1), Some(-2));
        assert_eq!(elements.len(), 2);
        let rest = elements.clone();
        assert_eq!(elements.collect::<Vec<_>>(), [3, -4]);
        assert_eq!(rest.rev().collect::<Vec<_>>(), [-4, 3]);
        assert_eq!(RawArray::<u8>::zeroed(0).unwrap().iter().next(), None);
    }

    #[test]
    fn a_guard_iterates_by_value_for_every_element_type() {
        let chars = Array::new(&['x', 'y']).unwrap();
        let guard = chars.lock().unwrap();
        assert_eq!((&guard).into_iter().collect::<String>(), "xy");
        drop(guard);
        let numbers = Array::new(&[1.5f32, 2.5]).unwrap();
        let mut guard = numbers.lock().unwrap();
        guard[0] = 4.0;
        // By value through `&guard`; by reference through the slice it derefs to.
        assert_eq!((&guard).into_iter().sum::<f32>(), 6.5);
        assert_eq!(guard.iter().copied().sum::<f32>(), 6.5);
    }

    #[test]
    fn an_array_snapshot_takes_and_gives_back_the_lock() {
        let arr = Array::new(&[1u8, 2, 3]).unwrap();
        let guard = arr.lock().unwrap();
        assert!(matches!(arr.iter(), Err(Error::Deadlock)));
        drop(guard);
        let snapshot = arr.iter().unwrap();
        arr.set(0, 9).unwrap();
        assert_eq!(snapshot.collect::<Vec<_>>(), [1, 2, 3]);
    }
}
