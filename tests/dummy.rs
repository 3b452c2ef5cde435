//! `multiproc::dummy`: the thread pool and thread `Process`, method by method, and the same
//! program run against the process pool and the thread pool.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{SECS, within};
use multiproc::Error;
use multiproc::dummy::{Pool, Process};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn hello() -> String {
    "hello".to_string()
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fragile(x: u64) -> u64 {
    if x % 10 == 3 {
        panic!("unlucky {x}");
    }
    x
}

fn thread_id() -> std::thread::ThreadId {
    std::thread::current().id()
}

// ----- the same source against both pools -----

/// One program, compiled against the pool type it is given: the API parity is checked by the
/// compiler, not claimed. Only `fn` items and data that both pools take.
macro_rules! same_program {
    ($Pool:ty) => {{
        assert!(matches!(<$Pool>::new(0), Err(Error::InvalidArgument(_))));
        let pool = <$Pool>::new(2).unwrap();
        assert_eq!(pool.processes(), 2);
        assert_eq!(pool.apply(hello, ()).unwrap(), "hello");
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
        assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
        let r = pool.apply_async(add, (20, 22));
        assert!(r.wait_timeout(SECS(30)));
        assert_eq!((r.ready(), r.successful()), (true, Some(true)));
        assert_eq!(r.get().unwrap(), 42);
        let (tx, rx) = mpsc::channel();
        let r = pool
            .apply_async(square, 5)
            .on_success(move |v| tx.send(*v).unwrap());
        assert_eq!(r.get_timeout(SECS(30)).unwrap(), 25);
        assert_eq!(rx.recv_timeout(SECS(30)).unwrap(), 25);
        let (tx, rx) = mpsc::channel();
        let r = pool
            .apply_async(fragile, 3)
            .on_error(move |e| tx.send(e.to_string()).unwrap());
        assert!(matches!(r.get(), Err(Error::TaskPanicked { .. })));
        assert!(rx.recv_timeout(SECS(30)).unwrap().contains("unlucky 3"));

        let squares: Vec<u64> = (0..100).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..100u64).unwrap(), squares);
        assert_eq!(pool.map_chunked(square, 0..100u64, 7).unwrap(), squares);
        assert_eq!(pool.map_async(square, 0..100u64).get().unwrap(), squares);
        assert_eq!(
            pool.map_async_chunked(square, 0..100u64, 3).get().unwrap(),
            squares
        );
        let pairs = vec![(1, 2), (3, 4), (5, 6)];
        assert_eq!(pool.starmap(add, pairs.clone()).unwrap(), vec![3, 7, 11]);
        assert_eq!(
            pool.starmap_chunked(add, pairs.clone(), 2).unwrap(),
            vec![3, 7, 11]
        );
        assert_eq!(
            pool.starmap_async(add, pairs.clone()).get().unwrap(),
            vec![3, 7, 11]
        );
        assert_eq!(
            pool.starmap_async_chunked(add, pairs, 1).get().unwrap(),
            vec![3, 7, 11]
        );
        match pool.map(fragile, 0..20u64) {
            Err(Error::TaskPanicked { message, .. }) => assert_eq!(message, "unlucky 3"),
            other => panic!("{other:?}"),
        }

        let each: Vec<Result<u64, Error>> = pool.imap(fragile, 0..20u64).collect();
        assert_eq!(each.len(), 20);
        assert!(matches!(each[13], Err(Error::TaskPanicked { .. })));
        assert_eq!(*each[14].as_ref().unwrap(), 14);
        let firsts: Vec<u64> = pool
            .imap_chunked(square, 0u64.., 4)
            .take(10)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(firsts, squares[..10]);
        let mut any: Vec<u64> = pool
            .imap_unordered(square, 0..50u64)
            .collect::<Result<_, _>>()
            .unwrap();
        any.sort_unstable();
        assert_eq!(any, squares[..50]);
        let mut any: Vec<u64> = pool
            .imap_unordered_chunked(square, 0..50u64, 8)
            .collect::<Result<_, _>>()
            .unwrap();
        any.sort_unstable();
        assert_eq!(any, squares[..50]);
        let mut it = pool.imap(nap, [1u64]);
        assert_eq!(it.next_timeout(SECS(30)).unwrap().unwrap(), 1);

        assert!(matches!(pool.join(), Err(Error::PoolStillRunning)));
        pool.close();
        assert!(matches!(pool.apply(square, 1), Err(Error::PoolClosed)));
        pool.join_timeout(SECS(30)).unwrap();
        pool.join().unwrap();

        let pool = <$Pool>::builder()
            .processes(2)
            .max_tasks_per_child(3)
            .task_timeout(SECS(30))
            .build()
            .unwrap();
        assert_eq!(pool.map(square, 0..10u64).unwrap(), squares[..10]);
        pool.terminate();
        assert!(matches!(pool.apply(square, 1), Err(Error::PoolTerminated)));
        pool.join().unwrap();
    }};
}

