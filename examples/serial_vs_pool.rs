//! When a pool pays off: the same cube-sum workload run serially and on a pool, at a small size
//! (the pool loses: sending work to other processes costs more than the work) and a large one
//! (the pool wins, by up to the number of workers). Timings are printed, not asserted: they
//! depend on the machine and its load. Ports seed 004's `cubing_multiprocess` /
//! `cubing_serial` program:
//!
//! ```python
//! def cube_sum(r):
//!     return sum(x**3 % M for x in range(*r))
//!
//! for n in (1_000, 100_000_000):
//!     pieces = split(range(n), 4 * cpu_count())
//!     t = time.time(); serial = sum(map(cube_sum, pieces)); ...
//!     t = time.time(); parallel = sum(pool.map(cube_sum, pieces)); ...
//! ```
//!
//! Run: `cargo run --release --example serial_vs_pool`

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::{Error, Pool};

/// The modulus keeps each term small and stops the compiler from summing in closed form.
const M: u64 = 1_000_003;

/// Sum of `x³ mod M` over `[lo, hi)`.
fn cube_sum((lo, hi): (u64, u64)) -> u64 {
    (lo..hi).map(|x| black_box(x).wrapping_pow(3) % M).sum()
}

/// Times the workload `0..n` split into `pieces` ranges, serially and on `pool`.
fn race(pool: &Pool, n: u64, pieces: u64) -> Result<(), Error> {
    let ranges: Vec<(u64, u64)> = (0..pieces)
        .map(|i| (i * n / pieces, (i + 1) * n / pieces))
        .collect();

    let t = Instant::now();
    let serial: u64 = ranges.iter().copied().map(cube_sum).sum();
    let serial_time = t.elapsed();

    let t = Instant::now();
    let parallel: u64 = pool.map(cube_sum, ranges)?.into_iter().sum();
    let pool_time = t.elapsed();

    assert_eq!(serial, parallel);
    let (winner, ratio) = if pool_time < serial_time {
        ("pool", times(serial_time, pool_time))
    } else {
        ("serial", times(pool_time, serial_time))
    };
    println!(
        "n = {n:>11}: serial {serial_time:>10.2?}, pool {pool_time:>10.2?}  -> {winner} wins by {ratio:.1}x"
    );
    Ok(())
}

/// How many times `fast` fits in `slow`.
fn times(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64().max(1e-9)
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let workers = multiproc::cpu_count();
    let t = Instant::now();
    let pool = Pool::new(workers)?;
    pool.map(cube_sum, [(0, 1)])?; // wait until the workers are up
    println!("pool of {workers} workers started in {:.2?}", t.elapsed());

    let pieces = 4 * workers as u64;
    race(&pool, 1_000, pieces)?; // small: the overhead dominates
    race(&pool, 100_000_000, pieces)?; // large: the work dominates

    pool.close();
    pool.join()
}
