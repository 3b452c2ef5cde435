//! `Process`: run one function in a child process, like Python's `multiprocessing.Process` —
//! except that `join()` hands back what the function returned.
//!
//! Lifetime, as in Python: a started child runs until its function returns, whether or not its
//! handle is kept (dropping a daemon's handle kills it); at normal exit the program waits for
//! its non-daemon children and kills its daemons (the registry of children, `children.rs`,
//! does both and reaps every child). Parent *death* — a signal, `abort` — takes every child
//! along (`PR_SET_PDEATHSIG`).
//!
//! Grandchildren that the function starts by other means than `multiproc` — a plain `fork()`,
//! `std::process::Command` — are its own, as in Python: they do not die when the child is
//! killed, nor with the program. A process group per child would let `kill()` and `terminate()`
//! reach them, but it would take the children out of the terminal's foreground group: Ctrl-C
//! would reach neither them nor their grandchildren (which would then survive the program,
//! the very thing it was meant to prevent), and Ctrl-Z would stop the parent alone. With no
//! clear winner, nothing is changed; a function that starts helper processes ends them itself
//! (or gives them `PR_SET_PDEATHSIG` in `CommandExt::pre_exec`, or starts them as `Process`es).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::bootstrap::{self, ChildLink};
use crate::children::{self, ActiveChild, ChildId};
use crate::error::{Death, Error, Result};
use crate::launch::StartMethod;
use crate::launch::{self, Io};
use crate::pool::lock;
use crate::sys;
use crate::sys::proc::Stop;
use crate::task::{self, Data, Task};
use crate::wire::codec;
use crate::wire::fds::{self, FdSet};
use crate::wire::message::{ResultsHeader, Role, TaskHeader, kind};

/// How long `start()` waits for the child to finish starting up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

enum State<R> {
    Created,
    Started(Box<Started<R>>),
}

/// A started child. Its answer and exit status are learnt once and kept, behind locks, so that
/// `join`, `is_alive` and `exitcode` take `&self` and `join` can lend the value.
struct Started<R> {
    /// Locked by whoever reads the child's answer (reading needs the channel to itself).
    link: Mutex<ChildLink>,
    pid: u32,
    /// Readable once the child has exited: the link's pidfd, which lives as long as `self`.
    pidfd: RawFd,
    /// The registry reaps the child (see `children`), not the link.
    child: ChildId,
    outcome: OnceLock<Result<R>>,
    /// Locked while the child is reaped: the registry hands its status out once.
    exit: Mutex<Option<sys::proc::Exit>>,
}

impl<R> Started<R> {
    /// The exit status, reaping the child if it has exited.
    fn exit(&self) -> Option<sys::proc::Exit> {
        let mut exit = lock(&self.exit);
        if exit.is_none() {
            *exit = children::try_reap(self.child).ok().flatten();
        }
        *exit
    }
}

/// A function running in a child process of its own.
///
/// # Drop
/// Dropping a started `Process` leaves the child running, as in Python: it is reaped in the
/// background when it ends, stays listed by [`active_children`](crate::active_children) until
/// then, and the program waits for it when it exits. A [`daemon`](Self::with_daemon) process is
/// killed instead.
///
/// # At exit
/// When the program ends normally (`main` returns, or `std::process::exit`), it waits for each
/// live non-daemon child, without bound, as Python does; then it kills the daemons. A child
/// that waits for its parent (for an item the parent will never put in a queue, say) therefore
/// keeps the program from ending: join it, or make it a daemon. A program that is killed takes
/// every child along instead.
///
/// Inside a pool worker (a `Process` started by a task or an initializer), every child is a
/// daemon for this rule, whatever [`daemon`](Self::with_daemon) says: it is killed when the worker
/// exits, not waited for. Pool workers are daemonic, and Python forbids daemonic processes to
/// have children at all; a worker that waited would hold up its pool's `join()`. A task that
/// needs its child's work done joins it before it returns.
///
/// # Examples
/// ```
/// fn cube(x: i64) -> i64 { x * x * x }
///
/// multiproc::init();
/// let mut p = multiproc::Process::new(cube, 3).with_name("cuber");
/// p.start()?;
/// assert_eq!(*p.join()?, 27);
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process<R> {
    name: String,
    daemon: bool,
    entry: i64,
    /// `None`: the process-wide default, fixed at `start`.
    start_method: Option<StartMethod>,
    /// The encoded argument, or why it could not be encoded.
    payload: std::result::Result<Vec<u8>, String>,
    /// Descriptors of the handles inside the argument.
    fds: FdSet,
    local: fn(&[u8]) -> Result<R>,
    state: State<R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = match &self.state {
            State::Started(st) => Some(st.pid),
            State::Created => None,
        };
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &pid)
            .finish_non_exhaustive()
    }
}

