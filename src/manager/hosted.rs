//! The server's side of hosted objects (`Manager::host`; the proxy is in `custom.rs`): a value
//! of the client's own type, kept by the server, whose methods run there.
//!
//! The object arrives as bytes, and its bytes stay the truth: they are always current. Beside
//! them the server keeps the object decoded once a method has run (a `Box<dyn Any + Send>`),
//! so that the next call finds it ready. A method is a trampoline monomorphised for the
//! object's type ([`method_for`]), which only a client of the same executable may name, as for
//! a dict's update. After a method returns, the object is encoded again: that copy is what a
//! method that panics falls back to (the decoded object, perhaps half-modified, is dropped; the
//! bytes are the state before the call), and what `get` reads, for any client, without running
//! code. A call thus costs one encoding of the object and no decoding, where a dict's update
//! costs both.
//!
//! A method runs under the object's lock, on the server thread of the client that called: one
//! that never returns holds that object and that client, not the server.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

use super::protocol::{Bytes, Executable, Reply};
use crate::error::Result;
use crate::task::{self, ArgTuple, Data};
use crate::wire::codec;
use crate::wire::message::Failure;

/// What a failed call adds to its error.
const LEFT_AS_IT_WAS: &str = "the object is left as it was before the call";

/// An operation on a hosted object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostedOp {
    /// The reply is the object, encoded.
    Get,
    /// Replace the object; the reply is the one it replaced, encoded.
    Set { value: Bytes },
    /// Run the method trampoline at `method` (see [`method_for`]) on the object with the encoded
    /// argument `arg`; the reply is the method's result, encoded.
    Call { method: i64, arg: Bytes },
}

/// A hosted object as the server keeps it.
#[derive(Default)]
pub(crate) struct Held {
    /// The object, encoded as of its last `Set` or the last call that returned; `None` only
    /// between its creation and its first `Set` (`Manager::host`).
    bytes: Option<Bytes>,
    /// The object decoded by the last call that returned, if the bytes have not been replaced
    /// since. Of the type of that call's proxy: a call through a proxy of another type decodes
    /// the bytes as its own.
    decoded: Option<Box<dyn Any + Send>>,
}

/// A method trampoline: runs one method on the object with its encoded argument.
type Method = fn(held: &mut Held, arg: &[u8]) -> Reply;

/// Runs `op` on the object (under its lock); `exe`: whether the client runs the manager's
/// executable, and so may name a method.
pub(crate) fn op(held: &mut Held, op: HostedOp, exe: Executable) -> Reply {
    match op {
        HostedOp::Get => Reply::Value(held.bytes.clone()),
        HostedOp::Set { value } => {
            held.decoded = None;
            Reply::Value(held.bytes.replace(value))
        }
        HostedOp::Call { method, arg } if exe == Executable::Same => {
            // SAFETY: only a client that runs this same executable gets here (checked in its
            // handshake, `server::welcome`), so `method` is an offset it computed with
            // `method_for`, of a `Method` at the same offset here.
            let method = unsafe { task::fn_at::<Method>(method) };
            method(held, &arg)
        }
        HostedOp::Call { .. } => Reply::Failed(
            "calling a hosted object's method needs the manager's own executable".into(),
        ),
    }
}

/// The offset of the trampoline that runs `F` on a hosted `T` (what [`HostedOp::Call`] names).
pub(crate) fn method_for<F, T, A, R>(_f: F) -> i64
where
    F: Fn(&mut T, A) -> R + Copy + Send + Sync + 'static,
    T: Data,
    A: Data,
    R: Data,
{
    task::offset_of_fn(method::<F, T, A, R> as Method as usize)
}