#[test]
fn the_same_program_runs_on_processes_and_on_threads() {
    within(SECS(120), || {
        same_program!(multiproc::Pool);
        same_program!(multiproc::dummy::Pool);
    });
}

/// The same for `Process`.
macro_rules! same_process_program {
    ($Process:ident) => {{
        let mut p = $Process::new(add, (2, 3))
            .with_name("adder")
            .with_daemon(false);
        assert_eq!(
            (p.name(), p.is_daemon(), p.pid(), p.exitcode()),
            ("adder", false, None, None)
        );
        assert!(matches!(p.join(), Err(Error::NotStarted)));
        p.start().unwrap();
        assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
        assert_eq!(*p.join().unwrap(), 5);
        assert_eq!(*p.join_timeout(SECS(1)).unwrap(), 5);
        assert!(p.pid().is_some());
        assert_eq!((p.is_alive(), p.exitcode()), (false, Some(0)));
        assert_eq!(p.into_value().unwrap(), 5);

        let mut p = $Process::new(fragile, 3);
        p.start().unwrap();
        assert!(matches!(p.join(), Err(Error::TaskPanicked { .. })));
        assert_eq!(p.exitcode(), Some(1));

        let mut p = $Process::new(nap, 300);
        p.start().unwrap();
        assert!(matches!(
            p.join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ));
        assert!(p.is_alive());
        assert_eq!(*p.join().unwrap(), 300);
    }};
}

#[test]
fn the_same_process_program_runs_in_a_process_and_on_a_thread() {
    use multiproc::Process as ProcessOfItsOwn;
    within(SECS(60), || {
        same_process_program!(ProcessOfItsOwn);
        same_process_program!(Process);
    });
}

#[test]
fn handles_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Pool>();
    shareable::<multiproc::AsyncResult<Vec<u64>>>();
}

// ----- what threads allow on top -----

/// No serde derives: never leaves this process.
#[derive(Debug, PartialEq)]
struct Point {
    x: i64,
    y: i64,
}

#[test]
fn capturing_closures_and_values_that_are_not_serde_types() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let offset = 10u64;
        assert_eq!(
            pool.map(move |x| x + offset, 0..4u64).unwrap(),
            vec![10, 11, 12, 13]
        );
        let scale = 3;
        let points = pool
            .map(
                move |i: i64| Point {
                    x: i * scale,
                    y: -i,
                },
                0..3,
            )
            .unwrap();
        assert_eq!(points[2], Point { x: 6, y: -2 });
        let norms = pool.map(|p: Point| p.x * p.x + p.y * p.y, points).unwrap();
        assert_eq!(norms, vec![0, 10, 40]);

        let log = Arc::new(Mutex::new(Vec::new()));
        let mine = log.clone();
        pool.apply(
            move |s: &'static str, n: usize| mine.lock().unwrap().push(s.repeat(n)),
            ("ab", 2),
        )
        .unwrap();
        assert_eq!(*log.lock().unwrap(), ["abab"]);
        let counter = Arc::new(AtomicUsize::new(0));
        let seen = pool
            .starmap(
                |c: Arc<AtomicUsize>, by: usize| c.fetch_add(by, Ordering::SeqCst),
                (0..10).map(|_| (counter.clone(), 2)),
            )
            .unwrap();
        assert_eq!(seen.len(), 10);
        assert_eq!(counter.load(Ordering::SeqCst), 20);

        let base = String::from("item ");
        let labels: Vec<String> = pool
            .imap(move |i: u32| format!("{base}{i}"), 0..3)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(labels, ["item 0", "item 1", "item 2"]);
    });
}

