//! `Pool`: a fixed set of worker processes that run tasks, like Python's `multiprocessing.Pool`.
//!
//! The handle is cheap to share between threads (`&Pool` is enough for every call). Work goes
//! through an inbox to the supervisor thread (`supervisor.rs`), which owns the workers; results
//! come back through per-call sinks (`result.rs`, `imap.rs`). Items are encoded on the calling
//! thread, chunked, and sent as one frame per chunk; workers answer a chunk with a frame per
//! batch of results. A caller that submits a little work, or waits for its result, may do the
//! supervisor's part itself when it is free (see `supervisor.rs`): that saves a thread
//! wake-up on every round trip.

mod deaths;
mod handoff;
mod imap;
mod job;
mod joinable;
mod link;
mod pace;
mod placed;
mod progress;
mod readahead;
mod result;
mod starts;
mod stats;
mod supervisor;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use imap::IMap;
pub(crate) use imap::Wait;
pub use result::{AsyncResult, ResultFuture};
pub use stats::{PoolStats, WorkerDeaths, WorkerStats};

use crate::error::{Error, Result};
use crate::launch::{Launch, StartMethod};
use crate::task::{self, ArgTuple, Data, OneArg, Task};
use crate::wire::codec;
use crate::wire::fds::{self, FdSet};
use handoff::{Admission, Config};
#[cfg(feature = "mpi")]
pub(crate) use handoff::{InitTask, PoolState, Shared};
#[cfg(not(feature = "mpi"))]
use handoff::{InitTask, PoolState, Shared};
use imap::Order;
#[cfg(feature = "mpi")]
pub(crate) use job::Offsets;
pub(crate) use job::{Chunk, Sink};
use job::{ChunkBuilder, Chunking, python_chunksize};
#[cfg(feature = "fuzzing")]
pub(crate) use job::{Piece, decode_pieces};
use joinable::{Joinable, ThreadEnd};
#[cfg(feature = "mpi")]
pub(crate) use link::deliver_outcomes;
pub(crate) use progress::{Bars, Progress};
use readahead::Readahead;
use result::Gather;
pub(crate) use result::{CallbackQueue, Slot};
pub(crate) use result::{lock, wait_while_until};
#[cfg(feature = "mpi")]
pub(crate) use stats::Counters;
use stats::{CallSpan, Report};
use supervisor::Supervisor;

/// How long work waits while no worker can be started (see [`PoolBuilder::start_timeout`]).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures a [`Pool`]. Every setting has a default; `build()` starts the pool.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// fn setup(greeting: String) { let _ = greeting; }
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::builder()
///     .processes(2)
///     .initializer(setup, "hello".to_string())
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(pool.map(square, 0..4u64)?, vec![0, 1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<InitTask>>,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<Duration>,
    start_timeout: Duration,
    /// `None`: the process-wide default, fixed when the pool is built.
    start_method: Option<StartMethod>,
    /// A test's launcher, in place of the start method's.
    launch: Option<&'static dyn Launch>,
    /// Whether the pool spans the ranks of an MPI job, if there is one.
    #[cfg(feature = "mpi")]
    mpi: bool,
    #[cfg(feature = "mpi")]
    processes_per_rank: Option<usize>,
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
            .field("start_timeout", &self.start_timeout)
            .field("start_method", &self.start_method)
            .finish()
    }
}

impl PoolBuilder {
    /// Number of worker processes. Default: [`cpu_count()`](crate::cpu_count).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each new worker runs once, with `arg`, before its first task (including
    /// workers that replace dead or recycled ones), like Python's `initializer` and `initargs`:
    /// `arg` is `()` for a function of no arguments, a tuple for several (see [`Task`]).
    /// Default: none.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Mutex;
    /// static GREETING: Mutex<String> = Mutex::new(String::new());
    ///
    /// fn setup(word: String, times: usize) { *GREETING.lock().unwrap() = word.repeat(times); }
    /// fn greeting() -> String { GREETING.lock().unwrap().clone() }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder()
    ///     .processes(2)
    ///     .initializer(setup, ("hi".to_string(), 2))
    ///     .build()?;
    /// assert_eq!(pool.apply(greeting, ())?, "hihi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// If it panics, the pool cannot serve tasks: every task fails with
    /// [`Error::InitializerFailed`] (Python instead respawns failing workers forever).
    ///
    /// An initializer that never returns keeps its worker from serving tasks, as in Python;
    /// that is the "initializer as worker" pattern (see `examples/pool_queue_workers.rs`,
    /// where initializers drain a [`Queue`](crate::Queue)). `task_timeout` does not apply to
    /// it; tasks submitted to such a pool wait, so use bounded waits or `terminate()`.
    pub fn initializer<F, Args, K>(mut self, f: F, arg: Args) -> Self
    where
        F: Task<Args, K, Output = ()>,
        Args: Data,
    {
        task::reject_captures!(F, Args, K);
        let entry = task::entry_for::<F, Args, K>(f);
        let mut fds = FdSet::default();
        let mut payload = Vec::new();
        self.init = Some(
            fds::collect(&mut fds, || {
                codec::encode_message(&arg, "initializer argument", &mut payload)
            })
            .map(|()| InitTask {
                entry,
                payload,
                fds: Arc::new(fds),
            })
            .map_err(Error::from),
        );
        self
    }

