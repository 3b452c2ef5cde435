//! What a pool tells `tracing` (feature `tracing`): a worker is killed mid-task and replaced,
//! another task overruns its timeout, and the log says so — with `tracing-subscriber`'s `fmt`
//! printing every event of target `multiproc` at `debug` and above.
//!
//! Run: `cargo run --release --features tracing --example tracing_workers`

use std::time::Duration;

use multiproc::{Error, Pool};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

fn square(x: u64) -> u64 {
    x * x
}

/// Dies as the OOM killer would have it.
fn killed(_: u64) -> u64 {
    // SAFETY: plain kill(2) of this worker process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

fn hangs(_: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn main() -> Result<(), Error> {
    multiproc::init();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(true))
        .with(Targets::new().with_target("multiproc", LevelFilter::DEBUG))
        .init();
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()?;
    println!("map: {:?}", pool.map(square, 0..4u64)?);
    println!("killed: {}", pool.apply(killed, 0).unwrap_err());
    println!("hangs: {}", pool.apply(hangs, 0).unwrap_err());
    println!("after: {}", pool.apply(square, 7)?);
    pool.close();
    pool.join()?;
    Ok(())
}
