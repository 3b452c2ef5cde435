//! Processes: re-executing ourselves, reaping, signalling, and knowing who we are.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitOptions};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

pub(crate) fn getppid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
}

fn pid(raw: u32) -> io::Result<Pid> {
    i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))
}

/// What a re-executed copy of this program needs: environment entries and descriptors that must
/// survive `exec` (they keep their numbers).
pub(crate) struct SpawnSpec<'a> {
    pub(crate) env: Vec<(&'static str, String)>,
    /// Variables of this process's environment the child does not inherit.
    pub(crate) remove: Vec<std::ffi::OsString>,
    pub(crate) keep: Vec<BorrowedFd<'a>>,
    /// Arguments after `argv[0]`; chosen so that a program which does not hand control to us
    /// (a libtest harness whose start-up hook did not run, say) does nothing harmful.
    pub(crate) args: Vec<&'static str>,
}

/// Starts `/proc/self/exe` again. The child gets `SIGKILL` when the spawning thread goes away,
/// and refuses to start if its parent is already gone. stdin is `/dev/null`; stdout and
/// stderr are the parent's.
pub(crate) fn spawn_self(spec: SpawnSpec<'_>) -> io::Result<u32> {
    let parent = getpid();
    let keep: Vec<RawFd> = spec.keep.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(&spec.args).stdin(Stdio::null());
    for key in &spec.remove {
        cmd.env_remove(key);
    }
    for (key, value) in &spec.env {
        cmd.env(key, value);
    }
    let hook = move || {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The parent may have died before the line above took effect: then nobody would
        // ever send us the signal, so refuse to start.
        let ppid = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32);
        if ppid != Some(parent) {
            // No allocation between fork and exec: a plain errno.
            return Err(io::Error::from_raw_os_error(Errno::SRCH.raw_os_error()));
        }
        for &raw in &keep {
            // SAFETY: `raw` is one of the descriptors the caller borrowed for this call,
            // open in the parent and therefore in this forked copy.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec, so it may only make async-signal-safe
    // calls: it makes raw syscalls through rustix (prctl, getppid, fcntl) and allocates nothing.
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn()?;
    // Reaping is ours (through the pid or pidfd); std's handle is not needed past this point,
    // and dropping it neither waits nor kills.
    Ok(child.id())
}

/// Which side of a fork the caller is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The process that forked, with the new one's pid.
    Parent(u32),
}

/// Makes a copy of this process with the C library's `fork()`, which keeps the allocator
/// usable in the copy (glibc takes its locks around the fork). The copy is this process's
/// child and has only the calling thread.
///
/// # Safety
/// In the copy, locks that other threads of this process held at the moment of the fork stay
/// held for ever: the copy must not wait on any of them (it resets the crate's own state
/// first, see `launch::inherited`) and must leave with [`exit_now`], never by returning into code
/// that expects the other threads.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: `fork` has no preconditions of its own; what the copy may do is the caller's
    // promise (above).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Makes a copy of this single-threaded process that is a child of *this process's parent*
/// (`CLONE_PARENT`), not of this process: what a fork server does, so that the worker it makes
/// is reaped, watched (pidfd) and signalled by the program that asked for it, exactly as a
/// child it started itself. The copy's parent-death signal must be armed again by the copy.
///
/// The C library's `fork()` takes no flags, so this is the raw system call, made as the C
/// library makes it: the kernel writes the copy's thread id where the C library keeps it
/// (`CLONE_CHILD_SETTID` at the address the kernel was given at start-up, read back with
/// `PR_GET_TID_ADDRESS`), and the copy registers the C library's robust-mutex list again, as
/// `fork()` does. Without `PR_GET_TID_ADDRESS` (a kernel built without checkpoint/restore) the
/// cached thread id stays the caller's; glibc since 2.34 asks the kernel for it where it
/// matters (`raise`, `abort`).
///
/// glibc only: another C library may keep the thread id elsewhere, and would be misled (musl
/// keeps a lock at that address); elsewhere this is `Unsupported`.
///
/// # Safety
/// The calling process must be single-threaded (the fork server is): no lock can then be held
/// by a thread missing in the copy, and nothing needs the C library's fork handlers. The copy
/// must leave with [`exit_now`].
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) unsafe fn fork_sibling() -> io::Result<Forked> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the forkserver start method needs Linux with glibc",
    ))
}

