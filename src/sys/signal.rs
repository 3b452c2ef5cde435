//! Telling a stack overflow from any other segfault, in a child process.
//!
//! A child serves tasks from a start-up hook that runs before `main` (see `child::start`), so
//! std's runtime never installs its guard-page handler there, and an overflow would end the
//! child as a bare `SIGSEGV`. [`catch_stack_overflow`] installs a handler of ours for `SIGSEGV`
//! and `SIGBUS`, running on an alternate signal stack (the thread's own stack is used up when it
//! matters). It compares the fault address with the region just below the lowest address of
//! the watched thread's stack; on a match it records the signal in a word the parent reads
//! ([`stack_overflow_signal`]) and writes one line to stderr, as std would, then restores the
//! default action and raises the signal again, so the child dies by the same signal as without
//! the handler: its exit status does not change, only the parent's reading of it. Any other
//! fault is handed back the same way to the action ours replaced: the default one, or, in a
//! forked child, the handler inherited from the parent (a JIT's or a sanitizer's keeps working
//! there). The handler makes async-signal-safe calls only (atomics, `write`, `gettid`,
//! `getpid`, `sigaction`, `raise`) and allocates nothing.
//!
//! Only the thread that installed the handler is watched: in a child, the main thread, which
//! runs every task. A thread that a task starts has no alternate stack (std gives its threads
//! one only when its own runtime installed its handler), so when such a thread overflows, the
//! kernel cannot run any handler and the process dies by a plain `SIGSEGV`, as before.
//!
//! This is the one place in the crate with signal-handling code (the rest of `src/sys/` uses
//! `libc` only where rustix has nothing: `atexit`).

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

/// Usable size of the alternate signal stack, at least: the handler needs little, but the
/// kernel's signal frame can be large (AVX-512, Arm SVE/SME state), so the kernel's own minimum
/// is checked too.
const ALT_STACK: usize = 64 << 10;

/// How far below the lowest address of the stack a fault still counts as an overflow. With
/// stack probes (Rust code; C built with `-fstack-clash-protection`) the first fault is in the
/// page just below; a large frame without probes may reach further down. Linux keeps far more
/// room than this free below a stack's limit, so a fault there is the stack's.
const GUARD_BELOW: usize = 256 << 10;

/// The addresses `[GUARD_LO, GUARD_HI)` whose fault in thread [`WATCHED`] is an overflow.
static GUARD_LO: AtomicUsize = AtomicUsize::new(0);
static GUARD_HI: AtomicUsize = AtomicUsize::new(0);
/// Thread id of the watched thread (0: none).
static WATCHED: AtomicI32 = AtomicI32::new(0);
/// Where an overflow is recorded (null: nowhere).
static REPORT: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());
/// The actions [`on_fault`] replaced, for `SIGSEGV` and `SIGBUS`: what a fault that is not an
/// overflow is handed back to.
static PREVIOUS: [Previous; 2] = [Previous::new(), Previous::new()];

/// An action saved before ours was installed, read by the handler.
struct Previous {
    saved: AtomicBool,
    action: UnsafeCell<MaybeUninit<libc::sigaction>>,
}

// SAFETY: `action` is written only before `saved` is set (by `install`, before our handler is
// installed for that signal, and never again once set), and read only after `saved` is seen.
unsafe impl Sync for Previous {}

