//! Worker lifecycle: recycling, initializers, terminate, drop, and callbacks.

mod common;
use common::{
    SECS, children_of, eventually, exists, rss, sigkill, spawn_plain_sleeper, state, within,
};
use multiproc::{Error, Pool, StartMethod};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

for_each_start_method!(
    max_tasks_per_child_recycles_workers,
    the_initializer_runs_once_in_every_worker,
    a_failing_initializer_fails_tasks_instead_of_looping,
    terminate_while_tasks_run_fails_them_promptly,
    dropping_a_busy_pool_is_quick_and_leaves_no_process,
    close_then_join_lets_workers_exit_cleanly,
    pool_workers_die_when_their_parent_is_sigkilled,
    a_process_a_task_starts_is_killed_when_its_worker_exits,
);

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

fn nap(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn max_tasks_per_child_recycles_workers(method: StartMethod) {
    within(SECS(60), move || {
        let pool = Pool::builder()
            .start_method(method)
            .processes(1)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let pids: Vec<u32> = (0..6).map(|i| pool.apply(pid_of, i).unwrap()).collect();
        // Each worker serves exactly two tasks, then a new one takes over.
        assert_eq!(pids[0], pids[1]);
        assert_eq!(pids[2], pids[3]);
        assert_eq!(pids[4], pids[5]);
        let distinct: HashSet<_> = pids.iter().collect();
        assert_eq!(distinct.len(), 3, "{pids:?}");
        // Chunks count as tasks, as in Python: a map still completes.
        assert_eq!(pool.map_chunked(pid_of, 0..20u64, 2).unwrap().len(), 20);
    });
}

static GREETING: OnceLock<(String, u32)> = OnceLock::new();

fn setup(greeting: String) {
    GREETING.set((greeting, std::process::id())).unwrap();
}

fn greeted(_: u64) -> Option<(String, u32, u32)> {
    GREETING
        .get()
        .map(|(g, init_pid)| (g.clone(), *init_pid, std::process::id()))
}

fn the_initializer_runs_once_in_every_worker(method: StartMethod) {
    within(SECS(60), move || {
        let pool = Pool::builder()
            .start_method(method)
            .processes(2)
            .max_tasks_per_child(1)
            .initializer(setup, "hello".to_string())
            .build()
            .unwrap();
        let results = pool.map_chunked(greeted, 0..8u64, 1).unwrap();
        let mut workers = HashSet::new();
        for r in results {
            let (greeting, init_pid, pid) = r.expect("initializer did not run in this worker");
            assert_eq!(greeting, "hello");
            assert_eq!(init_pid, pid);
            workers.insert(pid);
        }
        // With one task per child, eight tasks needed eight workers, each initialised.
        assert_eq!(workers.len(), 8);
    });
}

fn bad_setup(_: ()) {
    panic!("cannot set up");
}

fn a_failing_initializer_fails_tasks_instead_of_looping(method: StartMethod) {
    within(SECS(30), move || {
        let pool = Pool::builder()
            .start_method(method)
            .processes(2)
            .initializer(bad_setup, ())
            .build()
            .unwrap();
        match pool.apply(pid_of, 0) {
            Err(Error::InitializerFailed(inner)) => {
                assert!(inner.to_string().contains("cannot set up"), "{inner}")
            }
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
        assert!(matches!(
            pool.map(pid_of, 0..4u64),
            Err(Error::InitializerFailed(_))
        ));
    });
}

fn terminate_while_tasks_run_fails_them_promptly(method: StartMethod) {
    within(SECS(30), move || {
        let pool = common::pool(2, method);
        let running: Vec<_> = (0..6).map(|_| pool.apply_async(nap, 30_000)).collect();
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        pool.terminate();
        assert!(t.elapsed() < SECS(3), "terminate took {:?}", t.elapsed());
        for r in running {
            assert!(matches!(r.get(), Err(Error::PoolTerminated)));
        }
        assert!(matches!(pool.apply(pid_of, 0), Err(Error::PoolTerminated)));
        pool.join().unwrap();
    });
}

fn dropping_a_busy_pool_is_quick_and_leaves_no_process(method: StartMethod) {
    within(SECS(30), move || {
        let pool = common::pool(2, method);
        // Learn the worker pids: two tasks that overlap land on different workers.
        let a = pool.apply_async(nap, 300);
        let b = pool.apply_async(nap, 300);
        let workers: HashSet<u32> = [a.get().unwrap(), b.get().unwrap()].into();
        assert_eq!(workers.len(), 2);
        let _busy: Vec<_> = (0..4).map(|_| pool.apply_async(nap, 30_000)).collect();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        drop(pool);
        assert!(t.elapsed() < SECS(2), "drop took {:?}", t.elapsed());
        let me = std::process::id();
        for pid in workers {
            // Reaped, not a zombie, and no longer our child.
            assert!(!exists(pid), "worker {pid} still exists ({:?})", state(pid));
            assert!(!children_of(me).contains(&pid));
        }
    });
}

fn close_then_join_lets_workers_exit_cleanly(method: StartMethod) {
    within(SECS(30), move || {
        let pool = common::pool(2, method);
        let a = pool.apply_async(nap, 100);
        let b = pool.apply_async(nap, 100);
        let workers = [a.get().unwrap(), b.get().unwrap()];
        pool.close();
        pool.join().unwrap();
        for pid in workers {
            assert!(
                eventually(SECS(2), || !exists(pid)),
                "worker {pid} left behind"
            );
        }
    });
}

fn fragile(x: u64) -> u64 {
    if x == 7 {
        panic!("seven");
    }
    x * 10
}

#[test]
fn callbacks_run_once_each_off_the_callers_thread_in_completion_order() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let caller = std::thread::current().id();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let results: Vec<_> = (0..20u64)
            .map(|i| {
                let seen = seen.clone();
                let errors = errors.clone();
                pool.apply_async(fragile, i)
                    .on_success(move |v: &u64| {
                        seen.lock().unwrap().push((*v, std::thread::current().id()))
                    })
                    .on_error(move |e: &Error| {
                        errors
                            .lock()
                            .unwrap()
                            .push((e.to_string(), std::thread::current().id()))
                    })
            })
            .collect();
        // get() returns only after the result's callback has run.
        for (i, r) in results.into_iter().enumerate() {
            let v = r.get();
            if i == 7 {
                assert!(v.is_err());
            } else {
                assert_eq!(v.unwrap(), i as u64 * 10);
                assert!(
                    seen.lock()
                        .unwrap()
                        .iter()
                        .any(|(x, _)| *x == i as u64 * 10)
                );
            }
        }
        pool.close();
        pool.join().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 19);
        let values: HashSet<u64> = seen.iter().map(|(v, _)| *v).collect();
        assert_eq!(values.len(), 19, "a callback ran twice");
        assert!(seen.iter().all(|(_, t)| *t != caller));
        let errors = errors.lock().unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].0.contains("seven"));
        assert_ne!(errors[0].1, caller);
    });
}

