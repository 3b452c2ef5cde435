//! A shared `Value` updated by two processes, first without a lock (updates get lost), then
//! with one (the balance is exact). Ports seed 004's `add`/`sub` programs ("锁": without and
//! with a `Lock`); here one function takes the step, +10 or -10:
//!
//! ```python
//! def add(x: sharedctypes.Synchronized, lock: Lock) -> int:
//!     for _ in range(50):
//!         time.sleep(0.01)
//!         lock.acquire()
//!         x.value += 10
//!         lock.release()
//!     return x.value
//!
//! def sub(x, lock):                        # the same with x.value -= 10
//!     ...
//!
//! if __name__ == '__main__':
//!     x = Value('i', 1000)
//!     lock = Lock()
//!     add_p = Process(target=add, args=(x, lock))
//!     sub_p = Process(target=sub, args=(x, lock))
//!     add_p.start(); sub_p.start()
//!     add_p.join(); sub_p.join()
//!     print(x.value)                       # 1000; without the lock, 840 or anything
//! ```
//!
//! Three versions:
//! - no lock: a `RawValue` (Python's `RawValue`); to make the race easy to see, it sleeps
//!   between its read and its write;
//! - a separate `Lock`, as in the seed: `lock.acquire()?` gives a guard, and the lock is
//!   released when the guard goes out of scope (Python's `with lock:` block);
//! - the value's own lock: `*balance.lock()? += 10` reads, adds and writes while holding it.
//!
//! Run: `cargo run --release --example value_lock`

use std::time::Duration;

use multiproc::{Error, Lock, Process, RawValue, Value};

const STEPS: usize = 50;
const PAUSE: Duration = Duration::from_millis(1);

/// Adds `step` to the balance `STEPS` times with no lock: read, pause, write.
fn update_unlocked(balance: RawValue<i64>, step: i64) {
    for _ in 0..STEPS {
        let seen = balance.get();
        std::thread::sleep(PAUSE); // the other process may write meanwhile: its update is lost
        balance.set(seen + step);
    }
}

/// Adds `step` to the balance `STEPS` times, each read-modify-write under `lock`.
fn update_with_lock(balance: RawValue<i64>, lock: Lock, step: i64) {
    for _ in 0..STEPS {
        std::thread::sleep(PAUSE);
        let _guard = lock.acquire().expect("acquire"); // lock.acquire()
        let seen = balance.get();
        std::thread::sleep(PAUSE / 10); // no harm done now: the other process waits
        balance.set(seen + step);
    } // each turn's guard is dropped at the end of its turn: lock.release()
}

/// Adds `step` to the balance `STEPS` times, each read-modify-write under the value's lock.
fn update_locked(balance: Value<i64>, step: i64) {
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

    println!("with a Lock:");
    let balance = RawValue::new(1000i64)?;
    let lock = Lock::new()?;
    let mut deposit = Process::new(update_with_lock, (balance.clone(), lock.clone(), 10));
    let mut withdraw = Process::new(update_with_lock, (balance.clone(), lock, -10));
    deposit.start()?;
    withdraw.start()?;
    deposit.join()?;
    withdraw.join()?;
    let exact = balance.get();
    println!("  final balance {exact}");
    assert_eq!(exact, 1000);

    println!("with the value's own lock (Value::lock):");
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
