//! Locks across processes: mutual exclusion under contention, a holder killed while holding
//! the lock, re-entrancy, semaphores.

mod common;
use common::{SECS, within};
use multiproc::{BoundedSemaphore, Error, Lock, Pool, Process, RLock, Semaphore, Value};
use std::time::{Duration, Instant};

/// Adds 1 to the counter `n` times, each time under its lock, with a deliberately racy
/// read-then-write so that a broken lock loses updates.
fn add_under_lock((counter, n): (Value<u64>, u32)) -> u32 {
    for _ in 0..n {
        let mut guard = counter.lock().unwrap();
        let seen = *guard;
        std::hint::spin_loop();
        *guard = seen + 1;
    }
    n
}

#[test]
fn a_counter_under_contention_from_three_processes_is_exact() {
    within(SECS(60), || {
        let counter = Value::new(0u64).unwrap();
        let mut procs: Vec<_> = (0..3)
            .map(|_| Process::new(add_under_lock, (counter.clone(), 20_000)))
            .collect();
        for p in &mut procs {
            p.start().unwrap();
        }
        // The parent competes too.
        add_under_lock((counter.clone(), 20_000));
        for p in &mut procs {
            assert_eq!(p.join().cloned().unwrap(), 20_000);
        }
        assert_eq!(counter.get().unwrap(), 80_000);
    });
}

#[test]
fn pool_tasks_share_a_value_through_their_arguments() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let counter = Value::new(0u64).unwrap();
        let items: Vec<_> = (0..40).map(|_| (counter.clone(), 500)).collect();
        let done = pool.map(add_under_lock, items).unwrap();
        assert_eq!(done.iter().sum::<u32>(), 20_000);
        assert_eq!(counter.get().unwrap(), 20_000);
    });
}

