//! `ListProxy`: a list kept by the manager's server, like `Manager().list()`.

use std::marker::PhantomData;

use super::protocol::{ListOp, Op, Reply};
use super::proxy::{self, Remote, typed_proxy};
use crate::error::Result;
use crate::task::{self, Data, OneArg};
use crate::wire::codec;

/// A list that lives in a [`Manager`](crate::Manager)'s server and that every process holding
/// a copy of this proxy reads and writes, like Python's `Manager().list()`. Each call is one
/// operation on the server, under the list's lock.
///
/// Clone it, or send it in a `Process` or pool argument, a `Queue` item or a `Pipe` message:
/// it connects to the server from whatever process it arrives in.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let l = m.list::<String>()?;
/// l.push("a".into())?;
/// l.extend(["b".to_string(), "c".to_string()])?;
/// l.insert(0, "z".into())?;
/// assert_eq!(l.to_vec()?, ["z", "a", "b", "c"]);
/// assert_eq!(l.pop()?, Some("c".to_string()));
/// assert_eq!(l.update(1, |s: String| s.to_uppercase())?, "A");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ListProxy<T> {
    remote: Remote,
    _t: PhantomData<fn(T) -> T>,
}

typed_proxy!(ListProxy<T>);

impl<T: Data> ListProxy<T> {
    fn op(&self, op: ListOp) -> Result<Reply> {
        self.remote.call(Op::List(op))
    }

    /// Appends `value` (Python's `append`).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone; a value that
    /// cannot be encoded.
    pub fn push(&self, value: T) -> Result<()> {
        let value = codec::encode(&value)?;
        proxy::done(self.op(ListOp::Push { value })?)
    }

    /// Removes and returns the last element, if any.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn pop(&self) -> Result<Option<T>> {
        proxy::value_of(self.op(ListOp::Pop)?)
    }

    /// Element `index`, if there is one (a copy).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        proxy::value_of(self.op(ListOp::Get {
            index: index as u64,
        })?)
    }

    /// Replaces element `index` with `value`; returns the one it replaced.
    ///
    /// # Errors
    /// [`Error::Manager`](crate::Error::Manager) if `index` is out of range (Python's
    /// `IndexError`), otherwise as [`push`](Self::push).
    pub fn set(&self, index: usize, value: T) -> Result<T> {
        let value = codec::encode(&value)?;
        proxy::some_value_of(self.op(ListOp::Set {
            index: index as u64,
            value,
        })?)
    }

    /// Inserts `value` before element `index`, or at the end if `index` is past it (as
    /// Python's `insert`).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn insert(&self, index: usize, value: T) -> Result<()> {
        let value = codec::encode(&value)?;
        proxy::done(self.op(ListOp::Insert {
            index: index as u64,
            value,
        })?)
    }

    /// Removes and returns element `index` (Python's `pop(index)`).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn remove(&self, index: usize) -> Result<T> {
        proxy::some_value_of(self.op(ListOp::Remove {
            index: index as u64,
        })?)
    }

    /// How many elements it has.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn len(&self) -> Result<usize> {
        proxy::len_of(self.op(ListOp::Len)?)
    }

    /// Whether it has no elements.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every element, in order (a snapshot taken under the list's lock).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        proxy::list_of(self.op(ListOp::ToVec)?)
    }

    /// Appends every element of `values`, in one operation.
    ///
    /// # Errors
    /// As [`push`](Self::push); nothing is appended if one cannot be encoded.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values
            .into_iter()
            .map(|v| codec::encode(&v))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        proxy::done(self.op(ListOp::Extend { values })?)
    }

    /// Removes every element.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn clear(&self) -> Result<()> {
        proxy::done(self.op(ListOp::Clear)?)
    }

    /// Replaces element `index` with `f(element)`, run on the server under the list's lock
    /// (see [`DictProxy::update`](crate::DictProxy::update)); returns the new element.
    ///
    /// # Errors
    /// As [`set`](Self::set); [`Error::Manager`](crate::Error::Manager) if `f` panicked (the
    /// element is left as it was).
    pub fn update<F>(&self, index: usize, f: F) -> Result<T>
    where
        F: Fn(T) -> T + Copy + Send + Sync + 'static,
    {
        task::reject_captures!(F, T, OneArg);
        let entry = task::entry_for::<F, T, OneArg>(f);
        proxy::some_value_of(self.op(ListOp::Update {
            index: index as u64,
            entry,
        })?)
    }
}
