//! The Manager: a server process that keeps shared objects, and typed proxies to them that
//! travel to other processes, like Python's `multiprocessing.Manager()`.
//!
//! The server is a child started like any [`Process`] (so it dies with its owner, is reaped,
//! and refuses a foreign executable). It listens on a socket with a name in the abstract
//! namespace — or on a TCP address, for other programs ([`ManagerBuilder`]) — and lets a
//! client in after a mutual HMAC challenge on the key (`auth.rs`): by default a random one,
//! which only this program and the processes it hands a proxy to know. Each client
//! connection is served on a thread of its own (`server.rs`). Objects are kept as encoded
//! bytes, each behind its own lock; the wire protocol is data only (`protocol.rs`), except an
//! `update` or a hosted object's `call`, which names a function of the same executable, as a
//! pool task does. A process
//! connects on the first use of a proxy and keeps the connection (`client.rs`); on this
//! machine, requests and replies then take turns in shared memory, the socket kept for large
//! messages and for noticing a peer gone (`mailbox.rs`).
//!
//! Objects of the program's own types (`Manager::host`, Python's `BaseManager.register`) are
//! hosted the same way, plus methods: a call names a trampoline monomorphised for the type,
//! which keeps the object decoded on the server between calls and its bytes current after
//! each (`hosted.rs` on the server, `Proxy` in `custom.rs`).
//!
//! Locks, semaphores, events, conditions and barriers are small state machines on the server
//! (`server/primitives.rs`, proxies in `sync.rs`). The server tells each client connection
//! apart, so a lock is owned by the connection (the thread) that took it, and everything a
//! connection holds is let go of when it ends — even when its process was killed.
//!
//! An object lives while any process holds a proxy of it (`lease.rs`), and a little longer.

mod auth;
mod client;
mod custom;
mod dict;
mod hosted;
mod lease;
mod list;
mod mailbox;
mod namespace;
mod protocol;
mod proxy;
mod queue;
mod server;
mod sync;
mod value;

#[cfg(feature = "fuzzing")]
pub(crate) use protocol::kind::REQUEST as REQUEST_FRAME;
#[cfg(feature = "fuzzing")]
pub(crate) use server::fuzz;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use custom::Proxy;
pub use dict::DictProxy;
pub use list::ListProxy;
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
pub use sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, ProxyGuard, RLockProxy, SemaphoreProxy,
};
pub use value::ValueProxy;

use crate::error::{Error, Result};
use crate::process::Process;
use crate::task::Data;
use client::{Address, Endpoint};
use protocol::{Kind, Reply, Request, SyncKind};
use proxy::Remote;

/// How long an object no process holds is kept before it is freed, by default.
const LINGER: Duration = Duration::from_secs(5);

/// How long `shutdown` waits for the server to end before it kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// In a forked copy: forgets the parent's manager connections and holds (see
/// `launch::inherited`).
pub(crate) fn forget_inherited() {
    client::forget_inherited();
    lease::forget_inherited();
}

/// A server process of shared objects, like Python's `multiprocessing.Manager()`.
///
/// # Lifetimes
/// Dropping the manager that started the server shuts the server down: proxies still held
/// anywhere then fail with [`Error::ManagerGone`](crate::Error::ManagerGone). An object lives
/// while any process holds a proxy of it: the server counts, for each object, the processes
/// that hold one (a process's copies count once, and a process that ends, even killed, lets
/// go of all it held), and frees it a linger after the last let go ([`ManagerBuilder::linger`]).
/// Named objects live as long as the server.
///
/// A proxy kept inside a managed object (a list in a dict's value, a queue in a queue) does
/// not hold its object — it is data there, as it would be in a file — so keep a proxy of it
/// in some process for as long as it is to be read back (or name it: `dict_named`, …).
/// (Python's server holds such nested objects itself.)
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
    /// The server process, if this program started it (`None`: [`connect`](Manager::connect)ed).
    server: Option<Process<Result<()>>>,
    pid: u32,
    pub(crate) addr: Arc<Address>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("pid", &self.pid)
            .field("address", &self.addr)
            .field("owner", &self.server.is_some())
            .finish()
    }
}

/// How a [`Manager`] is started: where it listens and with which key
/// ([`Manager::builder`]).
///
/// # Examples
/// ```
/// use multiproc::Manager;
///
/// multiproc::init();
/// let m = Manager::builder()
///     .address("127.0.0.1:0")
///     .authkey(b"a secret of this deployment".to_vec())
///     .serve()?;
/// let at = m.address().expect("it listens on TCP");
/// // Another program (here, this one) connects with the key.
/// let other = Manager::connect(at, b"a secret of this deployment")?;
/// other.dict_named::<String, u32>("results")?.insert("a".into(), 1)?;
/// assert_eq!(m.dict_named::<String, u32>("results")?.get(&"a".into())?, Some(1));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `serve` is called"]
pub struct ManagerBuilder {
    address: Option<std::io::Result<Vec<SocketAddr>>>,
    key: Option<Vec<u8>>,
    linger: Option<Duration>,
}