/// The trampoline for `F` on a `T` (see [`Method`]).
fn method<F, T, A, R>(held: &mut Held, arg: &[u8]) -> Reply
where
    F: Fn(&mut T, A) -> R + Copy + Send + Sync + 'static,
    T: Data,
    A: Data,
    R: Data,
{
    // The serde code of the argument, the result and the object is user code too: a panic in
    // any of it fails the call, as one in the method does, and leaves the object as it was.
    match catch_unwind(AssertUnwindSafe(|| call::<F, T, A, R>(held, arg))) {
        Ok(Ok(result)) => Reply::Value(Some(result)),
        Ok(Err(e)) => Reply::Failed(format!("{e}; {LEFT_AS_IT_WAS}")),
        Err(payload) => Reply::Failed(match task::failure_from_panic(payload) {
            Failure::Panic {
                message,
                location: Some(at),
                ..
            } => format!("the method panicked at {at}: {message}; {LEFT_AS_IT_WAS}"),
            Failure::Panic { message, .. } => {
                format!("the method panicked: {message}; {LEFT_AS_IT_WAS}")
            }
            other => format!("{other:?}; {LEFT_AS_IT_WAS}"),
        }),
    }
}

/// Runs `F` on the object; returns its result, encoded. The object is changed only if all went
/// well: until then the decoded object is out of `held` (a panic drops it), and the bytes are
/// replaced last.
fn call<F, T, A, R>(held: &mut Held, arg: &[u8]) -> Result<Bytes>
where
    F: Fn(&mut T, A) -> R + Copy + Send + Sync + 'static,
    T: Data,
    A: Data,
    R: Data,
{
    let Some(bytes) = &held.bytes else {
        return Err(crate::Error::Manager("the object was never set".into()));
    };
    let arg: A = codec::decode(arg)?;
    let mut object: Box<T> = match held.decoded.take().map(|d| d.downcast::<T>()) {
        Some(Ok(object)) => object,
        _ => Box::new(codec::decode(bytes)?),
    };
    let result = task::call_here::<F, (&mut T, A), ArgTuple>((&mut *object, arg));
    let result = codec::encode(&result)?;
    held.bytes = Some(codec::encode(&*object)?);
    held.decoded = Some(object);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the client runs the manager's executable (`op`'s `exe`).
    const SAME_EXE: Executable = Executable::Same;
    const FOREIGN: Executable = Executable::Foreign;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counter {
        n: u64,
        log: Vec<u64>,
    }

    impl Counter {
        fn add(&mut self, by: u64) -> u64 {
            self.n += by;
            self.log.push(by);
            self.n
        }

        /// Changes the object, then panics: the change must not stay.
        fn add_then_panic(&mut self, by: u64) {
            self.n += by;
            panic!("no more than {}", self.n - by);
        }
    }

    fn held(counter: &Counter) -> Held {
        let mut held = Held::default();
        let set = HostedOp::Set {
            value: codec::encode(counter).unwrap(),
        };
        assert!(matches!(op(&mut held, set, SAME_EXE), Reply::Value(None)));
        held
    }

    fn call_with<A: Data>(held: &mut Held, method: i64, arg: A, exe: Executable) -> Reply {
        let arg = codec::encode(&arg).unwrap();
        op(held, HostedOp::Call { method, arg }, exe)
    }

    fn current(held: &mut Held) -> Counter {
        match op(held, HostedOp::Get, FOREIGN) {
            Reply::Value(Some(bytes)) => codec::decode(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_call_keeps_the_object_decoded_and_its_bytes_current() {
        let mut held = held(&Counter { n: 1, log: vec![] });
        let add = method_for(Counter::add);
        for (by, want) in [(2u64, 3u64), (4, 7)] {
            match call_with(&mut held, add, by, SAME_EXE) {
                Reply::Value(Some(r)) => assert_eq!(codec::decode::<u64>(&r).unwrap(), want),
                other => panic!("{other:?}"),
            }
            assert!(held.decoded.as_ref().is_some_and(|d| d.is::<Counter>()));
        }
        assert_eq!(
            current(&mut held),
            Counter {
                n: 7,
                log: vec![2, 4]
            }
        );
        // A `Set` drops the decoded object: the next call decodes the new one.
        let set = HostedOp::Set {
            value: codec::encode(&Counter { n: 10, log: vec![] }).unwrap(),
        };
        assert!(matches!(
            op(&mut held, set, SAME_EXE),
            Reply::Value(Some(_))
        ));
        assert!(held.decoded.is_none());
        assert!(matches!(
            call_with(&mut held, add, 1u64, SAME_EXE),
            Reply::Value(Some(_))
        ));
        assert_eq!(current(&mut held).n, 11);
    }

    #[test]
    fn a_panicking_call_leaves_the_object_as_it_was() {
        let mut held = held(&Counter { n: 5, log: vec![] });
        let add = method_for(Counter::add);
        call_with(&mut held, add, 1u64, SAME_EXE);
        let boom = method_for(Counter::add_then_panic);
        match call_with(&mut held, boom, 100u64, SAME_EXE) {
            Reply::Failed(why) => {
                assert!(why.contains("no more than 6"), "{why}");
                assert!(why.contains(LEFT_AS_IT_WAS), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            held.decoded.is_none(),
            "the half-modified object was dropped"
        );
        assert_eq!(current(&mut held), Counter { n: 6, log: vec![1] });
        assert!(matches!(
            call_with(&mut held, add, 1u64, SAME_EXE),
            Reply::Value(Some(_))
        ));
        assert_eq!(current(&mut held).n, 7);
        // An argument of the wrong shape fails before anything runs.
        let bad = op(
            &mut held,
            HostedOp::Call {
                method: add,
                arg: vec![1],
            },
            SAME_EXE,
        );
        assert!(matches!(bad, Reply::Failed(why) if why.contains(LEFT_AS_IT_WAS)));
        assert_eq!(current(&mut held).n, 7);
    }

    #[test]
    fn a_proxy_of_another_type_decodes_the_bytes_as_its_own() {
        /// Encoded as a `Counter` is.
        #[derive(Serialize, Deserialize)]
        struct Pair(u64, Vec<u64>);
        let mut held = held(&Counter { n: 3, log: vec![] });
        let add = method_for(Counter::add);
        call_with(&mut held, add, 1u64, SAME_EXE);
        let double = method_for(|p: &mut Pair, (): ()| {
            p.0 *= 2;
            p.0
        });
        match call_with(&mut held, double, (), SAME_EXE) {
            Reply::Value(Some(r)) => assert_eq!(codec::decode::<u64>(&r).unwrap(), 8),
            other => panic!("{other:?}"),
        }
        assert!(held.decoded.as_ref().is_some_and(|d| d.is::<Pair>()));
        call_with(&mut held, add, 1u64, SAME_EXE);
        assert_eq!(
            current(&mut held),
            Counter {
                n: 9,
                log: vec![1, 1]
            }
        );
        // A type the bytes do not decode as fails, and changes nothing.
        let text = method_for(|s: &mut String, (): ()| s.len());
        let failed = call_with(&mut held, text, (), SAME_EXE);
        assert!(matches!(failed, Reply::Failed(why) if why.contains(LEFT_AS_IT_WAS)));
        assert_eq!(current(&mut held).n, 9);
    }

    #[test]
    fn a_foreign_client_may_read_and_replace_but_not_call() {
        let mut held = held(&Counter { n: 1, log: vec![] });
        let add = method_for(Counter::add);
        let foreign = call_with(&mut held, add, 1u64, FOREIGN);
        assert!(matches!(foreign, Reply::Failed(why) if why.contains("own executable")));
        call_with(&mut held, add, 1u64, SAME_EXE);
        assert_eq!(current(&mut held).n, 2, "read without running any code");
        let never = &mut Held::default();
        assert!(
            matches!(call_with(never, add, 1u64, SAME_EXE), Reply::Failed(why) if why.contains("never set"))
        );
        assert!(matches!(
            op(never, HostedOp::Get, SAME_EXE),
            Reply::Value(None)
        ));
    }
}
