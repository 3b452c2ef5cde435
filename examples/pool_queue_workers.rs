//! A pool whose initializer is the worker: each of the pool's processes runs a loop that takes
//! items from an input queue and puts results on an output queue. The initializer never
//! returns, so the pool never runs a task of its own; `terminate()` ends the workers. Ports
//! seed 003's gensim-style program (`Pool(4, f, (in_queue, out_queue))` inside a class,
//! simplified here: the seed's workers stop when they find the input queue empty, and the
//! parent polls `out_queue.empty()`):
//!
//! ```python
//! def worker(inq, outq):
//!     while True:
//!         x = inq.get()
//!         outq.put((x, x * x, os.getpid()))
//!
//! if __name__ == "__main__":
//!     inq, outq = Queue(), Queue()
//!     pool = Pool(4, worker, (inq, outq))
//!     for x in range(20):
//!         inq.put(x)
//!     results = [outq.get(timeout=5) for _ in range(20)]
//!     print(sorted(results))
//!     pool.terminate()
//! ```
//!
//! The parent collects with `get_timeout`, so a worker that is lost cannot hang it.
//!
//! Run: `cargo run --release --example pool_queue_workers`

use std::collections::BTreeMap;
use std::time::Duration;

use multiproc::{Error, Pool, Queue};

const ITEMS: u64 = 20;

/// Squares items from `inq` onto `outq`, forever (until the pool is terminated).
fn worker(inq: Queue<u64>, outq: Queue<(u64, u64, u32)>) {
    let pid = multiproc::current_process().pid();
    loop {
        let Ok(x) = inq.get() else {
            return; // the queue is gone: nothing more will come
        };
        std::thread::sleep(Duration::from_millis(5)); // some work, so the items spread out
        if outq.put((x, x * x, pid)).is_err() {
            return;
        }
    }
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let inq = Queue::new()?;
    let outq = Queue::new()?;
    let pool = Pool::builder()
        .processes(4)
        .initializer(worker, (inq.clone(), outq.clone()))
        .build()?;

    for x in 0..ITEMS {
        inq.put(x)?;
    }
    let mut results = (0..ITEMS)
        .map(|_| outq.get_timeout(Duration::from_secs(5)))
        .collect::<Result<Vec<_>, _>>()?;
    pool.terminate();

    results.sort();
    let mut per_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for &(x, square, pid) in &results {
        println!("{x:>2}² = {square:>3}  (pid {pid})");
        *per_worker.entry(pid).or_default() += 1;
    }
    println!("items per worker pid: {per_worker:?}");
    assert_eq!(
        results
            .iter()
            .map(|&(x, sq, _)| (x, sq))
            .collect::<Vec<_>>(),
        (0..ITEMS).map(|x| (x, x * x)).collect::<Vec<_>>()
    );
    assert!(per_worker.len() <= 4);
    Ok(())
}
