//! `Barrier`: parties meet, then all go on; broken by a timeout, an abort, or a dead party.
//!
//! State is a few atomics guarded by an internal lock (see `lock.rs`): arrivals in this round,
//! the round number, a "broken" flag and a reset count. Waiters sleep on the segment's futex
//! until the round number moves (success), the barrier breaks, or it is reset.
//!
//! Dead parties: each arrival records its thread in a seat with the round it arrived in. A
//! waiter that sleeps a slice without news looks at the seats: a party that arrived in this
//! round or the previous one and is no longer alive will never (again) arrive, so the barrier
//! is broken and every waiter is told. That suits the usual loop of a fixed set of parties;
//! where the parties change from round to round (fresh processes per phase), a party of the
//! last round that has exited is not dead weight, and [`Barrier::for_changing_parties`] watches
//! only the current round. A party that dies before its first arrival cannot be told from a
//! slow one; `wait_timeout` covers that case.
//!
//! `reset` cancels the current round: it moves the round on and records which round it
//! cancelled, so a waiter can tell "my round completed" from "my round was cancelled".

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::parking::{self, Parking};
use crate::mem::segment::{Kind, Segment, SharedCell, segment_handle};
use crate::sync::lock::{Held, LockCell};
use crate::sys::proc::{identity_alive, thread_identity};

/// Parties whose deaths are noticed; more may wait, unwatched.
const SEATS: usize = 64;

#[derive(Debug, Default)]
#[repr(C)]
struct Seat {
    thread: AtomicU64,
    round: AtomicU32,
    _pad: AtomicU32,
}

#[derive(Debug)]
#[repr(C)]
pub(crate) struct BarrierCell {
    lock: LockCell,
    parties: AtomicU32,
    arrived: AtomicU32,
    round: AtomicU32,
    broken: AtomicU32,
    /// One more than the round the last `reset` cancelled; 0 if none was.
    cancelled: AtomicU32,
    /// 1 if parties of the previous round are watched too (the default).
    watch_previous: AtomicU32,
    parking: Parking,
    seats: [Seat; SEATS],
}

// SAFETY: repr(C) atomics, arrays of repr(C) atomics and `SharedCell`s; zero is a valid state.
unsafe impl SharedCell for BarrierCell {}

/// A barrier for a fixed number of parties across processes, like `multiprocessing.Barrier`.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let barrier = multiproc::Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0); // the only party: through at once
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Barrier {
    seg: Segment<BarrierCell>,
}

segment_handle!(Barrier, Kind::Barrier, BarrierCell);

impl BarrierCell {
    /// Takes the internal lock. If a process died inside, the state may be half-updated:
    /// the barrier is broken (it is repaired by `reset`).
    fn enter(&self) -> Held<'_> {
        let (held, died) = self.lock.hold();
        if died {
            self.broken.store(1, SeqCst);
        }
        held
    }

    fn break_now(&self) {
        self.broken.store(1, SeqCst);
        self.parking.wake_all();
    }

    fn take_seat(&self, me: u64, round: u32) {
        let seat = self
            .seats
            .iter()
            .find(|s| s.thread.load(SeqCst) == me)
            .or_else(|| self.seats.iter().find(|s| s.thread.load(SeqCst) == 0))
            .or_else(|| {
                self.seats
                    .iter()
                    .find(|s| round.wrapping_sub(s.round.load(SeqCst)) > 1)
            });
        if let Some(seat) = seat {
            seat.thread.store(me, SeqCst);
            seat.round.store(round, SeqCst);
        }
    }

    /// Whether a party of this round (or, if watched, the last one) has died.
    fn party_died(&self, me: u64, round: u32) -> bool {
        let reach = self.watch_previous.load(SeqCst);
        self.seats.iter().any(|s| {
            let t = s.thread.load(SeqCst);
            t != 0
                && t != me
                && round.wrapping_sub(s.round.load(SeqCst)) <= reach
                && !identity_alive(t)
        })
    }

    /// How round `round` ended, once the round number has moved past it.
    fn ended(&self, round: u32) -> Outcome {
        if self.cancelled.load(SeqCst) == round.wrapping_add(1) {
            Outcome::Broken
        } else {
            Outcome::Through
        }
    }
}

