//! The same API over threads, like Python's `multiprocessing.dummy`: [`Pool`] (Python's
//! `ThreadPool`) and [`Process`] have the process [`Pool`](crate::Pool)'s and
//! [`Process`](crate::Process)'s methods, with the same argument shapes, so a program switches
//! between processes and threads by changing its `use` line:
//!
//! ```
//! use multiproc::dummy::Pool; // was: use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//! fn add(a: u64, b: u64) -> u64 { a + b }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
//! assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)])?, vec![3, 7]);
//! assert_eq!(pool.apply_async(add, (20, 22)).get()?, 42);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! What threads allow on top: tasks may be closures that capture (Python's local functions,
//! which its process pool cannot pickle), and arguments and results need not be serde types —
//! anything `Send + 'static`, shared state such as `Arc<Mutex<_>>` included:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! struct Stats { seen: Vec<u64> } // no derives
//!
//! let stats = Arc::new(Mutex::new(Stats { seen: Vec::new() }));
//! let pool = multiproc::dummy::Pool::new(2)?;
//! let mine = stats.clone();
//! let offset = 10;
//! pool.map(move |x: u64| mine.lock().unwrap().seen.push(x + offset), 0..3u64)?;
//! assert_eq!(stats.lock().unwrap().seen.len(), 3);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! What must hold is what threads need: a task and its values can be sent to another thread.
//! An `Rc` cannot, and the compiler says so:
//!
//! ```compile_fail
//! let pool = multiproc::dummy::Pool::new(1).unwrap();
//! let shared = std::rc::Rc::new(5u32);
//! // error: `Rc<u32>` cannot be sent between threads safely
//! pool.apply(move |x: u32| x + *shared, 1).unwrap();
//! ```
//!
//! # Threads or processes?
//!
//! Threads start in microseconds, share memory (nothing is encoded or copied), and a call
//! costs well under a microsecond of overhead: choose them for tasks that wait (I/O, sleeps,
//! other services) or for work on data too large to send, when the tasks can be trusted.
//! Choose processes (the crate's [`Pool`](crate::Pool)) for isolation — a segfault, abort,
//! stack overflow or leak in a task fails that task, not the program — for C libraries that
//! are not thread-safe, and for tasks that must be stoppable: a thread cannot be killed.
//!
//! # Behaviour
//!
//! - **Panics** fail their own item with [`Error::TaskPanicked`](crate::Error::TaskPanicked)
//!   (message, location, backtrace when `RUST_BACKTRACE` asks); the thread serves on. The
//!   panic is not printed by the program's panic hook: the error carries it, as a process
//!   pool's does.
//! - **[`task_timeout`](PoolBuilder::task_timeout)**: an item that overruns fails with
//!   [`Error::TaskTimeout`](crate::Error::TaskTimeout) and a new thread takes its thread's
//!   place, so the pool keeps its size. The old thread cannot be killed: it runs on, detached,
//!   until the function returns, and its value is dropped. A task that may never return
//!   belongs in a process pool.
//! - **[`terminate`](Pool::terminate)** (and dropping the pool) fails queued and running
//!   tasks with [`Error::PoolTerminated`](crate::Error::PoolTerminated) at once; running
//!   functions go on, detached, as above — without a `task_timeout`, to the end of the piece
//!   of a `map` they were running (see [`Pool`]).
//! - **`close`/`join`/`join_timeout`, `imap`'s laziness, callbacks, `initializer`,
//!   `max_tasks_per_child`** behave as in the process pool. Results are the same
//!   [`AsyncResult`](crate::AsyncResult).
//! - **[`Process`]**: `join()` returns the function's value; `pid()` is this program's;
//!   `terminate()`/`kill()` return [`Error::Unsupported`](crate::Error::Unsupported).
//!
//! The design: a fixed set of threads takes work from one shared queue (a crossbeam channel),
//! never a thread per task. A `map` collects its input into a vector and cuts it into a few
//! large pieces per thread; each thread writes its piece's values straight into the result's
//! vector, with no allocation or queue operation per item.

mod imap;
mod job;
mod pool;
mod process;
mod task;
mod worker;

pub use imap::IMap;
pub use pool::{Pool, PoolBuilder};
pub use process::Process;
pub use task::Task;
