//! Workers that die, panic, overrun, or speak garbage: the pool reports it on that task only,
//! replaces the worker, finishes everything else, and never hangs.

mod common;
use common::{SECS, within};

for_each_start_method!(
    sigkill_mid_map_fails_one_task_and_keeps_the_rest,
    a_worker_killed_from_outside_is_replaced,
    exit_and_abort_are_reported_with_their_cause,
    a_panic_fails_its_task_only_and_the_worker_survives,
    task_timeout_kills_the_overrunning_worker_and_respawns,
    a_garbage_frame_from_a_worker_fails_that_task_only,
    a_forged_frame_header_fails_that_task_and_the_worker_is_replaced,
    deaths_among_many_workers_are_noticed_wherever_they_sit,
    a_waiter_among_busy_workers_sees_its_own_worker_die,
);
use multiproc::{Death, Error, Pool, StartMethod};
use std::time::{Duration, Instant};

fn kill_self() {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    std::thread::sleep(SECS(60));
}

fn killed_at_13(x: u64) -> u64 {
    if x == 13 {
        kill_self();
    }
    x * 2
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

fn assert_killed_13(results: &[Result<u64, Error>]) {
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            match r {
                Err(Error::WorkerDied {
                    cause: Death::Signal { name, .. },
                    task,
                    pid,
                    rank: None,
                }) => {
                    assert_eq!(name, "SIGKILL");
                    assert_eq!(*task, 13);
                    assert_ne!(*pid, std::process::id());
                }
                other => panic!("item 13: expected WorkerDied(SIGKILL), got {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 * 2), "item {i}");
        }
    }
}

fn sigkill_mid_map_fails_one_task_and_keeps_the_rest(method: StartMethod) {
    within(SECS(60), move || {
        let pool = common::pool(2, method);
        // Every chunking: one item per chunk, small chunks, and one chunk holding everything.
        for chunksize in [1, 4, 50] {
            let results: Vec<_> = pool
                .imap_chunked(killed_at_13, 0..50u64, chunksize)
                .collect();
            assert_eq!(results.len(), 50);
            assert_killed_13(&results);
        }
        // map reports the failure instead of hanging (CPython's Pool hangs here forever).
        match pool.map(killed_at_13, 0..50u64) {
            Err(Error::WorkerDied { task, .. }) => assert_eq!(task, 13),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        // The pool still has its workers and works.
        assert_eq!(pool.map(killed_at_13, 0..10u64).unwrap()[9], 18);
    });
}

fn a_worker_killed_from_outside_is_replaced(method: StartMethod) {
    fn slow_pid(ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
    within(SECS(30), move || {
        let pool = common::pool(1, method);
        let victim = pool.apply(pid_of, 0).unwrap();
        let r = pool.apply_async(slow_pid, 20_000);
        std::thread::sleep(Duration::from_millis(200));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(victim as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        match r.get() {
            Err(Error::WorkerDied { pid, cause, .. }) => {
                assert_eq!(pid, victim);
                assert_eq!(cause.to_string(), "SIGKILL");
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        let next = pool.apply(pid_of, 0).unwrap();
        assert_ne!(next, victim);
    });
}

fn exit_and_abort_are_reported_with_their_cause(method: StartMethod) {
    fn exit_3(_: u64) -> u64 {
        std::process::exit(3)
    }
    fn abort(_: u64) -> u64 {
        std::process::abort()
    }
    within(SECS(30), move || {
        let pool = common::pool(2, method);
        match pool.apply(exit_3, 0) {
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause, Death::Exit(3)),
            other => panic!("{other:?}"),
        }
        match pool.apply(abort, 0) {
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause.to_string(), "SIGABRT"),
            other => panic!("{other:?}"),
        }
        assert_ne!(pool.apply(pid_of, 0).unwrap(), std::process::id());
    });
}

fn a_panic_fails_its_task_only_and_the_worker_survives(method: StartMethod) {
    fn fragile(x: u64) -> u64 {
        if x % 10 == 3 {
            panic!("bad input {x}");
        }
        x
    }
    within(SECS(30), move || {
        let pool = common::pool(1, method);
        let before = pool.apply(pid_of, 0).unwrap();
        let results: Vec<_> = pool.imap_chunked(fragile, 0..30u64, 7).collect();
        for (i, r) in results.iter().enumerate() {
            if i % 10 == 3 {
                match r {
                    Err(Error::TaskPanicked {
                        message, location, ..
                    }) => {
                        assert_eq!(message, &format!("bad input {i}"));
                        assert!(location.as_deref().unwrap().contains("pool_crash.rs"));
                    }
                    other => panic!("{other:?}"),
                }
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u64);
            }
        }
        // Same worker: a panic does not cost a process.
        assert_eq!(pool.apply(pid_of, 0).unwrap(), before);
        let err = pool.apply(fragile, 3).unwrap_err();
        assert!(err.to_string().contains("bad input 3"), "{err}");
    });
}

fn task_timeout_kills_the_overrunning_worker_and_respawns(method: StartMethod) {
    fn sleepy(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    within(SECS(30), move || {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let t = Instant::now();
        let results: Vec<_> = pool.imap(sleepy, vec![10, 60_000, 20, 30]).collect();
        assert!(t.elapsed() < SECS(5), "took {:?}", t.elapsed());
        match &results[1] {
            Err(Error::TaskTimeout { task, after, .. }) => {
                assert_eq!(*task, 1);
                assert_eq!(*after, Duration::from_millis(300));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*results[0].as_ref().unwrap(), 10);
        assert_eq!(*results[2].as_ref().unwrap(), 20);
        assert_eq!(*results[3].as_ref().unwrap(), 30);
        // Fast tasks are untouched by the limit, and the pool is whole again.
        assert_eq!(pool.map(sleepy, vec![1; 8]).unwrap().len(), 8);
    });
}

fn a_garbage_frame_from_a_worker_fails_that_task_only(method: StartMethod) {
    /// Writes an oversized frame header onto every socket this worker holds (its channel to
    /// the parent among them), then waits to be killed.
    fn scribble(_: u64) -> u64 {
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            if target.to_string_lossy().starts_with("socket:") {
                // SAFETY: `fd` is open (listed in /proc/self/fd) and only borrowed for the call.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let _ = rustix::io::write(fd, &[0xff; 16]);
            }
        }
        std::thread::sleep(SECS(60));
        0
    }
    within(SECS(30), move || {
        let pool = common::pool(1, method);
        match pool.apply(scribble, 0) {
            Err(Error::Protocol(m)) => assert!(m.contains("exceeds"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert_eq!(
            pool.map(killed_at_13, 0..5u64).unwrap(),
            vec![0, 2, 4, 6, 8]
        );
    });
}

/// Writes a well-formed frame header that announces 4,000 bytes onto every socket this worker
/// holds (its channel to the parent among them), and returns as if nothing happened: the
/// parent must not wait for the rest of that frame for ever.
fn forge_header(x: u64) -> u64 {
    if x == 3 {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&4000u32.to_le_bytes());
        header[4] = 18; // RESULTS, a kind the parent accepts from a worker
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            if target.to_string_lossy().starts_with("socket:") {
                // SAFETY: `fd` is open (listed in /proc/self/fd) and only borrowed for the call.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let _ = rustix::io::write(fd, &header);
            }
        }
    }
    x * 2
}

fn a_forged_frame_header_fails_that_task_and_the_worker_is_replaced(method: StartMethod) {
    within(SECS(60), move || {
        let pool = common::pool(1, method);
        let first = pool.apply(forge_header, 1).unwrap();
        let t = Instant::now();
        match pool.apply_async(forge_header, 3).get_timeout(SECS(20)) {
            Err(Error::Protocol(m)) => assert!(m.contains("part of a message"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(t.elapsed() < SECS(6), "took {:?}", t.elapsed());
        // A new worker serves; nothing else was harmed.
        assert_eq!(first, 2);
        assert_eq!(pool.apply(forge_header, 5).unwrap(), 10);
        // In a map, where answers of several items may be lost behind the garbage, only the
        // culprit fails; every other item completes, whatever the chunk size.
        for chunksize in [1, 4, 8] {
            let pool = common::pool(2, method);
            let t = Instant::now();
            let results: Vec<_> = pool
                .imap_chunked(forge_header, 0..8u64, chunksize)
                .collect();
            assert!(t.elapsed() < SECS(12), "took {:?}", t.elapsed());
            for (i, r) in results.iter().enumerate() {
                match (i, r) {
                    (3, Err(Error::Protocol(_))) => {}
                    (_, Ok(v)) => assert_eq!(*v, 2 * i as u64),
                    other => panic!("chunksize {chunksize}, item {i}: {other:?}"),
                }
            }
        }
    });
}

fn deaths_among_many_workers_are_noticed_wherever_they_sit(method: StartMethod) {
    // Burying a worker moves the last one into its place in the supervisor's list, and its
    // socket and pidfd are watched under that place from then on: the moved workers must still
    // be heard, and deaths noticed, however the places were shuffled.
    fn slow_pid(ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
    within(SECS(60), move || {
        let pool = common::pool(8, method);
        let mut killed = std::collections::HashSet::new();
        for round in 0..4 {
            let pids = pool.map_chunked(slow_pid, vec![30; 16], 1).unwrap();
            assert!(
                pids.iter().all(|p| !killed.contains(p)),
                "round {round}: a killed worker answered"
            );
            let mut serving: Vec<u32> = pids.clone();
            serving.sort_unstable();
            serving.dedup();
            // Idle workers, killed from outside: no task fails, each is buried and replaced.
            for &victim in serving.iter().skip(round).step_by(3) {
                assert!(common::sigkill(victim));
                killed.insert(victim);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let last = pool.map_chunked(slow_pid, vec![30; 16], 1).unwrap();
        assert!(last.iter().all(|p| !killed.contains(p)));
    });
}

fn a_waiter_among_busy_workers_sees_its_own_worker_die(method: StartMethod) {
    // The waiter checks all the busy workers' sockets with one poll and reads those that are
    // ready: a hang-up among them is read, and the death reported, like an answer.
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    within(SECS(30), move || {
        let pool = common::pool(4, method);
        for round in 0..5 {
            let naps = pool.map_async_chunked(nap, vec![300u64; 3], 1);
            std::thread::sleep(Duration::from_millis(50));
            match pool.apply(killed_at_13, 13) {
                Err(Error::WorkerDied { task, .. }) => assert_eq!(task, 0),
                other => panic!("round {round}: expected WorkerDied, got {other:?}"),
            }
            assert_eq!(pool.apply(killed_at_13, 2).unwrap(), 4);
            assert_eq!(naps.get().unwrap(), vec![300; 3]);
        }
    });
}
