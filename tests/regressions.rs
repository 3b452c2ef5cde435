//! Regression tests, one per bug found in review: each failed before its fix.

mod common;
use common::{SECS, within};
use multiproc::{Pool, Process};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn cube(x: i64) -> i64 {
    x * x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn abort_below_4(x: u64) -> u64 {
    if x < 4 {
        std::process::abort();
    }
    x
}

fn fail(x: u64) -> u64 {
    if x < u64::MAX {
        panic!("no");
    }
    x
}

fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn exitcode_before_join_keeps_the_value() {
    within(SECS(30), || {
        let mut p = Process::new(cube, 3);
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(p.exitcode(), Some(0));
        let r = p.join().cloned();
        assert_eq!(r.unwrap(), 27);
    });
}

#[test]
fn items_never_reached_are_not_failed_by_other_items_deaths() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let results: Vec<_> = pool.imap_chunked(abort_below_4, 0..10u64, 10).collect();
        for (i, r) in results.iter().enumerate() {
            eprintln!("{i}: {r:?}");
        }
        for (i, r) in results.iter().enumerate().skip(4) {
            assert_eq!(
                r.as_ref().ok(),
                Some(&(i as u64)),
                "item {i} never ran yet failed"
            );
        }
    });
}

#[test]
fn supervisor_does_not_spin_after_close() {
    within(SECS(60), || {
        let pool = Pool::builder()
            .processes(2)
            .max_tasks_per_child(1)
            .build()
            .unwrap();
        // warm up: both workers started
        let r = pool.map_async_chunked(sleep_ms, vec![1000u64, 3000], 1);
        std::thread::sleep(Duration::from_millis(300));
        pool.close();
        let c0 = cpu_time();
        let t0 = Instant::now();
        r.get().unwrap();
        pool.join().unwrap();
        let cpu = cpu_time() - c0;
        eprintln!("wall {:?} parent cpu {:?}", t0.elapsed(), cpu);
        assert!(
            cpu < Duration::from_millis(500),
            "supervisor burned {cpu:?} of CPU while waiting"
        );
    });
}

#[derive(Debug, serde::Serialize)]
struct Bomb(u32);
impl<'de> serde::Deserialize<'de> for Bomb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == 13 && !multiproc::current_process().is_worker() {
            panic!("bomb");
        }
        Ok(Bomb(v))
    }
}
fn bomb(x: u32) -> Bomb {
    Bomb(x)
}

#[test]
fn a_panicking_result_deserialize_fails_that_task_only() {
    let pool = Pool::new(2).unwrap();
    within(SECS(30), move || {
        let r = pool.apply_async(bomb, 13);
        let r2 = pool.apply_async(bomb, 1);
        match r.get_timeout(SECS(5)) {
            Err(multiproc::Error::Decode(m)) => assert!(m.contains("bomb"), "{m}"),
            other => panic!("expected a decode error, got {:?}", other.map(|_| ())),
        }
        assert!(r2.get_timeout(SECS(5)).is_ok());
        assert!(
            pool.apply_async(bomb, 2).get_timeout(SECS(5)).is_ok(),
            "the pool died"
        );
    });
}

#[test]
fn get_timeout_accepts_duration_max() {
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(cube, 2);
        assert_eq!(r.get_timeout(Duration::MAX).unwrap(), 8);
    });
}

#[test]
fn a_callback_attached_while_callbacks_run_still_runs() {
    within(SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let n = 600;
        let mut rs = Vec::new();
        for i in 0..n {
            let f = fired.clone();
            let r = pool.apply_async(fail, i as u64).on_success(|_| {});
            // give completion a chance to land between the two attaches
            for _ in 0..(i % 200) * 50 {
                std::hint::spin_loop();
            }
            let r = r.on_error(move |_| {
                f.fetch_add(1, Ordering::SeqCst);
            });
            rs.push(r);
            if rs.len() > 8 {
                rs.remove(0).wait();
            }
        }
        for r in rs {
            r.wait();
        }
        assert_eq!(fired.load(Ordering::SeqCst), n, "error callbacks lost");
    });
}

#[test]
fn a_concurrent_join_waits_too() {
    within(SECS(30), || {
        let pool = Arc::new(Pool::new(1).unwrap());
        let r = pool.apply_async(sleep_ms, 1500);
        pool.close();
        let p2 = pool.clone();
        let t = std::thread::spawn(move || p2.join().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        pool.join().unwrap();
        let waited = t0.elapsed();
        eprintln!("second join waited {waited:?}; ready={}", r.ready());
        t.join().unwrap();
        assert!(
            waited > Duration::from_millis(1000),
            "join returned while the pool was running"
        );
    });
}

#[derive(Debug, serde::Deserialize)]
struct BadSer(u32);
impl serde::Serialize for BadSer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            panic!("cannot serialize 13");
        }
        self.0.serialize(s)
    }
}
fn badser(x: u32) -> BadSer {
    BadSer(x)
}

