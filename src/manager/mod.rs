//! The Manager: a server process that keeps shared objects, and typed proxies to them that
//! travel to other processes, like Python's `multiprocessing.Manager()`.
//!
//! The server is a child started like any [`Process`] (so it dies with its owner, is reaped,
//! and refuses a foreign executable). It listens on a socket with a name in the abstract
//! namespace, and lets a client in after a mutual HMAC challenge on a random key (`auth.rs`),
//! which only this program and the processes it hands a proxy to know. Each client
//! connection is served on a thread of its own (`server.rs`). Objects are kept as encoded
//! bytes, each behind its own lock; the wire protocol is data only (`protocol.rs`), except an
//! `update`, which names a function of the same executable, as a pool task does. A process
//! connects on the first use of a proxy and keeps the connection (`client.rs`).
//!
//! Objects of the program's own types (`Manager::host`, Python's `BaseManager.register`) are
//! hosted the same way, plus methods: a call names a trampoline monomorphised for the type,
//! which keeps the object decoded on the server between calls and its bytes current after
//! each (`hosted.rs` on the server, `Proxy` in `custom.rs`).
//!
//! Not yet: TCP, named objects, reference counting.

mod auth;
mod client;
mod custom;
mod dict;
mod hosted;
mod list;
mod namespace;
mod protocol;
mod proxy;
mod queue;
mod server;
mod value;

use std::sync::Arc;
use std::time::Duration;

pub use custom::Proxy;
pub use dict::DictProxy;
pub use list::ListProxy;
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
pub use value::ValueProxy;

use crate::error::Result;
use crate::process::Process;
use crate::task::Data;
use client::Address;
use protocol::{Kind, Reply, Request};
use proxy::Remote;

/// How long `shutdown` waits for the server to end before it kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A server process of shared objects, like Python's `multiprocessing.Manager()`.
///
/// # Drop
/// Dropping the manager shuts its server down: proxies still held anywhere then fail with
/// [`Error::ManagerGone`](crate::Error::ManagerGone).
///
/// # Examples
/// ```
/// use multiproc::{DictProxy, Manager, Process};
///
/// fn record(d: DictProxy<u32, String>, i: u32) {
///     d.insert(i, format!("process {i}")).unwrap();
/// }
///
/// multiproc::init();
/// let m = Manager::new()?;
/// let d = m.dict()?;
/// let mut ps: Vec<_> = (0..3).map(|i| Process::new(record, (d.clone(), i))).collect();
/// for p in &mut ps { p.start()?; }
/// for p in &ps { p.join()?; }
/// assert_eq!(d.len()?, 3);
/// assert_eq!(d.get(&2)?, Some("process 2".to_string()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Manager {
    server: Process<()>,
    pub(crate) addr: Arc<Address>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("pid", &self.server.pid())
            .field("address", &self.addr)
            .finish()
    }
}

impl Manager {
    /// Starts a manager's server process and waits until it serves.
    ///
    /// # Errors
    /// The server could not be started ([`Error::Spawn`](crate::Error::Spawn), [`Error::Io`](crate::Error::Io)).
    pub fn new() -> Result<Manager> {
        let nonce: [u8; 8] = auth::challenge()?[..8]
            .try_into()
            .unwrap_or_else(|_| unreachable!("a challenge has 32 bytes"));
        let name = format!(
            "multiproc-manager-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        );
        let listener = crate::sys::local_socket::listen(&name)?;
        let key = auth::challenge()?.to_vec();
        let start = server::Start {
            listener: server::Listening(listener),
            name: name.clone(),
            key: key.clone(),
        };
        let mut server = Process::new(server::serve, start)
            .with_name("SyncManager")
            .with_daemon(true);
        server.start()?;
        Ok(Manager {
            server,
            addr: Arc::new(Address { name, key }),
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid().unwrap_or(0)
    }

    /// A new, empty dict on the server (Python's `Manager().dict()`).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn dict<K: Data, V: Data>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.create(Kind::Dict)?))
    }

    /// A new, empty list on the server (Python's `Manager().list()`).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn list<T: Data>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.create(Kind::List)?))
    }

    /// A value on the server, initially `value` (Python's `Manager().Value(typecode, v)`, for
    /// any serde type).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone; a value that
    /// cannot be encoded.
    pub fn value<T: Data>(&self, value: T) -> Result<ValueProxy<T>> {
        ValueProxy::new(self.create(Kind::Value)?).init(value)
    }

    /// A new, empty queue on the server without a bound (Python's `Manager().Queue()`).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn queue<T: Data>(&self) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::new(self.create(Kind::Queue { maxsize: 0 })?))
    }

    /// A new, empty queue on the server that holds at most `maxsize` items (Python's
    /// `Manager().Queue(maxsize)`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for 0; otherwise as
    /// [`queue`](Self::queue).
    pub fn queue_bounded<T: Data>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        if maxsize == 0 {
            return Err(crate::Error::InvalidArgument(
                "a bounded queue holds at least one item".into(),
            ));
        }
        let maxsize = maxsize as u64;
        Ok(QueueProxy::new(self.create(Kind::Queue { maxsize })?))
    }

    /// A new namespace on the server: named fields of any serde type (Python's
    /// `Manager().Namespace()`).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::new(self.create(Kind::Dict)?))
    }

    /// Puts `value` on the server, to be called there through the returned proxy (Python's
    /// `BaseManager.register("Counter", Counter)` then `m.Counter()`; any serde type, nothing
    /// to register). See [`Proxy`] for what a call does.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone; a value that
    /// cannot be encoded.
    ///
    /// # Examples
    /// ```
    /// use multiproc::{Manager, Process, Proxy};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Tally { seen: Vec<u32> }
    ///
    /// impl Tally {
    ///     fn note(&mut self, x: u32) { self.seen.push(x); }
    /// }
    ///
    /// fn worker(t: Proxy<Tally>, x: u32) {
    ///     t.call(Tally::note, x).unwrap();
    /// }
    ///
    /// multiproc::init();
    /// let m = Manager::new()?;
    /// let tally = m.host(Tally { seen: vec![] })?;
    /// let mut ps: Vec<_> = (0..3).map(|i| Process::new(worker, (tally.clone(), i))).collect();
    /// for p in &mut ps { p.start()?; }
    /// for p in &ps { p.join()?; }
    /// let mut seen = tally.get()?.seen;
    /// seen.sort();
    /// assert_eq!(seen, [0, 1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn host<T: Data>(&self, value: T) -> Result<Proxy<T>> {
        Proxy::new(self.create(Kind::Hosted)?).init(value)
    }

    fn create(&self, kind: Kind) -> Result<Remote> {
        match client::call(&self.addr, &Request::New(kind))? {
            Reply::Id(id) => Ok(Remote::new(self.addr.clone(), id)),
            other => Err(proxy::unexpected(other)),
        }
    }

    /// Ends the server (Python's `shutdown()`): it finishes the requests it is serving and
    /// exits; one that does not within a few seconds is killed. Proxies then fail with
    /// [`Error::ManagerGone`](crate::Error::ManagerGone). Calling it again does nothing.
    ///
    /// # Errors
    /// The server could not be stopped ([`Error::Io`](crate::Error::Io)).
    pub fn shutdown(&self) -> Result<()> {
        if !self.server.is_alive() {
            return Ok(());
        }
        let asked = client::call(&self.addr, &Request::Shutdown);
        if asked.is_err() || self.server.join_timeout(SHUTDOWN_GRACE).is_err() {
            self.server.kill()?;
            let _ = self.server.join_timeout(SHUTDOWN_GRACE);
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
