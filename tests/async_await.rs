//! Awaiting an `AsyncResult`: under tokio's multi-thread runtime and under a minimal executor of
//! our own (a thread that parks), with thousands of results awaited at once, a worker killed
//! while futures wait, and a future dropped before its result.

mod common;
use common::{SECS, block_on, within};
#[cfg(feature = "stream")]
use futures_core::Stream;
use multiproc::{Error, Pool};
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kills its own worker, as the OOM killer would.
fn die(_: u64) -> u64 {
    // SAFETY: plain kill(2) of this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

/// tokio's multi-thread runtime, two threads, with timers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Polls every future until all are ready: `join_all` without the `futures` crate.
fn join_all<F: Future + Unpin>(futures: Vec<F>) -> impl Future<Output = Vec<F::Output>> {
    let mut slots: Vec<(F, Option<F::Output>)> = futures.into_iter().map(|f| (f, None)).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in slots.iter_mut() {
            if out.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(slots.iter_mut().filter_map(|(_, o)| o.take()).collect())
        }
    })
}

#[test]
fn ten_thousand_results_awaited_at_once_under_tokio() {
    within(SECS(120), || {
        let pool = Arc::new(Pool::new(2).unwrap());
        let runtime = runtime();
        let sum: u64 = runtime.block_on(async {
            let tasks: Vec<_> = (0..10_000u64)
                .map(|i| {
                    let result = pool.apply_async(square, i);
                    tokio::spawn(result.into_future())
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap().unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..10_000u64).map(square).sum::<u64>());
    });
}

#[test]
fn results_awaited_under_a_minimal_executor() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let results = (0..500u64)
            .map(|i| pool.apply_async(square, i).into_future())
            .collect();
        let values: Vec<u64> = block_on(join_all(results))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(values, (0..500u64).map(square).collect::<Vec<_>>());
        // An awaited result is handed over once, like `get`.
        let r = pool.apply_async(square, 9);
        assert_eq!(r.get().unwrap(), 81);
        assert!(matches!(block_on(r.into_future()), Err(Error::ResultTaken)));
        // A map's result too.
        assert_eq!(
            block_on(pool.map_async(square, 0..4u64)).unwrap(),
            vec![0, 1, 4, 9]
        );
        // And a thread pool's.
        let threads = multiproc::dummy::Pool::new(2).unwrap();
        assert_eq!(
            block_on(threads.apply_async(|x: u64| x + 1, 41)).unwrap(),
            42
        );
    });
}

#[test]
fn a_worker_killed_while_futures_wait_fails_only_its_own() {
    within(SECS(60), || {
        let pool = Arc::new(Pool::new(2).unwrap());
        let runtime = runtime();
        runtime.block_on(async {
            let naps: Vec<_> = (0..8)
                .map(|_| tokio::spawn(pool.apply_async(nap, 100).into_future()))
                .collect();
            let dying = tokio::spawn(pool.apply_async(die, 0).into_future());
            match dying.await.unwrap() {
                Err(Error::WorkerDied { cause, task: 0, .. }) => {
                    assert_eq!(cause.to_string(), "SIGKILL")
                }
                other => panic!("{other:?}"),
            }
            for nap in naps {
                assert_eq!(nap.await.unwrap().unwrap(), 100);
            }
        });
    });
}

#[test]
fn a_dropped_future_leaves_its_task_running() {
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let result = pool.apply_async(nap, 200).on_success(move |v| {
            let _ = tx.send(*v);
        });
        // Polled once (pending), then dropped: the task is not cancelled, its callback fires.
        let waker = std::task::Waker::noop();
        let mut result = result.into_future();
        assert!(
            std::pin::Pin::new(&mut result)
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(result);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 200);
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
    });
}

