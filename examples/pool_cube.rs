//! Seed 004's pool programs around one `cube` function: `map` on a pool of `cpu_count() - 1`
//! processes, blocking `apply` on a default pool (`Pool()`, one process per CPU), and
//! `apply_async` with a callback.
//!
//! ```python
//! def cube(number):
//!     total = 0
//!     for i in range(number):
//!         total += i * i * i
//!     return total
//!
//! def custom_callback(result):
//!     print(f'Got result: {result}')
//!
//! if __name__ == '__main__':
//!     p = Pool(os.cpu_count() - 1)
//!     print(p.map(cube, range(5)))                      # [0, 0, 1, 9, 36]
//!     p.close(); p.join()
//!
//!     p = Pool()
//!     print("result: ", p.apply(cube, args=(50,)))      # 1500625
//!     print("result: ", p.apply(cube, args=(10,)))      # 2025
//!     p.close()
//!     print("end")
//!
//!     p = Pool()
//!     result = p.apply_async(cube, callback=custom_callback, args=(50,))
//!     print("result: ", result)                         # <ApplyResult object at …>
//!     result = p.apply_async(cube, callback=custom_callback, args=(10,))
//!     p.close(); p.join()
//!     print("end")
//! ```
//!
//! `Pool::new(None)` is Python's `Pool()`. A callback runs in this process, on the pool's
//! callback thread, so unlike a task it may capture what it likes (here a list it fills);
//! `join()` returns once every callback has run. The callback sees the value by reference:
//! `get()` still hands it over afterwards.
//!
//! Run: `cargo run --release --example pool_cube`

use std::sync::{Arc, Mutex};

use multiproc::{Error, Pool};

/// The sum of `i³` for `i` below `number`.
fn cube(number: u64) -> u64 {
    println!(
        "number: {number} ; process id: {}",
        multiproc::current_process().pid()
    );
    (0..number).map(|i| i * i * i).sum()
}

fn custom_callback(result: &u64) {
    println!("Got result: {result}");
}

fn main() -> Result<(), Error> {
    multiproc::init();

    // map on cpu_count() - 1 processes (at least one: `Pool::new(0)` means one anyway).
    let cpus = multiproc::cpu_count();
    let p = Pool::new((cpus - 1).max(1))?;
    let result = p.map(cube, 0..5u64)?;
    println!("{result:?}");
    assert_eq!(result, [0, 0, 1, 9, 36]);
    p.close();
    p.join()?;

    // apply on a default pool: one process per CPU.
    {
        let p = Pool::new(None)?;
        assert_eq!(p.processes(), cpus);
        let result = p.apply(cube, 50)?; // or `(50,)`, as Python's args=(50,)
        println!("result: {result}");
        assert_eq!(result, 1_500_625);
        let result = p.apply(cube, (10,))?;
        println!("result: {result}");
        assert_eq!(result, 2025);
        p.close();
        println!("end");
        // No join, as in the seed: leaving the block drops the pool, which terminates it
        // (its tasks are done; nothing is lost).
    }

    // apply_async with a callback.
    let p = Pool::new(None)?;
    let seen = Arc::new(Mutex::new(Vec::new())); // what the callbacks saw, to check below
    let mut results = Vec::new();
    for number in [50, 10] {
        let seen = seen.clone();
        let result = p.apply_async(cube, number).on_success(move |result| {
            custom_callback(result);
            seen.lock().unwrap().push(*result);
        });
        println!("result: {result:?}");
        results.push(result);
    }
    p.close();
    p.join()?; // every callback has run when this returns
    println!("end");

    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [2025, 1_500_625]);
    assert_eq!((results[0].get()?, results[1].get()?), (1_500_625, 2025));
    Ok(())
}
