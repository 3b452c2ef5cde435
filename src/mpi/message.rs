//! What rank 0 and the node agents say to each other.
//!
//! A message is a run of records, each a codec-encoded [`ToAgent`] or [`FromAgent`], followed
//! by the raw bytes it announces (a chunk's encoded items, a batch of encoded outcomes), so that
//! payloads are copied, never re-encoded. Records of the handshake and of the end of the job go
//! with the [`CONTROL`] tag; those of a pool with the pool's own tag, so that each pool's
//! thread on rank 0 takes only its own (agents take everything).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::launch::StartMethod;
use crate::pool::Offsets;
use crate::wire::codec;

use super::world::Outgoing;

/// The tag of the handshake and of the end of the job; pools use tags from 1.
pub(crate) const CONTROL: i32 = 0;

/// An agent's first message: who it is, so that rank 0 can tell the same program.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The executable's identity by content (`sys::exe::content_id`): how it was taken, and
    /// the bytes.
    pub(crate) id_kind: String,
    pub(crate) id: Vec<u8>,
    /// The task layout probe (`task::layout_probe`): trampolines are found at the same offsets.
    pub(crate) layout: u64,
    /// Where the executable is, for the message when it is not the same.
    pub(crate) path: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    /// CPUs this rank may run on.
    pub(crate) cpus: usize,
}

/// How an agent's local pool is made: the rank 0 pool's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PoolSpec {
    pub(crate) workers: usize,
    /// The initializer's trampoline and encoded argument.
    pub(crate) init: Option<(i64, Vec<u8>)>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) start_timeout: Duration,
    pub(crate) start_method: Option<StartMethod>,
}

/// Rank 0 to an agent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToAgent {
    /// The handshake's answer: serve.
    Welcome,
    /// The handshake's answer: this agent is not the same program; it serves nothing.
    Refuse { reason: String },
    /// Start a local pool for rank 0's pool `pool` (its tag); answered with
    /// [`FromAgent::Opened`] or [`FromAgent::NotOpened`].
    Open { pool: i32, spec: PoolSpec },
    /// Run a chunk: `len` bytes of encoded items follow.
    Chunk {
        pool: i32,
        /// Rank 0's number for the chunk, in its answers.
        id: u64,
        call: u64,
        entry: i64,
        /// Index, within its call, of the chunk's first item.
        first: u64,
        offsets: Offsets,
        len: u64,
    },
    /// Finish the pool's work, end its workers, answer [`FromAgent::Ended`].
    Close { pool: i32 },
    /// End the pool's workers now, answer [`FromAgent::Ended`].
    Terminate { pool: i32 },
    /// The job is over: end every pool and leave.
    Stop,
}

/// An agent to rank 0.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromAgent {
    Hello(Hello),
    /// The pool runs, with this many workers.
    Opened {
        pool: i32,
        workers: usize,
    },
    NotOpened {
        pool: i32,
        error: Error,
    },
    /// Outcomes of `count` items of chunk `chunk`, from item `first` (within the call) on:
    /// `len` bytes of encoded outcomes follow.
    Results {
        pool: i32,
        chunk: u64,
        first: u64,
        count: u32,
        len: u64,
    },
    /// Item `index` (within the call) of chunk `chunk` failed without an outcome.
    Failed {
        pool: i32,
        chunk: u64,
        index: u64,
        error: Error,
    },
    /// Chunk `chunk` was answered whole, `took` after its worker started on it.
    Served {
        pool: i32,
        chunk: u64,
        took: Duration,
    },
    /// The pool's last word: everything it will ever send was sent before this.
    Ended {
        pool: i32,
    },
    /// The agent's last word, on [`CONTROL`], once told to stop: everything it sent has been
    /// received; it leaves the job.
    Stopped,
}

/// A record and the bytes that follow it.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// How many raw bytes follow the record.
    fn trailing(&self) -> u64 {
        0
    }
}

impl Record for ToAgent {
    fn trailing(&self) -> u64 {
        match self {
            ToAgent::Chunk { len, .. } => *len,
            _ => 0,
        }
    }
}

impl Record for FromAgent {
    fn trailing(&self) -> u64 {
        match self {
            FromAgent::Results { len, .. } => *len,
            _ => 0,
        }
    }
}

/// Whether a chunk record describes a chunk an agent can run: its offsets fit its `payload`
/// bytes (`Offsets::fit`), and its items' indices in their call, from `first`, fit a `usize`.
pub(crate) fn sound_chunk(first: u64, offsets: &Offsets, payload: usize) -> bool {
    offsets.fit(payload)
        && usize::try_from(first)
            .ok()
            .and_then(|first| first.checked_add(offsets.len()))
            .is_some()
}

