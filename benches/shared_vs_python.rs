//! Shared state against CPython, side by side in one run:
//! - small-item `Queue` throughput from one process to another (`u64` items);
//! - a 64 MiB `Array<u8>`: fill it from a buffer and read it back, under its lock.
//!
//! Run: `cargo bench --bench shared_vs_python` (needs `python3` for the comparison). `N` sets
//! the number of queue items (default 200 000).

use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::{Array, Event, Process, Queue};

const ARRAY_BYTES: usize = 64 << 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn consume((q, ready, n): (Queue<u64>, Event, u64)) -> u64 {
    ready.set();
    (0..n).map(|_| q.get().unwrap()).sum()
}

/// Seconds to move `n` items from this process to a consumer process (consumer started and
/// waiting before the clock starts; the clock stops when it has taken them all).
fn queue_seconds(n: u64) -> Result<f64, multiproc::Error> {
    let q = Queue::new()?;
    let ready = Event::new()?;
    let mut p = Process::new(consume, (q.clone(), ready.clone(), n));
    p.start()?;
    ready.wait_timeout(Duration::from_secs(30));
    let t = Instant::now();
    for i in 0..n {
        q.put(i)?;
    }
    let sum = p.into_value()?;
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(sum, n * (n - 1) / 2);
    Ok(dt)
}

/// Seconds to fill a 64 MiB array from a buffer and copy it back out, under its lock.
fn array_seconds(arr: &Array<u8>, src: &[u8]) -> Result<f64, multiproc::Error> {
    let t = Instant::now();
    let back = {
        let mut guard = arr.lock()?;
        guard[..].copy_from_slice(src);
        guard[..].to_vec()
    };
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), src.len());
    assert_eq!(back[12345], src[12345]);
    Ok(dt)
}

const PY: &str = r#"
import multiprocessing as mp, sys, time, statistics
def consume(q, ready, n):
    ready.set()
    s = 0
    for _ in range(n): s += q.get()
    assert s == n * (n - 1) // 2
if __name__ == "__main__":
    n = int(sys.argv[1]); reps = int(sys.argv[2])
    ctx = mp.get_context("fork")
    qs = []
    for _ in range(reps):
        q = ctx.Queue(); ready = ctx.Event()
        p = ctx.Process(target=consume, args=(q, ready, n)); p.start(); ready.wait()
        t = time.perf_counter()
        for i in range(n): q.put(i)
        p.join(); qs.append(time.perf_counter() - t)
    size = 64 << 20
    src = bytes(range(256)) * (size // 256)
    arr = ctx.Array('B', size)
    slices, views = [], []
    for _ in range(3):
        t = time.perf_counter()
        with arr.get_lock():
            arr[:] = src
            back = arr[:]
        slices.append(time.perf_counter() - t)
        t = time.perf_counter()
        with arr.get_lock():
            m = memoryview(arr.get_obj()).cast('B')
            m[:] = src
            back = bytes(m)
        views.append(time.perf_counter() - t)
    print(statistics.median(qs), min(slices), statistics.median(views))
"#;

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let reps = 5;
    queue_seconds(1000)?;
    let q_ours = median(
        (0..reps)
            .map(|_| queue_seconds(n))
            .collect::<Result<_, _>>()?,
    );
    let arr = Array::<u8>::zeroed(ARRAY_BYTES)?;
    let src: Vec<u8> = (0..ARRAY_BYTES).map(|i| i as u8).collect();
    array_seconds(&arr, &src)?;
    let a_ours = median(
        (0..5)
            .map(|_| array_seconds(&arr, &src))
            .collect::<Result<_, _>>()?,
    );

    println!(
        "multiproc Queue, {n} u64 items, one process to another: {:.1} ms = {:.0} k items/s",
        q_ours * 1e3,
        n as f64 / q_ours / 1e3
    );
    println!(
        "multiproc Array<u8> 64 MiB fill + read under the lock:   {:.1} ms = {:.2} GiB/s moved",
        a_ours * 1e3,
        2.0 * ARRAY_BYTES as f64 / a_ours / (1u64 << 30) as f64
    );
    let py = Command::new("python3")
        .args(["-c", PY, &n.to_string(), &reps.to_string()])
        .output();
    match py {
        Ok(out) if out.status.success() => {
            let figures: Vec<f64> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            let [q_py, a_slice, a_view] = figures[..] else {
                println!("unexpected output from python3");
                return Ok(());
            };
            println!(
                "CPython Queue (fork):                                    {:.1} ms = {:.0} k items/s",
                q_py * 1e3,
                n as f64 / q_py / 1e3
            );
            println!(
                "CPython Array('B') 64 MiB, a[:] = src; a[:]:             {:.1} ms",
                a_slice * 1e3
            );
            println!(
                "CPython Array('B') 64 MiB through a memoryview:          {:.1} ms",
                a_view * 1e3
            );
            println!("ratio Queue: multiproc is {:.1}x CPython", q_py / q_ours);
            println!(
                "ratio Array: multiproc is {:.1}x CPython's slicing, {:.1}x its memoryview path",
                a_slice / a_ours,
                a_view / a_ours
            );
        }
        _ => println!("python3 not available: no comparison"),
    }
    Ok(())
}
