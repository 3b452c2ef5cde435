//! How well the pool schedules: the figures of issue 11, each beside its peer from the same run.
//!
//! Run: `cargo bench --bench scheduling` (all parts), or name parts after `--`:
//! `cargo bench --bench scheduling -- rounds workers fresh imap`.
//!
//! - `rounds`: the CPU-bound program of a user who alternates serial work and maps. Each round
//!   does 64 cube sums serially (about 70 ms), then the same 64 with `pool.map` (the first map
//!   after the pool sat idle), with `map_chunked(.., 1)`, and with a map that reports which
//!   worker ran each item. Speedup = serial time / map time; rayon's, measured the same way in
//!   the same run, is the peer. Target: ≥ 1.85× in every round on 2 cores. The `bound` column
//!   is what the pid map could reach with no scheduling cost at all: the serial time over the
//!   time the two workers, each at the speed its core ran the items at, needed for them.
//! - `workers`: `apply` round trip (p50), chunksize-1 dispatch and an automatic `map` of 1 M
//!   tiny items with 2, 8, 32 and 64 workers (oversubscribed on a small machine), and the
//!   `apply` round trip again while every other worker runs a long task: the per-call cost
//!   should not grow with the number of workers.
//! - `fresh`: a user's first big maps: a new pool of 2, a 1,000-item warm-up, then maps of
//!   x*x over 1 M `u64`; the median of the first three beside CPython's `Pool.map` measured
//!   the same way, and the first map beside the steady state.
//! - `imap`: `imap` and `imap_unordered` over 1 M tiny items with automatic chunks (and `imap`
//!   over the first 1 M of an endless input), and over 200,000 with chunksize 64, each beside
//!   `map` over the same input with the same chunks. Targets: ≥ 50 M/s automatic, ≥ 20 M/s at
//!   chunksize 64.
//!
//! `MULTIPROC_BENCH=smoke` runs small inputs (what CI does, so the benchmark cannot rot).

mod common;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use common::{cube_sum, median, secs};
use multiproc::Pool;
use rayon::prelude::*;

fn smoke() -> bool {
    std::env::var("MULTIPROC_BENCH").is_ok_and(|v| v == "smoke")
}

fn sq(x: u64) -> u64 {
    x * x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

/// A cube sum that says which worker ran it and for how long (in µs of the wall clock, which
/// all processes share).
fn pid_cube((n, _i): (u64, u32)) -> (u32, u64, u64) {
    let micros = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.map_or(0, |d| d.as_micros() as u64)
    };
    let start = micros();
    black_box(cube_sum(n));
    (std::process::id(), start, micros())
}