impl Previous {
    const fn new() -> Self {
        Self {
            saved: AtomicBool::new(false),
            action: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Which slot of [`PREVIOUS`] is `signum`'s.
    fn of(signum: c_int) -> Option<&'static Previous> {
        match signum {
            libc::SIGSEGV => Some(&PREVIOUS[0]),
            libc::SIGBUS => Some(&PREVIOUS[1]),
            _ => None,
        }
    }

    /// Saves `action`, once: a later install (a child that watches another thread) keeps the
    /// first, which is not ours.
    fn save(&self, action: &libc::sigaction) {
        if !self.saved.load(Ordering::Acquire) {
            // SAFETY: not saved yet, so neither read by the handler (see the `Sync` impl).
            unsafe { (*self.action.get()).write(*action) };
            self.saved.store(true, Ordering::Release);
        }
    }

    /// The saved action, if any.
    fn get(&self) -> Option<&libc::sigaction> {
        // SAFETY: written before `saved` was set, and never again (see the `Sync` impl).
        self.saved
            .load(Ordering::Acquire)
            .then(|| unsafe { (*self.action.get()).assume_init_ref() })
    }
}

/// Makes a stack overflow in the calling thread recognisable: from now on, a `SIGSEGV` or
/// `SIGBUS` from a fault just below this thread's stack stores the signal number in `report`
/// and prints a line on stderr before the process dies by that signal as it would have anyway.
/// Other faults, and those signals when sent by a process, are left to their default action.
///
/// For children only: the handler replaces none but the default action, and never std's own
/// (so a program's `main` thread keeps std's report). A later call watches its caller instead.
///
/// # Errors
/// The thread's stack could not be located, or the alternate stack or a handler could not be
/// set up: overflows then go unrecognised (for one signal or both), as without this call.
pub(crate) fn catch_stack_overflow(
    report: &'static AtomicU64,
    existing: Existing,
) -> io::Result<()> {
    let page = page_size();
    let lowest = stack_lowest()?;
    GUARD_LO.store(lowest.saturating_sub(GUARD_BELOW), Ordering::Release);
    // Generous upwards too: the C library rounds the stack's limit to pages.
    GUARD_HI.store(lowest.saturating_add(page), Ordering::Release);
    WATCHED.store(
        rustix::thread::gettid().as_raw_nonzero().get(),
        Ordering::Release,
    );
    REPORT.store(ptr::from_ref(report).cast_mut(), Ordering::Release);
    ensure_alt_stack(page)?;
    for signum in [libc::SIGSEGV, libc::SIGBUS] {
        install(signum, existing)?;
    }
    Ok(())
}

/// The signal that ended a child whose handler recorded a stack overflow in `report`, if it did.
pub(crate) fn stack_overflow_signal(report: &AtomicU64) -> Option<i32> {
    match report.load(Ordering::Acquire) {
        0 => None,
        signum => i32::try_from(signum).ok(),
    }
}

/// Whether this process was set up to catch stack overflows: [`catch_stack_overflow`] ran, or
/// [`on_fault`] handles `SIGSEGV` (for tests: never in a parent).
#[cfg(test)]
pub(crate) fn installed_here() -> bool {
    if !REPORT.load(Ordering::Acquire).is_null() {
        return true;
    }
    // SAFETY: `sigaction` is plain data; all zeroes is a valid value to be overwritten.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only asks for the current one, written to `current`.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, ptr::null(), &mut current) };
    rc == 0 && current.sa_sigaction == handler_address()
}

/// Test support: sets `SIGCHLD` to `SIG_IGN`, as a user's program may: the kernel then reaps
/// children itself, behind the back of any `waitpid`.
#[cfg(test)]
pub(crate) fn ignore_child_exits() -> io::Result<()> {
    // SAFETY: `SIG_IGN` installs no handler, so there is no handler code to make safe.
    match unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) } {
        libc::SIG_ERR => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// [`on_fault`] as `sigaction` takes it.
fn handler_address() -> libc::sighandler_t {
    on_fault as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// The lowest address of the calling thread's stack: for the main thread, as far down as the
/// stack size limit lets it grow; for another thread, the top of its guard page.
fn stack_lowest() -> io::Result<usize> {
    // SAFETY: `pthread_attr_t` is plain data; all zeroes is a valid value to be overwritten.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `pthread_self()` names the calling thread, alive for the call; `attr` is writable.
    let rc = unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let mut addr: *mut c_void = ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attr` was initialised by `pthread_getattr_np`; both outputs are writable.
    let rc = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) };
    // SAFETY: `attr` was initialised above and is destroyed once, here.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(addr as usize)
}

/// Gives the calling thread an alternate signal stack unless it has one. The mapping (with a
/// guard page below it) is kept for the life of the process: the handler may run at any time.
fn ensure_alt_stack(page: usize) -> io::Result<()> {
    // SAFETY: `stack_t` is plain data (a pointer, flags, a size); all zeroes is valid.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only asks for the current one, written to `current`.
    if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    // SAFETY: getauxval only reads the auxiliary vector; 0 means "not told".
    let minimum = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let size = ALT_STACK
        .max(minimum.saturating_mul(4))
        .next_multiple_of(page);
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing overlaps nothing.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            ptr::null_mut(),
            size + page,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::STACK,
        )
    }?;
    let stack = libc::stack_t {
        ss_sp: base.wrapping_byte_add(page),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: `base` starts our own mapping of `size + page` bytes: its first page becomes the
    // guard below the stack.
    let set_up = unsafe { rustix::mm::mprotect(base, page, MprotectFlags::empty()) }
        .map_err(io::Error::from)
        .and_then(|()| {
            // SAFETY: `stack` is the `size` bytes of our mapping above the guard, handed to
            // the kernel and used by nothing else.
            match unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
    if set_up.is_err() {
        // SAFETY: the mapping is ours and nothing refers to it: it never became the stack.
        let _ = unsafe { rustix::mm::munmap(base, size + page) };
    }
    set_up
}

/// What [`catch_stack_overflow`] does with a handler the process already has for a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Leave it (a sanitizer's, or std's when `init()` runs from `main`): the handler is
    /// installed only over the default action.
    Keep,
    /// Take over from it: a forked child's, inherited from a parent whose std runtime installed
    /// its own, which would report an overflow as an abort of the child. Faults that are not
    /// overflows are handed back to it.
    Replace,
}

/// Routes `signum` to [`on_fault`] if its action is the default one, or whatever it is.
fn install(signum: c_int, existing: Existing) -> io::Result<()> {
    // SAFETY: `sigaction` is plain data; all zeroes is a valid value to be overwritten.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only asks for the current one, written to `old`.
    if unsafe { libc::sigaction(signum, ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if old.sa_sigaction != libc::SIG_DFL && existing == Existing::Keep {
        // Someone else's handler (a sanitizer's, or std's when `init()` runs from `main`).
        return Ok(());
    }
    if old.sa_sigaction != handler_address() {
        if let Some(previous) = Previous::of(signum) {
            previous.save(&old);
        }
    }
    // SAFETY: as above; the fields that matter are set below, and the mask is emptied.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler_address();
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is a writable signal set.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `on_fault` has the signature `SA_SIGINFO` calls for and is async-signal-safe.
    if unsafe { libc::sigaction(signum, &action, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The handler (see the module docs). Async-signal-safe: no allocation, no locks.
extern "C" fn on_fault(signum: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    // SAFETY: with `SA_SIGINFO` the kernel passes a valid `siginfo_t` for this delivery.
    let info = unsafe { &*info };
    // Only a fault raised by the kernel (`si_code > 0`) has an address; `kill` or `raise` from
    // a process (`si_code <= 0`) is never an overflow.
    let fault_at = (info.si_code > 0).then(|| {
        // SAFETY: for SIGSEGV and SIGBUS (the only signals routed here) raised by a fault, the
        // kernel filled the union with the fault address.
        unsafe { info.si_addr() as usize }
    });
    if fault_at.is_some_and(is_overflow) {
        let report = REPORT.load(Ordering::Acquire);
        // SAFETY: a non-null `REPORT` came from a `&'static AtomicU64`.
        if let Some(report) = unsafe { report.as_ref() } {
            report.store(u64::from(signum.unsigned_abs()), Ordering::Release);
        }
        say_overflowed();
        die_by(signum);
    } else {
        hand_back(signum);
    }
}

/// Whether a fault at `addr` in the current thread is an overflow of the watched stack.
fn is_overflow(addr: usize) -> bool {
    let in_guard =
        (GUARD_LO.load(Ordering::Acquire)..GUARD_HI.load(Ordering::Acquire)).contains(&addr);
    in_guard && rustix::thread::gettid().as_raw_nonzero().get() == WATCHED.load(Ordering::Acquire)
}

/// Writes "thread 'main' has overflowed its stack" like std, naming this child's pid.
fn say_overflowed() {
    let mut pid = [0u8; 10];
    let pid = decimal(
        rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
        &mut pid,
    );
    let mut line = [0u8; 96];
    let mut len = 0;
    for part in [
        &b"\nthread 'main' has overflowed its stack (multiproc child, pid "[..],
        pid,
        b")\n",
    ] {
        line[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    // SAFETY: `line` holds `len` initialised bytes; writing to stderr has no other effect.
    let _ = unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len) };
}

/// `n` in decimal, in the tail of `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// What [`on_termination_say`] writes: a `&'static str`'s address and length, and the process
/// that asked (a forked copy, which inherits the handler, says nothing).
#[cfg(feature = "mpi")]
static TERMINATION_NOTE: (AtomicPtr<u8>, AtomicUsize, AtomicI32) = (
    AtomicPtr::new(ptr::null_mut()),
    AtomicUsize::new(0),
    AtomicI32::new(0),
);

/// Has this process (not a copy forked from it) write `note` to stderr when `SIGTERM` ends
/// it, then die by the signal as before (same exit status). Only if nothing else handles `SIGTERM` (its action is the default
/// one); best effort.
#[cfg(feature = "mpi")]
pub(crate) fn on_termination_say(note: &'static str) {
    // SAFETY: getpid has no preconditions.
    TERMINATION_NOTE
        .2
        .store(unsafe { libc::getpid() }, Ordering::Relaxed);
    TERMINATION_NOTE.1.store(note.len(), Ordering::Relaxed);
    TERMINATION_NOTE
        .0
        .store(note.as_ptr().cast_mut(), Ordering::Release);
    // SAFETY: `sigaction` is plain data; all zeroes is a valid value to be overwritten.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action into `old`, a valid `sigaction`.
    if unsafe { libc::sigaction(libc::SIGTERM, ptr::null(), &mut old) } != 0
        || old.sa_sigaction != libc::SIG_DFL
    {
        return;
    }
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = say_and_die as extern "C" fn(c_int) as usize;
    // SAFETY: installs a valid action whose handler makes async-signal-safe calls only.
    unsafe { libc::sigaction(libc::SIGTERM, &action, ptr::null_mut()) };
}

/// The `SIGTERM` handler of [`on_termination_say`]: `write`, then the default action.
#[cfg(feature = "mpi")]
extern "C" fn say_and_die(signum: c_int) {
    let note = TERMINATION_NOTE.0.load(Ordering::Acquire);
    let len = TERMINATION_NOTE.1.load(Ordering::Relaxed);
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let ours = TERMINATION_NOTE.2.load(Ordering::Relaxed) == unsafe { libc::getpid() };
    if !note.is_null() && ours {
        // SAFETY: `note` and `len` describe a `&'static str` (stored length first, pointer
        // last with release ordering); `write` is async-signal-safe.
        unsafe { libc::write(2, note.cast(), len) };
    }
    die_by(signum);
}

/// Restores the default action of `signum` and raises it: the process dies by it as soon as
/// the handler returns (the signal stays blocked until then), whether the kernel or a process
/// sent it.
fn die_by(signum: c_int) {
    // SAFETY: all zeroes is `SIG_DFL` with an empty mask and no flags: the default action.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    raise_with(signum, &default);
}

/// Hands a signal that is not an overflow back to the action ours replaced — the default one,
/// or (in a forked child) the parent's handler — by restoring it and raising the signal again.
fn hand_back(signum: c_int) {
    match Previous::of(signum).and_then(Previous::get) {
        Some(previous) => raise_with(signum, previous),
        None => die_by(signum),
    }
}

/// Installs `action` for `signum` and raises it: it is delivered when the handler returns.
fn raise_with(signum: c_int, action: &libc::sigaction) {
    // SAFETY: installs a valid `sigaction` (the default one, or one the system gave us).
    unsafe { libc::sigaction(signum, action, ptr::null_mut()) };
    // SAFETY: raising a signal has no memory effects; it is delivered when the handler returns.
    unsafe { libc::raise(signum) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_every_digit() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_194_304, &mut buf), b"4194304");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }

    #[test]
    fn the_stack_lies_above_its_lowest_address() {
        let local = 0u8;
        let here = std::hint::black_box(&local) as *const u8 as usize;
        let lowest = stack_lowest().unwrap();
        // Well inside a thread's stack (libtest's threads have megabytes), never below it.
        assert!(
            lowest < here && here - lowest < 1 << 30,
            "{lowest:#x} {here:#x}"
        );
    }

    #[test]
    fn nothing_is_reported_until_the_handler_stores_a_signal() {
        let report = AtomicU64::new(0);
        assert_eq!(stack_overflow_signal(&report), None);
        report.store(11, Ordering::Relaxed);
        assert_eq!(stack_overflow_signal(&report), Some(11));
    }
}