#[test]
fn map_async_callback_gets_the_whole_list() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let total = Arc::new(Mutex::new(None));
        let t2 = total.clone();
        let r = pool
            .map_async(pid_of, 0..10u64)
            .on_success(move |list: &Vec<u32>| *t2.lock().unwrap() = Some(list.len()));
        assert_eq!(r.get().unwrap().len(), 10);
        assert_eq!(*total.lock().unwrap(), Some(10));
    });
}

#[test]
fn imap_memory_stays_bounded_on_an_endless_input() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let pulled = Arc::new(AtomicU64::new(0));
        let p2 = pulled.clone();
        let input = (0u64..).inspect(move |_| {
            p2.fetch_add(1, Ordering::Relaxed);
        });
        let mut it = pool.imap(pid_of, input);
        let mut consumed = 0u64;
        for target in [10u64, 3_000, 12_000, 700_000, 1_500_000] {
            while consumed < target {
                it.next().unwrap().unwrap();
                consumed += 1;
            }
            // Only a bounded window is read ahead of the consumer, however far it goes: with
            // two workers, at most four chunks each of at most 32 Ki items (`readahead.rs`).
            let ahead = pulled.load(Ordering::Relaxed) - consumed;
            assert!(
                ahead <= 1 << 19,
                "read {ahead} items ahead after {consumed}"
            );
        }
    });
}

