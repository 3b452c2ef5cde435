//! Synchronisation between processes: locks, semaphores, events, conditions, barriers.
//!
//! Every primitive is a small block of atomics in an anonymous shared segment (see
//! `mem::segment`), with waiters asleep on a futex in the same block (`mem::parking`). No
//! primitive holds a kernel object besides its memory, so any number of them cost nothing but
//! a page each, and none can be left behind.

pub(crate) mod barrier;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod semaphore;
