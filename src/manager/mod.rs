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
//! Locks, semaphores, events, conditions and barriers are small state machines on the server
//! (`server/primitives.rs`, proxies in `sync.rs`). The server tells each client connection
//! apart, so a lock is owned by the connection (the thread) that took it, and everything a
//! connection holds is let go of when it ends — even when its process was killed.
//!
//! This is the first part of the Manager (a local server, dicts, lists, values, queues,
//! namespaces and synchronisation primitives); custom objects, TCP, named objects and reference
//! counting come next.

mod auth;
mod client;
mod dict;
mod list;
mod namespace;
mod protocol;
mod proxy;
mod queue;
mod server;
mod sync;
mod value;

use std::sync::Arc;
use std::time::Duration;

pub use dict::DictProxy;
pub use list::ListProxy;
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
pub use sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, ProxyGuard, RLockProxy, SemaphoreProxy,
};
pub use value::ValueProxy;

use crate::error::Result;
use crate::process::Process;
use crate::task::Data;
use client::Address;
use protocol::{Kind, Reply, Request, SyncKind};
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

    /// A new lock on the server (Python's `Manager().Lock()`), owned by the thread that takes
    /// it and released by the server if that thread's process dies.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// let _held = lock.acquire()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::new(self.create(Kind::Sync(SyncKind::Lock))?))
    }

    /// A new re-entrant lock on the server (Python's `Manager().RLock()`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.rlock()?;
    /// let _outer = lock.acquire()?;
    /// let _inner = lock.acquire()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy::new(self.create(Kind::Sync(SyncKind::RLock))?))
    }

    /// A new semaphore on the server with `value` units (Python's `Manager().Semaphore(n)`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(2)?;
    /// assert_eq!(sem.get_value()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let kind = SyncKind::Semaphore { value, bound: None };
        Ok(SemaphoreProxy::new(self.create(Kind::Sync(kind))?))
    }

    /// A new semaphore on the server with `value` units, never more (Python's
    /// `Manager().BoundedSemaphore(n)`): one release too many is
    /// [`Error::ReleasedTooManyTimes`](crate::Error::ReleasedTooManyTimes).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.bounded_semaphore(1)?;
    /// assert!(sem.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let kind = SyncKind::Semaphore {
            value,
            bound: Some(value),
        };
        Ok(SemaphoreProxy::new(self.create(Kind::Sync(kind))?))
    }

    /// A new event on the server, not set (Python's `Manager().Event()`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let ev = m.event()?;
    /// assert!(!ev.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::new(self.create(Kind::Sync(SyncKind::Event))?))
    }

    /// A new condition on the server with its own re-entrant lock (Python's
    /// `Manager().Condition()`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// let _held = cond.acquire()?;
    /// cond.notify_all()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::new(
            self.create(Kind::Sync(SyncKind::Condition))?,
        ))
    }

    /// A new barrier on the server for `parties` parties (Python's `Manager().Barrier(n)`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(3)?;
    /// assert_eq!(barrier.parties()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for 0 parties;
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(crate::Error::InvalidArgument(
                "a barrier has at least one party".into(),
            ));
        }
        let kind = SyncKind::Barrier { parties };
        Ok(BarrierProxy::new(self.create(Kind::Sync(kind))?))
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
