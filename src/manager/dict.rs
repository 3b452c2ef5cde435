//! `DictProxy`: a dict kept by the manager's server, like `Manager().dict()`.

use std::marker::PhantomData;

use super::protocol::{DictOp, Op, Reply};
use super::proxy::{self, Remote, typed_proxy};
use crate::error::Result;
use crate::task::{self, Data, OneArg};
use crate::wire::codec;

/// A dict that lives in a [`Manager`](crate::Manager)'s server and that every process holding
/// a copy of this proxy reads and writes, like Python's `Manager().dict()`. Keys keep their
/// insertion order, as in a Python dict; two keys are the same when they encode to the same
/// bytes.
///
/// Clone it, or send it in a `Process` or pool argument, a `Queue` item or a `Pipe` message:
/// it connects to the server from whatever process it arrives in.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let d = m.dict::<String, u32>()?;
/// d.insert("a".into(), 1)?;
/// assert_eq!(d.get(&"a".into())?, Some(1));
/// // Atomic read-modify-write on the server (Python's `d[k] = d.get(k, 0) + 1` loses updates).
/// assert_eq!(d.update("a".into(), |v: Option<u32>| v.unwrap_or(0) + 1)?, 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct DictProxy<K, V> {
    remote: Remote,
    _t: PhantomData<Entry<K, V>>,
}

typed_proxy!(DictProxy<K, V>);

/// What the proxy is about, without holding any: a key and a value type.
type Entry<K, V> = fn(K, V) -> (K, V);

impl<K: Data, V: Data> DictProxy<K, V> {
    fn op(&self, op: DictOp) -> Result<Reply> {
        self.remote.call(Op::Dict(op))
    }

    /// Sets `key` to `value`; returns the value it had.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone; a key or value that cannot be encoded.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let (key, value) = (codec::encode(&key)?, codec::encode(&value)?);
        proxy::value_of(self.op(DictOp::Insert { key, value })?)
    }

    /// The value at `key`, if any (a copy: the proxy holds no values).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = codec::encode(key)?;
        proxy::value_of(self.op(DictOp::Get { key })?)
    }

    /// Removes `key`; returns the value it had.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let key = codec::encode(key)?;
        proxy::value_of(self.op(DictOp::Remove { key })?)
    }

    /// Whether `key` is in the dict.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let key = codec::encode(key)?;
        match self.op(DictOp::ContainsKey { key })? {
            Reply::Bool(b) => Ok(b),
            other => Err(proxy::unexpected(other)),
        }
    }

    /// How many entries it has.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn len(&self) -> Result<usize> {
        proxy::len_of(self.op(DictOp::Len)?)
    }

    /// Whether it has no entries.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Its keys, in insertion order.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn keys(&self) -> Result<Vec<K>> {
        proxy::list_of(self.op(DictOp::Keys)?)
    }

    /// Its values, in insertion order of their keys.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn values(&self) -> Result<Vec<V>> {
        proxy::list_of(self.op(DictOp::Values)?)
    }

    /// Its entries, in insertion order (a snapshot taken under the dict's lock).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.op(DictOp::Items)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((codec::decode(k)?, codec::decode(v)?)))
                .collect(),
            other => Err(proxy::unexpected(other)),
        }
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn clear(&self) -> Result<()> {
        proxy::done(self.op(DictOp::Clear)?)
    }

    /// Inserts every entry of `entries`, in order.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); the entries before the failing one are in.
    pub fn extend(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        for (k, v) in entries {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// Replaces the value at `key` with `f(old)`, run on the server under the dict's lock, so
    /// no other update or write comes between the read and the write (Python's
    /// `d[k] = d.get(k, 0) + 1` from several processes loses updates; this does not). `f` is a
    /// `fn` item or a closure that captures nothing, like a task. Returns the new value.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); [`Error::Manager`](crate::Error::Manager) if `f` panicked (the value is left as
    /// it was) or this program is not the manager's executable.
    pub fn update<F>(&self, key: K, f: F) -> Result<V>
    where
        F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    {
        task::reject_captures!(F, Option<V>, OneArg);
        let entry = task::entry_for::<F, Option<V>, OneArg>(f);
        let key = codec::encode(&key)?;
        proxy::some_value_of(self.op(DictOp::Update { key, entry })?)
    }
}

// The proxy holds no `K` or `V`, only the means to reach them: it is `Send + Sync` whatever
// they are.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    fn check<K, V>() {
        assert_send_sync::<DictProxy<K, V>>();
    }
    let _ = check::<std::rc::Rc<u8>, ()>;
};
