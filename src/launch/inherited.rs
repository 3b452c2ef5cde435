//! What a forked copy of this process forgets first, and how it leaves.
//!
//! A copy made by `fork` (the fork start method, or a fork server's child) has the memory of
//! the process it was copied from, but only the thread that forked. The crate's per-process
//! state in that memory is the parent's: its children, its spawner thread and fork server,
//! its shared-memory tracker and the names it owns, its connections and holds on managers, the
//! identities that locks and queues cache, and who it is (`current_process`). Some of it sits
//! behind mutexes that another thread of the parent may have held at the moment of the fork,
//! held for ever in the copy. So [`forget`] puts fresh state in place of each, without taking
//! those locks and without dropping what was there: dropping the parent's link to a child
//! would kill the parent's child. What is forgotten is the copy's own memory, merely leaked.
//!
//! [`live`] runs a copy's life between the two, and `leave` ends it as Python ends a forked
//! child: its own at-exit duties (the `Process`es it started), std's `stdout` flushed, then
//! `_exit`, never the parent's destructors or exit hooks.

use std::cell::UnsafeCell;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use crate::child::protocol::EXIT_PROTOCOL;
use crate::sys;
use crate::wire::Channel;

/// Forgets the per-process state a forked copy inherited (see the module docs): first thing in
/// the copy (see [`live`]).
fn forget() {
    close_links();
    sys::proc::forget_identities();
    crate::current::forget_inherited();
    crate::bootstrap::forget_inherited();
    super::forkserver::forget_inherited();
    crate::children::forget_inherited();
    crate::shared::memory::tracker::forget_inherited();
    crate::manager::forget_inherited();
}

/// Both ends of the sockets of this process's children, by descriptor number (one bit each, for
/// the numbers below 65,536; a larger one is not closed): a forked copy closes them first. A
/// worker must not keep its siblings' channels open — a sibling would not see its parent hang
/// up while the copy lives, and whatever the copy wrote there would reach the sibling. Bits,
/// not a list behind a lock: the copy reads them whatever the parent's threads were doing.
static LINKS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// Descriptor `fd`'s word of [`LINKS`] and its bit there, if it has one.
fn link_bit(fd: RawFd) -> Option<(&'static AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok()?;
    Some((LINKS.get(fd / 64)?, 1 << (fd % 64)))
}

/// Marks descriptor `fd` to be closed in forked copies.
fn close_in_copies(fd: RawFd) {
    if let Some((word, bit)) = link_bit(fd) {
        word.fetch_or(bit, Ordering::Release);
    }
}

/// Unmarks descriptor `fd`: before it is closed (its number may then name something else), or
/// in a copy, for the copy's own socket.
pub(crate) fn keep_in_copies(fd: RawFd) {
    if let Some((word, bit)) = link_bit(fd) {
        word.fetch_and(!bit, Ordering::Release);
    }
}

/// One end of a child's socket, closed in forked copies for as long as this owns it (see
/// [`LINKS`]): from the moment the socket exists, so that a copy forked while another thread
/// starts a child holds neither end.
#[derive(Debug)]
pub(crate) struct LinkFd(Option<OwnedFd>);

impl LinkFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        close_in_copies(fd.as_raw_fd());
        Self(Some(fd))
    }

    /// The parent's end as a channel, still closed in copies: its new owner, a `ChildLink`,
    /// unmarks it before it closes it.
    pub(crate) fn into_channel(mut self, io: crate::wire::Io) -> std::io::Result<Channel> {
        let Some(fd) = self.0.take() else {
            unreachable!("a LinkFd owns its descriptor until it is consumed");
        };
        let raw = fd.as_raw_fd();
        Channel::new(fd, io).inspect_err(|_| keep_in_copies(raw))
    }
}

impl AsFd for LinkFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Some(fd) => fd.as_fd(),
            None => unreachable!("a LinkFd owns its descriptor until it is consumed"),
        }
    }
}

impl Drop for LinkFd {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            keep_in_copies(fd.as_raw_fd());
        }
    }
}

/// Closes, in a forked copy, the descriptors marked by [`close_in_copies`].
fn close_links() {
    for (i, word) in LINKS.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::Acquire);
        while bits != 0 {
            let fd = (i * 64 + bits.trailing_zeros() as usize) as RawFd;
            bits &= bits - 1;
            // SAFETY: a parent's end of a child's socket, open at the fork (marked while its
            // link lives, unmarked before it is closed), so open in the copy; its owner, the
            // parent's link, is never used or dropped in the copy (it lives in memory of the
            // parent's other threads, or in state forgotten below).
            drop(unsafe { sys::fd::adopt(fd) });
        }
    }
}

/// A forked copy's whole life: forgets what it inherited, runs `serve`, and leaves with the
/// status it returns — or [`EXIT_PROTOCOL`] if anything panics on the way, which must not
/// unwind into the frames of the thread that forked (they are the parent's).
pub(crate) fn live(serve: impl FnOnce() -> i32) -> ! {
    let code = catch_unwind(AssertUnwindSafe(|| {
        forget();
        serve()
    }))
    .unwrap_or(EXIT_PROTOCOL);
    leave(code)
}

