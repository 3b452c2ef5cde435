//! What clients and the server say: data only (encoded keys and values, object ids), so that
//! the server never needs a client's types — except to run an update function or a hosted
//! object's method, which names a trampoline of the same executable (see `task.rs`).

use serde::{Deserialize, Serialize};

/// Frame kinds on a manager connection.
pub(crate) mod kind {
    /// Server → client: a challenge.
    pub(crate) const CHALLENGE: u8 = 0x60;
    /// Client → server: the answer, then the client's own challenge.
    pub(crate) const ANSWER: u8 = 0x61;
    /// Server → client: the answer to the client's challenge (the client is in).
    pub(crate) const WELCOME: u8 = 0x62;
    /// Server → client: the answer was wrong (the payload says why); the connection ends.
    pub(crate) const REFUSED: u8 = 0x63;
    /// Client → server: a [`Request`](super::Request).
    pub(crate) const REQUEST: u8 = 0x64;
    /// Server → client: a [`Reply`](super::Reply).
    pub(crate) const REPLY: u8 = 0x65;
    /// Server → client: the client knows the key but speaks another version of this protocol
    /// (the payload says which); the connection ends.
    pub(crate) const INCOMPATIBLE: u8 = 0x66;
    /// Client → server, once in, on this machine: a pair of mailboxes in shared memory (its
    /// descriptor rides on the frame) to take turns in from now on (see `mailbox.rs`).
    /// Server → client: taken (or `REFUSED`: the socket serves on).
    pub(crate) const MAILBOXES: u8 = 0x67;
}

/// The version of this protocol. A client and a server of different versions (programs built
/// with different releases of this crate) refuse each other in the handshake, clearly, rather
/// than misread each other's requests. Raise it with any change to what is said here — the
/// requests and replies, and the public `Error`, which travels inside `SyncReply::Failed`.
pub(crate) const VERSION: u32 = 3;

/// How long either side may take over its part of the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long either side watches for the other's next frame before it sleeps: a call answered
/// quickly, and a client that asks again at once (the usual loop of proxy calls), are then read
/// without a thread being put to sleep and woken (see `Channel::watch`).
pub(crate) const WATCH: std::time::Duration = std::time::Duration::from_micros(50);

/// The largest frame either side accepts before the other has proven it knows the key: the
/// handshake's frames are a few dozen bytes, and a stranger must not make us allocate more.
pub(crate) const HANDSHAKE_FRAME: usize = 1024;

/// The client's part of the handshake, after its version and its answer to the server's
/// challenge (see [`answer_frame`]): its executable's identity (update functions are
/// trampolines of the same executable), and its own challenge.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) identity: [u64; 6],
    pub(crate) challenge: [u8; super::auth::CHALLENGE],
}

/// The payload of an `ANSWER` frame: the client's [`VERSION`] (4 bytes, little-endian) and
/// its answer to the challenge ([`auth::MAC`](super::auth::MAC) bytes) at fixed places, then
/// the encoded [`Answer`] — so that any later release reads the version and checks the key
/// before it decodes anything, and says "another version" rather than "wrong key".
pub(crate) fn answer_frame(mac: &[u8], answer: &Answer) -> crate::error::Result<Vec<u8>> {
    let mut payload = VERSION.to_le_bytes().to_vec();
    payload.extend_from_slice(mac);
    payload.extend_from_slice(&crate::wire::codec::encode(answer)?);
    Ok(payload)
}

/// An `ANSWER` frame's version, answer to the challenge and encoded rest; `None` if it is too
/// short to hold them.
pub(crate) fn split_answer(payload: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let (version, rest) = payload.split_first_chunk::<4>()?;
    let (mac, rest) = rest.split_at_checked(super::auth::MAC)?;
    Some((u32::from_le_bytes(*version), mac, rest))
}

/// Decodes the payload of a frame that must be of `kind` (a request or a reply that came on
/// the socket), straight from where it was received.
pub(crate) fn decode_frame<T: serde::de::DeserializeOwned>(
    frame: &crate::wire::Frame,
    kind: u8,
) -> crate::error::Result<T> {
    if frame.kind != kind {
        return Err(crate::error::Error::Protocol(format!(
            "unexpected frame kind {}",
            frame.kind
        )));
    }
    Ok(crate::wire::codec::decode(frame.payload())?)
}

/// Whether a client runs the manager's own executable: only such a client may name a function
/// for the server to run (an `update`, a hosted object's `call`), by its trampoline's place in
/// the executable (see `task.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Executable {
    Same,
    Foreign,
}

/// An encoded key or value.
pub(crate) type Bytes = Vec<u8>;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Create an empty object; the reply is its id.
    New(Kind),
    /// Open the object called `name`, creating it (empty) if there is none; the reply is its
    /// id. An object of another kind by that name is an error.
    Named { name: String, kind: Kind },
    /// The server's process id (a `Reply::Pid`).
    Pid,
    /// How many objects the server keeps (a `Reply::Len`).
    Count,
    /// This connection's process holds object `id` (see `lease.rs`). No reply.
    Hold { id: u64 },
    /// This connection's process lets go of its hold on object `id`. No reply.
    Release { id: u64 },
    /// An operation on object `id`, under its lock.
    Op { id: u64, op: Op },
    /// End the server.
    Shutdown,
}

