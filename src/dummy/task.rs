//! What a thread pool runs: any `Fn` that may be shared with its threads, closures that capture
//! included, called with its arguments given as one value, as the process pool's tasks are.
//!
//! The shapes of the arguments are those of [`crate::Task`] — `()` for `fn f()`, `x` for
//! `fn f(X)`, `(a, b)` for `fn f(A, B)` — told apart by the same marker types ([`OneArg`],
//! [`ArgTuple`]), so that a call written for [`crate::Pool`] compiles unchanged for
//! [`dummy::Pool`](super::Pool). Nothing crosses a process boundary: no serde bounds, and no
//! zero-size rule.
//!
//! A panic in a task is caught on its thread and becomes that item's
//! [`Error::TaskPanicked`](crate::Error::TaskPanicked), with the message and, as in a process
//! pool's worker, the location and backtrace recorded by a panic hook. The hook is installed
//! once, in front of whatever hook the program had: on the pool's threads it records the panic
//! instead of printing it (the error reports it); on every other thread it hands the panic to
//! the program's hook as before.

use std::cell::Cell;
use std::sync::Once;

use crate::error::Error;
use crate::task::{ArgTuple, OneArg};
use crate::wire::message::Failure;

/// A function a thread pool or a thread [`Process`](super::Process) can run: a `fn` item or
/// any closure — capturing ones too — that can be shared with other threads
/// (`Fn + Send + Sync + 'static`), of any number of arguments, given as one value as for the
/// process [`Task`](crate::Task):
///
/// | the function | the argument you pass |
/// |---|---|
/// | `fn() -> R` | `()` |
/// | `fn(A) -> R` | `a` |
/// | `fn(A, B, …) -> R` (up to 12) | `(a, b, …)` |
///
/// Implemented for every such function; you never implement it. Arguments and results need
/// only be `Send + 'static`: no serde.
///
/// # Examples
/// ```
/// use std::sync::{Arc, Mutex};
/// use multiproc::dummy::Pool;
///
/// fn join(a: String, b: String) -> String { a + &b }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.apply(join, ("a".to_string(), "b".to_string()))?, "ab");
///
/// // A closure that captures, and arguments that are not serde types.
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// pool.apply(move |x: u32| log.lock().unwrap().push(x), 7)?;
/// assert_eq!(*seen.lock().unwrap(), [7]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run as a thread pool task taking `{Args}`",
    label = "not a task that takes `{Args}`",
    note = "a task is a function or closure that is `Send + Sync + 'static`; `f()` takes `()`, `f(a)` takes `a`, `f(a, b)` takes `(a, b)`"
)]
pub trait Task<Args, Kind>: sealed::Sealed<Args, Kind> + Send + Sync + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with `args`.
    #[doc(hidden)]
    fn call(&self, args: Args) -> Self::Output;
}

mod sealed {
    /// Keeps [`Task`](super::Task) to functions and closures, so that it can grow.
    pub trait Sealed<Args, Kind> {}
}

#[diagnostic::do_not_recommend]
impl<Func, A, Ret> sealed::Sealed<A, OneArg> for Func where
    Func: Fn(A) -> Ret + Send + Sync + 'static
{
}

#[diagnostic::do_not_recommend]
impl<Func, A, Ret> Task<A, OneArg> for Func
where
    Func: Fn(A) -> Ret + Send + Sync + 'static,
{
    type Output = Ret;
    fn call(&self, arg: A) -> Ret {
        self(arg)
    }
}

macro_rules! arg_tuple {
    ($($arg:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($arg),*> sealed::Sealed<($($arg,)*), ArgTuple> for Func where
            Func: Fn($($arg),*) -> Ret + Send + Sync + 'static
        {
        }

        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($arg),*> Task<($($arg,)*), ArgTuple> for Func
        where
            Func: Fn($($arg),*) -> Ret + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

crate::task::for_each_arity!(arg_tuple);

thread_local! {
    /// Whether this thread is one of a thread pool's or a thread `Process`'s.
    static OURS: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as one whose panics become task errors, and installs the panic hook that
/// records them (once per program, in front of the program's own hook).
pub(super) fn catch_panics_on_this_thread() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let theirs = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if OURS.with(Cell::get) {
                crate::task::record_panic(info);
            } else {
                theirs(info);
            }
        }));
    });
    OURS.with(|ours| ours.set(true));
}

/// The error for a panic caught on one of our threads: [`Error::TaskPanicked`] with what the
/// hook recorded.
pub(super) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let failure: Failure = crate::task::failure_from_panic(payload);
    failure.into()
}

/// Runs `f`, turning a panic into its error.
pub(super) fn catching<R>(f: impl FnOnce() -> R) -> Result<R, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(panic_error)
}
