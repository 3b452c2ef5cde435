//! The thin layer over the operating system.
//!
//! Everything that makes a system call lives below this module, behind small functions that
//! speak in std types (`OwnedFd`, `Duration`, `u32` pids). The rest of the crate never names
//! rustix or a raw syscall, so porting to another Unix means touching only these files.
//! Linux is the complete platform today (pidfd, memfd, epoll, `PR_SET_PDEATHSIG`).

pub(crate) mod epoll;
// Used by the `mpi` feature; its tests run in every build.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) mod exe;
pub(crate) mod fd;
pub(crate) mod futex;
pub(crate) mod local_socket;
pub(crate) mod page;
pub(crate) mod proc;
pub(crate) mod shm;
pub(crate) mod shm_name;
pub(crate) mod signal;
pub(crate) mod tcp;
