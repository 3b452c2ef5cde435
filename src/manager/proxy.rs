//! What every proxy is underneath: the manager's address and an object's id, which is all that
//! travels when a proxy is sent to another process; and the decoding of the server's replies.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{self, Address};
use super::lease::{self, Hold};
use super::protocol::{Bytes, Op, Reply, Request};
use crate::error::{Error, Result};
use crate::task::Data;
use crate::wire::codec;

/// An object on a manager's server, held by this process while any copy of it is here (see
/// `lease`).
#[derive(Clone)]
pub(crate) struct Remote {
    held: Arc<Hold>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("manager", &self.held.addr)
            .field("id", &self.held.id)
            .finish()
    }
}

impl Remote {
    pub(crate) fn new(addr: Arc<Address>, id: u64) -> Self {
        Self {
            held: lease::hold(addr, id),
        }
    }

    /// Runs `op` on the object, under its lock on the server.
    pub(crate) fn call(&self, op: Op) -> Result<Reply> {
        let id = self.held.id;
        client::call(&self.held.addr, &Request::Op { id, op })
    }
}

impl Serialize for Remote {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&*self.held.addr, self.held.id).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Remote {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (addr, id) = <(Address, u64)>::deserialize(d)?;
        Ok(Self::new(Arc::new(addr), id))
    }
}

/// What every typed proxy has beside its own methods: a `Remote` in the field `remote` and a
/// `PhantomData` in `_t`; `Clone` and `Debug` without bounds on the type parameters, a `new`,
/// and serde as its `Remote`'s (so that it travels as one).
macro_rules! typed_proxy {
    ($name:ident<$($t:ident),+>) => {
        impl<$($t),+> Clone for $name<$($t),+> {
            fn clone(&self) -> Self {
                Self::new(self.remote.clone())
            }
        }

        impl<$($t),+> std::fmt::Debug for $name<$($t),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.remote).finish()
            }
        }

        impl<$($t),+> $name<$($t),+> {
            pub(crate) fn new(remote: $crate::manager::proxy::Remote) -> Self {
                Self {
                    remote,
                    _t: std::marker::PhantomData,
                }
            }
        }

        impl<$($t),+> serde::Serialize for $name<$($t),+> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.remote, s)
            }
        }

        impl<'de, $($t),+> serde::Deserialize<'de> for $name<$($t),+> {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let remote = <$crate::manager::proxy::Remote as serde::Deserialize>::deserialize(d)?;
                Ok(Self::new(remote))
            }
        }
    };
}
pub(crate) use typed_proxy;

/// A wait as the protocol gives it: milliseconds, rounded up, `None` for no limit.
pub(crate) fn wait_ms(wait: Option<Duration>) -> Option<u64> {
    wait.map(|d| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// A reply that carries one value, or none.
pub(crate) fn value_of<V: Data>(reply: Reply) -> Result<Option<V>> {
    match reply {
        Reply::Value(v) => v.map(|b| Ok(codec::decode(&b)?)).transpose(),
        other => Err(unexpected(other)),
    }
}

/// A reply that must carry a value.
pub(crate) fn some_value_of<V: Data>(reply: Reply) -> Result<V> {
    value_of(reply)?.ok_or_else(|| Error::Protocol("the manager gave no value".into()))
}

/// A reply that carries a list of values.
pub(crate) fn list_of<T: Data>(reply: Reply) -> Result<Vec<T>> {
    match reply {
        Reply::List(items) => items
            .iter()
            .map(|b: &Bytes| Ok(codec::decode(b)?))
            .collect(),
        other => Err(unexpected(other)),
    }
}

/// A reply that carries a count.
pub(crate) fn len_of(reply: Reply) -> Result<usize> {
    match reply {
        Reply::Len(n) => Ok(n as usize),
        other => Err(unexpected(other)),
    }
}

/// A reply that says it was done.
pub(crate) fn done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::Protocol(format!("unexpected reply from the manager: {reply:?}"))
}
