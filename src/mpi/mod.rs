//! Beyond one machine: a [`Pool`](crate::Pool) whose workers run on the ranks of an MPI job
//! (feature `mpi`; Open MPI or MPICH, through the `mpi` crate).
//!
//! The same program runs on every rank, started by `mpirun -n N ./app`. In rank 0,
//! [`init`](crate::init) returns and `main` runs; in every other rank it makes the process a
//! *node agent*, which serves rank 0's pools and exits when rank 0's program ends: `main` never
//! runs there. A pool spans the ranks when it is built with
//! [`PoolBuilder::mpi`](crate::PoolBuilder::mpi):
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! multiproc::init();
//! let pool = multiproc::Pool::builder().mpi().processes_per_rank(4).build()?;
//! assert_eq!(pool.map(square, 0..1000u64)?[999], 998_001);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Every call of the pool works as on one machine. Without `mpirun` (or with one rank), the
//! same program builds a local pool, so it is developed and tested on a laptop.
//!
//! - Each agent runs its tasks in worker processes of its own, started and supervised as on one
//!   machine: a task that crashes its worker or overruns `task_timeout` fails alone, with
//!   [`Error::WorkerDied`](crate::Error::WorkerDied) or
//!   [`Error::TaskTimeout`](crate::Error::TaskTimeout) naming the rank and host, and a new
//!   worker takes its place there.
//! - The loss of a whole rank (its agent killed) ends the job: Open MPI stops every rank, and
//!   rank 0 says so on stderr.
//! - Agents are recognised by the content of their executable (its build-id, or a hash), not
//!   its path: a copy of the program anywhere, on any machine, serves; another program is
//!   refused, and the pool's `build` says which rank runs what.
//! - Under `mpirun`, this crate initializes MPI (before `main`, in every rank) and finalizes it
//!   at exit: a program cannot initialize MPI itself as well, nor use MPI directly (ranks
//!   other than 0 never run `main`).
//! - Handles backed by this machine's memory (`Queue`, `Pipe`, `Lock`, `Value`, `Array`,
//!   `SharedMemory`) cannot go to another rank: a task argument that holds one fails to encode,
//!   and the error points to the [`Manager`](crate::Manager), which works over TCP.

mod agent;
mod message;
mod remote;
mod roster;
mod world;

use std::sync::OnceLock;

pub(crate) use message::PoolSpec;
#[cfg(feature = "fuzzing")]
pub(crate) use message::fuzz;
pub(crate) use remote::{HANDLES_STAY_LOCAL, open};
pub(crate) use world::World;

/// The environment variable through which a rank tells the workers it starts where they run:
/// `"<rank>,<size>"`.
pub(crate) const ENV: &str = "MULTIPROC_MPI_RANK";

/// Environment variables of the MPI launcher, which the processes a rank starts must not
/// inherit (a program they run would take itself for a rank of the job).
const LAUNCHER_VARIABLES: [&str; 3] = ["OMPI_", "PMIX_", "PMI_"];

/// Joins the MPI job if `mpirun` started this process: a rank other than 0 becomes a node agent
/// and never returns; rank 0 returns, and leaves the job at exit. Does nothing otherwise, or
/// after the first call.
pub(crate) fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let Some(world) = world::initialize() else {
            return;
        };
        if world.rank != 0 {
            agent::serve(world);
        }
        if !world.any_thread {
            eprintln!(
                "multiproc: this MPI library lets only one thread call it \
                 (MPI_THREAD_SERIALIZED refused): pools will not span the ranks"
            );
        }
        if let Err(e) = crate::sys::proc::at_exit(leave_job) {
            eprintln!("multiproc: MPI rank 0 cannot end the job at exit: {e}");
        }
        crate::sys::signal::on_termination_say(
            "multiproc: MPI rank 0 was told to stop (SIGTERM): when an MPI rank dies, \
             Open MPI ends every rank of the job; unfinished tasks are lost\n",
        );
    });
}

extern "C" fn leave_job() {
    if let Some(world) = world::world() {
        let _ = std::panic::catch_unwind(|| roster::end_job(world));
    }
}

/// The job, when this process is its rank 0 and other ranks serve it: what a pool built with
/// `mpi()` spans.
pub(crate) fn spanning() -> Option<&'static world::World> {
    world::world()
        .filter(|w| w.rank == 0 && w.size > 1 && w.any_thread && world::with(|_| ()).is_some())
}

/// Where this process runs: its own rank and the job's size, or those of the agent whose
/// worker it is.
fn placement() -> Option<(u32, u32)> {
    // A forked copy of a rank runs where its rank does, though it is no rank itself.
    if let Some(w) = world::placement() {
        return Some((w.rank, w.size));
    }
    inherited().map(|(rank, size, _)| (rank, size))
}

/// What a rank's child was told ([`child_environment`]): the rank, the job's size, and the
/// process id of the rank itself.
fn inherited() -> Option<(u32, u32, u32)> {
    static INHERITED: OnceLock<Option<(u32, u32, u32)>> = OnceLock::new();
    *INHERITED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let mut fields = value.split(',').map(|f| f.parse().ok());
        Some((fields.next()??, fields.next()??, fields.next()??))
    })
}

/// Whether this process is a worker that a rank other than 0 started itself (one of its
/// agent's pools'): its answers go to rank 0 as bytes, maybe to another machine. A process
/// that such a worker starts in turn (a pool of its own) answers its parent on this machine.
pub(crate) fn serves_a_remote_rank() -> bool {
    world::placement().is_none()
        && inherited().is_some_and(|(rank, _, rank_pid)| {
            rank > 0 && crate::sys::proc::getppid() == Some(rank_pid)
        })
}

/// This process's rank in the MPI job — for a pool worker, the rank of the agent that started
/// it — or `None` outside `mpirun`.
///
/// # Examples
/// ```
/// // Not started by mpirun:
/// assert_eq!(multiproc::mpi::rank(), None);
/// ```
pub fn rank() -> Option<u32> {
    placement().map(|(rank, _)| rank)
}

/// The number of ranks in the MPI job, or `None` outside `mpirun`.
pub fn size() -> Option<u32> {
    placement().map(|(_, size)| size)
}

/// The name of the machine this process runs on (as MPI names it in a rank; the host name
/// elsewhere).
///
/// # Examples
/// ```
/// assert!(!multiproc::mpi::host().is_empty());
/// ```
pub fn host() -> String {
    match world::world() {
        Some(w) => w.host.clone(),
        None => crate::sys::proc::host_name(),
    }
}

/// The environment a rank's children get: where they run, and none of the launcher's
/// variables. `None` outside a job.
pub(crate) fn child_environment() -> Option<(String, Vec<std::ffi::OsString>)> {
    let (rank, size) = placement()?;
    let rank_pid = match world::placement() {
        Some(_) => crate::sys::proc::getpid(),
        None => inherited()?.2,
    };
    let remove = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let k = k.to_string_lossy();
            LAUNCHER_VARIABLES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    Some((format!("{rank},{size},{rank_pid}"), remove))
}
