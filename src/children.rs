//! The children this process started as [`Process`](crate::Process)es: what
//! [`active_children`] lists, and what a program waits for when it ends.
//!
//! One registry per process, as in Python: an entry is made by `start()`, and a process waits
//! only for its own children (a `Process` child that starts children of its own waits for
//! them before it exits). Pool workers and the shared-memory tracker are not entered: a pool
//! ends its workers itself, and a pool that is never dropped (leaked, or in a `static`) has
//! them killed with the program, like Python's daemonic pool workers. A pool worker's own
//! `Process` children (started by its tasks) are daemons for the exit rule, whatever their
//! flag: Python forbids daemonic processes to have children at all, and a worker that waited
//! for them at exit would stall its pool's `join()` (see [`at_exit_rule`]).
//!
//! Every reap of a `Process` child goes through here, under the lock and without blocking, so
//! whoever sees the exit first — the handle's `join()` or `is_alive()`, [`active_children`],
//! the watcher thread of a dropped handle, or the exit hook — leaves the status where the
//! others find it. Each entry keeps a pidfd, opened when it is entered (the child is unreaped
//! then), and the registry signals, waits and reaps (`waitid(P_PIDFD)`) through it alone, never
//! through the pid: a child reaped behind the registry's back (`SIGCHLD` ignored, a
//! `waitpid(-1)` elsewhere) can have its pid reused by an unrelated process, which must not be
//! killed or waited on. Such a child's pidfd turns readable, and reaping it fails with
//! `ECHILD`: the entry is marked gone. Waiting happens outside the lock; the lock is never held
//! across a blocking call, so the exit hook cannot be stuck behind another thread. An entry
//! lives until its handle has been given the exit status, or, once its handle was dropped,
//! until it is reaped (by a small watcher thread, so no zombie is left).
//!
//! At normal exit (`main` returns, or `std::process::exit`) an `atexit` hook, registered by the
//! first `start()`, waits for every live non-daemon child, then kills the daemons and reaps
//! them. Like Python it waits without bound: a child that never ends keeps the program from
//! ending. Unlike Python, daemons are killed after the non-daemon children are done (Python
//! sends them `SIGTERM` first), so a daemon that serves them keeps serving until they finish.
//! Parent *death* is another matter: no hook runs, and `PR_SET_PDEATHSIG` kills every child.
//!
//! A copy of this process made by a plain `fork()` finds the registry's owner pid changed and
//! starts with an empty one: its parent's children are not its own. The owner is an atomic, read
//! before any lock is taken: another thread may have held the lock at the moment of the fork,
//! and in the copy nobody would ever release it. So the copy's exit hook and
//! [`active_children`] return at once, without locking.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use crate::launch::inherited::PerProcess;
use crate::sys;
use crate::sys::proc::{Exit, Stop};
use crate::wire::message::Role;

/// How long a watcher whose wait on a pidfd failed waits before it looks again.
const RETRY_WAIT: Duration = Duration::from_millis(10);

/// A live child started by this process as a [`Process`](crate::Process), as listed by
/// [`active_children`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveChild {
    pid: u32,
    name: String,
    daemon: bool,
}

