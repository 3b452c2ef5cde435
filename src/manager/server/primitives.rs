//! The server's locks, semaphores, events, conditions and barriers: small state machines kept
//! in a slot like any object. Their blocking operations wait on the slot's condition in slices
//! of [`STILL_THERE`](super::slot::STILL_THERE), as a queue's `get` does, and one whose client leaves takes nothing.
//!
//! Ownership: a lock (and a condition's lock) belongs to the client connection that took it —
//! a client has one per thread — so the server knows who holds what without taking a client's
//! word for it, and lets go of all of it when the connection ends ([`client_left`]), however it
//! ended: a client killed with SIGKILL holds nothing, where Python's managed lock stays held
//! forever. A semaphore has no owner (any client may release a unit, as in Python), so the
//! units a dead client took stay taken. A client that leaves while it waits at a barrier breaks
//! the barrier, as a timeout does.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use super::slot::{Slot, Stop, deadline};
use super::{ClientId, Object, Objects};
use crate::error::Error;
use crate::manager::protocol::{Reply, SyncKind, SyncOp, SyncReply};

/// A synchronisation primitive as the server keeps it.
pub(super) enum Primitive {
    Lock(Owned),
    Semaphore {
        value: u32,
        /// `u32::MAX` for a semaphore without a bound.
        bound: u32,
    },
    Event {
        set: bool,
        /// How many times it was set: a waiter that sees this move was woken by a `set`, even
        /// if the flag was cleared again before it looked.
        sets: u64,
    },
    Condition(Condition),
    Barrier(Barrier),
}

impl Primitive {
    pub(super) fn new(kind: SyncKind) -> Self {
        match kind {
            SyncKind::Lock => Primitive::Lock(Owned::new(Reentry::Refused)),
            SyncKind::RLock => Primitive::Lock(Owned::new(Reentry::Counted)),
            SyncKind::Semaphore { value, bound } => Primitive::Semaphore {
                value,
                bound: bound.unwrap_or(u32::MAX),
            },
            SyncKind::Event => Primitive::Event {
                set: false,
                sets: 0,
            },
            SyncKind::Condition => Primitive::Condition(Condition {
                lock: Owned::new(Reentry::Counted),
                waiting: VecDeque::new(),
                notified: HashSet::new(),
                next_ticket: 0,
            }),
            SyncKind::Barrier { parties } => Primitive::Barrier(Barrier {
                parties,
                arrived: 0,
                round: 0,
                broken: false,
                cancelled: VecDeque::new(),
            }),
        }
    }
}

/// What a holder that takes its lock again gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reentry {
    /// [`Error::Deadlock`] (a `Lock`: waiting would never end).
    Refused,
    /// One more level (an `RLock`).
    Counted,
}

/// A lock owned by a client connection.
pub(super) struct Owned {
    reentry: Reentry,
    /// Its holder and how many levels deep.
    holder: Option<(ClientId, u32)>,
}

impl Owned {
    fn new(reentry: Reentry) -> Self {
        Self {
            reentry,
            holder: None,
        }
    }

    /// Takes it for `client` if that can be answered now; `None` if it is another's.
    fn take(&mut self, client: ClientId) -> Option<SyncReply> {
        match self.holder {
            None => {
                self.holder = Some((client, 1));
                Some(SyncReply::Done)
            }
            Some((holder, depth)) if holder == client => Some(match self.reentry {
                Reentry::Refused => SyncReply::Failed(Error::Deadlock),
                Reentry::Counted => {
                    self.holder = Some((holder, depth.saturating_add(1)));
                    SyncReply::Done
                }
            }),
            Some(_) => None,
        }
    }

    /// Gives one level back; only its holder may.
    fn give(&mut self, client: ClientId) -> SyncReply {
        match self.holder {
            Some((holder, depth)) if holder == client => {
                self.holder = (depth > 1).then_some((holder, depth - 1));
                SyncReply::Done
            }
            _ => SyncReply::Failed(not_held()),
        }
    }

    fn holds(&self, client: ClientId) -> bool {
        matches!(self.holder, Some((holder, _)) if holder == client)
    }

