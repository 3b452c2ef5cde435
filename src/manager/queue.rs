//! `QueueProxy`: a FIFO queue kept by the manager's server, like `Manager().Queue()`.

use std::marker::PhantomData;
use std::time::Duration;

use super::protocol::{Op, QueueOp, Reply};
use super::proxy::{self, Remote, typed_proxy, wait_ms};
use crate::error::{Error, Result};
use crate::queue::PutError;
use crate::task::Data;
use crate::wire::codec;

/// A queue that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().Queue()`, with [`Queue`](crate::Queue)'s method names. Unlike a `Queue`, which
/// only this program's children can share, it reaches any process that holds a proxy (and,
/// later, other programs over the network); a `Queue` is the faster of the two.
///
/// A `get` that waits does so on the server, in the thread serving this thread's connection:
/// other threads and processes go on meanwhile. If this thread's process dies while it waits,
/// the server takes no item for it.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let q = m.queue::<String>()?;
/// q.put("job".into())?;
/// assert_eq!(q.get()?, "job");
/// assert_eq!(q.try_get()?, None);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct QueueProxy<T> {
    remote: Remote,
    _t: PhantomData<fn(T) -> T>,
}

typed_proxy!(QueueProxy<T>);

impl<T: Data> QueueProxy<T> {
    fn op(&self, op: QueueOp) -> Result<Reply> {
        self.remote.call(Op::Queue(op))
    }

    fn put_waiting(&self, item: T, wait: Option<Duration>) -> std::result::Result<(), PutError<T>> {
        let value = match codec::encode(&item) {
            Ok(value) => value,
            Err(e) => return Err(PutError::Failed(item, e.into())),
        };
        let wait_ms = wait_ms(wait);
        match self.op(QueueOp::Put { value, wait_ms }) {
            Ok(Reply::Bool(true)) => Ok(()),
            Ok(Reply::Bool(false)) => Err(PutError::Full(item)),
            Ok(other) => Err(PutError::Failed(item, proxy::unexpected(other))),
            Err(e) => Err(PutError::Failed(item, e)),
        }
    }

    fn get_waiting(&self, wait: Option<Duration>) -> Result<Option<T>> {
        proxy::value_of(self.op(QueueOp::Get {
            wait_ms: wait_ms(wait),
        })?)
    }

    /// Puts `item`, waiting for room in a bounded queue.
    ///
    /// # Errors
    /// The item comes back in [`PutError::Failed`] with the reason
    /// ([`Error::ManagerGone`], …).
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_waiting(item, None)
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    /// [`PutError::Full`] with the item if there is none; otherwise as [`put`](Self::put).
    pub fn try_put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_waiting(item, Some(Duration::ZERO))
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutError::Full`] with the item if there was none in time; otherwise as
    /// [`put`](Self::put).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_waiting(item, Some(timeout))
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone; an item that does not decode.
    pub fn get(&self) -> Result<T> {
        self.get_waiting(None)?
            .ok_or_else(|| Error::Protocol("the manager's get gave no item".into()))
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn try_get(&self) -> Result<Option<T>> {
        self.get_waiting(Some(Duration::ZERO))
    }

    /// Takes the oldest item, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none came in time; otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_waiting(Some(timeout))?.ok_or(Error::Timeout)
    }

    /// How many items it holds now.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn qsize(&self) -> Result<usize> {
        proxy::len_of(self.op(QueueOp::Len)?)
    }

    /// Whether it holds no item now.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether a bounded queue is at its size now.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn full(&self) -> Result<bool> {
        match self.op(QueueOp::Full)? {
            Reply::Bool(b) => Ok(b),
            other => Err(proxy::unexpected(other)),
        }
    }
}
