//! The supervisor: one thread per pool that owns the workers.
//!
//! It takes chunks from the pool's inbox, hands them to workers, reads their results, and
//! notices deaths — all through one `poll` over the workers' sockets, their pidfds and a wake-up
//! eventfd, with non-blocking writes so that no worker can stall it.
//!
//! When a worker dies, the progress counter it shares with us says which item it was running:
//! that item fails (`WorkerDied`, or `TaskTimeout` if we killed it for overrunning), items it had
//! not reached go back to the front of the queue for another worker, and a replacement is
//! started. Nothing waits for an answer that cannot come: a worker whose socket holds part of
//! a message that is not completed within `STALLED` (garbage a task wrote into it) is replaced
//! too, and workers that cannot be started are tried again with a back-off while waiting work
//! fails after the pool's start timeout (`starts.rs`).
//!
//! # Who may touch what
//!
//! Everything about the workers lives in [`Core`], behind `Shared::core`. The supervisor thread
//! holds that lock while it works and lets go of it only while it sleeps in `poll`. A thread
//! that submits a little work (`DISPATCH_HERE_MAX`) `try_lock`s it and, when it gets it, hands
//! the new chunks to idle workers and writes them to their sockets itself
//! ([`Core::dispatch_here`]): the supervisor is not woken for an `apply`, which saves a thread
//! wake-up (several µs, more on a virtual machine) on every round trip. The submitter wakes it
//! (through the eventfd) whenever it leaves something the sleeping supervisor would not notice:
//! a partly written frame (`poll` must watch for writability), chunks still queued, a task
//! clock to start, a worker to start, or a changed pool state — and whenever the lock was busy.
//!
//! Likewise, a thread waiting for a result (`AsyncResult::get`) spends its first few tens of
//! µs reading the workers' sockets itself ([`Core::collect_here`]), so that a quick result
//! reaches it without the supervisor being woken at all. Having read them, it may have consumed
//! what would have woken the supervisor, so it wakes it when something needs it: a worker that
//! hung up or sent garbage, a freed worker with chunks still queued, a pool closing.
//! Whoever reads results under the lock hands them over after releasing it ([`Delivery`]),
//! so that a caller it wakes finds the lock free for its next call. A waiter hands over only
//! its own results and leaves the rest to the supervisor (decoding them runs user code, which
//! a bystander's short wait must not pay for); `join` waits for results a waiter is still
//! handing over (`InHand`).
//!
//! Those other threads never start, bury or drop a worker, and never change `Core::workers`
//! itself (at most, a waiter signals a worker that sent garbage; the supervisor buries it). So
//! the descriptors the supervisor polls, which it collects while it holds the lock, stay open
//! and keep their positions while it polls without it (`Supervisor::serve` relies on this).
//!
//! Lock order: `core`, then `inbox`. Submitters let go of `inbox` before they try `core`.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::deaths::{self, Ending, Fate, Held, Progress, Standing};
use super::job::{Chunk, Collector, Sink};
use super::pace::Pace;
use super::result::lock;
use super::starts::{Backlog, Starts};
use crate::bootstrap::{self, ChildLink};
use crate::error::{Death, Error, Result};
use crate::sys;
use crate::sys::fd::{Interest, Ready, Waker};
use crate::wire::fds::FdSet;
use crate::wire::message::{Failure, ResultsHeader, Role, TaskHeader, kind};
use crate::wire::{BULK_IDLE, Frame, codec};
use crate::worker::STARTED_SLOT;

/// How long part of a message from a worker may wait for the rest before the worker is
/// replaced: workers write each message whole, so one cut short for this long is garbage (a
/// task wrote into the worker's socket, say) that will never be completed.
const STALLED: Duration = Duration::from_secs(2);
/// How long a worker told to exit may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// Submissions larger than this (encoded bytes) are dispatched by the supervisor, not by the
/// submitting thread: copying them into the workers' buffers would keep the core lock (and the
/// supervisor's handling of results) waiting for longer than the thread wake-up it saves, and
/// it measured slower for large payloads (a 64 MiB echo, by about 10%).
const DISPATCH_HERE_MAX: usize = 64 * 1024;

/// The pool's settings, as the supervisor needs them.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<InitTask>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) task_timeout: Option<Duration>,
    /// How long work waits while no worker can be started (see `starts.rs`).
    pub(crate) start_timeout: Duration,
}

/// The initializer: a trampoline and its one encoded argument.
pub(crate) struct InitTask {
    pub(crate) entry: i64,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Arc<FdSet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolState {
    Running,
    Closed,
    Terminating,
}

/// Why a pool can no longer run tasks. Only what no retry can mend: a child that refused the
/// handshake (another executable), or an initializer that failed. Workers that cannot be
/// started for now are an outage, not a break (see `starts.rs`).
#[derive(Clone, Debug)]
pub(crate) enum Broken {
    Init(Failure),
    Refused(String),
}

impl Broken {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Broken::Init(f) => Error::InitializerFailed(Box::new(f.clone().into())),
            Broken::Refused(m) => Error::Spawn(m.clone()),
        }
    }
}

pub(crate) struct Inbox {
    pub(crate) chunks: VecDeque<Chunk>,
    pub(crate) state: PoolState,
    pub(crate) broken: Option<Broken>,
}

