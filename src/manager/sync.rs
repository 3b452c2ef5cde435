//! Proxies of locks, semaphores, events, conditions and barriers kept by the manager's server
//! (`server/primitives.rs`), like Python's `Manager().Lock()` and its kin, with the method
//! names of this crate's own [`Lock`](crate::Lock), [`Semaphore`](crate::Semaphore), ….
//!
//! The crate's own primitives live in shared memory and are faster; these reach any process
//! that holds a proxy (later, other programs over the network). A lock belongs to the thread
//! that took it (the server sees it as that thread's connection), and the server releases it
//! when that connection ends, even if the process was killed with SIGKILL.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::protocol::{Op, Reply, SyncOp, SyncReply};
use super::proxy::{self, Remote, wait_ms};
use crate::error::{Error, Result};

/// Runs `op` on the primitive; a refusal is its error.
fn call(remote: &Remote, op: SyncOp) -> Result<SyncReply> {
    match remote.call(Op::Sync(op))? {
        Reply::Sync(SyncReply::Failed(e)) => Err(e),
        Reply::Sync(reply) => Ok(reply),
        other => Err(proxy::unexpected(other)),
    }
}

fn unexpected(reply: SyncReply) -> Error {
    Error::Protocol(format!("unexpected reply from the manager: {reply:?}"))
}

fn done(reply: SyncReply) -> Result<()> {
    match reply {
        SyncReply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn bool_of(reply: SyncReply) -> Result<bool> {
    match reply {
        SyncReply::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn count_of(reply: SyncReply) -> Result<u32> {
    match reply {
        SyncReply::Count(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

/// Takes a lock or a unit, waiting at most `wait`: whether it did.
fn take(remote: &Remote, wait: Option<Duration>) -> Result<bool> {
    match call(
        remote,
        SyncOp::Acquire {
            wait_ms: wait_ms(wait),
        },
    )? {
        SyncReply::Done => Ok(true),
        SyncReply::TimedOut => Ok(false),
        other => Err(unexpected(other)),
    }
}

/// Takes a lock or a unit for a guard: the three forms of every `acquire`.
fn guarded(remote: &Remote, wait: Option<Duration>) -> Result<Option<ProxyGuard<'_>>> {
    Ok(take(remote, wait)?.then(|| ProxyGuard {
        remote,
        _not_send: PhantomData,
    }))
}

fn waited_for(guard: Option<ProxyGuard<'_>>) -> Result<ProxyGuard<'_>> {
    guard.ok_or(Error::Timeout)
}

fn give(remote: &Remote) -> Result<()> {
    done(call(remote, SyncOp::Release)?)
}

/// Holds a managed lock, a condition's lock, or a semaphore's unit; gives it back on drop.
///
/// It cannot go to another thread: a lock belongs to the thread that took it.
///
/// # Drop
/// Asks the server to release, ignoring a failure (the server is gone, say); call
/// [`release`](Self::release) to see one.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let lock = m.lock()?;
/// let guard = lock.acquire()?;
/// guard.release()?; // as dropping it, with the error if there is one
/// let guard = lock.acquire()?;
/// guard.forget(); // still held, released later by hand
/// lock.release()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ProxyGuard<'a> {
    remote: &'a Remote,
    _not_send: PhantomData<*const ()>,
}

impl ProxyGuard<'_> {
    /// Releases now, saying whether the server did.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(1)?;
    /// sem.acquire()?.release()?;
    /// assert_eq!(sem.get_value()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone (it then holds nothing);
    /// [`Error::Manager`] if this thread's connection broke since it took the lock (the server
    /// let go of it then).
    pub fn release(self) -> Result<()> {
        let remote = self.remote;
        std::mem::forget(self);
        give(remote)
    }

    /// Keeps it held: nothing is released when the guard goes (release it later with the
    /// proxy's `release`, as in Python).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(1)?;
    /// sem.acquire()?.forget();
    /// assert_eq!(sem.get_value()?, 0);
    /// sem.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = give(self.remote);
    }
}

macro_rules! from_remote {
    ($($name:ident),+) => {$(
        impl $name {
            pub(crate) fn new(remote: Remote) -> Self {
                Self { remote }
            }
        }
    )+};
}

from_remote!(
    LockProxy,
    RLockProxy,
    SemaphoreProxy,
    EventProxy,
    ConditionProxy,
    BarrierProxy
);

/// A lock that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().Lock()`, with [`Lock`](crate::Lock)'s method names.
///
/// It belongs to the thread that took it: only that thread may release it, and if that thread's
/// process dies (even by SIGKILL) the server releases it and the next waiter takes it — Python's
/// managed lock stays held forever then. Taking it again in the same thread is
/// [`Error::Deadlock`] rather than a hang.
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes); until then nothing changes there: a lock held
/// stays held until its guard drops or `release` is called, or the holder's thread or process
/// ends.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let lock = m.lock()?;
/// {
///     let _held = lock.acquire()?;
///     assert!(matches!(lock.try_acquire(), Err(multiproc::Error::Deadlock)));
/// }
/// assert!(lock.try_acquire()?.is_some()); // released when the guard dropped
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LockProxy {
    remote: Remote,
}

impl LockProxy {
    /// Waits for the lock and takes it.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// let held = lock.acquire()?;
    /// drop(held); // released
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Deadlock`] if this thread holds it already; [`Error::ManagerGone`] once the
    /// server is gone.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, None)?)
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// let _held = lock.acquire_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if another held it all along; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, Some(timeout))?)
    }

    /// Takes the lock if it is free now; `Ok(None)` if another thread holds it.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        guarded(&self.remote, Some(Duration::ZERO))
    }

    /// Releases the lock this thread holds (one whose guard was
    /// [forgotten](ProxyGuard::forget)).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// lock.acquire()?.forget();
    /// lock.release()?;
    /// assert!(lock.release().is_err()); // not held any more
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Manager`] if this thread does not hold it; [`Error::ManagerGone`] once the
    /// server is gone.
    pub fn release(&self) -> Result<()> {
        give(&self.remote)
    }
}

/// A re-entrant lock that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().RLock()`, with [`RLock`](crate::RLock)'s method names: the thread holding it may
/// take it again, and it is free once each level is released.
///
/// It belongs to the thread that took it, as a [`LockProxy`] does, and is released by the
/// server (every level) if that thread's process dies.
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes); until then nothing changes there: a lock held
/// stays held until its guards drop or `release` is called, or the holder's thread or process
/// ends.
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let lock = m.rlock()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the same thread: fine
/// drop(inner);
/// drop(outer);
/// assert!(lock.release().is_err()); // every level released
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLockProxy {
    remote: Remote,
}

impl RLockProxy {
    /// Waits for the lock and takes it (one more level at once if this thread holds it).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.rlock()?;
    /// let _a = lock.acquire()?;
    /// let _b = lock.acquire()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, None)?)
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.rlock()?;
    /// let _held = lock.acquire_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if another thread held it all along; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, Some(timeout))?)
    }

    /// Takes the lock if it is free or this thread's; `Ok(None)` if another thread holds it.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.rlock()?;
    /// let _a = lock.try_acquire()?.expect("free");
    /// let _b = lock.try_acquire()?.expect("mine already");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        guarded(&self.remote, Some(Duration::ZERO))
    }

    /// Releases one level that this thread holds (taken with a
    /// [forgotten](ProxyGuard::forget) guard).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.rlock()?;
    /// lock.acquire()?.forget();
    /// lock.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Manager`] if this thread does not hold it; [`Error::ManagerGone`] once the
    /// server is gone.
    pub fn release(&self) -> Result<()> {
        give(&self.remote)
    }
}

