//! The events and spans a pool emits (feature `tracing`), caught by a subscriber that writes
//! them into memory: a worker killed and replaced, a task that overruns its timeout, a call's
//! span around its failed task, and an initializer that fails.

mod common;
use common::{SECS, eventually, within};
use multiproc::{Error, Pool};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

fn square(x: u64) -> u64 {
    x * x
}

fn killed(_: u64) -> u64 {
    // SAFETY: plain kill(2) of this worker process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails() {
    panic!("no setup today")
}

/// Where the subscriber writes.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn a_pool_tells_what_happens_to_its_workers_and_calls() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_target(true),
        )
        .with(Targets::new().with_target("multiproc", LevelFilter::DEBUG))
        .init();
    within(SECS(60), move || {
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        assert_eq!(pool.map(square, 0..10u64).unwrap().len(), 10);
        assert_eq!(
            log.lines_with(&["worker started"]).len(),
            2,
            "{}",
            log.text()
        );
        assert!(eventually(SECS(10), || log
            .lines_with(&["worker ready"])
            .len()
            == 2));
        assert!(
            !log.lines_with(&["multiproc.call", "call=\"map\"", "call ended", "items=10"])
                .is_empty(),
            "{}",
            log.text()
        );

        let died = pool.apply(killed, 0).unwrap_err();
        let Error::WorkerDied { pid, .. } = died else {
            panic!("{died:?}")
        };
        let death = log.lines_with(&[
            "WARN",
            "worker died",
            &format!("pid={pid}"),
            "cause=SIGKILL",
        ]);
        assert_eq!(death.len(), 1, "{}", log.text());
        // Its task failed inside the call's span.
        assert!(
            !log.lines_with(&[
                "WARN",
                "multiproc.call",
                "call=\"apply\"",
                "task failed",
                "SIGKILL"
            ])
            .is_empty(),
            "{}",
            log.text()
        );
        assert!(
            eventually(SECS(10), || !log
                .lines_with(&["INFO", "worker started, replacing"])
                .is_empty()),
            "{}",
            log.text()
        );

        assert!(matches!(
            pool.apply(nap, 5_000),
            Err(Error::TaskTimeout { .. })
        ));
        assert!(
            !log.lines_with(&["WARN", "overran the pool's task timeout"])
                .is_empty(),
            "{}",
            log.text()
        );
        assert!(
            !log.lines_with(&["WARN", "worker killed: a task overran"])
                .is_empty(),
            "{}",
            log.text()
        );
        pool.close();
        pool.join().unwrap();
        assert!(
            eventually(SECS(10), || log
                .lines_with(&["DEBUG", "worker exited"])
                .len()
                == 2),
            "{}",
            log.text()
        );

        // An initializer that fails (in both workers): the pool breaks, and says so once.
        let broken = Pool::builder()
            .processes(2)
            .initializer(fails, ())
            .build()
            .unwrap();
        assert!(broken.apply(square, 1).is_err());
        // Both workers' initializers fail; give the second time to, then count.
        std::thread::sleep(Duration::from_millis(300));
        let said = log.lines_with(&[
            "ERROR",
            "pool is broken",
            "initializer failed",
            "no setup today",
        ]);
        assert_eq!(said.len(), 1, "{}", log.text());
        println!("{}", log.text());
    });
}