impl ManagerBuilder {
    /// Listens on this TCP address (port 0: any free port; see [`Manager::address`]), so that
    /// other programs, on this machine or others, can [`connect`](Manager::connect) with the
    /// key. Default: no TCP address, only a socket that this machine's processes that are
    /// handed a proxy can reach.
    ///
    /// The connection is not encrypted (TLS is out of this crate's scope): between machines,
    /// tunnel it (SSH, WireGuard) or keep it on a private network. The key keeps strangers out;
    /// it does not hide what is said.
    pub fn address(mut self, address: impl ToSocketAddrs) -> Self {
        self.address = Some(address.to_socket_addrs().map(Iterator::collect));
        self
    }

    /// The key clients must know (Python's `authkey`). Default: 32 random bytes, which only
    /// this program and the processes it hands a proxy to know — enough for a manager without
    /// an address; one with an address needs a key that the other programs are given.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// How long the server keeps an object after the last proxy of it, in every process, is
    /// gone, before it frees it: a proxy sent in a queue, a pipe or a task's arguments, whose
    /// sender then dropped its own copy, finds the object if it arrives within this time.
    /// Default: 5 seconds. Named objects are never freed.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = Some(linger);
        self
    }

    /// Starts the server process and waits until it serves.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty key, or an
    /// address with a TCP address but no key of one's own (its clients could not be given
    /// it); [`Error::Io`](crate::Error::Io) if the address does not resolve or cannot be
    /// listened on (in use, say); the server could not be started
    /// ([`Error::Spawn`](crate::Error::Spawn)).
    pub fn serve(self) -> Result<Manager> {
        let key = match self.key {
            Some(key) if key.is_empty() => {
                return Err(Error::InvalidArgument("an empty key lets anyone in".into()));
            }
            Some(key) => key,
            None if self.address.is_some() => {
                return Err(Error::InvalidArgument(
                    "a manager with an address needs a key its clients are given (authkey)".into(),
                ));
            }
            None => auth::challenge()?.to_vec(),
        };
        let listener = match self.address {
            Some(addrs) => server::Listener::Tcp(TcpListener::bind(&addrs?[..])?),
            None => server::Listener::Local(local_listener()?),
        };
        let endpoint = listener.endpoint()?;
        let start = server::Start {
            listener,
            key: key.clone(),
            linger: self.linger.unwrap_or(LINGER),
        };
        let mut server = Process::new(server::serve, start)
            .with_name("SyncManager")
            .with_daemon(true);
        server.start()?;
        let pid = server.pid().unwrap_or(0);
        Ok(Manager {
            server: Some(server),
            pid,
            addr: {
                client::learn_key(&endpoint, &key);
                Arc::new(Address { endpoint, key })
            },
        })
    }
}