#[test]
fn values_that_need_dropping_are_dropped_once_whatever_happens() {
    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    within(SECS(30), || {
        let drops = Arc::new(AtomicUsize::new(0));
        let pool = Pool::new(2).unwrap();
        let d = drops.clone();
        let make = move |i: u64| (i, Tracked(d.clone()));
        // Inputs and results in a map where one item panics: every value dropped once.
        let inputs: Vec<_> = (0..100).map(&make).collect();
        let r = pool.map_chunked(
            |(i, t): (u64, Tracked)| {
                if i == 50 {
                    panic!("fifty");
                }
                t
            },
            inputs,
            7,
        );
        assert!(matches!(r, Err(Error::TaskPanicked { .. })));
        assert_eq!(drops.load(Ordering::SeqCst), 100);
        // The same where each value takes its item's place (one layout for both).
        drops.store(0, Ordering::SeqCst);
        let seen = Arc::new(AtomicUsize::new(0));
        let r = pool.map_chunked(
            move |t: Tracked| {
                if seen.fetch_add(1, Ordering::SeqCst) == 50 {
                    panic!("fifty");
                }
                t
            },
            (0..100).map(|_| Tracked(drops.clone())).collect::<Vec<_>>(),
            7,
        );
        assert!(matches!(r, Err(Error::TaskPanicked { .. })));
        assert_eq!(drops.load(Ordering::SeqCst), 100);
        // A successful map hands over the values.
        drops.store(0, Ordering::SeqCst);
        let out = pool
            .map(|(_, t): (u64, Tracked)| t, (0..10).map(&make))
            .unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(out);
        assert_eq!(drops.load(Ordering::SeqCst), 10);
        // Queued work failed by terminate drops its inputs.
        drops.store(0, Ordering::SeqCst);
        let pool = Pool::new(1).unwrap();
        let busy = pool.apply_async(nap, 300);
        let queued = pool.map_async(|(_, t): (u64, Tracked)| t, (0..10).map(&make));
        std::thread::sleep(Duration::from_millis(50));
        pool.terminate();
        assert!(matches!(queued.get(), Err(Error::PoolTerminated)));
        assert!(matches!(busy.get(), Err(Error::PoolTerminated)));
        assert_eq!(drops.load(Ordering::SeqCst), 10);
        // The value of a task that overran is dropped when its thread is done with it.
        drops.store(0, Ordering::SeqCst);
        let pool = Pool::builder()
            .processes(1)
            .task_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let d = drops.clone();
        let late = pool.apply(
            move || {
                std::thread::sleep(Duration::from_millis(400));
                Tracked(d.clone())
            },
            (),
        );
        assert!(matches!(late, Err(Error::TaskTimeout { .. })));
        assert_eq!(drops.load(Ordering::SeqCst), 0, "still running");
        assert!(common::eventually(SECS(5), || drops.load(Ordering::SeqCst) == 1));
    });
}

#[test]
fn empty_inputs_give_empty_results() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        assert!(pool.map(square, Vec::new()).unwrap().is_empty());
        assert!(pool.starmap(add, Vec::new()).unwrap().is_empty());
        assert_eq!(pool.imap(square, Vec::new()).count(), 0);
        assert_eq!(
            pool.imap_unordered_chunked(square, Vec::new(), 4).count(),
            0
        );
    });
}

// ----- failures -----

