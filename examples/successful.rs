//! `successful()` tells a task that returned from one that failed, once it is ready: here one
//! task succeeds and one panics. A panic fails only its own task; the worker keeps serving.
//!
//! Mirrors the Python tutorial:
//!
//! ```python
//! def check(x):
//!     if x < 0:
//!         raise ValueError("negative input")
//!     return x * 2
//!
//! pool = Pool(2)
//! ok = pool.apply_async(check, (21,))
//! bad = pool.apply_async(check, (-1,))
//! pool.close(); pool.join()
//! print(ok.successful(), bad.successful())   # True False
//! ```
//!
//! Run: `cargo run --release --example successful`

use std::time::Duration;

use multiproc::{Error, Pool};

/// Doubles `x`; panics on negative input.
fn check(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(50));
    if x < 0 {
        panic!("negative input: {x}");
    }
    x * 2
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new(2)?;

    let ok = pool.apply_async(check, 21);
    let bad = pool
        .apply_async(check, -1)
        .on_error(|e| println!("on_error callback: {e}"));
    // Python raises ValueError here; multiproc answers None.
    println!("before join: ok.successful() = {:?}", ok.successful());

    pool.close();
    pool.join()?;
    println!(
        "after join:  ok.successful() = {:?}, bad.successful() = {:?}",
        ok.successful(),
        bad.successful()
    );
    assert_eq!(
        (ok.successful(), bad.successful()),
        (Some(true), Some(false))
    );

    println!("ok.get()  = {:?}", ok.get());
    match bad.get() {
        Err(e @ Error::TaskPanicked { .. }) => println!("bad.get() = Err({e})"),
        other => panic!("expected a panic, got {other:?}"),
    }
    Ok(())
}
