//! A child's start: from the first instruction to the loop it serves (`worker.rs` or
//! `tracker.rs`), through the marker, the parent-death signal and the handshake.
//!
//! A child is this same program, re-executed from `/proc/self/exe` by the parent's spawner
//! (`bootstrap`) with the environment variable [`ENV`] naming two inherited descriptors (its
//! socket to the parent and the shared progress page) and the parent's pid. On Linux a
//! start-up hook in `.init_array` notices the variable before `main` runs — which is what
//! makes pools work inside `#[test]` functions, whose `main` belongs to libtest — and [`init`]
//! does the same for platforms without one. The variable is removed as soon as it is read, so
//! that tasks and the programs they start never see it. A value that does not name this
//! process's parent and descriptors of the kinds a parent hands over (a stray variable from a
//! shell, say) is reported in one line and ignored: the program runs its `main` as usual,
//! never as a child. Unless the process was started as a child — its first argument is
//! [`CHILD_ARG`], which only the spawner gives — and the marker is then surely ours: a check
//! failing there is unexpected (an unusual `/proc` naming of descriptors, say), and running
//! `main` would repeat the parent's work, so the child says why and exits with status 70
//! ([`EXIT_PROTOCOL`]).
//!
//! The parent-death signal is armed before anything else, and the child checks that its
//! parent is still the one that started it, closing the race where the parent dies first.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::protocol::{CHILD_ARG, ENV, EXIT_PROTOCOL, EXIT_REFUSED, FAULT_SLOT, identity};
use crate::current;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::page::SharedPage;
use crate::sys::signal::Existing;
use crate::wire::message::{Hello, Ready, Refuse, Role, kind};
use crate::wire::{Channel, Io, codec};

/// How long a child waits for the parent's greeting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes this program usable with `multiproc`. Call it first in `main`.
///
/// In the parent it returns at once. In a child started by this crate it serves its parent and
/// exits: it never returns there. On Linux a start-up hook has usually done this already, before
/// `main` ran, so the call costs one environment look-up.
///
/// Call it before starting any thread: the marker is removed from the environment, which is
/// only sound while the process is single-threaded. A program that finds a `MULTIPROC_WORKER`
/// marker not meant for it in its environment (not one its parent set for it) prints one line
/// on stderr naming the variable and its value, removes it, and goes on as a normal program.
/// A child that `multiproc` started and whose marker fails its checks prints the reason and
/// exits with status 70 instead: it never runs `main`.
///
/// # Examples
/// ```
/// // The first line of `main`:
/// multiproc::init();
/// // ... then use Process and Pool.
/// ```
pub fn init() {
    if let Some(marker) = take_marker() {
        run_child(&marker);
    }
    // Under `mpirun`, every rank but 0 becomes a node agent here and never returns.
    #[cfg(feature = "mpi")]
    crate::mpi::start();
}

/// What a parent's spawner puts in [`ENV`] for its child.
struct Marker {
    /// The child's end of its socket to the parent.
    sock: RawFd,
    /// The shared progress page.
    page: RawFd,
    parent: u32,
}

/// Takes [`ENV`] out of the environment and returns the marker if it is meant for this
/// process; reports and drops any other value, or, in a process started as a child, reports
/// it and exits (see the module docs).
fn take_marker() -> Option<Marker> {
    let value = std::env::var_os(ENV)?;
    // SAFETY: called before `main` (from the start-up hook) or as the first line of `main`, as
    // `init` documents: no other thread is reading the environment. The marker must not leak to
    // programs this process starts, whatever its value.
    unsafe { std::env::remove_var(ENV) };
    match Marker::check(&value) {
        Ok(marker) => Some(marker),
        Err(why) if started_as_child() => {
            eprintln!("multiproc: child process could not start: {ENV}={value:?}: {why}");
            std::process::exit(EXIT_PROTOCOL)
        }
        Err(why) => {
            eprintln!("multiproc: ignoring {ENV}={value:?}: {why}; running as a normal program");
            None
        }
    }
}

/// Whether a spawner started this process: its first argument is [`CHILD_ARG`].
fn started_as_child() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == CHILD_ARG)
}

