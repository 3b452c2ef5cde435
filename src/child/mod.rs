//! Everything that runs in a child: what a process started by this crate does, from its
//! first instruction to its exit status.
//!
//! - `start.rs`: `init()` and the start-up hook, the marker's checks, the handshake, and the
//!   choice of loop by the role the parent asked for.
//! - `worker.rs`: the worker loop, serving tasks for a pool or a `Process`.
//! - `tracker.rs`: the shared-memory tracker's loop, removing a creator's names once it is gone.
//! - `forkserver.rs`: a fork server's loop, forking children for its parent on request.
//! - `protocol.rs`: what child and parent agree on (the marker, the executable identity, page
//!   slots, exit statuses); the parent's side (`bootstrap`, `pool::link`, the tracker's
//!   client) imports it from here.
//!
//! Nothing here imports the parent's side — the dependency runs one way, parent to child — but
//! for what every forked copy does first and last (`launch::inherited`).

mod forkserver;
pub(crate) mod protocol;
pub(crate) mod start;
mod tracker;
mod worker;
