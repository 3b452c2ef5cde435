//! The everyday pool API: apply, map, starmap, imap, async results, chunking, close and join.

mod common;
use common::{SECS, within};
use multiproc::{Error, Pool};
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}

fn multiply(a: i64, b: i64) -> i64 {
    a * b
}

fn describe(name: String, tag: String) -> (String, String, Vec<i32>) {
    (name.to_uppercase(), tag, vec![1, 2, 3])
}

fn whoami() -> (u32, String, bool) {
    let me = multiproc::current_process();
    (me.pid(), me.name().to_string(), me.is_worker())
}

#[test]
fn apply_runs_in_another_process() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(square, 12).unwrap(), 144);
        let (pid, name, worker) = pool.apply(whoami, ()).unwrap();
        assert_ne!(pid, std::process::id());
        assert!(name.starts_with("PoolWorker-"), "{name}");
        assert!(worker);
    });
}

fn concat(a: String, b: String) -> String {
    a + &b
}

fn unit_arg(_: ()) -> u8 {
    7
}

fn pair_sum(p: (u32, u32)) -> u32 {
    p.0 + p.1
}

fn many(a: u8, b: u16, c: u32, d: u64, e: String) -> String {
    format!("{a}{b}{c}{d}{e}")
}

static TAG: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn set_tag(prefix: String, n: u32) {
    *TAG.lock().unwrap() = format!("{prefix}-{n}");
}

fn tag() -> String {
    TAG.lock().unwrap().clone()
}

#[test]
fn a_pool_of_no_workers_is_refused_and_none_means_one_per_cpu() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        Pool::builder().processes(0).build(),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(Pool::new(None).unwrap().processes(), multiproc::cpu_count());
}

#[test]
fn tasks_of_any_arity_take_their_arguments_as_python_args_does() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        // No argument, one, one tuple as it is, a 1-tuple of one (Python's `args=(x,)`),
        // several.
        assert!(pool.apply(whoami, ()).unwrap().2);
        assert_eq!(pool.apply(unit_arg, ()).unwrap(), 7);
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
        assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
        assert_eq!(pool.apply(pair_sum, (2, 3)).unwrap(), 5);
        let (s1, s2) = ("ab".to_string(), "cd".to_string());
        assert_eq!(pool.apply_async(concat, (s1, s2)).get().unwrap(), "abcd");
        assert_eq!(
            pool.apply(many, (1, 2, 3, 4, "five".to_string())).unwrap(),
            "1234five"
        );
        // Closures that capture nothing, of any arity.
        assert_eq!(pool.apply(|| 11u8, ()).unwrap(), 11);
        assert_eq!(pool.apply(|a: u8, b: u8| a * b, (3, 4)).unwrap(), 12);
        assert_eq!(
            pool.starmap(concat, vec![("x".into(), "y".into())])
                .unwrap(),
            vec!["xy".to_string()]
        );
        // An initializer of two arguments, as Python's `initargs=(a, b)`.
        let pool = Pool::builder()
            .processes(1)
            .initializer(set_tag, ("w".to_string(), 3))
            .build()
            .unwrap();
        assert_eq!(pool.apply(tag, ()).unwrap(), "w-3");
    });
}

#[test]
fn map_keeps_order_with_any_chunksize() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let expect: Vec<u64> = (0..1000u64).map(square).collect();
        assert_eq!(pool.map(square, 0..1000u64).unwrap(), expect);
        for chunksize in [1, 3, 7, 1000, 5000] {
            assert_eq!(
                pool.map_chunked(square, 0..1000u64, chunksize).unwrap(),
                expect
            );
        }
        assert_eq!(
            pool.map(square, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        // Inputs of unknown length (read whole first), and one whose length hint lies.
        let odd = (0..1000u64).filter(|x| x % 2 == 1);
        let expect: Vec<u64> = odd.clone().map(square).collect();
        assert_eq!(pool.map(square, odd).unwrap(), expect);
        // Inputs that say they have fewer or more items than they do still get every result,
        // in order.
        for (claim, holds) in [(10, 1000u64), (1000, 10), (0, 5), (7, 7)] {
            let want: Vec<u64> = (0..holds).map(square).collect();
            assert_eq!(pool.map(square, Liar(0..holds, claim)).unwrap(), want);
            let chunked = pool.map_chunked(square, Liar(0..holds, claim), 3).unwrap();
            assert_eq!(chunked, want);
        }
    });
}