    /// Lets go of every level if `client` holds it; whether it did.
    fn let_go(&mut self, client: ClientId) -> bool {
        let held = self.holds(client);
        if held {
            self.holder = None;
        }
        held
    }
}

/// A condition: its own re-entrant lock, and tickets of the waits in progress.
pub(super) struct Condition {
    lock: Owned,
    /// Waits not yet notified, oldest first.
    waiting: VecDeque<u64>,
    /// Waits notified whose waiter has not yet seen it.
    notified: HashSet<u64>,
    next_ticket: u64,
}

impl Condition {
    /// Notifies the `n` oldest waits (its lock held by `client`, as Python requires).
    fn notify(&mut self, client: ClientId, n: usize) -> SyncReply {
        if !self.lock.holds(client) {
            return SyncReply::Failed(not_held());
        }
        let n = n.min(self.waiting.len());
        self.notified.extend(self.waiting.drain(..n));
        SyncReply::Done
    }

    /// Ends the wait `ticket` without a notification; whether one came at the last moment.
    fn forget(&mut self, ticket: u64) -> bool {
        self.waiting.retain(|&t| t != ticket);
        self.notified.remove(&ticket)
    }
}

/// A barrier: parties arrive in rounds; `reset` cancels a round.
/// How many cancelled rounds a barrier remembers for the parties still to learn of them.
const MAX_CANCELLED: usize = 64;

pub(super) struct Barrier {
    parties: u32,
    arrived: u32,
    round: u64,
    broken: bool,
    /// Rounds that a `reset` cancelled while parties waited in them, and how many of those have
    /// yet to learn it (a round that ended otherwise was completed). A few at most: each party
    /// reads its outcome as soon as it wakes.
    cancelled: VecDeque<(u64, u32)>,
}

impl Barrier {
    /// The answer to the party that arrived as `index` in `round`, once there is one (it is
    /// then told: ask once).
    fn outcome(&mut self, round: u64, index: u32) -> Option<SyncReply> {
        if self.round != round {
            let cancelled = self.cancelled.iter().position(|&(r, _)| r == round);
            Some(match cancelled {
                Some(at) => {
                    self.cancelled[at].1 -= 1;
                    if self.cancelled[at].1 == 0 {
                        self.cancelled.remove(at);
                    }
                    SyncReply::Failed(Error::BrokenBarrier)
                }
                None => SyncReply::Count(index),
            })
        } else if self.broken {
            // Told: it leaves the round, and is not counted among those still to learn.
            self.leave();
            Some(SyncReply::Failed(Error::BrokenBarrier))
        } else {
            None
        }
    }

    /// A party waiting in the current round leaves it (told it is broken, or giving up).
    fn leave(&mut self) {
        self.arrived = self.arrived.saturating_sub(1);
    }

    fn reset(&mut self) {
        if self.arrived > 0 {
            // Only parties still waiting are counted; the bound is for safety.
            if self.cancelled.len() >= MAX_CANCELLED {
                self.cancelled.pop_front();
            }
            self.cancelled.push_back((self.round, self.arrived));
        }
        self.round = self.round.wrapping_add(1);
        self.arrived = 0;
        self.broken = false;
    }
}