/// What the pool handle and the supervisor share.
pub(crate) struct Shared {
    pub(crate) inbox: Arc<Mutex<Inbox>>,
    pub(crate) waker: Waker,
    /// The workers and their queue; see the module docs for who holds it when.
    core: Mutex<Core>,
    /// Whether threads waiting for results may read them from the workers (see
    /// `Core::collect_here`).
    waiters_collect: bool,
    /// How many threads other than the supervisor are handing over results they read.
    in_hand: Mutex<usize>,
    in_hand_done: Condvar,
}

/// Why the inbox refused work.
pub(crate) enum Refusal {
    Closed,
    Terminated,
    Broken(Broken),
}

impl Refusal {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Refusal::Closed => Error::PoolClosed,
            Refusal::Terminated => Error::PoolTerminated,
            Refusal::Broken(b) => b.to_error(),
        }
    }
}

impl Shared {
    pub(crate) fn new(cfg: Config) -> Result<Arc<Self>> {
        let inbox = Arc::new(Mutex::new(Inbox {
            chunks: VecDeque::new(),
            state: PoolState::Running,
            broken: None,
        }));
        Ok(Arc::new(Self {
            inbox: inbox.clone(),
            waker: Waker::new()?,
            waiters_collect: cfg.task_timeout.is_none() && cfg.max_tasks_per_child.is_none(),
            core: Mutex::new(Core::new(inbox, cfg)),
            in_hand: Mutex::new(0),
            in_hand_done: Condvar::new(),
        }))
    }

    /// Queues chunks for the workers, or hands them back with the reason they were refused.
    /// When it can, it also hands them to idle workers right away (see the module docs).
    pub(crate) fn submit(
        &self,
        chunks: Vec<Chunk>,
    ) -> std::result::Result<(), (Refusal, Vec<Chunk>)> {
        let mut inbox = lock(&self.inbox);
        let refusal = match (&inbox.state, &inbox.broken) {
            (PoolState::Closed, _) => Some(Refusal::Closed),
            (PoolState::Terminating, _) => Some(Refusal::Terminated),
            (PoolState::Running, Some(broken)) => Some(Refusal::Broken(broken.clone())),
            (PoolState::Running, None) => None,
        };
        if let Some(refusal) = refusal {
            return Err((refusal, chunks));
        }
        let small = chunks.iter().map(|c| c.payload.len()).sum::<usize>() <= DISPATCH_HERE_MAX;
        inbox.chunks.extend(chunks);
        drop(inbox);
        if !(small && self.on_core_here(None, Core::dispatch_here) == Some(true)) {
            // Large submissions go to the supervisor, as does everything when the lock is busy:
            // the supervisor (or another thread) is at work, and the wake-up makes sure someone
            // looks at the inbox after our chunks landed in it. An eventfd write fails only if
            // the descriptor is gone, which it is not while we hold `self`.
            let _ = self.waker.notify();
        }
        Ok(())
    }

