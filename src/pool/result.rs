//! `AsyncResult`, the sinks that fill it, and the thread that runs callbacks.
//!
//! A result becomes *ready* only after its callbacks have run, as in Python: `get()` never
//! returns before the callback that was attached in time has seen the value. Callbacks run on
//! one thread per pool, in the order results completed, never on the caller's thread.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::job::{Collector, Piece, Sink, WaiterId, decode_pieces};
use super::joinable::Joinable;
use super::placed::{Misplaced, Placed};
use super::stats::Report;
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// Runs callbacks, in submission order, on a thread of its own (started on first use).
pub(crate) struct CallbackQueue {
    inner: Mutex<CallbackThread>,
}

#[derive(Default)]
struct CallbackThread {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<Joinable>,
    shut: bool,
}

impl CallbackQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(CallbackThread::default()),
        })
    }

    fn run(&self, job: Job) {
        let mut inner = lock(&self.inner);
        if inner.shut {
            drop(inner);
            // The pool was joined: run late callbacks on a thread of their own.
            // If no thread can be had, run it here rather than never.
            let job = std::sync::Arc::new(Mutex::new(Some(job)));
            let theirs = job.clone();
            let spawned = std::thread::Builder::new()
                .name("multiproc-callback".into())
                .spawn(move || {
                    if let Some(job) = lock(&theirs).take() {
                        job()
                    }
                });
            if spawned.is_err() {
                if let Some(job) = lock(&job).take() {
                    job()
                }
            }
            return;
        }
        if inner.tx.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            match Joinable::spawn("multiproc-callbacks", move || {
                for job in rx {
                    job();
                }
            }) {
                Ok(thread) => {
                    inner.tx = Some(tx);
                    inner.thread = Some(thread);
                }
                Err(_) => {
                    // No thread to be had: run the callback here rather than never.
                    drop(inner);
                    job();
                    return;
                }
            }
        }
        if let Some(tx) = &inner.tx {
            // The receiver lives until `shutdown`, which also clears `tx`.
            let _ = tx.send(job);
        }
    }

    /// Runs what is queued, then stops the thread; waits for that until `deadline` (`None`: no
    /// limit) and returns whether it is done. Later callbacks get threads of their own. Called
    /// from a callback (on the thread itself), it does not wait.
    pub(crate) fn shutdown_until(&self, deadline: Option<Instant>) -> bool {
        let end = {
            let mut inner = lock(&self.inner);
            inner.shut = true;
            inner.tx = None;
            match &inner.thread {
                Some(t) if t.id() != Some(std::thread::current().id()) => t.end(),
                _ => return true,
            }
        };
        if !end.wait_until(deadline) {
            return false;
        }
        if let Some(t) = lock(&self.inner).thread.as_mut() {
            t.join_if_ended();
        }
        true
    }
}

