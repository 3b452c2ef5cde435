//! `map` of x*x over 0..100 on a pool of 4 processes: the results come back in input order.
//! Ports seed 000's map program ("使用 map 方法调用", `function_square`):
//!
//! ```python
//! def square(x):
//!     return x * x
//!
//! with Pool(4) as p:
//!     print(p.map(square, range(100)))
//! ```
//!
//! Run: `cargo run --release --example map_squares`

use multiproc::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}

/// Reports which worker ran an item.
fn whoami(_: u64) -> String {
    multiproc::current_process().name().to_string()
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new(4)?;

    let squares = pool.map(square, 0..100u64)?;
    println!("{squares:?}");
    assert_eq!(squares, (0..100u64).map(square).collect::<Vec<_>>());

    // map splits the 100 items into chunks of 7 (about four chunks per worker, as Python does).
    let mut workers = pool.map(whoami, 0..100u64)?;
    workers.sort();
    workers.dedup();
    println!(
        "{} squares, computed by {}",
        squares.len(),
        workers.join(", ")
    );

    pool.close();
    pool.join()
}
