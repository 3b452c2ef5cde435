//! Descriptors that travel inside encoded values.
//!
//! A handle (a queue, a lock, a shared array) is memory or a socket that the receiving process
//! cannot name; it needs the descriptor itself, passed with `SCM_RIGHTS` beside the bytes. serde
//! has no notion of that, so encoding and decoding run inside a per-thread context:
//!
//! - [`collect`] runs an encoder with an [`FdSet`] open; a handle's `Serialize` calls [`attach`],
//!   which duplicates its descriptor into the set and encodes only the set's index. The same
//!   descriptor attached twice gets one index.
//! - [`receive`] runs a decoder with the frame's descriptors open; a handle's `Deserialize`
//!   calls [`take`] with the index it decoded and gets its own duplicate.
//!
//! - A worker runs its tasks inside [`results_into`], with the set of the reply being written;
//!   each result is encoded inside [`encode_result`], which collects into that set. So a task
//!   may return a handle: its descriptors travel back with the reply. (The task itself runs
//!   outside any context, as user code should.)
//!
//! Outside these contexts (a user encoding a handle with their own serializer) `attach` fails
//! with an error that says where handles can go. Inside [`results_refused`] (the
//! result of a task run on another MPI rank, which crosses machines as bytes) it fails with the
//! reason that context gives.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// What a handle does about a message that carries it. A queue uses it so that its readers
/// are not told "every writer is gone" while a handle to it is on its way to another process.
pub(crate) trait Pin: Send + Sync {
    /// A lasting message (a `Process` or pool argument, kept by the sender) goes to process
    /// `identity`, which holds the handle from now until it exits.
    fn hand_to(&self, _identity: u64) {}
    /// A passing message (a queue item, a pipe message) was delivered; it will be decoded at
    /// most once. A pin whose message is dropped undelivered undoes what it did.
    fn sent(&self) {}
}

/// Descriptors gathered while encoding one message.
#[derive(Default)]
pub(crate) struct FdSet {
    /// What each descriptor refers to. Not the descriptor numbers: a handle encoded earlier in
    /// the same message may have been dropped since, and its number reused by another.
    sources: Vec<sys::fd::ObjectId>,
    fds: Vec<OwnedFd>,
    pins: Vec<Box<dyn Pin>>,
    /// A passing message (decoded once, then gone) rather than a lasting one.
    passing: bool,
}

impl std::fmt::Debug for FdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdSet")
            .field("fds", &self.fds)
            .field("pins", &self.pins.len())
            .field("passing", &self.passing)
            .finish()
    }
}

impl FdSet {
    /// The set of a passing message: a queue item or a pipe message, decoded at most once.
    pub(crate) fn passing() -> Self {
        Self {
            passing: true,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.fds.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Duplicates of the descriptors, in index order, for one send.
    pub(crate) fn duplicate(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.fds.iter().map(|fd| fd.try_clone()).collect()
    }

    /// The descriptors, in index order (the pins are dropped).
    pub(crate) fn into_fds(self) -> Vec<OwnedFd> {
        self.fds
    }

    /// Tells the pins that the (lasting) message goes to process `identity`.
    pub(crate) fn hand_to(&self, identity: u64) {
        for pin in &self.pins {
            pin.hand_to(identity);
        }
    }

    /// Tells the pins that the (passing) message was delivered.
    pub(crate) fn sent(&self) {
        for pin in &self.pins {
            pin.sent();
        }
    }
}

/// What a handle met while being encoded finds on this thread.
#[derive(Clone, Copy)]
enum Outgoing {
    /// No message of this crate is being encoded (a user's own serializer, say).
    Nothing,
    /// A message that carries handles: the set of the innermost `collect`.
    Collecting(*mut FdSet),
    /// A message that cannot carry handles; why not, in words for the user.
    Refusing(&'static str),
}

thread_local! {
    /// What the innermost `collect` or `encode_result` running on this thread set up.
    static OUTGOING: Cell<Outgoing> = const { Cell::new(Outgoing::Nothing) };
    /// Where the results of the tasks this thread runs put their handles' descriptors: what
    /// [`results_into`] or [`results_refused`] set up, for [`encode_result`].
    static RESULTS: Cell<Outgoing> = const { Cell::new(Outgoing::Nothing) };
    /// The descriptors of the innermost `receive` running on this thread, or null.
    static INCOMING: Cell<*const Vec<OwnedFd>> = const { Cell::new(std::ptr::null()) };
}

/// Why a handle could not be encoded outside a message of this crate.
pub(crate) const NO_CONTEXT: &str = "a multiproc handle (Queue, Pipe end, Lock, Value, Array, \
    SharedMemory …) is encoded only by multiproc itself, inside an argument of a Process, a pool \
    task or a pool initializer, a Queue item or a Pipe message";

/// Why the result of a task run on another MPI rank cannot carry a handle: it crosses to rank 0,
/// possibly on another machine, as bytes.
pub(crate) const IN_REMOTE_RESULT: &str = "the result of a task run on another MPI rank cannot \
    carry a multiproc handle (Queue, Pipe end, Lock, Value, Array, SharedMemory …): a handle \
    lives in one machine's memory; return plain data, or share state through a Manager";

/// Puts a thread-local context pointer back as it was, even if the encoder or decoder panics.
struct Restore<T: Copy + 'static> {
    key: &'static std::thread::LocalKey<Cell<T>>,
    previous: T,
}

impl<T: Copy + 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.key.set(self.previous);
    }
}