/// Waits on `cond` while `blocked` holds, until `deadline` (`None`: no limit); returns the guard
/// and whether `blocked` no longer holds. Poisoning is ignored, as in [`lock`].
pub(crate) fn wait_while_until<'a, T>(
    cond: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut blocked: impl FnMut(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    while blocked(&guard) {
        guard = match deadline {
            None => cond.wait(guard).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (guard, false);
                }
                cond.wait_timeout(guard, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
    (guard, true)
}

/// Locks a mutex, ignoring poisoning: the data behind our mutexes stays consistent even if a
/// user callback panicked while a guard was held (callbacks never run under our locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type OnOk<T> = Box<dyn FnOnce(&T) + Send>;
type OnErr = Box<dyn FnOnce(&Error) + Send>;

struct SlotState<T> {
    value: Option<Result<T>>,
    ready: bool,
    /// Threads asleep on `Slot::cond`: nobody to notify when it is zero.
    sleepers: usize,
    succeeded: Option<bool>,
    on_ok: Option<OnOk<T>>,
    on_err: Option<OnErr>,
    /// The task that awaits the result (`impl Future for AsyncResult`; one at most, as an
    /// `AsyncResult` is not `Clone`): woken once it is ready.
    waker: Option<Waker>,
}

/// How long a waiter spins (watching `Slot::ready`, reading the workers' answers itself)
/// before it sleeps on the condvar. A quick `apply` round trip takes 10–20 µs, and sleeping
/// then being woken costs several µs more (far more on a virtual machine, whose idle CPU must
/// be woken too); longer waits are not worth keeping a core busy (the machine may have only
/// two).
const SPIN: Duration = Duration::from_micros(50);
/// How long the first poll of an awaited result spins as [`SPIN`] does: short, as an
/// executor's thread must not be held, but as long as a quick round trip.
const FIRST_POLL_SPIN: Duration = Duration::from_micros(15);

/// `Slot::start`: none of the call's tasks was handed to a worker yet; it may be cancelled.
const NOT_STARTED: u8 = 0;
/// `Slot::start`: a task of the call was handed to a worker; too late to cancel.
const STARTED: u8 = 1;
/// `Slot::start`: the call was cancelled; its tasks are dropped unrun.
const CANCELLED: u8 = 2;

/// Where one call's final value lands.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    /// A copy of `SlotState::ready` that waiters may watch without the lock, while they spin.
    ready: AtomicBool,
    /// Whether the call has started or was cancelled: [`NOT_STARTED`], [`STARTED`] or
    /// [`CANCELLED`], moved on once by whichever comes first, a task handed to a worker
    /// ([`claim`](Self::claim)) or [`cancel`](Self::cancel).
    start: AtomicU8,
    cond: Condvar,
    callbacks: Arc<CallbackQueue>,
    /// The pool, whose workers a spinning waiter reads itself. Weak: a result may outlive its
    /// pool, and must not keep it alive. `None` for a thread pool's result (`dummy`), which its
    /// worker threads complete themselves.
    collector: Option<Weak<dyn Collector>>,
}

impl<T> Slot<T> {
    /// This slot as the identity of whoever waits on it.
    pub(crate) fn waiter_id(&self) -> WaiterId {
        WaiterId(std::ptr::from_ref(self).addr())
    }
}

impl<T: Send + 'static> Slot<T> {
    pub(crate) fn new(callbacks: Arc<CallbackQueue>, collector: Weak<dyn Collector>) -> Arc<Self> {
        Self::with(callbacks, Some(collector))
    }

    /// A slot that the threads doing the work complete themselves (a thread pool's): a waiter
    /// has nothing to read while it spins.
    pub(crate) fn completed_by_threads(callbacks: Arc<CallbackQueue>) -> Arc<Self> {
        Self::with(callbacks, None)
    }

    fn with(callbacks: Arc<CallbackQueue>, collector: Option<Weak<dyn Collector>>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                value: None,
                ready: false,
                sleepers: 0,
                succeeded: None,
                on_ok: None,
                on_err: None,
                waker: None,
            }),
            ready: AtomicBool::new(false),
            start: AtomicU8::new(NOT_STARTED),
            cond: Condvar::new(),
            callbacks,
            collector,
        })
    }

    /// Marks the slot ready (with its lock held, as `st`) and wakes its waiters.
    fn set_ready(&self, mut st: MutexGuard<'_, SlotState<T>>) {
        st.ready = true;
        self.ready.store(true, Ordering::Release);
        let sleepers = st.sleepers;
        let waker = st.waker.take();
        drop(st);
        if sleepers > 0 {
            self.cond.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Stores the final value; runs callbacks (on the callback thread) before marking it ready.
    /// The first value stays: later ones are dropped.
    pub(crate) fn complete(self: &Arc<Self>, value: Result<T>) {
        let st = lock(&self.state);
        if st.succeeded.is_none() {
            self.finish(st, value);
        }
    }

    /// Called as one of the call's tasks is handed to a worker: whether it may be. `false` once
    /// the call was cancelled (the task is then dropped unrun); after the first `true`, the
    /// call can no longer be cancelled.
    pub(crate) fn claim(&self) -> bool {
        match self.start.load(Ordering::Acquire) {
            STARTED => true,
            CANCELLED => false,
            _ => match self.start.compare_exchange(
                NOT_STARTED,
                STARTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => true,
                Err(now) => now == STARTED,
            },
        }
    }

    /// Whether the call was cancelled.
    pub(crate) fn cancelled(&self) -> bool {
        self.start.load(Ordering::Relaxed) == CANCELLED
    }

    /// Cancels the call if none of its tasks was handed to a worker and it has no outcome yet:
    /// it completes with [`Error::Cancelled`] (callbacks and all). Whether it was cancelled.
    fn cancel(self: &Arc<Self>) -> bool {
        let st = lock(&self.state);
        if st.succeeded.is_some() {
            return false;
        }
        let cancelled = self
            .start
            .compare_exchange(NOT_STARTED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if cancelled {
            self.finish(st, Err(Error::Cancelled));
        }
        cancelled
    }

    /// [`complete`](Self::complete) with the slot's lock held (`st`), the value not set yet.
    fn finish(self: &Arc<Self>, mut st: MutexGuard<'_, SlotState<T>>, value: Result<T>) {
        st.succeeded = Some(value.is_ok());
        st.value = Some(value);
        if st.on_ok.is_some() || st.on_err.is_some() {
            drop(st);
            let me = self.clone();
            self.callbacks.run(Box::new(move || me.run_callbacks()));
        } else {
            self.set_ready(st);
        }
    }

    fn run_callbacks(&self) {
        loop {
            let (value, on_ok, on_err) = {
                let mut st = lock(&self.state);
                (st.value.take(), st.on_ok.take(), st.on_err.take())
            };
            if let Some(value) = &value {
                // A panicking callback must not take the callback thread (and later callbacks)
                // down.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match value {
                    Ok(v) => {
                        if let Some(cb) = on_ok {
                            cb(v)
                        }
                    }
                    Err(e) => {
                        if let Some(cb) = on_err {
                            cb(e)
                        }
                    }
                }));
            }
            let mut st = lock(&self.state);
            st.value = value;
            // A callback attached while these ran is run now, before the result is ready.
            if st.on_ok.is_none() && st.on_err.is_none() {
                self.set_ready(st);
                return;
            }
        }
    }

    fn wait_ready(&self, deadline: Option<Instant>) -> Option<MutexGuard<'_, SlotState<T>>> {
        self.spin(deadline);
        let mut st = lock(&self.state);
        while !st.ready {
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            st.sleepers += 1;
            st = match left {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
        }
        Some(st)
    }

    /// Watches `ready` for a short while (`SPIN`, or until `deadline`), reading the workers'
    /// answers meanwhile: a quick result is then seen at once, without the cost of sleeping
    /// and being woken, or of waking the supervisor. Only a hint: the caller checks under the
    /// lock.
    fn spin(&self, deadline: Option<Instant>) {
        self.spin_for(SPIN, deadline);
    }

    /// [`spin`](Self::spin) for at most `limit`.
    fn spin_for(&self, limit: Duration, deadline: Option<Instant>) {
        if self.ready.load(Ordering::Acquire) {
            return;
        }
        let start = Instant::now();
        let end = match deadline {
            Some(d) => d.min(start + limit),
            None => start + limit,
        };
        while !self.ready.load(Ordering::Acquire) {
            if Instant::now() >= end {
                return;
            }
            // Read the result ourselves if it has arrived: that spares waiting for the
            // supervisor thread to be woken.
            if let Some(pool) = self.collector.as_ref().and_then(Weak::upgrade) {
                pool.collect_here(self.waiter_id());
            }
            // Then yield rather than spin in place: on a machine with few cores, the supervisor
            // thread may be waiting for this very core.
            std::thread::yield_now();
        }
    }

    fn take(&self, deadline: Option<Instant>) -> Result<T> {
        let mut st = self.wait_ready(deadline).ok_or(Error::Timeout)?;
        st.value.take().unwrap_or(Err(Error::ResultTaken))
    }
}