    /// Runs `f` on the core from a submitter's or waiter's thread, if the lock is free (`None`
    /// if not). `f` says whether the sleeping supervisor can be left alone. A waiter (`waiter`
    /// is its [`Sink::waiter`] identity) then hands over its own results; anyone else's are
    /// left to the supervisor, which is woken for them: decoding them runs user code that may
    /// be slow, and a bystander's short wait must not pay for it.
    fn on_core_here(
        &self,
        waiter: Option<usize>,
        f: impl FnOnce(&mut Core) -> bool,
    ) -> Option<bool> {
        // Poisoned: the supervisor died and the pool is being terminated; leave it to that.
        let mut core = self.core.try_lock().ok()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut core))) {
            Ok(settled) => {
                let Some(waiter) = waiter.filter(|_| !core.deliveries.is_empty()) else {
                    return Some(settled && core.deliveries.is_empty());
                };
                let (own, others): (Vec<_>, Vec<_>) = std::mem::take(&mut core.deliveries)
                    .into_iter()
                    .partition(|d| d.sink.waiter() == waiter);
                core.deliveries = others;
                let settled = settled && core.deliveries.is_empty();
                // Counted before the lock goes, so that `join` cannot miss them.
                let _in_hand = InHand::enter(self);
                drop(core);
                own.into_iter().for_each(Delivery::deliver);
                Some(settled)
            }
            Err(panic) => {
                // Terminate the pool, as when the supervisor panics: work caught half-way would
                // otherwise never be answered.
                drop(core);
                lock(&self.inbox).state = PoolState::Terminating;
                let _ = self.waker.notify();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Waits until no submitter or waiter holds results it read and has not handed over: after
    /// the supervisor has ended, this is what `join` waits for before callbacks stop.
    pub(crate) fn wait_in_hand(&self) {
        let mut n = lock(&self.in_hand);
        while *n > 0 {
            n = self.in_hand_done.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn set_state(&self, state: PoolState) -> Result<()> {
        let mut inbox = lock(&self.inbox);
        if inbox.state != PoolState::Terminating {
            inbox.state = state;
        }
        drop(inbox);
        self.waker.notify()?;
        Ok(())
    }
}

impl Collector for Shared {
    fn collect_here(&self, waiter: usize) {
        if self.waiters_collect
            && self.on_core_here(Some(waiter), Core::collect_here) == Some(false)
        {
            // As in `submit`: the descriptor is ours as long as `self` lives.
            let _ = self.waker.notify();
        }
    }
}

/// Results a submitter or waiter took out of the core and is handing over (see
/// [`Shared::wait_in_hand`]). Entered with the core lock held; lock order: core, then
/// `in_hand`.
struct InHand<'a>(&'a Shared);

impl<'a> InHand<'a> {
    fn enter(shared: &'a Shared) -> Self {
        *lock(&shared.in_hand) += 1;
        Self(shared)
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.in_hand);
        *n -= 1;
        if *n == 0 {
            self.0.in_hand_done.notify_all();
        }
    }
}

/// Records the first failure of the initializer (never overwritten by another worker's
/// success).
struct InitSink {
    failure: Mutex<Option<Failure>>,
}

impl Sink for InitSink {
    fn deliver(&self, _first: usize, _count: usize, bytes: &[u8]) {
        let failure = match codec::decode_outcome::<()>(&mut &bytes[..]) {
            Ok(Ok(())) => None,
            Ok(Err(f)) => Some(f),
            Err(e) => Some(Failure::Decode(e.to_string())),
        };
        if let Some(f) = failure {
            lock(&self.failure).get_or_insert(f);
        }
    }
    fn fail(&self, _index: usize, _error: Error) {}
}

struct InFlight {
    seq: u64,
    sent: Instant,
    chunk: Chunk,
    reported: usize,
    is_init: bool,
}

/// Why we killed a worker ourselves.
#[derive(Clone, Debug)]
enum KillReason {
    /// The limit, and the progress counter when we decided to kill: the item then running is
    /// the one that overran, even if the worker moved on before the signal landed.
    Timeout(Duration, u64),
    Protocol(String),
}

struct Worker {
    link: ChildLink,
    inflight: VecDeque<InFlight>,
    /// Items (as counted by the child's progress counter) of chunks already fully answered.
    done_items: u64,
    tasks_assigned: usize,
    retiring: bool,
    /// Last progress value seen, and when it was first seen.
    progress: (u64, Instant),
    /// When the worker last finished a chunk (to measure chunk service time).
    last_done: Instant,
    killed: Option<KillReason>,
    /// Whether the child answered the greeting.
    ready: bool,
    /// Whether it is ready to serve tasks (greeted, and through its initializer); noted once
    /// in `Starts`.
    serving: bool,
}

impl Worker {
    fn started(&self) -> u64 {
        self.link.page.slot(STARTED_SLOT).load(Ordering::Relaxed)
    }

    /// Whether an item is running right now (started and not answered).
    fn busy(&self) -> bool {
        self.started() > self.answered()
    }

    fn running_init(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.is_init)
    }

    /// Items answered so far, as counted by the progress counter.
    fn answered(&self) -> u64 {
        self.done_items + self.inflight.front().map_or(0, |f| f.reported as u64)
    }

    /// Whether it is alive and in service, or on its way there: not killed, not retiring, not
    /// hung up.
    fn usable(&self) -> bool {
        self.killed.is_none() && !self.retiring && !self.link.channel.at_eof()
    }

    /// Whether it runs a chunk taken back from a dead worker, which runs alone (see
    /// `Core::dispatch`): if it kills or garbles its worker again, the blame is exact.
    fn runs_a_retry(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.chunk.retries > 0)
    }

    /// How long part of a message from it may still wait for the rest (see [`STALLED`]);
    /// `None` unless part of one waits (or it was killed already).
    fn stall_left(&self, now: Instant) -> Option<Duration> {
        let waited = self.link.channel.stalled_for(now)?;
        self.killed
            .is_none()
            .then(|| STALLED.saturating_sub(waited))
    }
}

/// The supervisor thread.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
}

/// The workers and the chunks waiting for them. Owned by the supervisor thread, lent to
/// submitters while it sleeps (see the module docs).
pub(crate) struct Core {
    inbox: Arc<Mutex<Inbox>>,
    cfg: Config,
    workers: Vec<Worker>,
    pending: Backlog,
    state: PoolState,
    broken: Option<Broken>,
    next_name: usize,
    next_seq: u64,
    /// How fast chunks are served.
    pace: Pace,
    starts: Starts,
    init_sink: Arc<InitSink>,
    /// Whether the supervisor's current `poll` wakes up regularly to enforce `task_timeout`
    /// (it does only while tasks are in flight): a submitter that starts the first task must
    /// wake it otherwise.
    ticking: bool,
    /// Results read but not yet handed over (see [`Delivery`]).
    deliveries: Vec<Delivery>,
}

impl Supervisor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The supervisor thread's body. Should it ever panic, the pool is terminated — every
    /// waiter gets an answer and every worker is reaped — rather than left without a supervisor.
    pub(crate) fn run(self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        if outcome.is_err() {
            eprintln!("multiproc: the pool supervisor failed; terminating the pool");
            lock(&self.shared.inbox).state = PoolState::Terminating;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                lock(&self.shared.core).terminate();
            }));
        }
    }

    fn serve(&self) {
        let shared = &*self.shared;
        let (mut interests, mut ready, mut spare) = (Vec::new(), Vec::new(), Vec::new());
        let mut core = lock(&shared.core);
        loop {
            let timeout = core.work();
            if timeout.is_some() {
                core.poll_set(&shared.waker, &mut interests);
            }
            // Results are handed over, and the poll made, with the lock released: a caller we
            // wake finds it free to dispatch its next call, and submitters can dispatch while
            // we sleep.
            let mut deliveries = std::mem::replace(&mut core.deliveries, spare);
            drop(core);
            deliveries.drain(..).for_each(Delivery::deliver);
            spare = deliveries;
            let Some(timeout) = timeout else {
                return;
            };
            let polled = poll_unlocked(&interests, timeout, &mut ready);
            core = lock(&shared.core);
            let handled = polled.and_then(|()| {
                if ready[0].read {
                    shared.waker.drain()?;
                }
                core.handle_ready(&ready);
                Ok(())
            });
            if let Err(e) = handled {
                // poll itself failing means the process is in deep trouble: terminate the pool
                // (next round) rather than spin.
                eprintln!("multiproc: pool supervisor cannot poll: {e}");
                lock(&shared.inbox).state = PoolState::Terminating;
                continue;
            }
            core.check_timeouts();
            core.check_stalls();
        }
    }
}

