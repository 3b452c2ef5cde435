//! An `RLock` guarding updates of a shared `Array` across ten processes. First seed 001's
//! RLock program as it is (each process writes element 0, then prints the whole array, while
//! holding the lock); then the lock taken twice by the same process: once around a
//! multi-step update, again inside a helper that is also safe to call on its own.
//!
//! ```python
//! def Foo(lock, temp, i):                # seed 001
//!     lock.acquire()
//!     temp[0] = 100 + i
//!     for item in temp:
//!         print(i, '----->', item)
//!     lock.release()
//!
//! lock = RLock()
//! temp = Array('i', [11, 22, 33, 44])
//! if __name__ == '__main__':
//!     for i in range(10):
//!         p = Process(target=Foo, args=(lock, temp, i))
//!         p.start()
//!
//! def append(lock, log, value):          # safe on its own: takes the lock
//!     with lock:
//!         n = log[0]
//!         log[1 + n] = value
//!         log[0] = n + 1
//!
//! def append_pair(lock, log, i):         # two appends that must stay together
//!     with lock:
//!         append(lock, log, i)           # the same lock again: fine, it is an RLock
//!         append(lock, log, 100 + i)
//!
//! if __name__ == "__main__":
//!     lock = RLock()
//!     log = Array('i', 1 + 2 * 10)       # log[0] counts the entries that follow
//!     procs = [Process(target=append_pair, args=(lock, log, i)) for i in range(10)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print(log[:])
//! ```
//!
//! The array's own lock covers a single `get` or `set`; an append is three steps, and a pair of
//! appends six, so they need a lock of their own. With a plain `Lock` the nested acquire would
//! deadlock (multiproc reports `Error::Deadlock` instead of hanging); an `RLock` lets the
//! process that holds it take it again.
//!
//! Run: `cargo run --release --example rlock_array`

use multiproc::{Array, Error, Process, RLock};

/// Seed 001's `Foo`: under the lock, sets element 0 and reads the array back; returns what it
/// read. While it holds the lock no other process writes, so it reads its own `100 + i`.
fn foo(lock: RLock, temp: Array<i32>, i: i32) -> Vec<i32> {
    let _guard = lock.acquire().expect("acquire"); // lock.acquire()
    temp.set(0, 100 + i).expect("set");
    let seen: Vec<i32> = temp.iter().expect("iter").collect();
    for item in &seen {
        println!("{i} -----> {item}");
    }
    seen
} // the guard is dropped here: lock.release()

const PROCESSES: i32 = 10;

/// Appends `value` to the log (slot 0 holds the count), under the lock.
fn append(lock: &RLock, log: &Array<i32>, value: i32) -> Result<usize, Error> {
    let _guard = lock.acquire()?; // re-entrant: immediate if this process already holds it
    let n = log.get(0)? as usize;
    log.set(1 + n, value)?;
    log.set(0, n as i32 + 1)?;
    Ok(1 + n)
}

/// Appends `i` and `100 + i` next to each other: the outer guard keeps other processes out
/// between the two appends.
fn append_pair(lock: RLock, log: Array<i32>, i: i32) {
    let _outer = lock.acquire().expect("acquire");
    let first = append(&lock, &log, i).expect("append");
    let second = append(&lock, &log, 100 + i).expect("append");
    println!(
        "process {i}: wrote {i} at slot {first} and {} at slot {second}",
        100 + i
    );
}

fn main() -> Result<(), Error> {
    multiproc::init();

    println!("seed 001: Foo in ten processes");
    let lock = RLock::new()?;
    let temp = Array::new(&[11, 22, 33, 44])?;
    let mut procs: Vec<Process<Vec<i32>>> = (0..PROCESSES)
        .map(|i| Process::new(foo, (lock.clone(), temp.clone(), i)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for (i, p) in (0..PROCESSES).zip(procs) {
        assert_eq!(
            p.into_value()?,
            [100 + i, 22, 33, 44],
            "process {i} was disturbed"
        );
    }
    let first = temp.get(0)?;
    assert!((100..100 + PROCESSES).contains(&first));
    println!("element 0 ends as {first}: the last process to take the lock wrote it");

    println!("\nappending pairs, re-entrantly");
    let lock = RLock::new()?;
    let log = Array::<i32>::zeroed(1 + 2 * PROCESSES as usize)?;

    let mut procs: Vec<Process<()>> = (0..PROCESSES)
        .map(|i| Process::new(append_pair, (lock.clone(), log.clone(), i)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }

    let all = log.to_vec()?;
    println!("log: count {} then {:?}", all[0], &all[1..]);
    assert_eq!(all[0], 2 * PROCESSES);
    // Every pair is adjacent: no process got in between the two appends of another.
    let mut firsts: Vec<i32> = all[1..]
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair[1], pair[0] + 100, "pair split: {pair:?}");
            pair[0]
        })
        .collect();
    firsts.sort();
    assert_eq!(firsts, (0..PROCESSES).collect::<Vec<_>>());
    Ok(())
}