/// Runs `op` for `client`; `None` if the object is not a primitive.
pub(super) fn sync_op(
    slot: &Slot,
    op: SyncOp,
    client: ClientId,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<Reply> {
    let reply = match op {
        SyncOp::Acquire { wait_ms } => acquire(slot, client, deadline(wait_ms), still_there),
        SyncOp::WaitSet { wait_ms } => wait_set(slot, deadline(wait_ms), still_there),
        SyncOp::Wait { wait_ms } => wait_notified(slot, client, deadline(wait_ms), still_there),
        SyncOp::Arrive { wait_ms } => arrive(slot, deadline(wait_ms), still_there),
        op => {
            let mut guard = slot.lock();
            let Object::Sync(primitive) = &mut *guard else {
                return None;
            };
            let reply = at_once(primitive, op, client);
            Some(slot.signalled(guard, reply))
        }
    };
    reply.map(Reply::Sync)
}

/// Lets go of every lock that `client` holds among the primitives `used` (those it used),
/// and wakes their waiters.
pub(super) fn client_left(objects: &Objects, client: ClientId, used: &HashSet<u64>) {
    let slots: Vec<_> = used.iter().filter_map(|&id| objects.slot(id)).collect();
    for slot in slots {
        let mut guard = slot.lock();
        let freed = match &mut *guard {
            Object::Sync(Primitive::Lock(owned)) => owned.let_go(client),
            Object::Sync(Primitive::Condition(cond)) => cond.lock.let_go(client),
            _ => false,
        };
        drop(guard);
        if freed {
            slot.signal();
        }
    }
}

/// [`Slot::waiting`] on a primitive. `None` if the object is not one.
fn waiting<R>(
    slot: &Slot,
    deadline: Option<Instant>,
    still_there: &mut dyn FnMut() -> bool,
    mut attempt: impl FnMut(&mut Primitive) -> Option<R>,
    stop: impl FnOnce(&mut Primitive, Stop) -> R,
) -> Option<R> {
    slot.waiting(
        deadline,
        still_there,
        |object| match object {
            Object::Sync(primitive) => attempt(primitive).map(Some),
            _ => Some(None),
        },
        |object, why| match object {
            Object::Sync(primitive) => Some(stop(primitive, why)),
            _ => None,
        },
    )
}

/// What a wait that ended without its answer replies.
fn stopped(stop: Stop) -> SyncReply {
    match stop {
        Stop::TimedOut => SyncReply::TimedOut,
        Stop::Left => gone(),
    }
}

fn gone() -> SyncReply {
    SyncReply::Failed(Error::Manager("the client is gone".into()))
}

fn not_held() -> Error {
    Error::Manager("this thread does not hold the lock".into())
}

fn another_kind() -> SyncReply {
    SyncReply::Failed(Error::Manager(
        "the object is a primitive of another kind".into(),
    ))
}

/// Takes a lock, a condition's lock, or a semaphore's unit.
fn acquire(
    slot: &Slot,
    client: ClientId,
    deadline: Option<Instant>,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<SyncReply> {
    let attempt = |primitive: &mut Primitive| match primitive {
        Primitive::Lock(owned) | Primitive::Condition(Condition { lock: owned, .. }) => {
            owned.take(client)
        }
        Primitive::Semaphore { value, .. } => (*value > 0).then(|| {
            *value -= 1;
            SyncReply::Done
        }),
        _ => Some(another_kind()),
    };
    waiting(slot, deadline, still_there, attempt, |_, stop| {
        stopped(stop)
    })
}

/// Waits for an event to be set (or to have been set during the wait).
fn wait_set(
    slot: &Slot,
    deadline: Option<Instant>,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<SyncReply> {
    let mut since = None;
    let attempt = |primitive: &mut Primitive| match primitive {
        Primitive::Event { set, sets } => {
            let since = *since.get_or_insert(*sets);
            (*set || *sets != since).then_some(SyncReply::Bool(true))
        }
        _ => Some(another_kind()),
    };
    waiting(slot, deadline, still_there, attempt, |_, stop| match stop {
        Stop::TimedOut => SyncReply::Bool(false),
        Stop::Left => gone(),
    })
}

/// A condition's wait: lets go of its lock (every level) and waits for a notification until
/// the deadline, then takes the lock back at the same depth, however long that takes. The
/// reply says whether it was notified.
fn wait_notified(
    slot: &Slot,
    client: ClientId,
    deadline: Option<Instant>,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<SyncReply> {
    let (ticket, depth) = {
        let mut guard = slot.lock();
        let Object::Sync(primitive) = &mut *guard else {
            return None;
        };
        let Primitive::Condition(cond) = primitive else {
            return Some(another_kind());
        };
        let depth = match cond.lock.holder {
            Some((holder, depth)) if holder == client => depth,
            _ => return Some(SyncReply::Failed(not_held())),
        };
        cond.lock.holder = None;
        let ticket = cond.next_ticket;
        cond.next_ticket = ticket.wrapping_add(1);
        cond.waiting.push_back(ticket);
        slot.signalled(guard, (ticket, depth))
    };
    let notified = waiting(
        slot,
        deadline,
        still_there,
        |primitive| match primitive {
            Primitive::Condition(cond) => cond.notified.remove(&ticket).then_some(Ok(true)),
            _ => Some(Err(another_kind())),
        },
        |primitive, stop| {
            let Primitive::Condition(cond) = primitive else {
                return Err(another_kind());
            };
            let notified = cond.forget(ticket);
            match stop {
                Stop::TimedOut => Ok(notified),
                Stop::Left => {
                    // A notification meant for someone still waiting goes to the next waiter.
                    let next = notified.then(|| cond.waiting.pop_front()).flatten();
                    if let Some(next) = next {
                        cond.notified.insert(next);
                    }
                    Err(gone())
                }
            }
        },
    )?;
    let notified = match notified {
        Ok(notified) => notified,
        Err(reply) => return Some(reply),
    };
    let take_back = |primitive: &mut Primitive| match primitive {
        Primitive::Condition(cond) => cond.lock.holder.is_none().then(|| {
            cond.lock.holder = Some((client, depth));
            SyncReply::Bool(notified)
        }),
        _ => Some(another_kind()),
    };
    waiting(slot, None, still_there, take_back, |_, stop| stopped(stop))
}

/// Arrives at a barrier and waits for the other parties. The reply is the arrival index.
fn arrive(
    slot: &Slot,
    deadline: Option<Instant>,
    still_there: &mut dyn FnMut() -> bool,
) -> Option<SyncReply> {
    // The round and index this party arrived as, once it did.
    let arrival: Cell<Option<(u64, u32)>> = Cell::new(None);
    let attempt = |primitive: &mut Primitive| {
        let Primitive::Barrier(barrier) = primitive else {
            return Some(another_kind());
        };
        if let Some((round, index)) = arrival.get() {
            return barrier.outcome(round, index);
        }
        if barrier.broken {
            return Some(SyncReply::Failed(Error::BrokenBarrier));
        }
        let index = barrier.arrived;
        barrier.arrived += 1;
        if barrier.arrived >= barrier.parties {
            barrier.arrived = 0;
            barrier.round = barrier.round.wrapping_add(1);
            return Some(SyncReply::Count(index));
        }
        arrival.set(Some((barrier.round, index)));
        None
    };
    let give_up = |primitive: &mut Primitive, stop: Stop| {
        let Primitive::Barrier(barrier) = primitive else {
            return another_kind();
        };
        let ended = arrival
            .get()
            .and_then(|(round, index)| barrier.outcome(round, index));
        ended.unwrap_or_else(|| {
            // A party that gives up breaks the barrier for everyone, as in Python.
            barrier.broken = true;
            barrier.leave();
            match stop {
                Stop::TimedOut => SyncReply::Failed(Error::BrokenBarrier),
                Stop::Left => gone(),
            }
        })
    };
    waiting(slot, deadline, still_there, attempt, give_up)
}

/// The operations that never wait.
fn at_once(primitive: &mut Primitive, op: SyncOp, client: ClientId) -> SyncReply {
    match (primitive, op) {
        (Primitive::Lock(owned), SyncOp::Release) => owned.give(client),
        (Primitive::Condition(cond), SyncOp::Release) => cond.lock.give(client),
        (Primitive::Semaphore { value, bound }, SyncOp::Release) => {
            if *value >= *bound {
                SyncReply::Failed(Error::ReleasedTooManyTimes)
            } else {
                *value += 1;
                SyncReply::Done
            }
        }
        (Primitive::Semaphore { value, .. }, SyncOp::Value) => SyncReply::Count(*value),
        (Primitive::Event { set, sets }, SyncOp::Set) => {
            *set = true;
            *sets = sets.wrapping_add(1);
            SyncReply::Done
        }
        (Primitive::Event { set, .. }, SyncOp::Clear) => {
            *set = false;
            SyncReply::Done
        }
        (Primitive::Event { set, .. }, SyncOp::IsSet) => SyncReply::Bool(*set),
        (Primitive::Condition(cond), SyncOp::Notify { n }) => {
            cond.notify(client, usize::try_from(n).unwrap_or(usize::MAX))
        }
        (Primitive::Condition(cond), SyncOp::NotifyAll) => cond.notify(client, usize::MAX),
        (Primitive::Barrier(barrier), SyncOp::Abort) => {
            barrier.broken = true;
            SyncReply::Done
        }
        (Primitive::Barrier(barrier), SyncOp::Reset) => {
            barrier.reset();
            SyncReply::Done
        }
        (Primitive::Barrier(barrier), SyncOp::Parties) => SyncReply::Count(barrier.parties),
        (Primitive::Barrier(barrier), SyncOp::Waiting) => SyncReply::Count(barrier.arrived),
        (Primitive::Barrier(barrier), SyncOp::Broken) => SyncReply::Bool(barrier.broken),
        _ => another_kind(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use super::super::{Kind, Request, handle};
    use super::*;
    use crate::manager::protocol::Executable;

    /// A primitive on a server of its own, and requests to it as any client.
    #[derive(Clone)]
    struct On {
        objects: Arc<Objects>,
        id: u64,
    }

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    impl On {
        fn new(kind: SyncKind) -> Self {
            let objects = Arc::new(Objects::default());
            match handle(
                &objects,
                Request::New(Kind::Sync(kind)),
                A,
                Executable::Same,
                &mut || true,
            ) {
                Reply::Id(id) => Self { objects, id },
                other => panic!("{other:?}"),
            }
        }

        fn by(&self, client: ClientId, op: SyncOp) -> SyncReply {
            self.until(client, op, &mut || true)
        }

        /// As `by`, for a client that is there as long as `there` says.
        fn until(
            &self,
            client: ClientId,
            op: SyncOp,
            there: &mut dyn FnMut() -> bool,
        ) -> SyncReply {
            let request = Request::Op {
                id: self.id,
                op: crate::manager::protocol::Op::Sync(op),
            };
            match handle(&self.objects, request, client, Executable::Same, there) {
                Reply::Sync(reply) => reply,
                other => panic!("{other:?}"),
            }
        }

        /// Waits until `n` operations wait on the primitive (at most 10 s).
        fn settle(&self, n: usize) {
            let slot = self.objects.slot(self.id).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while slot.waiters() < n {
                assert!(
                    Instant::now() < deadline,
                    "{} waiting, not {n}",
                    slot.waiters()
                );
                thread::sleep(Duration::from_millis(1));
            }
        }

        /// `op` by `client` on another thread.
        fn later(&self, client: ClientId, op: SyncOp) -> thread::JoinHandle<SyncReply> {
            let on = self.clone();
            thread::spawn(move || on.by(client, op))
        }
    }

    fn acquire(wait_ms: Option<u64>) -> SyncOp {
        SyncOp::Acquire { wait_ms }
    }

    fn is_failed_with(reply: &SyncReply, what: &str) -> bool {
        matches!(reply, SyncReply::Failed(e) if e.to_string().contains(what))
    }

    #[test]
    fn a_lock_is_its_holders_alone_and_let_go_of_when_it_leaves() {
        let lock = On::new(SyncKind::Lock);
        assert!(matches!(lock.by(A, acquire(None)), SyncReply::Done));
        assert!(matches!(lock.by(B, acquire(Some(0))), SyncReply::TimedOut));
        assert!(matches!(lock.by(B, acquire(Some(30))), SyncReply::TimedOut));
        assert!(is_failed_with(
            &lock.by(B, SyncOp::Release),
            "does not hold"
        ));
        assert!(matches!(
            lock.by(A, acquire(None)),
            SyncReply::Failed(Error::Deadlock)
        ));
        // A waiter is given the lock when its holder's connection ends.
        let waiter = lock.later(B, acquire(Some(5000)));
        lock.settle(1);
        client_left(&lock.objects, A, &[lock.id].into());
        assert!(matches!(waiter.join().unwrap(), SyncReply::Done));
        assert!(is_failed_with(
            &lock.by(A, SyncOp::Release),
            "does not hold"
        ));
        assert!(matches!(lock.by(B, SyncOp::Release), SyncReply::Done));
    }

    #[test]
    fn a_waiter_that_left_takes_nothing() {
        let lock = On::new(SyncKind::Lock);
        assert!(matches!(lock.by(A, acquire(None)), SyncReply::Done));
        let leaves = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock, leaves) = (lock.clone(), leaves.clone());
            thread::spawn(move || {
                lock.until(B, acquire(None), &mut || !leaves.load(Ordering::SeqCst))
            })
        };
        lock.settle(1);
        leaves.store(true, Ordering::SeqCst);
        assert!(is_failed_with(&waiter.join().unwrap(), "gone"));
        assert!(matches!(lock.by(A, SyncOp::Release), SyncReply::Done));
        assert!(matches!(lock.by(A, acquire(Some(0))), SyncReply::Done));
    }

    #[test]
    fn an_rlock_counts_its_levels() {
        let lock = On::new(SyncKind::RLock);
        for _ in 0..3 {
            assert!(matches!(lock.by(A, acquire(Some(0))), SyncReply::Done));
        }
        for _ in 0..3 {
            assert!(matches!(lock.by(B, acquire(Some(0))), SyncReply::TimedOut));
            assert!(matches!(lock.by(A, SyncOp::Release), SyncReply::Done));
        }
        assert!(is_failed_with(
            &lock.by(A, SyncOp::Release),
            "does not hold"
        ));
        assert!(matches!(lock.by(B, acquire(Some(0))), SyncReply::Done));
    }

    #[test]
    fn a_semaphore_counts_units_and_a_bounded_one_refuses_extra_releases() {
        let sem = On::new(SyncKind::Semaphore {
            value: 2,
            bound: Some(2),
        });
        assert!(matches!(sem.by(A, acquire(None)), SyncReply::Done));
        assert!(matches!(sem.by(A, acquire(None)), SyncReply::Done));
        assert!(matches!(sem.by(B, acquire(Some(20))), SyncReply::TimedOut));
        assert!(matches!(sem.by(B, SyncOp::Value), SyncReply::Count(0)));
        // No owner: anyone releases, and a dead client's units stay taken.
        client_left(&sem.objects, A, &[sem.id].into());
        assert!(matches!(sem.by(B, SyncOp::Value), SyncReply::Count(0)));
        let waiter = sem.later(A, acquire(Some(5000)));
        sem.settle(1);
        assert!(matches!(sem.by(B, SyncOp::Release), SyncReply::Done));
        assert!(matches!(waiter.join().unwrap(), SyncReply::Done));
        assert!(matches!(sem.by(B, SyncOp::Release), SyncReply::Done));
        assert!(matches!(sem.by(B, SyncOp::Release), SyncReply::Done));
        assert!(matches!(
            sem.by(B, SyncOp::Release),
            SyncReply::Failed(Error::ReleasedTooManyTimes)
        ));
    }

    #[test]
    fn an_event_wakes_its_waiters_even_if_cleared_at_once() {
        let ev = On::new(SyncKind::Event);
        let wait = |wait_ms| SyncOp::WaitSet { wait_ms };
        assert!(matches!(ev.by(A, wait(Some(10))), SyncReply::Bool(false)));
        let waiter = ev.later(B, wait(Some(5000)));
        ev.settle(1);
        assert!(matches!(ev.by(A, SyncOp::Set), SyncReply::Done));
        assert!(matches!(ev.by(A, SyncOp::Clear), SyncReply::Done));
        assert!(matches!(waiter.join().unwrap(), SyncReply::Bool(true)));
        assert!(matches!(ev.by(A, SyncOp::IsSet), SyncReply::Bool(false)));
    }

    #[test]
    fn a_condition_wait_lets_go_of_its_lock_and_takes_it_back() {
        let cond = On::new(SyncKind::Condition);
        let wait = |wait_ms| SyncOp::Wait { wait_ms };
        assert!(is_failed_with(&cond.by(A, wait(Some(0))), "does not hold"));
        assert!(is_failed_with(
            &cond.by(A, SyncOp::NotifyAll),
            "does not hold"
        ));
        assert!(matches!(cond.by(A, acquire(None)), SyncReply::Done));
        assert!(matches!(cond.by(A, acquire(None)), SyncReply::Done));
        assert!(matches!(cond.by(A, wait(Some(10))), SyncReply::Bool(false)));
        // Held again, at both levels.
        assert!(matches!(cond.by(B, acquire(Some(0))), SyncReply::TimedOut));
        let waiter = cond.later(A, wait(Some(5000)));
        // B takes the lock that A's wait let go of, notifies, and releases.
        assert!(matches!(cond.by(B, acquire(Some(5000))), SyncReply::Done));
        assert!(matches!(
            cond.by(B, SyncOp::Notify { n: 1 }),
            SyncReply::Done
        ));
        assert!(matches!(cond.by(B, SyncOp::Release), SyncReply::Done));
        assert!(matches!(waiter.join().unwrap(), SyncReply::Bool(true)));
        assert!(matches!(cond.by(A, SyncOp::Release), SyncReply::Done));
        assert!(matches!(cond.by(A, SyncOp::Release), SyncReply::Done));
        assert!(matches!(cond.by(B, acquire(Some(0))), SyncReply::Done));
    }

    #[test]
    fn a_notification_taken_by_a_waiter_that_left_goes_to_the_next() {
        let cond = On::new(SyncKind::Condition);
        let c = ClientId(3);
        let leaves = Arc::new(AtomicBool::new(false));
        // A waits first, and will leave; then C waits.
        let first = {
            let (cond, leaves) = (cond.clone(), leaves.clone());
            thread::spawn(move || {
                assert!(matches!(cond.by(A, acquire(None)), SyncReply::Done));
                cond.until(A, SyncOp::Wait { wait_ms: None }, &mut || {
                    !leaves.load(Ordering::SeqCst)
                })
            })
        };
        cond.settle(1);
        let second = {
            let cond = cond.clone();
            thread::spawn(move || {
                assert!(matches!(cond.by(c, acquire(None)), SyncReply::Done));
                cond.by(
                    c,
                    SyncOp::Wait {
                        wait_ms: Some(5000),
                    },
                )
            })
        };
        cond.settle(2);
        // A leaves as it is notified (whichever it sees first): C is notified either way.
        leaves.store(true, Ordering::SeqCst);
        assert!(matches!(cond.by(B, acquire(None)), SyncReply::Done));
        assert!(matches!(
            cond.by(B, SyncOp::Notify { n: 1 }),
            SyncReply::Done
        ));
        assert!(matches!(cond.by(B, SyncOp::Release), SyncReply::Done));
        assert!(is_failed_with(&first.join().unwrap(), "gone"));
        assert!(matches!(second.join().unwrap(), SyncReply::Bool(true)));
    }

    /// Regression: a party of a round cancelled by a reset was told the round completed when a
    /// second reset came before it looked.
    #[test]
    fn a_round_cancelled_twice_over_is_still_broken_for_its_parties() {
        let barrier = On::new(SyncKind::Barrier { parties: 3 });
        let waiters: Vec<_> = [A, B]
            .into_iter()
            .map(|c| {
                let on = barrier.clone();
                thread::spawn(move || {
                    on.until(
                        c,
                        SyncOp::Arrive {
                            wait_ms: Some(10_000),
                        },
                        &mut || true,
                    )
                })
            })
            .collect();
        barrier.settle(2);
        // Both resets under the object's lock, so no waiter looks between them.
        {
            let slot = barrier.objects.slot(barrier.id).unwrap();
            let mut object = slot.lock();
            let Object::Sync(Primitive::Barrier(b)) = &mut *object else {
                panic!("not a barrier");
            };
            b.reset();
            b.reset();
            slot.signalled(object, ());
        }
        for w in waiters {
            assert!(matches!(
                w.join().unwrap(),
                SyncReply::Failed(Error::BrokenBarrier)
            ));
        }
    }

    /// Regression: a waiter that left without a notification took the next waiter's place in
    /// line with it, and a later notification found no one to wake.
    #[test]
    fn a_waiter_that_left_unnotified_keeps_no_one_from_a_later_notification() {
        let cond = On::new(SyncKind::Condition);
        let c = ClientId(3);
        let leaves = Arc::new(AtomicBool::new(false));
        let first = {
            let (cond, leaves) = (cond.clone(), leaves.clone());
            thread::spawn(move || {
                assert!(matches!(cond.by(A, acquire(None)), SyncReply::Done));
                cond.until(A, SyncOp::Wait { wait_ms: None }, &mut || {
                    !leaves.load(Ordering::SeqCst)
                })
            })
        };
        cond.settle(1);
        let second = {
            let cond = cond.clone();
            thread::spawn(move || {
                assert!(matches!(cond.by(c, acquire(None)), SyncReply::Done));
                let waited = cond.by(
                    c,
                    SyncOp::Wait {
                        wait_ms: Some(10_000),
                    },
                );
                assert!(matches!(cond.by(c, SyncOp::Release), SyncReply::Done));
                waited
            })
        };
        cond.settle(2);
        leaves.store(true, Ordering::SeqCst);
        assert!(is_failed_with(&first.join().unwrap(), "gone"));
        assert!(matches!(cond.by(B, acquire(None)), SyncReply::Done));
        assert!(matches!(
            cond.by(B, SyncOp::Notify { n: 1 }),
            SyncReply::Done
        ));
        assert!(matches!(cond.by(B, SyncOp::Release), SyncReply::Done));
        assert!(matches!(second.join().unwrap(), SyncReply::Bool(true)));
    }

    #[test]
    fn a_barrier_numbers_its_parties_and_breaks_when_one_gives_up() {
        let barrier = On::new(SyncKind::Barrier { parties: 3 });
        let arrive = |wait_ms| SyncOp::Arrive { wait_ms };
        let waiters: Vec<_> = [A, B]
            .into_iter()
            .map(|c| barrier.later(c, arrive(Some(5000))))
            .collect();
        barrier.settle(2);
        assert!(matches!(
            barrier.by(A, SyncOp::Waiting),
            SyncReply::Count(2)
        ));
        let mut indices = vec![barrier.by(ClientId(3), arrive(None))];
        indices.extend(waiters.into_iter().map(|w| w.join().unwrap()));
        let mut indices: Vec<u32> = indices
            .into_iter()
            .map(|r| match r {
                SyncReply::Count(i) => i,
                other => panic!("{other:?}"),
            })
            .collect();
        indices.sort();
        assert_eq!(indices, [0, 1, 2]);

        // A party that leaves breaks it for the others, and for later arrivals.
        let waiter = barrier.later(A, arrive(Some(5000)));
        barrier.settle(1);
        let left = barrier.until(B, arrive(None), &mut || false);
        assert!(is_failed_with(&left, "gone"));
        assert!(matches!(
            waiter.join().unwrap(),
            SyncReply::Failed(Error::BrokenBarrier)
        ));
        assert!(matches!(
            barrier.by(A, SyncOp::Broken),
            SyncReply::Bool(true)
        ));
        assert!(matches!(
            barrier.by(A, arrive(None)),
            SyncReply::Failed(Error::BrokenBarrier)
        ));

        // Reset mends it, cancelling the round in progress; a timeout breaks it.
        assert!(matches!(barrier.by(A, SyncOp::Reset), SyncReply::Done));
        let waiter = barrier.later(A, arrive(Some(5000)));
        barrier.settle(1);
        assert!(matches!(barrier.by(B, SyncOp::Reset), SyncReply::Done));
        assert!(matches!(
            waiter.join().unwrap(),
            SyncReply::Failed(Error::BrokenBarrier)
        ));
        assert!(matches!(
            barrier.by(A, SyncOp::Broken),
            SyncReply::Bool(false)
        ));
        assert!(matches!(
            barrier.by(A, arrive(Some(10))),
            SyncReply::Failed(Error::BrokenBarrier)
        ));
        assert!(matches!(
            barrier.by(A, SyncOp::Broken),
            SyncReply::Bool(true)
        ));
        assert!(matches!(
            barrier.by(A, SyncOp::Parties),
            SyncReply::Count(3)
        ));
    }

    #[test]
    fn operations_reach_only_primitives_of_their_kind() {
        let ev = On::new(SyncKind::Event);
        assert!(is_failed_with(&ev.by(A, acquire(Some(0))), "another kind"));
        assert!(is_failed_with(&ev.by(A, SyncOp::Abort), "another kind"));
        // A wait as long as a client can ask for is no overflow.
        let _ = deadline(Some(u64::MAX));
    }
}
