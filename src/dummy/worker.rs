//! The pool's threads and its one work queue: who may hand work in (the gate), how threads
//! serve, are replaced, and end.
//!
//! A fixed set of threads takes [`Piece`]s from one shared channel (crossbeam's). A thread that
//! has just finished a piece watches the queue for a short while before it sleeps: a caller
//! that waits for a result and then hands in the next task finds the thread still awake, which
//! spares a wake-up (several µs, more on a virtual machine) per round trip.
//!
//! Threads leave the pool in three ways. At `close()` (or `join()`) the gate drops the sending
//! end, so threads drain the queue and end. A thread that has served `max_tasks_per_child`
//! pieces starts its replacement and ends. A thread whose piece is taken away — its item ran
//! past `task_timeout`, or the pool was terminated — is no longer counted: it runs on, detached,
//! until its function returns (a thread cannot be killed), then ends; a new thread takes its
//! place. `join()` waits for the threads counted in [`Threads`], and for no detached one.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::job::{Claim, Piece, Ran, Watch};
use super::task::{catch_panics_on_this_thread, catching};
use crate::error::{Error, Result};
use crate::pool::lock;

thread_local! {
    /// The address of the `Shared` of the pool this thread serves, 0 on other threads.
    static SERVES: Cell<usize> = const { Cell::new(0) };
}

/// How long a thread that has finished a piece watches the queue before it sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// The initializer, with its argument, that every new thread runs once.
pub(super) type Initializer = Arc<dyn Fn() + Send + Sync>;

/// What the threads need to know of the pool's settings.
pub(super) struct Config {
    pub(super) threads: usize,
    pub(super) init: Option<Initializer>,
    pub(super) max_tasks_per_child: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
}

/// Where the pool stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// `close()`: only admitted `imap`s hand work in.
    Closed,
    /// `join()`: nothing is accepted.
    Joining,
    Terminated,
}

/// Who may hand work in.
struct Gate {
    phase: Phase,
    /// The queue's sending end; dropped when nothing more may come, so that threads drain the
    /// queue and end.
    tx: Option<Sender<Piece>>,
    /// `imap`s made while the pool ran, which may go on handing work in after `close()`.
    admitted: usize,
}

/// The threads counted as the pool's.
struct Threads {
    watches: Vec<Arc<Watch>>,
}

/// What the pool's handle and its threads share.
pub(super) struct Shared {
    rx: Receiver<Piece>,
    gate: Mutex<Gate>,
    threads: Mutex<Threads>,
    threads_gone: Condvar,
    /// Set by `terminate()` before it takes pieces away (see `Piece::run`).
    terminated: AtomicBool,
    /// Why no task can be served: an initializer failed.
    broken: OnceLock<Error>,
    config: Config,
}

/// Leave for an `imap` made while the pool ran to go on handing work in after `close()`, as
/// Python's does, until it is dropped (see [`Shared::admit`]).
pub(super) struct Admission {
    shared: Arc<Shared>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut gate = lock(&self.shared.gate);
        gate.admitted -= 1;
        if gate.admitted == 0 && gate.phase != Phase::Running {
            gate.tx = None;
        }
    }
}