#[test]
fn a_panicking_result_serialize_is_a_task_panic() {
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply(badser, 13);
        eprintln!("{r:?}");
        assert!(
            matches!(r, Err(multiproc::Error::TaskPanicked { .. })),
            "{r:?}"
        );
    });
}

static INITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
fn init_fails_in_worker_1(_: ()) {
    if multiproc::current_process().name() == "PoolWorker-1" {
        panic!("init failed in worker 1");
    }
    INITED.store(true, Ordering::SeqCst);
}
fn was_inited(_: u32) -> (String, bool) {
    std::thread::sleep(Duration::from_millis(5));
    (
        multiproc::current_process().name().to_string(),
        INITED.load(Ordering::SeqCst),
    )
}

#[test]
fn one_workers_failed_initializer_breaks_the_pool() {
    within(SECS(60), || {
        for _ in 0..5 {
            let pool = Pool::builder()
                .processes(8)
                .initializer(init_fails_in_worker_1, ())
                .build()
                .unwrap();
            // Tasks may complete on healthy workers before the failure is seen, but no task
            // ever runs in the worker whose initializer failed...
            match pool.map_chunked(was_inited, 0..40u32, 1) {
                Ok(v) => assert!(v.iter().all(|(_, ok)| *ok), "a task ran uninitialised"),
                Err(e) => assert!(matches!(e, multiproc::Error::InitializerFailed(_)), "{e:?}"),
            }
            // ...and once it is seen, the pool refuses work.
            let refused = (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                matches!(
                    pool.apply(was_inited, 0),
                    Err(multiproc::Error::InitializerFailed(_))
                )
            });
            assert!(refused, "the failed initializer was never reported");
        }
    });
}

fn identity(x: u64) -> u64 {
    x
}

fn abort_every_20th(x: u64) -> u64 {
    if x % 20 == 3 {
        std::process::abort();
    }
    x
}

/// Review: with fast chunks queued deep, every chunk queued behind an item that killed its
/// worker was charged a retry, and after a few deaths items that never ran failed with
/// `WorkerDied` (774–984 of 1900 before the fix).
#[test]
fn items_queued_behind_crashers_never_fail() {
    within(SECS(120), || {
        let pool = Pool::new(2).unwrap();
        pool.map_chunked(identity, 0..5000u64, 1).unwrap(); // fast chunks: deep queues
        let results: Vec<_> = pool.imap_chunked(abort_every_20th, 0..1000u64, 1).collect();
        for (i, r) in results.iter().enumerate() {
            if i % 20 == 3 {
                assert!(r.is_err(), "item {i} aborted its worker");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(i as u64)), "item {i}: {r:?}");
            }
        }
    });
}

/// A result whose decoding (in the parent) takes a while.
#[derive(Debug, serde::Serialize)]
struct SlowToDecode(u64);

impl<'de> serde::Deserialize<'de> for SlowToDecode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if !multiproc::current_process().is_worker() {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(SlowToDecode(v))
    }
}

fn slow_to_decode(x: u64) -> SlowToDecode {
    std::thread::sleep(Duration::from_millis(2));
    SlowToDecode(x)
}

/// Review: a waiting thread that read its result itself could still be decoding it when
/// `join()` returned, so the callback ran after `join()` (1–2 rounds in 40 before the fix).
#[test]
fn join_waits_for_a_result_a_waiter_is_handing_over() {
    within(SECS(120), || {
        for _ in 0..20 {
            let pool = Pool::new(1).unwrap();
            pool.apply(identity, 1).unwrap();
            let done = Arc::new(AtomicUsize::new(0));
            let seen = done.clone();
            let result = pool.apply_async(slow_to_decode, 5).on_success(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
            let waiter =
                std::thread::spawn(
                    move || {
                        while !result.wait_timeout(Duration::from_micros(20)) {}
                    },
                );
            pool.close();
            pool.join().unwrap();
            assert_eq!(
                done.load(Ordering::SeqCst),
                1,
                "the callback ran before join returned"
            );
            waiter.join().unwrap();
        }
    });
}

fn pid_after_even_sleep(x: u64) -> u32 {
    if x % 2 == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::id()
}

/// Review: after a call of fast chunks, the next call's chunks were queued 64 deep on the
/// strength of the old timing, so every slow item of an even/odd mix landed on one worker.
#[test]
fn slow_items_after_a_fast_call_are_shared_between_workers() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        pool.map_chunked(identity, 0..5000u64, 1).unwrap();
        let pids = pool
            .map_chunked(pid_after_even_sleep, 0..128u64, 1)
            .unwrap();
        let slow: Vec<u32> = pids.iter().step_by(2).copied().collect();
        let first = slow[0];
        let on_first = slow.iter().filter(|&&p| p == first).count();
        assert!(
            (16..=48).contains(&on_first),
            "{on_first} of 64 slow items on one worker"
        );
    });
}