    /// Replace a worker after it has completed this many tasks (a chunk of a `map` counts as
    /// one task, as in Python). Default: workers live as long as the pool.
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Kill a worker whose current task has run longer than `limit`; the task fails with
    /// [`Error::TaskTimeout`] and a new worker takes over. Default: no limit. The limit is
    /// enforced within about a quarter of itself (at most 100 ms late).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// How long work may wait while no worker can be started. Default: 5 s.
    ///
    /// A worker that cannot be started (no descriptor or process slot left, no memory) or
    /// that dies before it can serve (killed, crashed in the initializer) is tried again, after
    /// a back-off that doubles from 50 ms to at most 1 s, for as long as the pool lives: a pool
    /// serves again within a second of the cause going away. Meanwhile, once starts have been
    /// failing with no worker serving for `limit`, and no worker is alive at all, waiting
    /// tasks fail with [`Error::Spawn`] naming the operating system's cause, after one more
    /// attempt made since they were submitted has failed too. A worker that is merely slow to
    /// start is not a failure: tasks wait for it. Failures beside a serving worker only slow
    /// the retries down.
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// How workers are started. Default: the process-wide
    /// [`get_start_method`](crate::get_start_method), itself [`StartMethod::Spawn`] unless
    /// [`set_start_method`](crate::set_start_method) changed it.
    ///
    /// # Examples
    /// ```
    /// use multiproc::{Pool, StartMethod};
    /// static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    /// fn look_up(i: usize) -> u64 { TABLE.get().map_or(0, |t| t[i]) }
    ///
    /// multiproc::init();
    /// TABLE.set((0..1000).map(|x| x * x).collect()).unwrap();
    /// // Forked workers see the table as it was when they started: nothing is sent.
    /// let pool = Pool::builder().processes(2).start_method(StartMethod::Fork).build()?;
    /// assert_eq!(pool.map(look_up, [3usize, 999])?, vec![9, 998_001]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The initializer, already encoded (an MPI agent's pool gets rank 0's).
    #[cfg(feature = "mpi")]
    pub(crate) fn raw_initializer(mut self, init: InitTask) -> Self {
        self.init = Some(Ok(init));
        self
    }

    /// Spans the ranks of the MPI job this program runs in (feature `mpi`): every rank but 0
    /// runs workers for the pool, rank 0 hands out the work. Without `mpirun`, or with one
    /// rank, the pool is a local one, of [`processes_per_rank`](Self::processes_per_rank)
    /// workers (or [`processes`](Self::processes), or one per CPU): the same program runs on a
    /// laptop. See [`multiproc::mpi`](crate::mpi).
    ///
    /// Everything else works as on one machine: each rank starts its workers with the pool's
    /// start method, runs its initializer in each, recycles them after `max_tasks_per_child`
    /// and kills those that overrun `task_timeout`. Under `mpirun`, [`processes`](Self::processes)
    /// is not used: [`processes_per_rank`](Self::processes_per_rank) says how many workers each
    /// rank runs, and [`Pool::processes`] tells the total. A rank whose initializer fails is
    /// taken out of the pool (its tasks go to the others); `main` never runs on the other
    /// ranks, so their workers see only what the arguments and the initializer bring, whatever
    /// the start method.
    ///
    /// # Examples
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// // Under `mpirun -n 5`, 4 ranks of 2 workers; here, 2 local workers.
    /// let pool = multiproc::Pool::builder().mpi().processes_per_rank(2).build()?;
    /// assert_eq!(pool.map(square, 0..4u64)?, vec![0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "mpi")]
    pub fn mpi(mut self) -> Self {
        self.mpi = true;
        self
    }

