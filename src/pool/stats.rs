//! What a pool reports about itself: [`Pool::stats`](super::Pool::stats), and (feature
//! `tracing`) the events and spans it emits.
//!
//! Both are fed from the same few places, as things happen: a call's sink as its outcomes
//! arrive (tasks completed and failed; so an MPI pool's rank 0 counts too), the submitting call
//! (tasks submitted), the dispatch (tasks dropped unrun), and the supervisor's core as workers
//! start, become ready, take work, answer, and end. Counting is a relaxed atomic addition per
//! batch of results or per worker event; each worker's busy time lives in its own [`Meter`],
//! which only the holder of the pool's core writes. The one lock, the list of live workers'
//! meters, is taken when a worker starts or ends and by `stats()`, never per task.
//!
//! Without the feature `tracing`, [`report!`] expands to nothing and [`CallSpan`] is empty: no
//! event is built, no field is formatted.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, fence};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::job::Chunk;
use super::progress::Progress;
use super::result::lock;
use crate::error::{Death, Error};

/// Emits a `tracing` event with target `multiproc` (feature `tracing`); nothing without it.
macro_rules! report {
    ($level:ident, $($field:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            tracing::$level!(target: "multiproc", $($field)+);
        }
    }};
}

/// What a pool has done since it was built: [`Pool::stats`](super::Pool::stats).
///
/// A task is an item of a call (one for `apply`, one per item for `map` and `imap`). The counts
/// are read one by one while the pool works, so they may be a batch apart from each other;
/// once the pool is joined they add up: `tasks_submitted = tasks_completed + tasks_failed +
/// tasks_cancelled`.
///
/// # Examples
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// pool.map(square, 0..1000u64)?;
/// let stats = pool.stats();
/// assert_eq!(stats.tasks_completed, 1000);
/// assert_eq!(stats.workers_alive, 2);
/// println!("{stats}");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PoolStats {
    /// Worker processes alive now: starting, serving, or on their way out.
    pub workers_alive: usize,
    /// Worker processes started since the pool was built (replacements included).
    pub workers_started: u64,
    /// Workers that ended because the pool ended them: recycled after `max_tasks_per_child`,
    /// or at `join` or `terminate`.
    pub workers_retired: u64,
    /// Workers that died, by cause.
    pub workers_died: WorkerDeaths,
    /// Tasks handed to the pool (including those it refused: they failed).
    pub tasks_submitted: u64,
    /// Tasks that returned a value.
    pub tasks_completed: u64,
    /// Tasks that ended with an error: the task's own (a panic), its worker's death, a timeout,
    /// a value that could not be decoded, a pool that refused it or was terminated.
    pub tasks_failed: u64,
    /// Of the failed tasks, those that ran longer than the pool's `task_timeout`.
    pub tasks_timed_out: u64,
    /// Tasks dropped unrun: their call was cancelled, or their `imap` dropped.
    pub tasks_cancelled: u64,
    /// Tasks submitted and not yet ended: queued, or running.
    pub tasks_in_flight: u64,
    /// Each live worker (a pool over MPI ranks lists none: its workers are on the ranks).
    pub workers: Vec<WorkerStats>,
    /// How long ago the pool was built.
    pub uptime: Duration,
}

/// How many of a pool's workers died, by cause ([`PoolStats::workers_died`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerDeaths {
    /// Killed by a signal nobody in the pool sent (`SIGKILL` from the OOM killer, `SIGSEGV`, a
    /// stack overflow).
    pub signalled: u64,
    /// Exited on their own (`std::process::exit` in a task, say).
    pub exited: u64,
    /// Killed by the pool because a task ran longer than `task_timeout`.
    pub timed_out: u64,
    /// Killed by the pool because they broke the protocol (garbage written into their socket).
    pub misbehaved: u64,
}

impl WorkerDeaths {
    /// Every death, whatever its cause.
    pub fn total(&self) -> u64 {
        self.signalled + self.exited + self.timed_out + self.misbehaved
    }
}

/// One live worker ([`PoolStats::workers`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Its process id.
    pub pid: u32,
    /// Its name, as Python's (`PoolWorker-3`).
    pub name: String,
    /// Tasks it has answered.
    pub tasks: u64,
    /// The fraction of its life it has held work (tasks sent to it and not yet answered; its
    /// initializer does not count): between 0 and 1.
    pub busy: f64,
    /// How long ago it was started.
    pub age: Duration,
}

