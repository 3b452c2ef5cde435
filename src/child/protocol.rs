//! What a child and its parent agree on besides the messages (`wire::message`): the slots
//! of the page they share and the exit statuses a child reports with. Both sides import these
//! from here; neither imports the other's code for a constant.

/// Slot of the shared page that counts items started.
pub(crate) const STARTED_SLOT: usize = 0;
/// Slot of the shared page where the child's fault handler records the signal of a stack
/// overflow (`sys::signal`); read by the parent when the child died (`ChildLink::death`).
pub(crate) const FAULT_SLOT: usize = 1;

/// Exit status of a child whose parent broke the protocol or vanished.
pub(crate) const EXIT_PROTOCOL: i32 = 70;
/// Exit status of a `Process` child whose function panicked (as Python's 1 for an exception).
pub(crate) const EXIT_TASK_FAILED: i32 = 1;
