//! `dummy::Process`: a thread with the process [`Process`](crate::Process)'s interface, like
//! Python's `multiprocessing.dummy.Process` (a `threading.Thread`).
//!
//! The function's outcome is kept by the handle once learnt, so that `join` takes `&self` and
//! lends the value, as the process `Process` does. A thread cannot be stopped from outside:
//! `terminate` and `kill` say so instead of pretending.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::task::{Task, catch_panics_on_this_thread, catching};
use crate::error::{Error, Result};
use crate::pool::{lock, wait_while_until};

type Body<R> = Box<dyn FnOnce() -> R + Send>;

enum State<R> {
    Created(Body<R>),
    Started(Started<R>),
    /// `start` failed: the function went with the thread that could not be made.
    Failed,
}

struct Started<R> {
    /// Where the thread leaves its outcome.
    end: Arc<End<R>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The outcome, once `join` took it from `end`.
    outcome: OnceLock<Result<R>>,
}

struct End<R> {
    outcome: Mutex<Option<Result<R>>>,
    done: Mutex<bool>,
    cond: Condvar,
}

/// A function running on a thread of its own, with the process
/// [`Process`](crate::Process)'s interface — so that a program switches by changing its `use`
/// line — and any `Fn + Send + Sync + 'static`, capturing closures included (see [`Task`]).
///
/// What differs from a process: there is no `run()` (the function is moved to its thread, not
/// copied) nor `sentinel()` (a thread has no descriptor); [`pid`](Self::pid) is this program's;
/// [`terminate`](Self::terminate) and [`kill`](Self::kill) return [`Error::Unsupported`], as a
/// thread cannot be stopped from outside; a thread does not keep the program alive, daemon or
/// not (every thread ends when `main` returns), so join the ones whose work must be done.
///
/// # Drop
/// Dropping a started `Process` leaves the thread running, detached, as dropping a
/// `std::thread::JoinHandle` does.
///
/// # Examples
/// ```
/// use multiproc::dummy::Process;
///
/// let base = 100;
/// let mut p = Process::new(move |x: i64| base + x * x * x, 3).with_name("cuber");
/// p.start()?;
/// assert_eq!(*p.join()?, 127);
/// assert_eq!((p.name(), p.exitcode()), ("cuber", Some(0)));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process<R> {
    name: String,
    daemon: bool,
    state: State<R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dummy::Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("started", &matches!(self.state, State::Started(_)))
            .finish_non_exhaustive()
    }
}

fn next_name() -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("Thread-{n}")
}