#[test]
fn imap_of_large_items_reads_ahead_a_bounded_number_of_bytes() {
    fn len_of(v: Vec<u8>) -> usize {
        v.len()
    }
    within(SECS(120), || {
        let pool = Pool::new(2).unwrap();
        for chunksize in [None, Some(4)] {
            let pulled = Arc::new(AtomicU64::new(0));
            let p2 = pulled.clone();
            let input = std::iter::repeat_with(move || {
                p2.fetch_add(1, Ordering::Relaxed);
                vec![7u8; 1 << 20]
            });
            let mut results = match chunksize {
                None => pool.imap(len_of, input),
                Some(n) => pool.imap_chunked(len_of, input, n),
            };
            for consumed in 1..=150u64 {
                assert_eq!(results.next().unwrap().unwrap(), 1 << 20);
                // About 64 MiB in flight (`readahead.rs`), and never the 4096 items an explicit
                // chunk size of small items keeps in flight.
                let ahead = pulled.load(Ordering::Relaxed) - consumed;
                assert!(ahead <= 72, "{chunksize:?}: {ahead} MiB read ahead");
            }
        }
    });
}

/// Runs an endless `imap` in a process of its own (no other test's memory counts there) and
/// consumes `n` results; returns its resident memory after the first tenth and at the end.
fn endless_imap_rss(n: u64) -> (u64, u64) {
    fn double(x: u64) -> u64 {
        x * 2
    }
    let pool = Pool::new(2).unwrap();
    let mut results = pool.imap(double, 0u64..);
    let mut early = 0;
    for i in 0..n {
        assert_eq!(results.next().unwrap().unwrap(), i * 2);
        if i == n / 10 {
            early = rss(std::process::id());
        }
    }
    (early, rss(std::process::id()))
}

#[test]
fn imap_resident_memory_stays_flat_on_an_endless_input() {
    within(SECS(120), || {
        let n = 6_000_000;
        let mut p = multiproc::Process::new(endless_imap_rss, n);
        p.start().unwrap();
        let (early, late) = p.join().cloned().unwrap();
        assert!(early > 0, "no VmRSS");
        // Reading the whole input (or a window that grows with it) would hold ~100 MiB of
        // arguments and results by the end; a window holds a few MiB, whatever `n` is.
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        assert!(
            late <= early + (16 << 20),
            "resident memory grew from {:.1} MiB to {:.1} MiB over {n} items",
            mib(early),
            mib(late)
        );
    });
}

/// Builds a pool, writes its workers' pids to a file named after this process, then waits.
fn pool_owner(method: StartMethod) -> u32 {
    let pool = common::pool(2, method);
    let a = pool.apply_async(nap, 300);
    let b = pool.apply_async(nap, 300);
    let pids = format!("{} {}", a.get().unwrap(), b.get().unwrap());
    let file = std::env::temp_dir().join(format!("multiproc-pool-owner-{}", std::process::id()));
    // Written aside, then renamed: the reader never sees half a file.
    std::fs::write(file.with_extension("tmp"), pids).unwrap();
    std::fs::rename(file.with_extension("tmp"), file).unwrap();
    std::thread::sleep(SECS(60));
    0
}