/// An iterator that claims an exact length (the second field), whatever it holds.
struct Liar(std::ops::Range<u64>, usize);

impl Iterator for Liar {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

#[test]
fn starmap_and_strings() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let pairs: Vec<(i64, i64)> = (0..20).map(|i| (i, i + 1)).collect();
        let want: Vec<i64> = pairs.iter().map(|&(a, b)| a * b).collect();
        assert_eq!(pool.starmap(multiply, pairs.clone()).unwrap(), want);
        assert_eq!(pool.starmap_async(multiply, pairs).get().unwrap(), want);
        let out = pool
            .starmap(describe, vec![("ada".to_string(), "x".to_string())])
            .unwrap();
        assert_eq!(out[0], ("ADA".to_string(), "x".to_string(), vec![1, 2, 3]));
    });
}

#[test]
fn async_results_report_readiness() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let r = pool.map_async(square, 0..100u64);
        r.wait();
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get_timeout(SECS(5)).unwrap()[10], 100);
        // The value is handed out once.
        assert!(matches!(r.get_timeout(SECS(1)), Err(Error::ResultTaken)));
    });
}

#[test]
fn imap_yields_in_order_and_unordered_yields_everything() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<u64> = pool.imap(square, 0..500u64).map(Result::unwrap).collect();
        assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
        let mut got: Vec<u64> = pool
            .imap_unordered_chunked(square, 0..500u64, 16)
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
    });
}

#[test]
fn endless_imap_with_take_works() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<u64> = pool
            .imap(square, 0u64..)
            .take(2000)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 2000);
        assert_eq!(got[1999], 1999 * 1999);
        let got: Vec<u64> = pool
            .imap_unordered_chunked(square, 0u64.., 8)
            .take(100)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 100);
    });
}

#[test]
fn closed_pool_refuses_work_and_join_waits() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        assert!(matches!(pool.join(), Err(Error::PoolStillRunning)));
        let pending = pool.map_async(square, 0..100u64);
        pool.close();
        assert!(matches!(pool.apply(square, 1), Err(Error::PoolClosed)));
        assert!(matches!(pool.map(square, 0..3u64), Err(Error::PoolClosed)));
        pool.join().unwrap();
        // Work queued before close() still completed.
        assert_eq!(pending.get().unwrap().len(), 100);
        // And after join the pool still answers, with an error rather than a hang.
        assert!(matches!(pool.apply(square, 2), Err(Error::PoolClosed)));
    });
}

#[test]
fn an_imap_made_before_close_goes_on_after_it() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        let ordered = pool.imap(square, 0..20_000u64);
        let unordered = pool.imap_unordered_chunked(square, 0u64.., 7);
        pool.close();
        // As in Python, close() refuses new calls only.
        assert!(matches!(
            pool.imap(square, 0..3u64).next(),
            Some(Err(Error::PoolClosed))
        ));
        let got: Vec<u64> = ordered.map(Result::unwrap).collect();
        assert_eq!(got, (0..20_000u64).map(square).collect::<Vec<_>>());
        let got: Vec<u64> = unordered.take(5_000).map(Result::unwrap).collect();
        assert_eq!(got.len(), 5_000);
        pool.join().unwrap();
    });
}

#[test]
fn join_returns_while_its_own_thread_holds_an_unconsumed_imap() {
    within(SECS(30), || {
        for order in ["in order", "unordered"] {
            let pool = Pool::new(2).unwrap();
            let mut results: Box<dyn Iterator<Item = multiproc::Result<u64>>> = match order {
                "in order" => Box::new(pool.imap(square, 0u64..)),
                _ => Box::new(pool.imap_unordered(square, 0u64..)),
            };
            assert!(results.next().unwrap().is_ok());
            pool.close();
            // Waits for what was handed in, not for the endless rest, which nobody pulls.
            pool.join().unwrap();
            pool.close();
            // What was handed in before join() completed; everything after fails.
            let rest: Vec<_> = results.take(10_000).collect();
            let done = rest.iter().take_while(|r| r.is_ok()).count();
            assert!(done < 10_000, "{order}: the pool took work after join()");
            for r in &rest[done..] {
                assert!(matches!(r, Err(Error::PoolClosed)), "{order}: {r:?}");
            }
            if order == "in order" {
                for (i, r) in rest[..done].iter().enumerate() {
                    assert_eq!(*r.as_ref().unwrap(), square(i as u64 + 1));
                }
            }
        }
    });
}

