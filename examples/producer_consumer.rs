//! A producer and a consumer process connected by a `Queue`, with `None` as the "no more
//! items" sentinel. Ports seed 004's Queue program ("长队"; there the items are random
//! floats and the naps random):
//!
//! ```python
//! def producer(q):
//!     for item in range(10):
//!         time.sleep(0.01)
//!         print(f"produced {item}")
//!         q.put(item)
//!     q.put(None)
//!
//! def consumer(q):
//!     while (item := q.get()) is not None:
//!         print(f"consumed {item}")
//!
//! if __name__ == "__main__":
//!     q = Queue()
//!     p = Process(target=producer, args=(q,)); c = Process(target=consumer, args=(q,))
//!     p.start(); c.start(); p.join(); c.join()
//! ```
//!
//! The queue carries `Option<u32>`: `Some(item)` for work, `None` to say the producer is done.
//! The consumer waits at most a few seconds per item, so a lost producer cannot hang it; it
//! returns what it consumed, which `join()` hands back to the parent.
//!
//! Run: `cargo run --release --example producer_consumer`

use std::time::Duration;

use multiproc::{Error, Process, Queue};

const ITEMS: u32 = 10;

/// Puts `0..ITEMS`, a little apart, then the sentinel.
fn producer(q: Queue<Option<u32>>) {
    for item in 0..ITEMS {
        std::thread::sleep(Duration::from_millis(10));
        println!("produced {item}");
        q.put(Some(item)).expect("put");
    }
    q.put(None).expect("put");
}

/// Takes items until the sentinel; returns them.
fn consumer(q: Queue<Option<u32>>) -> Vec<u32> {
    let mut got = Vec::new();
    while let Some(item) = q.get_timeout(Duration::from_secs(5)).expect("get") {
        println!("    consumed {item}");
        got.push(item);
    }
    println!("    consumer saw the sentinel");
    got
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let q = Queue::new()?;
    let mut prod = Process::new(producer, q.clone());
    let mut cons = Process::new(consumer, q);
    prod.start()?;
    cons.start()?;
    prod.join()?;
    let consumed = cons.into_value()?;
    println!("parent: the consumer got {consumed:?}");
    assert_eq!(consumed, (0..ITEMS).collect::<Vec<_>>());
    Ok(())
}
