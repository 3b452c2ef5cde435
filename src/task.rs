//! How a function crosses the process boundary.
//!
//! Parent and child run the same executable (the handshake checks it), so a function's address
//! relative to a fixed anchor in the binary is the same in both, whatever ASLR did. For every
//! task type the parent instantiates a *trampoline* — a monomorphised function that decodes one
//! argument, calls the task, and encodes its outcome — and sends the trampoline's offset from
//! [`anchor`]. The child adds its own anchor's address and calls it.
//!
//! The task itself is never sent: it must be a zero-sized type (a `fn` item or a closure that
//! captures nothing), so the child can conjure it out of no bytes. A capturing closure fails to
//! compile (see the crate docs), which is Rust's version of Python's "Can't pickle local object".

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::codec;
use crate::wire::message::Failure;

/// A trampoline: runs up to `max` items from the front of `input` — for each, counts it in
/// `started` (published in `progress`, which the parent reads if the worker dies), decodes
/// its argument, runs the task, appends the encoded outcome (see `codec::encode_ok`) to
/// `out` — and stops after the first item that did not succeed or whose outcome is large
/// ([`LARGE_OUTCOME`]). (A run of items per call, not one: for tiny tasks, an indirect call per
/// item costs as much as the task.)
pub(crate) type Entry = fn(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    max: u32,
    started: &mut u64,
    progress: &AtomicU64,
) -> Run;

/// What a trampoline did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// How many items it ran.
    pub(crate) items: u32,
    /// How the last of them went.
    pub(crate) last: Ran,
    /// Where the last one's outcome starts in `out`, if it is large.
    pub(crate) large_at: Option<usize>,
}

/// An outcome from this size up ends its run of items, so that only the last outcome of a run
/// can be large (the others take less than 64 MiB together): the worker can then give that one
/// a frame of its own when the reply it would share would pass the size limit (see
/// `child::worker::Replies`).
pub(crate) const LARGE_OUTCOME: usize = 1 << 20;

/// What happened to one item in a trampoline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The task returned and its value was encoded.
    Ok,
    /// The task panicked or its value could not be encoded (or was too large for a message,
    /// `wire::MAX_VALUE`); a failure was encoded instead.
    Failed,
    /// The argument could not be decoded: the rest of the input cannot be trusted.
    BadInput,
}

/// The fixed point trampoline offsets are measured from.
#[inline(never)]
fn anchor(
    input: &mut &[u8],
    _out: &mut Vec<u8>,
    max: u32,
    _started: &mut u64,
    _progress: &AtomicU64,
) -> Run {
    // A body that cannot be merged with any other function's.
    let (items, last) = if std::hint::black_box(input.len()) == usize::MAX - 7 {
        (max, Ran::Failed)
    } else {
        (0, Ran::BadInput)
    };
    Run {
        items,
        last,
        large_at: None,
    }
}

/// Runs the trampoline `entry` on the one argument encoded in `input`; returns the encoded
/// outcome (see `codec::encode_ok`), a failure if the function panicked.
pub(crate) fn run_once(entry: Entry, input: &[u8]) -> Vec<u8> {
    let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
    entry(&mut &input[..], &mut out, 1, &mut started, &progress);
    out
}

/// Offset of `entry` from the anchor, as sent to the child.
pub(crate) fn offset_of(entry: Entry) -> i64 {
    offset_of_fn(entry as usize)
}

/// Offset from the anchor of the function at `addr`: of a trampoline of another shape than
/// [`Entry`] too (a hosted object's method, `manager::hosted`).
pub(crate) fn offset_of_fn(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor as Entry as usize as i64)
}

/// A number that differs between two builds with a different layout: the anchor's distance
/// from another function, mixed into the handshake's executable identity.
pub(crate) fn layout_probe() -> u64 {
    (anchor as Entry as usize as u64).wrapping_sub(offset_of as fn(Entry) -> i64 as usize as u64)
}

