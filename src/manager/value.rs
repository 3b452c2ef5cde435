//! `ValueProxy`: one value kept by the manager's server, like `Manager().Value(...)`.

use std::marker::PhantomData;

use super::protocol::{Op, Reply, ValueOp};
use super::proxy::{self, Remote, typed_proxy};
use crate::error::Result;
use crate::task::{self, Data, OneArg};
use crate::wire::codec;

/// One value of any serde type that lives in a [`Manager`](crate::Manager)'s server, like
/// Python's `Manager().Value(typecode, value)` — not limited to numbers, and with an atomic
/// [`update`](Self::update) where Python's `v.value += 1` loses updates.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let v = m.value(vec![1u8, 2])?;
/// assert_eq!(v.set(vec![3])?, vec![1, 2]);
/// assert_eq!(v.update(|mut bytes: Vec<u8>| { bytes.push(4); bytes })?, vec![3, 4]);
/// assert_eq!(v.get()?, vec![3, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ValueProxy<T> {
    remote: Remote,
    _t: PhantomData<fn(T) -> T>,
}

typed_proxy!(ValueProxy<T>);

impl<T: Data> ValueProxy<T> {
    fn op(&self, op: ValueOp) -> Result<Reply> {
        self.remote.call(Op::Value(op))
    }

    /// A copy of the value.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone.
    pub fn get(&self) -> Result<T> {
        proxy::some_value_of(self.op(ValueOp::Get)?)
    }

    /// Replaces the value; returns the one it replaced.
    ///
    /// # Errors
    /// As [`get`](Self::get); a value that cannot be encoded.
    pub fn set(&self, value: T) -> Result<T> {
        let value = codec::encode(&value)?;
        proxy::some_value_of(self.op(ValueOp::Set { value })?)
    }

    /// Replaces the value with `f(value)`, run on the server under the value's lock (see
    /// [`DictProxy::update`](crate::DictProxy::update)); returns the new value.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`Error::Manager`](crate::Error::Manager) if `f` panicked (the
    /// value is left as it was).
    pub fn update<F>(&self, f: F) -> Result<T>
    where
        F: Fn(T) -> T + Copy + Send + Sync + 'static,
    {
        task::reject_captures!(F, T, OneArg);
        let entry = task::entry_for::<F, T, OneArg>(f);
        proxy::some_value_of(self.op(ValueOp::Update { entry })?)
    }

    /// Sets the first value of a new object (`Manager::value`): there was none.
    pub(crate) fn init(self, value: T) -> Result<Self> {
        let value = codec::encode(&value)?;
        match self.op(ValueOp::Set { value })? {
            Reply::Value(None) => Ok(self),
            other => Err(proxy::unexpected(other)),
        }
    }
}