fn pool_workers_die_when_their_parent_is_sigkilled(method: StartMethod) {
    within(SECS(30), move || {
        let mut owner = multiproc::Process::new(pool_owner, method);
        owner.start().unwrap();
        let file =
            std::env::temp_dir().join(format!("multiproc-pool-owner-{}", owner.pid().unwrap()));
        assert!(eventually(SECS(10), || file.exists()));
        let workers: Vec<u32> = std::fs::read_to_string(&file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let _ = std::fs::remove_file(&file);
        assert_eq!(workers.len(), 2);
        owner.kill().unwrap();
        assert!(owner.join().is_err());
        for pid in workers {
            assert!(
                eventually(SECS(5), || !exists(pid) || state(pid) == Some('Z')),
                "worker {pid} outlived its SIGKILLed parent: {:?}",
                state(pid)
            );
        }
    });
}

fn start_plain_sleeper(_: ()) -> u32 {
    spawn_plain_sleeper()
}

/// As documented (README, "What differs from Python"): a process a task starts by other means
/// than `multiproc` (`Command::spawn`, a plain `fork()`) is the task's own, and outlives the
/// pool, as in Python.
#[test]
fn a_plain_grandchild_outlives_a_dropped_pool() {
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        let grandchild = pool.apply(start_plain_sleeper, ()).unwrap();
        drop(pool);
        std::thread::sleep(Duration::from_millis(200));
        let alive = exists(grandchild) && state(grandchild) != Some('Z');
        sigkill(grandchild);
        assert!(alive, "the grandchild died with the pool after all");
    });
}

fn sleep_secs(secs: u64) {
    std::thread::sleep(SECS(secs));
}

/// Starts a non-daemon `Process` that sleeps for a minute, and returns without joining it.
fn start_sleeping_process(method: StartMethod) -> u32 {
    let mut p = multiproc::Process::new(sleep_secs, 60).with_start_method(method);
    p.start().unwrap();
    p.pid().unwrap()
}

/// Regression (review): a pool worker waited at exit for the non-daemon `Process`es its tasks
/// had started, so `join()` stalled for the supervisor's grace period (5 s) and then killed the
/// worker anyway. Python forbids daemonic processes (its pool workers) to have children; here a
/// `Process` a task starts is a daemon for the exit rule: killed when its worker exits.
fn a_process_a_task_starts_is_killed_when_its_worker_exits(method: StartMethod) {
    within(SECS(30), move || {
        let pool = common::pool(1, method);
        let grandchild = pool.apply(start_sleeping_process, method).unwrap();
        assert!(exists(grandchild));
        pool.close();
        let t = Instant::now();
        pool.join().unwrap();
        let took = t.elapsed();
        assert!(took < Duration::from_millis(2500), "join took {took:?}");
        assert!(
            eventually(SECS(5), || !exists(grandchild)
                || state(grandchild) == Some('Z')),
            "the task's process {grandchild} outlived its worker: {:?}",
            state(grandchild)
        );
    });
}

#[test]
fn join_timeout_is_bounded_by_workers_and_callbacks_and_loses_nothing() {
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        assert!(matches!(
            pool.join_timeout(Duration::from_millis(1)),
            Err(Error::PoolStillRunning)
        ));
        let slow = pool.apply_async(nap, 400);
        pool.close();
        let t = Instant::now();
        assert!(matches!(
            pool.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        let took = t.elapsed();
        // Well before the task's 400 ms on an idle machine; a loaded one may take longer.
        assert!(
            took >= Duration::from_millis(50) && took < SECS(5),
            "{took:?}"
        );
        pool.join_timeout(Duration::from_secs(10)).unwrap();
        assert!(slow.get().is_ok(), "the task finished during the join");

        // A callback that blocks keeps `join` waiting, but not `join_timeout`.
        let pool = Pool::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let _ = pool.apply_async(nap, 1).on_success(move |_| {
            let _ = rx.lock().unwrap().recv();
        });
        pool.close();
        assert!(matches!(
            pool.join_timeout(Duration::from_millis(200)),
            Err(Error::Timeout)
        ));
        drop(tx);
        pool.join_timeout(Duration::from_secs(10)).unwrap();
    });
}