/// Turns an offset received from the parent back into a trampoline.
///
/// # Safety
/// `offset` must come from [`offset_of`] in a process running the same executable (the
/// handshake's identity check establishes this for every channel that carries tasks).
pub(crate) unsafe fn entry_at(offset: i64) -> Entry {
    // SAFETY: the caller's guarantee, and `offset_of` is `offset_of_fn` of an `Entry`.
    unsafe { fn_at::<Entry>(offset) }
}

/// Turns an offset from [`offset_of_fn`] back into the function pointer it was made from.
///
/// # Safety
/// `offset` must be `offset_of_fn(f as usize)` for a function `f` of the pointer type `P`,
/// computed in a process running the same executable (the handshake's identity check
/// establishes this for every channel that carries such offsets).
pub(crate) unsafe fn fn_at<P: Copy>(offset: i64) -> P {
    const { assert!(std::mem::size_of::<P>() == std::mem::size_of::<usize>()) };
    let addr = (anchor as Entry as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's guarantee `addr` is the address of a function of type `P` in this
    // very binary, at the same offset from `anchor` as where it was computed; `P` is a function
    // pointer, which has the size of an address (checked above).
    unsafe { std::mem::transmute_copy::<usize, P>(&addr) }
}

/// Produces the value of a task's type, which is zero-sized (the compiler checks
/// [`Task::ZERO_SIZED`]).
///
/// # Safety
/// `F` must be inhabited: a zero-sized type without values (an empty enum) has none to
/// produce. A type some code held a value of, such as the one handed to [`entry_for`], is.
unsafe fn conjure<F: Task<Args, K>, Args, K>() -> F {
    let () = F::ZERO_SIZED;
    // SAFETY: `F` is zero-sized (checked at compile time above), so reading it touches no
    // memory; it is inhabited (the caller's guarantee), and a zero-sized type has one value.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// Checks at compile time that `F` can cross the boundary, and returns its trampoline offset.
pub(crate) fn entry_for<F, Args, K>(_f: F) -> i64
where
    F: Task<Args, K>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let () = F::ZERO_SIZED;
    offset_of(trampoline::<F, Args, K>)
}

/// Refers to [`Task::ZERO_SIZED`] in the body of a public method that takes a task: a capturing
/// closure's compile error then names the user's call, since a constant that fails to evaluate
/// is reported with the call that instantiated the function using it.
macro_rules! reject_captures {
    ($f:ty, $args:ty, $kind:ty) => {
        let () = <$f as $crate::task::Task<$args, $kind>>::ZERO_SIZED;
    };
}
pub(crate) use reject_captures;

/// Calls a task in this process (what `Process::run` does).
pub(crate) fn call_here<F: Task<Args, K>, Args, K>(args: Args) -> F::Output {
    // SAFETY: `Task` is sealed: only functions and closures implement it (user types cannot
    // implement `Fn` on stable Rust), and each such type has a value.
    unsafe { conjure::<F, Args, K>() }.call(args)
}

fn trampoline<F, Args, K>(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    max: u32,
    started: &mut u64,
    progress: &AtomicU64,
) -> Run
where
    F: Task<Args, K>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    run_many(input, out, max, started, progress, |args: Args| {
        call_here::<F, Args, K>(args)
    })
}

/// The body of every trampoline (see [`Entry`]).
#[inline(always)]
fn run_many<T: DeserializeOwned, R: Serialize>(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    max: u32,
    started: &mut u64,
    progress: &AtomicU64,
    call: impl Fn(T) -> R,
) -> Run {
    let mut large_at = None;
    for n in 1..=max {
        *started += 1;
        progress.store(*started, Ordering::Relaxed);
        let last = run_one(input, out, &call, &mut large_at);
        if last != Ran::Ok || large_at.is_some() {
            return Run {
                items: n,
                last,
                large_at,
            };
        }
    }
    Run {
        items: max,
        last: Ran::Ok,
        large_at: None,
    }
}

