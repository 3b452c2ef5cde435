//! `NamespaceProxy`: named fields of any serde type on the manager's server, like
//! `Manager().Namespace()`.

use serde::{Deserialize, Serialize};

use super::protocol::{DictOp, Op, Reply};
use super::proxy::{self, Remote};
use crate::error::Result;
use crate::task::Data;
use crate::wire::codec;

/// Named fields, each holding a value of any serde type, that every process holding a copy of
/// this proxy reads and writes, like Python's `Manager().Namespace()` (`ns.x = 1` is
/// `ns.set("x", 1)`, `ns.x` is `ns.get::<i32>("x")`). Each field's type is the reader's
/// business: a field read as another type than it was written fails to decode.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let ns = m.namespace()?;
/// ns.set("x", 10)?;
/// ns.set("name", "ada".to_string())?;
/// assert_eq!(ns.get::<i32>("x")?, Some(10));
/// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("ada"));
/// assert_eq!(ns.fields()?, ["x", "name"]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NamespaceProxy {
    remote: Remote,
}

impl NamespaceProxy {
    pub(crate) fn new(remote: Remote) -> Self {
        Self { remote }
    }

    fn op(&self, op: DictOp) -> Result<Reply> {
        self.remote.call(Op::Dict(op))
    }

    /// Sets field `name` to `value`.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone; a value that cannot be encoded.
    pub fn set<T: Data>(&self, name: &str, value: T) -> Result<()> {
        let (key, value) = (codec::encode(name)?, codec::encode(&value)?);
        self.op(DictOp::Insert { key, value }).map(drop)
    }

    /// The value of field `name`, if it was set.
    ///
    /// # Errors
    /// As [`set`](Self::set); [`Error::Decode`](crate::Error::Decode) if the field holds another type.
    pub fn get<T: Data>(&self, name: &str) -> Result<Option<T>> {
        let key = codec::encode(name)?;
        proxy::value_of(self.op(DictOp::Get { key })?)
    }

    /// Removes field `name`; whether it was set.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn remove(&self, name: &str) -> Result<bool> {
        let key = codec::encode(name)?;
        match self.op(DictOp::Remove { key })? {
            Reply::Value(old) => Ok(old.is_some()),
            other => Err(proxy::unexpected(other)),
        }
    }

    /// The names of the fields set, in the order they were first set.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn fields(&self) -> Result<Vec<String>> {
        proxy::list_of(self.op(DictOp::Keys)?)
    }
}
