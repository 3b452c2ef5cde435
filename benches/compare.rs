//! The comparison a user makes before choosing a process pool: multiproc beside CPython's
//! `multiprocessing.Pool` (fork and spawn), the `procspawn` crate's pool, and rayon's threads,
//! on the same workloads and inputs, in one run on one machine. Prints absolute figures, then
//! how many times better multiproc is than each peer (above 1: multiproc wins).
//!
//! Run: `cargo bench --bench compare` (needs `python3` for the CPython columns). Set
//! `MULTIPROC_BENCH=smoke` for a quick run with small inputs (what CI does, to keep the
//! benchmark from rotting; its figures are not judged there). Set `MULTIPROC_BENCH_PEERS=none`
//! to measure multiproc alone (a quick look while optimising; no ratios).

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use common::{cube_sum, median, secs};
use multiproc::{Pool, StartMethod};
use rayon::prelude::*;

/// Inputs, in full or smoke size.
struct Scale {
    reps: usize,
    map_n: u64,
    chunk1_n: u64,
    apply_calls: usize,
    imap_n: u64,
    echo_bytes: usize,
    cpu_tasks: usize,
    cpu_n: u64,
}

impl Scale {
    /// Items put through a managed queue, then got (20 000 in full, as CPython's anchor).
    fn manager_queue_n(&self) -> u64 {
        self.apply_calls as u64 * 10
    }

    /// Appends to a managed list (5 000 in full, as CPython's anchor).
    fn manager_list_n(&self) -> u64 {
        self.apply_calls as u64 * 5 / 2
    }

    fn new(smoke: bool) -> Self {
        if smoke {
            Scale {
                reps: 2,
                map_n: 100_000,
                chunk1_n: 2_000,
                apply_calls: 200,
                imap_n: 20_000,
                echo_bytes: 8 << 20,
                cpu_tasks: 64,
                cpu_n: 200_000,
            }
        } else {
            Scale {
                reps: 5,
                map_n: 1_000_000,
                chunk1_n: 20_000,
                apply_calls: 2_000,
                imap_n: 200_000,
                echo_bytes: 64 << 20,
                cpu_tasks: 64,
                cpu_n: 2_000_000,
            }
        }
    }
}

fn sq(x: u64) -> u64 {
    x * x
}

fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Serial and parallel times of the CPU-bound workload: the best of nine alternating runs.
/// Interference (other guests on this virtual machine's cores) only ever slows a run down,
/// so the fastest run of each is the fairest estimate of what the code itself costs.
fn cpu_times(serial: impl Fn(), parallel: impl Fn()) -> (f64, f64) {
    let (mut s, mut p) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..9 {
        s = s.min(secs(&serial));
        p = p.min(secs(&parallel));
    }
    (s, p)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Median time of `reps` runs of `f`.
fn median_secs(reps: usize, f: impl Fn()) -> f64 {
    median((0..reps).map(|_| secs(&f)).collect())
}

/// Median time of a few round trips of `echo_bytes` bytes through `send`. Each payload is made
/// before its clock starts: CPython's side sends the same bytes object every time, with no copy.
fn echo_secs(s: &Scale, send: impl Fn(Vec<u8>) -> Vec<u8>) -> f64 {
    let times = (0..3.min(s.reps))
        .map(|_| {
            let payload = vec![7u8; s.echo_bytes];
            let t = Instant::now();
            let back = send(payload);
            let took = t.elapsed().as_secs_f64();
            assert!(back.len() == s.echo_bytes && back.iter().all(|&b| b == 7));
            took
        })
        .collect();
    median(times)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Children of this process (any thread's), from /proc.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

type Figures = BTreeMap<&'static str, f64>;

fn ours(s: &Scale) -> Result<Figures, multiproc::Error> {
    let mut f = Figures::new();
    for (key_start, key_join, n) in [
        ("start_2", "join_2", 2),
        ("start_n", "join_n", multiproc::cpu_count()),
    ] {
        let (mut starts, mut joins) = (Vec::new(), Vec::new());
        for _ in 0..s.reps {
            let t = Instant::now();
            let pool = Pool::new(n)?;
            pool.apply(sq, 1)?;
            starts.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            pool.close();
            pool.join()?;
            joins.push(t.elapsed().as_secs_f64());
        }
        f.insert(key_start, median(starts));
        f.insert(key_join, median(joins));
    }

    for (key, method) in [
        ("start_2_fork", StartMethod::Fork),
        ("start_2_forkserver", StartMethod::ForkServer),
    ] {
        let pool = || Pool::builder().processes(2).start_method(method).build();
        // The fork server starts on first use: not timed (nor is CPython's).
        pool()?.apply(sq, 1)?;
        let mut starts = Vec::new();
        for _ in 0..s.reps {
            let t = Instant::now();
            let pool = pool()?;
            pool.apply(sq, 1)?;
            starts.push(t.elapsed().as_secs_f64());
            pool.close();
            pool.join()?;
        }
        f.insert(key, median(starts));
    }

    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let idle: Vec<f64> = children().into_iter().filter_map(rss_kib).collect();
    if !idle.is_empty() {
        f.insert("idle_rss_kib", median(idle));
    }
    f.insert(
        "map_auto",
        median_secs(s.reps, || {
            assert_eq!(pool.map(sq, 0..s.map_n).unwrap().len() as u64, s.map_n)
        }),
    );
    f.insert(
        "map_chunk1",
        median_secs(3.min(s.reps), || {
            drop(pool.map_chunked(sq, 0..s.chunk1_n, 1).unwrap())
        }),
    );
    for i in 0..50 {
        pool.apply(sq, i)?;
    }
    let rtts: Vec<f64> = (0..s.apply_calls as u64)
        .map(|i| secs(|| assert_eq!(pool.apply(sq, i).unwrap(), i * i)))
        .collect();
    f.insert("apply_p50", percentile(rtts.clone(), 0.5));
    f.insert("apply_p99", percentile(rtts, 0.99));
    f.insert(
        "imap_unordered",
        median_secs(3.min(s.reps), || {
            let n = pool
                .imap_unordered_chunked(sq, 0..s.imap_n, 64)
                .filter(|r| r.is_ok())
                .count();
            assert_eq!(n as u64, s.imap_n);
        }),
    );
    f.insert(
        "echo",
        echo_secs(s, |payload| pool.apply(echo, payload).unwrap()),
    );
    let (serial, parallel) = cpu_times(
        || {
            black_box((0..s.cpu_tasks).map(|_| cube_sum(s.cpu_n)).sum::<u64>());
        },
        || {
            black_box(pool.map(cube_sum, vec![s.cpu_n; s.cpu_tasks]).unwrap());
        },
    );
    f.insert("cpu_serial", serial);
    f.insert("cpu_pool", parallel);
    drop(pool);
    thread_pool_figures(s, &mut f)?;
    manager_figures(s, &mut f)?;
    Ok(f)
}

/// `multiproc::dummy::Pool(2)`, the thread pool, on what `compare_py.py` gives CPython's
/// `multiprocessing.dummy.Pool(2)`: a `map` of x*x, and `apply` round trips; and a `map` over a
/// vector made beforehand, as rayon's row maps one.
fn thread_pool_figures(s: &Scale, f: &mut Figures) -> Result<(), multiproc::Error> {
    let pool = multiproc::dummy::Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    f.insert(
        "thread_map",
        median_secs(s.reps, || {
            assert_eq!(pool.map(sq, 0..s.map_n).unwrap().len() as u64, s.map_n)
        }),
    );
    // Over a vector that exists already, as rayon's row maps one: the copy made for each run
    // is not timed.
    let input: Vec<u64> = (0..s.map_n).collect();
    let times = (0..s.reps)
        .map(|_| {
            let items = input.clone();
            secs(|| assert_eq!(pool.map(sq, items).unwrap().len() as u64, s.map_n))
        })
        .collect();
    f.insert("thread_map_vec", median(times));
    for i in 0..50 {
        pool.apply(sq, i)?;
    }
    let rtts: Vec<f64> = (0..s.apply_calls as u64)
        .map(|i| secs(|| assert_eq!(pool.apply(sq, i).unwrap(), i * i)))
        .collect();
    f.insert("thread_apply_p50", percentile(rtts, 0.5));
    Ok(())
}

/// An object hosted by the manager (`m.host`), as `compare_py.py` registers one with
/// CPython's `BaseManager`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Counter {
    n: u64,
}

impl Counter {
    fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

/// The Manager: start to the first dict operation, and dict set/get round trips (as
/// `compare_py.py` measures CPython's `Manager().dict()`); a dict's `update` (no CPython
/// counterpart: its read-modify-write is two round trips that lose updates) beside a hosted
/// object's `call` (as CPython's `c.add(5)` on a `BaseManager.register`ed class).
fn manager_figures(s: &Scale, f: &mut Figures) -> Result<(), multiproc::Error> {
    let mut starts = Vec::new();
    for _ in 0..s.reps {
        let t = Instant::now();
        let m = multiproc::Manager::new()?;
        m.dict::<u32, u32>()?.insert(0, 0)?;
        starts.push(t.elapsed().as_secs_f64());
        m.shutdown()?;
    }
    f.insert("manager_start", median(starts));
    let m = multiproc::Manager::new()?;
    let d = m.dict::<u32, u64>()?;
    let (mut sets, mut gets) = (Vec::new(), Vec::new());
    for i in 0..s.apply_calls as u64 {
        let key = (i % 100) as u32;
        sets.push(secs(|| {
            d.insert(key, i).unwrap();
        }));
        gets.push(secs(|| assert_eq!(d.get(&key).unwrap(), Some(i))));
    }
    f.insert("manager_set_p50", percentile(sets, 0.5));
    f.insert("manager_get_p50", percentile(gets, 0.5));
    let c = m.host(Counter { n: 0 })?;
    let (mut updates, mut calls) = (Vec::new(), Vec::new());
    for i in 1..=s.apply_calls as u64 {
        updates.push(secs(|| {
            let v = d.update(0, |v: Option<u64>| v.unwrap_or(0) + 5).unwrap();
            black_box(v);
        }));
        calls.push(secs(|| assert_eq!(c.call(Counter::add, 5).unwrap(), 5 * i)));
    }
    f.insert("manager_update_p50", percentile(updates, 0.5));
    f.insert("manager_call_p50", percentile(calls, 0.5));
    let q = m.queue::<u64>()?;
    let t = Instant::now();
    for i in 0..s.manager_queue_n() {
        q.put(i)?;
    }
    for i in 0..s.manager_queue_n() {
        assert_eq!(q.get()?, i);
    }
    f.insert("manager_queue", t.elapsed().as_secs_f64());
    let l = m.list::<u64>()?;
    let t = Instant::now();
    for i in 0..s.manager_list_n() {
        l.push(i)?;
    }
    f.insert("manager_list", t.elapsed().as_secs_f64());
    assert_eq!(l.len()? as u64, s.manager_list_n());
    m.shutdown()
}

fn rayon_figures(s: &Scale) -> Figures {
    let mut f = Figures::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let input: Vec<u64> = (0..s.map_n).collect();
    let map_auto = median_secs(s.reps, || {
        let out: Vec<u64> = pool.install(|| input.par_iter().map(|&x| sq(x)).collect());
        assert_eq!(out.len() as u64, s.map_n);
    });
    f.insert("map_auto", map_auto);
    // Rayon is the thread pool: the same figure in the thread pool's rows.
    f.insert("thread_map", map_auto);
    f.insert("thread_map_vec", map_auto);
    for i in 0..50 {
        pool.install(|| black_box(sq(i)));
    }
    // `install` runs a closure on the pool and waits for it: rayon's `apply`.
    let rtts: Vec<f64> = (0..s.apply_calls as u64)
        .map(|i| secs(|| assert_eq!(pool.install(|| sq(black_box(i))), i * i)))
        .collect();
    f.insert("thread_apply_p50", percentile(rtts, 0.5));
    let (serial, parallel) = cpu_times(
        || {
            black_box((0..s.cpu_tasks).map(|_| cube_sum(s.cpu_n)).sum::<u64>());
        },
        || {
            let total: u64 = pool.install(|| {
                (0..s.cpu_tasks)
                    .into_par_iter()
                    .map(|_| cube_sum(s.cpu_n))
                    .sum()
            });
            black_box(total);
        },
    );
    f.insert("cpu_serial", serial);
    f.insert("cpu_pool", parallel);
    f
}

fn procspawn_figures(s: &Scale) -> Figures {
    let mut f = Figures::new();
    let mut starts = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..s.reps {
        let t = Instant::now();
        let pool = procspawn::Pool::new(2).unwrap();
        pool.spawn(1u64, sq).join().unwrap();
        starts.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        pool.shutdown();
        joins.push(t.elapsed().as_secs_f64());
    }
    f.insert("start_2", median(starts));
    f.insert("join_2", median(joins));

    let pool = procspawn::Pool::new(2).unwrap();
    // One handle per task; submitted in batches (all at once exhausts descriptors).
    let chunk1 = secs(|| {
        let mut x = 0u64;
        while x < s.chunk1_n {
            let end = (x + 256).min(s.chunk1_n);
            let handles: Vec<_> = (x..end).map(|i| pool.spawn(i, sq)).collect();
            for h in handles {
                h.join().unwrap();
            }
            x = end;
        }
    });
    f.insert("map_chunk1", chunk1);
    for i in 0..50u64 {
        pool.spawn(i, sq).join().unwrap();
    }
    let rtts: Vec<f64> = (0..s.apply_calls as u64)
        .map(|i| secs(|| assert_eq!(pool.spawn(i, sq).join().unwrap(), i * i)))
        .collect();
    f.insert("apply_p50", percentile(rtts.clone(), 0.5));
    f.insert("apply_p99", percentile(rtts, 0.99));
    f.insert(
        "echo",
        echo_secs(s, |payload| pool.spawn(payload, echo).join().unwrap()),
    );
    let (serial, parallel) = cpu_times(
        || {
            black_box((0..s.cpu_tasks).map(|_| cube_sum(s.cpu_n)).sum::<u64>());
        },
        || {
            let handles: Vec<_> = (0..s.cpu_tasks)
                .map(|_| pool.spawn(s.cpu_n, cube_sum))
                .collect();
            for h in handles {
                black_box(h.join().unwrap());
            }
        },
    );
    f.insert("cpu_serial", serial);
    f.insert("cpu_pool", parallel);
    pool.shutdown();
    f
}

fn cpython(method: &str, smoke: bool) -> Option<Figures> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/compare_py.py");
    let out = Command::new("python3")
        .args([script, method, if smoke { "smoke" } else { "full" }])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("python3 {method}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Figures::new();
    // A flat JSON object of numbers (or null): read it without a JSON dependency.
    for pair in text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
    {
        let Some((k, v)) = pair.split_once(':') else {
            continue;
        };
        let key = k.trim().trim_matches('"');
        if let (Some(key), Ok(v)) = (KEYS.iter().find(|x| **x == key), v.trim().parse::<f64>()) {
            f.insert(key, v);
        }
    }
    Some(f)
}

const KEYS: &[&str] = &[
    "start_2",
    "join_2",
    "start_n",
    "join_n",
    "map_auto",
    "map_chunk1",
    "apply_p50",
    "apply_p99",
    "imap_unordered",
    "echo",
    "cpu_serial",
    "cpu_pool",
    "idle_rss_kib",
    "thread_map",
    "thread_map_vec",
    "thread_apply_p50",
    "manager_start",
    "manager_set_p50",
    "manager_get_p50",
    "manager_update_p50",
    "manager_call_p50",
    "manager_queue",
    "manager_list",
    "start_2_fork",
    "start_2_forkserver",
];

/// One printed row: how to show a figure, and whether bigger is better.
struct Row {
    label: String,
    key: &'static str,
    /// Turns seconds (or KiB) into the shown unit.
    show: Box<dyn Fn(f64) -> f64>,
    unit: &'static str,
    higher_is_better: bool,
}

impl Row {
    /// A figure where less is better (a time, a size).
    fn lower(
        label: String,
        key: &'static str,
        show: impl Fn(f64) -> f64 + 'static,
        unit: &'static str,
    ) -> Self {
        Row {
            label,
            key,
            show: Box::new(show),
            unit,
            higher_is_better: false,
        }
    }

    /// A figure where more is better (a rate, a speedup).
    fn higher(
        label: String,
        key: &'static str,
        show: impl Fn(f64) -> f64 + 'static,
        unit: &'static str,
    ) -> Self {
        Row {
            label,
            key,
            show: Box::new(show),
            unit,
            higher_is_better: true,
        }
    }
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    procspawn::init();
    let smoke = std::env::var("MULTIPROC_BENCH").is_ok_and(|v| v == "smoke");
    let s = Scale::new(smoke);

    let mut columns: Vec<(&str, Option<Figures>)> = Vec::new();
    eprintln!("multiproc…");
    columns.push(("multiproc", Some(ours(&s)?)));
    if std::env::var("MULTIPROC_BENCH_PEERS").is_ok_and(|v| v == "none") {
        for (key, v) in &columns[0].1.clone().unwrap_or_default() {
            println!("{key:<16}{v:>14.6}");
        }
        return Ok(());
    }
    eprintln!("CPython fork…");
    columns.push(("CPython fork", cpython("fork", smoke)));
    eprintln!("CPython spawn…");
    columns.push(("CPython spawn", cpython("spawn", smoke)));
    eprintln!("procspawn…");
    columns.push(("procspawn", Some(procspawn_figures(&s))));
    eprintln!("rayon…");
    columns.push(("rayon (threads)", Some(rayon_figures(&s))));
    for (_, figures) in columns.iter_mut() {
        if let Some(f) = figures {
            if let (Some(a), Some(b)) = (f.get("cpu_serial"), f.get("cpu_pool")) {
                let speedup = a / b;
                f.insert("cpu_speedup", speedup);
            }
        }
    }

    let n = |x: u64| x as f64;
    let (queue_n, list_n) = (s.manager_queue_n(), s.manager_list_n());
    let ms = |v: f64| v * 1e3;
    // Millions of items per second, for the maps of `map_n` items.
    let map_rate = move |v: f64| n(s.map_n) / v / 1e6;
    let us = |v: f64| v * 1e6;
    let rows = vec![
        Row::lower(
            "pool start, 2 workers (to first result)".into(),
            "start_2",
            ms,
            "ms",
        ),
        Row::lower("pool close + join, 2 workers".into(), "join_2", ms, "ms"),
        Row::lower(
            "pool start, 2 workers, fork".into(),
            "start_2_fork",
            ms,
            "ms",
        ),
        Row::lower(
            "pool start, 2 workers, forkserver (up)".into(),
            "start_2_forkserver",
            ms,
            "ms",
        ),
        Row::lower(
            format!("pool start, {} workers", multiproc::cpu_count()),
            "start_n",
            ms,
            "ms",
        ),
        Row::higher(
            format!("map x*x, {} u64, auto chunks", s.map_n),
            "map_auto",
            map_rate,
            "M/s",
        ),
        Row::higher(
            format!("map chunksize 1, {} tasks", s.chunk1_n),
            "map_chunk1",
            move |v| n(s.chunk1_n) / v / 1e3,
            "k/s",
        ),
        Row::lower("apply round trip p50".into(), "apply_p50", us, "µs"),
        Row::lower("apply round trip p99".into(), "apply_p99", us, "µs"),
        Row::higher(
            format!("imap_unordered {} items, chunk 64", s.imap_n),
            "imap_unordered",
            move |v| n(s.imap_n) / v / 1e6,
            "M/s",
        ),
        Row::higher(
            format!("echo {} MiB there and back", s.echo_bytes >> 20),
            "echo",
            move |v| 2.0 * s.echo_bytes as f64 / v / (1u64 << 30) as f64,
            "GiB/s",
        ),
        Row::higher(
            format!("CPU-bound map, {} cube sums: speedup", s.cpu_tasks),
            "cpu_speedup",
            |v| v,
            "x",
        ),
        Row::lower(
            "idle worker resident memory".into(),
            "idle_rss_kib",
            |v| v / 1024.0,
            "MiB",
        ),
        Row::higher(
            format!("thread pool map x*x, {} u64 (dummy::Pool)", s.map_n),
            "thread_map",
            map_rate,
            "M/s",
        ),
        Row::higher(
            format!("thread pool map x*x, {} u64 made already", s.map_n),
            "thread_map_vec",
            map_rate,
            "M/s",
        ),
        Row::lower(
            "thread pool apply round trip p50".into(),
            "thread_apply_p50",
            us,
            "µs",
        ),
        Row::lower(
            "Manager start to first dict op".into(),
            "manager_start",
            ms,
            "ms",
        ),
        Row::lower("Manager dict set p50".into(), "manager_set_p50", us, "µs"),
        Row::lower("Manager dict get p50".into(), "manager_get_p50", us, "µs"),
        Row::lower(
            "Manager dict update p50".into(),
            "manager_update_p50",
            us,
            "µs",
        ),
        Row::lower(
            "Manager hosted object call p50".into(),
            "manager_call_p50",
            us,
            "µs",
        ),
        Row::higher(
            format!("Manager queue, {queue_n} puts then {queue_n} gets"),
            "manager_queue",
            move |v| n(queue_n) / v / 1e3,
            "k/s",
        ),
        Row::higher(
            format!("Manager list, {list_n} appends"),
            "manager_list",
            move |v| n(list_n) / v / 1e3,
            "k/s",
        ),
    ];

    println!(
        "\nmachine: {} CPUs; {}",
        multiproc::cpu_count(),
        if smoke {
            "SMOKE run (small inputs)"
        } else {
            "full run"
        }
    );
    print!("{:<44}", "workload");
    for (name, _) in &columns {
        print!("{:>16}", name);
    }
    println!();
    for row in &rows {
        print!("{:<44}", format!("{} [{}]", row.label, row.unit));
        for (_, figures) in &columns {
            match figures.as_ref().and_then(|f| f.get(row.key)) {
                Some(v) => print!("{:>16.2}", (row.show)(*v)),
                None => print!("{:>16}", "–"),
            }
        }
        println!();
    }
    println!("\nmultiproc vs each peer (times better; above 1: multiproc wins)");
    print!("{:<44}", "workload");
    for (name, _) in columns.iter().skip(1) {
        print!("{:>16}", name);
    }
    println!();
    let ours_f = columns[0].1.clone().unwrap_or_default();
    for row in &rows {
        print!("{:<44}", row.label);
        for (_, figures) in columns.iter().skip(1) {
            let ratio = match (
                ours_f.get(row.key),
                figures.as_ref().and_then(|f| f.get(row.key)),
            ) {
                (Some(a), Some(b)) => {
                    let (a, b) = ((row.show)(*a), (row.show)(*b));
                    Some(if row.higher_is_better { a / b } else { b / a })
                }
                _ => None,
            };
            match ratio {
                Some(r) => print!("{:>15.2}x", r),
                None => print!("{:>16}", "–"),
            }
        }
        println!();
    }
    Ok(())
}
