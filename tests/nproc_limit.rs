//! A process limit that passes (issue 9): while `RLIMIT_NPROC` forbids new threads, starting a
//! process or a pool fails with the OS cause; once it is lifted, both work again. Root ignores
//! the limit, so the test re-runs this binary as an unprivileged user (with `setpriv`), and the
//! limit is that user's: a file of its own.

mod common;
use common::{SECS, within};
use multiproc::{Pool, Process};
use rustix::process::{Resource, getrlimit, setrlimit};

fn double(x: u32) -> u32 {
    x * 2
}

/// Not run on its own: `spawning_works_again_after_a_process_limit` runs it as uid 65534.
#[test]
#[ignore]
fn inner_spawn_under_a_process_limit() {
    let saved = getrlimit(Resource::Nproc);
    let mut tight = saved;
    // This user already runs more threads than that: no new one may start.
    tight.current = Some(1);
    setrlimit(Resource::Nproc, tight).unwrap();
    let probe = std::thread::Builder::new().spawn(|| ());
    let mut first = Process::new(double, 1u32);
    let started = first.start();
    let pool = Pool::new(1).map(drop);
    setrlimit(Resource::Nproc, saved).unwrap();
    if probe.is_ok() {
        println!("SKIPPED: RLIMIT_NPROC does not stop thread creation for this user here");
        return;
    }
    for (what, outcome) in [("Process::start", started), ("Pool::new", pool)] {
        let err = outcome.expect_err(what).to_string();
        assert!(
            err.contains("Resource temporarily unavailable"),
            "{what} under the limit: {err}"
        );
    }
    // The limit is lifted: starting works again.
    within(SECS(60), || {
        let mut p = Process::new(double, 21u32);
        p.start().unwrap();
        assert_eq!(p.join().cloned().unwrap(), 42);
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(double, 4).unwrap(), 8);
    });
}

#[test]
fn spawning_works_again_after_a_process_limit() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a copy of itself as another user");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = within(SECS(120), move || {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(exe)
            .args(["--exact", "inner_spawn_under_a_process_limit"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .output()
    });
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: could not run setpriv: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("running 1 test") {
        eprintln!("SKIPPED: this test binary did not run as uid 65534: {stderr}");
        return;
    }
    if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIPPED:")) {
        eprintln!("{line}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