/// A semaphore that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().Semaphore(n)` and `Manager().BoundedSemaphore(n)`, with
/// [`Semaphore`](crate::Semaphore)'s method names.
///
/// A unit has no owner: any thread or process may release one, as in Python. So units taken by
/// a process that dies stay taken (unlike a lock's, which the server releases); hold a
/// [`LockProxy`] where that matters.
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes).
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let slots = m.semaphore(2)?;
/// let a = slots.acquire()?;
/// let _b = slots.acquire()?;
/// assert!(slots.try_acquire()?.is_none());
/// drop(a);
/// assert_eq!(slots.get_value()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SemaphoreProxy {
    remote: Remote,
}

impl SemaphoreProxy {
    /// Waits for a unit and takes it.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(1)?;
    /// let _unit = sem.acquire()?;
    /// assert_eq!(sem.get_value()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, None)?)
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(0)?;
    /// assert!(matches!(
    ///     sem.acquire_timeout(Duration::from_millis(10)),
    ///     Err(multiproc::Error::Timeout)
    /// ));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if no unit became free; otherwise as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, Some(timeout))?)
    }

    /// Takes a unit if one is free now; `Ok(None)` if none is.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.semaphore(1)?;
    /// let _unit = sem.try_acquire()?.expect("one is free");
    /// assert!(sem.try_acquire()?.is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        guarded(&self.remote, Some(Duration::ZERO))
    }

    /// Adds a unit (one taken with a [forgotten](ProxyGuard::forget) guard, or a new one).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let sem = m.bounded_semaphore(1)?;
    /// sem.acquire()?.forget();
    /// sem.release()?;
    /// assert!(matches!(sem.release(), Err(multiproc::Error::ReleasedTooManyTimes)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReleasedTooManyTimes`] for a bounded semaphore at its initial value (or a
    /// count that would pass `u32::MAX`); [`Error::ManagerGone`] once the server is gone.
    pub fn release(&self) -> Result<()> {
        give(&self.remote)
    }

    /// The number of free units now (Python's `get_value`).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.semaphore(3)?.get_value()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn get_value(&self) -> Result<u32> {
        count_of(call(&self.remote, SyncOp::Value)?)
    }
}