/// Leaves a mark that it ran: a file at `path`.
fn mark(path: String) -> u64 {
    std::fs::write(&path, b"ran").unwrap();
    1
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("multiproc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cancel_takes_back_calls_that_have_not_started() {
    within(SECS(60), || {
        let dir = scratch_dir("cancel");
        let at = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let pool = Pool::new(1).unwrap();
        // The worker is up, and the last task was not quick: the pool sends nothing ahead.
        pool.apply(nap, 5).unwrap();
        let busy = pool.apply_async(nap, 400);
        // The one worker is busy: what follows waits in the pool's queue.
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        let one = pool.apply_async(mark, at("one")).on_error(move |e| {
            let _ = tx.send(e.to_string());
        });
        let many = pool.map_async(mark, (0..50).map(|i| at(&format!("many-{i}"))));
        let kept = pool.apply_async(mark, at("kept"));
        assert!(one.cancel());
        assert!(many.cancel());
        assert!(!one.cancel(), "cancelled once");
        assert!(one.cancelled() && many.cancelled() && !kept.cancelled());
        assert!(matches!(one.get(), Err(Error::Cancelled)));
        assert!(matches!(many.get(), Err(Error::Cancelled)));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Error::Cancelled.to_string(),
            "the error callback sees it"
        );
        // Running (handed to its worker): too late.
        assert!(!busy.cancel());
        assert!(!busy.cancelled());
        assert_eq!(busy.get().unwrap(), 400);
        assert_eq!(kept.get().unwrap(), 1);
        // Complete: too late too.
        assert!(!kept.cancel());
        pool.close();
        pool.join().unwrap();
        let ran: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(ran, ["kept"], "cancelled tasks never ran");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn cancel_races_the_dispatch_and_every_call_ends_one_way() {
    within(SECS(120), || {
        let dir = scratch_dir("cancel-race");
        let pool = Pool::new(2).unwrap();
        let results: Vec<_> = (0..400)
            .map(|i| {
                let path = dir.join(i.to_string()).to_string_lossy().into_owned();
                pool.apply_async(mark, path)
            })
            .collect();
        // Cancel every other one while the pool hands them out.
        let cancelled: Vec<bool> = results
            .iter()
            .enumerate()
            .map(|(i, r)| i % 2 == 1 && r.cancel())
            .collect();
        assert!(cancelled.iter().any(|c| *c), "some were still queued");
        for (i, (r, cancelled)) in results.iter().zip(&cancelled).enumerate() {
            match r.get() {
                Err(Error::Cancelled) => assert!(cancelled, "{i}: cancelled without cancel()"),
                Ok(1) => assert!(!cancelled, "{i}: ran though cancel() said it would not"),
                other => panic!("{i}: {other:?}"),
            }
        }
        pool.close();
        pool.join().unwrap();
        for (i, cancelled) in cancelled.iter().enumerate() {
            assert_eq!(
                dir.join(i.to_string()).exists(),
                !cancelled,
                "{i}: a task ran if and only if it was not cancelled"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_thread_pool_call_can_be_cancelled_too() {
    within(SECS(60), || {
        let pool = multiproc::dummy::Pool::new(1).unwrap();
        pool.apply(nap, 0).unwrap(); // the thread is up
        let busy = pool.apply_async(nap, 300);
        std::thread::sleep(Duration::from_millis(100));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let queued = {
            let ran = ran.clone();
            pool.apply_async(
                move |x: u64| {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    x
                },
                1,
            )
        };
        let many = pool.map_async(square, 0..100u64);
        assert!(queued.cancel() && many.cancel());
        assert!(!busy.cancel());
        assert!(matches!(queued.get(), Err(Error::Cancelled)));
        assert!(matches!(many.get(), Err(Error::Cancelled)));
        assert_eq!(busy.get().unwrap(), 300);
        pool.close();
        pool.join().unwrap();
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "it never ran"
        );
    });
}

/// The next item of a stream: `StreamExt::next` without the `futures` crate.
#[cfg(feature = "stream")]
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// Kills its worker on item 5 only.
#[cfg(feature = "stream")]
fn die_at_five(x: u64) -> u64 {
    if x == 5 {
        die(x);
    }
    x
}

#[cfg(feature = "stream")]
#[test]
fn imap_streams_under_tokio() {
    within(SECS(120), || {
        let pool = Pool::new(2).unwrap();
        let runtime = runtime();
        runtime.block_on(async {
            // In order, 10,000 items, while the runtime's other tasks go on.
            let ticks = tokio::spawn(async {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            let mut squares = pool.imap(square, 0..10_000u64);
            let mut expected = 0;
            while let Some(x) = next(&mut squares).await {
                assert_eq!(x.unwrap(), square(expected));
                expected += 1;
            }
            assert_eq!(expected, 10_000);
            ticks.await.unwrap();
            // In completion order: slow ones last.
            let mut naps = pool.imap_unordered(nap, [300, 1, 1, 1]);
            let mut order = Vec::new();
            while let Some(ms) = next(&mut naps).await {
                order.push(ms.unwrap());
            }
            assert_eq!(order, [1, 1, 1, 300]);
            // A worker killed mid-stream fails its own item only.
            let mut items = pool.imap_chunked(die_at_five, 0..20u64, 1);
            let mut got = Vec::new();
            while let Some(x) = next(&mut items).await {
                got.push(x);
            }
            assert_eq!(got.len(), 20);
            for (i, x) in got.into_iter().enumerate() {
                match (i, x) {
                    (5, Err(Error::WorkerDied { task: 5, .. })) => {}
                    (i, Ok(x)) if i != 5 => assert_eq!(x, i as u64),
                    (i, other) => panic!("{i}: {other:?}"),
                }
            }
        });
    });
}

#[cfg(feature = "stream")]
#[test]
fn imap_streams_under_a_minimal_executor_and_a_dropped_one_stops() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let total: u64 = block_on(async {
            let mut squares = pool.imap_unordered(square, 1..=1000u64);
            let mut total = 0;
            while let Some(x) = next(&mut squares).await {
                total += x.unwrap();
            }
            total
        });
        assert_eq!(total, (1..=1000u64).map(square).sum());
        // A thread pool's `imap` streams too.
        let threads = multiproc::dummy::Pool::new(2).unwrap();
        let doubled: Vec<u64> = block_on(async {
            let mut doubled = threads.imap(|x: u64| x * 2, 0..100u64);
            let mut out = Vec::new();
            while let Some(x) = next(&mut doubled).await {
                out.push(x.unwrap());
            }
            out
        });
        assert_eq!(doubled, (0..100u64).map(|x| x * 2).collect::<Vec<_>>());
        // Dropped after one item of an endless input: the pool serves on.
        let first = block_on(async {
            let mut endless = pool.imap(nap, std::iter::repeat(1));
            next(&mut endless).await
        });
        assert_eq!(first.unwrap().unwrap(), 1);
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
        pool.close();
        pool.join().unwrap();
    });
}

#[cfg(feature = "stream")]
#[test]
fn a_blocking_next_after_a_pending_poll_is_woken() {
    within(SECS(60), || {
        let pool = Pool::new(1).unwrap();
        let threads = multiproc::dummy::Pool::new(1).unwrap();
        // Polled once as a stream (pending: its waker is kept), then read as an iterator: the
        // result wakes the thread, not the stale waker (a timed-out `tokio::time::timeout`
        // around `next()` leaves just this).
        let mut naps = pool.imap(nap, [300, 1]);
        let mut thread_naps = threads.imap(nap, [300, 1]);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for pending in [
            std::pin::Pin::new(&mut naps)
                .poll_next(&mut cx)
                .is_pending(),
            std::pin::Pin::new(&mut thread_naps)
                .poll_next(&mut cx)
                .is_pending(),
        ] {
            assert!(pending);
        }
        let started = std::time::Instant::now();
        assert_eq!(naps.next_timeout(SECS(10)).unwrap().unwrap(), 300);
        assert_eq!(thread_naps.next_timeout(SECS(10)).unwrap().unwrap(), 300);
        assert!(
            started.elapsed() < SECS(3),
            "woken late: {:?}",
            started.elapsed()
        );
        assert_eq!(naps.next().unwrap().unwrap(), 1);
    });
}