/// Review: a thread waiting a few µs for its own result also decoded other calls' results
/// (user code, maybe slow) on its own thread: a `wait_timeout` of 40 µs took 100 ms.
#[test]
fn a_short_wait_does_not_decode_other_calls_results() {
    within(SECS(60), || {
        let pool = Arc::new(Pool::new(2).unwrap());
        pool.apply(identity, 1).unwrap();
        let long = pool.apply_async(sleep_ms, 300);
        let other = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.apply(slow_to_decode, 1).map(|r| r.0))
        };
        let mut worst = Duration::ZERO;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(150) {
            let t = Instant::now();
            let _ = long.wait_timeout(Duration::from_micros(40));
            worst = worst.max(t.elapsed());
        }
        assert_eq!(other.join().unwrap().unwrap(), 1);
        assert!(
            worst < Duration::from_millis(50),
            "a 40 µs wait took {worst:?}: it decoded another call's result"
        );
        assert_eq!(long.get().unwrap(), 300);
    });
}

/// Review: slow chunks were queued one behind another whenever enough work waited, even for
/// calls never timed: of five `apply`s, the first long and the others short, the third waited
/// behind the first on one worker while the other worker, done with the rest, sat idle.
#[test]
fn a_short_apply_never_waits_behind_a_long_one_while_a_worker_idles() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        pool.map(sleep_ms, [0, 0]).unwrap();
        let start = Instant::now();
        let long = pool.apply_async(sleep_ms, 3_000);
        let short: Vec<_> = (0..4).map(|_| pool.apply_async(sleep_ms, 100)).collect();
        for r in short {
            assert_eq!(r.get().unwrap(), 100);
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(2_000),
            "four 100 ms tasks beside a 3 s one took {took:?}: one waited behind the long one"
        );
        assert_eq!(long.get().unwrap(), 3_000);
    });
}

fn make_queue(x: u32) -> multiproc::Queue<u32> {
    let q = multiproc::Queue::new().unwrap();
    q.put(x).unwrap();
    q
}

fn make_lock(_: ()) -> multiproc::Lock {
    multiproc::Lock::new().unwrap()
}

/// Review: a task returning a `Queue` failed with `Encode(OtherString("a multiproc handle can
/// only be sent as …"))`, the codec's `Debug` in the message. Since issue 16 a task may return
/// handles: the `Queue` and the `Lock` come back whole, from a pool and from a `Process` (the
/// refusal that remains, for tasks run on another MPI rank, is worded in `tests/mpi.rs`).
#[test]
fn a_task_returning_a_handle_hands_it_over() {
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let q = pool.apply(make_queue, 7).unwrap();
        assert_eq!(q.get().unwrap(), 7);
        // Every item of a map alike, and the pool goes on serving.
        for (x, q) in pool.imap(make_queue, 0..3).enumerate() {
            assert_eq!(q.unwrap().get().unwrap(), x as u32);
        }
        assert_eq!(pool.apply(cube, 3).unwrap(), 27);

        // A Process's target is a task too.
        let mut p = Process::new(make_lock, ());
        p.start().unwrap();
        let lock = p.join().unwrap();
        drop(lock.acquire().unwrap());
    });
}

#[derive(Debug, serde::Deserialize)]
struct Refuses(u32);
impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(format!(
            "{} cannot be sent",
            self.0
        )))
    }
}
fn refuses(x: u32) -> Refuses {
    Refuses(x)
}

/// Review: a `Serialize` that returned an error reached the user as
/// `OtherString("…")`, bincode's `Debug`; its own message is what they should see.
#[test]
fn a_failed_result_serialize_shows_its_own_message() {
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        match pool.apply(refuses, 13) {
            Err(e @ multiproc::Error::Encode(_)) => {
                assert_eq!(e.to_string(), "could not encode a value: 13 cannot be sent")
            }
            other => panic!("expected Error::Encode, got {other:?}"),
        }
        assert_eq!(pool.apply(cube, 2).unwrap(), 8);
    });
}
