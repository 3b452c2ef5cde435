//! The hand-off between the threads that call the pool and its supervisor thread.
//!
//! Calls put chunks in the [`Inbox`]; the supervisor (`supervisor.rs`) takes them from there.
//! A pool's state (running, closed, joining, terminating), how many `imap`s may still hand in
//! work after `close()` ([`Admission`]), and what broke it travel the same way.
//!
//! Everything about the workers lives in [`Core`], behind `Shared::core`. The supervisor thread
//! holds that lock while it works and lets go of it only while it sleeps in its poller. A thread
//! that submits a little work (`DISPATCH_HERE_MAX`) `try_lock`s it and, when it gets it, hands
//! the new chunks to idle workers and writes them to their sockets itself
//! ([`Core::dispatch_here`]): the supervisor is not woken for an `apply`, which saves a thread
//! wake-up (several µs, more on a virtual machine) on every round trip. The submitter wakes it
//! (through the eventfd) whenever it leaves something the sleeping supervisor would not notice:
//! a partly written frame (the poller must watch for writability), chunks still queued, a task
//! clock to start, a worker to start, or a changed pool state — and whenever the lock was busy.
//!
//! Likewise, a thread waiting for a result (`AsyncResult::get`) spends its first few tens of
//! µs reading the workers' sockets itself ([`Core::collect_here`]), so that a quick result
//! reaches it without the supervisor being woken at all. It reads only the workers whose next
//! answers are its own (their first chunk is of its call), and with one `poll` of their sockets,
//! without waiting, it reads only those that have sent something: its cost does not grow with
//! the number of workers (one read per busy worker, under the lock, did). Having read them, it
//! may have consumed what would have woken the supervisor, so it wakes it when something needs
//! it: a worker that hung up or sent garbage, a freed worker with chunks still queued, a pool
//! closing. Whoever reads results under the lock hands them over after releasing it
//! ([`Delivery`]), so that a caller it wakes finds the lock free for its next call. A waiter
//! hands over only its own results and leaves the rest (of the chunks that follow its own) to
//! the supervisor (decoding them runs user code, which a bystander's short wait must not pay
//! for); `join` waits for results a waiter is still handing over (`InHand`).
//!
//! Those other threads never start, bury or drop a worker, and never change `Core::workers`
//! itself (at most, a waiter signals a worker that sent garbage; the supervisor buries it). So
//! what the supervisor's poller watches, and the positions its keys name, change only while
//! the supervisor holds the lock, and a wait's answer still holds when it takes the lock back
//! (`Core::handle_ready` relies on this).
//!
//! Lock order: `core`, then `inbox`. Submitters let go of `inbox` before they try `core`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::job::{Chunk, Collector, WaiterId};
use super::link::Delivery;
use super::result::{lock, wait_while_until};
use super::stats::Counters;
use super::supervisor::{Core, Wake};
use crate::error::{Error, Result};
use crate::launch::Launch;
use crate::sys::fd::Waker;
use crate::wire::fds::FdSet;
use crate::wire::message::Failure;

/// Submissions larger than this (encoded bytes) are dispatched by the supervisor, not by the
/// submitting thread: copying them into the workers' buffers would keep the core lock (and the
/// supervisor's handling of results) waiting for longer than the thread wake-up it saves, and
/// it measured slower for large payloads (a 64 MiB echo, by about 10%).
pub(super) const DISPATCH_HERE_MAX: usize = 64 * 1024;

/// The pool's settings, as the supervisor needs them.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<InitTask>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) task_timeout: Option<Duration>,
    /// How long work waits while no worker can be started (see `starts.rs`).
    pub(crate) start_timeout: Duration,
    /// How workers are started.
    pub(crate) launch: &'static dyn Launch,
}

/// The initializer: a trampoline and its one encoded argument.
pub(crate) struct InitTask {
    pub(crate) entry: i64,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Arc<FdSet>,
}