/// Runs one item (see [`Entry`]); notes in `large_at` where its outcome starts if it is large.
#[inline(always)]
fn run_one<T: DeserializeOwned, R: Serialize>(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    call: &impl Fn(T) -> R,
    large_at: &mut Option<usize>,
) -> Ran {
    // The argument's `Deserialize` and the value's `Serialize` are user code too: a panic in
    // either fails this item, like a panic in the task. One `catch_unwind` covers all three
    // steps (the hot path of tiny tasks); `decoded` tells a panic in decoding (after which the
    // rest of the input cannot be trusted) from a later one.
    let at = out.len();
    let mut decoded = false;
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let arg: T = codec::decode_front(input)?;
        decoded = true;
        let value = call(arg);
        codec::encode_ok(&value, out)
    }));
    match ran {
        Ok(Ok(())) => {
            // A plain number's outcome is 9 bytes: no need to look.
            if !codec::plain::is_scalar::<R>() && out.len() - at >= LARGE_OUTCOME {
                *large_at = Some(at);
            }
            Ran::Ok
        }
        Ok(Err(e)) => {
            out.truncate(at);
            if decoded {
                push_failure(out, Failure::Encode(e.to_string()));
                Ran::Failed
            } else {
                push_failure(out, Failure::Decode(e.to_string()));
                Ran::BadInput
            }
        }
        Err(payload) => {
            out.truncate(at);
            push_failure(out, failure_from_panic(payload));
            if decoded { Ran::Failed } else { Ran::BadInput }
        }
    }
}

/// Appends a failed outcome for one item.
pub(crate) fn push_failure(out: &mut Vec<u8>, failure: Failure) {
    codec::encode_failure(&failure, out);
}

thread_local! {
    /// Where and how the last panic on this thread happened, recorded by the worker's hook.
    static LAST_PANIC: RefCell<Option<(Option<String>, Option<String>)>> = const { RefCell::new(None) };
}

/// Installs a panic hook that records the location and backtrace of a panic for the task error,
/// instead of printing them: in a worker, the panic is reported to the caller.
pub(crate) fn capture_panics() {
    std::panic::set_hook(Box::new(record_panic));
}

/// Records where and how a panic happened on this thread, for [`failure_from_panic`] (a panic
/// hook's work, for the hooks of workers: pool processes, and `dummy`'s threads).
pub(crate) fn record_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info.location().map(|l| l.to_string());
    let bt = std::backtrace::Backtrace::capture();
    let backtrace =
        (bt.status() == std::backtrace::BacktraceStatus::Captured).then(|| bt.to_string());
    LAST_PANIC.with(|p| *p.borrow_mut() = Some((location, backtrace)));
}

