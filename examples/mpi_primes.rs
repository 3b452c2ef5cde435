//! The quickstart's prime count over the ranks of an MPI job: rank 0 hands out 64 ranges, the
//! other ranks' workers count, and each answer says which rank and host served it.
//!
//! Run (feature `mpi`, Open MPI installed):
//!
//! ```text
//! cargo build --release --features mpi --example mpi_primes
//! mpirun -n 3 --oversubscribe target/release/examples/mpi_primes
//! ```
//!
//! Without `mpirun` it runs the same pool on this machine alone.

use std::collections::BTreeMap;
use std::time::Instant;

use multiproc::Pool;

/// Counts primes in `[lo, hi)` by trial division: deliberately CPU-bound.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo.max(2)..hi)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

/// The count for a range, and where it was made: rank and host.
fn count_where(range: (u64, u64)) -> (u64, Option<u32>, String) {
    (
        count_primes(range),
        multiproc::mpi::rank(),
        multiproc::mpi::host(),
    )
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init(); // in ranks 1.., this serves rank 0 and never returns

    const LIMIT: u64 = 3_000_000;
    const PIECES: u64 = 64;
    let ranges: Vec<(u64, u64)> = (0..PIECES)
        .map(|i| (i * LIMIT / PIECES, (i + 1) * LIMIT / PIECES))
        .collect();

    let t = Instant::now();
    let serial: u64 = ranges.iter().copied().map(count_primes).sum();
    let serial_time = t.elapsed();

    let pool = Pool::builder().mpi().build()?;
    pool.map(count_primes, [(0, 10)])?; // warm up: workers start on every rank
    let t = Instant::now();
    let answers = pool.map_chunked(count_where, ranges, 1)?;
    let parallel_time = t.elapsed();

    let total: u64 = answers.iter().map(|a| a.0).sum();
    assert_eq!(total, serial);
    let mut served: BTreeMap<(Option<u32>, String), usize> = BTreeMap::new();
    for (_, rank, host) in answers {
        *served.entry((rank, host)).or_default() += 1;
    }
    println!(
        "primes below {LIMIT}: {total} (MPI ranks: {})",
        multiproc::mpi::size().map_or("none".into(), |n| n.to_string())
    );
    for ((rank, host), tasks) in &served {
        let rank = rank.map_or("this process's workers".into(), |r| format!("rank {r}"));
        println!("  {rank} on {host}: {tasks} tasks");
    }
    println!("serial:   {serial_time:>10.2?}");
    println!(
        "parallel: {parallel_time:>10.2?}  ({} worker processes)",
        pool.processes()
    );
    println!(
        "speedup:  {:>10.2}x",
        serial_time.as_secs_f64() / parallel_time.as_secs_f64()
    );
    pool.close();
    pool.join()?;
    Ok(())
}
