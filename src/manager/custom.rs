//! `Proxy<T>`: an object of the program's own type kept by the manager's server, whose methods
//! run there, like an object of a class registered with Python's `BaseManager.register`. (The
//! server's side is in `hosted.rs`.)

use std::marker::PhantomData;

use super::hosted::{self, HostedOp};
use super::protocol::{Op, Reply};
use super::proxy::{self, Remote, typed_proxy};
use crate::error::Result;
use crate::task::{self, ArgTuple, Data};
use crate::wire::codec;

/// An object of any serde type that lives in a [`Manager`](crate::Manager)'s server
/// ([`Manager::host`](crate::Manager::host)), whose methods every process holding a copy of
/// this proxy calls there: Python's `BaseManager.register("Counter", Counter)` then
/// `m.Counter()`, without the registration.
///
/// A method is a `fn(&mut T, A) -> R` — a method path such as `Counter::add`, or a closure
/// that captures nothing — run by [`call`](Self::call) on the server under the object's lock,
/// so a call is atomic: no other call, [`get`](Self::get) or [`set`](Self::set) comes between
/// its start and its end.
///
/// The server keeps the object decoded between calls, and encodes it after each call that
/// returns (see [`call`](Self::call)): a call costs one encoding of the object, not a decoding
/// too. Clone the proxy, or send it in a `Process` or pool argument, a `Queue` item or a
/// `Pipe` message: it connects to the server from whatever process it arrives in.
///
/// # Examples
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { n: u64 }
///
/// impl Counter {
///     fn add(&mut self, by: u64) -> u64 {
///         self.n += by;
///         self.n
///     }
/// }
///
/// multiproc::init();
/// let m = multiproc::Manager::new()?;
/// let counter = m.host(Counter { n: 0 })?;
/// assert_eq!(counter.call(Counter::add, 5)?, 5);
/// assert_eq!(counter.call(|c: &mut Counter, (): ()| c.n * 10, ())?, 50);
/// assert_eq!(counter.get()?.n, 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A closure that captures a variable does not compile (pass the value as the argument):
/// ```compile_fail
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Counter { n: u64 }
/// multiproc::init();
/// let m = multiproc::Manager::new().unwrap();
/// let counter = m.host(Counter { n: 0 }).unwrap();
/// let by = 5;
/// counter.call(move |c: &mut Counter, (): ()| c.n += by, ()).unwrap();
/// ```
pub struct Proxy<T> {
    remote: Remote,
    _t: PhantomData<fn(T) -> T>,
}

typed_proxy!(Proxy<T>);

impl<T: Data> Proxy<T> {
    fn op(&self, op: HostedOp) -> Result<Reply> {
        self.remote.call(Op::Hosted(op))
    }

    /// Runs `f(&mut object, arg)` on the server, under the object's lock; returns what `f`
    /// returned. `f` is a `fn` item or a closure that captures nothing, like a task.
    ///
    /// A call is all or nothing: if `f` panics (or the argument, the result or the object
    /// cannot be encoded or decoded), the object is left as it was before the call, whatever
    /// `f` did to it, and the server serves on. (The server encodes the object after each call,
    /// which is what it falls back to.)
    ///
    /// A call that never returns holds this object, and this thread's connection to the
    /// manager, until the manager shuts down; other objects and other clients are served on.
    /// So does a call whose `f` uses a proxy of this same object: its lock is held.
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone;
    /// [`Error::Manager`](crate::Error::Manager) if `f` panicked (with its message), the
    /// object is not a `T` (it was read as another type: it fails to decode), or this program
    /// is not the manager's executable.
    ///
    /// # Examples
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::new()?;
    /// let log = m.host(Vec::<String>::new())?;
    /// log.call(Vec::push, "one".to_string())?;
    /// let failed = log.call(|v: &mut Vec<String>, s: String| {
    ///     v.push(s);
    ///     assert!(v.len() < 2, "one entry at most");
    /// }, "two".to_string());
    /// assert!(matches!(failed, Err(multiproc::Error::Manager(why)) if why.contains("one entry at most")));
    /// assert_eq!(log.get()?, ["one"]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn call<F, A, R>(&self, f: F, arg: A) -> Result<R>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + Sync + 'static,
        A: Data,
        R: Data,
    {
        task::reject_captures!(F, (&mut T, A), ArgTuple);
        let method = hosted::method_for::<F, T, A, R>(f);
        let arg = codec::encode(&arg)?;
        proxy::some_value_of(self.op(HostedOp::Call { method, arg })?)
    }

    /// A copy of the object (read from its encoded form: any program that has the proxy may).
    ///
    /// # Errors
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) once the server is gone;
    /// [`Error::Decode`](crate::Error::Decode) if the object is not a `T`.
    pub fn get(&self) -> Result<T> {
        proxy::some_value_of(self.op(HostedOp::Get)?)
    }

    /// Replaces the object; returns the one it replaced.
    ///
    /// # Errors
    /// As [`get`](Self::get); a value that cannot be encoded.
    pub fn set(&self, value: T) -> Result<T> {
        let value = codec::encode(&value)?;
        proxy::some_value_of(self.op(HostedOp::Set { value })?)
    }

    /// Sets the object of a new hosted object (`Manager::host`): there was none.
    pub(crate) fn init(self, value: T) -> Result<Self> {
        let value = codec::encode(&value)?;
        match self.op(HostedOp::Set { value })? {
            Reply::Value(None) => Ok(self),
            other => Err(proxy::unexpected(other)),
        }
    }
}