/// Whether a message between this program's processes is being encoded on this thread (an
/// argument, a result, a queue item or a pipe message), as opposed to data going elsewhere (a
/// manager's object, a user's own serializer).
pub(crate) fn between_processes() -> bool {
    match OUTGOING.get() {
        Outgoing::Collecting(_) => true,
        // A task's result, on its way to rank 0 of an MPI job.
        Outgoing::Refusing(why) => std::ptr::eq(why, IN_REMOTE_RESULT),
        Outgoing::Nothing => false,
    }
}

/// Runs `encode` with `set` collecting the descriptors of the handles it encodes. This runs
/// once per item on the pool's hot path, so the context is a pointer in a `Cell`: two stores.
pub(crate) fn collect<R>(set: &mut FdSet, encode: impl FnOnce() -> R) -> R {
    let _restore = Restore {
        key: &OUTGOING,
        previous: OUTGOING.replace(Outgoing::Collecting(set)),
    };
    encode()
}

/// Runs `run` (a worker's tasks) with the handles in the results it encodes
/// ([`encode_result`]) collected into `set`, the reply that carries them. The tasks themselves
/// run outside that context: only their results' encoding is inside it.
pub(crate) fn results_into<R>(set: &mut FdSet, run: impl FnOnce() -> R) -> R {
    let _restore = Restore {
        key: &RESULTS,
        previous: RESULTS.replace(Outgoing::Collecting(set)),
    };
    run()
}

/// Runs `run` (a worker's tasks) with handles refused in the results it encodes, for `why`.
pub(crate) fn results_refused<R>(why: &'static str, run: impl FnOnce() -> R) -> R {
    let _restore = Restore {
        key: &RESULTS,
        previous: RESULTS.replace(Outgoing::Refusing(why)),
    };
    run()
}

/// Runs `encode` (a task's result) in the context the innermost [`results_into`] or
/// [`results_refused`] set up on this thread (none outside them: a handle then fails with
/// [`NO_CONTEXT`]). Costs two stores, like [`collect`].
pub(crate) fn encode_result<R>(encode: impl FnOnce() -> R) -> R {
    let _restore = Restore {
        key: &OUTGOING,
        previous: OUTGOING.replace(RESULTS.get()),
    };
    encode()
}

/// Adds a handle's descriptor to the message being encoded; returns its index.
///
/// # Errors
/// No message is being encoded on this thread, the descriptor could not be duplicated, or the
/// message already carries as many descriptors as one send can.
pub(crate) fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    attach_pinned(fd, |_| None).map(|(index, _)| index)
}

