//! The seam through which children are started, and the start methods behind it.
//!
//! Whoever needs a child — a pool replacing a worker, a `Process`, and later an MPI node agent
//! — asks a [`Launch`] for "a child of this role, named so" and gets the parent's end of it, a
//! [`ChildLink`]: its channel, its liveness handle (a pidfd) and its progress page, with the
//! child's greeting (`READY`, or `REFUSE`) the first frame to arrive on the channel. How the
//! process comes to be is the start method's business; the pool's supervisor and `Process`
//! know children only through this interface, so every start method gets the same supervision:
//!
//! - **spawn** (`bootstrap`): this program executed again, clean;
//! - **fork** (`bootstrap` too: the same spawner thread forks): a copy of this process;
//! - **forkserver** (`forkserver.rs`): a copy of a small single-threaded server process,
//!   which is itself spawned on first use.
//!
//! A forked copy of either kind forgets the per-process state it inherited first
//! (`inherited.rs`). Every child, however made, is a child of this process: it is reaped,
//! watched and killed here, and dies with this process.

mod forkserver;
pub(crate) mod inherited;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, ChildLink};
use crate::error::{Error, Result};
pub(crate) use crate::wire::Io;
use crate::wire::message::Role;

pub use forkserver::set_forkserver_preload;

/// How a [`Pool`](crate::Pool) or [`Process`](crate::Process) starts its children, like
/// Python's start methods. Every method gets the same supervision: a child that dies fails only
/// its own work, is replaced, and never outlives this program.
///
/// Choose per pool ([`PoolBuilder::start_method`](crate::PoolBuilder::start_method)), per
/// process ([`Process::with_start_method`](crate::Process::with_start_method)), or for the
/// whole program with [`set_start_method`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute this program (`/proc/self/exe`) and hand it a socket: the child starts clean,
    /// with no copy of the parent's threads, locks or memory. The default, as on macOS and
    /// Windows in Python. Slowest to start (a few milliseconds: the program is loaded again),
    /// always safe.
    #[default]
    Spawn,
    /// Copy this process with `fork()`: the child sees the parent's memory as it was at that
    /// moment, copy-on-write, so a large read-only table built before the pool starts is read
    /// by every worker without being sent or copied. Fastest to start.
    ///
    /// **The hazard**: only the forking thread is copied. A lock that another thread of this
    /// program held at that moment stays held in the child for ever, and the child hangs if
    /// it takes it: a `Mutex` of yours, std's lock of `stdout` if another thread was printing,
    /// a C library's internal lock. glibc's allocator is safe (it resets its locks in the
    /// child; another `#[global_allocator]` may not be), and so is this crate's own state (the child forgets what it inherited: its
    /// parent's children, manager connections, fork server, identity). The child also keeps
    /// copies of the parent's open descriptors: a pipe end this program holds stays open in
    /// the workers, so "the other end closed" is not seen while they live. Prefer spawn or
    /// forkserver when other threads are running at the time workers start (a pool's own
    /// replacements included) and may hold locks the tasks need.
    ///
    /// A forked child ends with `_exit`: it never runs the parent's destructors or exit hooks
    /// (it flushes std's `stdout` first — waiting at most 100 ms for its lock — and sees to the
    /// `Process`es it started itself). Text this program printed without a newline just before
    /// the fork may be printed again by the child.
    Fork,
    /// Ask a fork server for a copy of itself: a small single-threaded process, spawned on
    /// first use, that forks children on request. Fork's start-up speed without fork's thread
    /// hazard, but the child sees the *server's* memory, not this program's: state reaches it
    /// through arguments, or through a preload function run once in the server
    /// ([`set_forkserver_preload`]). The server dies with this program.
    ForkServer,
}

/// The process-wide start method: set once, or fixed at first use.
static DEFAULT: OnceLock<StartMethod> = OnceLock::new();

/// Sets the start method of every [`Pool`](crate::Pool) and [`Process`](crate::Process) that
/// does not choose one, like Python's `multiprocessing.set_start_method`. Call it once, early
/// in `main` (after [`init`](crate::init)).
///
/// # Errors
/// [`Error::InvalidArgument`] if the default was already set, or already used (by a pool or
/// process that started children with it, or by [`get_start_method`]), as Python raises
/// "context has already been set".
///
/// # Examples
/// ```
/// use multiproc::StartMethod;
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// multiproc::set_start_method(StartMethod::ForkServer)?;
/// assert_eq!(multiproc::get_start_method(), StartMethod::ForkServer);
/// assert!(multiproc::set_start_method(StartMethod::Fork).is_err()); // once only
///
/// let pool = multiproc::Pool::new(2)?; // workers come from the fork server
/// assert_eq!(pool.map(square, 0..4u64)?, vec![0, 1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    DEFAULT.set(method).map_err(|_| {
        Error::InvalidArgument(format!(
            "the start method is already {:?}: set it once, before anything uses the default",
            get_start_method()
        ))
    })
}

/// The process-wide start method (see [`set_start_method`]): [`StartMethod::Spawn`] unless
/// set. Asking fixes it, as in Python: a later `set_start_method` is an error.
///
/// # Examples
/// ```
/// assert_eq!(multiproc::get_start_method(), multiproc::StartMethod::Spawn);
/// ```
pub fn get_start_method() -> StartMethod {
    *DEFAULT.get_or_init(StartMethod::default)
}

/// Starts children (see the module docs).
pub(crate) trait Launch: Send + Sync {
    /// Starts a child that will serve as `role`, named `name` (what it sees in
    /// `current_process()`), and returns the parent's end of it.
    ///
    /// # Errors
    /// The child could not be started: [`Error::Spawn`](crate::Error::Spawn) or an I/O error
    /// with the operating system's cause.
    fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink>;
}

/// The spawn start method: this program, executed again (see `bootstrap`).
struct Spawn;

impl Launch for Spawn {
    fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink> {
        bootstrap::spawn_child(name, role, io)
    }
}

/// The fork start method: a copy of this process, made by the spawner thread (see
/// `bootstrap`).
struct Fork;

impl Launch for Fork {
    fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink> {
        bootstrap::fork_child(name, role, io)
    }
}

/// The launcher of a start method; `None` for the process-wide default.
pub(crate) fn launcher(method: Option<StartMethod>) -> &'static dyn Launch {
    match method.unwrap_or_else(get_start_method) {
        StartMethod::Spawn => &Spawn,
        StartMethod::Fork => &Fork,
        StartMethod::ForkServer => &forkserver::ForkServer,
    }
}