/// A pool's state. It only ever moves forward, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PoolState {
    Running,
    /// `close()` was called: new calls are refused, but an `imap` made before (an
    /// [`Admission`]) still hands in its input. The workers exit once no work is left and no
    /// such `imap` is.
    Closed,
    /// `join()` was called: nothing more is accepted, from anyone, so that the work left is
    /// finite and `join` cannot wait forever (for an `imap` its own thread holds, say). The
    /// workers exit once it is done.
    Joining,
    Terminating,
}

impl PoolState {
    /// Whether a pool in this state ends once idle, with `admitted` [`Admission`]s live: after
    /// `close()` when no admitted `imap` may hand in more work, and after `join()` in any case.
    pub(crate) fn winds_down(self, admitted: usize) -> bool {
        match self {
            PoolState::Running | PoolState::Terminating => false,
            PoolState::Closed => admitted == 0,
            PoolState::Joining => true,
        }
    }
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
    /// Live [`Admission`]s.
    pub(crate) admitted: usize,
    pub(crate) broken: Option<Broken>,
}

/// What the pool handle and the supervisor share.
pub(crate) struct Shared {
    pub(crate) inbox: Arc<Mutex<Inbox>>,
    pub(crate) waker: Waker,
    /// The workers and their queue; see the module docs for who holds it when. `None` for a
    /// pool whose workers are elsewhere (`crate::mpi`), whose thread takes the inbox itself.
    pub(super) core: Option<Mutex<Core>>,
    /// Whether threads waiting for results may read them from the workers (see
    /// `Core::collect_here`).
    pub(super) waiters_collect: bool,
    /// How many threads other than the supervisor are handing over results they read.
    pub(super) in_hand: Mutex<usize>,
    pub(super) in_hand_done: Condvar,
    /// What the pool has done (`Pool::stats`), counted by its calls, its sinks and its core.
    pub(crate) stats: Arc<Counters>,
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
        let waker = Waker::new()?;
        let inbox = Arc::new(Mutex::new(Inbox {
            chunks: VecDeque::new(),
            state: PoolState::Running,
            admitted: 0,
            broken: None,
        }));
        let stats = Counters::new();
        Ok(Arc::new(Self {
            inbox: inbox.clone(),
            waiters_collect: cfg.task_timeout.is_none() && cfg.max_tasks_per_child.is_none(),
            core: Some(Mutex::new(Core::new(inbox, cfg, &waker, stats.clone())?)),
            waker,
            in_hand: Mutex::new(0),
            in_hand_done: Condvar::new(),
            stats,
        }))
    }

    /// The shared state of a pool without local workers: its calls fill the inbox and wake
    /// whichever thread serves it (`crate::mpi`), which takes the inbox itself.
    #[cfg(feature = "mpi")]
    pub(crate) fn without_core() -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            inbox: Arc::new(Mutex::new(Inbox {
                chunks: VecDeque::new(),
                state: PoolState::Running,
                admitted: 0,
                broken: None,
            })),
            waiters_collect: false,
            core: None,
            waker: Waker::new()?,
            in_hand: Mutex::new(0),
            in_hand_done: Condvar::new(),
            stats: Counters::new(),
        }))
    }

    /// Admits a call that hands in its work over time (an `imap`) while the pool runs, so
    /// that it may go on after `close()`; `None` once the pool no longer runs.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let mut inbox = lock(&self.inbox);
        if inbox.state != PoolState::Running {
            return None;
        }
        inbox.admitted += 1;
        Some(Admission(self.clone()))
    }

    /// Queues chunks for the workers, or hands them back with the reason they were refused.
    /// After `close()`, only the work of an admitted call is accepted, and only until `join()`.
    /// When it can, it also hands them to idle workers right away (see the module docs).
    pub(crate) fn submit(
        &self,
        chunks: Vec<Chunk>,
        admission: Option<&Admission>,
    ) -> std::result::Result<(), (Refusal, Vec<Chunk>)> {
        let mut inbox = lock(&self.inbox);
        let refusal = match (&inbox.state, &inbox.broken) {
            (PoolState::Terminating, _) => Some(Refusal::Terminated),
            (PoolState::Joining, _) => Some(Refusal::Closed),
            (PoolState::Closed, _) if admission.is_none() => Some(Refusal::Closed),
            (_, Some(broken)) => Some(Refusal::Broken(broken.clone())),
            (PoolState::Running | PoolState::Closed, None) => None,
        };
        if let Some(refusal) = refusal {
            return Err((refusal, chunks));
        }
        let small = chunks.iter().map(|c| c.payload.len()).sum::<usize>() <= DISPATCH_HERE_MAX;
        inbox.chunks.extend(chunks);
        drop(inbox);
        if !(small && self.on_core_here(None, Core::dispatch_here) == Some(Wake::Needless)) {
            // Large submissions go to the supervisor, as does everything when the lock is busy:
            // the supervisor (or another thread) is at work, and the wake-up makes sure someone
            // looks at the inbox after our chunks landed in it. An eventfd write fails only if
            // the descriptor is gone, which it is not while we hold `self`.
            let _ = self.waker.notify();
        }
        Ok(())
    }

    /// Runs `f` on the core from a submitter's or waiter's thread, if the lock is free (`None`
    /// if not). `f` says whether the sleeping supervisor must be woken. A waiter (`waiter`)
    /// then hands over its own results; anyone else's are left to the supervisor, which is
    /// woken for them: decoding them runs user code that may be slow, and a bystander's short
    /// wait must not pay for it.
    fn on_core_here(
        &self,
        waiter: Option<WaiterId>,
        f: impl FnOnce(&mut Core) -> Wake,
    ) -> Option<Wake> {
        // Poisoned: the supervisor died and the pool is being terminated; leave it to that.
        let mut core = self.core.as_ref()?.try_lock().ok()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut core))) {
            Ok(wake) => {
                let own = match waiter {
                    Some(waiter) if !core.deliveries.is_empty() => {
                        let (own, others): (Vec<_>, Vec<_>) = std::mem::take(&mut core.deliveries)
                            .into_iter()
                            .partition(|d| d.sink.waiter() == Some(waiter));
                        core.deliveries = others;
                        own
                    }
                    _ => Vec::new(),
                };
                // Results left for the supervisor to hand over need it awake.
                let wake = if core.deliveries.is_empty() {
                    wake
                } else {
                    Wake::Needed
                };
                if !own.is_empty() {
                    // Counted before the lock goes, so that `join` cannot miss them.
                    let _in_hand = InHand::enter(self);
                    drop(core);
                    own.into_iter().for_each(Delivery::deliver);
                }
                Some(wake)
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

    /// Waits until no submitter or waiter holds results it read and has not handed over, or
    /// until `deadline` (`None`: no limit); returns whether none does. After the supervisor has
    /// ended, this is what `join` waits for before callbacks stop.
    pub(crate) fn wait_in_hand(&self, deadline: Option<std::time::Instant>) -> bool {
        let held = lock(&self.in_hand);
        wait_while_until(&self.in_hand_done, held, deadline, |&n| n > 0).1
    }

    /// Moves the pool to `state`, unless it is there or further already.
    pub(crate) fn set_state(&self, state: PoolState) -> Result<()> {
        let mut inbox = lock(&self.inbox);
        inbox.state = inbox.state.max(state);
        drop(inbox);
        self.waker.notify()?;
        Ok(())
    }
}

impl Collector for Shared {
    fn collect_here(&self, waiter: WaiterId) {
        if self.waiters_collect
            && self.on_core_here(Some(waiter), |core| core.collect_here(waiter))
                == Some(Wake::Needed)
        {
            // As in `submit`: the descriptor is ours as long as `self` lives.
            let _ = self.waker.notify();
        }
    }
}

/// A call's leave to hand in work after `close()` (until `join()`): an `imap` admitted while
/// the pool ran, as Python accepts a whole `imap` at call time. Let go of when its input ends
/// or it is dropped; the last one let go of after `close()` lets the workers exit.
pub(crate) struct Admission(Arc<Shared>);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inbox = lock(&self.0.inbox);
        inbox.admitted -= 1;
        let last_after_close = inbox.admitted == 0 && inbox.state == PoolState::Closed;
        drop(inbox);
        if last_after_close {
            // The supervisor may be waiting only for us to end the pool. As in `submit`, the
            // descriptor is ours as long as `self.0` lives.
            let _ = self.0.waker.notify();
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
