//! Everything that runs in a child: what a process started by this crate does, from its
//! first instruction to its exit status.
//!
//! - `protocol.rs`: what child and parent agree on (page slots, exit statuses); the parent's
//!   side (`bootstrap`, `pool::link`, the tracker's client) imports it from here.
//! - `worker.rs`: the worker loop, serving tasks for a pool or a `Process`.
//!
//! Nothing here imports the parent's side: the dependency runs one way, parent to child.

pub(crate) mod protocol;
pub(crate) mod worker;