/// What an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Value,
    /// A FIFO queue of at most `maxsize` items (0: no bound).
    Queue {
        maxsize: u64,
    },
    /// An object of the client's type (`hosted.rs`).
    Hosted,
    /// A lock, semaphore, event, condition or barrier (see `server/primitives.rs`).
    Sync(SyncKind),
}

impl Kind {
    /// What it is, in words (for errors).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Value => "value",
            Kind::Queue { .. } => "queue",
            Kind::Hosted => "hosted object",
            Kind::Sync(_) => "synchronisation primitive",
        }
    }
}

/// An operation on an object of the matching kind.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Dict(DictOp),
    List(ListOp),
    Value(ValueOp),
    Queue(QueueOp),
    Hosted(super::hosted::HostedOp),
    Sync(SyncOp),
}

/// What a synchronisation primitive is, with what it starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SyncKind {
    Lock,
    RLock,
    /// `value` units; never more than `bound` (`None`: no bound but `u32::MAX`).
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    Event,
    /// A condition with its own re-entrant lock.
    Condition,
    Barrier {
        parties: u32,
    },
}

/// An operation on a synchronisation primitive. `wait_ms` as for a queue: `None` without
/// limit, `Some(0)` not at all. Locks are owned by the connection that took them (one per
/// client thread).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SyncOp {
    /// Take a lock (one more level of a re-entrant one), a condition's lock, or a unit of a
    /// semaphore.
    Acquire {
        wait_ms: Option<u64>,
    },
    /// Give back what `Acquire` took (a lock: only its holder may).
    Release,
    /// A semaphore's free units.
    Value,
    Set,
    Clear,
    IsSet,
    /// Wait for an event to be set.
    WaitSet {
        wait_ms: Option<u64>,
    },
    /// Wait on a condition (its lock held): release it, wait to be notified, take it back.
    Wait {
        wait_ms: Option<u64>,
    },
    Notify {
        n: u32,
    },
    NotifyAll,
    /// Wait at a barrier for the other parties.
    Arrive {
        wait_ms: Option<u64>,
    },
    Abort,
    Reset,
    Parties,
    Waiting,
    Broken,
}

/// What the server answers to a [`SyncOp`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SyncReply {
    Done,
    /// The wait ended first; nothing was taken.
    TimedOut,
    Bool(bool),
    /// A count: a barrier's arrival index, a semaphore's value, …
    Count(u32),
    /// Refused, with the error the caller gets ([`Error::Deadlock`], …).
    ///
    /// [`Error::Deadlock`]: crate::Error::Deadlock
    Failed(crate::error::Error),
}

/// An operation on a queue. `wait_ms`: how long a put may wait for room or a get for an item;
/// `None` without limit, `Some(0)` not at all.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    /// The reply says whether it was put (`false`: still full when the wait ended).
    Put {
        value: Bytes,
        wait_ms: Option<u64>,
    },
    /// The reply is the item, or none if the wait ended first.
    Get {
        wait_ms: Option<u64>,
    },
    Len,
    Full,
}

/// An operation on a single value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ValueOp {
    Get,
    /// Replace the value; the reply is the one it replaced.
    Set {
        value: Bytes,
    },
    /// Replace the value with what the trampoline at `entry` (a `fn(V) -> V`) makes of it.
    Update {
        entry: i64,
    },
}

/// An operation on a list (indices are checked on the server).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push {
        value: Bytes,
    },
    Pop,
    Get {
        index: u64,
    },
    Set {
        index: u64,
        value: Bytes,
    },
    /// At `index`, or at the end if past it (as Python's `insert`).
    Insert {
        index: u64,
        value: Bytes,
    },
    Remove {
        index: u64,
    },
    Len,
    ToVec,
    Extend {
        values: Vec<Bytes>,
    },
    Clear,
    /// Replace element `index` with what the trampoline at `entry` (a `fn(V) -> V`) makes
    /// of it.
    Update {
        index: u64,
        entry: i64,
    },
}

/// An operation on a dict, under its lock.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Insert {
        key: Bytes,
        value: Bytes,
    },
    Get {
        key: Bytes,
    },
    Remove {
        key: Bytes,
    },
    ContainsKey {
        key: Bytes,
    },
    Len,
    Keys,
    Values,
    Items,
    Clear,
    /// Replace the value at `key` with what the trampoline at `entry` (a
    /// `fn(Option<V>) -> V`) makes of it.
    Update {
        key: Bytes,
        entry: i64,
    },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Id(u64),
    Pid(u32),
    Value(Option<Bytes>),
    Bool(bool),
    Len(u64),
    List(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Done,
    Sync(SyncReply),
    /// The request failed (no such object, an update function that panicked, …).
    Failed(String),
}