/// Builds the failure for a caught panic.
pub(crate) fn failure_from_panic(payload: Box<dyn Any + Send>) -> Failure {
    let message = panic_message(&*payload);
    let (location, backtrace) = LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_default();
    Failure::Panic {
        message,
        location,
        backtrace,
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// What can cross between processes as a task's argument or result: an owned value that
/// serde can encode and decode (`String`, `Vec<T>`, numbers, tuples, your `#[derive(Serialize,
/// Deserialize)]` types, and multiproc's handles in arguments). Implemented for every such
/// type; you never implement it.
///
/// A borrowed type (`&str`, `&[T]`) cannot arrive in another process: the compiler then says
/// "implementation of `Deserialize` is not general enough". Pass `String` or `Vec<T>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross between processes",
    label = "not a value a task can take or return",
    note = "arguments and results of tasks are owned serde types: derive `Serialize` and `Deserialize`, and use `String` for `&str`, `Vec<T>` for `&[T]`"
)]
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// A function a process or pool can run: a `fn` item or a closure that captures nothing,
/// of any number of arguments, given as one value as Python's `args=` gives them:
///
/// | the function | the argument you pass |
/// |---|---|
/// | `fn() -> R` | `()` |
/// | `fn(A) -> R` | `a` |
/// | `fn(A, B, …) -> R` (up to 12) | `(a, b, …)` |
///
/// A function of one tuple, `fn((A, B)) -> R`, takes the tuple as it is. `Kind` tells these
/// apart ([`OneArg`] or [`ArgTuple`]); the compiler infers it, you never write it.
///
/// Implemented for every such function; you never implement it. A closure that captures a
/// variable cannot run in another process (its captures would have to travel with it): that is
/// a compile error naming the closure and your call. Pass the data as the argument instead.
/// What is checked is that the closure takes no memory: one that captures only zero-sized
/// values (a marker type) passes, and the child makes those values anew, without whatever
/// code made them in the parent.
/// (That error comes from `cargo build`: it is found when the code is generated, so `cargo
/// check` and editors do not show it.)
///
/// # Examples
/// ```
/// fn hello() -> String { "hi".into() }
/// fn square(x: u64) -> u64 { x * x }
/// fn join(a: String, b: String) -> String { a + &b }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.apply(hello, ())?, "hi");
/// assert_eq!(pool.apply(square, 7)?, 49);
/// assert_eq!(pool.apply(join, ("a".to_string(), "b".to_string()))?, "ab");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A capturing closure does not compile:
/// ```compile_fail
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let offset = 10u64;
/// pool.apply(move |x: u64| x + offset, 1).unwrap();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run as a task taking `{Args}`",
    label = "not a task that takes `{Args}`",
    note = "a task is a `fn` item or a closure that captures nothing; `f()` takes `()`, `f(a)` takes `a`, `f(a, b)` takes `(a, b)`"
)]
pub trait Task<Args, Kind>: sealed::Sealed<Args, Kind> + Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;

    /// Fails to compile for a task that is not zero-sized (a closure that captures), at the
    /// call that passed it: referred to by every method that takes a task.
    #[doc(hidden)]
    const ZERO_SIZED: () = assert!(
        std::mem::size_of::<Self>() == 0,
        "a multiproc task must be a fn item or a closure that captures nothing: pass data as the argument"
    );

    /// Calls the function with `args`.
    #[doc(hidden)]
    fn call(self, args: Args) -> Self::Output;
}

/// [`Task`]'s kind for a function of one argument, passed as it is.
#[derive(Debug)]
pub enum OneArg {}

/// [`Task`]'s kind for a function of no or several arguments, passed as a tuple.
#[derive(Debug)]
pub enum ArgTuple {}

mod sealed {
    /// Keeps [`Task`](super::Task) to the implementations below: the child conjures a task's
    /// value out of no bytes, which is sound for functions and closures only.
    pub trait Sealed<Args, Kind> {}
}

#[diagnostic::do_not_recommend]
impl<Func, A, Ret> sealed::Sealed<A, OneArg> for Func where
    Func: Fn(A) -> Ret + Copy + Send + Sync + 'static
{
}

#[diagnostic::do_not_recommend]
impl<Func, A, Ret> Task<A, OneArg> for Func
where
    Func: Fn(A) -> Ret + Copy + Send + Sync + 'static,
{
    type Output = Ret;
    fn call(self, arg: A) -> Ret {
        self(arg)
    }
}