fn hold_forever((lock, ready): (Lock, Semaphore)) {
    let _guard = lock.acquire().unwrap();
    ready.release().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_holder_killed_while_holding_is_reported_and_the_lock_works_again() {
    within(SECS(30), || {
        let lock = Lock::new().unwrap();
        let ready = Semaphore::new(0).unwrap();
        let mut holder = Process::new(hold_forever, (lock.clone(), ready.clone()));
        holder.start().unwrap();
        ready.acquire_timeout(SECS(10)).unwrap().forget();
        assert!(lock.try_acquire().unwrap().is_none(), "the child holds it");
        assert!(matches!(
            lock.acquire_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        holder.kill().unwrap();
        let _ = holder.join_timeout(SECS(10));
        let t = Instant::now();
        match lock.acquire_timeout(SECS(10)) {
            Err(Error::OwnerDied { thread }) => assert!(thread > 0),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert!(t.elapsed() < SECS(2), "noticed within a few slices");
        // Usable again, by anyone.
        let g = lock.acquire_timeout(SECS(1)).unwrap();
        drop(g);
        let counter = Value::new(0u64).unwrap();
        drop(lock);
        add_under_lock((counter.clone(), 10));
        assert_eq!(counter.get().unwrap(), 10);
    });
}

fn hold_value_lock((v, ready): (Value<i32>, Semaphore)) {
    let mut g = v.lock().unwrap();
    *g = -1; // half-way through an update
    ready.release().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_value_whose_holder_died_reports_it_then_works() {
    within(SECS(30), || {
        let v = Value::new(5i32).unwrap();
        let ready = Semaphore::new(0).unwrap();
        let mut p = Process::new(hold_value_lock, (v.clone(), ready.clone()));
        p.start().unwrap();
        ready.acquire_timeout(SECS(10)).unwrap().forget();
        p.kill().unwrap();
        let _ = p.join_timeout(SECS(10));
        assert!(matches!(v.get(), Err(Error::OwnerDied { .. })));
        assert_eq!(v.get().unwrap(), -1);
        v.set(7).unwrap();
        assert_eq!(v.get().unwrap(), 7);
    });
}

#[test]
fn a_lock_taken_twice_by_one_thread_is_an_error_not_a_hang() {
    let lock = Lock::new().unwrap();
    let _g = lock.acquire().unwrap();
    assert!(matches!(lock.acquire(), Err(Error::Deadlock)));
}

#[test]
fn rlock_is_reentrant_and_excludes_other_processes() {
    within(SECS(30), || {
        let lock = RLock::new().unwrap();
        let a = lock.acquire().unwrap();
        let b = lock.acquire().unwrap();
        drop(a);
        let mut p = Process::new(
            |l: RLock| l.acquire_timeout(Duration::from_millis(100)).is_ok(),
            lock.clone(),
        );
        p.start().unwrap();
        assert!(!p.join().unwrap(), "still held at depth 1");
        drop(b);
        let mut p = Process::new(
            |l: RLock| l.acquire_timeout(Duration::from_secs(5)).is_ok(),
            lock.clone(),
        );
        p.start().unwrap();
        assert!(p.join().unwrap(), "free after the last guard");
    });
}

fn take_and_release((sem, n): (Semaphore, u32)) -> u32 {
    for _ in 0..n {
        sem.acquire().unwrap().forget();
    }
    n
}

#[test]
fn semaphore_units_cross_processes() {
    within(SECS(30), || {
        let sem = Semaphore::new(0).unwrap();
        let mut p = Process::new(take_and_release, (sem.clone(), 100));
        p.start().unwrap();
        for _ in 0..100 {
            sem.release().unwrap();
        }
        assert_eq!(p.join().cloned().unwrap(), 100);
        assert_eq!(sem.get_value(), 0);
        assert!(sem.try_acquire().unwrap().is_none());
        assert!(matches!(
            sem.acquire_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
    });
}

/// Takes one unit and keeps it (the process stays alive) until `done` is released.
fn hold_a_unit((sem, taken, done): (BoundedSemaphore, Semaphore, Semaphore)) {
    let unit = sem.acquire().unwrap();
    taken.release().unwrap();
    done.acquire().unwrap().forget();
    drop(unit);
}

#[test]
fn try_acquire_is_ok_none_while_another_process_holds_every_unit() {
    within(SECS(30), || {
        let sem = BoundedSemaphore::new(1).unwrap();
        let (taken, done) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        let mut p = Process::new(hold_a_unit, (sem.clone(), taken.clone(), done.clone()));
        p.start().unwrap();
        taken.acquire_timeout(SECS(20)).unwrap().forget();
        assert!(
            sem.try_acquire().unwrap().is_none(),
            "the child holds the unit"
        );
        done.release().unwrap();
        p.join().unwrap();
        let unit = sem.try_acquire().unwrap();
        assert!(unit.is_some(), "released by the child's guard");
        assert!(sem.try_acquire().unwrap().is_none());
        drop(unit);
        assert_eq!(sem.get_value(), 1);
    });
}

#[test]
fn bounded_semaphore_refuses_a_release_past_its_initial_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert!(matches!(sem.release(), Err(Error::ReleasedTooManyTimes)));
    let g = sem.acquire().unwrap();
    g.forget();
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 2);
    assert!(matches!(sem.release(), Err(Error::ReleasedTooManyTimes)));
}

/// Regression: the value's lock was re-entrant, so two guards on one thread gave two `&mut`
/// to the same memory.
#[test]
fn a_value_or_array_guard_is_the_only_way_in_while_it_lives() {
    let v = Value::new(1i64).unwrap();
    let mut g = v.lock().unwrap();
    assert!(matches!(v.lock(), Err(Error::Deadlock)));
    assert!(
        matches!(v.try_lock(), Ok(None)),
        "a try is refused, as by a Lock"
    );
    assert!(matches!(v.get(), Err(Error::Deadlock)));
    *g += 1;
    drop(g);
    assert_eq!(v.get().unwrap(), 2);
    let a = multiproc::Array::new(&[1u8, 2, 3]).unwrap();
    let _g = a.lock().unwrap();
    assert!(matches!(a.lock(), Err(Error::Deadlock)));
    assert!(matches!(a.try_lock(), Ok(None)));
    assert!(matches!(a.set(0, 9), Err(Error::Deadlock)));
}

fn read_value(v: Value<u64>) -> u64 {
    v.get().unwrap()
}

/// Regression: descriptors in one pool chunk were matched by number; a handle dropped after
/// encoding freed its number for the next item's handle, which was then sent as the first.
#[test]
fn each_item_of_a_chunk_gets_its_own_handle() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let got = pool
            .map_chunked(read_value, (0..8u64).map(|i| Value::new(i).unwrap()), 8)
            .unwrap();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    });
}