#[test]
fn get_timeout_times_out_without_losing_the_value() {
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(nap, 300);
        assert!(matches!(
            r.get_timeout(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert!(!r.wait_timeout(Duration::from_millis(1)));
        assert_eq!(r.successful(), None);
        assert_eq!(r.get().unwrap(), 300);
    });
}

#[test]
fn get_and_get_timeout_hand_the_value_over_once_whichever_comes_first() {
    fn fails(_: u64) -> u64 {
        panic!("boom")
    }
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        // `get` first, then either form finds it taken.
        let r = pool.apply_async(square, 6);
        assert_eq!(r.get().unwrap(), 36);
        assert!(matches!(r.get(), Err(Error::ResultTaken)));
        assert!(matches!(r.get_timeout(SECS(1)), Err(Error::ResultTaken)));
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));

        // `get_timeout` first, then `get` finds it taken.
        let r = pool.apply_async(square, 7);
        assert_eq!(r.get_timeout(SECS(20)).unwrap(), 49);
        assert!(matches!(r.get(), Err(Error::ResultTaken)));

        // An error is handed over once too; `successful` still tells what it was.
        let r = pool.apply_async(fails, 0);
        assert!(matches!(r.get(), Err(Error::TaskPanicked { .. })));
        assert!(matches!(r.get(), Err(Error::ResultTaken)));
        assert_eq!(r.successful(), Some(false));

        // Several threads waiting on one result: exactly one of them gets it.
        let r = pool.apply_async(square, 8);
        let got: Vec<Result<u64, Error>> = std::thread::scope(|s| {
            let waiters: Vec<_> = (0..4).map(|_| s.spawn(|| r.get())).collect();
            waiters.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let values: Vec<u64> = got
            .iter()
            .filter_map(|g| g.as_ref().ok().copied())
            .collect();
        assert_eq!(values, [64], "{got:?}");
        assert!(
            got.iter()
                .all(|g| matches!(g, Ok(64) | Err(Error::ResultTaken))),
            "{got:?}"
        );
    });
}

/// Sleeps `ms`, then returns its item's index.
fn nap_then_index((index, ms): (usize, u64)) -> usize {
    std::thread::sleep(Duration::from_millis(ms));
    index
}

/// Drains `results` with `next_timeout(20 ms)`; the items in the order they came, and how many
/// calls timed out.
fn drain_with_timeouts<I>(results: &mut multiproc::IMap<'_, I, usize>) -> (Vec<usize>, usize)
where
    I: Iterator<Item = (usize, u64)>,
{
    let (mut got, mut timeouts) = (Vec::new(), 0);
    while let Some(next) = results.next_timeout(Duration::from_millis(20)) {
        match next {
            Ok(index) => got.push(index),
            Err(Error::Timeout) => timeouts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (got, timeouts)
}

#[test]
fn imap_next_timeout_times_out_and_then_yields_every_item_in_order_once() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        // Item 0 is slow; the others finish (and arrive) while the consumer waits for it.
        let naps: Vec<(usize, u64)> = (0..12).map(|i| (i, if i == 0 { 300 } else { 5 })).collect();
        let mut results = pool.imap(nap_then_index, naps);
        assert!(matches!(
            results.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::Timeout))
        ));
        let (got, timeouts) = drain_with_timeouts(&mut results);
        assert_eq!(got, (0..12).collect::<Vec<_>>());
        assert!(
            timeouts >= 1,
            "item 0 takes 300 ms: later waits of 20 ms time out too"
        );
        // Exhausted: `None` at once, from either form.
        assert!(results.next_timeout(Duration::ZERO).is_none());
        assert!(results.next().is_none());

        // `next` goes on where a timed-out `next_timeout` stopped.
        let mut results = pool.imap(nap_then_index, [(0, 300), (1, 0), (2, 0)]);
        assert!(matches!(
            results.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::Timeout))
        ));
        let rest: Vec<usize> = results.by_ref().map(Result::unwrap).collect();
        assert_eq!(rest, [0, 1, 2]);
        // A wait too long to be a deadline is no deadline.
        assert!(results.next_timeout(Duration::MAX).is_none());
    });
}

