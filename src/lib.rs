//! # multiproc
//!
//! Python's `multiprocessing`, done properly in Rust: real OS processes with Python's nouns —
//! [`Process`], [`Pool`], [`AsyncResult`] — Rust's types and errors, and none of the famous
//! failure modes. A worker that is killed fails only the task it was running; nothing ever waits
//! forever; no child outlives the program.
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
//! assert_eq!(p.join()?, 64); // join() returns the function's value
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
//! // error: multiproc tasks must be fn items or closures that capture nothing
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
//! ## Differences from Python's `multiprocessing`
//!
//! - **A dead worker never hangs the pool.** CPython's `Pool` waits forever when a worker is
//!   killed (gh-66587); here the task it was running fails with [`Error::WorkerDied`] naming the
//!   pid and signal, a replacement starts, and every other task completes.
//! - **Per-task timeouts** ([`PoolBuilder::task_timeout`]) kill the worker that overran.
//! - **`imap` is lazy**: the input is read as results are consumed, with a bounded window, so
//!   endless iterators work. CPython reads the whole input first.
//! - **`join()` returns the value** of a `Process`'s function.
//! - **Errors are values**: `map` returns `Result<Vec<R>>`, `imap` yields `Result<R>` per item.
//! - **A failing initializer** fails the pool's tasks with [`Error::InitializerFailed`] instead
//!   of respawning workers forever.
//! - Children always die with their parent (`PR_SET_PDEATHSIG`), even if it is `SIGKILL`ed.
//! - The start method is spawn (re-execute the binary); the child checks it runs the same
//!   executable as its parent before accepting any task.

mod bootstrap;
mod error;
mod pipe;
mod pool;
mod process;
mod queue;
mod shared;
mod sync;
mod sys;
mod task;
mod wire;
mod worker;

pub use bootstrap::{CurrentProcess, cpu_count, current_process, init};
pub use error::{Death, Error, Result};
pub use pipe::{Connection, Pipe};
pub use pool::{AsyncResult, IMap, Pool, PoolBuilder, StartMethod};
pub use process::Process;
pub use queue::{JoinableQueue, PutError, Queue, SimpleQueue};
pub use shared::array::{Array, ArrayGuard, RawArray};
pub use shared::element::Element;
pub use shared::value::{RawValue, Value, ValueGuard};
pub use sync::barrier::Barrier;
pub use sync::condition::{Condition, ConditionGuard};
pub use sync::event::Event;
pub use sync::lock::{Lock, LockGuard, RLock, RLockGuard};
pub use sync::semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use task::StarFn;

/// The README's Rust examples, compiled and run as doctests so that the front door never lies.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