/// How long a leaving copy waits for std's `stdout` to be flushed.
const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// Ends a forked copy with `code` (see the module docs).
fn leave(code: i32) -> ! {
    crate::children::exit_duties();
    // On a thread of its own, and not for long: a lock another thread of the parent held at the
    // fork is held here for ever, and an exit must never wait on it. (Only a partial line
    // printed without a newline can be waiting: std's `stdout` writes whole lines at once.)
    let (flushed, done) = std::sync::mpsc::channel();
    let flusher = std::thread::Builder::new().spawn(move || {
        let _ = std::io::stdout().flush();
        let _ = flushed.send(());
    });
    if flusher.is_ok() {
        let _ = done.recv_timeout(FLUSH_WAIT);
    }
    sys::proc::exit_now(code)
}

/// What `read` makes of the value behind `lock`, in a forked copy: `None` if a thread of the
/// parent held it at the fork (it may be half-changed).
pub(crate) fn peek<T, R>(lock: &PerProcess<Mutex<T>>, read: impl FnOnce(&T) -> R) -> Option<R> {
    match lock.try_lock() {
        Ok(held) => Some(read(&held)),
        Err(TryLockError::Poisoned(poisoned)) => Some(read(&poisoned.into_inner())),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// A static of the crate's per-process state, which a forked copy replaces (see the module
/// docs). It is used as the value it holds (`Deref`); only [`reclaim`] and
/// [`PerProcess::overwrite`], in a forked copy, ever write over it.
pub(crate) struct PerProcess<T>(UnsafeCell<T>);

// SAFETY: shared across threads as the `T` inside is (a `Mutex`, a `OnceLock`); the one write
// outside `T`'s own synchronisation happens when only one thread exists (`overwrite`).
unsafe impl<T: Sync> Sync for PerProcess<T> {}

impl<T> PerProcess<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Writes `fresh` over the value without dropping it.
    ///
    /// # Safety
    /// Only the calling thread exists (a forked copy, before it starts any), and no reference
    /// into the value is alive.
    pub(crate) unsafe fn overwrite(&self, fresh: T) {
        // SAFETY: the caller's guarantee: nothing else reads or refers to the value meanwhile.
        unsafe { std::ptr::write(self.0.get(), fresh) }
    }
}

impl<T> std::ops::Deref for PerProcess<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the value is written only by `overwrite`, whose caller guarantees that no
        // reference into it is alive; otherwise it is shared, and used through its own
        // synchronisation.
        unsafe { &*self.0.get() }
    }
}

/// Puts `fresh` in `lock`'s place in a forked copy, whatever state the parent's threads left
/// it in: through the lock when it is free, over it when a thread that does not exist here
/// holds it. The value that was there is leaked, never dropped.
pub(crate) fn reclaim<T>(lock: &'static PerProcess<Mutex<T>>, fresh: T) {
    match lock.try_lock() {
        Ok(mut held) => std::mem::forget(std::mem::replace(&mut *held, fresh)),
        Err(TryLockError::Poisoned(poisoned)) => {
            std::mem::forget(std::mem::replace(&mut *poisoned.into_inner(), fresh));
            lock.clear_poison();
        }
        // SAFETY: only a forked copy calls this (see `forget`), before it starts any thread:
        // the holder is a thread of the parent that does not exist here, and nothing in this
        // process refers into the mutex.
        Err(TryLockError::WouldBlock) => unsafe { lock.overwrite(Mutex::new(fresh)) },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    static HELD: PerProcess<Mutex<u32>> = PerProcess::new(Mutex::new(1));

    /// A lock another thread holds at the fork is held for ever in the copy: the copy takes it
    /// all the same once reclaimed (and would hang without).
    #[test]
    fn a_lock_held_by_another_thread_at_the_fork_is_usable_in_the_copy() {
        let (locked, unlock) = std::sync::mpsc::channel::<()>();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = HELD.lock().unwrap();
            locked.send(()).unwrap();
            let _ = wait.recv();
        });
        let _ = unlock.recv();
        // SAFETY: the copy takes a futex lock and writes a static: no allocation, no lock
        // another thread might hold but the one under test.
        let pid = unsafe {
            sys::proc::fork_and_run(|| {
                reclaim(&HELD, 7);
                let value = *HELD.lock().unwrap_or_else(|p| p.into_inner());
                value as i32
            })
        }
        .unwrap();
        let pidfd = sys::proc::pidfd(pid).unwrap();
        let exited = sys::fd::wait_readable(
            std::os::fd::AsFd::as_fd(&pidfd),
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        if !exited {
            let _ = sys::proc::signal(pid, sys::proc::Stop::Kill);
        }
        let exit = sys::proc::reap(pid).unwrap();
        done.send(()).unwrap();
        holder.join().unwrap();
        assert!(exited, "the copy hung on the inherited lock");
        assert_eq!(exit, sys::proc::Exit::Code(7));
        assert_eq!(*HELD.lock().unwrap(), 1, "the parent's value is its own");
    }
}
