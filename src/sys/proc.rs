//! Processes: re-executing ourselves, reaping, signalling, and knowing who we are.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

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
    thread_local! {
        static ID: u64 = {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let start = std::fs::read_to_string("/proc/thread-self/stat")
                .ok()
                .and_then(|s| stat_fields(&s).map(|(_, start)| start))
                .unwrap_or(0);
            u64::from(tid) | (u64::from(start) << 32)
        };
    }
    ID.with(|id| *id)
}

/// The identity of process `pid` (its id and start time, as [`thread_identity`] is for a
/// thread; a process's identity is that of its main thread), if it exists.
pub(crate) fn process_identity(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, start) = stat_fields(&stat)?;
    Some(u64::from(pid) | (u64::from(start) << 32))
}

/// This process's identity (see [`process_identity`]).
pub(crate) fn own_process_identity() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| process_identity(getpid()).unwrap_or(u64::from(getpid())))
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