enum Outcome {
    Through,
    Broken,
}

impl Barrier {
    /// A barrier for `parties` parties.
    ///
    /// # Errors
    /// `parties` is 0 ([`Error::InvalidArgument`]), or the shared memory could not be created.
    pub fn new(parties: u32) -> Result<Self> {
        Self::with_watch(parties, true)
    }

    /// A barrier for `parties` parties that change from round to round (new processes for
    /// each phase, say): only parties waiting in the current round are watched for death, so
    /// that a party of an earlier round which has since exited does not break it.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn for_changing_parties(parties: u32) -> Result<Self> {
        Self::with_watch(parties, false)
    }

    fn with_watch(parties: u32, previous: bool) -> Result<Self> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let seg = Segment::new(Kind::Barrier, 0)?;
        let cell: &BarrierCell = seg.cell();
        cell.parties.store(parties, SeqCst);
        cell.watch_previous.store(u32::from(previous), SeqCst);
        Ok(Self { seg })
    }

    fn cell(&self) -> &BarrierCell {
        self.seg.cell()
    }

    /// Waits until all parties have arrived. Returns this party's arrival index, `0` for the
    /// first to arrive up to `parties - 1` for the last (Python's return value).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`]: the barrier was aborted, reset while waiting, a party timed
    /// out, or a party died (see the module notes).
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(None)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone (as in Python).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(parking::deadline(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32> {
        let cell = self.cell();
        let me = thread_identity();
        let (round, index) = {
            let _inside = cell.enter();
            if cell.broken.load(SeqCst) != 0 {
                return Err(Error::BrokenBarrier);
            }
            let round = cell.round.load(SeqCst);
            let index = cell.arrived.fetch_add(1, SeqCst);
            cell.take_seat(me, round);
            if index + 1 >= cell.parties.load(SeqCst) {
                cell.arrived.store(0, SeqCst);
                cell.round.store(round.wrapping_add(1), SeqCst);
                cell.parking.wake_all();
                return Ok(index);
            }
            (round, index)
        };
        let outcome = cell.parking.wait(deadline, |stale| {
            if cell.round.load(SeqCst) != round {
                Some(cell.ended(round))
            } else if cell.broken.load(SeqCst) != 0 {
                Some(Outcome::Broken)
            } else if stale && cell.party_died(me, round) {
                cell.break_now();
                Some(Outcome::Broken)
            } else {
                None
            }
        });
        match outcome {
            Some(Outcome::Through) => Ok(index),
            Some(Outcome::Broken) => Err(Error::BrokenBarrier),
            None => {
                let _inside = cell.enter();
                if cell.round.load(SeqCst) != round {
                    // The round ended at the last moment.
                    return match cell.ended(round) {
                        Outcome::Through => Ok(index),
                        Outcome::Broken => Err(Error::BrokenBarrier),
                    };
                }
                cell.break_now();
                Err(Error::BrokenBarrier)
            }
        }
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Self::reset).
    pub fn abort(&self) {
        let cell = self.cell();
        let _inside = cell.enter();
        cell.break_now();
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let cell = self.cell();
        let _inside = cell.enter();
        let round = cell.round.load(SeqCst);
        cell.cancelled.store(round.wrapping_add(1), SeqCst);
        cell.round.store(round.wrapping_add(1), SeqCst);
        cell.arrived.store(0, SeqCst);
        cell.broken.store(0, SeqCst);
        for seat in &cell.seats {
            seat.thread.store(0, SeqCst);
        }
        cell.parking.wake_all();
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> u32 {
        self.cell().parties.load(SeqCst)
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.cell().arrived.load(SeqCst)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.cell().broken.load(SeqCst) != 0
    }
}
