//! Shared memory as the crate's handles hold it: the layer below `shared/` and `sync/`.
//!
//! A segment (`segment.rs`) is one anonymous shared-memory object holding one handle's state,
//! typed by the cell at its start; a parking word (`parking.rs`) is where cross-process waiters
//! sleep. Locks, semaphores, queues, values and arrays are all built from these two, so they
//! sit here, beneath every user of them: this layer knows nothing of locks or values (it uses
//! only `sys` and `wire::fds`, which a segment travels through).

pub(crate) mod parking;
pub(crate) mod segment;