/// A flag that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().Event()`, with [`Event`](crate::Event)'s method names: `wait` blocks until some
/// process calls `set`.
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let ev = m.event()?;
/// assert!(!ev.wait_timeout(Duration::from_millis(1))?);
/// ev.set()?;
/// ev.wait()?;
/// assert!(ev.is_set()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventProxy {
    remote: Remote,
}

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let ev = m.event()?;
    /// ev.set()?;
    /// assert!(ev.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn set(&self) -> Result<()> {
        done(call(&self.remote, SyncOp::Set)?)
    }

    /// Clears the flag.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let ev = m.event()?;
    /// ev.set()?;
    /// ev.clear()?;
    /// assert!(!ev.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn clear(&self) -> Result<()> {
        done(call(&self.remote, SyncOp::Clear)?)
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// assert!(!m.event()?.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn is_set(&self) -> Result<bool> {
        bool_of(call(&self.remote, SyncOp::IsSet)?)
    }

    /// Waits until the flag is set (returns also if it was set and cleared again meanwhile).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let ev = m.event()?;
    /// ev.set()?;
    /// ev.wait()?; // set already: at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn wait(&self) -> Result<()> {
        self.waited(None).map(drop)
    }

    /// Waits at most `timeout` for the flag; returns whether it was set (now, or at some moment
    /// during the wait), like `threading.Event.wait(t)`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let ev = m.event()?;
    /// assert!(!ev.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.waited(Some(timeout))
    }

    fn waited(&self, wait: Option<Duration>) -> Result<bool> {
        let wait_ms = wait_ms(wait);
        bool_of(call(&self.remote, SyncOp::WaitSet { wait_ms })?)
    }
}

/// A condition variable that lives in a [`Manager`](crate::Manager)'s server, with its own
/// re-entrant lock, like Python's `Manager().Condition()`.
///
/// As in Python, `wait` and `notify` are called on the condition with its lock held (from
/// [`acquire`](Self::acquire)); without it they fail. The lock belongs to the thread that took
/// it, and the server releases it if that thread's process dies, as for an [`RLockProxy`].
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes); until then nothing changes there: its lock,
/// held, stays held until its guard drops or `release` is called, or the holder's thread or
/// process ends.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let cond = m.condition()?;
/// let _held = cond.acquire()?;
/// // Nobody notifies: the wait times out, holding the lock again afterwards.
/// assert!(!cond.wait_timeout(Duration::from_millis(5))?);
/// cond.notify_all()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConditionProxy {
    remote: Remote,
}

impl ConditionProxy {
    /// Takes the condition's lock (one more level at once if this thread holds it).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// let _held = cond.acquire()?;
    /// cond.notify()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn acquire(&self) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, None)?)
    }

    /// Like [`acquire`](Self::acquire), waiting at most `timeout`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// let _held = cond.acquire_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] if another thread held it all along; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ProxyGuard<'_>> {
        waited_for(guarded(&self.remote, Some(timeout))?)
    }

    /// Takes the lock if it is free or this thread's; `Ok(None)` if another thread holds it.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// assert!(cond.try_acquire()?.is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<ProxyGuard<'_>>> {
        guarded(&self.remote, Some(Duration::ZERO))
    }

    /// Releases one level of the lock this thread holds (taken with a
    /// [forgotten](ProxyGuard::forget) guard).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// cond.acquire()?.forget();
    /// cond.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Manager`] if this thread does not hold it; [`Error::ManagerGone`] once the
    /// server is gone.
    pub fn release(&self) -> Result<()> {
        give(&self.remote)
    }

    /// Releases the lock (every level), waits for a notification, and takes the lock back
    /// (at the same depth) before it returns.
    ///
    /// # Examples
    /// ```
    /// use multiproc::{ConditionProxy, Process, ValueProxy};
    ///
    /// fn ready(cond: ConditionProxy, flag: ValueProxy<bool>) {
    ///     let _held = cond.acquire().unwrap();
    ///     flag.set(true).unwrap();
    ///     cond.notify_all().unwrap();
    /// }
    ///
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let (cond, flag) = (m.condition()?, m.value(false)?);
    /// let held = cond.acquire()?;
    /// let mut p = Process::new(ready, (cond.clone(), flag.clone()));
    /// p.start()?;
    /// while !flag.get()? {
    ///     cond.wait()?;
    /// }
    /// drop(held);
    /// p.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Manager`] if this thread does not hold the lock; [`Error::ManagerGone`] once
    /// the server is gone.
    pub fn wait(&self) -> Result<()> {
        self.waited(None).map(drop)
    }

    /// Like [`wait`](Self::wait), for at most `timeout` (then it still takes the lock back,
    /// however long that takes); returns whether it was notified.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// let _held = cond.acquire()?;
    /// assert!(!cond.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.waited(Some(timeout))
    }

    fn waited(&self, wait: Option<Duration>) -> Result<bool> {
        let wait_ms = wait_ms(wait);
        bool_of(call(&self.remote, SyncOp::Wait { wait_ms })?)
    }

    /// Wakes one waiter, if any waits (the lock held).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// assert!(cond.notify().is_err()); // the lock is not held
    /// let _held = cond.acquire()?;
    /// cond.notify()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Manager`] if this thread does not hold the lock; [`Error::ManagerGone`] once
    /// the server is gone.
    pub fn notify(&self) -> Result<()> {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiters, the longest waiting first, like Python's `notify(n)`.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let cond = m.condition()?;
    /// let _held = cond.acquire()?;
    /// cond.notify_n(3)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    pub fn notify_n(&self, n: u32) -> Result<()> {
        done(call(&self.remote, SyncOp::Notify { n })?)
    }

    /// Wakes every waiter.
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
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<()> {
        done(call(&self.remote, SyncOp::NotifyAll)?)
    }
}