impl ActiveChild {
    pub(crate) fn new(pid: u32, name: String, daemon: bool) -> Self {
        Self { pid, name, daemon }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given with [`Process::with_name`](crate::Process::with_name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon: killed at exit rather than waited for. (In a pool worker every
    /// child is killed at exit: see [`Process`](crate::Process), "At exit".)
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// Names an entry of the registry: unlike a pid, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildId(u64);

/// What the exit hook does with a child that is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AtExit {
    /// Waits for it to end (a non-daemon).
    Wait,
    /// Kills it, once every child to wait for has ended (a daemon).
    Kill,
}

/// The exit rule for a child started with `daemon` set as given: daemons are killed, other
/// children waited for, except in a pool worker, whose children are all killed. Pool workers
/// are daemonic (their pool ends them, or they die with the program), and Python forbids
/// daemonic processes to have children; waiting for them would hold the worker's exit, and
/// the pool's `join()`, until the pool gives up and kills the worker anyway.
fn at_exit_rule(daemon: bool) -> AtExit {
    if daemon || crate::current::role() == Some(Role::PoolWorker) {
        AtExit::Kill
    } else {
        AtExit::Wait
    }
}

/// Who is to learn the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// A live `Process` handle: the entry waits for it to collect the status.
    Handle,
    /// The handle was dropped: the entry goes as soon as the child is reaped.
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Running,
    Exited(Exit),
    /// Reaped behind the registry's back (`SIGCHLD` ignored, a `waitpid(-1)` elsewhere): gone,
    /// with no status, and its pid must not be used again.
    Lost,
}

struct Entry {
    id: ChildId,
    child: ActiveChild,
    /// Names this child and no other, even once its pid is reused. Shared with a waiter, which
    /// waits on it outside the lock while the entry may go.
    pidfd: Arc<OwnedFd>,
    at_exit: AtExit,
    holder: Holder,
    status: Status,
}

struct Registry {
    next_id: u64,
    /// In the order the children were started.
    entries: Vec<Entry>,
}

static REGISTRY: PerProcess<Mutex<Registry>> = PerProcess::new(Mutex::new(Registry {
    next_id: 0,
    entries: Vec::new(),
}));

/// The process whose children [`REGISTRY`] holds (0 before the first use). Written with the
/// lock held, read without it (see the module docs on `fork`).
static OWNER: AtomicU32 = AtomicU32::new(0);

/// The registry, emptied first if it was inherited through a `fork`.
fn registry() -> MutexGuard<'static, Registry> {
    // Every critical section leaves the registry consistent; a panic in one changes nothing.
    let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let me = sys::proc::getpid();
    if OWNER.load(Ordering::Acquire) != me {
        OWNER.store(me, Ordering::Release);
        reg.entries.clear();
    }
    reg
}

/// In a forked copy: forgets the parent's children (see `launch::inherited`).
pub(crate) fn forget_inherited() {
    OWNER.store(0, Ordering::Release);
    crate::launch::inherited::reclaim(
        &REGISTRY,
        Registry {
            next_id: 0,
            entries: Vec::new(),
        },
    );
}

/// Whether the registry may hold children of this process: not in a copy made by `fork()`
/// (what it holds there is the parent's), nor before the first `start()`. Takes no lock.
fn may_have_children() -> bool {
    OWNER.load(Ordering::Acquire) == sys::proc::getpid()
}

impl Registry {
    fn index(&self, id: ChildId) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// Reaps entry `i` if its child has exited; never blocks. A dropped handle's entry goes
    /// once reaped; a live handle's keeps the status for the handle.
    fn poll(&mut self, i: usize) -> Status {
        let entry = &mut self.entries[i];
        if entry.status == Status::Running {
            entry.status = match sys::proc::try_reap_pidfd(entry.pidfd.as_fd()) {
                Ok(None) => Status::Running,
                Ok(Some(exit)) => Status::Exited(exit),
                Err(_) => Status::Lost,
            };
        }
        let status = entry.status;
        if status != Status::Running && entry.holder == Holder::Dropped {
            self.entries.remove(i);
        }
        status
    }

    /// Reaps every child that has exited (Python's `_cleanup()`).
    fn cleanup(&mut self) {
        let mut i = self.entries.len();
        while i > 0 {
            i -= 1;
            self.poll(i);
        }
    }
}

/// Enters a just-started child. The caller hands the duty of reaping it to the registry once
/// this succeeds (no other code may reap it from then on); until then the child must be
/// unreaped.
///
/// # Errors
/// No pidfd could be opened for the child (descriptors exhausted): the caller still has to
/// reap it.
pub(crate) fn register(child: ActiveChild) -> io::Result<ChildId> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // If the C library cannot take the hook (out of memory), children are killed at exit
        // as if they were daemons, as before this registry existed; starting them still works.
        let _ = sys::proc::at_exit(wait_at_exit);
    });
    let pidfd = Arc::new(sys::proc::pidfd(child.pid)?);
    let at_exit = at_exit_rule(child.daemon);
    let mut reg = registry();
    // Children whose watcher thread could not be started are reaped here at the latest.
    reg.cleanup();
    let id = ChildId(reg.next_id);
    reg.next_id += 1;
    reg.entries.push(Entry {
        id,
        child,
        pidfd,
        at_exit,
        holder: Holder::Handle,
        status: Status::Running,
    });
    Ok(id)
}

/// For the handle: the exit status if the child has exited, reaping it. Once the status is
/// returned the entry is gone (the handle keeps it).
///
/// # Errors
/// The child was reaped by someone outside this registry, or is unknown here.
pub(crate) fn try_reap(id: ChildId) -> io::Result<Option<Exit>> {
    let mut reg = registry();
    let i = reg
        .index(id)
        .ok_or_else(|| lost("is not a child of this process"))?;
    let status = reg.poll(i);
    if status != Status::Running {
        if let Some(i) = reg.index(id) {
            reg.entries.remove(i);
        }
    }
    match status {
        Status::Running => Ok(None),
        Status::Exited(exit) => Ok(Some(exit)),
        Status::Lost => Err(lost("was reaped by someone else")),
    }
}

