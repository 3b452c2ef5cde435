//! A progress bar advanced by `apply_async` callbacks. Callbacks run in the parent, on the
//! pool's callback thread, as results arrive. (indicatif hides the bar when stderr is not a
//! terminal; the final count is printed either way.) Ports seed 000's tqdm program
//! ("callback 回调函数"):
//!
//! ```python
//! pbar = tqdm(total=40)
//! def update(result):
//!     pbar.update()
//!
//! pool = Pool(4)
//! for i in range(pbar.total):
//!     pool.apply_async(work, (i,), callback=update)
//! pool.close(); pool.join()
//! ```
//!
//! Run: `cargo run --release --example progress_callback`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use multiproc::{Error, Pool};
use rand::Rng;

const TASKS: u64 = 40;

/// Naps 0–150 ms, then squares.
fn work(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..150)));
    x * x
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let bar = ProgressBar::new(TASKS);
    let done = Arc::new(AtomicUsize::new(0));
    let pool = Pool::new(4)?;

    for x in 0..TASKS {
        // The callback runs in this process, so it may capture what it likes.
        let (bar, done) = (bar.clone(), done.clone());
        pool.apply_async(work, x).on_success(move |_| {
            bar.inc(1);
            done.fetch_add(1, Ordering::Relaxed);
        });
    }
    pool.close();
    pool.join()?; // returns once every callback has run
    bar.finish();

    let done = done.load(Ordering::Relaxed);
    println!(
        "{done} of {TASKS} tasks reported by callback; bar at {}",
        bar.position()
    );
    assert_eq!(done as u64, TASKS);
    Ok(())
}
