//! The Manager's locks, semaphores, events, conditions and barriers, between real processes;
//! holders and waiters are killed with SIGKILL where it matters. Every wait has a deadline.

mod common;
use common::{SECS, eventually, sigkill, within};
use multiproc::{
    BarrierProxy, ConditionProxy, Error, EventProxy, LockProxy, Manager, Process, RLockProxy,
    SemaphoreProxy, ValueProxy,
};
use std::time::{Duration, Instant};

/// Starts every process, then joins every one, giving back what each returned.
fn run_all<T: multiproc::Data + Clone>(ps: &mut [Process<T>]) -> Vec<T> {
    for p in ps.iter_mut() {
        p.start().unwrap();
    }
    ps.iter().map(|p| p.join().unwrap().clone()).collect()
}

/// Adds one to `v` in two calls, a read and then a write: only a lock keeps it whole.
fn add_one_unlocked(v: &ValueProxy<u64>) {
    let n = v.get().unwrap();
    v.set(n + 1).unwrap();
}

fn count_under_lock(lock: LockProxy, v: ValueProxy<u64>, times: u32) {
    for _ in 0..times {
        let _held = lock.acquire_timeout(SECS(30)).unwrap();
        add_one_unlocked(&v);
    }
}

#[test]
fn a_managed_lock_keeps_read_modify_writes_of_four_processes_whole() {
    within(SECS(120), || {
        let m = Manager::new().unwrap();
        let (lock, v) = (m.lock().unwrap(), m.value(0u64).unwrap());
        let mut ps: Vec<_> = (0..4)
            .map(|_| Process::new(count_under_lock, (lock.clone(), v.clone(), 200)))
            .collect();
        run_all(&mut ps);
        assert_eq!(v.get().unwrap(), 800);
    });
}

fn hold_forever(lock: LockProxy, rlock: RLockProxy, holding: EventProxy) {
    lock.acquire().unwrap().forget();
    rlock.acquire().unwrap().forget();
    rlock.acquire().unwrap().forget();
    holding.set().unwrap();
    std::thread::sleep(SECS(600));
}

/// Python's managed lock stays held forever when its holder dies; here the server releases it
/// (every level of an RLock) when the holder's connection ends, and a waiter takes it.
#[test]
fn a_lock_held_by_a_process_killed_with_sigkill_is_released() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let (lock, rlock, holding) = (m.lock().unwrap(), m.rlock().unwrap(), m.event().unwrap());
        let mut holder = Process::new(hold_forever, (lock.clone(), rlock.clone(), holding.clone()));
        holder.start().unwrap();
        assert!(holding.wait_timeout(SECS(20)).unwrap());
        assert!(lock.try_acquire().unwrap().is_none());
        assert!(rlock.try_acquire().unwrap().is_none());
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let _held = lock.acquire_timeout(SECS(20))?;
                Ok::<Instant, Error>(Instant::now())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let killed = Instant::now();
        assert!(sigkill(holder.pid().unwrap()));
        assert!(holder.join().is_err(), "killed");
        let taken = waiter.join().unwrap().unwrap();
        assert!(
            taken.duration_since(killed) < SECS(2),
            "{:?}",
            taken - killed
        );
        let _rlock = rlock.acquire_timeout(SECS(2)).unwrap();
        let _lock = lock.acquire_timeout(SECS(2)).unwrap();
    });
}

/// A thread's connection ends with the thread: what it held is released.
#[test]
fn a_lock_held_by_a_thread_that_ended_is_released() {
    within(SECS(30), || {
        let m = Manager::new().unwrap();
        let lock = m.lock().unwrap();
        let l = lock.clone();
        std::thread::spawn(move || l.acquire().unwrap().forget())
            .join()
            .unwrap();
        let _held = lock.acquire_timeout(SECS(5)).unwrap();
    });
}

fn try_release(rlock: RLockProxy) -> (bool, bool) {
    let refused = matches!(rlock.release(), Err(Error::Manager(_)));
    let free = rlock.try_acquire().unwrap().is_some();
    (refused, free)
}

#[test]
fn an_rlock_is_re_entrant_and_only_its_holder_releases_it() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let rlock = m.rlock().unwrap();
        let outer = rlock.acquire().unwrap();
        let inner = rlock.acquire_timeout(SECS(1)).unwrap();
        let mut other = Process::new(try_release, rlock.clone());
        other.start().unwrap();
        assert_eq!(*other.join().unwrap(), (true, false), "another process");
        let r = rlock.clone();
        let (refused, free) = std::thread::spawn(move || try_release(r)).join().unwrap();
        assert!(refused && !free, "another thread of this process");
        drop(inner);
        assert_eq!(
            Process::new(try_release, rlock.clone()).start_join(),
            (true, false)
        );
        drop(outer);
        assert!(
            matches!(rlock.release(), Err(Error::Manager(why)) if why.contains("does not hold"))
        );
        assert_eq!(
            Process::new(try_release, rlock.clone()).start_join(),
            (true, true)
        );

        // A plain lock refuses to be taken twice by one thread rather than hang.
        let lock = m.lock().unwrap();
        let _held = lock.acquire().unwrap();
        assert!(matches!(lock.acquire(), Err(Error::Deadlock)));
        assert!(matches!(lock.try_acquire(), Err(Error::Deadlock)));
    });
}

