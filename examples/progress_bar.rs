//! A progress bar on a pool's map, in one line (feature `progress`). Ports seed 000's tqdm
//! program, which builds the bar by hand from `apply_async` callbacks:
//!
//! ```python
//! pbar = tqdm(total=10)
//! pbar.set_description('Sleep')
//! update = lambda *args: pbar.update()
//!
//! def work(n):
//!     time.sleep(1)
//!     return n**2
//!
//! p = Pool(3)
//! res_l = [p.apply_async(work, args=(i,), callback=update) for i in range(10)]
//! p.close(); p.join()
//! ```
//!
//! Here the pool draws the bar itself — items done, rate, time left, failures — on stderr, and
//! only when stderr is a terminal. (`progress_callback` keeps the hand-made version.) Then the
//! same with threads: a `dummy::Pool` draws its `imap`'s bar too.
//!
//! Run: `cargo run --release --features progress --example progress_bar`

use std::time::Duration;

use multiproc::{Error, Pool};

const TASKS: u64 = 30;

/// Naps 100 ms, then squares.
fn work(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    n * n
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::builder().processes(3).progress().build()?;
    let squares = pool.map_chunked(work, 0..TASKS, 1)?;
    println!(
        "{} squares, the last {}; sum {}",
        squares.len(),
        squares[squares.len() - 1],
        squares.iter().sum::<u64>()
    );

    let threads = multiproc::dummy::Pool::builder()
        .processes(3)
        .progress()
        .build()?;
    let cubes: Vec<u64> = threads
        .imap_chunked(|n: u64| work(n) * n, 0..TASKS / 2, 1)
        .collect::<Result<_, _>>()?;
    println!(
        "{} cubes on threads, sum {}",
        cubes.len(),
        cubes.iter().sum::<u64>()
    );
    let doubled = threads.map_chunked(|n: u64| work(n) * 2, 0..TASKS / 2, 1)?;
    println!(
        "{} doubled on threads, sum {}",
        doubled.len(),
        doubled.iter().sum::<u64>()
    );
    Ok(())
}
