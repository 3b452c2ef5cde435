//! `Pool::stats()`: what a pool says it has done, checked against what was done to it — tasks
//! that succeed, panic, time out and are cancelled, workers SIGKILLed, exiting, recycled and
//! joined.

mod common;
use common::{SECS, eventually, within};
use multiproc::{Error, Pool};
use std::time::Duration;

/// Every task submitted has ended one way, once the pool is joined or terminated.
fn adds_up(stats: &multiproc::PoolStats) {
    assert_eq!(
        stats.tasks_submitted,
        stats.tasks_completed + stats.tasks_failed + stats.tasks_cancelled,
        "{stats}"
    );
    assert_eq!(stats.tasks_in_flight, 0, "{stats}");
}

fn square(x: u64) -> u64 {
    x * x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn panics(_: u64) -> u64 {
    panic!("no")
}

fn killed(_: u64) -> u64 {
    // SAFETY: plain kill(2) of this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

fn exits(_: u64) -> u64 {
    std::process::exit(3)
}

#[test]
fn tasks_are_counted_by_how_they_ended() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        pool.map(square, 0..1000u64).unwrap();
        assert!(pool.apply(panics, 0).is_err());
        let stats = pool.stats();
        assert_eq!(stats.tasks_submitted, 1001);
        assert_eq!(stats.tasks_completed, 1000);
        assert_eq!(stats.tasks_failed, 1);
        assert_eq!(stats.tasks_in_flight, 0);
        assert_eq!(stats.workers_alive, 2);
        assert_eq!(stats.workers_started, 2);
        assert_eq!(stats.workers_died.total(), 0);
        assert_eq!(stats.workers.iter().map(|w| w.tasks).sum::<u64>(), 1001);
        for w in &stats.workers {
            assert!((0.0..=1.0).contains(&w.busy), "{w:?}");
            assert!(w.name.starts_with("PoolWorker-"), "{w:?}");
        }
        // Work in flight is seen as such, and a worker that holds it as busy.
        let slow = pool.map_async(nap, [400u64, 400]);
        assert!(eventually(SECS(10), || pool
            .stats()
            .workers
            .iter()
            .all(|w| w.busy > 0.0)));
        assert_eq!(pool.stats().tasks_in_flight, 2);
        slow.get().unwrap();
        assert_eq!(pool.stats().tasks_in_flight, 0);
        println!("{}", pool.stats());
    });
}

#[test]
fn workers_are_counted_by_how_they_ended() {
    within(SECS(60), || {
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        assert!(matches!(
            pool.apply(killed, 0),
            Err(Error::WorkerDied { .. })
        ));
        assert!(matches!(
            pool.apply(exits, 0),
            Err(Error::WorkerDied { .. })
        ));
        assert!(matches!(
            pool.apply(nap, 5_000),
            Err(Error::TaskTimeout { .. })
        ));
        // Replacements come up.
        assert!(eventually(SECS(20), || pool.stats().workers_alive == 2));
        let stats = pool.stats();
        assert_eq!(stats.workers_died.signalled, 1, "{stats}");
        assert_eq!(stats.workers_died.exited, 1, "{stats}");
        assert_eq!(stats.workers_died.timed_out, 1, "{stats}");
        assert_eq!(stats.workers_started, 5, "{stats}");
        assert_eq!((stats.tasks_failed, stats.tasks_timed_out), (3, 1));
        pool.close();
        pool.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.workers_alive, 0);
        assert_eq!(stats.workers_retired, 2, "{stats}");
        assert!(stats.workers.is_empty());
    });
}

#[test]
fn recycled_workers_are_retired_and_cancelled_tasks_counted() {
    within(SECS(60), || {
        let pool = Pool::builder()
            .processes(1)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        for x in 0..6u64 {
            assert_eq!(pool.apply(square, x).unwrap(), x * x);
        }
        assert!(eventually(SECS(10), || pool.stats().workers_retired >= 2));
        // A slow task (not quick: nothing is sent ahead of it), then a call queued behind it.
        pool.apply(nap, 5).unwrap();
        let busy = pool.apply_async(nap, 300);
        std::thread::sleep(Duration::from_millis(100));
        let queued = pool.map_async(square, 0..10u64);
        assert!(queued.cancel());
        busy.get().unwrap();
        pool.close();
        pool.join().unwrap();
        let stats = pool.stats();
        assert_eq!(stats.tasks_cancelled, 10, "{stats}");
        adds_up(&stats);
        assert_eq!(stats.tasks_in_flight, 0);
        assert_eq!(stats.workers_died.total(), 0, "{stats}");
        assert_eq!(stats.workers_retired, stats.workers_started, "{stats}");
    });
}

#[test]
fn an_imap_dropped_part_way_counts_what_it_never_ran() {
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let first: Vec<u64> = pool
            .imap_chunked(nap, vec![20u64; 50], 1)
            .take(2)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, [20, 20]);
        pool.close();
        pool.join().unwrap();
        let stats = pool.stats();
        assert!(stats.tasks_cancelled > 0, "{stats}");
        adds_up(&stats);
    });
}

/// An argument whose `Serialize` fails for 7.
#[derive(serde::Deserialize)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            return Err(serde::ser::Error::custom("not 7"));
        }
        s.serialize_u64(self.0)
    }
}

fn unpick(p: Picky) -> u64 {
    p.0
}

fn setup() {
    std::thread::sleep(Duration::from_millis(400));
}

/// Review: an item that did not encode was failed but never submitted; a cancelled call's
/// tasks that `terminate` got to first were failed, not cancelled; an initializer counted as
/// work.
#[test]
fn what_never_reached_a_worker_is_counted_as_such() {
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        assert!(pool.map(unpick, (0..10).map(Picky)).is_err());
        let stats = pool.stats();
        assert_eq!(
            (
                stats.tasks_submitted,
                stats.tasks_completed,
                stats.tasks_failed
            ),
            (10, 9, 1),
            "{stats}"
        );
        pool.apply(nap, 5).unwrap();
        let busy = pool.apply_async(nap, 400);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(pool.stats().tasks_in_flight, 1);
        let queued = pool.map_async(nap, [1u64, 2, 3]);
        assert!(queued.cancel());
        pool.terminate();
        assert!(busy.get().is_err());
        let stats = pool.stats();
        assert_eq!(stats.tasks_cancelled, 3, "{stats}");
        adds_up(&stats);

        let slow_start = Pool::builder()
            .processes(1)
            .initializer(setup, ())
            .build()
            .unwrap();
        assert!(eventually(SECS(10), || slow_start.stats().workers_alive == 1));
        std::thread::sleep(Duration::from_millis(600));
        let w = &slow_start.stats().workers[0];
        assert_eq!(w.busy, 0.0, "an initializer is not work: {w:?}");
        slow_start.apply(nap, 200).unwrap();
        let w = &slow_start.stats().workers[0];
        assert!(w.busy > 0.0 && w.busy < 0.5, "{w:?}");
    });
}