/// For the handle, once the child's pidfd is readable: reaps it and returns its exit status.
///
/// # Errors
/// As [`try_reap`].
pub(crate) fn reap_exited(id: ChildId) -> io::Result<Exit> {
    loop {
        if let Some(exit) = try_reap(id)? {
            return Ok(exit);
        }
        // A readable pidfd means the child is a zombie already; this is only a guard.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// For the handle's `Drop`: the child runs on and is reaped in the background when it exits.
pub(crate) fn release(id: ChildId) {
    let mut reg = registry();
    let Some(i) = reg.index(id) else { return };
    reg.entries[i].holder = Holder::Dropped;
    if reg.poll(i) != Status::Running {
        return;
    }
    drop(reg);
    // If no thread can be started the child is reaped by the next `start()`,
    // `active_children()` or at exit.
    let _ = std::thread::Builder::new()
        .name("multiproc-reaper".into())
        .stack_size(64 << 10)
        .spawn(move || wait_for(id));
}

/// Waits until child `id` has exited and reaps it (or until someone else did).
fn wait_for(id: ChildId) {
    loop {
        let pidfd = {
            let reg = registry();
            let Some(i) = reg.index(id) else { return };
            let entry = &reg.entries[i];
            if entry.status != Status::Running {
                return;
            }
            Arc::clone(&entry.pidfd)
        };
        if sys::fd::wait_readable(pidfd.as_fd(), None).is_err() {
            std::thread::sleep(RETRY_WAIT);
        }
        let mut reg = registry();
        let Some(i) = reg.index(id) else { return };
        if reg.poll(i) != Status::Running {
            return;
        }
    }
}

/// The first child still running whose exit rule is `rule`.
fn next_running(rule: AtExit) -> Option<ChildId> {
    let reg = registry();
    reg.entries
        .iter()
        .find(|e| e.status == Status::Running && e.at_exit == rule)
        .map(|e| e.id)
}

/// The exit hook: waits for the children to wait for, then kills and reaps the others (see
/// [`at_exit_rule`]).
extern "C" fn wait_at_exit() {
    if !may_have_children() {
        return;
    }
    // Nothing here should panic; if something does, the program ends without waiting.
    let _ = std::panic::catch_unwind(|| {
        // Including any that other threads start meanwhile.
        while let Some(id) = next_running(AtExit::Wait) {
            wait_for(id);
        }
        while let Some(id) = next_running(AtExit::Kill) {
            kill(id);
            wait_for(id);
        }
    });
}

/// What a normal exit does for this process's children (see [`wait_at_exit`]), for a forked
/// copy that leaves with `_exit` and so runs no exit hook.
pub(crate) fn exit_duties() {
    wait_at_exit();
}

/// Sends `SIGKILL` to child `id` if it has not been reaped.
fn kill(id: ChildId) {
    let reg = registry();
    if let Some(e) = reg.entries.iter().find(|e| e.id == id) {
        if e.status == Status::Running {
            let _ = sys::proc::signal_pidfd(e.pidfd.as_fd(), Stop::Kill);
        }
    }
}

fn lost(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("the child process {why}"))
}

/// The live children this process started as [`Process`](crate::Process)es, like Python's
/// `multiprocessing.active_children()`: started and not yet exited, whether or not their
/// handle still exists. Children that have exited are reaped on the way (a joined one is never
/// listed). Pool workers are not listed.
///
/// These are the children a normal exit waits for (the non-daemon ones) or kills (the
/// daemons).
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// multiproc::init();
/// let mut p = multiproc::Process::new(nap, 200).with_name("napper");
/// p.start()?;
/// let live = multiproc::active_children();
/// assert!(live.iter().any(|c| Some(c.pid()) == p.pid() && c.name() == "napper"));
/// p.join()?;
/// assert!(multiproc::active_children().iter().all(|c| Some(c.pid()) != p.pid()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn active_children() -> Vec<ActiveChild> {
    if !may_have_children() {
        return Vec::new();
    }
    let mut reg = registry();
    reg.cleanup();
    reg.entries
        .iter()
        .filter(|e| e.status == Status::Running)
        .map(|e| e.child.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Waits up to `limit` for child `pid` to end (killing it if it does not) and reaps it;
    /// `None` if it had to be killed.
    fn end_within(pid: u32, limit: Duration) -> Option<Exit> {
        let pidfd = sys::proc::pidfd(pid).unwrap();
        let ended = sys::fd::wait_readable(pidfd.as_fd(), Some(limit)).unwrap();
        if !ended {
            sys::proc::signal_pidfd(pidfd.as_fd(), Stop::Kill).unwrap();
        }
        let exit = sys::proc::reap(pid).unwrap();
        ended.then_some(exit)
    }

    /// Regression (review): a copy of the program made by a plain `fork()` while another
    /// thread (a `multiproc-reaper` watcher, say) held the registry's lock could never take it:
    /// its `exit()` blocked for ever in the exit hook, which locked before it looked whose
    /// registry it was. `active_children()` did the same.
    #[test]
    fn a_forked_copy_neither_waits_at_exit_nor_lists_children_while_the_lock_is_held() {
        let (locked, is_locked) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _reg = registry();
            locked.send(()).unwrap();
            let _ = released.recv();
        });
        is_locked.recv().unwrap();
        // SAFETY: the copy runs the exit hook and `active_children()`, which in a copy must
        // return at once, without locking or allocating: that is what is tested.
        let copy = unsafe {
            sys::proc::fork_and_run(|| {
                wait_at_exit();
                i32::from(!active_children().is_empty())
            })
        };
        release.send(()).unwrap();
        holder.join().unwrap();
        let exit = end_within(copy.unwrap(), Duration::from_secs(10));
        assert_eq!(
            exit,
            Some(Exit::Code(0)),
            "the forked copy hung on the registry's lock"
        );
    }

    /// Enters a child, then reaps it behind the registry's back and gives its entry the pid
    /// of `reuser`, another live child of ours: what pid reuse would do.
    fn reaped_elsewhere_then_reused_by(reuser: u32, rule: AtExit) -> ChildId {
        let daemon = rule == AtExit::Kill;
        let mut reaped = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let id = register(ActiveChild::new(reaped.id(), "reaped".into(), daemon)).unwrap();
        // Under the lock, so that no poll of the registry sees the exit first.
        let mut reg = registry();
        reaped.kill().unwrap();
        reaped.wait().unwrap();
        let i = reg.index(id).unwrap();
        assert_eq!(reg.entries[i].at_exit, rule);
        reg.entries[i].child.pid = reuser;
        id
    }

    /// Whether `wait_for(id)` returns within 10 s.
    fn waits_briefly(id: ChildId) -> bool {
        let (done, waited) = mpsc::channel();
        std::thread::spawn(move || {
            wait_for(id);
            let _ = done.send(());
        });
        waited.recv_timeout(Duration::from_secs(10)).is_ok()
    }

    /// Regression (review): the registry signalled and waited on children by pid. A child
    /// reaped behind its back (`SIGCHLD` ignored, a `waitpid(-1)` elsewhere) stayed `Running`,
    /// and once its pid was reused the exit hook waited on the process that now had it (a
    /// non-daemon), or `SIGKILL`ed it (a daemon).
    #[test]
    fn a_child_reaped_elsewhere_is_gone_and_its_pid_is_never_signalled_nor_waited_on() {
        let mut reuser = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        // What the exit hook does with a non-daemon, then with a daemon.
        let waiter = reaped_elsewhere_then_reused_by(reuser.id(), AtExit::Wait);
        let waited = waits_briefly(waiter);
        let killed = reaped_elsewhere_then_reused_by(reuser.id(), AtExit::Kill);
        kill(killed);
        let waited_too = waits_briefly(killed);
        let untouched = matches!(reuser.try_wait(), Ok(None));
        let _ = reuser.kill();
        let _ = reuser.wait();
        assert!(waited, "waited on the process that reused the pid");
        assert!(waited_too, "waited on the process that reused the pid");
        assert!(
            untouched,
            "the process that reused the pid was killed or reaped"
        );
        for id in [waiter, killed] {
            assert!(try_reap(id).is_err(), "reaped elsewhere: no status to give");
        }
    }

    fn nap(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Not run on its own: `a_program_that_ignores_sigchld_ends` runs it in a copy of this
    /// test binary. Its children are reaped by the kernel as they end; then the program exits.
    #[test]
    #[ignore]
    fn inner_exit_with_sigchld_ignored() {
        sys::signal::ignore_child_exits().unwrap();
        let mut waited = crate::Process::new(nap, 300);
        waited.start().unwrap();
        let mut killed = crate::Process::new(nap, 60_000).with_daemon(true);
        killed.start().unwrap();
        // A dropped handle: its watcher thread sees the exit.
        let mut dropped = crate::Process::new(nap, 100);
        dropped.start().unwrap();
        drop(dropped);
        // Kept to the end: the exit hook deals with these.
        std::mem::forget((waited, killed));
    }

    /// A program that sets `SIGCHLD` to `SIG_IGN` (its children are reaped behind the
    /// registry's back) ends: the exit hook finds its non-daemon child gone rather than waiting
    /// for a status that will never come, and kills its daemon.
    #[test]
    fn a_program_that_ignores_sigchld_ends() {
        let mut program = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "children::tests::inner_exit_with_sigchld_ignored",
                "--ignored",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while program.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ended = program.try_wait().unwrap().is_some();
        let _ = program.kill();
        let out = program.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(ended, "the program hung at exit:\n{said}");
        assert!(out.status.success(), "{:?}\n{said}", out.status);
        assert!(said.contains("1 passed"), "{said}");
    }
}