/// `start` then `join`, for the one-liners above.
trait StartJoin<T> {
    fn start_join(self) -> T;
}

impl<T: multiproc::Data + Clone> StartJoin<T> for Process<T> {
    fn start_join(mut self) -> T {
        self.start().unwrap();
        self.join().unwrap().clone()
    }
}

fn wait_for_event(ev: EventProxy) -> bool {
    ev.wait_timeout(SECS(20)).unwrap()
}

#[test]
fn an_event_set_in_one_process_wakes_waiters_in_others() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let ev = m.event().unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| Process::new(wait_for_event, ev.clone()))
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(ps.iter().all(|p| p.is_alive()), "all still waiting");
        ev.set().unwrap();
        assert!(ps.iter().all(|p| *p.join().unwrap()));
        assert!(ev.is_set().unwrap());
        ev.clear().unwrap();
        assert!(!ev.is_set().unwrap());
    });
}

/// Takes a unit, notes how many are inside (and the most ever), stays a while, leaves.
fn inside(sem: SemaphoreProxy, count: ValueProxy<(u32, u32)>) {
    let _unit = sem.acquire_timeout(SECS(30)).unwrap();
    count
        .update(|(now, most): (u32, u32)| (now + 1, most.max(now + 1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    count
        .update(|(now, most): (u32, u32)| (now - 1, most))
        .unwrap();
}

fn take_a_unit_and_leave(sem: SemaphoreProxy) {
    sem.acquire().unwrap().forget();
}

#[test]
fn a_semaphore_lets_in_at_most_its_count() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let sem = m.semaphore(2).unwrap();
        let count = m.value((0u32, 0u32)).unwrap();
        let mut ps: Vec<_> = (0..5)
            .map(|_| Process::new(inside, (sem.clone(), count.clone())))
            .collect();
        run_all(&mut ps);
        let (now, most) = count.get().unwrap();
        assert_eq!(now, 0);
        assert!((1..=2).contains(&most), "{most} inside at once");
        assert_eq!(sem.get_value().unwrap(), 2);

        // Units have no owner: one taken by a process that ended stays taken.
        Process::new(take_a_unit_and_leave, sem.clone()).start_join();
        assert_eq!(sem.get_value().unwrap(), 1);
        sem.release().unwrap();

        let bounded = m.bounded_semaphore(1).unwrap();
        bounded.acquire().unwrap().release().unwrap();
        assert!(matches!(
            bounded.release(),
            Err(Error::ReleasedTooManyTimes)
        ));
    });
}

/// Waits on the condition after noting that it does; notes when it is woken.
fn wait_for_notify(cond: ConditionProxy, waiting: ValueProxy<u32>, woken: ValueProxy<u32>) -> bool {
    let _held = cond.acquire_timeout(SECS(20)).unwrap();
    waiting.update(|n: u32| n + 1).unwrap();
    let notified = cond.wait_timeout(SECS(20)).unwrap();
    woken.update(|n: u32| n + 1).unwrap();
    notified
}

/// `notify_n(1)` wakes one waiter of three processes, `notify_all` the rest.
#[test]
fn a_condition_notifies_waiters_in_other_processes() {
    within(SECS(90), || {
        let m = Manager::new().unwrap();
        let cond = m.condition().unwrap();
        let (waiting, woken) = (m.value(0u32).unwrap(), m.value(0u32).unwrap());
        let mut ps: Vec<_> = (0..3)
            .map(|_| {
                Process::new(
                    wait_for_notify,
                    (cond.clone(), waiting.clone(), woken.clone()),
                )
            })
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        // A waiter counts itself with the lock held and waits, which lets go of it: once this
        // thread holds the lock and the count is 3, all three are waiting.
        assert!(eventually(SECS(20), || {
            let _held = cond.acquire_timeout(SECS(20)).unwrap();
            waiting.get().unwrap() == 3
        }));
        {
            let _held = cond.acquire_timeout(SECS(20)).unwrap();
            assert!(matches!(
                cond.wait_timeout(Duration::from_millis(10)),
                Ok(false)
            ));
            cond.notify_n(1).unwrap();
        }
        assert!(eventually(SECS(20), || woken.get().unwrap() == 1));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            woken.get().unwrap(),
            1,
            "one notification, one waiter woken"
        );
        {
            let _held = cond.acquire_timeout(SECS(20)).unwrap();
            cond.notify_all().unwrap();
        }
        assert!(ps.iter().all(|p| *p.join().unwrap()), "all were notified");
        assert_eq!(woken.get().unwrap(), 3);
        assert!(matches!(cond.notify(), Err(Error::Manager(_))), "not held");
    });
}

