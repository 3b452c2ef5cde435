//! Futexes on shared memory: sleep until a 32-bit word changes, wake the sleepers.
//!
//! The words live in memory shared between processes, so these are "shared" futexes (no
//! `FUTEX_PRIVATE_FLAG`): the kernel keys them by the physical page, whichever address each
//! process mapped it at.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

/// Sleeps while `*word == expected`, at most `timeout` (forever if `None`). Returns on a wake,
/// a change of the word, a signal, or the timeout; the caller re-checks its condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => {}
        // Nothing else can happen with a valid, aligned word; waiting again is always safe.
        Err(_) => {}
    }
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // Can only fail for an invalid address, which a reference cannot be.
    let _ = futex::wake(word, futex::Flags::empty(), n);
}
