//! The supervisor: one thread per pool that owns the workers.
//!
//! It takes chunks from the pool's inbox, hands them to workers, reads their results, and
//! notices deaths — all through one `poll` over the workers' sockets, their pidfds and a wake-up
//! eventfd, with non-blocking writes so that no worker can stall it.
//!
//! When a worker dies, the progress counter it shares with us says which item it was running:
//! that item fails (`WorkerDied`, or `TaskTimeout` if we killed it for overrunning), items it had
//! not reached go back to the front of the queue for another worker, and a replacement is
//! started. Nothing waits for an answer that cannot come.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::job::{Chunk, Sink};
use super::result::lock;
use crate::bootstrap::{self, ChildLink};
use crate::error::{Death, Error, Result};
use crate::sys;
use crate::sys::fd::{Interest, Ready, Waker};
use crate::wire::fds::FdSet;
use crate::wire::message::{Failure, ResultsHeader, Role, TaskHeader, kind};
use crate::wire::{Frame, codec};
use crate::worker::STARTED_SLOT;

/// How many times a chunk whose worker died is handed out again before its items fail.
const MAX_RETRIES: u8 = 3;
/// Consecutive failed spawns (with no live worker) after which the pool gives up.
const MAX_SPAWN_FAILURES: u32 = 5;
/// Consecutive deaths inside the initializer after which the pool gives up.
const MAX_INIT_DEATHS: u32 = 3;
/// How long a worker told to exit may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// Chunks slower than this are sent one at a time per worker (best balance); faster ones are
/// queued a few deep so that workers never wait for the supervisor.
const SLOW_CHUNK: Duration = Duration::from_millis(1);
const FAST_DEPTH: usize = 4;

/// The pool's settings, as the supervisor needs them.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<InitTask>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) task_timeout: Option<Duration>,
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

/// Why a pool can no longer run tasks.
#[derive(Clone, Debug)]
pub(crate) enum Broken {
    Init(Failure),
    Spawn(String),
}

