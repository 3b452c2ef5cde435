//! A target of no arguments, `Process::new(sleeping, ())`, joined, then waited for with a
//! timeout and checked with `is_alive()`. Ports seed 004's `sleeping` programs (the one with
//! `p.join()` and the one with `p.join(timeout=3)`; the one without a join is in the
//! `never_joined` example).
//!
//! ```python
//! def sleeping():
//!     print("Before sleep")
//!     time.sleep(2)
//!     print("After sleep")
//!
//! if __name__ == '__main__':
//!     p = Process(target=sleeping)
//!     print('Before start'); p.start(); print('After start')
//!     p.join()
//!     print("After join")
//!
//! if __name__ == '__main__':
//!     p = Process(target=sleeping, daemon=False)
//!     print('Before start'); p.start()
//!     print(p.is_alive())                # True
//!     print('After start')
//!     p.join(timeout=3)
//!     print("After join")
//!     print(p.is_alive())                # False
//! ```
//!
//! Python's `join(timeout)` returns `None` whether or not the child ended, and you ask
//! `is_alive()`; `join_timeout` says it: `Err(Error::Timeout)` while the child runs (it is left
//! running; join again later), the function's value once it ended.
//!
//! Run: `cargo run --release --example sleeping`

use std::time::{Duration, Instant};

use multiproc::{Error, Process};

/// How long `sleeping` sleeps (2 s in the seed).
const NAP: Duration = Duration::from_millis(300);

fn sleeping() {
    println!("  Before sleep");
    std::thread::sleep(NAP);
    println!("  After sleep");
}

fn main() -> Result<(), Error> {
    multiproc::init();

    println!("start, then join:");
    let mut p = Process::new(sleeping, ()); // no arguments: pass ()
    println!("  Before start");
    let t = Instant::now();
    p.start()?;
    println!("  After start");
    p.join()?;
    println!("  After join");
    assert!(t.elapsed() >= NAP, "join returned before the child slept");
    assert_eq!(p.exitcode(), Some(0));

    println!("join with a timeout longer than the nap (the seed's 3 s):");
    let mut p = Process::new(sleeping, ()).with_daemon(false);
    println!("  Before start");
    p.start()?;
    println!("  is_alive: {}", p.is_alive());
    assert!(p.is_alive());
    println!("  After start");
    p.join_timeout(Duration::from_secs(3))?; // Ok: it ended within 3 s
    println!("  After join");
    println!("  is_alive: {}", p.is_alive());
    assert!(!p.is_alive());

    println!("join with a timeout shorter than the nap:");
    let mut p = Process::new(sleeping, ());
    p.start()?;
    let early = p.join_timeout(Duration::from_millis(50));
    println!(
        "  join_timeout(50 ms) -> {early:?}, is_alive: {}",
        p.is_alive()
    );
    assert!(matches!(early, Err(Error::Timeout)));
    assert!(p.is_alive(), "a timed-out join leaves the child running");
    p.join_timeout(Duration::from_secs(3))?;
    println!("  join_timeout(3 s)   -> Ok, is_alive: {}", p.is_alive());
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(0));
    Ok(())
}