#[test]
fn a_panic_fails_its_own_item_only_with_its_message_and_location() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        for chunksize in [1, 3, 100] {
            let each: Vec<_> = pool.imap_chunked(fragile, 0..30u64, chunksize).collect();
            for (i, r) in each.iter().enumerate() {
                match r {
                    Err(Error::TaskPanicked {
                        message, location, ..
                    }) => {
                        assert_eq!(i % 10, 3, "{chunksize}");
                        assert_eq!(*message, format!("unlucky {i}"));
                        assert!(
                            location.as_deref().unwrap().contains("dummy.rs"),
                            "{location:?}"
                        );
                    }
                    Ok(v) => assert_eq!(*v, i as u64),
                    other => panic!("{other:?}"),
                }
            }
            match pool.map_chunked(fragile, 0..30u64, chunksize) {
                Err(Error::TaskPanicked { message, .. }) => assert_eq!(message, "unlucky 3"),
                other => panic!("{other:?}"),
            }
        }
        // The threads served on.
        assert_eq!(pool.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
    });
}

#[test]
fn a_task_over_its_timeout_fails_and_the_pool_keeps_its_size() {
    within(SECS(60), || {
        let limit = Duration::from_millis(200);
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(limit)
            .build()
            .unwrap();
        let t = Instant::now();
        match pool.apply(nap, 3_000) {
            Err(Error::TaskTimeout {
                task,
                after,
                pid,
                rank: None,
            }) => {
                assert_eq!((task, after, pid), (0, limit, std::process::id()))
            }
            other => panic!("expected TaskTimeout, got {other:?}"),
        }
        assert!(t.elapsed() < SECS(2), "took {:?}", t.elapsed());
        // The stuck thread still sleeps; two others serve, side by side.
        let (tx, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let meet = |rx: Arc<Mutex<mpsc::Receiver<()>>>, tx: mpsc::Sender<()>| {
            move |_: u64| {
                // Each of two tasks waits for the other: only two threads at once can pass.
                tx.send(()).unwrap();
                rx.lock().unwrap().recv_timeout(SECS(5)).is_ok()
            }
        };
        let both = pool.map_chunked(meet(rx, tx), 0..2u64, 1).unwrap();
        assert_eq!(both, [true, true]);

        // In a map, the overrunning item fails the call, and the rest of its piece is run by
        // the replacement: every other item ran.
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let r = pool.map_chunked(
            move |i: u64| {
                counted.fetch_add(1, Ordering::SeqCst);
                if i == 5 {
                    std::thread::sleep(SECS(2));
                }
                i
            },
            0..20u64,
            10,
        );
        match r {
            Err(Error::TaskTimeout { task, .. }) => assert_eq!(task, 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(ran.load(Ordering::SeqCst), 20);
        // And per item in an imap.
        let each: Vec<_> = pool
            .imap_chunked(|ms: u64| nap(ms), [1, 1, 1_500, 1, 1], 5)
            .collect();
        assert!(matches!(each[2], Err(Error::TaskTimeout { task: 2, .. })));
        assert_eq!(each.iter().filter(|r| r.is_ok()).count(), 4);
        pool.close();
        pool.join().unwrap();
    });
}

fn set_up_thread(word: String, times: usize) {
    INIT.with(|i| *i.borrow_mut() = Some(word.repeat(times)));
    INITS.fetch_add(1, Ordering::SeqCst);
}

thread_local! {
    static INIT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}
static INITS: AtomicUsize = AtomicUsize::new(0);

fn greeting_and_thread(_: u64) -> (Option<String>, std::thread::ThreadId) {
    std::thread::sleep(Duration::from_millis(20));
    (INIT.with(|i| i.borrow().clone()), thread_id())
}

#[test]
fn the_initializer_runs_once_in_every_thread_and_a_failing_one_fails_tasks() {
    within(SECS(30), || {
        let pool = Pool::builder()
            .processes(3)
            .initializer(set_up_thread, ("hi".to_string(), 2))
            .build()
            .unwrap();
        let seen = pool.map_chunked(greeting_and_thread, 0..30u64, 1).unwrap();
        assert!(seen.iter().all(|(g, _)| g.as_deref() == Some("hihi")));
        let threads: HashSet<_> = seen.iter().map(|(_, t)| *t).collect();
        assert!(threads.len() <= 3);
        assert!(
            !threads.contains(&thread_id()),
            "ran on the caller's thread"
        );
        pool.close();
        pool.join().unwrap();
        assert_eq!(INITS.load(Ordering::SeqCst), 3);

        let pool = Pool::builder()
            .processes(2)
            .initializer(|| panic!("cannot set up"), ())
            .build()
            .unwrap();
        match pool.apply(square, 2) {
            Err(Error::InitializerFailed(inner)) => {
                assert!(inner.to_string().contains("cannot set up"), "{inner}")
            }
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
        assert!(matches!(
            pool.map(square, 0..4u64),
            Err(Error::InitializerFailed(_))
        ));
    });
}

#[test]
fn max_tasks_per_child_recycles_threads() {
    within(SECS(30), || {
        let pool = Pool::builder()
            .processes(1)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let threads: Vec<_> = (0..6).map(|_| pool.apply(thread_id, ()).unwrap()).collect();
        assert_eq!(threads[0], threads[1]);
        assert_ne!(threads[1], threads[2]);
        assert_eq!(threads[2], threads[3]);
        assert_eq!(threads.iter().collect::<HashSet<_>>().len(), 3);
        pool.close();
        pool.join().unwrap();
    });
}

// ----- lifetime -----

#[test]
fn terminate_fails_queued_and_running_tasks_at_once() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let running: Vec<_> = (0..6).map(|_| pool.apply_async(nap, 1_500)).collect();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        pool.terminate();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        for r in running {
            assert!(matches!(r.get(), Err(Error::PoolTerminated)));
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(matches!(pool.apply(square, 0), Err(Error::PoolTerminated)));
        pool.join().unwrap();

        // Dropping is terminating.
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(nap, 1_500);
        std::thread::sleep(Duration::from_millis(50));
        drop(pool);
        assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    });
}

#[test]
fn close_then_join_completes_the_work_handed_in() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (0..6).map(|i| pool.apply_async(nap, 50 + i)).collect();
        pool.close();
        assert!(matches!(pool.map(square, 0..2u64), Err(Error::PoolClosed)));
        pool.join().unwrap();
        for (i, r) in rs.into_iter().enumerate() {
            assert!(r.ready());
            assert_eq!(r.get().unwrap(), 50 + i as u64);
        }
    });
}

