//! Event, Condition and Barrier across processes, including a barrier broken by a dead party.

mod common;
use common::{SECS, within};
use multiproc::{Barrier, Condition, Error, Event, Process, RawValue};
use std::time::{Duration, Instant};

fn wait_then_set((go, done): (Event, Event)) -> bool {
    let seen = go.wait_timeout(SECS(20));
    done.set();
    seen
}

#[test]
fn an_event_wakes_a_waiting_process() {
    within(SECS(30), || {
        let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
        let mut p = Process::new(wait_then_set, (go.clone(), done.clone()));
        p.start().unwrap();
        assert!(
            !done.wait_timeout(Duration::from_millis(100)),
            "the child waits for go"
        );
        go.set();
        assert!(done.wait_timeout(SECS(10)));
        assert!(p.join().unwrap());
        go.clear();
        assert!(!go.is_set());
    });
}

/// Waits (under the condition) until the shared counter reaches `target`, then reports the
/// value it saw.
fn wait_for_count((cond, count, target): (Condition, RawValue<u32>, u32)) -> u32 {
    let mut guard = cond.acquire().unwrap();
    guard.wait_for(|| count.get() >= target).unwrap();
    count.get()
}

#[test]
fn condition_waiters_in_other_processes_see_notifications() {
    within(SECS(30), || {
        let cond = Condition::new().unwrap();
        let count = RawValue::new(0u32).unwrap();
        let mut waiters: Vec<_> = (1..=3)
            .map(|t| Process::new(wait_for_count, (cond.clone(), count.clone(), t * 10)))
            .collect();
        for w in &mut waiters {
            w.start().unwrap();
        }
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(2));
            let guard = cond.acquire().unwrap();
            count.set(count.get() + 1);
            guard.notify_all();
        }
        for (i, w) in waiters.iter_mut().enumerate() {
            assert!(w.join().cloned().unwrap() >= (i as u32 + 1) * 10);
        }
    });
}

#[test]
fn condition_wait_timeout_returns_with_the_lock_held() {
    let cond = Condition::new().unwrap();
    let mut guard = cond.acquire().unwrap();
    let t = Instant::now();
    assert!(!guard.wait_timeout(Duration::from_millis(50)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert!(
        !guard
            .wait_for_timeout(Duration::from_millis(20), || false)
            .unwrap()
    );
}

fn meet((barrier, rounds): (Barrier, u32)) -> Vec<u32> {
    (0..rounds)
        .map(|_| barrier.wait_timeout(SECS(20)).unwrap())
        .collect()
}

#[test]
fn a_barrier_releases_all_parties_each_round() {
    within(SECS(30), || {
        let barrier = Barrier::new(3).unwrap();
        let mut ps: Vec<_> = (0..2)
            .map(|_| Process::new(meet, (barrier.clone(), 5)))
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        let mine = meet((barrier.clone(), 5));
        let mut per_round: Vec<Vec<u32>> = vec![mine];
        for p in &mut ps {
            per_round.push(p.join().cloned().unwrap());
        }
        for round in 0..5 {
            let mut idx: Vec<u32> = per_round.iter().map(|r| r[round]).collect();
            idx.sort_unstable();
            assert_eq!(idx, [0, 1, 2], "round {round}: arrival indices");
        }
        assert!(!barrier.broken());
    });
}

fn one_round_then_hang(barrier: Barrier) {
    barrier.wait_timeout(SECS(20)).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_barrier_is_broken_by_a_dead_party() {
    within(SECS(30), || {
        let barrier = Barrier::new(2).unwrap();
        let mut p = Process::new(one_round_then_hang, barrier.clone());
        p.start().unwrap();
        barrier.wait_timeout(SECS(20)).unwrap(); // round one, together
        p.kill().unwrap(); // the other party dies during its work
        let _ = p.join_timeout(SECS(5));
        let t = Instant::now();
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
        assert!(t.elapsed() < SECS(5), "noticed, not waited out");
        assert!(barrier.broken());
        barrier.reset();
        assert!(!barrier.broken());
    });
}

#[test]
fn a_barrier_timeout_breaks_it_for_everyone_and_abort_too() {
    within(SECS(30), || {
        let barrier = Barrier::new(3).unwrap();
        let mut p = Process::new(
            |b: Barrier| matches!(b.wait_timeout(SECS(20)), Err(Error::BrokenBarrier)),
            barrier.clone(),
        );
        p.start().unwrap();
        assert!(matches!(
            barrier.wait_timeout(Duration::from_millis(200)),
            Err(Error::BrokenBarrier)
        ));
        assert!(p.join().unwrap(), "the other waiter was told too");
        barrier.reset();
        barrier.abort();
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
        assert_eq!(barrier.parties(), 3);
        assert_eq!(barrier.n_waiting(), 0);
    });
}

/// Regression: a `set()` followed by `clear()` while a process waited went unnoticed.
#[test]
fn an_event_set_and_cleared_during_a_wait_wakes_the_waiter() {
    within(SECS(30), || {
        let ev = Event::new().unwrap();
        let mut p = Process::new(|ev: Event| ev.wait_timeout(SECS(10)), ev.clone());
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        ev.set();
        ev.clear();
        let t = Instant::now();
        assert!(p.join().unwrap(), "the wait saw the set");
        assert!(t.elapsed() < SECS(5));
    });
}

/// Regression: a reset right after a round completed made its parties fail.
#[test]
fn a_reset_after_a_completed_round_does_not_break_that_round() {
    within(SECS(30), || {
        for _ in 0..50 {
            let barrier = Barrier::new(2).unwrap();
            let other = barrier.clone();
            let t = std::thread::spawn(move || other.wait_timeout(SECS(10)));
            assert!(barrier.wait_timeout(SECS(10)).is_ok());
            barrier.reset();
            assert!(t.join().unwrap().is_ok());
        }
    });
}

/// Parties that change from round to round: one that finished and exited is not dead.
#[test]
fn a_barrier_for_changing_parties_ignores_earlier_parties_that_exited() {
    within(SECS(30), || {
        let barrier = Barrier::for_changing_parties(2).unwrap();
        let meet_once = |b: Barrier| b.wait_timeout(SECS(10)).is_ok();
        let mut first = Process::new(meet_once, barrier.clone());
        first.start().unwrap();
        barrier.wait_timeout(SECS(10)).unwrap();
        assert!(first.join().unwrap()); // it has exited now
        let mut second = Process::new(meet_once, barrier.clone());
        std::thread::sleep(Duration::from_millis(100)); // a late newcomer
        second.start().unwrap();
        barrier.wait_timeout(SECS(10)).unwrap();
        assert!(second.join().unwrap());
    });
}

fn wait_once((cond, woken): (Condition, RawValue<u32>)) {
    let mut g = cond.acquire().unwrap();
    if g.wait_timeout(Duration::from_millis(700)).unwrap() {
        woken.set(woken.get() + 1); // under the condition's lock
    }
}

/// Regression: `notify()` woke every waiter.
#[test]
fn notify_wakes_one_waiter_and_notify_all_the_rest() {
    within(SECS(30), || {
        let cond = Condition::new().unwrap();
        let woken = RawValue::new(0u32).unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| Process::new(wait_once, (cond.clone(), woken.clone())))
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300)); // all three are waiting
        cond.acquire().unwrap().notify();
        for p in &mut ps {
            p.join().unwrap();
        }
        assert_eq!(woken.get(), 1, "one notify, one waiter");
    });
}