fn next_name() -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    format!(
        "Process-{}",
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn run_local<F, Args, K>(payload: &[u8]) -> Result<F::Output>
where
    F: Task<Args, K>,
    Args: DeserializeOwned,
{
    let args: Args = codec::decode(payload)?;
    Ok(task::call_here::<F, Args, K>(args))
}

impl<R: Data> Process<R> {
    /// A process that will run `f` with `args`, given as Python's `args=` gives them: `()` for
    /// a function of no arguments, the value for a function of one, a tuple for several (see
    /// [`Task`]). Nothing starts until [`start`](Self::start). `f` is a `fn` item or a closure
    /// that captures nothing.
    ///
    /// # Examples
    /// ```
    /// fn hello() -> String { "hello".into() }
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    ///
    /// multiproc::init();
    /// let mut greeter = multiproc::Process::new(hello, ());
    /// let mut adder = multiproc::Process::new(add, (2, 3));
    /// greeter.start()?;
    /// adder.start()?;
    /// assert_eq!(greeter.into_value()?, "hello");
    /// assert_eq!(*adder.join()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new<F, Args, K>(f: F, args: Args) -> Self
    where
        F: Task<Args, K, Output = R>,
        Args: Data,
    {
        task::reject_captures!(F, Args, K);
        let arg = args;
        let mut fds = FdSet::default();
        let mut payload = Vec::new();
        let payload = fds::collect(&mut fds, || {
            codec::encode_message(&arg, "argument", &mut payload)
        })
        .map(|()| payload)
        .map_err(|e| e.to_string());
        Self {
            name: next_name(),
            daemon: false,
            entry: task::entry_for::<F, Args, K>(f),
            start_method: None,
            payload,
            fds,
            local: run_local::<F, Args, K>,
            state: State::Created,
        }
    }

    /// Sets the name the child sees in [`current_process()`](crate::current_process), like
    /// Python's `name=`. Default: `"Process-N"`.
    ///
    /// # Examples
    /// ```
    /// fn my_name() -> String { multiproc::current_process().name().to_string() }
    ///
    /// multiproc::init();
    /// let mut p = multiproc::Process::new(my_name, ()).with_name("worker-1").with_daemon(true);
    /// assert_eq!((p.name(), p.is_daemon()), ("worker-1", true));
    /// p.start()?;
    /// assert_eq!(p.join()?, "worker-1");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the process a daemon, like Python's `daemon=True`: it is killed when its `Process`
    /// is dropped, and when this program exits (after the non-daemon children ended), instead
    /// of being waited for. Default: `false`.
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// How the child is started. Default: the process-wide
    /// [`get_start_method`](crate::get_start_method) at [`start`](Self::start).
    ///
    /// # Examples
    /// ```
    /// use multiproc::{Process, StartMethod};
    /// static GREETING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    /// fn greeting() -> String { GREETING.get().cloned().unwrap_or_default() }
    ///
    /// multiproc::init();
    /// GREETING.set("set before the fork".into()).unwrap();
    /// let mut p = Process::new(greeting, ()).with_start_method(StartMethod::Fork);
    /// p.start()?;
    /// assert_eq!(p.join()?, "set before the fork"); // a spawned child would see ""
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The process's name (see [`with_name`](Self::with_name)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process's name.
    #[deprecated(since = "0.2.0", note = "use `name()`")]
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether the process is a daemon (see [`with_daemon`](Self::with_daemon)).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Runs the function here, in the calling process, like Python's `run()`.
    ///
    /// # Errors
    /// The argument could not be encoded or decoded. Once the process has started, handles in
    /// the argument (queues, locks, pipe ends) belong to the child and can no longer be decoded
    /// here.
    pub fn run(&self) -> Result<R> {
        match &self.payload {
            Ok(bytes) => {
                let fds = self.fds.duplicate()?;
                fds::receive(fds, || (self.local)(bytes))
            }
            Err(e) => Err(Error::Encode(e.clone())),
        }
    }

    /// Starts the child and hands it the function and its argument.
    ///
    /// # Errors
    /// The process was already started ([`Error::AlreadyStarted`]: a `Process` runs once), the
    /// argument cannot be encoded, or the child could not be started ([`Error::Spawn`]).
    pub fn start(&mut self) -> Result<()> {
        if !matches!(self.state, State::Created) {
            return Err(Error::AlreadyStarted);
        }
        let payload = match &self.payload {
            Ok(p) => p,
            Err(e) => return Err(Error::Encode(e.clone())),
        };
        let mut link =
            launch::launcher(self.start_method).launch(&self.name, Role::Process, Io::Blocking)?;
        let header = TaskHeader {
            seq: 0,
            entry: self.entry,
            count: 1,
        };
        // The child holds the handles in the argument from now on; this process keeps no copy
        // of their descriptors (a pipe end kept here would hide the child's exit from the
        // other end).
        if let Some(child) = sys::proc::process_identity(link.pid) {
            self.fds.hand_to(child);
        }
        let fds = std::mem::take(&mut self.fds).into_fds();
        let mut head = Vec::with_capacity(TaskHeader::LEN);
        header.write(&mut head);
        // A large argument goes straight into shared memory, not through the channel's buffer.
        link.channel
            .push_parts(kind::TASK, fds, &[&head, payload])?;
        link.channel.flush()?;
        // Until the registry has the child, the link kills and reaps it if anything fails.
        let child = children::register(ActiveChild::new(link.pid, self.name.clone(), self.daemon))?;
        link.detach();
        let ready = bootstrap::await_ready(&mut link, Instant::now() + START_TIMEOUT);
        self.state = State::Started(Box::new(Started {
            pid: link.pid,
            pidfd: link.pidfd.as_raw_fd(),
            link: Mutex::new(link),
            child,
            outcome: OnceLock::new(),
            exit: Mutex::new(None),
        }));
        if let Err(e) = ready {
            let _ = self.kill();
            let _ = self.join_timeout(Duration::from_secs(5));
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the child to finish and returns the function's value, like Python's `join()`
    /// — which may be called again, as here: the value stays with the process, and every join
    /// after the child ended returns it (or the same error) at once. Take it out with
    /// [`into_value`](Self::into_value).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let mut p = multiproc::Process::new(nap, 200);
    /// p.start()?;
    /// // Python's `p.join(0.01); if p.is_alive(): …`
    /// assert!(matches!(p.join_timeout(Duration::from_millis(10)), Err(multiproc::Error::Timeout)));
    /// assert!(p.is_alive());
    /// let value = p.join()?; // lent by the process, which can still be asked anything
    /// assert_eq!((*value, p.exitcode(), p.is_alive()), (200, Some(0), false));
    /// assert_eq!(*p.join()?, 200); // again: the same value
    /// assert_eq!(p.into_value()?, 200);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// The function panicked ([`Error::TaskPanicked`]); the child died before answering
    /// ([`Error::WorkerDied`], with the signal or exit status); the process was not started
    /// ([`Error::NotStarted`]). A failure of the wait itself ([`Error::Io`]) can be retried.
    pub fn join(&self) -> Result<&R> {
        self.wait(None)
    }

    /// Like [`join`](Self::join), waiting at most `timeout`. Where Python's `join(timeout)`
    /// returns `None` either way and you ask `is_alive()`, this says which it was.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the child is still running (it is left running; join again later),
    /// otherwise as [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<&R> {
        self.wait(crate::mem::parking::deadline(timeout))
    }

    /// Waits for the child to finish and hands over the function's value, giving up the
    /// process (as `std::thread::JoinHandle::join` does).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub fn into_value(mut self) -> Result<R> {
        self.wait(None)?;
        match std::mem::replace(&mut self.state, State::Created) {
            State::Started(st) => st.outcome.into_inner().unwrap_or(Err(Error::NotStarted)),
            State::Created => Err(Error::NotStarted),
        }
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<&R> {
        let State::Started(st) = &self.state else {
            return Err(Error::NotStarted);
        };
        if st.outcome.get().is_none() || lock(&st.exit).is_none() {
            let mut link = lock(&st.link);
            if st.outcome.get().is_none() && !link.channel.at_eof() {
                // Read the answer first: the child cannot exit until a large one is read. Once
                // the child has exited its answer is still in the socket, so `is_alive()` or
                // `exitcode()` before `join()` loses nothing.
                match link.channel.recv(deadline) {
                    Ok(frame) => drop(st.outcome.set(decode_answer(frame))),
                    Err(Error::Disconnected) => {}
                    Err(e) => return Err(e),
                }
            }
            if lock(&st.exit).is_none() {
                // Not under `exit`'s lock: `is_alive()` on another thread never waits for this.
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if !sys::fd::wait_readable(link.pidfd.as_fd(), left)? {
                    return Err(Error::Timeout);
                }
            }
            let exit = {
                let mut exit = lock(&st.exit);
                if exit.is_none() {
                    *exit = Some(children::reap_exited(st.child)?);
                }
                *exit
            };
            let died = exit.map_or(Death::Unknown, |e| link.death(e));
            // It ended without answering.
            let _ = st.outcome.set(Err(Error::WorkerDied {
                pid: st.pid,
                cause: died,
                task: 0,
                rank: None,
            }));
        }
        match st.outcome.get() {
            Some(outcome) => outcome.as_ref().map_err(Error::clone),
            None => unreachable!("the outcome is set above"),
        }
    }

    /// Whether the child has been started and has not exited.
    pub fn is_alive(&self) -> bool {
        match &self.state {
            State::Created => false,
            State::Started(st) => st.exit().is_none(),
        }
    }

    /// The child's process id, once started.
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Started(st) => Some(st.pid),
            State::Created => None,
        }
    }

    /// The exit code once the child has exited, as Python reports it: 0 for success, 1 if the
    /// function panicked, `-N` if signal `N` ended it. `None` while running or before start.
    pub fn exitcode(&self) -> Option<i32> {
        match &self.state {
            State::Started(st) => match st.exit()? {
                sys::proc::Exit::Code(c) => Some(c),
                sys::proc::Exit::Signal(s) => Some(-s),
            },
            State::Created => None,
        }
    }

    /// Asks the child to stop with `SIGTERM`, like Python's `terminate()`.
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Stop::Term)
    }

    /// Stops the child with `SIGKILL`, like Python's `kill()`.
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        self.signal(Stop::Kill)
    }

    fn signal(&self, stop: Stop) -> Result<()> {
        match &self.state {
            // Through the pidfd: the child may have been reaped (by `active_children()` on
            // another thread, say) and its pid reused.
            State::Started(st) if lock(&st.exit).is_none() => {
                Ok(sys::proc::signal_pidfd(self.sentinel_of(st), stop)?)
            }
            _ => Ok(()),
        }
    }

    /// A descriptor that becomes readable when the child exits, for use with `poll`/`select`
    /// (Python's `sentinel`). `None` before start.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Started(st) => Some(self.sentinel_of(st)),
            State::Created => None,
        }
    }

    fn sentinel_of<'a>(&'a self, st: &'a Started<R>) -> BorrowedFd<'a> {
        // SAFETY: `st.pidfd` is the pidfd of `st.link`, which owns it and is dropped only with
        // `st`, which the returned borrow cannot outlive.
        unsafe { BorrowedFd::borrow_raw(st.pidfd) }
    }
}

/// The value in a process's answer; handles in it take their descriptors from the frame's.
fn decode_answer<R: DeserializeOwned>(mut frame: crate::wire::Frame) -> Result<R> {
    if frame.kind != kind::RESULTS {
        return Err(Error::Protocol(format!(
            "expected a result, got frame kind {}",
            frame.kind
        )));
    }
    let fds = std::mem::take(&mut frame.fds);
    let mut body = frame.payload();
    let header = ResultsHeader::read(&mut body)?;
    if header.count != 1 {
        return Err(Error::Protocol(
            "a process answered with several results".into(),
        ));
    }
    fds::receive(fds, || codec::decode_outcome::<R>(&mut body))?.map_err(Error::from)
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if let State::Started(st) = &mut self.state {
            if st
                .exit
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                return;
            }
            if self.daemon {
                let link = st.link.get_mut().unwrap_or_else(|p| p.into_inner());
                let _ = sys::proc::signal_pidfd(link.pidfd.as_fd(), Stop::Kill);
            }
            // Reaped in the background when it ends; a non-daemon is waited for at exit.
            children::release(st.child);
        }
    }
}