/// A barrier that lives in a [`Manager`](crate::Manager)'s server, like Python's
/// `Manager().Barrier(n)`, with [`Barrier`](crate::Barrier)'s method names.
///
/// A party whose process dies while it waits breaks the barrier (the others get
/// [`Error::BrokenBarrier`] within a fraction of a second), as a timeout does. A party that
/// dies before it arrives cannot be told from a slow one: `wait_timeout` covers that.
///
/// # Drop
/// Dropping a proxy frees the object on the server once no process holds a proxy of it (see
/// [`Manager`](crate::Manager)'s lifetimes).
///
/// # Examples
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let barrier = m.barrier(1)?;
/// assert_eq!(barrier.wait()?, 0); // the only party: through at once
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BarrierProxy {
    remote: Remote,
}

impl BarrierProxy {
    /// Waits until all parties have arrived. Returns this party's arrival index, `0` for the
    /// first to arrive up to `parties - 1` for the last (Python's return value).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(2)?;
    /// let other = {
    ///     let barrier = barrier.clone();
    ///     std::thread::spawn(move || barrier.wait())
    /// };
    /// let mine = barrier.wait()?;
    /// let theirs = other.join().unwrap()?;
    /// assert_eq!(mine + theirs, 1); // 0 and 1
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`]: the barrier was aborted, reset while this party waited, a
    /// party timed out, or a waiting party's process died; [`Error::ManagerGone`] once the
    /// server is gone.
    pub fn wait(&self) -> Result<u32> {
        self.arrive(None)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone (as in Python), and this party gets [`Error::BrokenBarrier`] too.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(2)?;
    /// assert!(matches!(
    ///     barrier.wait_timeout(Duration::from_millis(10)),
    ///     Err(multiproc::Error::BrokenBarrier)
    /// ));
    /// assert!(barrier.broken()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.arrive(Some(timeout))
    }

    fn arrive(&self, wait: Option<Duration>) -> Result<u32> {
        let wait_ms = wait_ms(wait);
        count_of(call(&self.remote, SyncOp::Arrive { wait_ms })?)
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Self::reset).
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(2)?;
    /// barrier.abort()?;
    /// assert!(matches!(barrier.wait(), Err(multiproc::Error::BrokenBarrier)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn abort(&self) -> Result<()> {
        done(call(&self.remote, SyncOp::Abort)?)
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// [`Error::BrokenBarrier`].
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(1)?;
    /// barrier.abort()?;
    /// barrier.reset()?;
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn reset(&self) -> Result<()> {
        done(call(&self.remote, SyncOp::Reset)?)
    }

    /// The number of parties needed to pass.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.barrier(3)?.parties()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn parties(&self) -> Result<u32> {
        count_of(call(&self.remote, SyncOp::Parties)?)
    }

    /// The number of parties waiting now.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.barrier(3)?.n_waiting()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn n_waiting(&self) -> Result<u32> {
        count_of(call(&self.remote, SyncOp::Waiting)?)
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let barrier = m.barrier(3)?;
    /// assert!(!barrier.broken()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ManagerGone`] once the server is gone.
    pub fn broken(&self) -> Result<bool> {
        bool_of(call(&self.remote, SyncOp::Broken)?)
    }
}
