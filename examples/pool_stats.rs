//! What a pool did, after a job: `pool.stats()` — workers alive, started, retired and died by
//! cause; tasks submitted, completed, failed, timed out, cancelled; each worker's share of the
//! work (mpire's "worker insights"). The job has a worker killed by the OOM killer's signal and
//! a task that overruns its timeout, so there is something to see.
//!
//! Run: `cargo run --release --example pool_stats`

use std::time::Duration;

use multiproc::{Error, Pool};

/// Counts primes below `n`, slowly; item 13 kills its own worker, item 21 hangs.
fn work(n: u64) -> u64 {
    match n {
        13 => {
            // SAFETY: plain kill(2) of this worker process, as the OOM killer would.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            0
        }
        21 => {
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        _ => (2..n * 2_000)
            .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
            .count() as u64,
    }
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(500))
        .max_tasks_per_child(20)
        .build()?;
    let outcomes: Vec<Result<u64, Error>> = pool.imap_chunked(work, 0..40u64, 1).collect();
    let failed: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("  item {i}: {e}")))
        .collect();
    println!(
        "{} tasks, {} failed:\n{}",
        outcomes.len(),
        failed.len(),
        failed.join("\n")
    );
    let stats = pool.stats();
    print!("{stats}");
    assert_eq!(stats.tasks_completed, 38);
    assert_eq!((stats.tasks_failed, stats.tasks_timed_out), (2, 1));
    assert_eq!(stats.workers_died.signalled, 1);
    assert_eq!(stats.workers_died.timed_out, 1);
    pool.close();
    pool.join()?;
    println!(
        "after join: {} alive, {} retired",
        pool.stats().workers_alive,
        pool.stats().workers_retired
    );
    Ok(())
}
