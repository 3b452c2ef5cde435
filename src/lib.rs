//! # multiproc
//!
//! Python's `multiprocessing`, done properly in Rust: real OS processes with Python's nouns —
//! [`Process`], [`Pool`], [`AsyncResult`] — Rust's types and errors, and none of the famous
//! failure modes. A worker that is killed fails only the task it was running, so a dead worker
//! never leaves a call waiting; no child outlives the program.
//!
//! Reach for processes instead of threads when you need isolation (a segfault, abort or leak in a
//! task must not take the program down), a hard kill of a runaway task, or parallel use of C
//! libraries that are not thread-safe.
//!
//! ## Start-up
//!
//! Children are this same program, started again. Call [`init()`] first in `main`; in a child it
//! serves the parent and never returns. (On Linux a start-up hook does it even earlier, which is
//! why pools work inside `#[test]` functions and doctests without further ceremony.)
//!
//! ## Process
//!
//! ```
//! fn cube(x: i64) -> i64 { x * x * x }
//!
//! multiproc::init();
//! let mut p = multiproc::Process::new(cube, 4);
//! p.start()?;
//! assert_eq!(*p.join()?, 64); // join() returns the function's value
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! ## Pool
//!
//! ```
//! use multiproc::{Error, Pool};
//!
//! fn square(x: u64) -> u64 { x * x }
//! fn fragile(x: u64) -> u64 {
//!     if x == 3 { panic!("three is unlucky") }
//!     x
//! }
//!
//! multiproc::init();
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10u64)?[9], 81);
//!
//! // A panic fails its own task only; imap gives each item its own Result.
//! let results: Vec<Result<u64, Error>> = pool.imap(fragile, 0..5u64).collect();
//! assert!(matches!(results[3], Err(Error::TaskPanicked { .. })));
//! assert_eq!(results[4].as_ref().unwrap(), &4);
//!
//! // Asynchronous calls, with callbacks run off the caller's thread.
//! let r = pool.apply_async(square, 5).on_success(|v| println!("got {v}"));
//! assert_eq!(r.get()?, 25);
//!
//! // Graceful end; dropping the pool instead would terminate it.
//! pool.close();
//! pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Tasks are `fn` items or closures that capture nothing: data travels in the argument, encoded
//! with serde. A capturing closure is a compile-time error — Python's "Can't pickle local
//! object", caught before the program runs:
//!
//! ```compile_fail
//! multiproc::init();
//! let pool = multiproc::Pool::new(2).unwrap();
//! let offset = 10u64;
//! // error: a multiproc task must be a fn item or a closure that captures nothing: pass data
//! // as the argument (reported by `cargo build`, at this call; `cargo check` does not see it)
//! let _ = pool.map(move |x: u64| x + offset, 0..4u64);
//! ```
//!
//! Pass the data in the argument instead:
//!
//! ```
//! multiproc::init();
//! let pool = multiproc::Pool::new(2)?;
//! let offset = 10u64;
//! let shifted = pool.map(|(x, off): (u64, u64)| x + off, (0..4u64).map(|x| (x, offset)))?;
//! assert_eq!(shifted, vec![10, 11, 12, 13]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! ## Threads
//!
//! [`dummy`] is the same API over threads, as Python's `multiprocessing.dummy`: change the
//! `use` line, and tasks may also be closures that capture, with values that are not serde
//! types.
//!
//! ```
//! use multiproc::dummy::Pool;
//!
//! let pool = Pool::new(2)?;
//! let offset = 10u64;
//! assert_eq!(pool.map(move |x: u64| x + offset, 0..4u64)?, vec![10, 11, 12, 13]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! ## From async code
//!
//! An [`AsyncResult`] can be awaited (`pool.apply_async(f, x).await`, under any executor) and
//! [cancelled](AsyncResult::cancel) while none of its tasks has started; with the `stream`
//! feature, [`IMap`] is a `futures_core::Stream` too.
//!
//! ## Watching a pool
//!
//! [`Pool::stats`] tells what a pool has done (workers started, died by cause; tasks
//! completed, failed, timed out, in flight; each worker's busy share); with the `progress`
//! feature, `PoolBuilder::progress` draws a bar for every map-like call; with the `tracing`
//! feature, a pool emits events for its workers' lives and a span for each call.
//!
//! ## Beyond one machine
//!
//! With the `mpi` feature, `Pool::builder().mpi()` spans the ranks of an MPI job: run the
//! same program under `mpirun -n N`, rank 0 runs `main` and the other ranks serve its pool,
//! each in worker processes of its own (see the `mpi` module and the README).
//!
//! ## Queues and pipes
//!
//! Handles — queues, pipe ends, locks, shared values, shared memory — travel inside arguments
//! and results, with their file descriptors: pass them to a [`Process`], a pool task or a pool
//! initializer, or return them from one (a task may make a `Queue` or a `Value` and hand it
//! back).
//!
//! ```
//! use multiproc::{Process, Queue};
//!
//! fn producer(q: Queue<Option<u32>>) {
//!     for i in 0..5 {
//!         q.put(Some(i * i)).unwrap();
//!     }
//!     q.put(None).unwrap(); // the sentinel
//! }
//!
//! multiproc::init();
//! let q = Queue::new()?;
//! let mut p = Process::new(producer, q.clone());
//! p.start()?;
//! let mut got = Vec::new();
//! while let Some(x) = q.get()? {
//!     got.push(x);
//! }
//! p.join()?;
//! assert_eq!(got, [0, 1, 4, 9, 16]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! [`Pipe`] gives two connected [`Connection`]s; when the other end closes or its process
//! dies, `recv` returns [`Error::Disconnected`] at once.
//!
//! ## Shared state
//!
//! [`Value`] and [`Array`] hold plain numbers in shared memory, with a lock; [`Lock`],
//! [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`]
//! work across processes. A lock whose holder died is reported as [`Error::OwnerDied`] to the
//! next taker and is usable afterwards. [`SharedMemory`] is a block of bytes, anonymous or by
//! name in `/dev/shm`.
//!
//! ```
//! use multiproc::{Process, Value};
//!
//! fn add(counter: Value<i64>) {
//!     for _ in 0..100 {
//!         *counter.lock().unwrap() += 1; // read-modify-write under the lock
//!     }
//! }
//!
//! multiproc::init();
//! let counter = Value::new(0i64)?;
//! let mut ps: Vec<_> = (0..3).map(|_| Process::new(add, counter.clone())).collect();
//! for p in &mut ps {
//!     p.start()?;
//! }
//! for p in &mut ps {
//!     p.join()?;
//! }
//! assert_eq!(counter.get()?, 300);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! ## Differences from Python's `multiprocessing`
//!
//! - **A dead worker never hangs the pool.** CPython's `Pool` waits forever when a worker is
//!   killed (gh-66587); here the task it was running fails with [`Error::WorkerDied`] naming the
//!   pid and signal (a stack overflow is named as one: [`Death::StackOverflow`]), a
//!   replacement starts, and every other task completes.
//! - **Per-task timeouts** ([`PoolBuilder::task_timeout`]) kill the worker that overran.
//! - **`imap` is lazy**: the input is read as results are consumed, with a bounded window, so
//!   endless iterators work. CPython reads the whole input first.
//! - **`join()` returns the value** of a `Process`'s function; [`AsyncResult::get`] hands its
//!   value over once (a second `get` is [`Error::ResultTaken`]), and
//!   [`successful()`](AsyncResult::successful) is `None` before the result is ready, where
//!   Python raises.
//! - **Arguments travel as one value**, as Python's `args=`: `()` for `fn f()`, `x` for
//!   `fn f(X)`, `(a, b)` for `fn f(A, B)` (see [`Task`]); owned types only (`String`, not
//!   `&str`).
//! - **Nothing there now is an answer, not an exception**: `try_x()` returns `Ok(None)` (a
//!   queue's `try_get`, a lock's `try_acquire`), a bounded `x_timeout(d)` that runs out of time
//!   returns `Err(Error::Timeout)` or, for a wait on a condition (`Event::wait_timeout`),
//!   `false`.
//! - **Errors are values**: `map` returns `Result<Vec<R>>`, `imap` yields `Result<R>` per item.
//! - **A failing initializer** fails the pool's tasks with [`Error::InitializerFailed`] instead
//!   of respawning workers forever.
//! - **Exit like Python**: at normal exit a program waits for its live non-daemon
//!   [`Process`]es (see [`active_children`]), then kills the daemons; and children always die
//!   with their parent (`PR_SET_PDEATHSIG`) if it is killed, even by `SIGKILL`. A `Process`
//!   started in a pool worker is killed when the worker exits (Python refuses to start it).
//! - **Queues have no feeder thread**: when `put` returns, the item is in shared memory, visible
//!   to every process, and survives the producer's exit. A blocking `get` whose queue is empty
//!   and has no other handle anywhere returns [`Error::Disconnected`] instead of waiting
//!   forever (`try_get` and `get_timeout` just find it empty).
//! - **Locks notice dead holders** ([`Error::OwnerDied`]); a barrier is broken by a party that
//!   died; re-taking a [`Lock`] on the thread that holds it is [`Error::Deadlock`], not a hang.
//! - Shared memory has no name unless you ask for one, so nothing can be left in `/dev/shm`.
//! - The default start method is spawn (re-execute the binary); the child checks it runs the
//!   same executable as its parent before accepting any task. [`StartMethod::Fork`] and
//!   [`StartMethod::ForkServer`] are there too, per pool, per process, or for the program
//!   ([`set_start_method`]); every child, however started, is supervised the same way.

