//! Where cross-process waiters sleep: an event count on a shared futex word.
//!
//! A waiter reads the count, checks its condition, and sleeps only if the count has not moved;
//! whoever changes the condition bumps the count and, if anyone sleeps, wakes them. That is
//! enough for every primitive here, keeps all state in plain atomics, and never loses a wake-up.
//!
//! Sleeps are cut into slices: when a slice passes with no wake-up the waiter's condition is
//! asked again with `stale = true`, which is its cue to check whether the process it is waiting
//! for is still alive. That is how a lock whose holder was killed gets noticed.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::mem::segment::SharedCell;
use crate::sys::futex;

/// How long a waiter sleeps before it looks for a dead peer.
pub(crate) const SLICE: Duration = Duration::from_millis(25);
/// Polls before the first sleep: a futex round trip costs microseconds, a short spin less.
const SPINS: u32 = 64;

/// A futex-backed event count, living in shared memory.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Parking {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

// SAFETY: two atomics, repr(C), zero is the initial state.
unsafe impl SharedCell for Parking {}

impl Parking {
    /// Wakes every waiter.
    pub(crate) fn wake_all(&self) {
        self.wake(u32::MAX);
    }

    /// Wakes one waiter (more may wake; waiters re-check).
    pub(crate) fn wake_one(&self) {
        self.wake(1);
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn wake(&self, n: u32) {
        self.seq.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            futex::wake(&self.seq, n);
        }
    }

    /// Asks `poll` until it returns `Some`, sleeping in between; gives up at `deadline` (after
    /// one last poll). `poll(stale)` gets `true` when a whole slice passed without a wake-up.
    pub(crate) fn wait<T>(
        &self,
        deadline: Option<Instant>,
        mut poll: impl FnMut(bool) -> Option<T>,
    ) -> Option<T> {
        for _ in 0..SPINS {
            if let Some(v) = poll(false) {
                return Some(v);
            }
            spin_loop();
        }
        self.sleepers.fetch_add(1, SeqCst);
        let mut stale = false;
        let out = loop {
            let seen = self.seq.load(SeqCst);
            if let Some(v) = poll(stale) {
                break Some(v);
            }
            let slice = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(SLICE),
                    _ => break None,
                },
                None => SLICE,
            };
            futex::wait(&self.seq, seen, Some(slice));
            stale = self.seq.load(SeqCst) == seen;
        };
        self.sleepers.fetch_sub(1, SeqCst);
        out
    }
}

/// `now + timeout`, or no deadline if that is too far to represent.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
