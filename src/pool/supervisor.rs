//! The supervisor: one thread per pool that owns the workers.
//!
//! It takes chunks from the pool's inbox, hands them to workers, reads their results, and
//! notices deaths — all through one poller (`sys::epoll`) that watches the workers' sockets,
//! their pidfds and a wake-up eventfd, with non-blocking writes so that no worker can stall it.
//!
//! The cost of a call or a chunk should not grow with the number of workers. The poller is set
//! up once per worker, so a wait costs what is ready, not what is watched (a `poll` of 1 + 2N
//! descriptors cost some 15 µs a wake-up with 64 workers); a waiter looks only at the workers
//! whose next answers are its own, with one `poll` rather than a read each (`collect_here`);
//! `dispatch` ranks the workers once per round, not once per chunk. What is left proportional
//! to the workers is a few walks over them in memory per round (`watch`, `rewatch`,
//! `flush_writes`: some tens of ns per worker). More workers do mean fewer results per read and
//! fewer chunks per write, hence more system calls per chunk: chunk size 1 costs about 1 µs a
//! chunk with 2 workers on the project's 2-core machine, 2–3 µs with 64.
//!
//! When a worker dies, the progress counter it shares with us says which item it was running:
//! that item fails (`WorkerDied`, or `TaskTimeout` if we killed it for overrunning), items it had
//! not reached go back to the front of the queue for another worker, and a replacement is
//! started. Nothing waits for an answer that cannot come: a worker whose socket holds part of
//! a message that is not completed within `STALLED` (garbage a task wrote into it) is replaced
//! too, and workers that cannot be started are tried again with a back-off while waiting work
//! fails after the pool's start timeout (`starts.rs`).
//!
//!
//! How callers hand it work, and when they do its part themselves, is `handoff.rs`; the parent
//! side of each worker is `link.rs`; who is blamed when one dies is `deaths.rs`; how deep
//! chunks are queued is `pace.rs`; retrying starts that fail is `starts.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deaths::{self, Ending, Fate, Held, Progress, Standing};
use super::handoff::{Broken, Config, DISPATCH_HERE_MAX, Inbox, PoolState, Shared};
use super::job::{Chunk, Offsets, Sink, WaiterId};
use super::link::{
    Delivery, KillReason, STALLED, WorkerLink, kill, note_serving, read_available, reap, send_chunk,
};
use super::pace::Pace;
use super::result::lock;
use super::starts::{Backlog, Starts};
use super::stats::{self, Counters, Ended, Meter};
use crate::error::{Death, Error, Result};
use crate::launch::Io;
use crate::sys;
use crate::sys::epoll::Epoll;
use crate::sys::fd::{Interest, Ready, Waker};
use crate::wire::message::{Failure, Role, kind};
use crate::wire::{BULK_IDLE, codec};

/// How long a worker told to exit may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

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

/// Readable, and nothing else: how the waker and the pidfds are watched.
const READ: Interest = Interest {
    read: true,
    write: false,
};

/// What a key of the supervisor's poller stands for: the waker, or the socket or the pidfd of
/// the worker at a position in `Core::workers`. Positions change only when a worker is buried,
/// and `Core::bury` then gives the worker that takes the freed position its new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Waker,
    Socket(usize),
    Exit(usize),
}

impl Source {
    fn key(self) -> u64 {
        match self {
            Source::Waker => 0,
            Source::Socket(at) => 1 + 2 * at as u64,
            Source::Exit(at) => 2 + 2 * at as u64,
        }
    }