/// See the other `fork_sibling`.
///
/// # Safety
/// As there.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) unsafe fn fork_sibling() -> io::Result<Forked> {
    let mut tid_at: *mut libc::c_int = ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address given, a live local.
    let have_tid_at = unsafe {
        libc::prctl(
            libc::PR_GET_TID_ADDRESS,
            &mut tid_at as *mut *mut libc::c_int,
        )
    } == 0
        && !tid_at.is_null();
    let mut robust_head: *mut libc::c_void = ptr::null_mut();
    let mut robust_len: libc::size_t = 0;
    // SAFETY: get_robust_list for the calling thread (pid 0) writes a pointer and a length to
    // the two live locals.
    let have_robust = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut robust_head as *mut *mut libc::c_void,
            &mut robust_len as *mut libc::size_t,
        )
    } == 0;
    let mut flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    if have_tid_at {
        flags |= (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as libc::c_ulong;
    }
    // The kernel's order of `clone`'s arguments depends on the architecture: the child's tid
    // address is the 4th on x86-64 and most others, the 5th where the 4th is the TLS (arm,
    // powerpc, x86), and s390 swaps the first two. Without CLONE_SETTLS the TLS is ignored, so
    // the address goes in both of the last two places.
    #[cfg(not(target_arch = "s390x"))]
    let (first, second) = (flags, 0);
    #[cfg(target_arch = "s390x")]
    let (first, second) = (0, flags);
    // SAFETY: clone without CLONE_VM and with no new stack is fork: the copy continues here
    // on a copy of this stack. `tid_at` is where the C library keeps this thread's id (the
    // kernel was told at start-up), or null with neither TID flag. The caller guarantees no
    // other thread exists whose locks the copy could miss.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            first,
            second,
            ptr::null_mut::<libc::c_int>(),
            tid_at,
            tid_at,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            if have_robust {
                // SAFETY: the head the C library registered for this thread before the copy,
                // at the same address in the copy; the kernel does not carry it over.
                unsafe { libc::syscall(libc::SYS_set_robust_list, robust_head, robust_len) };
            }
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Ends this process at once with `code`: no exit hooks, no destructors, no flushing of
/// buffers (a forked copy must not run its parent's).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running any code of this one.
    unsafe { libc::_exit(code) }
}

/// A descriptor that becomes readable when the process exits.
pub(crate) fn pidfd(raw: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(pid(raw)?, PidfdFlags::empty())?)
}

fn decode_status(status: rustix::process::WaitStatus) -> Exit {
    if let Some(sig) = status.terminating_signal() {
        Exit::Signal(sig)
    } else {
        Exit::Code(status.exit_status().unwrap_or(0))
    }
}

/// Reaps the child behind `pidfd` if it has exited; `None` if it is still running. Unlike a
/// pid, the descriptor names that child alone, even once the pid is reused.
///
/// # Errors
/// `ECHILD` if the process is not (or no longer) a child of ours to reap: someone else reaped
/// it (a `waitpid(-1)`, or `SIGCHLD` ignored).
pub(crate) fn try_reap_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<Option<Exit>> {
    loop {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(None) => return Ok(None),
            Ok(Some(status)) => {
                return Ok(Some(match status.terminating_signal() {
                    Some(sig) => Exit::Signal(sig),
                    None => Exit::Code(status.exit_status().unwrap_or(0)),
                }));
            }
        }
    }
}

/// Waits for a child to exit and reaps it.
pub(crate) fn reap(raw: u32) -> io::Result<Exit> {
    loop {
        match rustix::process::waitpid(Some(pid(raw)?), WaitOptions::empty()) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(Some((_, status))) => return Ok(decode_status(status)),
            Ok(None) => continue,
        }
    }
}

/// Which signal stops a child: `SIGTERM` asks, `SIGKILL` insists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Term,
    Kill,
}

impl Stop {
    fn signal(self) -> Signal {
        match self {
            Stop::Term => Signal::TERM,
            Stop::Kill => Signal::KILL,
        }
    }
}

/// Sends `stop` to the process behind `pidfd`. Unlike a pid, the descriptor can never name
/// another process, even once this one is reaped and its pid reused. A process that is already
/// gone is not an error.
pub(crate) fn signal_pidfd(pidfd: BorrowedFd<'_>, stop: Stop) -> io::Result<()> {
    match rustix::process::pidfd_send_signal(pidfd, stop.signal()) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `hook` when this process exits normally: `main` returns or `std::process::exit` is
/// called (after std has flushed stdout), on the exiting thread while other threads still run.
/// Not on a signal, `abort`, or `_exit`. Hooks run in the reverse order of registration.
pub(crate) fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // Neither std nor rustix wraps `atexit(3)`.
    // SAFETY: `atexit` takes a function pointer, valid for the life of the program (`hook` is
    // a plain `fn`, not a closure), and only stores it; it is thread-safe in glibc and musl.
    // The hook must not unwind into C: that is the caller's `extern "C"` signature's job
    // (a panic there aborts).
    match unsafe { libc::atexit(hook) } {
        0 => Ok(()),
        _ => Err(io::Error::other(
            "atexit(3) could not register the exit hook",
        )),
    }
}