impl std::fmt::Display for PoolStats {
    /// A few lines for a person: workers, tasks, and each worker's share of the work.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let died = &self.workers_died;
        writeln!(
            f,
            "workers: {} alive, {} started, {} retired, {} died ({} by a signal, {} exited, {} \
             timed out, {} misbehaved)",
            self.workers_alive,
            self.workers_started,
            self.workers_retired,
            died.total(),
            died.signalled,
            died.exited,
            died.timed_out,
            died.misbehaved
        )?;
        writeln!(
            f,
            "tasks: {} submitted, {} completed, {} failed ({} timed out), {} cancelled, {} in \
             flight",
            self.tasks_submitted,
            self.tasks_completed,
            self.tasks_failed,
            self.tasks_timed_out,
            self.tasks_cancelled,
            self.tasks_in_flight
        )?;
        for w in &self.workers {
            writeln!(
                f,
                "  {} (pid {}): {} tasks, busy {:.0} % of {:.1?}",
                w.name,
                w.pid,
                w.tasks,
                w.busy * 100.0,
                w.age
            )?;
        }
        Ok(())
    }
}

/// How a worker ended, as the pool tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended<'a> {
    /// The pool ended it (recycled, or at join or terminate).
    Retired,
    /// The pool killed it for overrunning `task_timeout`.
    TimedOut,
    /// The pool killed it for breaking the protocol, as this says.
    Misbehaved(&'a str),
    /// It died by itself (how: the `Death` given with it).
    Died,
}

/// A pool's counters (see the module docs).
pub(crate) struct Counters {
    born: Instant,
    started: AtomicU64,
    retired: AtomicU64,
    signalled: AtomicU64,
    exited: AtomicU64,
    killed_timed_out: AtomicU64,
    killed_misbehaved: AtomicU64,
    submitted: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    /// The live workers' meters.
    workers: Mutex<Vec<Arc<Meter>>>,
}