macro_rules! arg_tuple {
    ($($arg:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($arg),*> sealed::Sealed<($($arg,)*), ArgTuple> for Func where
            Func: Fn($($arg),*) -> Ret + Copy + Send + Sync + 'static
        {
        }

        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($arg),*> Task<($($arg,)*), ArgTuple> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

/// Invokes the macro `$each` once per argument list a task may take: none to twelve type
/// parameters. Shared by this module's `Task` and `dummy`'s.
macro_rules! for_each_arity {
    ($each:ident) => {
        $each!();
        $each!(A);
        $each!(A, B);
        $each!(A, B, C);
        $each!(A, B, C, D);
        $each!(A, B, C, D, E);
        $each!(A, B, C, D, E, G);
        $each!(A, B, C, D, E, G, H);
        $each!(A, B, C, D, E, G, H, I);
        $each!(A, B, C, D, E, G, H, I, J);
        $each!(A, B, C, D, E, G, H, I, J, K);
        $each!(A, B, C, D, E, G, H, I, J, K, L);
        $each!(A, B, C, D, E, G, H, I, J, K, L, M);
    };
}
pub(crate) use for_each_arity;

for_each_arity!(arg_tuple);

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    #[test]
    fn an_offset_resolves_to_the_same_trampoline() {
        let off = entry_for::<_, u64, OneArg>(square);
        // SAFETY: the offset was just computed in this very process.
        let entry = unsafe { entry_at(off) };
        let mut input = Vec::new();
        codec::encode_into(&7u64, &mut input).unwrap();
        codec::encode_into(&8u64, &mut input).unwrap();
        let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
        let ran = entry(&mut &input[..], &mut out, 2, &mut started, &progress);
        assert_eq!((ran.items, ran.last), (2, Ran::Ok));
        assert_eq!((started, progress.load(Ordering::Relaxed)), (2, 2));
        let mut outcomes = &out[..];
        let got = codec::decode_outcome::<u64>(&mut outcomes).unwrap();
        assert_eq!(got.unwrap(), 49);
        assert_eq!(
            codec::decode_outcome::<u64>(&mut outcomes)
                .unwrap()
                .unwrap(),
            64
        );
    }

    #[test]
    fn a_panic_becomes_a_failure_with_message() {
        fn boom(x: u32) -> u32 {
            if x > 1 {
                panic!("too big: {x}");
            }
            x
        }
        let off = entry_for::<_, u32, OneArg>(boom);
        // SAFETY: computed in this process.
        let entry2 = unsafe { entry_at(off) };
        let mut input = Vec::new();
        for x in [1u32, 5, 0] {
            codec::encode_into(&x, &mut input).unwrap();
        }
        let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
        let mut rest = &input[..];
        let ran = entry2(&mut rest, &mut out, 3, &mut started, &progress);
        assert_eq!(
            (ran.items, ran.last),
            (2, Ran::Failed),
            "stops after the failure"
        );
        assert_eq!(started, 2);
        assert_eq!(rest.len(), 4, "the third item is left");
        let mut outcomes = &out[..];
        assert_eq!(
            codec::decode_outcome::<u32>(&mut outcomes)
                .unwrap()
                .unwrap(),
            1
        );
        let got = codec::decode_outcome::<u32>(&mut outcomes).unwrap();
        match got {
            Err(Failure::Panic { message, .. }) => assert_eq!(message, "too big: 5"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn functions_of_any_arity_take_their_arguments_as_one_value() {
        fn none() -> u8 {
            5
        }
        fn mul(a: i64, b: i64) -> i64 {
            a * b
        }
        fn pair(t: (i64, i64)) -> i64 {
            t.0 - t.1
        }
        assert_eq!(Task::<(), ArgTuple>::call(none, ()), 5);
        assert_eq!(Task::<(i64, i64), ArgTuple>::call(mul, (6, 7)), 42);
        assert_eq!(Task::<(i64, i64), OneArg>::call(pair, (6, 7)), -1);
        assert_eq!(Task::<(i64,), ArgTuple>::call(|x: i64| x + 1, (1,)), 2);
        let run = |off: i64, input: &[u8]| {
            // SAFETY: computed in this process.
            let entry = unsafe { entry_at(off) };
            let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
            let ran = entry(&mut &input[..], &mut out, 1, &mut started, &progress);
            assert_eq!((ran.items, ran.last), (1, Ran::Ok));
            codec::decode_outcome::<i64>(&mut &out[..])
                .unwrap()
                .unwrap()
        };
        let four = codec::encode(&(3i64, 4i64)).unwrap();
        assert_eq!(run(entry_for::<_, _, ArgTuple>(mul), &four), 12);
        assert_eq!(run(entry_for::<_, _, OneArg>(pair), &four), -1);
        let none_off = entry_for::<_, (), ArgTuple>(none);
        // SAFETY: computed in this process.
        let entry = unsafe { entry_at(none_off) };
        let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
        let ran = entry(&mut &[][..], &mut out, 1, &mut started, &progress);
        assert_eq!((ran.items, ran.last), (1, Ran::Ok));
        assert_eq!(
            codec::decode_outcome::<u8>(&mut &out[..]).unwrap().unwrap(),
            5
        );
    }

    /// A vector of `n` zero bytes: calloc'd, so untouched until written.
    fn zeros(n: usize) -> Vec<u8> {
        vec![0; n]
    }

    #[test]
    fn a_run_ends_after_a_large_outcome() {
        let entry = {
            let off = entry_for::<_, usize, OneArg>(zeros);
            // SAFETY: computed in this process.
            unsafe { entry_at(off) }
        };
        let mut input = Vec::new();
        for n in [10, LARGE_OUTCOME / 2, LARGE_OUTCOME, 10] {
            codec::encode_into(&n, &mut input).unwrap();
        }
        let (mut out, mut started, progress) = (vec![1, 2, 3], 0, AtomicU64::new(0));
        let mut rest = &input[..];
        let run = entry(&mut rest, &mut out, 4, &mut started, &progress);
        // 10 bytes, half of `LARGE_OUTCOME`, then a large one: the run ends there.
        let at = 3 + (1 + 8 + 10) + (1 + 8 + LARGE_OUTCOME / 2);
        assert_eq!((run.items, run.last, run.large_at), (3, Ran::Ok, Some(at)));
        let mut last = &out[at..];
        let got = codec::decode_outcome::<Vec<u8>>(&mut last)
            .unwrap()
            .unwrap();
        assert!(got.len() == LARGE_OUTCOME && last.is_empty());
        let run = entry(&mut rest, &mut out, 1, &mut started, &progress);
        assert_eq!((run.items, run.last, run.large_at), (1, Ran::Ok, None));
        assert_eq!(started, 4);
    }

    #[test]
    fn a_result_too_large_for_a_message_fails_its_item_alone() {
        let entry = {
            let off = entry_for::<_, usize, OneArg>(zeros);
            // SAFETY: computed in this process.
            unsafe { entry_at(off) }
        };
        let mut input = Vec::new();
        for n in [crate::wire::MAX_VALUE, 5] {
            codec::encode_into(&n, &mut input).unwrap();
        }
        let (mut out, mut started, progress) = (Vec::new(), 0, AtomicU64::new(0));
        let mut rest = &input[..];
        let run = entry(&mut rest, &mut out, 2, &mut started, &progress);
        assert_eq!((run.items, run.last, run.large_at), (1, Ran::Failed, None));
        assert!(out.len() < 200, "no gigabyte encoded");
        let run = entry(&mut rest, &mut out, 1, &mut started, &progress);
        assert_eq!((run.items, run.last), (1, Ran::Ok));
        let mut outcomes = &out[..];
        match codec::decode_outcome::<Vec<u8>>(&mut outcomes).unwrap() {
            Err(Failure::Encode(m)) => assert_eq!(
                m,
                format!(
                    "result of {} bytes exceeds the {}-byte limit of one message",
                    crate::wire::MAX_VALUE + 8,
                    crate::wire::MAX_VALUE
                )
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            codec::decode_outcome::<Vec<u8>>(&mut outcomes)
                .unwrap()
                .unwrap(),
            [0; 5]
        );
    }
}