/// Appends `record` and the bytes it announces to `out`.
pub(crate) fn push<R: Record>(out: &mut Vec<u8>, record: &R, trailing: &[u8]) -> Result<()> {
    debug_assert_eq!(record.trailing(), trailing.len() as u64);
    codec::encode_into(record, out)?;
    out.extend_from_slice(trailing);
    Ok(())
}

/// Reads the next record of `input`, and the bytes that follow it; advances past both.
///
/// # Errors
/// [`Error::Protocol`] for a record that does not decode, or bytes cut short.
pub(crate) fn next<'a, R: Record>(input: &mut &'a [u8]) -> Result<(R, &'a [u8])> {
    let record: R = codec::decode_front(input)
        .map_err(|e| Error::Protocol(format!("a malformed message between ranks: {e}")))?;
    let len = usize::try_from(record.trailing()).unwrap_or(usize::MAX);
    if len > input.len() {
        return Err(Error::Protocol(format!(
            "a message between ranks announces {len} bytes and carries {}",
            input.len()
        )));
    }
    let (trailing, rest) = input.split_at(len);
    *input = rest;
    Ok((record, trailing))
}

/// One record alone, as a message to send.
pub(crate) fn one<R: Record>(record: &R) -> Result<Outgoing> {
    let mut out = Outgoing::new();
    push(out.buffer(), record, &[])?;
    Ok(out)
}

/// Reads `data` as an agent reads rank 0's messages and rank 0 an agent's: records one after
/// another until the end or the first error; a chunk's offsets are checked as the agent checks
/// them, and a chunk that passes is cut at every item as the agent's pool cuts chunks taken back
/// from a dead worker. The `fuzzing` feature's entry point (`fuzzing::mpi_records`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(data: &[u8]) {
    use crate::pool::{Chunk, Sink};
    use std::sync::Arc;

    struct Nobody;
    impl Sink for Nobody {
        fn deliver(&self, _: usize, _: usize, _: &[u8]) {}
        fn fail(&self, _: usize, _: Error) {}
    }

    let mut input = data;
    while let Ok((record, payload)) = next::<ToAgent>(&mut input) {
        let ToAgent::Chunk { offsets, first, .. } = record else {
            continue;
        };
        if !sound_chunk(first, &offsets, payload.len()) {
            continue;
        }
        let chunk = Chunk {
            sink: Arc::new(Nobody),
            call: 1,
            entry: 0,
            first: first as usize,
            payload: payload.to_vec(),
            offsets,
            retries: 0,
            fds: Arc::default(),
        };
        // As a worker's death cuts a chunk: the items after the one blamed, or before it (never
        // none). A uniform run of items may be long: cut a few times only.
        for at in 0..chunk.len().min(64) {
            let _ = chunk.slice(at..chunk.len(), 0);
            let _ = chunk.slice(0..at + 1, 0);
        }
    }
    let mut input = data;
    while next::<FromAgent>(&mut input).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_bytes_read_back_in_order() {
        let mut out = Vec::new();
        let chunk = ToAgent::Chunk {
            pool: 3,
            id: 9,
            call: 4,
            entry: -12,
            first: 100,
            offsets: Offsets::Uniform { len: 2, size: 8 },
            len: 16,
        };
        push(&mut out, &chunk, &[7; 16]).unwrap();
        push(&mut out, &ToAgent::Close { pool: 3 }, &[]).unwrap();
        let mut input = &out[..];
        match next::<ToAgent>(&mut input).unwrap() {
            (
                ToAgent::Chunk {
                    id: 9, first: 100, ..
                },
                bytes,
            ) => assert_eq!(bytes, &[7; 16]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            next::<ToAgent>(&mut input).unwrap(),
            (ToAgent::Close { pool: 3 }, [])
        ));
        assert!(input.is_empty());
    }

    #[test]
    fn a_chunk_whose_indices_overflow_is_unsound() {
        let one = Offsets::Uniform { len: 1, size: 0 };
        assert!(sound_chunk(7, &one, 0));
        // Found by fuzzing (`mpi_records`): the last item's index overflowed.
        assert!(!sound_chunk(u64::MAX, &one, 0));
        assert!(!sound_chunk(0, &Offsets::Each(vec![0, 5]), 4));
    }

    #[test]
    fn a_cut_or_garbled_message_is_a_protocol_error() {
        let mut out = Vec::new();
        let results = FromAgent::Results {
            pool: 1,
            chunk: 2,
            first: 0,
            count: 1,
            len: 10,
        };
        push(&mut out, &results, &[1; 10]).unwrap();
        let mut cut = &out[..out.len() - 1];
        assert!(matches!(
            next::<FromAgent>(&mut cut),
            Err(Error::Protocol(_))
        ));
        let mut garbage: &[u8] = &[0xff; 7];
        assert!(matches!(
            next::<FromAgent>(&mut garbage),
            Err(Error::Protocol(_))
        ));
    }
}