    fn of(key: u64) -> Self {
        match key.checked_sub(1) {
            None => Source::Waker,
            Some(k) if k % 2 == 0 => Source::Socket((k / 2) as usize),
            Some(k) => Source::Exit((k / 2) as usize),
        }
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
    workers: Vec<WorkerLink>,
    /// Watches the waker and each worker's socket and pidfd, under the keys of [`Source`]; the
    /// supervisor waits on it without the lock. Only the supervisor thread changes what it
    /// watches (it alone starts and buries workers), so a wait's keys still name the same
    /// workers when it takes the lock back.
    poller: Arc<Epoll>,
    pending: Backlog,
    state: PoolState,
    /// Live `Admission`s, as of the last look at the inbox.
    admitted: usize,
    broken: Option<Broken>,
    next_name: usize,
    next_seq: u64,
    /// How fast chunks are served.
    pace: Pace,
    starts: Starts,
    init_sink: Arc<InitSink>,
    /// What the supervisor's current (or next) wait watches for besides readable sockets
    /// and pidfds: a thread that borrows the core while it sleeps wakes it unless that still
    /// covers everything (see [`Core::leave_asleep`]).
    asleep_on: Watch,
    /// Results read but not yet handed over (see [`Delivery`]).
    pub(super) deliveries: Vec<Delivery>,
    /// The pool's counters (`stats.rs`): workers started and ended, tasks dropped unrun.
    stats: Arc<Counters>,
}

/// What the supervisor does after a round of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Sleep in the poller for at most `timeout` (no limit if `None`).
    Poll { timeout: Option<Duration> },
    /// The pool has ended: the thread returns.
    Stop,
}

/// Whether a thread that borrowed the core must wake the sleeping supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    Needed,
    Needless,
}

/// What a poll watches for besides readable sockets and pidfds (which it always watches): when
/// to wake up by itself, and whether bytes wait to be written (for which it watches the
/// sockets' writability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Watch {
    deadline: Option<Instant>,
    writes: bool,
}