    /// Worker processes on each rank of an [`mpi`](Self::mpi) pool. Default: each rank's share
    /// of its machine's CPUs (those it may run on, divided among the ranks on that machine
    /// that serve; rank 0 only hands out work).
    #[cfg(feature = "mpi")]
    pub fn processes_per_rank(mut self, n: usize) -> Self {
        self.processes_per_rank = Some(n);
        self
    }

    /// Draws a progress bar on stderr for every map-like call of the pool (`map`, `starmap`,
    /// `imap`, `imap_unordered` and their `_async` and `_chunked` forms; feature `progress`):
    /// items done, of how many, the rate, the time left and how many failed, like mpire's
    /// `progress_bar=True` or a `tqdm` around the call. Drawn only when stderr is a terminal
    /// (nothing is written to a pipe or a file), at most 20 times a second; an `imap` whose
    /// input's length is not known shows a count until its input ends. The bar advances as
    /// results arrive, once per batch of results a worker sends, not per item.
    ///
    /// # Examples
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).progress().build()?;
    /// let squares = pool.map(square, 0..10_000u64)?; // a bar, in a terminal
    /// assert_eq!(squares[100], 10_000);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// Starts the pool. Workers are started in the background; tasks submitted before they are
    /// ready wait in the queue.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `processes(0)` (Python raises `ValueError`); the
    /// initializer's argument could not be encoded, or the supervisor thread could not start.
    /// Workers that cannot be started are tried again; tasks that wait for them longer than the
    /// [`start_timeout`](Self::start_timeout) fail with [`Error::Spawn`].
    pub fn build(self) -> Result<Pool> {
        #[cfg(feature = "mpi")]
        if self.mpi {
            if let Some(world) = crate::mpi::spanning() {
                return self.build_over_ranks(world);
            }
        }
        let processes = pool_size(self.local_processes(), "worker process")?;
        let init = self.init.transpose()?;
        let shared = Shared::new(Config {
            processes,
            init,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            start_timeout: self.start_timeout,
            launch: self
                .launch
                .unwrap_or_else(|| crate::launch::launcher(self.start_method)),
        })?;
        let supervisor = Supervisor::new(shared.clone());
        let mut pool = Pool::start(shared, processes, "multiproc-supervisor", move || {
            supervisor.run()
        })?;
        pool.bars = Bars::new(self.progress);
        Ok(pool)
    }

    /// How many workers a local pool gets: an [`mpi`](Self::mpi) pool off MPI has its
    /// per-rank count.
    fn local_processes(&self) -> Option<usize> {
        #[cfg(feature = "mpi")]
        if self.mpi {
            return self.processes_per_rank.or(self.processes);
        }
        self.processes
    }

    /// Builds a pool whose workers run on the other ranks of `world` (see [`mpi`](Self::mpi)).
    #[cfg(feature = "mpi")]
    fn build_over_ranks(self, world: &crate::mpi::World) -> Result<Pool> {
        if self.processes_per_rank == Some(0) {
            return Err(Error::InvalidArgument(
                "a pool needs at least one worker process per rank (`processes_per_rank(0)`)"
                    .into(),
            ));
        }
        let init = match self.init.transpose()? {
            Some(init) if !init.fds.is_empty() => {
                return Err(Error::Encode(format!(
                    "the initializer's argument: {}",
                    crate::mpi::HANDLES_STAY_LOCAL
                )));
            }
            init => init.map(|i| (i.entry, i.payload)),
        };
        let template = crate::mpi::PoolSpec {
            workers: 0,
            init,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            start_timeout: self.start_timeout,
            // The agents' own default is not the one `main` set here: `main` never runs there.
            start_method: Some(
                self.start_method
                    .unwrap_or_else(crate::launch::get_start_method),
            ),
        };
        let shared = Shared::without_core()?;
        let remote = crate::mpi::open(
            world,
            template,
            self.processes_per_rank,
            shared.stats.clone(),
        )?;
        let processes = remote.workers();
        let served = shared.clone();
        let mut pool = Pool::start(shared, processes, "multiproc-mpi-pool", move || {
            remote.run(served)
        })?;
        pool.bars = Bars::new(self.progress);
        Ok(pool)
    }
}

