//! `Process` basics: one child per value, `run()` against `start()`, joining inside or after the
//! loop, `is_alive()` around `join_timeout`, a daemon, and `terminate()` with its exit code.
//! Ports seed 004's `cube` programs (`run()` instead of `start()`, and the five processes
//! over `range(10)` joined inside or after the loop, here one value each):
//!
//! ```python
//! def cube(x):
//!     print(f"{x} cubed is {x**3} by {current_process().name} (pid {os.getpid()})")
//!
//! for x in [1, 2, 3, 4]:
//!     p = Process(target=cube, args=(x,)); p.start(); p.join()   # one at a time
//! procs = [Process(target=cube, args=(x,)) for x in [1, 2, 3, 4]]
//! for p in procs: p.start()
//! for p in procs: p.join()                                        # all at once
//! p.terminate(); p.join(); print(p.exitcode)                      # -15
//! ```
//!
//! Run: `cargo run --release --example process_basics`

use std::time::{Duration, Instant};

use multiproc::{Error, Process};

/// Prints who computed the cube, then returns it.
fn cube(x: i64) -> i64 {
    let me = multiproc::current_process();
    println!(
        "  {x} cubed is {:>2} by {} (pid {})",
        x * x * x,
        me.name(),
        me.pid()
    );
    x * x * x
}

/// `cube` after a 200 ms nap, so that running in parallel shows in the timings.
fn slow_cube(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(200));
    cube(x)
}

/// Sleeps `ms` milliseconds, then reports.
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    println!(
        "  {} woke up after {ms} ms",
        multiproc::current_process().name()
    );
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let values = [1, 2, 3, 4];
    let me = multiproc::current_process();
    println!("parent: {} (pid {})", me.name(), me.pid());

    println!("\nrun() calls the function here, in the parent (same pid):");
    Process::new(cube, 2).run()?;

    println!("\nstart() runs it in a child process of its own:");
    let mut p = Process::new(cube, 2).with_name("cuber");
    p.start()?;
    println!("  started pid {:?}; join() returned {}", p.pid(), p.join()?);

    println!("\njoin inside the loop: one child at a time");
    let t = Instant::now();
    for &x in &values {
        let mut p = Process::new(slow_cube, x);
        p.start()?;
        p.join()?;
    }
    println!("  sequential: {:.2?}", t.elapsed());

    println!("\njoin after the loop: all children at once");
    let t = Instant::now();
    let mut procs: Vec<Process<i64>> = values.iter().map(|&x| Process::new(slow_cube, x)).collect();
    for p in &mut procs {
        p.start()?;
    }
    let cubes = procs
        .iter()
        .map(Process::join)
        .collect::<Result<Vec<_>, _>>()?;
    println!("  parallel:   {:.2?}  -> {cubes:?}", t.elapsed());

    println!("\nis_alive() around join_timeout:");
    let mut p = Process::new(nap, 300).with_name("napper");
    p.start()?;
    println!("  after start:             is_alive = {}", p.is_alive());
    let early = p.join_timeout(Duration::from_millis(50));
    println!(
        "  join_timeout(50 ms)  ->  {early:?}, is_alive = {}",
        p.is_alive()
    );
    p.join_timeout(Duration::from_secs(2))?;
    println!(
        "  join_timeout(2 s)    ->  Ok, is_alive = {}, exitcode = {:?}",
        p.is_alive(),
        p.exitcode()
    );

    println!("\na daemon is killed when its handle is dropped:");
    let daemon_pid = {
        let mut daemon = Process::new(nap, 10_000)
            .with_name("daemon")
            .with_daemon(true);
        let mut worker = Process::new(nap, 100).with_name("non-daemon");
        daemon.start()?;
        worker.start()?;
        worker.join()?;
        let _ = daemon.join_timeout(Duration::from_millis(50));
        println!(
            "  daemon is_daemon = {}, is_alive = {}",
            daemon.is_daemon(),
            daemon.is_alive()
        );
        println!("  dropping the daemon's handle: SIGKILL, it never wakes up");
        daemon.pid()
    };
    if let Some(pid) = daemon_pid {
        // The handle is gone, so look the pid up in /proc: it disappears once reaped.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        println!("  daemon pid {pid} gone: {gone}");
    }

    println!("\nterminate() sends SIGTERM:");
    let mut p = Process::new(nap, 10_000).with_name("doomed");
    p.start()?;
    println!(
        "  before terminate: is_alive = {}, exitcode = {:?}",
        p.is_alive(),
        p.exitcode()
    );
    p.terminate()?;
    match p.join() {
        Err(e) => println!("  join() -> {e}"),
        Ok(()) => println!("  join() -> Ok (unexpected)"),
    }
    println!(
        "  after join:       is_alive = {}, exitcode = {:?}",
        p.is_alive(),
        p.exitcode()
    );
    assert_eq!(p.exitcode(), Some(-15));
    Ok(())
}