fn rounds() -> Result<(), multiproc::Error> {
    let (tasks, n, rounds) = if smoke() {
        (64, 200_000, 2)
    } else {
        (64, 2_000_000, 10)
    };
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    println!("\n## rounds: {tasks} cube sums, serial then parallel, {rounds} rounds");
    println!(
        "{:<7}{:>10}{:>12}{:>12}{:>12}{:>8}{:>12}{:>8}{:>12}",
        "round", "serial ms", "first map", "chunk 1", "pid map", "bound", "split", "busy", "rayon"
    );
    let serial = || {
        black_box((0..tasks).map(|_| cube_sum(n)).sum::<u64>());
    };
    // Per column: every round's speedup (first map, chunk 1, pid map, rayon).
    let mut columns: [Vec<f64>; 4] = Default::default();
    let mut busy_rounds = Vec::new();
    let mut bounds = Vec::new();
    for round in 1..=rounds {
        let s = secs(serial);
        let first = s / secs(|| drop(black_box(pool.map(cube_sum, vec![n; tasks]).unwrap())));
        let s1 = secs(serial);
        let one = s1 / secs(|| drop(pool.map_chunked(cube_sum, vec![n; tasks], 1).unwrap()));
        let s2 = secs(serial);
        let mut pids = Vec::new();
        let took = secs(|| {
            pids = pool
                .map(
                    pid_cube,
                    (0..tasks as u32).map(|i| (n, i)).collect::<Vec<_>>(),
                )
                .unwrap()
        });
        let pid = s2 / took;
        // How much of the map's time both workers spent in items: what scheduling costs, apart
        // from how fast the machine's cores happened to be.
        let in_items: u64 = pids.iter().map(|(_, start, end)| end - start).sum();
        let busy = in_items as f64 / 1e6 / (2.0 * took);
        // Per worker: items run, and µs spent in them.
        let mut per_worker: Vec<(u32, usize, u64)> = Vec::new();
        for &(p, start, end) in &pids {
            match per_worker.iter_mut().find(|w| w.0 == p) {
                Some(w) => (w.1, w.2) = (w.1 + 1, w.2 + (end - start)),
                None => per_worker.push((p, 1, end - start)),
            }
        }
        // What a scheduler without any cost would reach with the cores as fast as they were
        // during this map: the serial time over the time both workers, each at its own
        // measured rate, would take for all the items.
        let items_per_sec: f64 = per_worker
            .iter()
            .map(|&(_, items, us)| items as f64 / (us.max(1) as f64 / 1e6))
            .sum();
        let bound = s2 / (tasks as f64 / items_per_sec);
        let mut split: Vec<usize> = per_worker.iter().map(|w| w.1).collect();
        split.sort();
        let s3 = secs(serial);
        let rayon = s3
            / secs(|| {
                threads.install(|| {
                    black_box((0..tasks).into_par_iter().map(|_| cube_sum(n)).sum::<u64>())
                });
            });
        for (column, v) in columns.iter_mut().zip([first, one, pid, rayon]) {
            column.push(v);
        }
        busy_rounds.push(busy);
        bounds.push((bound, pid));
        let split = split
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("/");
        println!(
            "{round:<7}{:>10.1}{first:>11.2}x{one:>11.2}x{pid:>11.2}x{bound:>7.2}x{split:>12}{:>7.1}%{rayon:>11.2}x",
            s * 1e3,
            busy * 100.0
        );
    }
    // The machine's own noise moves every column, rayon's too: read multiproc's beside it.
    for (name, column) in ["first map", "chunk 1", "pid map", "rayon"]
        .iter()
        .zip(&columns)
    {
        let good = column.iter().filter(|&&v| v >= 1.85).count();
        let worst = column.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{name:<10} median {:.2}x, worst {worst:.2}x, {good} of {rounds} rounds at 1.85x or more",
            median(column.clone())
        );
    }
    let low = bounds.iter().filter(|&&(b, _)| b < 1.85).count();
    let reached: Vec<f64> = bounds.iter().map(|&(b, pid)| pid / b).collect();
    println!(
        "bound (the pid map's speedup with no scheduling cost at the cores' measured speeds): \
         median {:.2}x, under 1.85x in {low} of {rounds} rounds; the pid map reached a median {:.1}% \
         of it",
        median(bounds.iter().map(|b| b.0).collect()),
        median(reached) * 100.0
    );
    println!(
        "workers busy in items during the pid map: median {:.1}%, worst {:.1}%",
        median(busy_rounds.clone()) * 100.0,
        busy_rounds.iter().copied().fold(f64::INFINITY, f64::min) * 100.0
    );
    Ok(())
}

