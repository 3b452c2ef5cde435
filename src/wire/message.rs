//! The messages parent and child exchange, and their fixed binary headers.
//!
//! Hot-path headers (task and result batches) are fixed little-endian fields written by hand, so
//! a batch of items is one header plus the items' encodings back to back. Rare messages
//! (handshake) go through the codec.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Frame kinds, parent to child.
pub(crate) mod kind {
    /// Handshake: [`super::Hello`].
    pub(crate) const HELLO: u8 = 1;
    /// A batch of items to run: [`super::TaskHeader`] then the items.
    pub(crate) const TASK: u8 = 2;
    /// Finish what is queued, then exit with status 0.
    pub(crate) const EXIT: u8 = 3;
    /// To a fork server, once: [`super::Preload`].
    pub(crate) const PRELOAD: u8 = 4;
    /// To a fork server: fork a child whose socket and page are the frame's two descriptors.
    pub(crate) const FORK: u8 = 5;
    /// Handshake answer: [`super::Ready`].
    pub(crate) const READY: u8 = 16;
    /// Handshake refusal: [`super::Refuse`]; the child exits.
    pub(crate) const REFUSE: u8 = 17;
    /// Outcomes of a batch's items: [`super::ResultsHeader`] then the outcomes.
    pub(crate) const RESULTS: u8 = 18;
    /// A fork server's answer to [`PRELOAD`]: [`super::Preloaded`].
    pub(crate) const PRELOADED: u8 = 19;
    /// A fork server's answer to [`FORK`]: [`super::Forked`].
    pub(crate) const FORKED: u8 = 20;
    /// To and from a shared-memory tracker (`Role::Tracker`): a codec-encoded
    /// [`super::TrackerMessage`].
    pub(crate) const TRACKER: u8 = 32;
}

/// What a child is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    /// Runs one function for a `Process`, then exits.
    Process,
    /// Serves a pool until told to exit.
    PoolWorker,
    /// Removes the parent's named shared memory once the parent is gone (`shared::memory`).
    Tracker,
    /// Forks workers for the parent on request (`StartMethod::ForkServer`).
    ForkServer,
}

/// The parent's first message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The parent's executable identity; the child refuses to serve if its own differs.
    pub(crate) identity: [u64; 6],
    /// `current_process().name()` in the child.
    pub(crate) name: String,
    pub(crate) role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ready {
    pub(crate) pid: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Refuse {
    pub(crate) reason: String,
}

/// What a fork server runs once before it forks anything: the function at this offset
/// (`task::offset_of_fn`), if any.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Preload {
    pub(crate) function: Option<i64>,
}

/// How a fork server's preload went.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Preloaded {
    Done,
    /// It panicked, with this message; the server exits.
    Panicked(String),
}

/// A fork server's answer to a request for a child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Forked {
    /// The child's pid: a child of the server's parent, which reaps it.
    Child(u32),
    /// The operating system's reason it could not fork.
    Failed(String),
}

/// What the creator of named shared memory and its tracker say to each other (frames of kind
/// [`kind::TRACKER`]; see `shared::memory::tracker`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TrackerMessage {
    /// Tracker to creator: it no longer dies with the creator; names are safe from now on.
    Detached,
    /// Remove `name` once the creator is gone, if it still refers to object `dev`/`ino`.
    Track { name: String, dev: u64, ino: u64 },
    /// Forget `name` for object `dev`/`ino`: it was removed, or the user wants it to outlive
    /// the creator. (A name with another object, from a failed second `create` of the same
    /// name, say, stays listed.)
    Untrack { name: String, dev: u64, ino: u64 },
}

/// Why a single item failed inside a child, as it travels back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panic {
        message: String,
        location: Option<String>,
        backtrace: Option<String>,
    },
    Encode(String),
    Decode(String),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Panic {
                message,
                location,
                backtrace,
            } => Error::TaskPanicked {
                message,
                location,
                backtrace,
            },
            Failure::Encode(m) => Error::Encode(m),
            Failure::Decode(m) => Error::Decode(m),
        }
    }
}

fn take<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    if input.len() < N {
        return Err(Error::Protocol("truncated message header".into()));
    }
    let (head, rest) = input.split_at(N);
    *input = rest;
    let mut out = [0; N];
    out.copy_from_slice(head);
    Ok(out)
}

/// Header of a [`kind::TASK`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskHeader {
    /// Sequence number of this batch on its channel; results name it.
    pub(crate) seq: u64,
    /// Where the trampoline is, relative to the anchor (see `task.rs`).
    pub(crate) entry: i64,
    /// Number of items that follow.
    pub(crate) count: u32,
}

impl TaskHeader {
    pub(crate) const LEN: usize = 20;

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.entry.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
    }

    /// Reads the header off the front of `input`.
    pub(crate) fn read(input: &mut &[u8]) -> Result<Self> {
        Ok(Self {
            seq: u64::from_le_bytes(take(input)?),
            entry: i64::from_le_bytes(take(input)?),
            count: u32::from_le_bytes(take(input)?),
        })
    }
}

/// Header of a [`kind::RESULTS`] frame: outcomes of items `first .. first + count` of batch `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultsHeader {
    pub(crate) seq: u64,
    pub(crate) first: u32,
    pub(crate) count: u32,
}

impl ResultsHeader {
    pub(crate) const LEN: usize = 16;

    pub(crate) fn write_at(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..12].copy_from_slice(&self.first.to_le_bytes());
        out[12..16].copy_from_slice(&self.count.to_le_bytes());
    }

    pub(crate) fn read(input: &mut &[u8]) -> Result<Self> {
        Ok(Self {
            seq: u64::from_le_bytes(take(input)?),
            first: u32::from_le_bytes(take(input)?),
            count: u32::from_le_bytes(take(input)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = TaskHeader {
            seq: 9,
            entry: -12345,
            count: 7,
        };
        let mut buf = Vec::new();
        h.write(&mut buf);
        buf.push(42);
        let mut input = &buf[..];
        assert_eq!(TaskHeader::read(&mut input).unwrap(), h);
        assert_eq!(input, &[42]);

        let r = ResultsHeader {
            seq: 1,
            first: 2,
            count: 3,
        };
        let mut buf = [0u8; ResultsHeader::LEN];
        r.write_at(&mut buf);
        assert_eq!(ResultsHeader::read(&mut &buf[..]).unwrap(), r);
    }

    #[test]
    fn short_headers_are_protocol_errors() {
        assert!(matches!(
            TaskHeader::read(&mut &[1u8, 2, 3][..]),
            Err(Error::Protocol(_))
        ));
    }
}
