//! Awaiting an `AsyncResult`: under tokio's multi-thread runtime and under a minimal executor of
//! our own (a thread that parks), with thousands of results awaited at once, a worker killed
//! while futures wait, and a future dropped before its result.

mod common;
use common::{SECS, within};
use multiproc::{Error, Pool};
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
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

/// The smallest executor: runs `f` on this thread, parking while it is pending.
fn block_on<F: IntoFuture>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f.into_future());
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
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