#[test]
fn join_from_one_of_the_pools_own_tasks_is_refused_not_a_hang() {
    within(SECS(30), || {
        let pool = Arc::new(Pool::new(2).unwrap());
        pool.close();
        let mine = pool.clone();
        let r = Pool::new(1)
            .unwrap()
            .apply(move || mine.join(), ())
            .unwrap();
        assert!(r.is_ok(), "another pool's thread may join it: {r:?}");
        let pool = Arc::new(Pool::new(2).unwrap());
        let mine = pool.clone();
        let inner = pool.apply_async(
            move || {
                mine.close();
                mine.join()
            },
            (),
        );
        assert!(matches!(
            inner.get().unwrap(),
            Err(Error::InvalidArgument(_))
        ));
        pool.join().unwrap();
    });
}

#[test]
fn an_imap_made_before_close_goes_on_until_join() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let mut it = pool.imap_chunked(square, 0..100u64, 5);
        assert_eq!(it.next().unwrap().unwrap(), 0);
        pool.close();
        let rest: Vec<u64> = it.by_ref().take(50).collect::<Result<_, _>>().unwrap();
        assert_eq!(rest.len(), 50);
        pool.join().unwrap();
        // Joined: what it had not handed in fails with PoolClosed, and it ends.
        let tail: Vec<_> = it.collect();
        let closed = tail
            .iter()
            .filter(|r| matches!(r, Err(Error::PoolClosed)))
            .count();
        assert!(
            tail.iter()
                .all(|r| r.is_ok() || matches!(r, Err(Error::PoolClosed)))
        );
        assert!(closed <= 5 && tail.len() < 49, "{closed} of {}", tail.len());
    });
}

// ----- imap -----

/// As the process pool's: an `imap` may be handed to another thread to be drained there.
#[test]
fn an_imap_can_be_drained_on_another_thread() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        std::thread::scope(|s| {
            let it = pool.imap(|x: u64| x * 2, 0..10u64);
            let sum = s.spawn(move || it.map(Result::unwrap).sum::<u64>());
            assert_eq!(sum.join().unwrap(), 90);
        });
    });
}