// On docs.rs (`--cfg docsrs`, see Cargo.toml), items say which cargo feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bootstrap;
mod child;
mod children;
mod current;
pub mod dummy;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod launch;
mod manager;
mod mem;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pipe;
mod pool;
mod process;
mod queue;
mod shared;
mod sync;
mod sys;
mod task;
mod wire;

pub use child::start::init;
pub use children::{ActiveChild, active_children};
pub use current::{CurrentProcess, cpu_count, current_process};
pub use error::{Death, Error, Rank, Result};
pub use launch::{StartMethod, get_start_method, set_forkserver_preload, set_start_method};
pub use manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, Manager,
    ManagerBuilder, NamespaceProxy, Proxy, ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy,
    ValueProxy,
};
pub use pipe::{Connection, Pipe};
pub use pool::{
    AsyncResult, IMap, Pool, PoolBuilder, PoolStats, ResultFuture, WorkerDeaths, WorkerStats,
};
pub use process::Process;
pub use queue::{JoinableQueue, PutError, Queue, SimpleQueue};
pub use shared::array::{Array, ArrayGuard, ArrayIter, RawArray};
pub use shared::element::Element;
pub use shared::memory::SharedMemory;
pub use shared::value::{RawValue, Value, ValueGuard};
pub use sync::barrier::Barrier;
pub use sync::condition::{Condition, ConditionGuard};
pub use sync::event::Event;
pub use sync::lock::{Lock, LockGuard, RLock, RLockGuard};
pub use sync::semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use task::{ArgTuple, Data, OneArg, Task};

/// The README's Rust examples, compiled and run as doctests so that the front door never lies.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The Rust side of `docs/coming-from-python.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/coming-from-python.md")]
struct ComingFromPythonDoctests;
