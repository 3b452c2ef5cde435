//! Helpers shared by the integration tests: deadlines on every blocking call, and looks at /proc.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

mod block_on;
#[allow(unused_imports)] // used by the async tests only
pub use block_on::block_on;

/// Runs `f` on another thread and fails the test if it does not finish within `limit`:
/// "never hangs" is checked, not hoped for.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("did not finish within {limit:?}: hung"),
    }
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Pids of this process's children that are still alive or unreaped, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(s) = std::fs::read_to_string(path) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether a process exists (alive or zombie).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// State letter of a process from /proc (R, S, Z, …), if it exists.
pub fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Waits up to `limit` for `cond` to hold.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Sends `SIGKILL` to `pid` (gone already is fine); returns whether it was sent.
pub fn sigkill(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|pid| {
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
    })
}

/// Starts `sleep 60` as a plain child (`Command::spawn`, not a multiproc `Process`) and
/// returns its pid, leaving it running.
pub fn spawn_plain_sleeper() -> u32 {
    std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep(1) could not be started")
        .id()
}

/// Resident memory of process `pid` in bytes (`VmRSS` in /proc/<pid>/status), 0 if it is gone.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs each named test — a function taking a `multiproc::StartMethod` — once under every start
/// method, as `spawn::name`, `fork::name` and `forkserver::name`: the supervision promises are
/// checked for each way a child can be started, from one body.
#[macro_export]
macro_rules! for_each_start_method {
    ($($test:ident),* $(,)?) => {
        mod spawn {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::Spawn) })*
        }
        mod fork {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::Fork) })*
        }
        mod forkserver {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::ForkServer) })*
        }
    };
}

/// A pool of `n` workers started with `method`.
pub fn pool(n: usize, method: multiproc::StartMethod) -> multiproc::Pool {
    multiproc::Pool::builder()
        .processes(n)
        .start_method(method)
        .build()
        .unwrap()
}
