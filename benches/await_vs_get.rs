//! What awaiting a result costs beside a blocking `get()`: `apply` round trips on a pool of 2,
//! p50 and p99, the same run, three ways — `get()`, awaited under a minimal executor (a thread
//! that parks), and awaited under tokio's current-thread runtime.
//!
//! Run: `cargo bench --bench await_vs_get` (`N` sets the round trips per way; default 5,000).

use std::future::IntoFuture;
use std::time::Instant;

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

#[path = "../tests/common/block_on.rs"]
mod executor;
use executor::block_on;

/// One round's (p50, p99) for `get()`, the minimal executor and tokio.
type Round = ((f64, f64), (f64, f64), (f64, f64));

/// p50 and p99 of `n` round trips timed by `one`, in µs.
fn percentiles(n: usize, mut one: impl FnMut(u64) -> f64) -> (f64, f64) {
    let mut t: Vec<f64> = (0..n as u64).map(&mut one).collect();
    t.sort_by(f64::total_cmp);
    (t[n / 2], t[n * 99 / 100])
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let pool = Pool::new(2)?;
    pool.map(square, 0..1000u64)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(multiproc::Error::Io)?;
    let mut rows = Vec::new();
    // Rounds in turns, so that a slow moment of the machine spreads over all three.
    for _ in 0..3 {
        let get = percentiles(n / 3, |i| {
            let t = Instant::now();
            let _ = pool.apply_async(square, i).get();
            t.elapsed().as_secs_f64() * 1e6
        });
        let minimal = percentiles(n / 3, |i| {
            let t = Instant::now();
            let _ = block_on(pool.apply_async(square, i));
            t.elapsed().as_secs_f64() * 1e6
        });
        let tokio = percentiles(n / 3, |i| {
            let t = Instant::now();
            let _ = runtime.block_on(pool.apply_async(square, i).into_future());
            t.elapsed().as_secs_f64() * 1e6
        });
        rows.push((get, minimal, tokio));
    }
    let median = |f: fn(&Round) -> (f64, f64)| {
        let mut v: Vec<(f64, f64)> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let get = median(|r| r.0);
    println!("apply round trip on a pool of 2, {n} in all, median of 3 rounds:");
    println!(
        "{:<34} {:>9} {:>9} {:>12}",
        "", "p50 µs", "p99 µs", "p50 - get"
    );
    for (name, v) in [
        ("get()", get),
        ("awaited, minimal executor", median(|r| r.1)),
        ("awaited, tokio current-thread", median(|r| r.2)),
    ] {
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>+11.1}",
            v.0,
            v.1,
            v.0 - get.0
        );
    }
    Ok(())
}
