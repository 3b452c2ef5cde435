//! Processes that are started and never joined. Ports three seed programs that do this:
//! seed 001's first program ("创建进程": `foo(i)` in three processes, then "main proccess stop"),
//! seed 004's first `cube` program (the same with five processes) and seed 004's `sleeping`
//! program with `p.join()` commented out.
//!
//! ```python
//! def foo(i):
//!     print('say hi', i)
//!
//! if __name__ == '__main__':
//!     for i in range(3):
//!         p = Process(target=foo, args=(i,))
//!         p.start()
//!     print('main proccess stop')       # printed first; the children still run
//! ```
//!
//! ```python
//! def sleeping():
//!     print("Before sleep"); time.sleep(2); print("After sleep")
//!
//! if __name__ == '__main__':
//!     p = Process(target=sleeping)
//!     print('Before start'); p.start(); print('After start')
//!     #p.join()
//!     print("After join")                # before "After sleep": nothing waited
//! ```
//!
//! As in Python, a child whose handle is dropped keeps running, and a program that ends
//! normally waits for its live non-daemon children before it exits (daemons are killed
//! instead). The program's *last line* runs first; its *exit* comes after the children.
//!
//! What happens after `main` returns cannot be checked from inside `main`, so each seed's
//! `__main__` runs here as a `Process` of its own (a `Process` child waits for its own
//! children at exit, by the same rule), and this program checks from outside that the child
//! did not end before its never-joined children did. In the first part the children wait for
//! an `Event` before they speak, so the order is certain rather than likely.
//!
//! Run: `cargo run --release --example never_joined`

use std::time::{Duration, Instant};

use multiproc::{Error, Event, Process, Queue};

/// How long the `sleeping` child sleeps (2 s in the seed).
const NAP: Duration = Duration::from_millis(300);

/// Seed 001's `foo`, with a log the parent can read and a gate that keeps it from speaking
/// before it is allowed to.
fn foo(i: u32, log: Queue<String>, go: Event) {
    assert!(
        go.wait_timeout(Duration::from_secs(10)),
        "never allowed to speak"
    );
    println!("  say hi {i}");
    log.put(format!("say hi {i}")).expect("put");
}

/// Seed 001's `__main__`: starts three processes and never joins them. Returns how many
/// children are still running when it is done.
fn seed_001_main(log: Queue<String>, go: Event) -> usize {
    for i in 0..3 {
        let mut p = Process::new(foo, (i, log.clone(), go.clone()));
        p.start().expect("start");
        // `p` is dropped here, as Python rebinds `p`: the child goes on running.
    }
    println!("  main proccess stop");
    log.put("main proccess stop".to_string()).expect("put");
    multiproc::active_children().len()
}

/// Seed 004's `sleeping`: a target of no arguments.
fn sleeping() {
    println!("  Before sleep");
    std::thread::sleep(NAP);
    println!("  After sleep");
}

/// Seed 004's `__main__` without `p.join()`.
fn seed_004_main() {
    let mut p = Process::new(sleeping, ());
    println!("  Before start");
    p.start().expect("start");
    println!("  After start");
    // p.join()
    println!("  After join");
}

fn main() -> Result<(), Error> {
    multiproc::init();

    println!("seed 001: three processes, never joined");
    let log = Queue::new()?;
    let go = Event::new()?;
    let mut program = Process::new(seed_001_main, (log.clone(), go.clone())).with_name("seed-001");
    program.start()?;
    // Its last line has run, while its three children are still waiting to speak...
    assert_eq!(
        log.get_timeout(Duration::from_secs(10))?,
        "main proccess stop"
    );
    // ...but its process has not ended: at exit it waits for them.
    assert!(matches!(
        program.join_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert!(program.is_alive());
    go.set();
    let running_at_return = *program.join_timeout(Duration::from_secs(10))?;
    assert_eq!(
        running_at_return, 3,
        "three children were running when it returned"
    );
    let mut said = (0..3)
        .map(|_| log.get_timeout(Duration::from_secs(5)))
        .collect::<Result<Vec<_>, _>>()?;
    said.sort();
    assert_eq!(said, ["say hi 0", "say hi 1", "say hi 2"]);
    assert!(log.empty());
    println!("  -> the program ended only after its three children had spoken");

    println!("seed 004: `sleeping` without join");
    let mut program = Process::new(seed_004_main, ()).with_name("seed-004");
    let t = Instant::now();
    program.start()?;
    program.join_timeout(Duration::from_secs(10))?;
    let lived = t.elapsed();
    // The child started sleeping after the program had started, so the program lived at least
    // as long as that sleep: it waited at exit.
    assert!(
        lived >= NAP,
        "the program ended after {lived:?}, before its child"
    );
    println!("  -> the program ended after {lived:.2?}, once `sleeping` ({NAP:?}) was done");
    Ok(())
}