/// Sends `stop` to process `raw`. A process that is already gone is not an error.
pub(crate) fn signal(raw: u32, stop: Stop) -> io::Result<()> {
    match rustix::process::kill_process(pid(raw)?, stop.signal()) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Arms `SIGKILL` for this process when its parent goes, and checks the parent is still the
/// one that started us (it may have died before the signal was armed).
pub(crate) fn die_with_parent(expected_parent: u32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if getppid() != Some(expected_parent) {
        return Err(io::Error::other("the parent process has already exited"));
    }
    Ok(())
}

/// Lets this process (a child of the crate) outlive its parent: clears the parent-death signal
/// and moves to a session of its own, out of reach of signals meant for the parent's terminal
/// or process group.
pub(crate) fn detach_from_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(None)?;
    // Fails only for a process-group leader, which a freshly spawned child never is; being
    // left in the group is then no worse than before, so it is not an error.
    let _ = rustix::process::setsid();
    Ok(())
}

/// The conventional name of a signal number (`"SIGKILL"`), or `"signal N"`.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Identifies the executable this process runs: device, inode, size and modification time of
/// `/proc/self/exe`. Two processes with the same fingerprint run the same file, so code
/// offsets taken in one are valid in the other.
pub(crate) fn exe_identity() -> io::Result<[u64; 5]> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok([
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
    ])
}

/// This machine's name.
#[cfg(feature = "mpi")]
pub(crate) fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The number of CPUs this process may run on.
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Raw number of a descriptor, for handing to a child in its environment.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// This thread's identity, unique on this machine for as long as the thread lives and for a
/// long time after: its thread id in the low 32 bits, the low 32 bits of its start time (clock
/// ticks since boot) in the high ones, so that a recycled thread id is not mistaken for it.
/// Never 0.
pub(crate) fn thread_identity() -> u64 {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let start = std::fs::read_to_string("/proc/thread-self/stat")
                .ok()
                .and_then(|s| stat_fields(&s).map(|(_, start)| start))
                .unwrap_or(0);
            id.set(u64::from(tid) | (u64::from(start) << 32));
        }
        id.get()
    })
}

thread_local! {
    /// This thread's [`thread_identity`]: 0 until first asked (and again in a forked copy, see
    /// [`forget_identities`]).
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
}

/// Forgets the identities cached for this process and the calling thread: in a forked copy
/// they are the parent's (the copy's thread is the one that forked, under another id).
pub(crate) fn forget_identities() {
    PROCESS_ID.store(0, Ordering::Relaxed);
    THREAD_ID.with(|id| id.set(0));
}

/// The identity of process `pid` (its id and start time, as [`thread_identity`] is for a
/// thread; a process's identity is that of its main thread), if it exists.
pub(crate) fn process_identity(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, start) = stat_fields(&stat)?;
    Some(u64::from(pid) | (u64::from(start) << 32))
}

/// This process's identity (see [`process_identity`]); 0 until first asked.
static PROCESS_ID: AtomicU64 = AtomicU64::new(0);

/// This process's identity (see [`process_identity`]).
pub(crate) fn own_process_identity() -> u64 {
    match PROCESS_ID.load(Ordering::Relaxed) {
        0 => {
            let id = process_identity(getpid()).unwrap_or(u64::from(getpid()));
            PROCESS_ID.store(id, Ordering::Relaxed);
            id
        }
        id => id,
    }
}

/// Whether the thread named by a [`thread_identity`] is still running. A thread that is gone,
/// a zombie, or whose id now belongs to a thread started at another time is not. When in
/// doubt (no `/proc`, an unknown start time, an unreadable entry) the answer is "alive": a
/// holder wrongly declared dead would let two threads into one lock.
pub(crate) fn identity_alive(identity: u64) -> bool {
    let tid = identity as u32;
    let start = (identity >> 32) as u32;
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(s) => match stat_fields(&s) {
            Some((state, started)) => {
                !matches!(state, 'Z' | 'X' | 'x') && (start == 0 || started == start)
            }
            None => true,
        },
        Err(e) => e.kind() != io::ErrorKind::NotFound || !procfs_mounted(),
    }
}

/// Whether `/proc` shows this process (else nothing can be learnt from it).
fn procfs_mounted() -> bool {
    static MOUNTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MOUNTED.get_or_init(|| std::path::Path::new("/proc/self/stat").exists())
}

/// State letter and low 32 bits of the start time from a `/proc/<id>/stat` line.
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    // The command name (field 2) is in parentheses and may contain anything; fields resume
    // after the last ')'. State is field 3, start time field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start: u64 = fields.nth(18)?.parse().ok()?;
    Some((state, start as u32))
}

/// Test support: makes a copy of this process with a plain `fork()`, as a user's code may,
/// runs `child` in the copy and ends it with `_exit(child())` (no exit hooks, no flushing);
/// returns the copy's pid. The caller reaps it.
///
/// # Safety
/// Only the calling thread exists in the copy, and locks other threads held stay held there:
/// `child` may make only async-signal-safe calls (no allocation, no lock).
#[cfg(test)]
pub(crate) unsafe fn fork_and_run(child: impl FnOnce() -> i32) -> io::Result<u32> {
    // SAFETY: `fork` has no preconditions of its own; what the copy may do is the caller's
    // promise (above), and the copy never returns from here.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = child();
            // SAFETY: `_exit` ends the copy at once, running nothing of the parent's.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid as u32),
    }
}
