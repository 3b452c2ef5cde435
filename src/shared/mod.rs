//! Memory shared between processes: the segments every handle lives in, `Value`, `Array`
//! and named `SharedMemory`.

pub(crate) mod array;
pub(crate) mod element;
pub(crate) mod memory;
pub(crate) mod segment;
pub(crate) mod value;