/// Polls descriptors collected by `Core::poll_set` while the core lock is released.
fn poll_unlocked(
    interests: &[(RawFd, Interest)],
    timeout: Option<Duration>,
    ready: &mut Vec<Ready>,
) -> std::io::Result<()> {
    let fds: Vec<(BorrowedFd<'_>, Interest)> = interests
        .iter()
        .map(|&(fd, interest)| {
            // SAFETY: these are the pool's waker and its workers' sockets and pidfds, collected
            // by the supervisor thread under the core lock just before this call, on the same
            // thread. Only the supervisor thread ever removes or drops a worker (see the module
            // docs), and it is here, polling; the waker lives as long as the pool. So each
            // descriptor stays open until `fds` is dropped at the end of this function.
            (unsafe { BorrowedFd::borrow_raw(fd) }, interest)
        })
        .collect();
    sys::fd::poll(&fds, timeout, ready)
}

impl Core {
    fn new(inbox: Arc<Mutex<Inbox>>, cfg: Config) -> Self {
        Self {
            inbox,
            starts: Starts::new(cfg.start_timeout, Instant::now()),
            cfg,
            workers: Vec::new(),
            pending: Backlog::default(),
            state: PoolState::Running,
            broken: None,
            next_name: 1,
            next_seq: 1,
            pace: Pace::default(),
            init_sink: Arc::new(InitSink {
                failure: Mutex::new(None),
            }),
            ticking: false,
            deliveries: Vec::new(),
        }
    }

    /// The supervisor's round between two polls: take new work, replace workers, dispatch.
    /// Returns how long the next poll may sleep, or `None` once the pool has ended (terminated,
    /// or closed with nothing left to do).
    fn work(&mut self) -> Option<Option<Duration>> {
        self.take_inbox();
        if self.state == PoolState::Terminating {
            self.terminate();
            return None;
        }
        if let Some(broken) = self.broken.clone() {
            for chunk in self.pending.take_all() {
                fail_chunk(&chunk, 0..chunk.len(), |_| broken.to_error());
            }
        }
        self.maintain_workers();
        self.fail_if_no_worker_starts();
        self.dispatch(None);
        self.flush_writes();
        self.trim_idle_channels();
        if self.state == PoolState::Closed && self.idle() {
            self.shutdown_gracefully();
            return None;
        }
        Some(self.poll_timeout())
    }

    /// A submitter's turn (see the module docs): hands what is in the inbox to idle workers
    /// and writes it out. Returns whether the sleeping supervisor can be left alone, i.e.
    /// whether its current `poll` already covers everything that is left to watch.
    fn dispatch_here(&mut self) -> bool {
        self.take_inbox();
        if self.state != PoolState::Running || self.broken.is_some() {
            return false;
        }
        self.dispatch(Some(DISPATCH_HERE_MAX));
        self.flush_writes();
        self.pending.is_empty()
            && self
                .workers
                .iter()
                .all(|w| w.link.channel.pending_out() == 0)
            && (self.cfg.task_timeout.is_none() || self.ticking)
            && !(self.wants_workers() && self.live_workers() < self.cfg.processes)
    }

    /// Hands over the results read so far without waiting to release the lock, where their
    /// order relative to failures matters.
    fn deliver_now(&mut self) {
        self.deliveries.drain(..).for_each(Delivery::deliver);
    }

    /// A waiter's turn (see the module docs): reads what workers in good standing have
    /// answered, and if that freed one, dispatches as a submitter does. Returns whether the
    /// sleeping supervisor can be left alone; it cannot if a worker misbehaved or hung up (it
    /// must bury it): having read its socket, we may have consumed what would have woken it.
    ///
    /// Pools with a `task_timeout` or `max_tasks_per_child` leave results to the supervisor
    /// (`Shared::waiters_collect`): it times tasks from the moments it sees them start, which
    /// it checks whenever results arrive, and it retires workers as their last result comes in.
    fn collect_here(&mut self) -> bool {
        let mut read = false;
        let mut trouble = false;
        for w in &mut self.workers {
            if !w.ready
                || w.killed.is_some()
                || w.running_init()
                || w.inflight.is_empty()
                || w.link.channel.at_eof()
            {
                continue;
            }
            let before = w.answered();
            let kept_memory = w.link.channel.keeps_memory();
            if let Err(e) = read_available(w, &mut self.pace, &mut self.deliveries) {
                kill(w, KillReason::Protocol(e.to_string()));
                trouble = true;
            }
            read |= w.answered() != before;
            // What the supervisor's poll would have been woken for, and we consumed: a hang-up,
            // part of a message to time (see `check_stalls`), memory to release when idle.
            trouble |= w.link.channel.at_eof()
                || w.link.channel.stalled_for(Instant::now()).is_some()
                || (!kept_memory && w.link.channel.keeps_memory());
        }
        if trouble {
            return false;
        }
        if !read {
            return true;
        }
        self.dispatch_here()
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self
                .workers
                .iter()
                .all(|w| w.inflight.iter().all(|f| f.is_init))
    }

    fn take_inbox(&mut self) {
        let mut inbox = lock(&self.inbox);
        if !inbox.chunks.is_empty() {
            // New work during an outage is decided by an attempt made after it arrived.
            self.starts.hurry();
        }
        inbox
            .chunks
            .drain(..)
            .for_each(|c| self.pending.push_back(c));
        self.state = inbox.state;
        if inbox.broken.is_none() {
            inbox.broken = self.broken.clone();
        }
    }

    fn set_broken(&mut self, why: Broken) {
        if self.broken.is_none() {
            self.broken = Some(why.clone());
            lock(&self.inbox).broken = Some(why);
        }
    }

    // ----- workers -----

    fn live_workers(&self) -> usize {
        self.workers.iter().filter(|w| !w.retiring).count()
    }

    fn maintain_workers(&mut self) {
        // Retire workers that reached max_tasks_per_child once their last chunk is answered.
        if let Some(max) = self.cfg.max_tasks_per_child {
            for w in &mut self.workers {
                if !w.retiring && w.tasks_assigned >= max && w.inflight.is_empty() {
                    w.retiring = true;
                    let _ = w.link.channel.push(kind::EXIT, &[]);
                }
            }
        }
        if !self.wants_workers() {
            return;
        }
        while self.live_workers() < self.cfg.processes && self.starts.due(Instant::now()) {
            if let Err(e) = self.spawn_worker() {
                let cause = match e {
                    Error::Spawn(why) => why,
                    other => other.to_string(),
                };
                self.start_failed(cause);
                break;
            }
        }
    }

    /// A worker could not be started, or died before it could serve. With no worker serving,
    /// that is (part of) an outage, which everything waiting has now seen.
    fn start_failed(&mut self, cause: String) {
        let now = Instant::now();
        self.starts.failed(now, cause);
        if !self.workers.iter().any(|w| w.usable() && w.serving) {
            self.starts.stranded(now);
            self.pending.saw_failure();
        }
    }

    /// Notes workers that have become ready to serve: starting workers works.
    fn note_all_serving(&mut self) {
        for w in &mut self.workers {
            note_serving(w, &mut self.starts);
        }
    }

    /// When an outage has lasted the start timeout and no worker is alive (one still starting
    /// may yet serve), work that has seen a failure of the outage fails with its cause.
    fn fail_if_no_worker_starts(&mut self) {
        if self.pending.is_empty() || self.workers.iter().any(Worker::usable) {
            return;
        }
        let Some(why) = self.starts.verdict(Instant::now()) else {
            return;
        };
        for chunk in self.pending.take_decided() {
            fail_chunk(&chunk, 0..chunk.len(), |_| Error::Spawn(why.clone()));
        }
    }

    /// Whether missing workers should be started: not when broken or terminating, and after
    /// close() only while there is work left for them.
    fn wants_workers(&self) -> bool {
        self.broken.is_none()
            && self.state != PoolState::Terminating
            && !(self.state == PoolState::Closed && self.pending.is_empty())
    }

    fn spawn_worker(&mut self) -> Result<()> {
        let name = format!("PoolWorker-{}", self.next_name);
        self.next_name += 1;
        let link = bootstrap::spawn_child(&name, Role::PoolWorker, true)?;
        let mut w = Worker {
            link,
            inflight: VecDeque::new(),
            done_items: 0,
            tasks_assigned: 0,
            retiring: false,
            progress: (0, Instant::now()),
            last_done: Instant::now(),
            killed: None,
            ready: false,
            serving: false,
        };
        if let Some(init) = &self.cfg.init {
            // The initializer is the worker's first batch; tasks may queue behind it at once.
            let chunk = Chunk {
                sink: self.init_sink.clone(),
                call: 0,
                entry: init.entry,
                first: 0,
                payload: init.payload.clone(),
                offsets: vec![0],
                retries: 0,
                fds: init.fds.clone(),
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            send_chunk(&mut w, seq, chunk, true)?;
        }
        self.workers.push(w);
        Ok(())
    }

    /// Hands pending chunks to workers with room for them. With `only_below`, stops at the
    /// first chunk at least that large (left to the supervisor).
    fn dispatch(&mut self, only_below: Option<usize>) {
        let max = self.cfg.max_tasks_per_child;
        while let Some(chunk) = self.pending.front() {
            if chunk.sink.abandoned() {
                self.pending.pop_front();
                continue;
            }
            if only_below.is_some_and(|limit| chunk.payload.len() >= limit) {
                break;
            }
            // A chunk taken back from a dead worker runs alone, not queued behind others: if it
            // kills or garbles its worker again, the blame is exact.
            let depth = if chunk.retries > 0 {
                1
            } else {
                self.pace.depth(chunk.call)
            };
            let choice = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    // A task never runs before its worker's initializer has succeeded, nor
                    // queued behind a chunk that must run alone.
                    w.usable()
                        && !w.running_init()
                        && !w.runs_a_retry()
                        && w.inflight.len() < depth
                        && max.is_none_or(|m| w.tasks_assigned < m)
                })
                .min_by_key(|(_, w)| w.inflight.len())
                .map(|(i, _)| i);
            let Some(i) = choice else { break };
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            let w = &mut self.workers[i];
            w.tasks_assigned += 1;
            if send_chunk(w, seq, chunk, false).is_err() {
                w.tasks_assigned -= 1;
            }
        }
    }

    fn flush_writes(&mut self) {
        for w in &mut self.workers {
            if w.link.channel.pending_out() > 0 {
                // A failed write means the worker is dying; its pidfd will tell us.
                let _ = w.link.channel.flush();
            }
        }
    }

    /// Workers idle for [`BULK_IDLE`] let go of the memory their channel keeps for large
    /// messages (their side does the same).
    fn trim_idle_channels(&mut self) {
        for w in &mut self.workers {
            if w.inflight.is_empty()
                && w.link.channel.keeps_memory()
                && w.last_done.elapsed() >= BULK_IDLE
            {
                w.link.channel.release_memory();
            }
        }
    }

    /// How long the next poll may sleep; also notes whether it keeps time for task timeouts.
    fn poll_timeout(&mut self) -> Option<Duration> {
        let mut timeout: Option<Duration> = None;
        let mut consider = |d: Duration| timeout = Some(timeout.map_or(d, |t| t.min(d)));
        self.ticking = false;
        if let Some(limit) = self.cfg.task_timeout {
            if self.workers.iter().any(|w| !w.inflight.is_empty()) {
                consider((limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(100)));
                self.ticking = true;
            }
        }
        let now = Instant::now();
        if self.wants_workers() && self.live_workers() < self.cfg.processes {
            consider(self.starts.next_try().saturating_duration_since(now));
        }
        // Past it, waiting work is decided at each failed attempt (which the poll wakes for).
        let verdict_due = self.starts.verdict_due().filter(|due| *due > now);
        if let Some(due) = verdict_due.filter(|_| !self.pending.is_empty()) {
            consider(due - now);
        }
        for w in &self.workers {
            if w.inflight.is_empty() && w.link.channel.keeps_memory() {
                consider(BULK_IDLE.saturating_sub(w.last_done.elapsed()));
            }
            if let Some(left) = w.stall_left(now) {
                consider(left);
            }
        }
        timeout
    }

    /// What the supervisor's poll watches: the waker, then each worker's socket and pidfd.
    /// `handle_ready` reads the answers by the same positions.
    fn poll_set(&self, waker: &Waker, out: &mut Vec<(RawFd, Interest)>) {
        out.clear();
        out.push((
            waker.as_fd().as_raw_fd(),
            Interest {
                read: true,
                write: false,
            },
        ));
        for w in &self.workers {
            out.push((
                w.link.channel.as_fd().as_raw_fd(),
                Interest {
                    read: !w.link.channel.at_eof(),
                    write: w.link.channel.pending_out() > 0,
                },
            ));
            out.push((
                w.link.pidfd.as_raw_fd(),
                Interest {
                    read: true,
                    write: false,
                },
            ));
        }
    }

    /// Acts on what the poll saw (`ready` as laid out by `poll_set`, whose worker list has
    /// not changed since: only the supervisor thread changes it).
    fn handle_ready(&mut self, ready: &[Ready]) {
        debug_assert_eq!(ready.len(), 1 + 2 * self.workers.len());
        let mut died = Vec::new();
        let mut refused = None;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let sock = ready[1 + 2 * i];
            let pid = ready[2 + 2 * i];
            if sock.read || sock.hangup {
                let read = read_available(w, &mut self.pace, &mut self.deliveries);
                if let Err(e) = read {
                    if let Error::Spawn(reason) = &e {
                        // The child refused the handshake: no child of ours ever will.
                        refused = Some(reason.clone());
                    }
                    kill(w, KillReason::Protocol(e.to_string()));
                }
            }
            if sock.write {
                let _ = w.link.channel.flush();
            }
            if pid.read || w.link.channel.at_eof() {
                died.push(i);
            }
        }
        // Handshake refusals and initializer failures are noticed while reading.
        if let Some(reason) = refused {
            self.set_broken(Broken::Refused(reason));
        }
        self.note_all_serving();
        let init_failure = lock(&self.init_sink.failure).take();
        if let Some(f) = init_failure {
            self.set_broken(Broken::Init(f));
        }
        for &i in died.iter().rev() {
            self.bury(i);
        }
    }

    fn check_timeouts(&mut self) {
        let Some(limit) = self.cfg.task_timeout else {
            return;
        };
        let now = Instant::now();
        for w in &mut self.workers {
            let s = w.started();
            if s != w.progress.0 {
                w.progress = (s, now);
            } else if w.busy()
                && !w.running_init()
                && w.killed.is_none()
                && now - w.progress.1 >= limit
            {
                kill(w, KillReason::Timeout(limit, s));
            }
        }
    }

    /// Replaces workers whose socket holds part of a message that has not been completed for
    /// [`STALLED`] (see there).
    fn check_stalls(&mut self) {
        let stalled = |w: &Worker| w.stall_left(Instant::now()) == Some(Duration::ZERO);
        for w in &mut self.workers {
            if !stalled(w) {
                continue;
            }
            // The rest may have arrived while nobody was reading.
            let read = read_available(w, &mut self.pace, &mut self.deliveries);
            if let Err(e) = read {
                kill(w, KillReason::Protocol(e.to_string()));
            } else if stalled(w) {
                let why = format!(
                    "worker {} sent part of a message and nothing more for {STALLED:?} (did a \
                     task write into an inherited descriptor?)",
                    w.link.pid
                );
                kill(w, KillReason::Protocol(why));
            }
        }
    }

    /// Handles a worker's exit: collect its last results, reap it, blame the item it was
    /// running, and requeue the rest.
    fn bury(&mut self, i: usize) {
        let mut w = self.workers.swap_remove(i);
        let _ = read_available(&mut w, &mut self.pace, &mut self.deliveries);
        note_serving(&mut w, &mut self.starts);
        // What the worker answered before it died arrives before the failures its death causes.
        self.deliver_now();
        let exit = reap(&mut w);
        let blame = |task: usize| -> Error {
            match &w.killed {
                Some(KillReason::Timeout(after, _)) => Error::TaskTimeout {
                    task,
                    after: *after,
                    pid: w.link.pid,
                },
                Some(KillReason::Protocol(m)) => Error::Protocol(m.clone()),
                None => Error::WorkerDied {
                    pid: w.link.pid,
                    cause: exit.clone(),
                    task: Some(task),
                },
            }
        };
        let ending = match &w.killed {
            Some(KillReason::Timeout(_, at)) => Ending::TimedOut { at: *at },
            Some(KillReason::Protocol(_)) => Ending::Garbled,
            None => Ending::Died,
        };
        let progress = Progress {
            done_items: w.done_items,
            started: w.started(),
            greeted: w.ready,
        };
        let held: Vec<Held> = w
            .inflight
            .iter()
            .map(|fl| Held {
                len: fl.chunk.len(),
                reported: fl.reported,
                retries: fl.chunk.retries,
                is_init: fl.is_init,
            })
            .collect();
        let mut requeue = Vec::new();
        for (at, fate) in deaths::account(ending, progress, &held) {
            let chunk = &w.inflight[at].chunk;
            match fate {
                Fate::Blamed(r) => chunk.sink.fail(chunk.first + r, blame(chunk.first + r)),
                Fate::Rerun { items, charge } => requeue.push(chunk.slice(items, charge)),
                Fate::GiveUp {
                    items,
                    standing: Standing::Suspect,
                } => fail_chunk(chunk, items, blame),
                Fate::GiveUp {
                    items,
                    standing: Standing::Clear,
                } => fail_chunk(chunk, items, |task| Error::WorkerDied {
                    pid: w.link.pid,
                    cause: exit.clone(),
                    task: Some(task),
                }),
            }
        }
        for chunk in requeue.into_iter().rev() {
            self.pending.push_front(chunk);
        }
        if !w.serving {
            // Died (or was killed for misbehaving) before it could serve: a failed start, as
            // much as one that never got a process.
            let stage = if w.ready {
                "in the initializer"
            } else {
                "during start-up"
            };
            self.start_failed(format!("a worker died {stage} ({exit})"));
        }
    }

    /// close() + join(): let workers finish, tell them to exit, and reap them.
    fn shutdown_gracefully(&mut self) {
        for w in &mut self.workers {
            let _ = w.link.channel.push(kind::EXIT, &[]);
        }
        let deadline = Instant::now() + EXIT_GRACE;
        for w in &mut self.workers {
            while w.link.channel.pending_out() > 0 && Instant::now() < deadline {
                match w.link.channel.flush() {
                    Ok(true) | Err(_) => break,
                    Ok(false) => {
                        let _ = sys::fd::wait_readable(
                            std::os::fd::AsFd::as_fd(&w.link.pidfd),
                            Some(Duration::from_millis(10)),
                        );
                    }
                }
            }
        }
        for w in &mut self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            let exited =
                sys::fd::wait_readable(std::os::fd::AsFd::as_fd(&w.link.pidfd), Some(left))
                    .unwrap_or(false);
            if !exited {
                let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
            }
            let _ = w.link.reap();
        }
        self.workers.clear();
    }

    /// terminate(): kill every worker now; whatever is unfinished fails with `PoolTerminated`.
    fn terminate(&mut self) {
        for w in &mut self.workers {
            let _ = read_available(w, &mut self.pace, &mut self.deliveries);
            let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
        }
        self.deliver_now();
        for mut w in self.workers.drain(..) {
            let _ = w.link.reap();
            for fl in w.inflight.iter().filter(|f| !f.is_init) {
                fail_chunk(&fl.chunk, fl.reported..fl.chunk.len(), |_| {
                    Error::PoolTerminated
                });
            }
        }
        let mut inbox = lock(&self.inbox);
        inbox
            .chunks
            .drain(..)
            .for_each(|c| self.pending.push_back(c));
        drop(inbox);
        for chunk in self.pending.take_all() {
            fail_chunk(&chunk, 0..chunk.len(), |_| Error::PoolTerminated);
        }
    }
}