#[test]
fn imap_is_lazy_on_an_endless_input() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut it = pool.imap(square, endless);
        for i in 0..10_000u64 {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        let ahead = pulled.load(Ordering::SeqCst) - 10_000;
        assert!(ahead <= 4096 * 2 * 4, "{ahead} items read ahead");
        drop(it);

        // Slow items are spread one at a time over the threads.
        let t = Instant::now();
        let got: Vec<u64> = pool
            .imap(nap, [200u64; 4])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [200; 4]);
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn imap_unordered_yields_in_completion_order() {
    within(SECS(30), || {
        let pool = Pool::new(3).unwrap();
        let got: Vec<u64> = pool
            .imap_unordered(nap, [600u64, 300, 10])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [10, 300, 600]);
        let got: Vec<u64> = pool
            .imap(nap, [600u64, 300, 10])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [600, 300, 10]);
    });
}

#[test]
fn imap_matches_a_serial_map_for_any_length_and_chunk_size() {
    use rand::Rng;
    within(SECS(60), || {
        let mut rng = rand::rng();
        let pool = Pool::new(3).unwrap();
        for _ in 0..200 {
            let n = rng.random_range(0..300u64);
            let chunks = rng.random_range(0..8usize); // 0: automatic
            let slow = rng.random_range(1..50u64);
            let f = move |x: u64| {
                if x % slow == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                x * 3 + 1
            };
            let expected: Vec<u64> = (0..n).map(f).collect();
            let (ordered, mut unordered): (Vec<u64>, Vec<u64>) = if chunks == 0 {
                (
                    pool.imap(f, 0..n).map(Result::unwrap).collect(),
                    pool.imap_unordered(f, 0..n).map(Result::unwrap).collect(),
                )
            } else {
                (
                    pool.imap_chunked(f, 0..n, chunks)
                        .map(Result::unwrap)
                        .collect(),
                    pool.imap_unordered_chunked(f, 0..n, chunks)
                        .map(Result::unwrap)
                        .collect(),
                )
            };
            assert_eq!(ordered, expected, "n {n}, chunks {chunks}");
            unordered.sort_unstable();
            assert_eq!(unordered, expected, "n {n}, chunks {chunks}");
            assert_eq!(pool.map_chunked(f, 0..n, chunks.max(1)).unwrap(), expected);
        }
    });
}

// ----- callbacks -----

#[test]
fn callbacks_run_once_each_off_the_callers_thread_in_completion_order() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let caller = thread_id();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rs: Vec<_> = [300u64, 10, 150]
            .into_iter()
            .map(|ms| {
                let seen = seen.clone();
                pool.apply_async(nap, ms)
                    .on_success(move |v| seen.lock().unwrap().push((*v, thread_id())))
            })
            .collect();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let errs = errors.clone();
        let failed = pool
            .apply_async(fragile, 3)
            .on_error(move |e| errs.lock().unwrap().push(e.to_string()));
        for r in &rs {
            r.wait();
        }
        failed.wait();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            [10, 150, 300]
        );
        assert!(seen.iter().all(|(_, t)| *t != caller));
        assert_eq!(errors.lock().unwrap().len(), 1);
        let total = Arc::new(Mutex::new(None));
        let t = total.clone();
        let all = pool
            .map_async(square, 0..10u64)
            .on_success(move |v| *t.lock().unwrap() = Some(v.len()));
        assert_eq!(all.get().unwrap().len(), 10);
        assert_eq!(*total.lock().unwrap(), Some(10));
    });
}

// ----- Process -----