fn workers() -> Result<(), multiproc::Error> {
    let (calls, chunk1, map_n) = if smoke() {
        (100, 500, 100_000u64)
    } else {
        (1_000, 5_000, 1_000_000u64)
    };
    println!("\n## workers: per-call cost against the number of workers");
    println!(
        "{:<9}{:>14}{:>16}{:>14}{:>20}",
        "workers", "apply p50 µs", "chunksize 1 k/s", "map auto M/s", "others busy p50 µs"
    );
    for n in [2, 8, 32, 64] {
        let pool = Pool::new(n)?;
        // Every worker started and served once.
        pool.map_chunked(sq, 0..(n as u64 * 4), 1)?;
        for i in 0..50 {
            pool.apply(sq, i)?;
        }
        let rtts: Vec<f64> = (0..calls as u64)
            .map(|i| secs(|| assert_eq!(pool.apply(sq, i).unwrap(), i * i)))
            .collect();
        let one = median(
            (0..3)
                .map(|_| secs(|| drop(pool.map_chunked(sq, 0..chunk1, 1).unwrap())))
                .collect(),
        );
        let auto = median(
            (0..5)
                .map(|_| secs(|| drop(pool.map(sq, 0..map_n).unwrap())))
                .collect(),
        );
        // Every worker but one naps (one each: the least loaded is served first), and the
        // round trips go to the one left.
        let naps = pool.map_async_chunked(nap, vec![1_000; n - 1], 1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let busy: Vec<f64> = (0..calls as u64)
            .map(|i| secs(|| assert_eq!(pool.apply(sq, i).unwrap(), i * i)))
            .collect();
        // Dropping the pool terminates the naps.
        drop(naps);
        println!(
            "{n:<9}{:>14.1}{:>16.0}{:>14.1}{:>20.1}",
            median(rtts) * 1e6,
            chunk1 as f64 / one / 1e3,
            map_n as f64 / auto / 1e6,
            median(busy) * 1e6
        );
    }
    Ok(())
}

/// CPython's `Pool(2).map(sq, range(n))` on a fresh pool after a 1,000-item warm-up: the
/// first three maps' times, in seconds.
fn cpython_fresh(n: u64) -> Option<Vec<f64>> {
    let script = format!(
        "import multiprocessing as mp, time, json\n\
         def sq(x):\n    return x * x\n\
         if __name__ == '__main__':\n    \
             with mp.get_context('fork').Pool(2) as p:\n        \
                 p.map(sq, range(1000))\n        \
                 ts = []\n        \
                 for _ in range(3):\n            \
                     t = time.perf_counter(); p.map(sq, range({n})); ts.append(time.perf_counter() - t)\n    \
             print(json.dumps(ts))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(|v| v.trim().parse().ok()).collect()
}

fn fresh() -> Result<(), multiproc::Error> {
    let (n, pools, maps) = if smoke() {
        (100_000u64, 1, 4)
    } else {
        (1_000_000u64, 5, 12)
    };
    println!("\n## fresh: a new pool's first maps of x*x over {n} u64");
    let mut firsts = Vec::new();
    let mut first_three = Vec::new();
    let mut steady = Vec::new();
    for _ in 0..pools {
        let pool = Pool::new(2)?;
        pool.map(sq, 0..1000u64)?;
        let times: Vec<f64> = (0..maps)
            .map(|_| secs(|| drop(black_box(pool.map(sq, 0..n).unwrap()))))
            .collect();
        let shown: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
        println!("maps, ms: {}", shown.join(" "));
        firsts.push(times[0]);
        first_three.push(median(times[..3].to_vec()));
        steady.push(median(times[maps / 2..].to_vec()));
    }
    let (first, three, steady) = (median(firsts), median(first_three), median(steady));
    println!(
        "first map {:.1} ms, median of first three {:.1} ms, steady state {:.1} ms: first / \
         steady = {:.2}",
        first * 1e3,
        three * 1e3,
        steady * 1e3,
        first / steady
    );
    match cpython_fresh(n) {
        Some(py) if !py.is_empty() => {
            let py = median(py);
            println!(
                "CPython fork Pool(2), median of first three: {:.1} ms; multiproc is {:.1}x",
                py * 1e3,
                py / three
            );
        }
        _ => println!("CPython: not measured (python3 missing or failed)"),
    }
    Ok(())
}

fn imap() -> Result<(), multiproc::Error> {
    let (big, small) = if smoke() {
        (100_000u64, 20_000u64)
    } else {
        (1_000_000u64, 200_000u64)
    };
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let rate = |n: u64, f: &dyn Fn() -> usize| {
        median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    assert_eq!(f() as u64, n);
                    n as f64 / t.elapsed().as_secs_f64() / 1e6
                })
                .collect(),
        )
    };
    println!("\n## imap: M items/s, and against map over the same input in this run");
    let ok = |r: &multiproc::Result<u64>| r.is_ok();
    let map_auto = rate(big, &|| pool.map(sq, 0..big).unwrap().len());
    let map_64 = rate(small, &|| pool.map_chunked(sq, 0..small, 64).unwrap().len());
    let rows: Vec<(String, f64, f64)> = vec![
        (format!("map, auto chunks, {big}"), map_auto, map_auto),
        (
            format!("imap, auto chunks, {big}"),
            rate(big, &|| pool.imap(sq, 0..big).filter(ok).count()),
            map_auto,
        ),
        (
            format!("imap_unordered, auto chunks, {big}"),
            rate(big, &|| pool.imap_unordered(sq, 0..big).filter(ok).count()),
            map_auto,
        ),
        (
            format!("imap, endless input, first {big}"),
            rate(big, &|| {
                pool.imap(sq, 0u64..).take(big as usize).filter(ok).count()
            }),
            map_auto,
        ),
        (format!("map, chunksize 64, {small}"), map_64, map_64),
        (
            format!("imap, chunksize 64, {small}"),
            rate(small, &|| {
                pool.imap_chunked(sq, 0..small, 64).filter(ok).count()
            }),
            map_64,
        ),
        (
            format!("imap_unordered, chunksize 64, {small}"),
            rate(small, &|| {
                pool.imap_unordered_chunked(sq, 0..small, 64)
                    .filter(ok)
                    .count()
            }),
            map_64,
        ),
    ];
    for (label, v, peer) in rows {
        println!("{label:<44}{v:>10.1}{:>9.2}x", v / peer);
    }
    Ok(())
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| asked.is_empty() || asked.iter().any(|a| a == part);
    println!(
        "machine: {} CPUs{}",
        multiproc::cpu_count(),
        if smoke() { "; SMOKE run" } else { "" }
    );
    if wants("rounds") {
        rounds()?;
    }
    if wants("workers") {
        workers()?;
    }
    if wants("fresh") {
        fresh()?;
    }
    if wants("imap") {
        imap()?;
    }
    Ok(())
}