impl Broken {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Broken::Init(f) => Error::InitializerFailed(Box::new(f.clone().into())),
            Broken::Spawn(m) => Error::Spawn(m.clone()),
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
    pub(crate) inbox: Mutex<Inbox>,
    pub(crate) waker: Waker,
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
    /// Queues chunks for the workers, or hands them back with the reason they were refused.
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
        inbox.chunks.extend(chunks);
        drop(inbox);
        // An eventfd write fails only if the descriptor is gone, which it is not while we hold
        // `self`; the supervisor also re-reads the inbox on every wake-up.
        let _ = self.waker.notify();
        Ok(())
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

/// Records the initializer's outcomes: the first failure (never overwritten by another worker's
/// success), and whether any worker's initializer succeeded since the last look.
struct InitSink {
    failure: Mutex<Option<Failure>>,
    succeeded: std::sync::atomic::AtomicBool,
}

impl Sink for InitSink {
    fn deliver(&self, _first: usize, _count: usize, bytes: &[u8]) {
        let failure = match codec::decode_outcome::<()>(&mut &bytes[..]) {
            Ok(Ok(())) => None,
            Ok(Err(f)) => Some(f),
            Err(e) => Some(Failure::Decode(e.to_string())),
        };
        match failure {
            Some(f) => {
                lock(&self.failure).get_or_insert(f);
            }
            None => self.succeeded.store(true, Ordering::Relaxed),
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
}

impl Worker {
    fn started(&self) -> u64 {
        self.link.page.slot(STARTED_SLOT).load(Ordering::Relaxed)
    }

    /// Whether an item is running right now (started and not answered).
    fn busy(&self) -> bool {
        let reported = self.inflight.front().map_or(0, |f| f.reported as u64);
        self.started() > self.done_items + reported
    }

    fn running_init(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.is_init)
    }
}

pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    cfg: Config,
    workers: Vec<Worker>,
    pending: VecDeque<Chunk>,
    state: PoolState,
    broken: Option<Broken>,
    next_name: usize,
    next_seq: u64,
    /// Smoothed time a chunk takes on a worker; `None` until one finished.
    chunk_time: Option<Duration>,
    spawn_failures: u32,
    init_deaths: u32,
    next_spawn: Instant,
    init_sink: Arc<InitSink>,
}

impl Supervisor {
    pub(crate) fn new(shared: Arc<Shared>, cfg: Config) -> Self {
        Self {
            shared,
            cfg,
            workers: Vec::new(),
            pending: VecDeque::new(),
            state: PoolState::Running,
            broken: None,
            next_name: 1,
            next_seq: 1,
            chunk_time: None,
            spawn_failures: 0,
            init_deaths: 0,
            next_spawn: Instant::now(),
            init_sink: Arc::new(InitSink {
                failure: Mutex::new(None),
                succeeded: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The supervisor thread's body. Should it ever panic, the pool is terminated — every
    /// waiter gets an answer and every worker is reaped — rather than left without a supervisor.
    pub(crate) fn run(mut self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        if outcome.is_err() {
            eprintln!("multiproc: the pool supervisor failed; terminating the pool");
            lock(&self.shared.inbox).state = PoolState::Terminating;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.terminate()));
        }
    }

    fn serve(&mut self) {
        let mut ready = Vec::new();
        loop {
            self.take_inbox();
            if self.state == PoolState::Terminating {
                self.terminate();
                return;
            }
            if let Some(broken) = self.broken.clone() {
                for chunk in self.pending.drain(..) {
                    fail_chunk(&chunk, 0..chunk.len(), |_| broken.to_error());
                }
            }
            self.maintain_workers();
            self.dispatch();
            self.flush_writes();
            if self.state == PoolState::Closed && self.idle() {
                self.shutdown_gracefully();
                return;
            }
            if let Err(e) = self.poll_once(&mut ready) {
                // poll itself failing means the process is in deep trouble; fail what we hold
                // rather than spin.
                eprintln!("multiproc: pool supervisor cannot poll: {e}");
                self.terminate();
                return;
            }
            self.check_timeouts();
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self
                .workers
                .iter()
                .all(|w| w.inflight.iter().all(|f| f.is_init))
    }

    fn take_inbox(&mut self) {
        let mut inbox = lock(&self.shared.inbox);
        self.pending.extend(inbox.chunks.drain(..));
        self.state = inbox.state;
        if inbox.broken.is_none() {
            inbox.broken = self.broken.clone();
        }
    }

    fn set_broken(&mut self, why: Broken) {
        if self.broken.is_none() {
            self.broken = Some(why.clone());
            lock(&self.shared.inbox).broken = Some(why);
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
        while self.live_workers() < self.cfg.processes && Instant::now() >= self.next_spawn {
            if let Err(e) = self.spawn_worker() {
                self.spawn_failures += 1;
                self.next_spawn =
                    Instant::now() + Duration::from_millis(50 << self.spawn_failures.min(5));
                if self.live_workers() == 0 && self.spawn_failures >= MAX_SPAWN_FAILURES {
                    self.set_broken(Broken::Spawn(e.to_string()));
                }
                break;
            }
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
        };
        if let Some(init) = &self.cfg.init {
            // The initializer is the worker's first batch; tasks may queue behind it at once.
            let chunk = Chunk {
                sink: self.init_sink.clone(),
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

    fn depth(&self) -> usize {
        match self.chunk_time {
            Some(t) if t < SLOW_CHUNK => FAST_DEPTH,
            _ => 1,
        }
    }

    fn dispatch(&mut self) {
        let depth = self.depth();
        let max = self.cfg.max_tasks_per_child;
        while let Some(chunk) = self.pending.front() {
            if chunk.sink.abandoned() {
                self.pending.pop_front();
                continue;
            }
            let choice = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    // A task never runs before its worker's initializer has succeeded.
                    !w.retiring
                        && !w.running_init()
                        && w.killed.is_none()
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

    fn poll_timeout(&self) -> Option<Duration> {
        let mut timeout: Option<Duration> = None;
        let mut consider = |d: Duration| timeout = Some(timeout.map_or(d, |t| t.min(d)));
        if let Some(limit) = self.cfg.task_timeout {
            if self.workers.iter().any(|w| !w.inflight.is_empty()) {
                consider((limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(100)));
            }
        }
        if self.wants_workers() && self.live_workers() < self.cfg.processes {
            consider(self.next_spawn.saturating_duration_since(Instant::now()));
        }
        timeout
    }

    fn poll_once(&mut self, ready: &mut Vec<Ready>) -> std::io::Result<()> {
        let timeout = self.poll_timeout();
        {
            let mut fds = Vec::with_capacity(1 + 2 * self.workers.len());
            fds.push((
                self.shared.waker.as_fd(),
                Interest {
                    read: true,
                    write: false,
                },
            ));
            for w in &self.workers {
                fds.push((
                    w.link.channel.as_fd(),
                    Interest {
                        read: !w.link.channel.at_eof(),
                        write: w.link.channel.pending_out() > 0,
                    },
                ));
                fds.push((
                    std::os::fd::AsFd::as_fd(&w.link.pidfd),
                    Interest {
                        read: true,
                        write: false,
                    },
                ));
            }
            sys::fd::poll(&fds, timeout, ready)?;
        }
        if ready[0].read {
            self.shared.waker.drain()?;
        }
        let mut died = Vec::new();
        let mut refused = None;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let sock = ready[1 + 2 * i];
            let pid = ready[2 + 2 * i];
            if sock.read || sock.hangup {
                let was_ready = w.ready;
                let read = read_available(w, &mut self.chunk_time);
                if w.ready && !was_ready {
                    // A child greeted back: starting workers works.
                    self.spawn_failures = 0;
                }
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
            self.set_broken(Broken::Spawn(reason));
        }
        if self.init_sink.succeeded.swap(false, Ordering::Relaxed) {
            self.init_deaths = 0;
        }
        let init_failure = lock(&self.init_sink.failure).take();
        if let Some(f) = init_failure {
            self.set_broken(Broken::Init(f));
        }
        for &i in died.iter().rev() {
            self.bury(i);
        }
        Ok(())
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

    /// Handles a worker's exit: collect its last results, reap it, blame the item it was
    /// running, and requeue the rest.
    fn bury(&mut self, i: usize) {
        let mut w = self.workers.swap_remove(i);
        let _ = read_available(&mut w, &mut self.chunk_time);
        let exit = reap(&mut w);
        if !w.ready && w.killed.is_none() {
            // Died during start-up: back off as for a failed spawn, and give up eventually.
            self.spawn_failures += 1;
            self.next_spawn =
                Instant::now() + Duration::from_millis(50 << self.spawn_failures.min(5));
            if self.live_workers() == 0 && self.spawn_failures >= MAX_SPAWN_FAILURES {
                self.set_broken(Broken::Spawn(format!(
                    "workers keep dying during start-up (last: {exit})"
                )));
            }
        }
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
        // The item to blame is the last one started (by the progress counter), or, for a
        // timeout, the one that was running when we decided to kill.
        let blamed = match &w.killed {
            Some(KillReason::Timeout(_, at)) => *at,
            _ => w.started(),
        };
        let mut base = w.done_items;
        let mut requeue = Vec::new();
        for fl in &w.inflight {
            let n = fl.chunk.len();
            let running = (blamed > base + fl.reported as u64 && blamed <= base + n as u64)
                .then(|| (blamed - 1 - base) as usize);
            base += n as u64;
            if fl.is_init {
                if running.is_some() {
                    self.init_deaths += 1;
                    if self.init_deaths >= MAX_INIT_DEATHS {
                        let message = format!("worker died during the initializer: {}", blame(0));
                        self.set_broken(Broken::Init(Failure::Panic {
                            message,
                            location: None,
                            backtrace: None,
                        }));
                    }
                }
                continue;
            }
            if let Some(r) = running {
                fl.chunk
                    .sink
                    .fail(fl.chunk.first + r, blame(fl.chunk.first + r));
            }
            // Everything else not answered runs again elsewhere: items the worker never reached,
            // and (rarely) items it finished whose answer died with it.
            let mut ranges = Vec::new();
            match running {
                Some(r) => {
                    ranges.push(fl.reported..r);
                    ranges.push(r + 1..n);
                }
                None => ranges.push(fl.reported..n),
            }
            // A death that blamed an item made progress; only a death that blamed nothing
            // (the worker died between items, or before starting) counts against the rest.
            // A child that died before greeting back ran nothing: that is a failed start.
            let charge = u8::from(running.is_none() && w.ready);
            for range in ranges.into_iter().filter(|r| !r.is_empty()) {
                if fl.chunk.retries + charge > MAX_RETRIES {
                    let pid = w.link.pid;
                    let cause = exit.clone();
                    fail_chunk(&fl.chunk, range, |task| Error::WorkerDied {
                        pid,
                        cause: cause.clone(),
                        task: Some(task),
                    });
                } else {
                    requeue.push(fl.chunk.slice(range, charge));
                }
            }
        }
        for chunk in requeue.into_iter().rev() {
            self.pending.push_front(chunk);
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
                let _ = sys::proc::signal(w.link.pid, true);
            }
            let _ = w.link.reap();
        }
        self.workers.clear();
    }

    /// terminate(): kill every worker now; whatever is unfinished fails with `PoolTerminated`.
    fn terminate(&mut self) {
        for w in &mut self.workers {
            let _ = read_available(w, &mut self.chunk_time);
            let _ = sys::proc::signal(w.link.pid, true);
        }
        for mut w in self.workers.drain(..) {
            let _ = w.link.reap();
            for fl in w.inflight.iter().filter(|f| !f.is_init) {
                fail_chunk(&fl.chunk, fl.reported..fl.chunk.len(), |_| {
                    Error::PoolTerminated
                });
            }
        }
        let mut inbox = lock(&self.shared.inbox);
        self.pending.extend(inbox.chunks.drain(..));
        drop(inbox);
        for chunk in self.pending.drain(..) {
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
    let pushed = w.link.channel.push_with(kind::TASK, fds, |out| {
        out.reserve(TaskHeader::LEN + chunk.payload.len());
        header.write(out);
        out.extend_from_slice(&chunk.payload);
        Ok(())
    });
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
            let msg = e.to_string();
            fail_chunk(&chunk, 0..chunk.len(), |_| Error::Encode(msg.clone()));
            Err(e)
        }
    }
}

fn kill(w: &mut Worker, why: KillReason) {
    if w.killed.is_none() {
        w.killed = Some(why);
    }
    let _ = sys::proc::signal(w.link.pid, true);
}

/// Waits for a worker that has exited (or is about to) and reaps it.
fn reap(w: &mut Worker) -> Death {
    let pidfd = std::os::fd::AsFd::as_fd(&w.link.pidfd);
    // The socket closing usually means the process is exiting; give it a moment, then insist.
    if !sys::fd::wait_readable(pidfd, Some(Duration::from_secs(2))).unwrap_or(false) {
        let _ = sys::proc::signal(w.link.pid, true);
    }
    match w.link.reap() {
        Ok(exit) => exit.into(),
        Err(_) => Death::Unknown,
    }
}

/// Reads whatever the worker has sent and applies it.
fn read_available(w: &mut Worker, chunk_time: &mut Option<Duration>) -> Result<()> {
    loop {
        while let Some(frame) = w.link.channel.next_frame()? {
            apply_frame(w, frame, chunk_time)?;
        }
        match w.link.channel.fill()? {
            None | Some(0) => return Ok(()),
            Some(_) => {}
        }
    }
}

fn apply_frame(w: &mut Worker, frame: Frame, chunk_time: &mut Option<Duration>) -> Result<()> {
    match frame.kind {
        kind::READY | kind::REFUSE => {
            bootstrap::check_ready(&frame)?;
            w.ready = true;
            Ok(())
        }
        kind::RESULTS => {
            let mut body = frame.payload();
            let header = ResultsHeader::read(&mut body)?;
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
            let (sink, first) = (&front.chunk.sink, front.chunk.first + front.reported);
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
            front.reported += count;
            if front.reported == front.chunk.len() {
                let done = w.inflight.pop_front();
                let now = Instant::now();
                if let Some(done) = done {
                    w.done_items += done.chunk.len() as u64;
                    if !done.is_init {
                        let took = now - done.sent.max(w.last_done);
                        *chunk_time = Some(match *chunk_time {
                            Some(t) => (t * 3 + took) / 4,
                            None => took,
                        });
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
