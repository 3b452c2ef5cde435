//! A pool of three processes, fed with `apply_async` and then with blocking `apply`; `close()`
//! then `join()`, and `successful()` of the last result. Ports seed 001's two pool programs
//! ("进程池" and "阻塞进程池"): tasks that print and return nothing.
//!
//! ```python
//! def f(x):
//!     for i in range(3):
//!         print('%s---------->%s' % (i, x))
//!         sleep(1)
//!
//! def main():
//!     pool = Pool(processes=3)
//!     for i in range(11, 20):
//!         result = pool.apply_async(f, (i,))
//!     pool.close()
//!     pool.join()
//!     if result.successful():
//!         print('successful')
//!
//! def func(msg):
//!     for i in range(3):
//!         print('msg:', msg)
//!         time.sleep(1)
//!     print('end')
//!
//! def main():
//!     pool = Pool(processes=3)
//!     for i in range(4):
//!         msg = 'hello %s' % i
//!         result = pool.apply(func, (msg,))   # blocks: one task at a time
//!     pool.close()
//!     pool.join()                            # close (or terminate) first, or it fails
//!     print('successful')
//! ```
//!
//! A task that returns nothing gives a result of type `()`. `successful()` is `None` while
//! the result is not ready (Python raises), `Some(true)` or `Some(false)` once it is.
//! `join()` before `close()` is `Err(Error::PoolStillRunning)` (Python raises `ValueError`).
//!
//! Run: `cargo run --release --example pool_of_three`

use std::time::{Duration, Instant};

use multiproc::{AsyncResult, Error, Pool};

/// The seed's `sleep(1)`, shortened.
const STEP: Duration = Duration::from_millis(50);

/// Prints three lines, a step apart.
fn f(x: u32) {
    for i in 0..3 {
        println!("{i}---------->{x}");
        std::thread::sleep(STEP);
    }
}

/// Prints the message three times, a step apart, then "end".
fn func(msg: String) {
    for _ in 0..3 {
        println!("msg: {msg}");
        std::thread::sleep(STEP);
    }
    println!("end");
}

fn main() -> Result<(), Error> {
    multiproc::init();

    println!("apply_async: nine tasks on three processes");
    let pool = Pool::new(3)?;
    let t = Instant::now();
    let results: Vec<AsyncResult<()>> = (11..20).map(|i| pool.apply_async(f, i)).collect();
    let last = results.last().expect("nine results");
    println!("successful() before the end: {:?}", last.successful());
    pool.close();
    pool.join()?; // returns once every task is done
    let took = t.elapsed();
    assert!(results.iter().all(AsyncResult::ready));
    if last.successful() == Some(true) {
        println!("successful");
    }
    assert!(results.iter().all(|r| r.successful() == Some(true)));
    // Nine tasks of three steps on three processes take at least three tasks' time: they did
    // not all run at once.
    assert!(
        took >= 9 * STEP,
        "nine tasks on three processes took only {took:?}"
    );
    println!(
        "took {took:.2?} (each task {:?}, three at a time)",
        3 * STEP
    );

    println!("\napply: four tasks, one at a time");
    let pool = Pool::new(3)?;
    let t = Instant::now();
    for i in 0..4 {
        let msg = format!("hello {i}");
        pool.apply(func, (msg,))?; // `(msg,)` as in Python, or just `msg`
    }
    let took = t.elapsed();
    assert!(matches!(pool.join(), Err(Error::PoolStillRunning)));
    pool.close();
    pool.join()?;
    println!("successful");
    // apply waits for each task: the four ran one after another.
    assert!(
        took >= 12 * STEP,
        "four blocking applies took only {took:?}"
    );
    println!("took {took:.2?} (each task {:?}, one at a time)", 3 * STEP);
    Ok(())
}
