//! `dummy::Pool`: the process [`Pool`](crate::Pool)'s methods over a fixed set of threads.
//!
//! Every call becomes a job (`job.rs`) cut into pieces on the one work queue (`worker.rs`):
//! `apply` is a job of one item; `map` collects its input into a vector and cuts it into a few
//! large pieces per thread, whose values land in the result's own vector; `imap` makes a job per
//! chunk as it pulls its input (`imap.rs`). Results are the process pool's
//! [`AsyncResult`], with its callbacks thread.

use std::sync::Arc;
use std::time::Duration;

use super::imap::{Chunks, IMap, Order};
use super::job::{Deliver, Job, Piece};
use super::task::Task;
use super::worker::{Config, Initializer, Shared};
use crate::error::{Error, Result};
use crate::pool::{AsyncResult, Bars, CallbackQueue, Progress, Slot, pool_size};
use crate::task::ArgTuple;

/// Pieces per thread that an automatic `map` is cut into: enough for a thread that finishes
/// early to help with the rest, few enough that each costs nothing next to its items.
const PIECES_PER_THREAD: usize = 8;

/// Configures a thread [`Pool`] with the process pool's [`PoolBuilder`](crate::PoolBuilder)
/// settings that mean something for threads (`start_method` and `start_timeout`, which are
/// about starting processes, have no counterpart). Every setting has a default; `build()`
/// starts the pool.
///
/// # Examples
/// ```
/// use std::cell::Cell;
/// use std::time::Duration;
///
/// thread_local! { static GREETING: Cell<&'static str> = const { Cell::new("") }; }
/// fn setup(greeting: &'static str) { GREETING.with(|g| g.set(greeting)); }
///
/// let pool = multiproc::dummy::Pool::builder()
///     .processes(2)
///     .initializer(setup, "hello")
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(pool.apply(|| GREETING.with(Cell::get), ())?, "hello");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Initializer>,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<Duration>,
    /// Whether map-like calls draw a progress bar (only ever set with the feature `progress`).
    progress: bool,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// Number of threads (named `processes` as Python's `ThreadPool(processes)`, so that a
    /// program written for the process pool builds this one unchanged). Default:
    /// [`cpu_count()`](crate::cpu_count).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each new thread runs once, with a clone of `arg`, before its first task
    /// (threads that replace recycled or timed-out ones too), like Python's `initializer` and
    /// `initargs`: `arg` is `()` for a function of no arguments, a tuple for several (see
    /// [`Task`]). Thread-local state it sets up is the thread's own. Default: none.
    ///
    /// If it panics, the pool cannot serve tasks: every task fails with
    /// [`Error::InitializerFailed`], as in the process pool.
    pub fn initializer<F, Args, K>(mut self, f: F, arg: Args) -> Self
    where
        F: Task<Args, K, Output = ()>,
        Args: Clone + Send + Sync + 'static,
    {
        self.init = Some(Arc::new(move || f.call(arg.clone())));
        self
    }

    /// Replace a thread after it has completed this many tasks (a piece of a `map` counts as
    /// one, as in Python): its thread-local state goes with it, and its replacement runs the
    /// initializer afresh, as Python's `ThreadPool` does. Default: threads live as long as the
    /// pool.
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Give up on an item that has run longer than `limit`: it fails with
    /// [`Error::TaskTimeout`] and a new thread takes over the rest of its thread's work, so the
    /// pool keeps its size. Default: no limit. The limit is enforced within about a quarter of
    /// itself (at most 100 ms late).
    ///
    /// A thread cannot be killed: the one that overran runs on, detached from the pool, until
    /// its function returns; then its value is dropped and the thread ends. It still holds
    /// what the function holds meanwhile (memory, locks), and it is not waited for by
    /// [`Pool::join`]. A task that may never return needs the process pool, whose timeout
    /// kills it.
    ///
    /// Items are then claimed and handed over one at a time (a few uncontended locks and a
    /// clock read each, a hundred nanoseconds or so): for a `map` of tiny items, that is most
    /// of the work.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Starts the pool's threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `processes(0)` (Python raises `ValueError`); a thread
    /// could not be started ([`Error::Io`]).
    pub fn build(self) -> Result<Pool> {
        let threads = pool_size(self.processes, "thread")?;
        let shared = Shared::start(Config {
            threads,
            init: self.init,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
        })?;
        Ok(Pool {
            shared,
            callbacks: CallbackQueue::new(),
            threads,
            bars: Bars::new(self.progress),
        })
    }

    /// Draws a progress bar on stderr for every map-like call, as the process pool's
    /// [`PoolBuilder::progress`](crate::PoolBuilder::progress) does (feature `progress`): a
    /// `map` advances piece by piece (a few pieces per thread), an `imap` chunk by chunk.
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.progress = true;
        self
    }
}