impl Counters {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            started: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            signalled: AtomicU64::new(0),
            exited: AtomicU64::new(0),
            killed_timed_out: AtomicU64::new(0),
            killed_misbehaved: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
        })
    }

    /// `n` tasks were handed to the pool.
    pub(crate) fn submitted(&self, n: usize) {
        self.submitted.fetch_add(n as u64, Relaxed);
    }

    /// `done` tasks ended, `failed` of them with an error (returned by the task: a panic).
    pub(crate) fn outcomes(&self, done: usize, failed: usize) {
        self.completed.fetch_add((done - failed) as u64, Relaxed);
        self.failed.fetch_add(failed as u64, Relaxed);
    }

    /// A task failed without an outcome from its worker, with `error`.
    pub(crate) fn failed(&self, error: &Error) {
        self.failed.fetch_add(1, Relaxed);
        if matches!(error, Error::TaskTimeout { .. }) {
            self.timed_out.fetch_add(1, Relaxed);
        }
    }

    /// `n` tasks were dropped unrun.
    pub(crate) fn cancelled(&self, n: usize) {
        self.cancelled.fetch_add(n as u64, Relaxed);
    }

    /// Ends `chunk`, which will never run (the pool is terminated or broken, or no worker
    /// starts): if its call no longer wants it (cancelled, or its `imap` dropped) it is dropped
    /// and counted as cancelled, as at dispatch; otherwise its items fail with `error`.
    pub(crate) fn never_run(&self, chunk: &Chunk, error: impl Fn(usize) -> Error) {
        if chunk.sink.abandoned() {
            self.cancelled(chunk.len());
        } else {
            chunk.fail(0..chunk.len(), error);
        }
    }

    /// The worker of `meter` was started, one of a pool of `processes`.
    pub(crate) fn worker_started(&self, meter: &Arc<Meter>, processes: usize) {
        let before = self.started.fetch_add(1, Relaxed);
        lock(&self.workers).push(meter.clone());
        let (pid, name) = (meter.pid, meter.name.as_str());
        // The first `processes` start the pool; any later one replaces a worker that ended.
        let replacing = before >= processes as u64;
        #[cfg(feature = "tracing")]
        {
            if replacing {
                report!(
                    info,
                    pid,
                    worker = name,
                    "worker started, replacing one that ended or is retiring"
                );
            } else {
                report!(debug, pid, worker = name, "worker started");
            }
        }
        let _ = (replacing, pid, name);
    }

    /// The worker of `meter` has ended, as `how` says (`death`: how its process ended).
    pub(crate) fn worker_ended(&self, meter: &Arc<Meter>, how: Ended<'_>, death: &Death) {
        lock(&self.workers).retain(|m| !Arc::ptr_eq(m, meter));
        let counter = match how {
            Ended::Retired => &self.retired,
            Ended::TimedOut => &self.killed_timed_out,
            Ended::Misbehaved(_) => &self.killed_misbehaved,
            Ended::Died => match death {
                Death::Signal { .. } | Death::StackOverflow { .. } => &self.signalled,
                Death::Exit(_) | Death::Unknown => &self.exited,
            },
        };
        counter.fetch_add(1, Relaxed);
        let (pid, worker) = (meter.pid, meter.name.as_str());
        match how {
            Ended::Retired => report!(debug, pid, worker, exit = %death, "worker exited"),
            Ended::TimedOut => report!(
                warn,
                pid,
                worker,
                "worker killed: a task overran the pool's task timeout"
            ),
            Ended::Misbehaved(why) => {
                report!(
                    warn,
                    pid,
                    worker,
                    why,
                    "worker killed: it broke the protocol"
                );
                let _ = why;
            }
            Ended::Died => report!(warn, pid, worker, cause = %death, "worker died"),
        }
        let _ = (pid, worker);
    }

    /// What the counters and meters say now.
    pub(crate) fn snapshot(&self) -> PoolStats {
        let now = Instant::now();
        let workers: Vec<WorkerStats> = lock(&self.workers).iter().map(|m| m.stats(now)).collect();
        let submitted = self.submitted.load(Relaxed);
        let completed = self.completed.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let cancelled = self.cancelled.load(Relaxed);
        PoolStats {
            workers_alive: workers.len(),
            workers_started: self.started.load(Relaxed),
            workers_retired: self.retired.load(Relaxed),
            workers_died: WorkerDeaths {
                signalled: self.signalled.load(Relaxed),
                exited: self.exited.load(Relaxed),
                timed_out: self.killed_timed_out.load(Relaxed),
                misbehaved: self.killed_misbehaved.load(Relaxed),
            },
            tasks_submitted: submitted,
            tasks_completed: completed,
            tasks_failed: failed,
            tasks_timed_out: self.timed_out.load(Relaxed),
            tasks_cancelled: cancelled,
            tasks_in_flight: submitted.saturating_sub(completed + failed + cancelled),
            workers,
            uptime: now - self.born,
        }
    }
}

/// One worker's share of the work: written by whoever holds the pool's core (one writer at a
/// time), read by `stats()`. Its busy time is two numbers that change together: `version` is a
/// sequence lock around them (odd while they change), so that a reader never adds a stretch of
/// work twice, or misses one.
pub(crate) struct Meter {
    pid: u32,
    name: String,
    born: Instant,
    version: AtomicU64,
    /// Nanoseconds it held work, over its stretches of work that have ended.
    busy_ns: AtomicU64,
    /// When its current stretch of work began, in nanoseconds after `born`, plus one; 0 while
    /// it holds none.
    busy_from: AtomicU64,
    tasks: AtomicU64,
}

impl Meter {
    /// The meter of worker process `pid` named `name`, started now.
    pub(crate) fn new(pid: u32, name: String) -> Arc<Self> {
        Arc::new(Self {
            pid,
            name,
            born: Instant::now(),
            version: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            busy_from: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
        })
    }

