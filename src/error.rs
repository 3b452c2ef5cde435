//! The crate's one error type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a worker process ended.
///
/// # Examples
/// ```
/// use multiproc::Death;
///
/// /// What to tell a user whose task took its worker down.
/// fn advice(cause: &Death) -> String {
///     match cause {
///         Death::StackOverflow { .. } => format!("{cause}: is the recursion bounded?"),
///         Death::Signal { name, .. } if name == "SIGKILL" => "killed (out of memory?)".into(),
///         other => format!("crashed: {other}"),
///     }
/// }
/// assert_eq!(
///     advice(&Death::StackOverflow { number: 11 }),
///     "stack overflow (SIGSEGV): is the recursion bounded?"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Death {
    /// A signal ended it; the name is the conventional one (`"SIGKILL"`). A `SIGSEGV` or
    /// `SIGBUS` that was a stack overflow is [`Death::StackOverflow`] instead.
    Signal {
        /// Signal number.
        number: i32,
        /// Conventional name, such as `"SIGKILL"`.
        name: String,
    },
    /// The thread running the task overflowed its stack (unbounded recursion, or a large
    /// value on the stack), and the process died by signal `number` (`SIGSEGV`, or `SIGBUS`
    /// on some systems) as a result. Displays as `"stack overflow (SIGSEGV)"`.
    ///
    /// The child also printed `thread 'main' has overflowed its stack` on stderr, as a
    /// program's own main thread would. Its exit status is that of the signal all the same
    /// ([`Process::exitcode`](crate::Process::exitcode) is `-11` for `SIGSEGV`). Overflows are
    /// recognised in the thread that runs tasks; one in a thread that a task started itself
    /// still shows as [`Death::Signal`] `SIGSEGV`.
    StackOverflow {
        /// Signal number (11 for `SIGSEGV`, 7 for `SIGBUS` on Linux x86-64 and Arm).
        number: i32,
    },
    /// It exited with this status.
    Exit(i32),
    /// It closed its connection and could not be reaped (should not happen).
    Unknown,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Death::Signal { name, .. } => f.write_str(name),
            Death::StackOverflow { number } => write!(
                f,
                "stack overflow ({})",
                crate::sys::proc::signal_name(*number)
            ),
            Death::Exit(code) => write!(f, "exit status {code}"),
            Death::Unknown => f.write_str("unknown cause"),
        }
    }
}

impl From<crate::sys::proc::Exit> for Death {
    fn from(e: crate::sys::proc::Exit) -> Self {
        match e {
            crate::sys::proc::Exit::Code(c) => Death::Exit(c),
            crate::sys::proc::Exit::Signal(s) => Death::Signal {
                number: s,
                name: crate::sys::proc::signal_name(s),
            },
        }
    }
}

/// A rank of an MPI job, where a remote worker ran: its number and its host's name.
///
/// # Examples
/// ```
/// let r = multiproc::Rank { number: 3, host: "node7".into() };
/// assert_eq!(r.to_string(), "rank 3 on node7");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    /// The rank's number in the job (`MPI_COMM_WORLD`).
    pub number: u32,
    /// The name of the machine it runs on.
    pub host: String,
}

impl std::fmt::Display for Rank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} on {}", self.number, self.host)
    }
}

/// `", rank 3 on node7"`, or nothing off MPI.
fn on_rank(rank: &Option<Rank>) -> String {
    rank.as_ref().map(|r| format!(", {r}")).unwrap_or_default()
}

