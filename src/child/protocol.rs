//! What a child and its parent agree on besides the messages (`wire::message`): how a child
//! is marked, the executable identity both compare in the handshake, the slots of the page
//! they share and the exit statuses a child reports with. Both sides import these from here;
//! neither imports the other's code for a constant.

use std::sync::OnceLock;

use crate::error::Result;
use crate::sys;

/// The environment variable that marks a child: `"<socket fd>,<page fd>,<parent pid>"`.
pub(crate) const ENV: &str = "MULTIPROC_WORKER";
/// The first argument of every child the spawner starts; nothing else passes it.
pub(crate) const CHILD_ARG: &str = "__multiproc_child__";

/// Slot of the shared page that counts items started.
pub(crate) const STARTED_SLOT: usize = 0;
/// Slot of the shared page where the child's fault handler records the signal of a stack
/// overflow (`sys::signal`); read by the parent when the child died (`ChildLink::death`).
pub(crate) const FAULT_SLOT: usize = 1;
/// Slot of the shared page where a fork server's child writes its pid, first thing: the parent
/// finds (and ends) a child whose server died before it could answer with the pid.
pub(crate) const PID_SLOT: usize = 2;

/// Exit status of a child whose parent broke the protocol or vanished.
pub(crate) const EXIT_PROTOCOL: i32 = 70;
/// Exit status of a child that refused the handshake (different executable).
pub(crate) const EXIT_REFUSED: i32 = 71;
/// Exit status of a `Process` child whose function panicked (as Python's 1 for an exception).
pub(crate) const EXIT_TASK_FAILED: i32 = 1;

/// This executable's identity, sent in the parent's greeting and checked by the child.
pub(crate) fn identity() -> Result<[u64; 6]> {
    static ID: OnceLock<[u64; 6]> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let exe = sys::proc::exe_identity()?;
    let id = [
        exe[0],
        exe[1],
        exe[2],
        exe[3],
        exe[4],
        crate::task::layout_probe(),
    ];
    Ok(*ID.get_or_init(|| id))
}