    fn since_born(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.born).as_nanos() as u64
    }

    /// Changes the busy time (`change` runs between the two steps of the sequence lock).
    fn write(&self, change: impl FnOnce()) {
        let v = self.version.load(Relaxed);
        self.version.store(v + 1, Relaxed);
        fence(Release);
        change();
        self.version.store(v + 2, Release);
    }

    /// It was handed work at `at`, holding none before.
    pub(crate) fn busy(&self, at: Instant) {
        let from = self.since_born(at) + 1;
        self.write(|| self.busy_from.store(from, Relaxed));
    }

    /// It answered the last work it held at `at`.
    pub(crate) fn idle(&self, at: Instant) {
        let now = self.since_born(at);
        self.write(|| {
            let from = self.busy_from.swap(0, Relaxed);
            if from > 0 {
                self.busy_ns
                    .fetch_add(now.saturating_sub(from - 1), Relaxed);
            }
        });
    }

    /// Its busy time so far and when its current stretch began (as `busy_from`), read whole.
    fn read(&self) -> (u64, u64) {
        loop {
            let before = self.version.load(Acquire);
            let (busy, from) = (self.busy_ns.load(Relaxed), self.busy_from.load(Relaxed));
            fence(Acquire);
            if before % 2 == 0 && self.version.load(Relaxed) == before {
                return (busy, from);
            }
            std::hint::spin_loop();
        }
    }

    /// It answered `n` tasks.
    pub(crate) fn answered(&self, n: usize) {
        self.tasks.fetch_add(n as u64, Relaxed);
    }

    /// It is ready to serve: greeted back, and past its initializer (which may have failed: the
    /// pool then says it is broken, once, in `pool_broken`).
    pub(crate) fn ready(&self) {
        report!(
            debug,
            pid = self.pid,
            worker = self.name.as_str(),
            "worker ready"
        );
    }

    fn stats(&self, now: Instant) -> WorkerStats {
        let age = self.since_born(now);
        let (mut busy, from) = self.read();
        if from > 0 {
            busy += age.saturating_sub(from - 1);
        }
        WorkerStats {
            pid: self.pid,
            name: self.name.clone(),
            tasks: self.tasks.load(Relaxed),
            busy: if age == 0 {
                0.0
            } else {
                (busy as f64 / age as f64).min(1.0)
            },
            age: Duration::from_nanos(age),
        }
    }
}

/// A call's span (feature `tracing`): `multiproc.call` with the call's name and, when known,
/// its number of items; the events of its failed tasks and its end are emitted inside it.
/// Without the feature, nothing.
pub(crate) struct CallSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "tracing")]
    begun: Instant,
}

impl CallSpan {
    pub(crate) fn new(call: &'static str, items: Option<usize>) -> Self {
        let _ = (call, items);
        Self {
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(target: "multiproc", "multiproc.call", call, items),
            #[cfg(feature = "tracing")]
            begun: Instant::now(),
        }
    }

    /// Task `index` of the call failed with `error`.
    pub(crate) fn task_failed(&self, index: usize, error: &Error) {
        #[cfg(feature = "tracing")]
        self.span.in_scope(|| match error {
            Error::WorkerDied { .. } | Error::TaskTimeout { .. } => {
                report!(warn, task = index, error = %error, "task failed")
            }
            _ => report!(debug, task = index, error = %error, "task failed"),
        });
        let _ = (index, error);
    }

    /// The call has ended: `items` tasks, `failed` of them with an error.
    pub(crate) fn ended(&self, items: usize, failed: usize) {
        #[cfg(feature = "tracing")]
        self.span.in_scope(|| {
            report!(
                debug,
                items,
                failed,
                took = ?self.begun.elapsed(),
                "call ended"
            )
        });
        let _ = (items, failed);
    }
}

/// What one call reports as its outcomes arrive: to the pool's counters, to its progress bar
/// (if the pool draws them) and in its span. Held by the call's sink.
pub(crate) struct Report {
    stats: Arc<Counters>,
    progress: Option<Arc<Progress>>,
    span: CallSpan,
    /// Whether the call was told cancelled (told once).
    cancelled: AtomicBool,
}

impl Report {
    pub(crate) fn new(
        stats: Arc<Counters>,
        progress: Option<Arc<Progress>>,
        span: CallSpan,
    ) -> Self {
        Self {
            stats,
            progress,
            span,
            cancelled: AtomicBool::new(false),
        }
    }

    /// `count` tasks answered, `failed` of them with their own error (each also told to
    /// [`task_failed`](Self::task_failed)).
    pub(crate) fn answered(&self, count: usize, failed: usize) {
        self.stats.outcomes(count, failed);
        if let Some(progress) = &self.progress {
            progress.advance(count, failed);
        }
    }

    /// Task `index` answered with an error.
    pub(crate) fn task_failed(&self, index: usize, error: &Error) {
        self.span.task_failed(index, error);
    }

    /// Task `index` could not be handed to the pool (its argument did not encode): it is
    /// submitted, and failed, here.
    pub(crate) fn unsent(&self, index: usize, error: &Error) {
        self.stats.submitted(1);
        self.failed(index, error);
    }

