//! Three processes share one `Queue` and each takes one item: every item goes to exactly one
//! of them, in whatever order they reach the queue. Ports seed 001's
//! "通过queues.Queue()实现进程间数据共享" program (there the processes are not joined):
//!
//! ```python
//! def take(q):
//!     print(f"{current_process().name} got {q.get()}")
//!
//! if __name__ == "__main__":
//!     q = Queue()
//!     for item in ["h1", "h2", "h3"]:
//!         q.put(item)
//!     procs = [Process(target=take, args=(q,)) for _ in range(3)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//! ```
//!
//! Here each process also returns what it took, and `join()` brings it back to the parent.
//!
//! Run: `cargo run --release --example three_takers`

use std::time::Duration;

use multiproc::{Error, Process, Queue};

/// Takes one item and returns it.
fn take(q: Queue<String>) -> String {
    let item = q.get_timeout(Duration::from_secs(5)).expect("get");
    let me = multiproc::current_process();
    println!("{} (pid {}) got {item}", me.name(), me.pid());
    item
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let q = Queue::new()?;
    for item in ["h1", "h2", "h3"] {
        q.put(item.to_string())?;
    }

    let mut procs: Vec<Process<String>> = (1..=3)
        .map(|n| Process::new(take, q.clone()).with_name(format!("taker-{n}")))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    let mut taken = procs
        .iter()
        .map(Process::join)
        .collect::<Result<Vec<_>, _>>()?;

    println!("parent: taken {taken:?}, left in the queue: {}", q.qsize());
    taken.sort();
    assert_eq!(taken, ["h1", "h2", "h3"]);
    assert!(q.empty());
    Ok(())
}
