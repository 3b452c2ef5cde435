//! The seam through which children are started.
//!
//! Whoever needs a child — a pool replacing a worker, a `Process`, and later a forkserver, an
//! MPI node agent or a Manager server — asks a [`Launch`] for "a child of this role, named so"
//! and gets the parent's end of it, a [`ChildLink`]: its channel, its liveness handle (a
//! pidfd) and its progress page, with the child's greeting (`READY`, or `REFUSE`) the first
//! frame to arrive on the channel. How the process comes to be is the start method's business;
//! today there is one, spawn (re-executing this program, see `bootstrap`), and fork and
//! forkserver plug in here. The pool's supervisor knows children only through this interface.

use crate::bootstrap::{self, ChildLink};
use crate::error::Result;
use crate::pool::StartMethod;
pub(crate) use crate::wire::Io;
use crate::wire::message::Role;

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

/// The launcher of a start method.
pub(crate) fn launcher(method: StartMethod) -> &'static dyn Launch {
    match method {
        StartMethod::Spawn => &Spawn,
    }
}