impl Marker {
    /// Parses `"<socket fd>,<page fd>,<parent pid>"` and checks it is this process's: the pid
    /// is its parent's, and the descriptors are open on a socket and a shared page.
    fn check(value: &std::ffi::OsStr) -> std::result::Result<Marker, String> {
        let malformed = || "not of the form \"<socket fd>,<page fd>,<parent pid>\"".to_string();
        let fields: Vec<&str> = value.to_str().ok_or_else(malformed)?.split(',').collect();
        let [sock, page, parent] = fields[..] else {
            return Err(malformed());
        };
        let fd = |f: &str| f.parse::<RawFd>().ok().filter(|fd| *fd >= 0);
        let (Some(sock), Some(page), Ok(parent)) = (fd(sock), fd(page), parent.parse::<u32>())
        else {
            return Err(malformed());
        };
        if sys::proc::getppid() != Some(parent) {
            return Err(format!("pid {parent} is not this process's parent"));
        }
        if !sys::fd::is_socket(sock) {
            return Err(format!("descriptor {sock} is not a socket"));
        }
        if !sys::page::is_page(page) {
            return Err(format!("descriptor {page} is not a multiproc shared page"));
        }
        Ok(Marker { sock, page, parent })
    }
}

/// The start-up hook: runs before `main` in every program that links this crate. The
/// spawner names it (`bootstrap`), so every program that starts children links it.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static CHILD_HOOK: extern "C" fn() = child_hook;

#[cfg(target_os = "linux")]
extern "C" fn child_hook() {
    init();
}

fn run_child(marker: &Marker) -> ! {
    std::process::exit(exit_status(child_main(marker)))
}

/// The exit status of a child's life: what it served, or the protocol's status after saying
/// why it could not start.
fn exit_status(life: Result<i32>) -> i32 {
    life.unwrap_or_else(|e| {
        eprintln!("multiproc: child process could not start: {e}");
        EXIT_PROTOCOL
    })
}

fn child_main(marker: &Marker) -> Result<i32> {
    sys::proc::die_with_parent(marker.parent)?;
    // SAFETY: the marker was checked: these are a socket and a shared page that the parent's
    // spawner kept open across `exec` for us; nothing else in this fresh process owns them.
    let (sock, page) = unsafe { (sys::fd::adopt(marker.sock), sys::fd::adopt(marker.page)) };
    serve_parent(sock, page, Existing::Keep)
}

/// A forked child's life (the fork start method, or a fork server's child), once the copy has
/// forgotten what it inherited: `sock` and `page` are its socket to `parent` and its progress
/// page, open in the copy and owned by nothing there. Returns the exit status.
pub(crate) fn serve_forked(sock: RawFd, page: RawFd, parent: u32) -> i32 {
    exit_status((|| {
        sys::proc::die_with_parent(parent)?;
        // SAFETY: the caller's guarantee: open here, and owned by nothing else in the copy.
        let (sock, page) = unsafe { (sys::fd::adopt(sock), sys::fd::adopt(page)) };
        // A fault handler inherited from the parent (std's, in a program whose `main` ran) would
        // report an overflow as its own abort: the parent is told instead.
        serve_parent(sock, page, Existing::Replace)
    })())
}

/// A child's side once its socket and page are its own: the handshake, then the loop its
/// role calls for. Returns the exit status.
fn serve_parent(sock: OwnedFd, page: OwnedFd, fault_handler: Existing) -> Result<i32> {
    // Programs this child runs must not inherit them.
    sys::fd::set_cloexec(sock.as_fd(), true)?;
    sys::fd::set_cloexec(page.as_fd(), true)?;
    // Kept for the life of the process: the fault handler may write to it at any moment.
    let page: &'static SharedPage = Box::leak(Box::new(SharedPage::map(page)?));
    // Before any task runs, on the thread that runs them all. Best effort: without it a stack
    // overflow reads as a plain SIGSEGV, and the child works as well.
    let _ = sys::signal::catch_stack_overflow(page.slot(FAULT_SLOT), fault_handler);
    let mut ch = Channel::new(sock, Io::Blocking)?;

    let hello = ch.recv(Some(Instant::now() + HELLO_TIMEOUT))?;
    if hello.kind != kind::HELLO {
        return Err(Error::Protocol(format!(
            "expected a greeting, got kind {}",
            hello.kind
        )));
    }
    let hello: Hello = codec::decode(hello.payload())?;
    if hello.identity != identity()? {
        let reason = "the child is not the same executable as the parent (was the binary rebuilt \
                      or replaced while running?)"
            .to_string();
        ch.send(kind::REFUSE, &codec::encode(&Refuse { reason })?)?;
        return Ok(EXIT_REFUSED);
    }
    current::started_as(hello.name, hello.role);
    crate::task::capture_panics();
    ch.send(
        kind::READY,
        &codec::encode(&Ready {
            pid: sys::proc::getpid(),
        })?,
    )?;
    Ok(match hello.role {
        Role::Tracker => super::tracker::serve(ch),
        Role::ForkServer => super::forkserver::serve(ch),
        Role::Process | Role::PoolWorker => super::worker::serve(ch, page, hello.role),
    })
}
