//! One object on the server: its lock, the condition its blocking operations (a queue's `get`,
//! a lock's `acquire`) wait on, and how many processes hold it.
//!
//! A change wakes the waiters only if there are any: a futex wake is a system call, which every
//! operation would otherwise pay (a dict's `insert` as much as a queue's `put`). Waiters count
//! themselves under the object's lock, before they wait, and a change is made under that lock
//! too: a change either comes before a waiter looks (and the waiter sees it) or after it
//! counted itself (and the change sees the count).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Object;
use crate::pool::lock;

/// How often a blocked operation looks whether its client is still there: one that is gone
/// must not take an item it can no longer be given. (Sooner under fuzzing, whose clients are
/// gone as soon as their bytes are read.)
pub(super) const STILL_THERE: Duration = if cfg!(feature = "fuzzing") {
    Duration::from_millis(1)
} else {
    Duration::from_millis(50)
};

pub(super) struct Slot {
    object: Mutex<Object>,
    changed: Condvar,
    /// How many operations wait on `changed`.
    waiters: AtomicUsize,
    holds: Mutex<Holds>,
}

/// How many processes hold an object (see `lease.rs`), and since when none has.
struct Holds {
    count: usize,
    unheld_since: Option<Instant>,
    /// Whether any process ever held it: its creator's hold comes on a connection of its own
    /// (made first, perhaps, over a slow network), after the reply that made the object.
    ever_held: bool,
}

/// How long an object that no process has held yet is kept, whatever the linger: its
/// creator's hold may be on its way (a new lease connection and its handshake).
const UNCLAIMED: Duration = Duration::from_secs(30);

/// Why a wait ended without its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    TimedOut,
    /// The client is gone.
    Left,
}

/// A wait as an instant; `None` without limit (also for one too far to name).
pub(super) fn deadline(wait_ms: Option<u64>) -> Option<Instant> {
    wait_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)))
}

impl Slot {
    /// A new object, held by no one yet (its creator holds it as soon as it has the reply).
    pub(super) fn new(object: Object) -> Self {
        Slot {
            object: Mutex::new(object),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
            holds: Mutex::new(Holds {
                count: 0,
                unheld_since: Some(Instant::now()),
                ever_held: false,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Object> {
        lock(&self.object)
    }

    /// Lets go of the object and wakes its waiters, if any (it may have changed); then answers.
    pub(super) fn signalled<R>(&self, guard: MutexGuard<'_, Object>, reply: R) -> R {
        drop(guard);
        self.signal();
        reply
    }

    /// Wakes the waiters, if any: after a change made under the object's lock.
    pub(super) fn signal(&self) {
        // The count was raised under the lock the change was made under (see the module's
        // docs), so it is seen here.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Tries `attempt` under the object's lock until it answers, waiting for a change between
    /// tries, in slices of [`STILL_THERE`] after each of which it asks whether the client is
    /// still there. If the deadline passes or the client leaves first, `stop` answers instead,
    /// under the same lock. Every answer is signalled to the other waiters.
    pub(super) fn waiting<R>(
        &self,
        deadline: Option<Instant>,
        still_there: &mut dyn FnMut() -> bool,
        mut attempt: impl FnMut(&mut Object) -> Option<R>,
        stop: impl FnOnce(&mut Object, Stop) -> R,
    ) -> R {
        let mut guard = self.lock();
        loop {
            if let Some(reply) = attempt(&mut guard) {
                return self.signalled(guard, reply);
            }
            let slice = match deadline.map(|at| at.saturating_duration_since(Instant::now())) {
                Some(left) if left.is_zero() => {
                    let reply = stop(&mut guard, Stop::TimedOut);
                    return self.signalled(guard, reply);
                }
                Some(left) => left.min(STILL_THERE),
                None => STILL_THERE,
            };
            self.waiters.fetch_add(1, Ordering::SeqCst);
            guard = self
                .changed
                .wait_timeout(guard, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if !still_there() {
                let reply = stop(&mut guard, Stop::Left);
                return self.signalled(guard, reply);
            }
        }
    }

    /// How many operations wait on the object now (for tests that must know a waiter is
    /// waiting before they act).
    #[cfg(test)]
    pub(super) fn waiters(&self) -> usize {
        self.waiters.load(Ordering::SeqCst)
    }

    /// A process holds the object once more.
    pub(super) fn hold(&self) {
        let mut holds = lock(&self.holds);
        holds.count += 1;
        holds.unheld_since = None;
        holds.ever_held = true;
    }

    /// A process lets go of a hold on the object.
    pub(super) fn release(&self) {
        let mut holds = lock(&self.holds);
        holds.count = holds.count.saturating_sub(1);
        if holds.count == 0 {
            holds.unheld_since = Some(Instant::now());
        }
    }

    /// Whether no process has held the object for `linger` (for an object no process has
    /// held yet, [`UNCLAIMED`] at least).
    pub(super) fn unheld_for(&self, linger: Duration) -> bool {
        let holds = lock(&self.holds);
        let linger = match holds.ever_held {
            true => linger,
            false => linger.max(UNCLAIMED),
        };
        matches!(holds.unheld_since, Some(at) if at.elapsed() >= linger)
    }
}
