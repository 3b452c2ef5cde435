//! This process: who it is (`current_process()`, set once by a child's start) and how many
//! CPUs it may use.

use std::sync::OnceLock;

use crate::launch::inherited::PerProcess;
use crate::sys;
use crate::wire::message::Role;

/// Who the current process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    /// What this process was started for; `None` in a program not started by `multiproc`.
    role: Option<Role>,
}

impl CurrentProcess {
    /// `"MainProcess"` in the parent; the `Process` name or `"PoolWorker-N"` in a child.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process was started by `multiproc` (a `Process` or a pool worker).
    pub fn is_worker(&self) -> bool {
        self.role.is_some()
    }
}

/// What this process was started for by its `multiproc` parent; `None` if it was not.
pub(crate) fn role() -> Option<Role> {
    CURRENT.get().and_then(|me| me.role)
}

static CURRENT: PerProcess<OnceLock<CurrentProcess>> = PerProcess::new(OnceLock::new());

/// Records that this process is a child started for `role` under the name `name` (the
/// parent's greeting says both). Called once, by the child's start-up.
pub(crate) fn started_as(name: String, role: Role) {
    let _ = CURRENT.set(CurrentProcess {
        name,
        pid: sys::proc::getpid(),
        role: Some(role),
    });
}

/// In a forked copy: forgets who the parent was, so that the copy's start can say who it is.
pub(crate) fn forget_inherited() {
    // SAFETY: called by `launch::inherited::forget` only, in a forked copy before it starts any
    // thread; nothing refers into `CURRENT` there.
    unsafe { CURRENT.overwrite(OnceLock::new()) }
}

/// Describes the current process, like Python's `multiprocessing.current_process()`.
///
/// # Examples
/// ```
/// multiproc::init();
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert!(!me.is_worker());
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    CURRENT.get().cloned().unwrap_or_else(|| CurrentProcess {
        name: "MainProcess".into(),
        pid: sys::proc::getpid(),
        role: None,
    })
}

/// The number of CPUs this process may use, like `os.cpu_count()` (respecting affinity masks).
///
/// # Examples
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::proc::cpu_count()
}
