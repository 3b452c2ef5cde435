//! The rest of the pool's mapping family: `map_async` with a callback that receives the whole
//! result list, `imap` consumed one `next()` at a time, `imap_unordered` yielding results as
//! they finish, and `starmap` / `starmap_async` for a function of two arguments. Ports seed
//! 004's `map_async`, `imap`, `imap_unordered`, `starmap` and `starmap_async` programs:
//!
//! ```python
//! with Pool(4) as pool:
//!     r = pool.map_async(square, range(10), callback=print)
//!     r.wait()
//!     it = pool.imap(square, range(10))
//!     print(next(it)); print(next(it))
//!     for x in pool.imap_unordered(nap_then_square, range(8)):
//!         print(x)
//!     print(pool.starmap(multiply, [(1, 2), (3, 4), (5, 6)]))
//!     print(pool.starmap_async(multiply, [(7, 8), (9, 10)]).get())
//! ```
//!
//! Run: `cargo run --release --example map_async_imap`

use std::time::Duration;

use multiproc::{Error, Pool};
use rand::Rng;

fn square(x: u64) -> u64 {
    x * x
}

/// Naps 0–300 ms first, so that results finish out of order.
fn nap_then_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..300)));
    x * x
}

fn multiply(a: i64, b: i64) -> i64 {
    a * b
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new(4)?;

    // map_async: returns at once; the callback gets the whole list.
    let pending = pool
        .map_async(square, 0..10u64)
        .on_success(|all: &Vec<u64>| println!("map_async callback got {all:?}"));
    pending.wait(); // ready means the callback has run
    println!("map_async get()      {:?}", pending.get()?);

    // imap: a lazy iterator of Result<R>, in input order.
    let mut it = pool.imap(square, 0..10u64);
    println!("imap next()          {:?}", it.next());
    println!("imap next()          {:?}", it.next());
    let rest: Vec<u64> = it.collect::<Result<_, _>>()?;
    println!("imap the rest        {rest:?}");

    // imap_unordered: results in the order they finish.
    let unordered: Vec<u64> = pool
        .imap_unordered(nap_then_square, 0..8u64)
        .collect::<Result<_, _>>()?;
    println!("imap_unordered       {unordered:?}");

    // starmap: each item is a tuple of the function's arguments.
    let products = pool.starmap(multiply, vec![(1, 2), (3, 4), (5, 6)])?;
    println!("starmap              {products:?}");
    let products = pool
        .starmap_async(multiply, vec![(7, 8), (9, 10)])
        .on_success(|v| println!("starmap_async callback got {v:?}"))
        .get()?;
    println!("starmap_async get()  {products:?}");

    pool.close();
    pool.join()
}
