//! Why Python users pick the fork start method: a large read-only table, built once in the
//! parent before the pool starts, read by every worker without being sent or copied.
//!
//! ```python
//! TABLE = None
//!
//! def part_sum(bounds):
//!     start, end = bounds
//!     return sum(TABLE[start:end])
//!
//! if __name__ == "__main__":
//!     TABLE = build_table()                           # 1 GiB
//!     with multiprocessing.get_context("fork").Pool(2) as pool:
//!         print(sum(pool.map(part_sum, parts)))
//! ```
//!
//! The workers' resident memory counts the table's pages they read, but those pages are the
//! parent's, shared copy-on-write: what each worker holds of its own ("private") stays a few
//! MiB until it writes. With spawn, each worker would need its own copy, sent or rebuilt.
//!
//! Run: `cargo run --release --example fork_table` (or `-- 0.25` for a 256 MiB table).

use std::sync::OnceLock;
use std::time::Instant;

use multiproc::{Pool, StartMethod};

/// The table: built in the parent, read in the workers.
static TABLE: OnceLock<Vec<u64>> = OnceLock::new();

/// Sums `TABLE[start..end]`.
fn part_sum((start, end): (usize, usize)) -> u64 {
    let table = TABLE.get().expect("built before the pool started");
    table[start..end]
        .iter()
        .fold(0u64, |a, &x| a.wrapping_add(x))
}

/// This process's pid, resident memory and private memory (pages no other process maps), in
/// KiB, from `/proc/self/smaps_rollup`.
fn memory(_: ()) -> (u32, u64, u64) {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    (
        std::process::id(),
        field("Rss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let gib: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1.0);
    let len = (gib * (1u64 << 30) as f64 / 8.0) as usize;

    let t = Instant::now();
    let table = TABLE.get_or_init(|| {
        (0..len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9))
            .collect()
    });
    println!(
        "table: {} MiB built in {:.2} s",
        (table.len() * 8) >> 20,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .build()?;
    let (pid, _, _) = pool.apply(memory, ())?;
    println!(
        "fork pool of 2 started (first result from worker {pid}) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // Every worker reads the whole table (a part per task, many tasks each).
    let parts: Vec<(usize, usize)> = (0..64)
        .map(|k| (k * len / 64, (k + 1) * len / 64))
        .collect();
    let t = Instant::now();
    let sum = pool
        .map_chunked(part_sum, parts, 1)?
        .into_iter()
        .fold(0u64, u64::wrapping_add);
    let expect = table.iter().fold(0u64, |a, &x| a.wrapping_add(x));
    assert_eq!(sum, expect);
    println!(
        "summed by the workers in {:.2} s: {sum:#x}",
        t.elapsed().as_secs_f64()
    );

    let (_, rss, _) = memory(());
    println!("parent       resident {:>7.1} MiB", mib(rss));
    let mut seen = Vec::new();
    for (pid, rss, private) in pool.map_chunked(memory, vec![(); 16], 1)? {
        if !seen.contains(&pid) {
            seen.push(pid);
            println!(
                "worker {pid:<6} resident {:>7.1} MiB, of which its own {:>5.1} MiB (the table's \
                 pages are the parent's, shared)",
                mib(rss),
                mib(private)
            );
        }
    }
    pool.close();
    pool.join()
}
