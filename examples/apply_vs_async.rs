//! `apply` blocks until its task is done, so a loop of `apply` runs one task at a time;
//! `apply_async` returns at once, so the pool runs tasks side by side. Ten tasks with random
//! naps report when and in which worker they ran; their intervals show that a pool of 3 never
//! ran more than 3 at once. Ports seed 000's `apply()` and `apply_async()` programs
//! ("apply()方法同步调用", "apply_async()方法异步调用"), with shorter naps:
//!
//! ```python
//! def work(x):
//!     time.sleep(random.random() * 0.3)
//!     return x * x
//!
//! with Pool(3) as pool:
//!     [pool.apply(work, (x,)) for x in range(6)]              # one at a time
//!     results = [pool.apply_async(work, (x,)) for x in range(10)]
//!     pool.close(); pool.join()
//!     print([r.get() for r in results])
//! ```
//!
//! Run: `cargo run --release --example apply_vs_async`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::{Error, Pool};
use rand::Rng;

/// Squares `x` after a fixed 100 ms nap.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    x * x
}

/// Microseconds since the Unix epoch: a clock that parent and children share.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Where and when one task ran: the worker's pid, start and end (µs since the epoch).
type Interval = (u32, u64, u64);

/// Squares `x` after a random nap of 0–300 ms, and reports where and when it ran.
fn random_square(x: u64) -> (u64, Interval) {
    let start = now_us();
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..300)));
    (x * x, (multiproc::current_process().pid(), start, now_us()))
}

/// The largest number of intervals that overlap at any instant.
fn max_overlap(intervals: &[Interval]) -> usize {
    // +1 at each start, -1 at each end; at equal times the end comes first (touching is fine).
    let mut events: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|&(_, start, end)| [(start, 1), (end, -1)])
        .collect();
    events.sort_unstable();
    let mut running = 0;
    let mut most = 0;
    for (_, step) in events {
        running += step;
        most = most.max(running);
    }
    most as usize
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new(3)?;
    pool.apply(slow_square, 0)?; // let the workers finish starting

    let t = Instant::now();
    let blocking: Vec<u64> = (0..6)
        .map(|x| pool.apply(slow_square, x))
        .collect::<Result<_, _>>()?;
    println!(
        "apply in a loop:  {blocking:?} in {:.2?} (6 x 100 ms, one at a time)",
        t.elapsed()
    );

    let t = Instant::now();
    let pending: Vec<_> = (0..6).map(|x| pool.apply_async(slow_square, x)).collect();
    println!("apply_async:      6 tasks submitted in {:.2?}", t.elapsed());
    let results: Vec<u64> = pending
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<_, _>>()?;
    println!(
        "                  {results:?} in {:.2?} (3 at a time)",
        t.elapsed()
    );

    let t = Instant::now();
    let pending: Vec<_> = (0..10)
        .map(|x| pool.apply_async(random_square, x))
        .collect();
    pool.close();
    pool.join()?;
    let (squares, intervals): (Vec<u64>, Vec<Interval>) = pending
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    println!(
        "random naps:      {squares:?} in {:.2?} (close, join, then get)",
        t.elapsed()
    );

    println!("\n10 tasks on a pool of 3, as each reported itself:");
    let origin = intervals.iter().map(|i| i.1).min().unwrap_or(0);
    for (x, &(pid, start, end)) in intervals.iter().enumerate() {
        println!(
            "  task {x}: pid {pid}, {:>4} ms -> {:>4} ms",
            (start - origin) / 1000,
            (end - origin) / 1000
        );
    }
    let most = max_overlap(&intervals);
    let mut pids: Vec<u32> = intervals.iter().map(|i| i.0).collect();
    pids.sort_unstable();
    pids.dedup();
    println!(
        "  at most {most} tasks ran at once, on {} distinct worker pids",
        pids.len()
    );
    assert!(most <= 3, "{most} tasks overlapped in a pool of 3");
    Ok(())
}