    /// Task `index` failed without an answer (its worker died, it timed out, the pool refused
    /// it…).
    pub(crate) fn failed(&self, index: usize, error: &Error) {
        self.stats.failed(error);
        if let Some(progress) = &self.progress {
            progress.advance(1, 1);
        }
        self.span.task_failed(index, error);
    }

    /// The call has `total` tasks: its input is all handed in.
    pub(crate) fn set_total(&self, total: usize) {
        if let Some(progress) = &self.progress {
            progress.set_total(total);
        }
    }

    /// Nobody waits for the rest (an `imap` dropped, a call cancelled).
    pub(crate) fn abandon(&self) {
        if let Some(progress) = &self.progress {
            progress.abandon();
        }
    }

    /// The call has ended: `items` tasks, `failed` of them with an error.
    pub(crate) fn ended(&self, items: usize, failed: usize) {
        self.span.ended(items, failed);
    }

    /// The call was cancelled (told as its chunks are dropped: the first time ends it).
    pub(crate) fn cancelled(&self) {
        if !self.cancelled.swap(true, Relaxed) {
            self.abandon();
            self.span.cancelled();
        }
    }
}

impl CallSpan {
    /// The call was cancelled before any of its tasks started.
    fn cancelled(&self) {
        #[cfg(feature = "tracing")]
        self.span
            .in_scope(|| report!(debug, took = ?self.begun.elapsed(), "call cancelled"));
    }
}

/// A worker overran the pool's task timeout and is being killed.
pub(crate) fn task_overran(pid: u32, limit: Duration) {
    report!(warn, pid, limit = ?limit, "a task overran the pool's task timeout: killing its worker");
    let _ = (pid, limit);
}

/// No worker could be started, or one died before it could serve.
pub(crate) fn start_failed(cause: &str) {
    report!(warn, cause, "a worker could not start");
    let _ = cause;
}

/// The pool is broken for good (its initializer failed, or a child refused the handshake),
/// for `error`: it takes no more work.
pub(crate) fn pool_broken(error: &Error) {
    report!(error, error = %error, "the pool is broken and takes no more work");
    let _ = error;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_adds_up_its_stretches_of_work() {
        let meter = Meter::new(1, "PoolWorker-1".into());
        let t0 = meter.born;
        meter.busy(t0 + Duration::from_millis(10));
        meter.idle(t0 + Duration::from_millis(30));
        meter.busy(t0 + Duration::from_millis(60));
        let s = meter.stats(t0 + Duration::from_millis(100));
        // 20 ms, then 40 ms still going, of 100.
        assert!((s.busy - 0.6).abs() < 1e-9, "{}", s.busy);
        meter.idle(t0 + Duration::from_millis(100));
        meter.idle(t0 + Duration::from_millis(150)); // idle twice: no stretch
        let s = meter.stats(t0 + Duration::from_millis(200));
        assert!((s.busy - 0.3).abs() < 1e-9, "{}", s.busy);
    }

    #[test]
    fn counters_add_up() {
        let c = Counters::new();
        c.submitted(10);
        c.outcomes(6, 1);
        c.failed(&Error::TaskTimeout {
            task: 7,
            after: Duration::from_secs(1),
            pid: 3,
            rank: None,
        });
        c.cancelled(2);
        let s = c.snapshot();
        assert_eq!(
            (s.tasks_completed, s.tasks_failed, s.tasks_timed_out),
            (5, 2, 1)
        );
        assert_eq!((s.tasks_cancelled, s.tasks_in_flight), (2, 1));
        let (m, n) = (
            Meter::new(42, "PoolWorker-1".into()),
            Meter::new(43, "PoolWorker-2".into()),
        );
        c.worker_started(&m, 1);
        c.worker_started(&n, 1);
        assert_eq!(c.snapshot().workers_alive, 2);
        c.worker_ended(&m, Ended::Died, &Death::Exit(3));
        c.worker_ended(&n, Ended::TimedOut, &Death::Unknown);
        let s = c.snapshot();
        assert_eq!((s.workers_alive, s.workers_started), (0, 2));
        assert_eq!(s.workers_died.exited, 1);
        assert_eq!(s.workers_died.timed_out, 1);
        assert_eq!(s.workers_died.total(), 2);
    }
}
