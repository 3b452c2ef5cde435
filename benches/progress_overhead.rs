//! What a progress bar costs (feature `progress`): `map` and `imap` over 1 M u64 on a pool of 2
//! with and without `progress()`, in alternating rounds of the same run; the median of each and
//! their ratio. Two workloads: `x*x` (a call of about 10 ms, shorter than the 50 ms after which a
//! bar is shown: the bar's bookkeeping alone) and 256 multiply-adds an item (about 150 ms a call:
//! the bar is drawn, when stderr is a terminal — run it in one, e.g. under `script`, to measure
//! the drawing; the line "stderr" says which it was).
//!
//! Run: `cargo bench --features progress --bench progress_overhead` (`N` sets the items,
//! default 1,000,000; `ROUNDS` the rounds of `x*x`, default 9, a quarter of them for the longer
//! workload; `CALIBRATE=1` gives the second pool no bar either, to show how far two pools
//! differ by themselves).

use std::io::IsTerminal;
use std::time::Instant;

use multiproc::{Error, Pool};

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// 256 steps of a linear congruential generator, each kept from being folded away: some
/// 300 ns of work.
fn churn(x: u64) -> u64 {
    (0..256).fold(x, |h, _| {
        std::hint::black_box(h)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `map` and `imap` of `f` over `0..n` on both pools, `rounds` times in turns; prints the
/// medians and the ratio.
fn compare<F: Fn(u64) -> u64 + Copy + Send + Sync + 'static>(
    name: &str,
    f: F,
    n: u64,
    rounds: u64,
    [plain, barred]: [&Pool; 2],
) -> Result<(), Error> {
    let time = |call: &dyn Fn() -> Result<(), Error>| -> Result<f64, Error> {
        let start = Instant::now();
        call()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    // [call][pool]: map and imap, without and with a bar.
    let mut times = [[vec![], vec![]], [vec![], vec![]]];
    for round in 0..rounds {
        // Which goes first alternates, so that neither always follows the other.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let pool = [plain, barred][which];
            times[0][which].push(time(&|| pool.map(f, 0..n).map(drop))?);
            times[1][which].push(time(&|| pool.imap(f, 0..n).try_for_each(|r| r.map(drop)))?);
        }
    }
    for (call, [without, with]) in ["map", "imap"].into_iter().zip(times) {
        let (a, b) = (median(without), median(with));
        println!(
            "{name:>6} {call:>5}: without a bar {a:.1} ms, with {b:.1} ms: {:+.2} %",
            (b / a - 1.0) * 100.0
        );
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (n, rounds) = (var("N", 1_000_000), var("ROUNDS", 9));
    let plain = Pool::new(2)?;
    let calibrate = std::env::var_os("CALIBRATE").is_some();
    let barred = match calibrate {
        true => Pool::new(2)?,
        false => Pool::builder().processes(2).progress().build()?,
    };
    // Warm both: workers started, channels grown.
    for pool in [&plain, &barred] {
        pool.map(square, 0..n)?;
    }
    println!(
        "progress_overhead: {n} items; stderr {}{}",
        if std::io::stderr().is_terminal() {
            "a terminal (bars drawn once a call has run 50 ms)"
        } else {
            "not a terminal (bars hidden)"
        },
        if calibrate {
            "; CALIBRATE: the second pool has no bar either"
        } else {
            ""
        }
    );
    compare("x*x", square, n, rounds, [&plain, &barred])?;
    compare("churn", churn, n, (rounds / 4).max(3), [&plain, &barred])?;
    Ok(())
}
