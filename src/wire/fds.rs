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
//! Outside these contexts (a user encoding a handle with their own serializer) `attach` fails
//! with an error that says where handles can go.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys;

/// What a handle keeps alive while a message that carries it is in flight. A queue uses it to
/// count the message as a holder, so that readers are not told "every writer is gone" while
/// a handle is on its way to a new process. Dropping the pin ends that.
pub(crate) trait Pin: Send + Sync {
    /// The message is going to process `identity` (see `sys::proc::process_identity`), which
    /// holds the handle from now until it exits.
    fn hand_to(&self, identity: u64);
}

/// Descriptors gathered while encoding one message.
#[derive(Default)]
pub(crate) struct FdSet {
    sources: Vec<RawFd>,
    fds: Vec<OwnedFd>,
    pins: Vec<Box<dyn Pin>>,
}

impl std::fmt::Debug for FdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdSet")
            .field("fds", &self.fds)
            .field("pins", &self.pins.len())
            .finish()
    }
}

impl FdSet {
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

    /// Tells the pins that the message goes to process `identity`.
    pub(crate) fn hand_to(&self, identity: u64) {
        for pin in &self.pins {
            pin.hand_to(identity);
        }
    }
}

thread_local! {
    static OUTGOING: RefCell<Option<FdSet>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
}

/// Why a handle could not be encoded outside a message of this crate.
pub(crate) const NO_CONTEXT: &str = "a multiproc handle can only be sent as (part of) a Process \
    or Pool argument, a Queue item or a Pipe message";

/// Runs `encode` with `set` collecting the descriptors of the handles it encodes.
pub(crate) fn collect<R>(set: &mut FdSet, encode: impl FnOnce() -> R) -> R {
    let previous = OUTGOING.with(|o| o.replace(Some(std::mem::take(set))));
    let out = encode();
    *set = OUTGOING.with(|o| o.replace(previous)).unwrap_or_default();
    out
}

/// Adds a handle's descriptor to the message being encoded; returns its index.
///
/// # Errors
/// No message is being encoded on this thread, the descriptor could not be duplicated, or the
/// message already carries as many descriptors as one send can.
pub(crate) fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    attach_pinned(fd, || None)
}

/// Like [`attach`]; the first time `fd` joins the message, `pin()` may give a [`Pin`] that
/// the message keeps until it is dropped.
pub(crate) fn attach_pinned(
    fd: BorrowedFd<'_>,
    pin: impl FnOnce() -> Option<Box<dyn Pin>>,
) -> Result<u32, String> {
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        let set = o.as_mut().ok_or_else(|| NO_CONTEXT.to_string())?;
        let raw = fd.as_raw_fd();
        if let Some(i) = set.sources.iter().position(|s| *s == raw) {
            return Ok(i as u32);
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
        set.sources.push(raw);
        set.fds.push(dup);
        set.pins.extend(pin());
        Ok((set.fds.len() - 1) as u32)
    })
}

/// Runs `decode` with the descriptors that came with the message.
pub(crate) fn receive<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let previous = INCOMING.with(|i| i.replace(Some(fds)));
    let out = decode();
    INCOMING.with(|i| i.replace(previous));
    out
}

/// A duplicate of descriptor `index` of the message being decoded.
///
/// # Errors
/// No message is being decoded on this thread, or it carried no descriptor `index`.
pub(crate) fn take(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| {
        let i = i.borrow();
        let fds = i
            .as_ref()
            .ok_or_else(|| "a handle can only be decoded from a multiproc message".to_string())?;
        let fd = fds.get(index as usize).ok_or_else(|| {
            format!(
                "a handle refers to descriptor {index}, but the message carried {}",
                fds.len()
            )
        })?;
        fd.as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("could not duplicate a received descriptor: {e}"))
    })
}
