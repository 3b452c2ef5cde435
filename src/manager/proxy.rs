//! What every proxy is underneath: the manager's address and an object's id, which is all that
//! travels when a proxy is sent to another process; and the decoding of the server's replies.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{self, Address, Endpoint};
use super::lease::{self, Hold};
use super::protocol::{Bytes, Op, Reply, Request};
use crate::error::{Error, Result};
use crate::task::Data;
use crate::wire::{codec, fds};

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
        lease::repair();
        let id = self.held.id;
        let reply = client::call(&self.held.addr, &Request::Op { id, op });
        REPLYING.set(Some(self.held.addr.clone()));
        reply
    }
}

/// A proxy travels as its manager's endpoint, its object's id and — only inside a message
/// between this program's processes (a `Process` or pool argument, a task's result, a `Queue`
/// item, a `Pipe` message) — the manager's key, as Python hands a child its `authkey`. Put
/// into a manager's object (a dict's value, a queue's item), which may cross a network, it
/// goes without the key: whoever reads it back completes it with the key its process knows.
impl Serialize for Remote {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let addr = &self.held.addr;
        let key = fds::between_processes().then_some(&addr.key);
        (&addr.endpoint, self.held.id, key).serialize(s)
    }
}

thread_local! {
    /// The manager this thread's last proxy call went to: whose reply is being decoded.
    static REPLYING: RefCell<Option<Arc<Address>>> = const { RefCell::new(None) };
}

/// The address of a proxy that arrived without its key (read from a manager's object): the key
/// this process knows for its endpoint; else, if it is a proxy of the manager whose reply is
/// being decoded, that manager as this process reaches it (its owner may have written an
/// address that means nothing here, such as `0.0.0.0:port`).
fn keyless(endpoint: Endpoint) -> std::result::Result<Address, String> {
    if let Some(key) = client::known_key(&endpoint) {
        return Ok(Address { endpoint, key });
    }
    let replying = REPLYING.with_borrow(|r| r.clone());
    match replying {
        Some(by) if same_manager(&endpoint, &by.endpoint) => Ok((*by).clone()),
        _ => Err(format!(
            "a proxy of the manager at {endpoint:?} arrived without its key, and this process \
             does not know it: connect to that manager first (Manager::connect(address, key))"
        )),
    }
}

/// Whether `written` (an endpoint as a manager's owner wrote it) is the manager reached at
/// `reached`: the same, or the same port where the owner wrote an address of its own machine.
fn same_manager(written: &Endpoint, reached: &Endpoint) -> bool {
    match (written, reached) {
        (Endpoint::Tcp(w), Endpoint::Tcp(r)) => {
            w == r || (w.port() == r.port() && (w.ip().is_unspecified() || w.ip().is_loopback()))
        }
        (w, r) => w == r,
    }
}

impl<'de> Deserialize<'de> for Remote {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (endpoint, id, key) = <(Endpoint, u64, Option<Vec<u8>>)>::deserialize(d)?;
        let addr = match key {
            Some(key) => {
                client::learn_key(&endpoint, &key);
                Address { endpoint, key }
            }
            None => keyless(endpoint).map_err(D::Error::custom)?,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fds::FdSet;

    #[test]
    fn a_proxy_carries_its_key_only_between_this_programs_processes() {
        let m = crate::Manager::new().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        let key = m.addr.key.clone();
        let contains_key = |bytes: &[u8]| bytes.windows(key.len()).any(|w| w == key);
        let stored = codec::encode(&d).unwrap();
        assert!(
            !contains_key(&stored),
            "the key went into data for a manager"
        );
        let mut set = FdSet::passing();
        let sent = fds::collect(&mut set, || codec::encode(&d)).unwrap();
        assert!(contains_key(&sent), "a child needs the key");
        // Read back without the key, it is completed with the one this process knows.
        let back: crate::DictProxy<u8, u8> = codec::decode(&stored).unwrap();
        back.insert(1, 2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
    }

    #[test]
    fn a_proxy_without_a_key_this_process_knows_is_refused_clearly() {
        let unknown = Endpoint::Local("multiproc-manager-never-known".into());
        let bytes = codec::encode(&(&unknown, 3u64, None::<Vec<u8>>)).unwrap();
        let e = codec::decode::<Remote>(&bytes).unwrap_err().to_string();
        assert!(e.contains("arrived without its key"), "{e}");
    }
}