/// The result of an asynchronous call, like Python's `AsyncResult`.
///
/// The value is handed over once, like an item taken from a queue: the first
/// [`get`](Self::get) or [`get_timeout`](Self::get_timeout) that finds it takes it out, and
/// later ones return [`Error::ResultTaken`] (Python's `get` returns the value each time; a Rust
/// value is moved, not copied). A timed-out `get_timeout` takes nothing.
/// Dropping an `AsyncResult` does not cancel the call: the task still runs and its callbacks
/// still fire.
///
/// # Examples
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let result = pool.apply_async(square, 7);
/// assert_eq!(result.get()?, 49);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Self {
        Self { slot }
    }

    /// Waits for the value and hands it over.
    ///
    /// Takes `&self`, like [`get_timeout`](Self::get_timeout): the value is moved out of the
    /// result by the first call that finds it, and the `AsyncResult` stays usable for
    /// [`ready`](Self::ready) and [`successful`](Self::successful).
    ///
    /// # Errors
    /// - The task's error: it panicked ([`Error::TaskPanicked`]), its worker died
    ///   ([`Error::WorkerDied`]), it ran too long ([`Error::TaskTimeout`]), the pool was
    ///   terminated ([`Error::PoolTerminated`])…
    /// - [`Error::ResultTaken`]: an earlier `get` or `get_timeout` took the value (or the
    ///   error) out already.
    ///
    /// # Examples
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let result = pool.apply_async(square, 7);
    /// assert_eq!(result.get()?, 49);
    /// // Handed over once, like an item taken from a queue.
    /// assert!(matches!(result.get(), Err(multiproc::Error::ResultTaken)));
    /// assert_eq!(result.successful(), Some(true));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        self.slot.take(None)
    }

    /// Waits at most `timeout` for the value and hands it over, as [`get`](Self::get) does.
    ///
    /// # Errors
    /// - [`Error::Timeout`] if it is not ready in time. Nothing is lost: the value stays in
    ///   the result for the next `get` or `get_timeout`.
    /// - [`Error::ResultTaken`] if an earlier `get` or `get_timeout` took it out already.
    /// - Otherwise the task's error, as for [`get`](Self::get).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Error;
    ///
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let result = pool.apply_async(slow, 300);
    /// assert!(matches!(result.get_timeout(Duration::from_millis(10)), Err(Error::Timeout)));
    /// assert_eq!(result.get_timeout(Duration::from_secs(30))?, 300); // nothing was lost
    /// assert!(matches!(result.get_timeout(Duration::ZERO), Err(Error::ResultTaken)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.slot.take(crate::mem::parking::deadline(timeout))
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        let _ = self.slot.wait_ready(None);
    }

    /// Waits at most `timeout`; returns whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot
            .wait_ready(crate::mem::parking::deadline(timeout))
            .is_some()
    }

    /// Whether the call has completed (and its callbacks have run).
    pub fn ready(&self) -> bool {
        lock(&self.slot.state).ready
    }

    /// Whether the call completed without error, once it is ready.
    ///
    /// Before the result is ready this returns `None` where Python's `successful()` raises
    /// `ValueError`: "not known yet" is an answer here, not an error. Once ready it stays
    /// `Some`, also after [`get`](Self::get) took the value out.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// fn fails(_: u64) -> u64 { panic!("no") }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pending = pool.apply_async(slow, 500);
    /// assert_eq!(pending.successful(), None); // Python: ValueError
    /// pending.wait();
    /// assert_eq!(pending.successful(), Some(true));
    ///
    /// let failed = pool.apply_async(fails, 0);
    /// failed.wait();
    /// assert_eq!(failed.successful(), Some(false));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        let st = lock(&self.slot.state);
        if st.ready { st.succeeded } else { None }
    }

    /// Cancels the call if it has not started: if none of its tasks was handed to a worker yet,
    /// none will be, and the result completes at once with [`Error::Cancelled`] (an
    /// [`on_error`](Self::on_error) callback sees it). Returns whether it was cancelled: `false`
    /// once a task of the call was handed to a worker (it runs to its end, as a running
    /// `concurrent.futures.Future` does) or the result is complete. Python's `Pool` has no
    /// such call.
    ///
    /// "Handed to a worker" is earlier than "running". While the pool's recent tasks are quick
    /// (under a millisecond), it sends each worker up to 4 tasks ahead of the one it runs, so
    /// that a worker never waits for the next (see `pool/pace.rs`); a call sent ahead like this
    /// can no longer be cancelled. What waits in the pool's queue behind that — behind slow
    /// tasks, or for a free worker — can.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Error;
    ///
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// pool.apply(slow, 5)?; // the worker is up, and tasks are not quick
    /// let busy = pool.apply_async(slow, 300); // takes the one worker
    /// std::thread::sleep(Duration::from_millis(100));
    /// let queued = pool.map_async(slow, [1, 2, 3]);
    /// assert!(queued.cancel());
    /// assert!(matches!(queued.get(), Err(Error::Cancelled)));
    /// assert!(!busy.cancel()); // it runs
    /// assert_eq!(busy.get()?, 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.slot.cancel()
    }

    /// Whether the call was cancelled by [`cancel`](Self::cancel).
    pub fn cancelled(&self) -> bool {
        self.slot.cancelled()
    }

    /// Runs `callback` with the value when the call succeeds, on the pool's callback thread.
    /// Attach it right after submitting: callbacks run in the order results complete. One
    /// attached to a result that is complete already runs at once (on that thread); one
    /// attached after [`get`](Self::get) took the value never runs, as there is no value left
    /// to show it.
    pub fn on_success(self, callback: impl FnOnce(&T) + Send + 'static) -> Self {
        self.attach(Some(Box::new(callback)), None);
        self
    }

    /// Runs `callback` with the error when the call fails, on the pool's callback thread; as
    /// for [`on_success`](Self::on_success), attach it before [`get`](Self::get) takes the
    /// error.
    pub fn on_error(self, callback: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.attach(None, Some(Box::new(callback)));
        self
    }

    fn attach(&self, on_ok: Option<OnOk<T>>, on_err: Option<OnErr>) {
        let mut st = lock(&self.slot.state);
        if on_ok.is_some() {
            st.on_ok = on_ok;
        }
        if on_err.is_some() {
            st.on_err = on_err;
        }
        if st.ready && st.value.is_some() {
            // Already complete: run the new callback now, off this thread, and hold `ready`
            // back until it has run.
            st.ready = false;
            self.slot.ready.store(false, Ordering::Relaxed);
            drop(st);
            let me = self.slot.clone();
            self.slot
                .callbacks
                .run(Box::new(move || me.run_callbacks()));
        }
    }
}