#[test]
fn a_thread_process_returns_its_value_reports_its_panic_and_is_named() {
    within(SECS(30), || {
        let shared = Arc::new(Mutex::new(Vec::new()));
        let mine = shared.clone();
        let mut p = Process::new(
            move || {
                mine.lock().unwrap().push(1);
                std::thread::current().name().map(str::to_string)
            },
            (),
        )
        .with_name("worker-1");
        p.start().unwrap();
        assert_eq!(p.join().unwrap().as_deref(), Some("worker-1"));
        assert_eq!(*shared.lock().unwrap(), [1]);
        assert_eq!(p.pid(), Some(std::process::id()));
        assert!(matches!(p.terminate(), Err(Error::Unsupported(_))));
        assert!(matches!(p.kill(), Err(Error::Unsupported(_))));

        let mut p = Process::new(|| -> u32 { panic!("boom") }, ());
        assert!(p.name().starts_with("Thread-"));
        p.start().unwrap();
        match p.join() {
            Err(Error::TaskPanicked { message, .. }) => assert_eq!(message, "boom"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));
        assert!(matches!(p.into_value(), Err(Error::TaskPanicked { .. })));
    });
}

// ----- races -----

/// Counts the values made and dropped.
#[derive(Default)]
struct Census {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

struct Counted(Arc<Census>);

impl Counted {
    fn new(census: &Arc<Census>) -> Self {
        census.made.fetch_add(1, Ordering::SeqCst);
        Counted(census.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A value whose `Drop` panics, dropped by the pool in its bookkeeping (the other values of a
/// map one item of which failed): the map still answers, and the pool still joins (review: both
/// waited for ever, silently).
#[test]
fn a_value_whose_drop_panics_costs_no_answer() {
    struct Loud(u64);
    impl Drop for Loud {
        fn drop(&mut self) {
            if self.0 == 1 {
                panic!("loud drop");
            }
        }
    }
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let r = pool.map_async_chunked(
            |x: u64| {
                if x == 3 {
                    panic!("three");
                }
                Loud(x)
            },
            0..5u64,
            5,
        );
        match r.get_timeout(SECS(10)) {
            Err(Error::TaskPanicked { message, .. }) => assert_eq!(message, "three"),
            other => panic!(
                "expected the task's panic, got {:?}",
                other.map(|v| v.len())
            ),
        }
        assert_eq!(pool.apply(|x: u64| x + 1, 1).unwrap(), 2);
        pool.close();
        pool.join_timeout(SECS(10)).unwrap();
    });
}

#[test]
fn terminating_at_any_moment_drops_every_value_once_and_answers_every_call() {
    use rand::Rng;
    within(SECS(120), || {
        let census = Arc::new(Census::default());
        let mut rng = rand::rng();
        for round in 0..60 {
            let mut builder = Pool::builder().processes(2);
            if round % 2 == 1 {
                builder = builder.task_timeout(Duration::from_millis(rng.random_range(1..20)));
            }
            let pool = builder.build().unwrap();
            let work = |(i, v): (u64, Counted)| {
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(i % 5));
                }
                if i % 11 == 5 {
                    panic!("item {i}");
                }
                v
            };
            let inputs = |n: u64| {
                (0..n)
                    .map(|i| (i, Counted::new(&census)))
                    .collect::<Vec<_>>()
            };
            let all = pool.map_async_chunked(work, inputs(60), rng.random_range(1..9));
            let one = pool.apply_async(work, (7, Counted::new(&census)));
            let mut each = pool.imap_chunked(work, inputs(40), rng.random_range(1..6));
            let first = each.next();
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
            match round % 3 {
                0 => pool.terminate(),
                1 => {
                    pool.close();
                    pool.join().unwrap();
                }
                _ => {}
            }
            let _ = (first, each.count());
            // An item panicked, or the pool was terminated: never a result left waiting.
            let all = all.get_timeout(SECS(30));
            assert!(matches!(all, Err(ref e) if !matches!(e, Error::Timeout)));
            assert!(!matches!(one.get_timeout(SECS(30)), Err(Error::Timeout)));
            drop(pool);
        }
        // Threads left to run on drop their values once their functions return.
        let settled = common::eventually(SECS(10), || {
            census.dropped.load(Ordering::SeqCst) == census.made.load(Ordering::SeqCst)
        });
        assert!(
            settled,
            "made {}, dropped {}",
            census.made.load(Ordering::SeqCst),
            census.dropped.load(Ordering::SeqCst)
        );
    });
}