/// A pool of worker processes, like Python's `multiprocessing.Pool`.
///
/// Tasks are `fn` items or closures that capture nothing (data goes in the argument), with
/// `serde` arguments and results. A task that panics fails alone; a worker that dies — killed,
/// crashed, out of memory — fails only the task it was running, and a new worker takes its
/// place.
///
/// # What a wait is bounded by
/// The pool's own troubles never leave a call waiting: a worker's death fails its task at once
/// ([`Error::WorkerDied`]); workers that cannot be started fail the waiting tasks after
/// [`start_timeout`](PoolBuilder::start_timeout) (5 s by default, [`Error::Spawn`]); a
/// [`task_timeout`](PoolBuilder::task_timeout), when set, kills a task that runs too long.
/// What user code does is not bounded: without `task_timeout`, a task that never returns keeps
/// whoever waits for its result waiting; an [`initializer`](PoolBuilder::initializer) that
/// never returns keeps its worker from serving (`task_timeout` does not apply to it), so when
/// no worker's initializer returns, every task waits; and [`join`](Self::join) waits for the
/// tasks already handed in. To bound a wait yourself, use [`AsyncResult::get_timeout`],
/// [`IMap::next_timeout`] or [`join_timeout`](Self::join_timeout).
///
/// Dropping the pool terminates it, like leaving Python's `with Pool() as p:` block: workers
/// are killed and unfinished tasks fail with [`Error::PoolTerminated`]. For a graceful end,
/// call [`close`](Self::close) then [`join`](Self::join).
///
/// Workers are not among the children a program waits for at exit (they are not listed by
/// [`active_children`](crate::active_children)): a pool that is never dropped — leaked, or in a
/// `static` — has its workers killed when the program ends, like Python's daemonic pool
/// workers. Processes a task starts by other means than `multiproc` (`Command::spawn`, a plain
/// `fork()`) are the task's own and outlive the pool, as in Python (why: the README, "What
/// differs from Python").
///
/// # Examples
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 12)?, 144);
/// let firsts: Vec<u64> = pool.imap(square, 0u64..).take(3).collect::<Result<_, _>>()?;
/// assert_eq!(firsts, vec![0, 1, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Joinable>,
    /// When the supervisor thread has ended (its workers are gone).
    supervisor_end: ThreadEnd,
    callbacks: Arc<CallbackQueue>,
    processes: usize,
    /// The progress bars of its map-like calls, if it draws them (`PoolBuilder::progress`).
    bars: Option<Bars>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

/// An input iterated as it came, or first collected.
enum Either<A, B> {
    Sized(A),
    Collected(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        match self {
            Either::Sized(a) => a.next(),
            Either::Collected(b) => b.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Either::Sized(a) => a.size_hint(),
            Either::Collected(b) => b.size_hint(),
        }
    }
}

/// How many workers a pool of `processes` has (one per CPU by default), for the process pool and
/// the thread pool (`dummy`), whose workers are each a `worker` ("worker process", "thread").
///
/// # Errors
/// [`Error::InvalidArgument`] for `Some(0)`, as Python raises `ValueError` ("Number of
/// processes must be at least 1").
pub(crate) fn pool_size(processes: Option<usize>, worker: &str) -> Result<usize> {
    match processes {
        Some(0) => Err(Error::InvalidArgument(format!(
            "a pool needs at least one {worker} (`processes(0)`)"
        ))),
        Some(n) => Ok(n),
        None => Ok(crate::cpu_count().max(1)),
    }
}

