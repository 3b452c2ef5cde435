//! Auto-chunked `map` of x*x over 1 M `u64`, beside CPython's `Pool.map` on the same machine,
//! in the same run. Prints both figures and the ratio.
//!
//! Run: `cargo bench --bench map_vs_python` (needs `python3` for the comparison; without it,
//! only our figure is printed). `N` sets the item count.

use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const PY: &str = r#"
import multiprocessing as mp, sys, time, statistics
def sq(x): return x * x
if __name__ == "__main__":
    n = int(sys.argv[1]); reps = int(sys.argv[2])
    with mp.get_context("fork").Pool(2) as p:
        p.map(sq, range(1000))
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); p.map(sq, range(n)); ts.append(time.perf_counter() - t)
    print(statistics.median(ts))
"#;

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let reps = 7;
    let pool = Pool::new(2)?;
    pool.map(square, 0..1000u64)?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let out = pool.map(square, 0..n)?;
        times.push(t.elapsed());
        assert_eq!(out.len() as u64, n);
    }
    let ours = median(times).as_secs_f64();
    println!(
        "multiproc map x*x over {n} u64 (auto chunks, 2 workers): {:.2} ms = {:.2} M tasks/s",
        ours * 1e3,
        n as f64 / ours / 1e6
    );

    let py = Command::new("python3")
        .args(["-c", PY, &n.to_string(), &reps.to_string()])
        .output();
    match py {
        Ok(out) if out.status.success() => {
            let theirs: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN);
            println!(
                "CPython Pool.map (fork, 2 workers):                    {:.2} ms = {:.2} M tasks/s",
                theirs * 1e3,
                n as f64 / theirs / 1e6
            );
            println!("ratio: multiproc is {:.1}x CPython", theirs / ours);
        }
        _ => println!("python3 not available: no comparison"),
    }
    Ok(())
}
