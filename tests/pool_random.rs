//! Randomised runs against a model: whatever the chunking and wherever workers die, every item
//! gets exactly its own outcome, in order for `imap`, as a set for `imap_unordered`.

mod common;
use common::{SECS, within};
use multiproc::{Error, Pool};
use rand::Rng;
use std::collections::HashSet;

/// Dies with SIGKILL when `die` is set; otherwise returns a value derived from `x`.
fn maybe_die((x, die): (u64, bool)) -> u64 {
    if die {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
        std::thread::sleep(SECS(60));
    }
    x.wrapping_mul(2654435761) % 1000
}

#[test]
fn random_kills_fail_exactly_the_killing_items() {
    within(SECS(120), || {
        let mut rng = rand::rng();
        let pool = Pool::new(2).unwrap();
        for round in 0..12 {
            let n = rng.random_range(1..300u64);
            let kills: HashSet<u64> = (0..rng.random_range(0..4))
                .map(|_| rng.random_range(0..n))
                .collect();
            let chunksize = rng.random_range(1..=n as usize);
            let input: Vec<(u64, bool)> = (0..n).map(|x| (x, kills.contains(&x))).collect();
            let ordered = round % 2 == 0;
            let results: Vec<(usize, Result<u64, Error>)> = if ordered {
                pool.imap_chunked(maybe_die, input.clone(), chunksize)
                    .enumerate()
                    .collect()
            } else {
                // Unordered: identify items by value, so use x itself as the result key below.
                pool.imap_unordered_chunked(maybe_die, input.clone(), chunksize)
                    .enumerate()
                    .collect()
            };
            assert_eq!(results.len(), n as usize, "round {round}");
            let failures: Vec<&Error> = results
                .iter()
                .filter_map(|(_, r)| r.as_ref().err())
                .collect();
            assert_eq!(failures.len(), kills.len(), "round {round}: {failures:?}");
            for e in &failures {
                match e {
                    Error::WorkerDied { task: t, .. } => {
                        assert!(kills.contains(&(*t as u64)), "blamed the wrong item {t}")
                    }
                    other => panic!("round {round}: unexpected {other:?}"),
                }
            }
            let mut got: Vec<u64> = results
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok().copied())
                .collect();
            let mut want: Vec<u64> = input
                .iter()
                .filter(|(_, die)| !die)
                .map(|&(x, _)| maybe_die((x, false)))
                .collect();
            if ordered {
                assert_eq!(got, want, "round {round}");
            } else {
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "round {round}");
            }
        }
    });
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn many_threads_share_one_pool() {
    within(SECS(60), || {
        let pool = Pool::new(2).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let pool = &pool;
                s.spawn(move || {
                    for round in 0..5 {
                        let lo = t * 1000 + round * 10;
                        let got = pool.map(square, lo..lo + 100).unwrap();
                        assert_eq!(got, (lo..lo + 100).map(square).collect::<Vec<_>>());
                        assert_eq!(pool.apply(square, lo).unwrap(), lo * lo);
                    }
                });
            }
        });
    });
}

#[test]
fn the_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<multiproc::AsyncResult<Vec<u64>>>();
    send_sync::<Error>();
}