/// Fails items `range` of a chunk.
fn fail_chunk(chunk: &Chunk, range: std::ops::Range<usize>, error: impl Fn(usize) -> Error) {
    for i in range {
        chunk.sink.fail(chunk.first + i, error(chunk.first + i));
    }
}

/// Results read from a worker, on their way to the call that wants them. The supervisor hands
/// them over after it has released the core lock (see `Supervisor::serve`): the caller it wakes
/// then finds the lock free to dispatch its next call.
struct Delivery {
    sink: Arc<dyn Sink>,
    first: usize,
    count: usize,
    frame: Frame,
    /// Where the encoded outcomes start in the frame's payload.
    body_at: usize,
}

impl Delivery {
    fn deliver(self) {
        let (sink, first, count) = (&self.sink, self.first, self.count);
        let body = &self.frame.payload()[self.body_at..];
        // Decoding runs the user's `Deserialize`, which may panic: that fails these items,
        // never the supervisor.
        let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink.deliver(first, count, body)
        }));
        if let Err(panic) = delivered {
            let message = crate::task::panic_message(&*panic);
            for i in first..first + count {
                sink.fail(
                    i,
                    Error::Decode(format!("decoding the result panicked: {message}")),
                );
            }
        }
    }
}

/// Queues a chunk on a worker's channel. A chunk too large for one frame cannot be sent at
/// all: its items fail with the encode error, which is also returned.
fn send_chunk(w: &mut Worker, seq: u64, chunk: Chunk, is_init: bool) -> Result<()> {
    let header = TaskHeader {
        seq,
        entry: chunk.entry,
        count: chunk.len() as u32,
    };
    let fds = match chunk.fds.duplicate() {
        Ok(fds) => fds,
        Err(e) => {
            let msg = format!("could not duplicate the descriptors of handles: {e}");
            fail_chunk(&chunk, 0..chunk.len(), |_| {
                Error::Io(std::io::Error::other(msg.clone()))
            });
            return Err(e.into());
        }
    };
    let mut head = Vec::with_capacity(TaskHeader::LEN);
    header.write(&mut head);
    let pushed = w
        .link
        .channel
        .push_parts(kind::TASK, fds, &[&head, &chunk.payload]);
    match pushed {
        Ok(()) => {
            w.inflight.push_back(InFlight {
                seq,
                sent: Instant::now(),
                chunk,
                reported: 0,
                is_init,
            });
            Ok(())
        }
        Err(e) => {
            let msg = match &e {
                Error::Encode(why) => why.clone(),
                other => other.to_string(),
            };
            fail_chunk(&chunk, 0..chunk.len(), |_| Error::Encode(msg.clone()));
            Err(e)
        }
    }
}

