//! A shared `Value` updated by two processes, first without a lock (updates get lost), then
//! with one (the balance is exact).
//!
//! Mirrors the Python tutorial:
//!
//! ```python
//! def deposit(balance, lock):
//!     for _ in range(50):
//!         time.sleep(0.001)
//!         with lock:
//!             balance.value += 10
//!
//! def withdraw(balance, lock):
//!     for _ in range(50):
//!         time.sleep(0.001)
//!         with lock:
//!             balance.value -= 10
//!
//! if __name__ == "__main__":
//!     balance = Value('i', 1000)
//!     lock = Lock()
//!     d = Process(target=deposit, args=(balance, lock))
//!     w = Process(target=withdraw, args=(balance, lock))
//!     d.start(); w.start(); d.join(); w.join()
//!     print(balance.value)   # 1000; without the lock, anything
//! ```
//!
//! Here the value carries its own lock: `*balance.lock()? += 10` reads, adds and writes while
//! holding it. A `RawValue` has no lock (Python's `RawValue`); to make the race easy to see,
//! the unlocked version sleeps between its read and its write.
//!
//! Run: `cargo run --release --example value_lock`

use std::time::Duration;

use multiproc::{Error, Process, RawValue, Value};

const STEPS: usize = 50;
const PAUSE: Duration = Duration::from_millis(1);

/// Adds `step` to the balance `STEPS` times with no lock: read, pause, write.
fn update_unlocked((balance, step): (RawValue<i64>, i64)) {
    for _ in 0..STEPS {
        let seen = balance.get();
        std::thread::sleep(PAUSE); // the other process may write meanwhile: its update is lost
        balance.set(seen + step);
    }
}

/// Adds `step` to the balance `STEPS` times, each read-modify-write under the value's lock.
fn update_locked((balance, step): (Value<i64>, i64)) {
    for _ in 0..STEPS {
        std::thread::sleep(PAUSE);
        *balance.lock().expect("lock") += step;
    }
}

fn main() -> Result<(), Error> {
    multiproc::init();

    println!("without a lock (RawValue):");
    let balance = RawValue::new(1000i64)?;
    let mut deposit = Process::new(update_unlocked, (balance.clone(), 10));
    let mut withdraw = Process::new(update_unlocked, (balance.clone(), -10));
    deposit.start()?;
    withdraw.start()?;
    deposit.join()?;
    withdraw.join()?;
    let racy = balance.get();
    if racy == 1000 {
        println!("  final balance {racy} (no drift this time, by luck)");
    } else {
        println!("  final balance {racy}: drifted by {}", racy - 1000);
    }

    println!("with the lock (Value::lock):");
    let balance = Value::new(1000i64)?;
    let mut deposit = Process::new(update_locked, (balance.clone(), 10));
    let mut withdraw = Process::new(update_locked, (balance.clone(), -10));
    deposit.start()?;
    withdraw.start()?;
    deposit.join()?;
    withdraw.join()?;
    let exact = balance.get()?;
    println!("  final balance {exact}");
    assert_eq!(exact, 1000);
    Ok(())
}
