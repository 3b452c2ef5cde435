//! `Pool::map` from `main` and from inside a method, with the task function defined inside the
//! method. Ports seed 003's first two programs: the plain `pool.map(f, range(10))`, and the same
//! inside a class `test`, which Python refuses ("Can't pickle … function failed": a function
//! local to a method cannot be sent to another process) — and then the seed's way out,
//! `multiprocessing.dummy`, whose threads take any local function.
//!
//! ```python
//! def f(x):
//!     time.sleep(1)
//!     print(x + 1)
//!     return x + 1
//!
//! pool = Pool(4)
//! b = pool.map(f, range(10))
//! pool.close(); pool.join()
//! print(b)
//!
//! class test:
//!     def __init__(self):
//!         self.a = range(10)
//!     def run(self):
//!         def f(x):                       # local function: PicklingError in Python
//!             time.sleep(1)
//!             print(x + 1)
//!             return x + 1
//!         pool = Pool(4)
//!         self.b = pool.map(f, self.a)
//!         pool.close(); pool.join()
//!
//! t = test(); t.run(); print(t.b)
//! ```
//!
//! In Rust a `fn` written inside a method is an item like any other: it works. What cannot
//! cross to another process is a closure that *captures* something (`self`, a local
//! variable); that is a compile error at the call, not a run-time surprise:
//!
//! ```text
//! let step = self.step;
//! pool.map(move |x: u64| x + step, self.a.clone())  // error: a multiproc task must be a fn
//!                                                   // item or a closure that captures nothing
//! ```
//!
//! Pass such data in the argument instead (see `two_strings` for several arguments).
//!
//! Or do what the seed says works: "just replace `multiprocessing` with
//! `multiprocessing.dummy`" —
//!
//! ```python
//! from multiprocessing.dummy import Pool      # threads: the local f needs no pickling
//! ```
//!
//! — which here is `multiproc::dummy::Pool`: the same methods over threads, where a closure may
//! capture what the method sees (`Test::run_on_threads` reads `self.a` through one).
//!
//! Run: `cargo run --release --example map_in_method`

use std::sync::Arc;
use std::time::Duration;

use multiproc::{Error, Pool, dummy};

/// The seed's `time.sleep(1)`, shortened.
const NAP: Duration = Duration::from_millis(100);

/// Seed 003's module-level `f`.
fn f(x: u64) -> u64 {
    std::thread::sleep(NAP);
    println!("{}", x + 1);
    x + 1
}

/// Seed 003's class `test`.
struct Test {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Test {
    fn new() -> Self {
        Test {
            a: (0..10).collect(),
            b: Vec::new(),
        }
    }

    fn run(&mut self) -> Result<(), Error> {
        // Local to the method, as in the seed.
        fn f(x: u64) -> u64 {
            std::thread::sleep(NAP);
            println!("{} (from the method's own f)", x + 1);
            x + 1
        }

        let pool = Pool::new(4)?;
        self.b = pool.map(f, self.a.clone())?;
        pool.close();
        pool.join()
    }

    /// `run` with `multiprocessing.dummy`: the local function is a closure that reads the
    /// object's data, which threads share instead of receiving a copy per task.
    fn run_on_threads(&mut self) -> Result<(), Error> {
        let a = Arc::new(self.a.clone());
        let f = {
            let a = a.clone();
            move |i: usize| {
                std::thread::sleep(NAP);
                println!("{} (from a thread, reading self.a[{i}])", a[i] + 1);
                a[i] + 1
            }
        };

        let pool = dummy::Pool::new(4)?;
        self.b = pool.map(f, 0..a.len())?;
        pool.close();
        pool.join()
    }
}

fn main() -> Result<(), Error> {
    multiproc::init();

    let pool = Pool::new(4)?;
    let b = pool.map(f, 0..10u64)?;
    pool.close();
    pool.join()?;
    println!("{b:?}");
    assert_eq!(b, (1..=10).collect::<Vec<u64>>());

    let mut t = Test::new();
    t.run()?;
    println!("{:?}", t.b);
    assert_eq!(t.b, (1..=10).collect::<Vec<u64>>());

    let mut t = Test::new();
    t.run_on_threads()?;
    println!("{:?}", t.b);
    assert_eq!(t.b, (1..=10).collect::<Vec<u64>>());
    Ok(())
}