#[test]
fn imap_unordered_next_timeout_times_out_and_then_yields_every_item_once() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        // The first two items (one per worker) are slow: nothing can finish within 20 ms.
        let naps: Vec<(usize, u64)> = (0..12).map(|i| (i, if i < 2 { 300 } else { 5 })).collect();
        let mut results = pool.imap_unordered(nap_then_index, naps);
        assert!(matches!(
            results.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::Timeout))
        ));
        let (mut got, _) = drain_with_timeouts(&mut results);
        got.sort_unstable();
        assert_eq!(got, (0..12).collect::<Vec<_>>(), "every item exactly once");
        assert!(results.next_timeout(Duration::ZERO).is_none());
    });
}

#[allow(clippy::too_many_arguments)]
fn twelve(
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: i8,
    f: i16,
    g: i32,
    h: i64,
    i: f32,
    j: f64,
    k: bool,
    l: String,
) -> String {
    format!("{a} {b} {c} {d} {e} {f} {g} {h} {i} {j} {k} {l}")
}

fn three(a: u64, b: u64, c: u64) -> u64 {
    a * 100 + b * 10 + c
}

#[test]
fn starmap_takes_functions_of_up_to_twelve_arguments() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(
            pool.starmap(three, vec![(1, 2, 3), (4, 5, 6)]).unwrap(),
            vec![123, 456]
        );
        let args = (
            1u8,
            2u16,
            3u32,
            4u64,
            -5i8,
            -6i16,
            -7i32,
            -8i64,
            0.5f32,
            0.25f64,
            true,
            "z".to_string(),
        );
        let out = pool
            .starmap_chunked(twelve, vec![args.clone(), args], 1)
            .unwrap();
        assert_eq!(out, vec!["1 2 3 4 -5 -6 -7 -8 0.5 0.25 true z"; 2]);
    });
}

#[test]
fn a_call_queued_behind_another_on_the_same_worker_gets_its_result() {
    // A waiter reads only the workers whose next answers are its own; a call queued behind
    // someone else's chunk gets its result through the supervisor, or once it comes first.
    fn nap_pid(ms: u64) -> (u64, u32) {
        std::thread::sleep(Duration::from_millis(ms));
        (ms, std::process::id())
    }
    fn pid_square(x: u64) -> (u64, u32) {
        (x * x, std::process::id())
    }
    within(SECS(30), || {
        let pool = Pool::new(1).unwrap();
        // Fast calls let chunks queue a few deep on a worker.
        for i in 0..200 {
            pool.apply(square, i).unwrap();
        }
        for round in 0..20 {
            let nap = pool.apply_async(nap_pid, 20);
            let (sq, at) = pool.apply(pid_square, round).unwrap();
            assert_eq!(sq, round * round);
            let (ms, napped_at) = nap.get().unwrap();
            assert_eq!((ms, napped_at), (20, at), "one worker runs both");
        }
    });
}

/// Review: after `join()`, an `imap` over an endless input failed its items one by one for
/// ever: a loop that skipped the errors never ended.
#[test]
fn an_endless_imap_ends_once_the_pool_is_joined() {
    within(SECS(30), || {
        let pool = Pool::new(2).unwrap();
        let mut results = pool.imap_unordered(square, 0u64..);
        assert!(results.next().unwrap().is_ok());
        pool.close();
        pool.join().unwrap();
        let rest: Vec<_> = results.collect();
        let done = rest.iter().take_while(|r| r.is_ok()).count();
        assert!(rest.len() > done, "what it had pulled fails");
        assert!(
            rest[done..]
                .iter()
                .all(|r| matches!(r, Err(Error::PoolClosed)))
        );
        // A new one made after close() fails the items of its first pull and ends.
        let late: Vec<_> = pool.imap(square, 0u64..).collect();
        assert!(!late.is_empty() && late.len() <= 1024, "{}", late.len());
        assert!(late.iter().all(|r| matches!(r, Err(Error::PoolClosed))));
    });
}