/// A socket on a fresh name in the abstract namespace.
fn local_listener() -> Result<std::os::unix::net::UnixListener> {
    let nonce: [u8; 8] = auth::challenge()?[..8]
        .try_into()
        .unwrap_or_else(|_| unreachable!("a challenge has 32 bytes"));
    let name = format!(
        "multiproc-manager-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    );
    Ok(crate::sys::local_socket::listen(&name)?)
}

impl Manager {
    /// Starts a manager's server process and waits until it serves: reachable from the
    /// processes this program hands a proxy to, with a random key. Use
    /// [`builder`](Self::builder) for one that other programs can connect to.
    ///
    /// # Errors
    /// The server could not be started ([`Error::Spawn`](crate::Error::Spawn), [`Error::Io`](crate::Error::Io)).
    pub fn new() -> Result<Manager> {
        Self::builder().serve()
    }

    /// A builder for a manager with an address and a key of one's own (Python's
    /// `BaseManager(address, authkey)`).
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager that another program started with an address (Python's
    /// `BaseManager(address, authkey).connect()`). The manager returned reaches the same
    /// objects — open the shared ones by name ([`dict_named`](Self::dict_named), …) — but does
    /// not own the server: dropping it leaves the server serving, and
    /// [`shutdown`](Self::shutdown) is refused.
    ///
    /// A program built from another executable can use every container; only functions sent
    /// to the server (`update`) need the server's own executable, and fail clearly otherwise.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if no manager answers there (within a
    /// few seconds); [`Error::AuthenticationFailed`](crate::Error::AuthenticationFailed) for
    /// a wrong key; [`Error::Manager`](crate::Error::Manager) for a manager built with
    /// another release of this crate; [`Error::Protocol`](crate::Error::Protocol) for a peer
    /// that is not a manager; [`Error::Io`](crate::Error::Io) if the address does not
    /// resolve. A name that resolves to several addresses is tried at each in turn, up to a
    /// few seconds each, until one answers.
    pub fn connect(address: impl ToSocketAddrs, key: impl AsRef<[u8]>) -> Result<Manager> {
        for at in address.to_socket_addrs()? {
            let addr = Arc::new(Address {
                endpoint: Endpoint::Tcp(at),
                key: key.as_ref().to_vec(),
            });
            match client::call(&addr, &Request::Pid) {
                Ok(Reply::Pid(pid)) => {
                    client::learn_key(&addr.endpoint, &addr.key);
                    return Ok(Manager {
                        server: None,
                        pid,
                        addr,
                    });
                }
                Ok(other) => return Err(proxy::unexpected(other)),
                // Nothing there: the name may resolve to another address that has it.
                Err(Error::ManagerGone) => {}
                // A manager is there, and refused (a wrong key, another release): said as is.
                Err(e) => return Err(e),
            }
        }
        Err(Error::ManagerGone)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The TCP address the manager listens on, as bound (with the port picked for port 0);
    /// `None` for one started without an address.
    pub fn address(&self) -> Option<SocketAddr> {
        match self.addr.endpoint {
            Endpoint::Tcp(at) => Some(at),
            Endpoint::Local(_) => None,
        }
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

    /// How many objects the server keeps (Python's `_number_of_objects()`): to see that
    /// objects are freed once no process holds a proxy of them.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn object_count(&self) -> Result<usize> {
        proxy::len_of(client::call(&self.addr, &Request::Count)?)
    }

    /// The dict called `name` on the server, made now (empty) if there is none: how
    /// separate programs meet on the same object.
    ///
    /// # Errors
    /// [`Error::Manager`](crate::Error::Manager) if the object of that name is not a dict;
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) if the server is gone.
    pub fn dict_named<K: Data, V: Data>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.open(name, Kind::Dict)?))
    }

    /// The list called `name`, made now if there is none (see [`dict_named`](Self::dict_named)).
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn list_named<T: Data>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.open(name, Kind::List)?))
    }

    /// The queue called `name`, made now (without a bound) if there is none (see
    /// [`dict_named`](Self::dict_named)).
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn queue_named<T: Data>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::new(
            self.open(name, Kind::Queue { maxsize: 0 })?,
        ))
    }

    /// The namespace called `name`, made now if there is none (see
    /// [`dict_named`](Self::dict_named)).
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    pub fn namespace_named(&self, name: &str) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::new(self.open(name, Kind::Dict)?))
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
        self.remote(&Request::New(kind))
    }

    fn open(&self, name: &str, kind: Kind) -> Result<Remote> {
        let name = name.to_owned();
        self.remote(&Request::Named { name, kind })
    }

    /// The object the server answers `request` (a creation) with.
    fn remote(&self, request: &Request) -> Result<Remote> {
        match client::call(&self.addr, request)? {
            Reply::Id(id) => Ok(Remote::new(self.addr.clone(), id)),
            other => Err(proxy::unexpected(other)),
        }
    }

    /// Ends the server (Python's `shutdown()`): it finishes the requests it is serving and
    /// exits; one that does not within a few seconds is killed. Proxies then fail with
    /// [`Error::ManagerGone`](crate::Error::ManagerGone). Calling it again does nothing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a manager this program
    /// [`connect`](Self::connect)ed to: only the program that started it ends it. The server
    /// could not be stopped ([`Error::Io`](crate::Error::Io)).
    pub fn shutdown(&self) -> Result<()> {
        let Some(server) = &self.server else {
            return Err(Error::InvalidArgument(
                "this program connected to the manager; only the one that started it shuts it down"
                    .into(),
            ));
        };
        if !server.is_alive() {
            return Ok(());
        }
        let asked = client::call(&self.addr, &Request::Shutdown);
        if asked.is_err() || server.join_timeout(SHUTDOWN_GRACE).is_err() {
            server.kill()?;
            let _ = server.join_timeout(SHUTDOWN_GRACE);
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let owned = self.server.is_some();
        if owned {
            let _ = self.shutdown();
        }
        lease::forget(&self.addr);
        client::disconnect(&self.addr, owned);
    }
}