/// Notes `w` in `starts` if it has just become ready to serve: greeted back, and through its
/// initializer.
fn note_serving(w: &mut Worker, starts: &mut Starts) {
    if !w.serving && w.ready && !w.running_init() && w.killed.is_none() {
        w.serving = true;
        starts.succeeded();
    }
}

fn kill(w: &mut Worker, why: KillReason) {
    if w.killed.is_none() {
        w.killed = Some(why);
    }
    let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
}

/// Waits for a worker that has exited (or is about to) and reaps it.
fn reap(w: &mut Worker) -> Death {
    let pidfd = std::os::fd::AsFd::as_fd(&w.link.pidfd);
    // The socket closing usually means the process is exiting; give it a moment, then insist.
    if !sys::fd::wait_readable(pidfd, Some(Duration::from_secs(2))).unwrap_or(false) {
        let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
    }
    match w.link.reap() {
        Ok(exit) => w.link.death(exit),
        Err(_) => Death::Unknown,
    }
}

/// Reads whatever the worker has sent and applies it; results for callers go to `deliveries`.
fn read_available(w: &mut Worker, pace: &mut Pace, deliveries: &mut Vec<Delivery>) -> Result<()> {
    loop {
        while let Some(frame) = w.link.channel.next_frame()? {
            apply_frame(w, frame, pace, deliveries)?;
        }
        match w.link.channel.fill()? {
            None | Some(0) => return Ok(()),
            Some(_) => {}
        }
    }
}

