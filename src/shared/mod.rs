//! Memory shared between processes as users see it: `Value`, `Array` and named
//! `SharedMemory`. The segments they live in are `mem::segment`; `Value` and `Array` take
//! `sync`'s lock, never the other way round.

pub(crate) mod array;
pub(crate) mod element;
pub(crate) mod memory;
pub(crate) mod value;