/// A pool of threads with the process [`Pool`](crate::Pool)'s methods, like Python's
/// `multiprocessing.dummy.Pool` (`ThreadPool`).
///
/// Tasks are any `Fn + Send + Sync + 'static` — closures that capture included — with
/// arguments and results that need only be `Send + 'static` (see [`Task`]). Arguments are
/// given as for the process pool, so a program switches by changing its `use` line. A task
/// that panics fails alone.
///
/// Dropping the pool terminates it, as the process pool's `Drop` does: queued tasks fail with
/// [`Error::PoolTerminated`], and so do the running ones — whose threads cannot be stopped and
/// run on, detached, until their functions return (their values are dropped). Without a
/// [`task_timeout`](PoolBuilder::task_timeout), a thread runs a whole piece of a `map` (about
/// an eighth of a thread's share) before it looks again, so it may still call the function for
/// the rest of its piece, items already failed, as Python's threads run their whole chunk; with
/// one, it stops after the current item. For a graceful end, call [`close`](Self::close) then
/// [`join`](Self::join).
///
/// # Examples
/// ```
/// use multiproc::dummy::Pool;
///
/// let pool = Pool::new(2)?;
/// let offset = 10u64;
/// assert_eq!(pool.map(move |x: u64| x + offset, 0..4u64)?, vec![10, 11, 12, 13]);
/// assert_eq!(pool.apply(|x: u64| x * x, 12)?, 144);
/// let firsts: Vec<u64> = pool.imap(|x: u64| x * x, 0u64..).take(3).collect::<Result<_, _>>()?;
/// assert_eq!(firsts, vec![0, 1, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    pub(super) shared: Arc<Shared>,
    callbacks: Arc<CallbackQueue>,
    threads: usize,
    /// The progress bars of its map-like calls, if it draws them.
    bars: Option<Bars>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dummy::Pool")
            .field("processes", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `processes` threads with default settings: `Pool::new(4)`, or `Pool::new(None)`
    /// for one per CPU ([`cpu_count()`](crate::cpu_count)), as Python's `ThreadPool()`.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: impl Into<Option<usize>>) -> Result<Pool> {
        let builder = Self::builder();
        match processes.into() {
            Some(n) => builder.processes(n),
            None => builder,
        }
        .build()
    }

    /// A builder for a configured pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            init: None,
            max_tasks_per_child: None,
            task_timeout: None,
            progress: false,
        }
    }

    /// Number of threads.
    pub fn processes(&self) -> usize {
        self.threads
    }

    fn slot<T: Send + 'static>(&self) -> Arc<Slot<T>> {
        Slot::completed_by_threads(self.callbacks.clone())
    }

    /// The progress bar of a map-like call named `call` of `len` items (if known), when the
    /// pool draws them.
    pub(super) fn bar(&self, call: &'static str, len: Option<usize>) -> Option<Arc<Progress>> {
        self.bars.as_ref().map(|bars| Arc::new(bars.bar(call, len)))
    }

    // ----- apply -----

    /// Runs `f` with `args` on a thread and waits for the result, like Python's `apply`.
    /// `args` is given as Python's `args=`: `()` for a function of no arguments, the value (or a
    /// 1-tuple) for one, a tuple for several (see [`Task`]).
    ///
    /// # Errors
    /// The task panicked ([`Error::TaskPanicked`]), timed out ([`Error::TaskTimeout`]), or the
    /// pool is closed or terminated.
    ///
    /// # Examples
    /// ```
    /// fn greet(name: String) -> String { format!("hello {name}") }
    /// fn between(lo: u32, hi: u32, x: u32) -> bool { lo <= x && x < hi }
    ///
    /// let pool = multiproc::dummy::Pool::new(1)?;
    /// assert_eq!(pool.apply(greet, "ada".to_string())?, "hello ada");
    /// assert_eq!(pool.apply(std::process::id, ())?, std::process::id()); // same process
    /// assert!(pool.apply(between, (1, 10, 5))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<F, Args, K>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: Task<Args, K>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        self.apply_async(f, args).get()
    }

    /// Runs `f` with `args` on a thread and returns at once, like Python's `apply_async`;
    /// `args` as for [`apply`](Self::apply). Attach callbacks with [`AsyncResult::on_success`]
    /// and [`AsyncResult::on_error`]; they run on the pool's callback thread, in completion
    /// order.
    ///
    /// Errors (a closed pool) are reported by the result.
    ///
    /// # Examples
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let pool = multiproc::dummy::Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// let r = pool
    ///     .apply_async(|a: String, b: String| format!("{a} {b}"), ("hello".to_string(), "world".to_string()))
    ///     .on_success(move |s| tx.send(s.len()).unwrap());
    /// assert_eq!(r.get()?, "hello world");
    /// assert_eq!(rx.recv().unwrap(), 11); // the callback ran before `get` returned
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<F, Args, K>(&self, f: F, args: Args) -> AsyncResult<F::Output>
    where
        F: Task<Args, K>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        let slot = self.slot();
        let job = Job::new(
            move |args| f.call(args),
            vec![args],
            0,
            Deliver::One(slot.clone()),
            None,
        );
        self.shared.submit([Piece::new(job, 0..1)], false);
        AsyncResult::new(slot)
    }

    // ----- map -----

    /// Applies `f` to every item on the threads and returns the results in order, like
    /// Python's `map`. The input is collected into a vector, cut into a few large pieces per
    /// thread, and each result is written in place in the returned vector.
    ///
    /// # Errors
    /// The error of the first item (by position) that failed; use [`imap`](Self::imap) to get
    /// every item's own result.
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// /// Not a serde type, and never sent anywhere: the threads share this process.
    /// struct Account { balance: Mutex<i64> }
    ///
    /// let account = Arc::new(Account { balance: Mutex::new(0) });
    /// let pool = multiproc::dummy::Pool::new(2)?;
    /// let shared = account.clone();
    /// let after = pool.map(move |x: i64| { let mut b = shared.balance.lock().unwrap(); *b += x; *b }, 1..=4)?;
    /// assert_eq!(after.len(), 4);
    /// assert_eq!(*account.balance.lock().unwrap(), 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.map_async(f, items).get()
    }

    /// [`map`](Self::map) with an explicit chunk size.
    pub fn map_chunked<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.map_async_chunked(f, items, chunksize).get()
    }

    /// Like [`map`](Self::map) but returns at once with an [`AsyncResult`] of the whole list,
    /// like Python's `map_async`.
    pub fn map_async<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> AsyncResult<Vec<R>>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.map_all(f, items.into_iter().collect(), None, "map")
    }

    /// [`map_async`](Self::map_async) with an explicit chunk size.
    pub fn map_async_chunked<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.map_all(f, items.into_iter().collect(), Some(chunksize), "map")
    }

    /// What `map` and `starmap` share: every item's result in a list, or the first error.
    fn map_all<F, T, R>(
        &self,
        f: F,
        items: Vec<T>,
        chunksize: Option<usize>,
        call: &'static str,
    ) -> AsyncResult<Vec<R>>
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        let len = items.len();
        let chunksize = chunksize.unwrap_or_else(|| len.div_ceil(self.threads * PIECES_PER_THREAD));
        let slot = self.slot();
        let bar = self.bar(call, Some(len));
        if let Some(bar) = &bar {
            bar.set_total(len);
        }
        let job = Job::new(f, items, 0, Deliver::All(slot.clone()), bar);
        self.shared.submit(Piece::cover(job, len, chunksize), false);
        AsyncResult::new(slot)
    }

    // ----- starmap -----

    /// Like [`map`](Self::map) for a function of several arguments, each item a tuple of them,
    /// like Python's `starmap`.
    ///
    /// # Examples
    /// ```
    /// fn multiply(a: i64, b: i64) -> i64 { a * b }
    /// let pool = multiproc::dummy::Pool::new(2)?;
    /// assert_eq!(pool.starmap(multiply, vec![(1, 2), (3, 4)])?, vec![2, 12]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<F, Args>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<F::Output>>
    where
        F: Task<Args, ArgTuple>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        self.starmap_async(f, items).get()
    }

    /// [`starmap`](Self::starmap) with an explicit chunk size.
    pub fn starmap_chunked<F, Args>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>>
    where
        F: Task<Args, ArgTuple>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        self.starmap_async_chunked(f, items, chunksize).get()
    }

    /// Like [`starmap`](Self::starmap) but returns at once, like Python's `starmap_async`.
    pub fn starmap_async<F, Args>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> AsyncResult<Vec<F::Output>>
    where
        F: Task<Args, ArgTuple>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        self.map_all(
            move |args| f.call(args),
            items.into_iter().collect(),
            None,
            "starmap",
        )
    }

    /// [`starmap_async`](Self::starmap_async) with an explicit chunk size.
    pub fn starmap_async_chunked<F, Args>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> AsyncResult<Vec<F::Output>>
    where
        F: Task<Args, ArgTuple>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        let items = items.into_iter().collect();
        self.map_all(move |args| f.call(args), items, Some(chunksize), "starmap")
    }

    // ----- imap -----

    /// A lazy iterator of `f(item)` results, in input order, like Python's `imap` — but the
    /// input is pulled lazily, with a bounded number of items in flight, so an endless
    /// iterator works. Each result is that item's own `Result`.
    ///
    /// Chunks are sized automatically: they start at one item and grow while the threads
    /// serve them quickly. See [`imap_chunked`](Self::imap_chunked) for a fixed size.
    pub fn imap<F, I, R>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
    {
        IMap::new(self, items.into_iter(), f, Chunks::Auto(1), Order::Input)
    }

    /// [`imap`](Self::imap) with an explicit chunk size.
    pub fn imap_chunked<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
    {
        let chunks = Chunks::Fixed(chunksize);
        IMap::new(self, items.into_iter(), f, chunks, Order::Input)
    }

    /// Like [`imap`](Self::imap), but results come in the order they finish, like Python's
    /// `imap_unordered`.
    pub fn imap_unordered<F, I, R>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
    {
        IMap::new(
            self,
            items.into_iter(),
            f,
            Chunks::Auto(1),
            Order::Completion,
        )
    }

    /// [`imap_unordered`](Self::imap_unordered) with an explicit chunk size.
    pub fn imap_unordered_chunked<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
    {
        let chunks = Chunks::Fixed(chunksize);
        IMap::new(self, items.into_iter(), f, chunks, Order::Completion)
    }

    // ----- lifetime -----

    /// Stops accepting tasks; queued and running ones complete. Like Python's `close`.
    ///
    /// An [`imap`](Self::imap) made before goes on pulling its input and handing it to the
    /// threads, as in the process pool, until its input ends, it is dropped, or
    /// [`join`](Self::join) is called.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops now: queued tasks fail with [`Error::PoolTerminated`], and so do running ones,
    /// at once. Like Python's `terminate`, except that a thread cannot be stopped: a running
    /// function goes on, detached from the pool, until it returns, and its value is dropped.
    pub fn terminate(&self) {
        self.shared.terminate();
        let _ = self.callbacks.shutdown_until(None);
    }

    /// Waits for the threads to end and for callbacks to finish. Call [`close`](Self::close)
    /// or [`terminate`](Self::terminate) first.
    ///
    /// From the moment it is called nothing more is accepted, not even from an `imap` made
    /// before `close()`: that `imap`'s items pulled but not handed in yet fail with
    /// [`Error::PoolClosed`], as in the process pool. Threads detached by a timeout or by
    /// `terminate()` are not waited for.
    ///
    /// # Errors
    /// [`Error::PoolStillRunning`] if neither was called (Python raises `ValueError`);
    /// [`Error::InvalidArgument`] if called from a task of this pool, which would wait for its
    /// own thread (Python's hangs or raises `RuntimeError`).
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if threads or callbacks still run when the time is up; the pool goes
    /// on finishing the work handed in, and `join` may be called again. Otherwise as
    /// [`join`](Self::join).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let pool = multiproc::dummy::Pool::new(1)?;
    /// let slow = pool.apply_async(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, 300);
    /// pool.close();
    /// assert!(matches!(pool.join_timeout(Duration::from_millis(10)), Err(multiproc::Error::Timeout)));
    /// pool.join()?; // the task was not lost
    /// assert_eq!(slow.get()?, 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(crate::mem::parking::deadline(timeout))
    }

    fn join_until(&self, deadline: Option<std::time::Instant>) -> Result<()> {
        self.shared.join_until(deadline)?;
        if self.callbacks.shutdown_until(deadline) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool (see [`Pool::terminate`]), like leaving Python's
    /// `with ThreadPool() as p:` block.
    fn drop(&mut self) {
        self.terminate();
    }
}
