//! What a progress bar costs (feature `progress`): `map` of x*x over 1 M u64 and `imap` over
//! the same, on a pool of 2 with and without `progress()`, in alternating rounds of the same
//! run; the median of each and their ratio. The bar is drawn only when stderr is a terminal:
//! run it in one to measure drawing too (the line "stderr" says which it was).
//!
//! Run: `cargo bench --features progress --bench progress_overhead` (`N` sets the items;
//! default 1,000,000; `ROUNDS` the rounds of each, default 9; `CALIBRATE=1` gives the second
//! pool no bar either, to show how far two pools differ by themselves).

use std::io::IsTerminal;
use std::time::Instant;

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (n, rounds) = (var("N", 1_000_000), var("ROUNDS", 9));
    let plain = Pool::new(2)?;
    // `CALIBRATE=1`: two pools without bars, to see how far two pools differ anyway.
    let calibrate = std::env::var_os("CALIBRATE").is_some();
    let barred = match calibrate {
        true => Pool::new(2)?,
        false => Pool::builder().processes(2).progress().build()?,
    };
    // Warm both: workers started, channels grown.
    plain.map(square, 0..n)?;
    barred.map(square, 0..n)?;
    let time = |f: &dyn Fn() -> Result<(), multiproc::Error>| -> Result<f64, multiproc::Error> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let map = |pool: &Pool| pool.map(square, 0..n).map(drop);
    let imap = |pool: &Pool| pool.imap(square, 0..n).try_for_each(|r| r.map(drop));
    let (mut rows, mut irows) = ((vec![], vec![]), (vec![], vec![]));
    for round in 0..rounds {
        // Which goes first alternates, so that neither always follows the other.
        let order: [&Pool; 2] = if round % 2 == 0 {
            [&plain, &barred]
        } else {
            [&barred, &plain]
        };
        for pool in order {
            let m = time(&|| map(pool))?;
            let i = time(&|| imap(pool))?;
            if std::ptr::eq(pool, &plain) {
                rows.0.push(m);
                irows.0.push(i);
            } else {
                rows.1.push(m);
                irows.1.push(i);
            }
        }
    }
    let drawn = std::io::stderr().is_terminal();
    println!(
        "progress_overhead: {n} items, {rounds} rounds each; stderr {}{}",
        if drawn {
            "a terminal (bars drawn)"
        } else {
            "not a terminal (bars hidden)"
        },
        if calibrate {
            "; CALIBRATE: the second pool has no bar either"
        } else {
            ""
        }
    );
    for (name, (without, with)) in [("map", rows), ("imap", irows)] {
        let (a, b) = (median(without), median(with));
        println!(
            "{name:>5}: without a bar {a:.1} ms, with {b:.1} ms: {:+.2} %",
            (b / a - 1.0) * 100.0
        );
    }
    Ok(())
}