/// Awaiting a result hands the value over, as [`get`](AsyncResult::get) does, without
/// blocking the executor's thread: the task is woken when the result is ready (after its
/// callbacks, as for `get`), by whichever thread completes it. No runtime is needed, and no
/// thread waits per future. The first poll reads the workers' answers itself for at most
/// 15 µs (`get` does for 50 µs): a quick task's answer is then taken at once, and awaiting it
/// costs what `get` does (`cargo bench --bench await_vs_get`: p50 within 0.3 µs of `get`).
///
/// Dropping the future (the `AsyncResult`) does not cancel the call: the task still runs and
/// its callbacks still fire; only its value is dropped.
///
/// # Examples
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// #     }
/// #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         match f.as_mut().poll(&mut cx) {
/// #             std::task::Poll::Ready(v) => return v,
/// #             std::task::Poll::Pending => std::thread::park(),
/// #         }
/// #     }
/// # }
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let sum = block_on(async {
///     let (a, b) = (pool.apply_async(square, 3), pool.apply_async(square, 4));
///     Ok::<_, multiproc::Error>(a.await? + b.await?)
/// })?;
/// assert_eq!(sum, 25);
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<T: Send + 'static> IntoFuture for AsyncResult<T> {
    type Output = Result<T>;
    type IntoFuture = ResultFuture<T>;

    fn into_future(self) -> ResultFuture<T> {
        ResultFuture {
            result: self,
            polled: false,
        }
    }
}

/// An [`AsyncResult`] being awaited (its [`IntoFuture`] form): what `.await` polls, and what to
/// hand to an executor's `spawn` (`tokio::spawn(result.into_future())`).
///
/// An `AsyncResult` is not a `Future` itself, so that a result kept or dropped unawaited — the
/// usual fire-and-forget of `apply_async` with a callback — draws no "future not awaited" lint:
/// dropping it never cancels anything.
#[must_use = "a future does nothing unless awaited or polled; the call runs anyway"]
pub struct ResultFuture<T> {
    result: AsyncResult<T>,
    /// Whether it was polled before (only the first poll spins, see `poll`).
    polled: bool,
}

impl<T> std::fmt::Debug for ResultFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultFuture").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Future for ResultFuture<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // The first poll reads the workers' answers itself for a few µs (a quick task is
        // answered in 10–20 µs), as `get` does for longer: that spares the wake-ups of the
        // supervisor and of this task. Later polls only look.
        let first = !std::mem::replace(&mut self.polled, true);
        let slot = &self.result.slot;
        if first {
            slot.spin_for(FIRST_POLL_SPIN, None);
        }
        let mut st = lock(&slot.state);
        if st.ready {
            return Poll::Ready(st.value.take().unwrap_or(Err(Error::ResultTaken)));
        }
        match &mut st.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Gathers every item's outcome of a call, then finishes the slot.
///
/// When the call's length is known from the start (`map` over a range or a vector), values are
/// moved to their places in the final list as they arrive ([`Placed`]); otherwise they are kept
/// in runs of consecutive items (one run per delivered batch) and put in order once, at the
/// end. Errors are kept apart. An item costs the size of its value, not of a
/// `Result<R, Error>`.
pub(crate) struct Gather<R, Out> {
    state: Mutex<GatherState<R>>,
    slot: Arc<Slot<Out>>,
    finish: fn(Outcomes<R>) -> Result<Out>,
    /// What the call reports as its outcomes arrive (`stats.rs`).
    report: Report,
}

/// Every outcome of a call: the values in place or in runs, and the errors by index.
pub(crate) struct Outcomes<R> {
    /// The final list, when the call's length was known from the start.
    placed: Option<Placed<R>>,
    runs: Vec<(usize, Vec<R>)>,
    errors: Vec<(usize, Error)>,
    /// Items with an outcome so far.
    total: usize,
}

impl<R> Outcomes<R> {
    fn new(len: Option<usize>) -> Self {
        Self {
            placed: len.filter(|&n| n > 1).and_then(Placed::new),
            runs: Vec::new(),
            errors: Vec::new(),
            total: 0,
        }
    }

    /// Keeps a run of values of items `first ..`, leaving `run` empty.
    fn keep(&mut self, first: usize, run: &mut Vec<R>) {
        let placed = self.placed.as_mut().map(|p| p.put(first, run));
        match placed {
            Some(Ok(())) => {}
            Some(Err(Misplaced::Overlap)) => {
                let e = "an item's outcome arrived twice".into();
                self.errors.push((first, Error::Protocol(e)));
            }
            // Past the length the input said it had, or no list in place.
            Some(Err(Misplaced::Outside)) | None => {
                self.runs.push((first, std::mem::take(run)));
            }
        }
    }

    /// The values in item order, or the error of the first item that failed.
    pub(crate) fn into_ordered(mut self) -> Result<Vec<R>> {
        if let Some(i) = (0..self.errors.len()).min_by_key(|&i| self.errors[i].0) {
            return Err(self.errors.swap_remove(i).1);
        }
        let missing = || Error::Protocol("an item's outcome is missing".into());
        let mut out = match self.placed {
            Some(placed) => placed.into_vec().ok_or_else(missing)?,
            None => Vec::with_capacity(self.total),
        };
        self.runs.sort_unstable_by_key(|(first, _)| *first);
        for (first, run) in self.runs {
            if first != out.len() {
                return Err(Error::Protocol("an item's outcome is missing".into()));
            }
            out.extend(run);
        }
        Ok(out)
    }
}

struct GatherState<R> {
    outcomes: Outcomes<R>,
    /// An emptied run's memory, for the next delivery to decode into.
    spare: Vec<R>,
    expected: Option<usize>,
    done: bool,
}

impl<R: DeserializeOwned + Send + 'static, Out: Send + 'static> Gather<R, Out> {
    /// A gatherer for a call of `len` items, if that is known before they are submitted.
    pub(crate) fn new(
        slot: Arc<Slot<Out>>,
        finish: fn(Outcomes<R>) -> Result<Out>,
        len: Option<usize>,
        report: Report,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GatherState {
                outcomes: Outcomes::new(len),
                spare: Vec::new(),
                expected: None,
                done: false,
            }),
            slot,
            finish,
            report,
        })
    }

    /// Declares how many items the call has; completes it if they are all in.
    pub(crate) fn set_expected(&self, n: usize) {
        self.report.set_total(n);
        let mut st = lock(&self.state);
        st.expected = Some(n);
        self.maybe_finish(st);
    }

    /// Item `index` failed with `error` without an outcome from a worker.
    fn keep_failure(&self, index: usize, error: Error) {
        let mut st = lock(&self.state);
        st.outcomes.total += 1;
        st.outcomes.errors.push((index, error));
        self.maybe_finish(st);
    }

    fn maybe_finish(&self, mut st: MutexGuard<'_, GatherState<R>>) {
        if st.done || st.expected != Some(st.outcomes.total) {
            return;
        }
        st.done = true;
        let outcomes = std::mem::replace(&mut st.outcomes, Outcomes::new(None));
        st.spare = Vec::new();
        drop(st);
        self.report.ended(outcomes.total, outcomes.errors.len());
        self.slot.complete((self.finish)(outcomes));
    }
}

