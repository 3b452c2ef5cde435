//! A CPU-bound job over a pool: count the primes below 3 million, split into 64 ranges.
//! Prints the serial time, the pool's time, and the speedup.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::Instant;

use multiproc::Pool;

/// Counts primes in `[lo, hi)` by trial division: deliberately CPU-bound.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo.max(2)..hi)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    const LIMIT: u64 = 3_000_000;
    const PIECES: u64 = 64;
    let ranges: Vec<(u64, u64)> = (0..PIECES)
        .map(|i| (i * LIMIT / PIECES, (i + 1) * LIMIT / PIECES))
        .collect();

    let t = Instant::now();
    let serial: u64 = ranges.iter().copied().map(count_primes).sum();
    let serial_time = t.elapsed();

    let workers = multiproc::cpu_count();
    let pool = Pool::new(workers)?;
    // Warm the pool up so start-up is not part of the measurement.
    pool.map(count_primes, [(0, 10)])?;
    let t = Instant::now();
    let parallel: u64 = pool.map_chunked(count_primes, ranges, 1)?.into_iter().sum();
    let parallel_time = t.elapsed();

    assert_eq!(serial, parallel);
    println!("primes below {LIMIT}: {parallel}");
    println!("serial:   {serial_time:>10.2?}");
    println!("parallel: {parallel_time:>10.2?}  ({workers} worker processes)");
    println!(
        "speedup:  {:>10.2}x",
        serial_time.as_secs_f64() / parallel_time.as_secs_f64()
    );
    pool.close();
    pool.join()?;
    Ok(())
}