impl<R: Send + 'static> Process<R> {
    /// A thread that will run `f` with `args`, given as Python's `args=` gives them: `()` for
    /// a function of no arguments, the value for one, a tuple for several (see [`Task`]).
    /// Nothing starts until [`start`](Self::start).
    ///
    /// # Examples
    /// ```
    /// use multiproc::dummy::Process;
    /// fn hello() -> String { "hello".into() }
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    ///
    /// let mut greeter = Process::new(hello, ());
    /// let mut adder = Process::new(add, (2, 3));
    /// greeter.start()?;
    /// adder.start()?;
    /// assert_eq!(greeter.into_value()?, "hello");
    /// assert_eq!(*adder.join()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new<F, Args, K>(f: F, args: Args) -> Self
    where
        F: Task<Args, K, Output = R>,
        Args: Send + 'static,
    {
        Process {
            name: next_name(),
            daemon: false,
            state: State::Created(Box::new(move || f.call(args))),
        }
    }

    /// Sets the name, which is also the thread's name, like Python's `name=`. Default:
    /// `"Thread-N"`, as Python names its dummy processes.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Marks the thread as a daemon, like Python's `daemon=True`. Recorded only: no Rust
    /// thread keeps the program alive, so daemon or not, it ends when `main` returns.
    /// Default: `false`.
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The name (see [`with_name`](Self::with_name)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was marked a daemon (see [`with_daemon`](Self::with_daemon)).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Starts the thread.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] if it was started before (a `Process` runs once);
    /// [`Error::InvalidArgument`] for a name with a NUL byte, which a thread cannot have;
    /// [`Error::Io`] if no thread could be had (then the function is gone with it).
    pub fn start(&mut self) -> Result<()> {
        if self.name.contains('\0') {
            // std would panic naming the thread so.
            return Err(Error::InvalidArgument(format!(
                "a thread's name cannot contain a NUL byte: {:?}",
                self.name
            )));
        }
        let body = match std::mem::replace(&mut self.state, State::Failed) {
            State::Created(body) => body,
            started => {
                self.state = started;
                return Err(Error::AlreadyStarted);
            }
        };
        let end = Arc::new(End {
            outcome: Mutex::new(None),
            done: Mutex::new(false),
            cond: Condvar::new(),
        });
        let theirs = end.clone();
        let thread = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                catch_panics_on_this_thread();
                let outcome = catching(body);
                *lock(&theirs.outcome) = Some(outcome);
                *lock(&theirs.done) = true;
                theirs.cond.notify_all();
            })?;
        self.state = State::Started(Started {
            end,
            thread: Mutex::new(Some(thread)),
            outcome: OnceLock::new(),
        });
        Ok(())
    }

    /// Waits for the function to return and lends its value, like Python's `join()`; may be
    /// called again, and returns the same value (or error) at once. Take the value out with
    /// [`into_value`](Self::into_value).
    ///
    /// # Errors
    /// The function panicked ([`Error::TaskPanicked`], with the message); the thread was not
    /// started ([`Error::NotStarted`]).
    pub fn join(&self) -> Result<&R> {
        self.wait(None)
    }

    /// Like [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the function still runs (join again later), otherwise as
    /// [`join`](Self::join).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut p = multiproc::dummy::Process::new(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 200);
    /// p.start()?;
    /// assert!(matches!(p.join_timeout(Duration::from_millis(10)), Err(multiproc::Error::Timeout)));
    /// assert!(p.is_alive());
    /// p.join()?;
    /// assert_eq!((p.is_alive(), p.exitcode()), (false, Some(0)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<&R> {
        self.wait(crate::mem::parking::deadline(timeout))
    }

    /// Waits for the function to return and hands over its value, giving up the handle.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub fn into_value(mut self) -> Result<R> {
        self.wait(None)?;
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Started(st) => st.outcome.into_inner().unwrap_or(Err(Error::NotStarted)),
            State::Created(_) | State::Failed => Err(Error::NotStarted),
        }
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<&R> {
        let State::Started(st) = &self.state else {
            return Err(Error::NotStarted);
        };
        if st.outcome.get().is_none() {
            let done = lock(&st.end.done);
            let (done, finished) = wait_while_until(&st.end.cond, done, deadline, |d| !*d);
            drop(done);
            if !finished {
                return Err(Error::Timeout);
            }
            if let Some(outcome) = lock(&st.end.outcome).take() {
                let _ = st.outcome.set(outcome);
            }
            // It has ended, or is about to: reap it.
            if let Some(thread) = lock(&st.thread).take() {
                let _ = thread.join();
            }
        }
        match st.outcome.get() {
            Some(outcome) => outcome.as_ref().map_err(Error::clone),
            None => Err(Error::NotStarted),
        }
    }

    /// Whether the thread has been started and its function has not returned.
    pub fn is_alive(&self) -> bool {
        match &self.state {
            State::Started(st) => !*lock(&st.end.done),
            State::Created(_) | State::Failed => false,
        }
    }

    /// This program's process id, once started: the thread runs in it. (Python's dummy
    /// processes have no `pid` of their own either.)
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Started(_) => Some(std::process::id()),
            State::Created(_) | State::Failed => None,
        }
    }

    /// Once the function has returned: 0, or 1 if it panicked, as a process's exit code
    /// reads. `None` while it runs or before start.
    pub fn exitcode(&self) -> Option<i32> {
        let State::Started(st) = &self.state else {
            return None;
        };
        if let Some(outcome) = st.outcome.get() {
            return Some(i32::from(outcome.is_err()));
        }
        if !*lock(&st.end.done) {
            return None;
        }
        lock(&st.end.outcome)
            .as_ref()
            .map(|outcome| i32::from(outcome.is_err()))
    }

    /// Refused: a thread cannot be stopped from outside.
    ///
    /// # Errors
    /// Always [`Error::Unsupported`]. Have the function watch a flag or an
    /// [`Event`](crate::Event) and return, or run it in a [`crate::Process`], which can be
    /// terminated.
    pub fn terminate(&self) -> Result<()> {
        Err(Error::Unsupported(
            "a thread cannot be terminated: dummy::Process runs on a thread; use multiproc::Process to stop it from outside".into(),
        ))
    }

    /// Refused: a thread cannot be killed.
    ///
    /// # Errors
    /// Always [`Error::Unsupported`], as [`terminate`](Self::terminate).
    pub fn kill(&self) -> Result<()> {
        Err(Error::Unsupported(
            "a thread cannot be killed: dummy::Process runs on a thread; use multiproc::Process to stop it from outside".into(),
        ))
    }
}