impl Watch {
    /// Whether a wait set up for `self` still notices everything `need` asks for. Bytes to
    /// write always need the supervisor awake (its poller watches the writability only of the
    /// sockets that had bytes waiting when it went to sleep; see `Core::rewatch`).
    fn covers(&self, need: &Watch) -> bool {
        let in_time = match (self.deadline, need.deadline) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(needed)) => mine <= needed,
        };
        in_time && !need.writes
    }
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
                if let Some(core) = &self.shared.core {
                    lock(core).terminate();
                }
            }));
        }
    }

    fn serve(&self) {
        let shared = &*self.shared;
        let Some(core_lock) = &shared.core else {
            return;
        };
        let (mut ready, mut spare) = (Vec::new(), Vec::new());
        let mut core = lock(core_lock);
        let poller = core.poller.clone();
        loop {
            let next = core.work();
            let watched = match next {
                Next::Poll { .. } => core.rewatch(),
                Next::Stop => Ok(()),
            };
            // Results are handed over, and the poll made, with the lock released: a caller we
            // wake finds it free to dispatch its next call, and submitters can dispatch while
            // we sleep.
            let mut deliveries = std::mem::replace(&mut core.deliveries, spare);
            drop(core);
            deliveries.drain(..).for_each(Delivery::deliver);
            spare = deliveries;
            let Next::Poll { timeout } = next else {
                return;
            };
            let polled = watched.and_then(|()| poller.wait(timeout, &mut ready));
            core = lock(core_lock);
            let handled = polled.and_then(|()| {
                if ready
                    .iter()
                    .any(|&(key, _)| Source::of(key) == Source::Waker)
                {
                    shared.waker.drain()?;
                }
                core.handle_ready(&ready)
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

impl Core {
    /// A core with no workers yet, whose poller watches `waker`.
    pub(super) fn new(
        inbox: Arc<Mutex<Inbox>>,
        cfg: Config,
        waker: &Waker,
        stats: Arc<Counters>,
    ) -> Result<Self> {
        let poller = Epoll::new()?;
        poller.add(waker.as_fd(), Source::Waker.key(), READ)?;
        Ok(Self {
            inbox,
            starts: Starts::new(cfg.start_timeout, Instant::now()),
            cfg,
            workers: Vec::new(),
            poller: Arc::new(poller),
            pending: Backlog::default(),
            state: PoolState::Running,
            admitted: 0,
            broken: None,
            next_name: 1,
            next_seq: 1,
            pace: Pace::default(),
            init_sink: Arc::new(InitSink {
                failure: Mutex::new(None),
            }),
            asleep_on: Watch::default(),
            deliveries: Vec::new(),
            stats,
        })
    }

    /// The supervisor's round between two polls: take new work, replace workers, dispatch.
    /// Returns how long the next poll may sleep, or that the pool has ended (terminated, or
    /// closed with nothing left to do).
    fn work(&mut self) -> Next {
        self.take_inbox();
        if self.state == PoolState::Terminating {
            self.terminate();
            return Next::Stop;
        }
        if let Some(broken) = self.broken.clone() {
            for chunk in self.pending.take_all() {
                self.stats.never_run(&chunk, |_| broken.to_error());
            }
        }
        self.maintain_workers();
        self.fail_if_no_worker_starts();
        self.dispatch(None);
        self.flush_writes();
        self.trim_idle_channels();
        if self.winding_down() && self.idle() {
            self.shutdown_gracefully();
            return Next::Stop;
        }
        let now = Instant::now();
        self.asleep_on = self.watch(now);
        Next::Poll {
            timeout: self
                .asleep_on
                .deadline
                .map(|d| d.saturating_duration_since(now)),
        }
    }

    /// A submitter's turn (see `handoff.rs`): hands what is in the inbox to idle workers and
    /// writes it out, then tells whether the sleeping supervisor must be woken.
    pub(super) fn dispatch_here(&mut self) -> Wake {
        self.take_inbox();
        if self.state == PoolState::Running && self.broken.is_none() {
            self.dispatch(Some(DISPATCH_HERE_MAX));
            self.flush_writes();
        }
        self.leave_asleep()
    }

    /// The one rule for whether a thread that borrowed the core while the supervisor sleeps
    /// must wake it: it must unless the poll the supervisor sleeps in still notices everything
    /// there is to do — no work waits for it, no bytes wait to be written, the pool runs, and
    /// its deadline comes no later than anything now needs (a task to time, a worker to start,
    /// part of a message to time, memory to release).
    fn leave_asleep(&self) -> Wake {
        let quiet = self.pending.is_empty()
            && self.state == PoolState::Running
            && self.broken.is_none()
            && self.asleep_on.covers(&self.watch(Instant::now()));
        if quiet { Wake::Needless } else { Wake::Needed }
    }

    /// Hands over the results read so far without waiting to release the lock, where their
    /// order relative to failures matters.
    fn deliver_now(&mut self) {
        self.deliveries.drain(..).for_each(Delivery::deliver);
    }

    /// A waiter's turn (see the module docs): reads what the workers in good standing whose next
    /// answers are for `waiter` have sent, and if that freed one, dispatches as a submitter
    /// does; other workers are left to the supervisor, whose poller reports them anyway.
    /// Returns whether the sleeping supervisor can be left alone; it cannot if a worker
    /// misbehaved or hung up (it must bury it): having read its socket, we may have consumed
    /// what would have woken it.
    ///
    /// Pools with a `task_timeout` or `max_tasks_per_child` leave results to the supervisor
    /// (`Shared::waiters_collect`): it times tasks from the moments it sees them start, which
    /// it checks whenever results arrive, and it retires workers as their last result comes in.
    pub(super) fn collect_here(&mut self, waiter: WaiterId) -> Wake {
        let mut changed = false;
        let mut trouble = false;
        for at in self.answered_here(waiter) {
            let w = &mut self.workers[at];
            let before = w.answered();
            let kept_memory = w.link.channel.keeps_memory();
            if let Err(e) = read_available(w, &mut self.pace, &mut self.deliveries) {
                kill(w, KillReason::Protocol(e.to_string()));
                trouble = true;
            }
            changed |= w.answered() != before;
            // We consumed what the supervisor's poll would have been woken for: a hang-up (it
            // must bury the worker), or part of a message, or memory kept (which `watch` times).
            trouble |= w.link.channel.at_eof();
            changed |= w.link.channel.stalled_for(Instant::now()).is_some()
                || (!kept_memory && w.link.channel.keeps_memory());
        }
        if trouble {
            Wake::Needed
        } else if !changed {
            Wake::Needless
        } else {
            self.dispatch_here()
        }
    }

    /// The workers `waiter` reads (by position): those in good standing whose first chunk
    /// (whose outcomes come next; never the initializer's, which nobody waits for) is of its
    /// call, and that have sent something. One `poll` of
    /// their sockets, without waiting, tells which have: a waiter's turn costs a system call,
    /// not one per busy worker. A lone candidate (an `apply`) is simply read (the read is as
    /// cheap as the poll), as is every candidate if the poll fails.
    fn answered_here(&self, waiter: WaiterId) -> Vec<usize> {
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&at| {
                let w = &self.workers[at];
                w.ready
                    && w.killed.is_none()
                    && !w.link.channel.at_eof()
                    && w.inflight.front().is_some_and(|f| f.waiter == Some(waiter))
            })
            .collect();
        if candidates.len() < 2 {
            return candidates;
        }
        let sockets: Vec<_> = candidates
            .iter()
            .map(|&at| (self.workers[at].link.channel.as_fd(), READ))
            .collect();
        let mut seen = Vec::with_capacity(sockets.len());
        if sys::fd::poll(&sockets, Some(Duration::ZERO), &mut seen).is_err() {
            return candidates;
        }
        candidates
            .into_iter()
            .zip(seen)
            .filter(|(_, seen)| seen.read || seen.hangup)
            .map(|(at, _)| at)
            .collect()
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
        self.admitted = inbox.admitted;
        if inbox.broken.is_none() {
            inbox.broken = self.broken.clone();
        }
    }

    fn set_broken(&mut self, why: Broken) {
        if self.broken.is_none() {
            stats::pool_broken(&why.to_error());
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
        stats::start_failed(&cause);
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
        if self.pending.is_empty() || self.workers.iter().any(WorkerLink::usable) {
            return;
        }
        let Some(why) = self.starts.verdict(Instant::now()) else {
            return;
        };
        for chunk in self.pending.take_decided() {
            self.stats.never_run(&chunk, |_| Error::Spawn(why.clone()));
        }
    }

    /// Whether missing workers should be started: not when broken or terminating, and after
    /// close() only while there is work left for them.
    fn wants_workers(&self) -> bool {
        self.broken.is_none()
            && self.state != PoolState::Terminating
            && !(self.state >= PoolState::Closed && self.pending.is_empty())
    }

    /// Whether the workers are to exit once idle: after `close()` when no admitted `imap` may
    /// hand in more work, and after `join()` in any case (see `PoolState`).
    fn winding_down(&self) -> bool {
        self.state.winds_down(self.admitted)
    }

    fn spawn_worker(&mut self) -> Result<()> {
        let name = format!("PoolWorker-{}", self.next_name);
        self.next_name += 1;
        let link = self
            .cfg
            .launch
            .launch(&name, Role::PoolWorker, Io::Polled)?;
        let mut w = WorkerLink {
            meter: Meter::new(link.pid, name),
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
            watched: Interest::default(),
        };
        if let Some(init) = &self.cfg.init {
            // The initializer is the worker's first batch; tasks may queue behind it at once.
            let chunk = Chunk {
                sink: self.init_sink.clone(),
                call: 0,
                entry: init.entry,
                first: 0,
                payload: init.payload.clone(),
                offsets: Offsets::one(),
                retries: 0,
                fds: init.fds.clone(),
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            send_chunk(&mut w, seq, chunk, true)?;
        }
        self.watch_new(&mut w, self.workers.len())?;
        // Counted once it is the pool's: a worker that could not be set up is a failed start.
        self.stats.worker_started(&w.meter, self.cfg.processes);
        self.workers.push(w);
        Ok(())
    }

    /// What a worker's socket must be watched for: readability always (a hang-up is reported
    /// anyway), writability only while bytes wait to be written (a socket nearly always has
    /// room, and a level-triggered poller would report it at every wait).
    fn wanted(w: &WorkerLink) -> Interest {
        Interest {
            read: true,
            write: w.link.channel.pending_out() > 0,
        }
    }

    /// Starts watching the socket and pidfd of `w`, which is to take position `at`.
    fn watch_new(&self, w: &mut WorkerLink, at: usize) -> std::io::Result<()> {
        let want = Self::wanted(w);
        self.poller
            .add(w.link.channel.as_fd(), Source::Socket(at).key(), want)?;
        let exit = self
            .poller
            .add(w.link.pidfd.as_fd(), Source::Exit(at).key(), READ);
        if exit.is_err() {
            // Removing what was just added cannot fail; nothing more to undo.
            let _ = self.poller.remove(w.link.channel.as_fd());
        }
        w.watched = want;
        exit
    }

    /// Stops watching `gone`, which was at position `at`, and gives the worker that has taken
    /// that position (by `swap_remove`) its new keys. An error leaves the poller reporting a
    /// worker under the wrong position: the caller must terminate the pool.
    fn unwatch(&self, gone: &WorkerLink, at: usize) -> std::io::Result<()> {
        // Removing fails only for a descriptor not watched: nothing to undo.
        let _ = self.poller.remove(gone.link.channel.as_fd());
        let _ = self.poller.remove(gone.link.pidfd.as_fd());
        let Some(moved) = self.workers.get(at) else {
            return Ok(());
        };
        self.poller.modify(
            moved.link.channel.as_fd(),
            Source::Socket(at).key(),
            moved.watched,
        )?;
        self.poller
            .modify(moved.link.pidfd.as_fd(), Source::Exit(at).key(), READ)
    }

    /// Brings what the poller watches each socket for up to date (see [`Core::wanted`]):
    /// called before each wait, after the round that may have queued or written bytes.
    fn rewatch(&mut self) -> std::io::Result<()> {
        for (at, w) in self.workers.iter_mut().enumerate() {
            let want = Self::wanted(w);
            if want != w.watched {
                self.poller
                    .modify(w.link.channel.as_fd(), Source::Socket(at).key(), want)?;
                w.watched = want;
            }
        }
        Ok(())
    }

    /// Hands pending chunks to workers with room for them, each to the least loaded (the first
    /// of those, by position). With `only_below`, stops at the first chunk at least that large
    /// (left to the supervisor).
    ///
    /// The workers that may take work are ranked once per call, in a heap: handing out a burst
    /// of chunks (a chunksize-1 map starting) costs a step per worker plus a few per chunk, not
    /// a walk over every worker for each chunk.
    fn dispatch(&mut self, only_below: Option<usize>) {
        if self.pending.is_empty() {
            return;
        }
        let max = self.cfg.max_tasks_per_child;
        // A task never runs before its worker's initializer has succeeded, nor queued behind a
        // chunk that must run alone.
        let takes_work = |w: &WorkerLink| {
            w.usable()
                && !w.running_init()
                && !w.runs_a_retry()
                && max.is_none_or(|m| w.tasks_assigned < m)
        };
        let workers = self.live_workers();
        let mut least_loaded: BinaryHeap<Reverse<(usize, usize)>> = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| takes_work(w))
            .map(|(at, w)| Reverse((w.inflight.len(), at)))
            .collect();
        while let Some(chunk) = self.pending.front() {
            if chunk.sink.abandoned() {
                self.stats.cancelled(chunk.len());
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
                let waiting = self.pending.items() - chunk.len();
                self.pace.depth(chunk.call, chunk.len(), waiting, workers)
            };
            let Some(&Reverse((load, at))) = least_loaded.peek() else {
                break;
            };
            if load >= depth {
                break;
            }
            least_loaded.pop();
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            if !chunk.sink.claim() {
                // Cancelled since it was looked at above: dropped unrun.
                self.stats.cancelled(chunk.len());
                least_loaded.push(Reverse((load, at)));
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let w = &mut self.workers[at];
            w.tasks_assigned += 1;
            if send_chunk(w, seq, chunk, false).is_err() {
                w.tasks_assigned -= 1;
            }
            if takes_work(w) {
                least_loaded.push(Reverse((w.inflight.len(), at)));
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

    /// What a poll must watch for now, besides readable sockets and pidfds (see [`Watch`]).
    fn watch(&self, now: Instant) -> Watch {
        let mut deadline: Option<Instant> = None;
        let mut consider = |at: Instant| deadline = Some(deadline.map_or(at, |d| d.min(at)));
        if let Some(limit) = self.cfg.task_timeout {
            if self.workers.iter().any(|w| !w.inflight.is_empty()) {
                let tick = (limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
                consider(now + tick);
            }
        }
        if self.wants_workers() && self.live_workers() < self.cfg.processes {
            consider(self.starts.next_try());
        }
        // Past it, waiting work is decided at each failed attempt (which the poll wakes for).
        let verdict_due = self.starts.verdict_due().filter(|due| *due > now);
        if let Some(due) = verdict_due.filter(|_| !self.pending.is_empty()) {
            consider(due);
        }
        for w in &self.workers {
            if w.inflight.is_empty() && w.link.channel.keeps_memory() {
                consider(w.last_done + BULK_IDLE);
            }
            if let Some(left) = w.stall_left(now) {
                consider(now + left);
            }
        }
        Watch {
            deadline,
            writes: self
                .workers
                .iter()
                .any(|w| w.link.channel.pending_out() > 0),
        }
    }

    /// Acts on what the poller reported (`ready`, keyed by [`Source`]; the worker list has not
    /// changed since the wait: only the supervisor thread changes it). An error means the
    /// poller no longer matches the workers (see [`Core::unwatch`]).
    fn handle_ready(&mut self, ready: &[(u64, Ready)]) -> std::io::Result<()> {
        let mut died = Vec::new();
        let mut refused = None;
        for &(key, seen) in ready {
            let at = match Source::of(key) {
                Source::Waker => continue,
                Source::Exit(at) if at < self.workers.len() => {
                    died.push(at);
                    continue;
                }
                Source::Exit(at) => {
                    debug_assert!(false, "an exit for worker {at} of {}", self.workers.len());
                    continue;
                }
                Source::Socket(at) => at,
            };
            let Some(w) = self.workers.get_mut(at) else {
                debug_assert!(false, "an event for worker {at} of {}", self.workers.len());
                continue;
            };
            if seen.read || seen.hangup {
                let read = read_available(w, &mut self.pace, &mut self.deliveries);
                if let Err(e) = read {
                    if let Error::Spawn(reason) = &e {
                        // The child refused the handshake: no child of ours ever will.
                        refused = Some(reason.clone());
                    }
                    kill(w, KillReason::Protocol(e.to_string()));
                }
            }
            if seen.write {
                let _ = w.link.channel.flush();
            }
            // A socket at its end reports a hang-up at every wait until the worker is buried,
            // whoever read the end (a waiter, or `check_stalls`): it is noticed here.
            if w.link.channel.at_eof() {
                died.push(at);
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
        died.sort_unstable();
        died.dedup();
        // From the last position down: burying moves the last worker into the freed position.
        let mut rekeyed = Ok(());
        for &at in died.iter().rev() {
            rekeyed = rekeyed.and(self.bury(at));
        }
        rekeyed
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
                stats::task_overran(w.link.pid, limit);
                kill(w, KillReason::Timeout(limit, s));
            }
        }
    }

    /// Replaces workers whose socket holds part of a message that has not been completed for
    /// [`STALLED`] (see there).
    fn check_stalls(&mut self) {
        // One clock reading for all: this runs after every wait, for every worker.
        let now = Instant::now();
        let stalled = |w: &WorkerLink| w.stall_left(now) == Some(Duration::ZERO);
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
    /// Returns the error of [`Core::unwatch`], after the burial.
    fn bury(&mut self, i: usize) -> std::io::Result<()> {
        let mut w = self.workers.swap_remove(i);
        let unwatched = self.unwatch(&w, i);
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
                    rank: None,
                },
                Some(KillReason::Protocol(m)) => Error::Protocol(m.clone()),
                None => Error::WorkerDied {
                    pid: w.link.pid,
                    cause: exit.clone(),
                    task,
                    rank: None,
                },
            }
        };
        let ending = match &w.killed {
            Some(KillReason::Timeout(_, at)) => Ending::TimedOut { at: *at },
            Some(KillReason::Protocol(_)) => Ending::Garbled,
            None => Ending::Died,
        };
        let asked = w.retiring && exit == Death::Exit(0);
        self.stats
            .worker_ended(&w.meter, ending_of(&w, asked), &exit);
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
                } => chunk.fail(items, blame),
                Fate::GiveUp {
                    items,
                    standing: Standing::Clear,
                } => chunk.fail(items, |task| Error::WorkerDied {
                    pid: w.link.pid,
                    cause: exit.clone(),
                    task,
                    rank: None,
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
        unwatched
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
            let death = w
                .link
                .reap()
                .map_or(Death::Unknown, |exit| w.link.death(exit));
            // Told to exit: it did, or was killed for taking too long about it.
            let asked = !exited || death == Death::Exit(0);
            self.stats
                .worker_ended(&w.meter, ending_of(w, asked), &death);
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
            let death = w
                .link
                .reap()
                .map_or(Death::Unknown, |exit| w.link.death(exit));
            // Killed above, unless the pool had killed it already (a timeout, garbage).
            self.stats
                .worker_ended(&w.meter, ending_of(&w, true), &death);
            for fl in w.inflight.iter().filter(|f| !f.is_init) {
                fl.chunk
                    .fail(fl.reported..fl.chunk.len(), |_| Error::PoolTerminated);
            }
        }
        let mut inbox = lock(&self.inbox);
        inbox
            .chunks
            .drain(..)
            .for_each(|c| self.pending.push_back(c));
        drop(inbox);
        for chunk in self.pending.take_all() {
            self.stats.never_run(&chunk, |_| Error::PoolTerminated);
        }
    }
}

/// How worker `w` ended, as the pool tells it (`stats.rs`): killed by the pool for a reason,
/// ended because the pool `asked` it to (told to exit, or killed at `terminate`), or died.
fn ending_of(w: &WorkerLink, asked: bool) -> Ended<'_> {
    match &w.killed {
        Some(KillReason::Timeout(..)) => Ended::TimedOut,
        Some(KillReason::Protocol(why)) => Ended::Misbehaved(why),
        None if asked => Ended::Retired,
        None => Ended::Died,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_poller_key_names_one_source() {
        let sources = [Source::Waker]
            .into_iter()
            .chain((0..100).flat_map(|at| [Source::Socket(at), Source::Exit(at)]));
        let mut keys = std::collections::HashSet::new();
        for source in sources {
            assert_eq!(Source::of(source.key()), source);
            assert!(keys.insert(source.key()), "{source:?} shares its key");
        }
    }

    #[test]
    fn a_sleeping_poll_covers_only_what_it_wakes_in_time_for() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let asleep = |deadline| Watch {
            deadline,
            writes: false,
        };
        let need = |deadline, writes| Watch { deadline, writes };
        assert!(asleep(None).covers(&need(None, false)));
        assert!(
            !asleep(None).covers(&need(Some(ms(5)), false)),
            "a task to time"
        );
        assert!(asleep(Some(ms(5))).covers(&need(Some(ms(5)), false)));
        assert!(asleep(Some(ms(5))).covers(&need(Some(ms(9)), false)));
        assert!(
            !asleep(Some(ms(9))).covers(&need(Some(ms(5)), false)),
            "too late"
        );
        assert!(asleep(Some(ms(5))).covers(&need(None, false)));
        assert!(
            !asleep(Some(ms(5))).covers(&need(None, true)),
            "bytes to write"
        );
    }
}