impl Shared {
    /// The shared state of a pool, and its threads started.
    ///
    /// # Errors
    /// A thread could not be started ([`Error::Io`]).
    pub(super) fn start(config: Config) -> Result<Arc<Self>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let timeout = config.task_timeout;
        let threads = config.threads;
        let shared = Arc::new(Shared {
            rx,
            gate: Mutex::new(Gate {
                phase: Phase::Running,
                tx: Some(tx),
                admitted: 0,
            }),
            threads: Mutex::new(Threads {
                watches: Vec::new(),
            }),
            threads_gone: Condvar::new(),
            terminated: AtomicBool::new(false),
            broken: OnceLock::new(),
            config,
        });
        for _ in 0..threads {
            if let Err(e) = shared.start_thread(None) {
                shared.terminate();
                return Err(e);
            }
        }
        if let Some(limit) = timeout {
            let weak = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("multiproc-dummy-timeouts".into())
                .spawn(move || watch_timeouts(&weak, limit))
                .inspect_err(|_| shared.terminate())?;
        }
        Ok(shared)
    }

    /// Hands `pieces` to the threads, or fails them with the reason the pool refuses them;
    /// returns whether they were taken. An `admitted` call (an `imap` made while the pool
    /// ran) is taken after `close()` too.
    pub(super) fn submit(&self, pieces: impl IntoIterator<Item = Piece>, admitted: bool) -> bool {
        let gate = lock(&self.gate);
        let open = match gate.phase {
            Phase::Running => true,
            Phase::Closed => admitted,
            Phase::Joining | Phase::Terminated => false,
        };
        let refusal = match (self.broken.get(), &gate.tx) {
            (Some(broken), _) => broken.clone(),
            (None, Some(tx)) if open => {
                for piece in pieces {
                    // Cannot fail: the receiving end lives as long as `self`.
                    if let Err(unsent) = tx.send(piece) {
                        unsent.into_inner().fail(&Error::PoolTerminated);
                    }
                }
                return true;
            }
            (None, _) if gate.phase == Phase::Terminated => Error::PoolTerminated,
            (None, _) => Error::PoolClosed,
        };
        drop(gate);
        for piece in pieces {
            piece.fail(&refusal);
        }
        false
    }

    /// Admits an `imap` (see [`Admission`]); `None` unless the pool runs.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let mut gate = lock(&self.gate);
        if gate.phase != Phase::Running {
            return None;
        }
        gate.admitted += 1;
        Some(Admission {
            shared: self.clone(),
        })
    }

    /// Accepts no more work but from admitted `imap`s; threads end once the queue is drained.
    pub(super) fn close(&self) {
        let mut gate = lock(&self.gate);
        if gate.phase == Phase::Running {
            gate.phase = Phase::Closed;
            if gate.admitted == 0 {
                gate.tx = None;
            }
        }
    }

    /// Accepts nothing more; waits until `deadline` for the counted threads to end.
    ///
    /// # Errors
    /// [`Error::PoolStillRunning`] if neither `close` nor `terminate` came first;
    /// [`Error::Timeout`] if threads still run at `deadline`.
    pub(super) fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        if SERVES.with(Cell::get) == std::ptr::from_ref(self).addr() {
            return Err(Error::InvalidArgument(
                "join() on one of the pool's own threads would wait for itself".into(),
            ));
        }
        {
            let mut gate = lock(&self.gate);
            match gate.phase {
                Phase::Running => return Err(Error::PoolStillRunning),
                Phase::Closed => {
                    gate.phase = Phase::Joining;
                    gate.tx = None;
                }
                Phase::Joining | Phase::Terminated => {}
            }
        }
        let threads = lock(&self.threads);
        let (_threads, gone) =
            crate::pool::wait_while_until(&self.threads_gone, threads, deadline, |t: &Threads| {
                !t.watches.is_empty()
            });
        if gone { Ok(()) } else { Err(Error::Timeout) }
    }

    /// Fails every queued piece and takes every running one away, with
    /// [`Error::PoolTerminated`]; the threads are no longer counted (busy ones run on,
    /// detached, until their function returns).
    pub(super) fn terminate(&self) {
        self.terminated.store(true, Ordering::SeqCst);
        {
            let mut gate = lock(&self.gate);
            gate.phase = Phase::Terminated;
            gate.tx = None;
        }
        // Dropping a piece fails it.
        while let Ok(piece) = self.rx.try_recv() {
            drop(piece);
        }
        let watches = std::mem::take(&mut lock(&self.threads).watches);
        self.threads_gone.notify_all();
        for watch in watches {
            if let Some(current) = watch.abandon() {
                drop(current.take_over(&|_| Error::PoolTerminated));
            }
        }
    }

    /// Starts a thread, counted from now, that runs `first` (if any) before it takes work
    /// from the queue.
    fn start_thread(self: &Arc<Self>, first: Option<Piece>) -> Result<()> {
        let watch = Watch::new();
        lock(&self.threads).watches.push(watch.clone());
        self.spawn(watch, first)
    }

    /// Starts the thread that `watch` (counted already) stands for. If it cannot be started,
    /// `first` fails with the reason and the watch is no longer counted.
    fn spawn(self: &Arc<Self>, watch: Arc<Watch>, first: Option<Piece>) -> Result<()> {
        // Kept here too, to be failed with the right error if no thread can be had.
        let first = Arc::new(Mutex::new(first));
        let theirs = first.clone();
        let (shared, their_watch) = (self.clone(), watch.clone());
        let spawned = std::thread::Builder::new()
            .name("multiproc-dummy".into())
            .spawn(move || {
                let first = lock(&theirs).take();
                drop(theirs);
                shared.serve(&their_watch, first);
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.forget(&watch);
                let e = Error::Io(e);
                if let Some(piece) = lock(&first).take() {
                    piece.fail(&e);
                }
                if lock(&self.threads).watches.is_empty() {
                    // No thread is left to serve the queue: what waits there fails, and so does
                    // what comes (`submit` refuses it), rather than wait for ever.
                    let _ = self
                        .broken
                        .set(Error::Spawn(format!("no thread could be started: {e}")));
                    if let Some(broken) = self.broken.get() {
                        while let Ok(piece) = self.rx.try_recv() {
                            piece.fail(broken);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// No longer counts the thread `watch` stands for (one taken away is no longer counted
    /// already: then nothing changes).
    fn forget(&self, watch: &Arc<Watch>) {
        lock(&self.threads)
            .watches
            .retain(|w| !Arc::ptr_eq(w, watch));
        self.threads_gone.notify_all();
    }

    /// A thread's life: the initializer, then pieces until the queue ends, the thread has
    /// served its `max_tasks_per_child`, or its piece is taken away.
    fn serve(self: Arc<Self>, watch: &Arc<Watch>, mut first: Option<Piece>) {
        // However the thread ends — even unwinding from a panic that escaped — it is no longer
        // counted, so that `join` never waits for it.
        let _counted = Counted {
            shared: &self,
            watch,
        };
        catch_panics_on_this_thread();
        SERVES.with(|serves| serves.set(Arc::as_ptr(&self).addr()));
        if let Some(init) = &self.config.init {
            if let Err(e) = catching(|| init()) {
                let _ = self.broken.set(Error::InitializerFailed(Box::new(e)));
            }
        }
        let claim = match self.config.task_timeout {
            Some(_) => Claim::EachItem,
            None => Claim::WholePiece,
        };
        let mut served = 0;
        while let Some(piece) = first.take().or_else(|| self.next_piece()) {
            if let Some(broken) = self.broken.get() {
                piece.fail(broken);
                continue;
            }
            if piece.unwanted() {
                drop(piece);
                continue;
            }
            if piece.run(watch, claim, &self.terminated) == Ran::Abandoned {
                // No longer the pool's: whoever took the piece away saw to that.
                return;
            }
            served += 1;
            if self
                .config
                .max_tasks_per_child
                .is_some_and(|max| served >= max)
            {
                // Recycled: a fresh thread (thread-locals and all) takes over, if one can be
                // had; otherwise this one goes on.
                if self.start_thread(None).is_ok() {
                    break;
                }
                served = 0;
            }
        }
    }

    /// The next piece from the queue: watched for a short while, then waited for. `None` once
    /// the queue has ended.
    fn next_piece(&self) -> Option<Piece> {
        let until = Instant::now() + SPIN;
        loop {
            match self.rx.try_recv() {
                Ok(piece) => return Some(piece),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if Instant::now() >= until {
                return self.rx.recv().ok();
            }
            // Yield rather than spin in place: on a machine with few cores, the thread that
            // will hand the next piece in may be waiting for this very core.
            std::thread::yield_now();
        }
    }

    /// Takes away the pieces whose current item has run `limit` or longer: each item fails
    /// with [`Error::TaskTimeout`], and a new thread takes its thread's place with the rest
    /// of its piece.
    fn time_out_overdue(self: &Arc<Self>, limit: Duration) {
        let overdue: Vec<_> = {
            let mut threads = lock(&self.threads);
            let mut overdue = Vec::new();
            for i in 0..threads.watches.len() {
                if let Some(current) = threads.watches[i].abandon_if_overdue(limit) {
                    // Its replacement is counted at once, so that `join` never sees the pool
                    // empty while work remains.
                    let replacement = Watch::new();
                    threads.watches[i] = replacement.clone();
                    overdue.push((current, replacement));
                }
            }
            overdue
        };
        let pid = std::process::id();
        for (current, replacement) in overdue {
            let rest = current.take_over(&|task| Error::TaskTimeout {
                task,
                after: limit,
                pid,
                rank: None,
            });
            let _ = self.spawn(replacement, rest);
        }
    }

    fn finished(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
            || (lock(&self.gate).tx.is_none() && lock(&self.threads).watches.is_empty())
    }
}

/// A serving thread, counted until this drops (see `Shared::serve`).
struct Counted<'a> {
    shared: &'a Shared,
    watch: &'a Arc<Watch>,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.shared.forget(self.watch);
    }
}

/// The timeout watcher's thread: looks every quarter of `limit` (at most 100 ms) for items
/// that overran, until the pool is gone or finished.
fn watch_timeouts(shared: &Weak<Shared>, limit: Duration) {
    let period = (limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        std::thread::sleep(period);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.finished() {
            return;
        }
        shared.time_out_overdue(limit);
    }
}
