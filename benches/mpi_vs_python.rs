//! A pool over MPI ranks beside `mpi4py.futures` (Debian's `python3-mpi4py`), in the same run,
//! both as 1 rank that hands out work + 2 ranks that serve, on this machine:
//!
//! - map of x*x over 1 M `u64`: ours with automatic chunks and with chunk size 10,000
//!   (mpi4py's figure is at 10,000);
//! - map over 20,000 items with chunk size 1;
//! - `apply` round trip (mpi4py: `submit(...).result()`), p50 and p99 over 2,000;
//! - CPU-bound speedup: 16 equal tasks, serial in rank 0 against the pool;
//! - rank 0's CPU time per chunk (what the scaling model in the README is built on).
//!
//! Run: `cargo bench --features mpi --bench mpi_vs_python` (Open MPI's `mpirun`; for the
//! comparison, `python3 -m mpi4py`). It runs itself under `mpirun -n 3 --oversubscribe`, then
//! the anchor script `../shared/anchors/py_mpi_futures.py` (or `MPI4PY_SCRIPT`) the same way.
//! `MULTIPROC_BENCH=smoke` makes every workload small (CI keeps it from rotting).

use std::process::Command;
use std::time::Instant;

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// A CPU-bound task of about 15 ms here (Python's `cube_sum(200000)` in the anchor takes about
/// as long): `n` rounds of arithmetic the compiler cannot fold.
fn cube_sum(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        let i = std::hint::black_box(i);
        s = s.wrapping_add(i.wrapping_mul(i).wrapping_mul(i));
    }
    s
}

/// CPU seconds this process has used (user and system), from `/proc`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|at| stat[at + 2..].split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    (ticks(11) + ticks(12)) as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn smoke() -> bool {
    std::env::var("MULTIPROC_BENCH").is_ok_and(|v| v == "smoke")
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init(); // ranks 1 and 2 serve from here
    match multiproc::mpi::rank() {
        Some(0) => rank0(),
        _ => drive(),
    }
}