/// Everything that can go wrong. Errors are values: the library never panics on bad input,
/// a dead peer or an OS failure.
///
/// An `Error` can cross between processes (it is serde data), so a task may return
/// `Result<T, multiproc::Error>` and use `?` on the queues and locks it was handed. An
/// [`Error::Io`] crosses as its OS error code where it has one, otherwise as its message.
///
/// # Examples
/// ```
/// use multiproc::{Error, Queue};
///
/// fn drain(q: Queue<u32>) -> Result<u32, Error> {
///     let mut sum = 0;
///     while let Some(x) = q.try_get()? {
///         sum += x;
///     }
///     Ok(sum)
/// }
///
/// multiproc::init();
/// let q = Queue::new()?;
/// for x in 1..=4 { q.put(x)?; }
/// let pool = multiproc::Pool::new(1)?;
/// assert_eq!(pool.apply(drain, q)??, 10);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked in the child. The worker survives and serves the next task.
    #[error("task panicked{}: {message}", location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default())]
    TaskPanicked {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
        /// The child's backtrace, when `RUST_BACKTRACE` asked for one.
        backtrace: Option<String>,
    },
    /// The process running the task died before answering (killed, crashed, overflowed its
    /// stack, or exited). `cause` says which; the pool replaces the worker and runs the other
    /// tasks, and `Process::join` reports the same way.
    ///
    /// # Examples
    /// ```
    /// use multiproc::{Death, Error};
    ///
    /// let e = Error::WorkerDied { pid: 4242, cause: Death::Exit(3), task: 7, rank: None };
    /// assert_eq!(e.to_string(), "worker died (exit status 3) while running task 7, pid 4242");
    /// ```
    #[error(
        "worker died ({cause}) while running task {task}, pid {pid}{}",
        on_rank(rank)
    )]
    WorkerDied {
        /// Process id of the worker.
        pid: u32,
        /// The signal or exit status, or [`Death::StackOverflow`] when the signal was one.
        cause: Death,
        /// Index of the task within its call: its position in `map`'s input, 0 for `apply`
        /// and for a [`Process`](crate::Process) (whose target is one task). Always known:
        /// the pool blames only items it handed to that worker.
        task: usize,
        /// The MPI rank whose worker it was, in a pool that spans ranks (feature `mpi`);
        /// `None` on one machine.
        rank: Option<Rank>,
    },
    /// The task ran longer than the pool's `task_timeout`. A process pool's worker was killed
    /// and replaced; a thread pool's ([`dummy::Pool`](crate::dummy::Pool)) thread cannot be
    /// killed: it was left to run on, its result to be discarded, and another thread took its
    /// place.
    #[error(
        "task {task} timed out after {after:?} in worker process {pid}{}",
        on_rank(rank)
    )]
    TaskTimeout {
        /// Index of the task within its call.
        task: usize,
        /// The configured limit.
        after: Duration,
        /// The worker process that ran it (that was killed), or, for a thread pool, this
        /// process.
        pid: u32,
        /// The MPI rank whose worker it was, in a pool that spans ranks (feature `mpi`);
        /// `None` on one machine.
        rank: Option<Rank>,
    },
    /// A bounded wait (`get_timeout`, `join_timeout`, …) ran out before the result was there.
    /// Nothing is lost: the call can be repeated.
    #[error("timed out waiting")]
    Timeout,
    /// The pool was closed: it accepts no more work.
    #[error("the pool is closed")]
    PoolClosed,
    /// `join()` was called on a pool that was neither closed nor terminated.
    #[error("join() needs close() or terminate() first")]
    PoolStillRunning,
    /// The pool was terminated before this task could finish.
    #[error("the pool was terminated")]
    PoolTerminated,
    /// The pool's initializer failed in a worker, so the pool cannot serve tasks.
    #[error("the pool initializer failed: {0}")]
    InitializerFailed(Box<Error>),
    /// A value could not be encoded; the message says why in words: its `Serialize` failed
    /// (with that message), it is too large for one message, or it carries a handle where
    /// none can go (the result of a task run on another MPI rank, which crosses machines as
    /// bytes; a value serialized outside multiproc's own messages).
    ///
    /// # Examples
    /// ```
    /// /// A value whose `Serialize` fails.
    /// #[derive(serde::Deserialize)]
    /// struct Refuses;
    /// impl serde::Serialize for Refuses {
    ///     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
    ///         Err(serde::ser::Error::custom("not today"))
    ///     }
    /// }
    /// fn take(_: Refuses) {}
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// match pool.apply(take, Refuses) {
    ///     Err(multiproc::Error::Encode(why)) => assert!(why.contains("not today")),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[error("could not encode a value: {0}")]
    Encode(String),
    /// Bytes could not be decoded into the expected type.
    #[error("could not decode a value: {0}")]
    Decode(String),
    /// The peer broke the protocol: a malformed or oversized frame.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The child could not be started or refused the handshake (for instance, it is not the
    /// same executable as the parent).
    #[error("could not start the child process: {0}")]
    Spawn(String),
    /// The other end of a channel is gone.
    #[error("the other end disconnected")]
    Disconnected,
    /// [`Process::join`](crate::Process::join) or another call that needs a running or
    /// finished process was made on one that was never started: there is nothing to wait for
    /// (Python raises `AssertionError` there).
    ///
    /// # Examples
    /// ```
    /// let e = multiproc::Error::NotStarted;
    /// assert_eq!(e.to_string(), "the process was not started");
    /// ```
    #[error("the process was not started")]
    NotStarted,
    /// [`Process::start`](crate::Process::start) was called a second time: a process runs at
    /// most once (Python raises `AssertionError` there); make a new `Process` to run it again.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc::Error::AlreadyStarted;
    /// assert_eq!(e.to_string(), "the process was already started");
    /// ```
    #[error("the process was already started")]
    AlreadyStarted,
    /// The result was already taken out by an earlier `get`: a value is handed over once,
    /// like an item taken from a queue.
    #[error("the result was already taken")]
    ResultTaken,
    /// The thread that held a lock died while holding it (its process was killed, say). The
    /// lock is free again and usable; the data it protected may be half-updated.
    #[error(
        "the holder of the lock (thread {thread}) died while holding it; the lock is free again"
    )]
    OwnerDied {
        /// Thread id of the dead holder.
        thread: u32,
    },
    /// This thread already holds the (non-re-entrant) lock it tried to take: waiting would
    /// never end.
    #[error("this thread already holds the lock")]
    Deadlock,
    /// A bounded semaphore was released more often than it was acquired.
    #[error("semaphore released too many times")]
    ReleasedTooManyTimes,
    /// The barrier was aborted, reset, timed out, or lost a party.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// The operation cannot be done to what it was asked of: a thread cannot be stopped from
    /// outside, so [`dummy::Process::terminate`](crate::dummy::Process::terminate) and `kill`
    /// are refused. The message says what and why.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc::Error::Unsupported("a thread cannot be killed".into());
    /// assert_eq!(e.to_string(), "not supported: a thread cannot be killed");
    /// ```
    #[error("not supported: {0}")]
    Unsupported(String),
    /// An argument was out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bounded queue had no room (for `try_put`, or until `put_timeout` ran out).
    #[error("the queue is full")]
    Full,
    /// The handle was closed with `close()`.
    #[error("the handle is closed")]
    Closed,
    /// The manager's server is gone (shut down, killed, or never reachable): every proxy call
    /// says so at once, never waits.
    #[error("the manager is gone")]
    ManagerGone,
    /// The manager could not do what was asked (its message says why: an object that no
    /// longer exists, an update function that panicked, …).
    #[error("the manager refused: {0}")]
    Manager(String),
    /// The manager and this program do not share the key.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// An operating-system call failed.
    #[error("I/O error: {0}")]
    Io(
        #[from]
        #[serde(with = "io_error")]
        std::io::Error,
    ),
    /// The call was cancelled ([`AsyncResult::cancel`](crate::AsyncResult::cancel)) before any
    /// of its tasks started: it never ran. Like `concurrent.futures.CancelledError`.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc::Error::Cancelled;
    /// assert_eq!(e.to_string(), "the call was cancelled before it started");
    /// ```
    #[error("the call was cancelled before it started")]
    Cancelled,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an [`Error::Io`] crosses between processes: its OS error code where it has one (the
/// receiver rebuilds the same error, kind and message), otherwise its message.
mod io_error {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(e: &std::io::Error, s: S) -> Result<S::Ok, S::Error> {
        (e.raw_os_error(), e.to_string()).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::io::Error, D::Error> {
        let (code, message) = <(Option<i32>, String)>::deserialize(d)?;
        Ok(match code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(message),
        })
    }
}

/// A copy of the error, so that an outcome kept by a handle (a [`Process`](crate::Process)'s)
/// can be reported again. Every variant is copied whole but [`Error::Io`], which keeps its OS
/// error code where it has one, otherwise its kind and message: it displays the same, but its
/// `Debug` form may differ and an inner error of its own (`get_ref`) is not kept.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::TaskPanicked {
                message,
                location,
                backtrace,
            } => Error::TaskPanicked {
                message: message.clone(),
                location: location.clone(),
                backtrace: backtrace.clone(),
            },
            Error::WorkerDied {
                pid,
                cause,
                task,
                rank,
            } => Error::WorkerDied {
                pid: *pid,
                cause: cause.clone(),
                task: *task,
                rank: rank.clone(),
            },
            Error::TaskTimeout {
                task,
                after,
                pid,
                rank,
            } => Error::TaskTimeout {
                task: *task,
                after: *after,
                pid: *pid,
                rank: rank.clone(),
            },
            Error::Timeout => Error::Timeout,
            Error::PoolClosed => Error::PoolClosed,
            Error::PoolStillRunning => Error::PoolStillRunning,
            Error::PoolTerminated => Error::PoolTerminated,
            Error::InitializerFailed(e) => Error::InitializerFailed(e.clone()),
            Error::Encode(m) => Error::Encode(m.clone()),
            Error::Decode(m) => Error::Decode(m.clone()),
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Spawn(m) => Error::Spawn(m.clone()),
            Error::NotStarted => Error::NotStarted,
            Error::AlreadyStarted => Error::AlreadyStarted,
            Error::Disconnected => Error::Disconnected,
            Error::ResultTaken => Error::ResultTaken,
            Error::Cancelled => Error::Cancelled,
            Error::OwnerDied { thread } => Error::OwnerDied { thread: *thread },
            Error::Deadlock => Error::Deadlock,
            Error::ReleasedTooManyTimes => Error::ReleasedTooManyTimes,
            Error::BrokenBarrier => Error::BrokenBarrier,
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Full => Error::Full,
            Error::Closed => Error::Closed,
            Error::ManagerGone => Error::ManagerGone,
            Error::Manager(m) => Error::Manager(m.clone()),
            Error::AuthenticationFailed(m) => Error::AuthenticationFailed(m.clone()),
            Error::Io(e) => Error::Io(match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(e.kind(), e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_error_says_the_same() {
        let errors = [
            Error::TaskPanicked {
                message: "boom".into(),
                location: Some("a.rs:1:2".into()),
                backtrace: None,
            },
            Error::InitializerFailed(Box::new(Error::Decode("bad".into()))),
            Error::Io(std::io::Error::from_raw_os_error(24)),
            Error::Io(std::io::Error::other("custom")),
        ];
        for e in errors {
            assert_eq!(e.clone().to_string(), e.to_string());
            assert_eq!(format!("{:?}", e.clone()), format!("{e:?}"));
        }
    }

    #[test]
    fn an_error_crosses_between_processes_and_says_the_same() {
        let errors = [
            Error::WorkerDied {
                pid: 7,
                cause: Death::Signal {
                    number: 9,
                    name: "SIGKILL".into(),
                },
                task: 3,
                rank: Some(Rank {
                    number: 2,
                    host: "node7".into(),
                }),
            },
            Error::InitializerFailed(Box::new(Error::TaskTimeout {
                task: 1,
                after: Duration::from_millis(1500),
                pid: 8,
                rank: None,
            })),
            Error::Io(std::io::Error::from_raw_os_error(24)),
            Error::Io(std::io::Error::other("custom")),
        ];
        for e in errors {
            let bytes = crate::wire::codec::encode(&e).unwrap();
            let back: Error = crate::wire::codec::decode(&bytes).unwrap();
            assert_eq!(back.to_string(), e.to_string());
        }
        let bytes = crate::wire::codec::encode(&Error::Io(std::io::Error::from_raw_os_error(2)));
        match crate::wire::codec::decode::<Error>(&bytes.unwrap()).unwrap() {
            Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }
}