fn meet(barrier: BarrierProxy) -> u32 {
    barrier.wait_timeout(SECS(20)).unwrap()
}

fn wait_at(barrier: BarrierProxy) {
    let _ = barrier.wait();
}

#[test]
fn a_barrier_of_three_processes_gives_each_its_own_index() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let barrier = m.barrier(3).unwrap();
        for _round in 0..2 {
            let mut ps: Vec<_> = (0..3)
                .map(|_| Process::new(meet, barrier.clone()))
                .collect();
            let mut indices = run_all(&mut ps);
            indices.sort();
            assert_eq!(indices, [0, 1, 2]);
        }
        assert_eq!(barrier.parties().unwrap(), 3);
        assert!(matches!(m.barrier(0), Err(Error::InvalidArgument(_))));
    });
}

/// A party killed while it waits breaks the barrier: the others are told at once rather than
/// waiting for their timeouts.
#[test]
fn a_waiter_killed_with_sigkill_breaks_the_barrier() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let barrier = m.barrier(3).unwrap();
        let mut doomed = Process::new(wait_at, barrier.clone());
        doomed.start().unwrap();
        assert!(eventually(SECS(20), || barrier.n_waiting().unwrap() == 1));
        let waiter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let outcome = barrier.wait_timeout(SECS(30));
                (outcome, Instant::now())
            })
        };
        assert!(eventually(SECS(20), || barrier.n_waiting().unwrap() == 2));
        let killed = Instant::now();
        assert!(sigkill(doomed.pid().unwrap()));
        let (outcome, told) = waiter.join().unwrap();
        assert!(matches!(outcome, Err(Error::BrokenBarrier)), "{outcome:?}");
        assert!(told.duration_since(killed) < SECS(2), "{:?}", told - killed);
        assert!(doomed.join().is_err(), "killed");
        assert!(barrier.broken().unwrap());
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
        barrier.reset().unwrap();
        assert!(!barrier.broken().unwrap());
        assert_eq!(barrier.n_waiting().unwrap(), 0);
        barrier.abort().unwrap();
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    });
}

fn hold_for(lock: LockProxy, held: EventProxy, go: EventProxy) {
    let _held = lock.acquire().unwrap();
    held.set().unwrap();
    go.wait_timeout(SECS(20)).unwrap();
}

/// Every bounded wait returns soon after its timeout, with its own way of saying so.
#[test]
fn timeouts_return_promptly() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let short = Duration::from_millis(120);
        let prompt = |what: &str, t: Instant| {
            let took = t.elapsed();
            assert!(took >= short && took < SECS(2), "{what}: {took:?}");
        };

        let (lock, held, go) = (m.lock().unwrap(), m.event().unwrap(), m.event().unwrap());
        let mut holder = Process::new(hold_for, (lock.clone(), held.clone(), go.clone()));
        holder.start().unwrap();
        assert!(held.wait_timeout(SECS(20)).unwrap());
        let t = Instant::now();
        assert!(matches!(lock.acquire_timeout(short), Err(Error::Timeout)));
        prompt("lock", t);
        go.set().unwrap();
        holder.join().unwrap();
        assert!(lock.try_acquire().unwrap().is_some());

        let ev = m.event().unwrap();
        let t = Instant::now();
        assert!(!ev.wait_timeout(short).unwrap());
        prompt("event", t);

        let sem = m.semaphore(0).unwrap();
        let t = Instant::now();
        assert!(matches!(sem.acquire_timeout(short), Err(Error::Timeout)));
        prompt("semaphore", t);
        assert!(sem.try_acquire().unwrap().is_none());

        let cond = m.condition().unwrap();
        let _held = cond.acquire().unwrap();
        let t = Instant::now();
        assert!(!cond.wait_timeout(short).unwrap());
        prompt("condition", t);

        let barrier = m.barrier(2).unwrap();
        let t = Instant::now();
        assert!(matches!(
            barrier.wait_timeout(short),
            Err(Error::BrokenBarrier)
        ));
        prompt("barrier", t);
    });
}

/// A server killed while a lock's waiter waits: the waiter is told at once.
#[test]
fn a_killed_server_ends_every_wait_promptly() {
    within(SECS(60), || {
        let m = Manager::new().unwrap();
        let lock = m.lock().unwrap();
        let _held = lock.acquire().unwrap();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.acquire_timeout(SECS(30)).map(drop))
        };
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        sigkill(m.pid());
        assert!(matches!(waiter.join().unwrap(), Err(Error::ManagerGone)));
        assert!(t.elapsed() < SECS(2), "{:?}", t.elapsed());
        assert!(matches!(lock.release(), Err(Error::ManagerGone)));
        m.shutdown().unwrap();
    });
}