fn apply_frame(
    w: &mut Worker,
    frame: Frame,
    pace: &mut Pace,
    deliveries: &mut Vec<Delivery>,
) -> Result<()> {
    match frame.kind {
        kind::READY | kind::REFUSE => {
            bootstrap::check_ready(&frame)?;
            w.ready = true;
            Ok(())
        }
        kind::RESULTS => {
            let mut body = frame.payload();
            let header = ResultsHeader::read(&mut body)?;
            let body_at = frame.payload().len() - body.len();
            let Some(front) = w.inflight.front_mut() else {
                return Err(Error::Protocol(
                    "results for a batch that was not sent".into(),
                ));
            };
            if front.seq != header.seq || header.first as usize != front.reported {
                return Err(Error::Protocol("results out of order".into()));
            }
            let count = header.count as usize;
            if front.reported + count > front.chunk.len() {
                return Err(Error::Protocol("more results than items".into()));
            }
            let delivery = Delivery {
                sink: front.chunk.sink.clone(),
                first: front.chunk.first + front.reported,
                count,
                frame,
                body_at,
            };
            if front.is_init {
                // The supervisor looks at the initializer's outcome as soon as it has read.
                delivery.deliver();
            } else {
                deliveries.push(delivery);
            }
            front.reported += count;
            if front.reported == front.chunk.len() {
                let done = w.inflight.pop_front();
                let now = Instant::now();
                if let Some(done) = done {
                    w.done_items += done.chunk.len() as u64;
                    if !done.is_init {
                        pace.record(done.chunk.call, now - done.sent.max(w.last_done));
                    }
                }
                w.last_done = now;
            }
            Ok(())
        }
        other => Err(Error::Protocol(format!(
            "unexpected frame kind {other} from a worker"
        ))),
    }
}