/// The length an input says it has exactly (a range, a vector), if it does. Only a hint: an
/// iterator may say wrong, and nothing that depends on it may go wrong then (see `Placed`).
pub(crate) fn exact_len(items: &impl Iterator) -> Option<usize> {
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

impl Pool {
    /// A pool handle over `shared`, served by `serve` on a thread named `thread`.
    fn start(
        shared: Arc<Shared>,
        processes: usize,
        thread: &str,
        serve: impl FnOnce() + Send + 'static,
    ) -> Result<Pool> {
        let supervisor = Joinable::spawn(thread, serve)?;
        Ok(Pool {
            shared,
            supervisor_end: supervisor.end(),
            supervisor: Mutex::new(supervisor),
            callbacks: CallbackQueue::new(),
            processes,
            bars: None,
        })
    }

    /// What a call named `call` of `len` items (if known) reports as its outcomes arrive: to
    /// the pool's counters, in its span, and to a progress bar if it is `map_like` and the
    /// pool draws them.
    pub(super) fn report(&self, call: &'static str, len: Option<usize>, map_like: bool) -> Report {
        let bar = self
            .bars
            .as_ref()
            .filter(|_| map_like)
            .map(|bars| Arc::new(bars.bar(call, len)));
        Report::new(self.shared.stats.clone(), bar, CallSpan::new(call, len))
    }

    /// What the pool has done since it was built: its workers (alive, started, retired, died
    /// by cause, and each live one's tasks and busy share) and its tasks (submitted,
    /// completed, failed, timed out, cancelled, in flight). Counted as things happen, with
    /// atomic additions per batch of results: cheap enough to leave on, and always on.
    ///
    /// A pool over MPI ranks counts its tasks; its workers live on the ranks and are not
    /// listed.
    ///
    /// # Examples
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// pool.map(square, 0..100u64)?;
    /// let stats = pool.stats();
    /// assert_eq!((stats.tasks_submitted, stats.tasks_completed), (100, 100));
    /// assert_eq!(stats.workers_died.total(), 0);
    /// assert!(stats.workers.iter().all(|w| (0.0..=1.0).contains(&w.busy)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats.snapshot()
    }

    /// A pool of `processes` worker processes with default settings: `Pool::new(4)`, or
    /// `Pool::new(None)` for one per CPU ([`cpu_count()`](crate::cpu_count)), as Python's
    /// `Pool()`.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(None)?;
    /// assert_eq!(pool.processes(), multiproc::cpu_count());
    /// assert_eq!(multiproc::Pool::new(3)?.processes(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
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
            start_timeout: DEFAULT_START_TIMEOUT,
            start_method: None,
            launch: None,
            #[cfg(feature = "mpi")]
            mpi: false,
            #[cfg(feature = "mpi")]
            processes_per_rank: None,
            progress: false,
        }
    }

    /// Number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Queues chunks; if the pool refuses them, their items fail with the reason.
    /// Queues chunks (of an admitted call, if `admission`), or fails their items with the reason
    /// they were refused. Returns whether they were queued.
    pub(crate) fn submit_or_fail(&self, chunks: Vec<Chunk>, admission: Option<&Admission>) -> bool {
        let tasks = chunks.iter().map(Chunk::len).sum();
        self.shared.stats.submitted(tasks);
        match self.shared.submit(chunks, admission) {
            Ok(()) => true,
            Err((refusal, chunks)) => {
                for c in &chunks {
                    c.fail(0..c.len(), |_| refusal.to_error());
                }
                false
            }
        }
    }

    /// Admits an `imap` (see [`Admission`]); `None` unless the pool runs.
    pub(crate) fn admit(&self) -> Option<Admission> {
        self.shared.admit()
    }

    // ----- apply -----

    /// Runs `f` with `args` in a worker and waits for the result, like Python's `apply`.
    /// `args` is given as Python's `args=`: `()` for a function of no arguments, the value (or a
    /// 1-tuple) for one, a tuple for several (see [`Task`]).
    ///
    /// # Errors
    /// The task panicked ([`Error::TaskPanicked`]), its worker died ([`Error::WorkerDied`]), it
    /// timed out, the pool is closed or terminated, or a value could not be encoded or decoded.
    ///
    /// # Examples
    /// ```
    /// fn greet(name: String) -> String { format!("hello {name}") }
    /// fn pid() -> u32 { std::process::id() }
    /// fn between(lo: u32, hi: u32, x: u32) -> bool { lo <= x && x < hi }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// assert_eq!(pool.apply(greet, "ada".to_string())?, "hello ada");
    /// assert_ne!(pool.apply(pid, ())?, std::process::id());
    /// assert!(pool.apply(between, (1, 10, 5))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<F, Args, K>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: Task<Args, K>,
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, K);
        self.apply_async(f, args).get()
    }

    /// Runs `f` with `args` in a worker and returns at once, like Python's `apply_async`;
    /// `args` as for [`apply`](Self::apply). Attach callbacks with [`AsyncResult::on_success`]
    /// and [`AsyncResult::on_error`].
    ///
    /// Errors (a closed pool, an argument that cannot be encoded) are reported by the result.
    ///
    /// # Examples
    /// ```
    /// fn test(s1: String, s2: String) -> String { format!("{s1} {s2}") }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.apply_async(test, ("hello".to_string(), "world".to_string()));
    /// assert_eq!(r.get()?, "hello world");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<F, Args, K>(&self, f: F, args: Args) -> AsyncResult<F::Output>
    where
        F: Task<Args, K>,
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, K);
        let entry = task::entry_for::<F, Args, K>(f);
        self.submit_collect(
            entry,
            std::iter::once(args),
            Chunking::Fixed(1),
            result::single,
            None,
        )
    }

    fn submit_collect<T, R, Out>(
        &self,
        entry: i64,
        mut items: impl Iterator<Item = T>,
        chunking: Chunking,
        finish: fn(result::Outcomes<R>) -> Result<Out>,
        call: Option<&'static str>,
    ) -> AsyncResult<Out>
    where
        T: Serialize,
        R: DeserializeOwned + Send + 'static,
        Out: Send + 'static,
    {
        let collector: std::sync::Weak<dyn job::Collector> = Arc::downgrade(&self.shared) as _;
        let slot = Slot::new(self.callbacks.clone(), collector);
        let len = exact_len(&items);
        let report = self.report(call.unwrap_or("apply"), len, call.is_some());
        let sink = Gather::new(slot.clone(), finish, len, report);
        let mut builder = ChunkBuilder::with(sink.clone() as Arc<dyn Sink>, entry, chunking);
        let mut chunks = Vec::new();
        let mut queued_items = 0;
        while let Some(chunk) = builder.fill(&mut items) {
            queued_items += chunk.len();
            chunks.push(chunk);
            // Hand chunks over as they are made, so workers start while we encode; tiny chunks
            // go in batches, to keep the inbox lock and wake-ups off the hot path.
            if queued_items >= 1024 || chunks.len() >= 256 {
                self.submit_or_fail(std::mem::take(&mut chunks), None);
                queued_items = 0;
            }
        }
        chunks.extend(builder.finish());
        self.submit_or_fail(chunks, None);
        sink.set_expected(builder.count());
        AsyncResult::new(slot)
    }

    // ----- map -----

    /// Applies `f` to every item in workers and returns the results in order, like Python's
    /// `map`. Chunks are sized automatically: they start small and double (the workers start
    /// while the rest is encoded), then each takes half of a worker's share of what is left
    /// (the largest, twice Python's automatic size), down to an eighth of Python's size, so
    /// that the end of the call never waits long for one worker. That needs the input's length: an
    /// input that knows it exactly (a range, a vector) is encoded as it is iterated, any other
    /// is read whole first. The results are moved into the returned list as they arrive.
    ///
    /// # Errors
    /// The error of the first item (by position) that failed; use [`imap`](Self::imap) to get
    /// every item's own result.
    pub fn map<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Fn(T) -> R + Copy + Send + Sync + 'static,
        T: Data,
        R: Data,
    {
        task::reject_captures!(F, T, OneArg);
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
        F: Fn(T) -> R + Copy + Send + Sync + 'static,
        T: Data,
        R: Data,
    {
        task::reject_captures!(F, T, OneArg);
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
        F: Fn(T) -> R + Copy + Send + Sync + 'static,
        T: Data,
        R: Data,
    {
        task::reject_captures!(F, T, OneArg);
        let (items, chunking) = self.sized_input(items);
        self.map_all::<_, _, OneArg>(f, items, chunking, "map")
    }

    /// [`map_async`](Self::map_async) with an explicit chunk size.
    pub fn map_async_chunked<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>>
    where
        F: Fn(T) -> R + Copy + Send + Sync + 'static,
        T: Data,
        R: Data,
    {
        task::reject_captures!(F, T, OneArg);
        self.map_all::<_, _, OneArg>(f, items.into_iter(), Chunking::Fixed(chunksize), "map")
    }

    /// What `map` and `starmap` share: every item's result in a list, or the first error.
    fn map_all<F, A, K>(
        &self,
        f: F,
        items: impl Iterator<Item = A>,
        chunking: Chunking,
        call: &'static str,
    ) -> AsyncResult<Vec<F::Output>>
    where
        F: Task<A, K>,
        A: Data,
        F::Output: Data,
    {
        let entry = task::entry_for::<F, A, K>(f);
        self.submit_collect(
            entry,
            items,
            chunking,
            result::all_or_first_error,
            Some(call),
        )
    }

    // ----- starmap -----

    /// Like [`map`](Self::map) for a function of several arguments, each item a tuple of them,
    /// like Python's `starmap`.
    ///
    /// # Examples
    /// ```
    /// fn multiply(a: i64, b: i64) -> i64 { a * b }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
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
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, ArgTuple);
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
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, ArgTuple);
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
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, ArgTuple);
        let (items, chunking) = self.sized_input(items);
        self.map_all::<_, _, ArgTuple>(f, items, chunking, "starmap")
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
        Args: Data,
        F::Output: Data,
    {
        task::reject_captures!(F, Args, ArgTuple);
        self.map_all::<_, _, ArgTuple>(f, items.into_iter(), Chunking::Fixed(chunksize), "starmap")
    }

    // ----- imap -----

    /// A lazy iterator of `f(item)` results, in input order, like Python's `imap` — but the
    /// input is pulled lazily, with a bounded number of items in flight, so an endless
    /// iterator works. Each result is that item's own `Result`.
    ///
    /// Chunks are sized automatically: they start at one item, so that slow items are spread
    /// one at a time, and grow while the workers serve them fast, up to the size `map` would
    /// use when the input knows its exact length. At most a few chunks per worker are in
    /// flight, bounded in items and bytes. See [`imap_chunked`](Self::imap_chunked) for a
    /// fixed size.
    pub fn imap<F, I, R>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Copy + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Data,
        R: Data,
    {
        task::reject_captures!(F, I::Item, OneArg);
        let items = items.into_iter();
        let readahead = self.auto_readahead(&items);
        IMap::new(
            self,
            items,
            task::entry_for::<_, _, OneArg>(f),
            readahead,
            Order::Input,
        )
    }

    /// [`imap`](Self::imap) with an explicit chunk size.
    pub fn imap_chunked<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Copy + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Data,
        R: Data,
    {
        task::reject_captures!(F, I::Item, OneArg);
        IMap::new(
            self,
            items.into_iter(),
            task::entry_for::<_, _, OneArg>(f),
            Readahead::fixed(chunksize, self.processes),
            Order::Input,
        )
    }

    /// Like [`imap`](Self::imap), but results come in the order they finish, like Python's
    /// `imap_unordered`.
    pub fn imap_unordered<F, I, R>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + Copy + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Data,
        R: Data,
    {
        task::reject_captures!(F, I::Item, OneArg);
        let items = items.into_iter();
        let readahead = self.auto_readahead(&items);
        IMap::new(
            self,
            items,
            task::entry_for::<_, _, OneArg>(f),
            readahead,
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
        F: Fn(I::Item) -> R + Copy + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Data,
        R: Data,
    {
        task::reject_captures!(F, I::Item, OneArg);
        IMap::new(
            self,
            items.into_iter(),
            task::entry_for::<_, _, OneArg>(f),
            Readahead::fixed(chunksize, self.processes),
            Order::Completion,
        )
    }

    /// The input of `map`-like calls and their automatic chunks ([`Chunking::guided`]), which
    /// need its length: an input that knows its exact length (a range, a vector) is encoded as
    /// it is iterated; any other is read whole first, as Python does.
    fn sized_input<T>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> (
        Either<impl Iterator<Item = T>, std::vec::IntoIter<T>>,
        Chunking,
    ) {
        let items = items.into_iter();
        match exact_len(&items) {
            Some(len) => (Either::Sized(items), Chunking::guided(len, self.processes)),
            None => {
                let all: Vec<T> = items.collect();
                let chunking = Chunking::guided(all.len(), self.processes);
                (Either::Collected(all.into_iter()), chunking)
            }
        }
    }

    /// Automatic chunks for a lazy input: never larger than `map`'s for an input that knows its
    /// exact length (so that its last chunks still spread over the workers).
    fn auto_readahead(&self, items: &impl Iterator) -> Readahead {
        let cap = exact_len(items).map_or(usize::MAX, |len| python_chunksize(len, self.processes));
        Readahead::growing(cap, self.processes)
    }

    // ----- lifetime -----

    /// Stops accepting tasks; queued and running ones complete. Like Python's `close`.
    ///
    /// An [`imap`](Self::imap) made before goes on pulling its input and handing it to the
    /// workers, as Python accepts a whole `imap` when it is called; the workers exit once no
    /// work and no such `imap` is left (its input has ended, or it was dropped), or at
    /// [`join`](Self::join).
    pub fn close(&self) {
        let _ = self.shared.set_state(PoolState::Closed);
    }

    /// Stops now: workers are killed, unfinished tasks fail with [`Error::PoolTerminated`].
    /// Like Python's `terminate`. Returns once the workers are gone.
    pub fn terminate(&self) {
        let _ = self.shared.set_state(PoolState::Terminating);
        let _ = self.wait_supervisor(None);
    }

    /// Waits for the workers to exit and for callbacks to finish. Call [`close`](Self::close)
    /// or [`terminate`](Self::terminate) first.
    ///
    /// From the moment it is called, nothing more is accepted, not even from an `imap` made
    /// before `close()`: the work already handed in completes, that `imap`'s items pulled but
    /// not handed in yet fail with [`Error::PoolClosed`], and it ends after them, pulling no
    /// more of its input. So `join` never waits for an input that
    /// nobody pulls (an `imap` held, unconsumed, by the thread that joins). Python instead
    /// reads every `imap`'s whole input at once, and `join` waits for all of it.
    ///
    /// Called from a callback (on the pool's callback thread), it does not wait for the
    /// callbacks, its own among them.
    ///
    /// # Errors
    /// [`Error::PoolStillRunning`] if neither was called (Python raises `ValueError`).
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), waiting at most `timeout`.
    ///
    /// Like `join`, it stops the pool accepting anything from the moment it is called, even if
    /// it then times out: an `imap` made before `close()` is fed no more (its pulled items fail
    /// with [`Error::PoolClosed`]). Use it once the `imap`s are done, not to poll.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the workers or the callbacks still run when the time is up; the
    /// pool goes on finishing the work handed in, and `join` or `join_timeout` may be called
    /// again. Otherwise as [`join`](Self::join).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let slow = pool.apply_async(nap, 300);
    /// pool.close();
    /// assert!(matches!(pool.join_timeout(Duration::from_millis(10)), Err(multiproc::Error::Timeout)));
    /// pool.join()?; // the task was not lost
    /// assert_eq!(slow.get()?, 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(crate::mem::parking::deadline(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        if lock(&self.shared.inbox).state == PoolState::Running {
            return Err(Error::PoolStillRunning);
        }
        let _ = self.shared.set_state(PoolState::Joining);
        self.wait_supervisor(deadline)
    }

    /// Waits for the supervisor thread, then for the callbacks, until `deadline`.
    fn wait_supervisor(&self, deadline: Option<Instant>) -> Result<()> {
        if !self.supervisor_end.wait_until(deadline) {
            return Err(Error::Timeout);
        }
        lock(&self.supervisor).join_if_ended();
        // Results read by a waiting caller may still be on their way to their callbacks.
        if !self.shared.wait_in_hand(deadline) || !self.callbacks.shutdown_until(deadline) {
            return Err(Error::Timeout);
        }
        Ok(())
    }
}