/// Rank 0: the measurements, one line each, `key value`.
fn rank0() -> Result<(), multiproc::Error> {
    let small = smoke();
    let pool = Pool::builder().mpi().build()?;
    pool.map(square, 0..10_000u64)?; // every worker up
    let n: u64 = if small { 100_000 } else { 1_000_000 };
    let best = |f: &dyn Fn() -> Result<(), multiproc::Error>| -> Result<f64, multiproc::Error> {
        let mut best = f64::MAX;
        for _ in 0..if small { 1 } else { 5 } {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let runs = if small { 1.0 } else { 5.0 };
    let cpu = cpu_seconds();
    let auto = best(&|| {
        pool.map(square, 0..n)
            .map(|v| assert_eq!(v.len() as u64, n))
    })?;
    println!("map_auto_mps {:.2}", n as f64 / auto / 1e6);
    println!(
        "rank0_cpu_ns_per_item {:.1}",
        (cpu_seconds() - cpu) / (runs * n as f64) * 1e9
    );
    let fixed = best(&|| {
        pool.map_chunked(square, 0..n, 10_000)
            .map(|v| assert_eq!(v.len() as u64, n))
    })?;
    println!("map_cs10000_mps {:.2}", n as f64 / fixed / 1e6);

    let m: u64 = if small { 2_000 } else { 20_000 };
    let cpu = cpu_seconds();
    let ones = best(&|| pool.map_chunked(square, 0..m, 1).map(|_| ()))?;
    println!("map_cs1_kps {:.1}", m as f64 / ones / 1e3);
    println!(
        "rank0_cpu_us_per_chunk {:.2}",
        (cpu_seconds() - cpu) / (runs * m as f64) * 1e6
    );

    let mut rtt: Vec<f64> = Vec::new();
    for i in 0..if small { 200 } else { 2000 } {
        let t = Instant::now();
        pool.apply(square, i)?;
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    rtt.sort_by(f64::total_cmp);
    println!("apply_p50_us {:.1}", rtt[rtt.len() / 2]);
    println!("apply_p99_us {:.1}", rtt[rtt.len() * 99 / 100]);

    // Size the CPU-bound task to about 15 ms here.
    let t = Instant::now();
    cube_sum(1_000_000);
    let per_million = t.elapsed().as_secs_f64();
    let rounds = ((0.015 / per_million) * 1e6) as u64;
    let tasks = vec![rounds; 16];
    // Serial and parallel in turns, five rounds; the median round's ratio. This machine has
    // bursts when every process runs slower (tasks take up to twice as long, on both sides):
    // a burst spoils one round, not the figure.
    let mut rounds: Vec<(f64, f64)> = Vec::new();
    for _ in 0..if small { 1 } else { 5 } {
        let t = Instant::now();
        let serial: Vec<u64> = tasks.iter().map(|&n| cube_sum(n)).collect();
        let serial_time = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let parallel = pool.map_chunked(cube_sum, tasks.clone(), 1)?;
        rounds.push((serial_time, t.elapsed().as_secs_f64()));
        assert_eq!(serial, parallel);
    }
    rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let (serial_time, parallel_time) = rounds[rounds.len() / 2];
    println!("cpu_task_ms {:.1}", serial_time / 16.0 * 1e3);
    println!("cpu_speedup {:.2}", serial_time / parallel_time);
    println!("workers {}", pool.processes());
    Ok(())
}

/// Runs `program` (and its arguments) under `mpirun -n 3 --oversubscribe`; its stdout.
fn mpirun(program: &[&str]) -> Option<String> {
    let out = Command::new("timeout")
        .args(["-s", "KILL", "600", "mpirun", "-n", "3", "--oversubscribe"])
        .args(program)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "{program:?} under mpirun failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn value(out: &str, key: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// The number after `label` in mpi4py's line ("map 1M cs10000 1.98 M/s; ...").
fn py_value(out: &str, label: &str) -> Option<f64> {
    let at = out.find(label)? + label.len();
    out[at..]
        .split_whitespace()
        .next()?
        .trim_end_matches('x')
        .parse()
        .ok()
}

/// A Python that has `mpi4py`: Debian's (`python3-mpi4py` installs it for `/usr/bin/python3`),
/// or the first on the path.
fn python_with_mpi4py() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import mpi4py.futures"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn drive() -> Result<(), multiproc::Error> {
    let exe = std::env::current_exe().map_err(multiproc::Error::Io)?;
    let Some(ours) = mpirun(&[&exe.display().to_string()]) else {
        std::process::exit(1);
    };
    let script = std::env::var("MPI4PY_SCRIPT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/anchors/py_mpi_futures.py"
        )
        .into()
    });
    let theirs = match python_with_mpi4py() {
        Some(python) if !smoke() && std::path::Path::new(&script).exists() => {
            mpirun(&[python, "-m", "mpi4py.futures", &script])
        }
        _ => None,
    };
    let theirs = theirs.unwrap_or_default();
    println!("pool over MPI, 1 rank handing out work + 2 serving ranks, this machine:");
    println!(
        "{:<34} {:>12} {:>16} {:>8}",
        "workload", "multiproc", "mpi4py.futures", "ratio"
    );
    let row = |name: &str, ours: Option<f64>, theirs: Option<f64>, unit: &str, higher: bool| {
        let ratio = match (ours, theirs) {
            (Some(o), Some(t)) if o > 0.0 && t > 0.0 => {
                format!("{:.1}x", if higher { o / t } else { t / o })
            }
            _ => "-".into(),
        };
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} {unit}"));
        println!(
            "{name:<34} {:>12} {:>16} {ratio:>8}",
            show(ours),
            show(theirs)
        );
    };
    let py_map = py_value(&theirs, "map 1M cs10000");
    row(
        "map x*x 1M, auto chunks",
        value(&ours, "map_auto_mps"),
        py_map,
        "M/s",
        true,
    );
    row(
        "map x*x 1M, chunksize 10000",
        value(&ours, "map_cs10000_mps"),
        py_map,
        "M/s",
        true,
    );
    row(
        "map 20k, chunksize 1",
        value(&ours, "map_cs1_kps"),
        py_value(&theirs, "map 20k cs1"),
        "k/s",
        true,
    );
    row(
        "apply round trip p50",
        value(&ours, "apply_p50_us"),
        py_value(&theirs, "submit RTT p50"),
        "us",
        false,
    );
    row(
        "apply round trip p99",
        value(&ours, "apply_p99_us"),
        py_value(&theirs, "p99"),
        "us",
        false,
    );
    row(
        "CPU-bound speedup (16 tasks)",
        value(&ours, "cpu_speedup"),
        py_value(&theirs, "cpu speedup"),
        "x",
        true,
    );
    println!(
        "rank 0 CPU per chunk: {:.2} us, per item of a large map: {:.1} ns; CPU-bound task: \
         {:.1} ms; workers: {}",
        value(&ours, "rank0_cpu_us_per_chunk").unwrap_or(f64::NAN),
        value(&ours, "rank0_cpu_ns_per_item").unwrap_or(f64::NAN),
        value(&ours, "cpu_task_ms").unwrap_or(f64::NAN),
        value(&ours, "workers").unwrap_or(f64::NAN)
    );
    Ok(())
}