/// Like [`attach`], and lets the handle pin the message: `pin(passing)` is asked once per
/// descriptor in a lasting message, once per occurrence in a passing one (each occurrence of
/// a passing message is decoded once). Returns the index and whether the message is passing.
/// `pin` must not encode anything itself.
pub(crate) fn attach_pinned(
    fd: BorrowedFd<'_>,
    pin: impl FnOnce(bool) -> Option<Box<dyn Pin>>,
) -> Result<(u32, bool), String> {
    let set = match OUTGOING.get() {
        Outgoing::Collecting(set) => set,
        Outgoing::Nothing => return Err(NO_CONTEXT.to_string()),
        Outgoing::Refusing(why) => return Err(why.to_string()),
    };
    // SAFETY: a `Collecting` pointer was stored by the innermost `collect` on this thread,
    // from the `&mut FdSet` it holds while `encode` runs; `collect` restores the previous value
    // before it returns or unwinds, so the set is alive. `collect` does not touch the set
    // while `encode` runs, and this reference ends before `attach_pinned` returns (the pin
    // closure is given no access to it), so it is the only one in use.
    let set = unsafe { &mut *set };
    {
        let id = sys::fd::object_id(fd).map_err(|e| format!("could not inspect a handle: {e}"))?;
        if let Some(i) = set.sources.iter().position(|s| *s == id) {
            if set.passing {
                set.pins.extend(pin(true));
            }
            return Ok((i as u32, set.passing));
        }
        if set.fds.len() >= sys::fd::MAX_FDS_PER_MSG {
            return Err(format!(
                "one message can carry at most {} handles",
                sys::fd::MAX_FDS_PER_MSG
            ));
        }
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| format!("could not duplicate a handle's descriptor: {e}"))?;
        set.sources.push(id);
        set.fds.push(dup);
        set.pins.extend(pin(set.passing));
        Ok(((set.fds.len() - 1) as u32, set.passing))
    }
}

/// Runs `decode` with the descriptors that came with the message.
pub(crate) fn receive<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let _restore = Restore {
        key: &INCOMING,
        previous: INCOMING.replace(&fds),
    };
    decode()
}

/// A duplicate of descriptor `index` of the message being decoded.
///
/// # Errors
/// No message is being decoded on this thread, or it carried no descriptor `index`.
pub(crate) fn take(index: u32) -> Result<OwnedFd, String> {
    let fds = INCOMING.get();
    if fds.is_null() {
        return Err("a handle can only be decoded from a multiproc message".into());
    }
    // SAFETY: a non-null pointer was stored by the innermost `receive` on this thread, from the
    // vector it owns while `decode` runs, and is restored before `receive` returns or unwinds;
    // nothing mutates the vector meanwhile.
    let fds = unsafe { &*fds };
    let fd = fds.get(index as usize).ok_or_else(|| {
        format!(
            "a handle refers to descriptor {index}, but the message carried {}",
            fds.len()
        )
    })?;
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("could not duplicate a received descriptor: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_refused_with_the_reason_of_its_context() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_fd();
        assert_eq!(attach(fd).unwrap_err(), NO_CONTEXT);
        assert_eq!(
            encode_result(|| attach(fd)).unwrap_err(),
            NO_CONTEXT,
            "no worker here"
        );
        results_refused(IN_REMOTE_RESULT, || {
            // Only a result's encoding is in the context: the task itself is not.
            assert_eq!(attach(fd).unwrap_err(), NO_CONTEXT);
            assert_eq!(encode_result(|| attach(fd)).unwrap_err(), IN_REMOTE_RESULT);
            // A message built inside a result would still collect its own handles.
            let mut set = FdSet::default();
            encode_result(|| {
                assert_eq!(collect(&mut set, || attach(fd)), Ok(0));
                assert_eq!(
                    attach(fd).unwrap_err(),
                    IN_REMOTE_RESULT,
                    "restored after collect"
                );
            });
            assert_eq!(set.len(), 1);
        });
        assert_eq!(
            encode_result(|| attach(fd)).unwrap_err(),
            NO_CONTEXT,
            "restored"
        );
        // Restored on unwind too.
        let unwound = std::panic::catch_unwind(|| {
            results_refused(IN_REMOTE_RESULT, || {
                encode_result(|| -> () { panic!("in a Serialize") })
            })
        });
        assert!(unwound.is_err());
        assert_eq!(encode_result(|| attach(fd)).unwrap_err(), NO_CONTEXT);
    }

    #[test]
    fn a_results_handles_go_into_the_reply_being_written() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let mut reply = FdSet::passing();
        results_into(&mut reply, || {
            assert_eq!(attach(file.as_fd()).unwrap_err(), NO_CONTEXT, "the task");
            assert_eq!(encode_result(|| attach(file.as_fd())), Ok(0));
            assert_eq!(
                encode_result(|| attach(file.as_fd())),
                Ok(0),
                "one index each"
            );
        });
        assert_eq!(reply.len(), 1);
    }
}