impl Drop for Pool {
    /// Terminates the pool: kills the workers and waits for them, like leaving Python's
    /// `with Pool() as p:` block.
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::ChildLink;
    use crate::launch::Io;
    use crate::wire::message::Role;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `fails` launches as a process limit would, then spawns.
    struct Flaky {
        fails: u32,
        calls: AtomicU32,
    }

    impl Launch for Flaky {
        fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fails {
                return Err(Error::Io(std::io::Error::from_raw_os_error(11)));
            }
            crate::launch::launcher(Some(StartMethod::Spawn)).launch(name, role, io)
        }
    }

    fn square(x: u64) -> u64 {
        x * x
    }

    impl PoolBuilder {
        fn launch_with(mut self, launch: &'static dyn Launch) -> Self {
            self.launch = Some(launch);
            self
        }
    }

    #[test]
    fn a_pool_starts_its_workers_only_through_its_launcher() {
        static NEVER: Flaky = Flaky {
            fails: u32::MAX,
            calls: AtomicU32::new(0),
        };
        let pool = Pool::builder()
            .processes(1)
            .start_timeout(Duration::from_millis(200))
            .launch_with(&NEVER)
            .build()
            .unwrap();
        match pool.apply(square, 3) {
            Err(Error::Spawn(why)) => assert!(why.contains("temporarily unavailable"), "{why}"),
            other => panic!("expected a spawn error, got {other:?}"),
        }
        assert!(NEVER.calls.load(Ordering::SeqCst) >= 2, "it tried again");

        static THIRD_TIME: Flaky = Flaky {
            fails: 2,
            calls: AtomicU32::new(0),
        };
        let pool = Pool::builder()
            .processes(1)
            .start_timeout(Duration::from_secs(30))
            .launch_with(&THIRD_TIME)
            .build()
            .unwrap();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        assert_eq!(THIRD_TIME.calls.load(Ordering::SeqCst), 3);
    }
}