impl<R: DeserializeOwned + Send + 'static, Out: Send + 'static> Sink for Gather<R, Out> {
    fn deliver(&self, first: usize, count: usize, bytes: &[u8]) {
        let spare = std::mem::take(&mut lock(&self.state).spare);
        let mut runs = Vec::new();
        let mut errors = Vec::new();
        decode_pieces::<R>(first, count, bytes, spare, |at, piece| match piece {
            Piece::Values(run) => runs.push((at, run)),
            Piece::Failed(e) => errors.push((at, e)),
        });
        self.report.answered(count, errors.len());
        for (at, e) in &errors {
            self.report.task_failed(*at, e);
        }
        let mut st = lock(&self.state);
        st.outcomes.total += count;
        for (first, mut run) in runs {
            st.outcomes.keep(first, &mut run);
            if run.capacity() > st.spare.capacity() && st.outcomes.placed.is_some() {
                st.spare = run;
            }
        }
        st.outcomes.errors.extend(errors);
        self.maybe_finish(st);
    }

    fn waiter(&self) -> Option<WaiterId> {
        Some(self.slot.waiter_id())
    }

    fn abandoned(&self) -> bool {
        let cancelled = self.slot.cancelled();
        if cancelled {
            self.report.cancelled();
        }
        cancelled
    }

    fn claim(&self) -> bool {
        let claimed = self.slot.claim();
        if !claimed {
            self.report.cancelled();
        }
        claimed
    }

    fn unsent(&self, index: usize, error: Error) {
        self.report.unsent(index, &error);
        self.keep_failure(index, error);
    }

    fn fail(&self, index: usize, error: Error) {
        self.report.failed(index, &error);
        self.keep_failure(index, error);
    }
}

/// `map`'s finish: every value in order, or the error of the first item that failed.
pub(crate) fn all_or_first_error<R>(outcomes: Outcomes<R>) -> Result<Vec<R>> {
    outcomes.into_ordered()
}

/// `apply`'s finish: the single item.
pub(crate) fn single<R>(outcomes: Outcomes<R>) -> Result<R> {
    outcomes
        .into_ordered()?
        .pop()
        .ok_or_else(|| Error::Protocol("no outcome for the task".into()))
}
