//! What the supervisor moves around: chunks of encoded items, and the sinks their outcomes go to.
//!
//! The supervisor is type-erased: it sees bytes. Each call (`map`, `apply_async`, `imap`, …)
//! creates a [`Sink`] that knows the result type, decodes outcomes as they arrive, and wakes
//! whoever waits for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys;
use crate::wire::fds::{self, FdSet};
use crate::wire::{MAX_VALUE, codec};

/// Receives the outcomes of one call's items.
pub(crate) trait Sink: Send + Sync {
    /// `bytes` holds `count` encoded outcomes (`codec::encode_ok`) of items `first ..`.
    fn deliver(&self, first: usize, count: usize, bytes: &[u8]);
    /// Item `index` failed without an outcome from the child.
    fn fail(&self, index: usize, error: Error);
    /// Item `index` could not even be handed to the pool (its argument did not encode): it
    /// fails with `error`, never having been in a chunk.
    fn unsent(&self, index: usize, error: Error) {
        self.fail(index, error)
    }
    /// Whether nobody wants the outcomes any more (an `imap` iterator was dropped, an
    /// `AsyncResult` cancelled): pending items of such a call are not run.
    fn abandoned(&self) -> bool {
        false
    }
    /// Called as a chunk of this call is handed to a worker: whether it may be (`false`: drop
    /// it unrun, as for [`abandoned`](Self::abandoned)). A cancellable call's first `true` makes
    /// it uncancellable.
    fn claim(&self) -> bool {
        !self.abandoned()
    }
    /// A chunk of `len` items of this call was answered whole, `took` after its worker started
    /// on it (the supervisor's measure, as for `pace.rs`). For sinks that size their chunks.
    fn served(&self, _len: usize, _took: std::time::Duration) {}
    /// Who waits for the outcomes (a `Collector` hands a waiter its own, and only those);
    /// `None` for nobody in particular.
    fn waiter(&self) -> Option<WaiterId> {
        None
    }
}

/// Who waits for a call's outcome: the address of the result's slot, which lives as long as
/// anyone can wait on it. Made in one place, `result::Slot::waiter_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterId(pub(super) usize);

/// Lets a thread that waits for results read them from the workers itself, rather than wait
/// for the supervisor thread to be woken and do it (see `supervisor.rs`).
pub(crate) trait Collector: Send + Sync {
    /// Reads the results that have arrived, unless someone else is at it, and hands over those
    /// of the sink whose [`Sink::waiter`] is `waiter`. Never blocks.
    fn collect_here(&self, waiter: WaiterId);
}

/// Decodes `count` outcomes from `bytes`, calling `each(index, outcome)` in order. If the bytes
/// are malformed, the items that could not be decoded get a decode error.
pub(crate) fn decode_outcomes<R: serde::de::DeserializeOwned>(
    first: usize,
    count: usize,
    mut bytes: &[u8],
    mut each: impl FnMut(usize, Result<R>),
) {
    for i in 0..count {
        match codec::decode_outcome::<R>(&mut bytes) {
            Ok(outcome) => each(first + i, outcome.map_err(Error::from)),
            Err(e) => {
                for j in i..count {
                    each(first + j, Err(Error::Decode(e.to_string())));
                }
                return;
            }
        }
    }
}

/// Outcomes of consecutive items, from a first item's index on.
pub(crate) enum Piece<R> {
    /// A run of values.
    Values(Vec<R>),
    /// One item's error.
    Failed(Error),
}

/// Decodes `count` outcomes from `bytes` as [`decode_outcomes`] does, but hands them over as
/// pieces, `each(index of the first item, piece)`: a run of values costs one piece, not one per
/// item, and successes, the usual case, are decoded in one tight loop. The first run is
/// decoded into `spare` (an emptied vector whose memory is reused; `Vec::new()` for none).
pub(crate) fn decode_pieces<R: serde::de::DeserializeOwned>(
    first: usize,
    count: usize,
    mut bytes: &[u8],
    mut spare: Vec<R>,
    mut each: impl FnMut(usize, Piece<R>),
) {
    spare.clear();
    spare.reserve(count);
    let mut run: (usize, Vec<R>) = (first, spare);
    codec::decode_successes(&mut bytes, count, &mut run.1);
    let done = run.1.len();
    // Whatever follows the first outcome that is not a value goes the general way.
    decode_outcomes::<R>(first + done, count - done, bytes, |i, v| match v {
        Ok(v) => run.1.push(v),
        Err(e) => {
            let ended = std::mem::replace(&mut run, (i + 1, Vec::new()));
            if !ended.1.is_empty() {
                each(ended.0, Piece::Values(ended.1));
            }
            each(i, Piece::Failed(e));
        }
    });
    if !run.1.is_empty() {
        each(run.0, Piece::Values(run.1));
    }
}

/// A run of encoded items bound for one worker.
pub(crate) struct Chunk {
    pub(crate) sink: Arc<dyn Sink>,
    /// Which call the chunk belongs to: a number no other call of this process had.
    pub(crate) call: u64,
    /// Trampoline offset (see `task.rs`).
    pub(crate) entry: i64,
    /// Index, within its call, of the first item.
    pub(crate) first: usize,
    /// The items' encodings back to back.
    pub(crate) payload: Vec<u8>,
    /// Where each item starts in `payload`.
    pub(crate) offsets: Offsets,
    /// How many times this chunk was handed back after its worker died.
    pub(crate) retries: u8,
    /// Descriptors of the handles inside the items (sent with every copy of the chunk).
    pub(crate) fds: Arc<FdSet>,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Fails items `range` of this chunk, each with `error(index in its call)`.
    pub(crate) fn fail(&self, range: std::ops::Range<usize>, error: impl Fn(usize) -> Error) {
        for i in range {
            self.sink.fail(self.first + i, error(self.first + i));
        }
    }

    /// Items `range` of this chunk as a chunk of their own, with `charge` more retries counted.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>, charge: u8) -> Chunk {
        let start = self.offsets.start(range.start);
        let end = if range.end == self.len() {
            self.payload.len()
        } else {
            self.offsets.start(range.end)
        };
        Chunk {
            sink: self.sink.clone(),
            call: self.call,
            entry: self.entry,
            first: self.first + range.start,
            payload: self.payload[start..end].to_vec(),
            offsets: self.offsets.slice(range),
            retries: self.retries.saturating_add(charge),
            fds: self.fds.clone(),
        }
    }
}

/// Where each item of a chunk starts in its payload: a position per item, or none at all while
/// every item takes the same number of bytes (numbers, fixed-size records) — for tiny items,
/// four bytes an item less to write, and memory a large `map` does not have to find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Offsets {
    /// `len` items of `size` bytes each (`size` is known once there are two).
    Uniform {
        len: usize,
        size: u32,
    },
    Each(Vec<u32>),
}

impl Default for Offsets {
    fn default() -> Self {
        Offsets::Uniform { len: 0, size: 0 }
    }
}

impl Offsets {
    /// The offsets of a chunk of one item.
    pub(crate) fn one() -> Self {
        Offsets::Uniform { len: 1, size: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Offsets::Uniform { len, .. } => *len,
            Offsets::Each(v) => v.len(),
        }
    }

    /// Whether they can describe a chunk's items in a payload of `bytes` bytes: at least one
    /// item (as every chunk has), every item starting within the payload, in order, and no more
    /// items than a task message can count (`u32`). What a chunk from elsewhere (another rank)
    /// is checked against before anything slices its payload by them.
    #[cfg(feature = "mpi")]
    pub(crate) fn fit(&self, bytes: usize) -> bool {
        if self.len() == 0 || self.len() > u32::MAX as usize {
            return false;
        }
        match self {
            Offsets::Uniform { len, size } => (*len as u64)
                .saturating_sub(1)
                .checked_mul(*size as u64)
                .is_some_and(|last| last <= bytes as u64),
            Offsets::Each(v) => {
                v.first().is_none_or(|&o| o == 0)
                    && v.windows(2).all(|w| w[0] <= w[1])
                    && v.last().is_none_or(|&o| o as usize <= bytes)
            }
        }
    }

    /// Where item `i` starts.
    pub(crate) fn start(&self, i: usize) -> usize {
        match self {
            Offsets::Uniform { size, .. } => i * *size as usize,
            Offsets::Each(v) => v[i] as usize,
        }
    }

    /// Adds an item that starts at `at`, just after the last one.
    #[inline(always)]
    pub(crate) fn push(&mut self, at: u32) {
        match *self {
            Offsets::Uniform { len: 0, .. } if at == 0 => *self = Offsets::one(),
            Offsets::Uniform { len: 1, .. } => *self = Offsets::Uniform { len: 2, size: at },
            Offsets::Uniform { ref mut len, size } if *len as u64 * size as u64 == at as u64 => {
                *len += 1
            }
            Offsets::Each(ref mut v) => v.push(at),
            Offsets::Uniform { len, size } => self.spell_out(len, size, at),
        }
    }

    /// Adds `n` items of `size` bytes each, the first at `at`, just after the last one.
    fn push_many(&mut self, n: usize, size: u32, at: u32) {
        match *self {
            Offsets::Uniform { len, size: known }
                if n > 0 && at as u64 == len as u64 * size as u64 && (len < 2 || known == size) =>
            {
                let len = len + n;
                *self = Offsets::Uniform {
                    len,
                    size: if len < 2 { 0 } else { size },
                }
            }
            _ => (0..n as u32).for_each(|i| self.push(at + i * size)),
        }
    }

    /// An item of another size than the ones before: a position per item from now on.
    #[cold]
    fn spell_out(&mut self, len: usize, size: u32, at: u32) {
        let mut each: Vec<u32> = (0..len as u32).map(|i| i * size).collect();
        each.push(at);
        *self = Offsets::Each(each);
    }

    /// Forgets the last item.
    pub(crate) fn pop(&mut self) {
        match self {
            Offsets::Uniform { len, .. } => *len = len.saturating_sub(1),
            Offsets::Each(v) => {
                v.pop();
            }
        }
    }

    /// The offsets of items `range`, counted from the first of them.
    fn slice(&self, range: std::ops::Range<usize>) -> Offsets {
        match self {
            Offsets::Uniform { size, .. } => Offsets::Uniform {
                len: range.len(),
                size: *size,
            },
            Offsets::Each(v) => {
                let start = v[range.start];
                Offsets::Each(v[range].iter().map(|o| o - start).collect())
            }
        }
    }
}

/// How a call's items are cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Chunks of this many items (the last may be shorter): a chunk size the caller chose.
    Fixed(usize),
    /// Chunks that shrink as the input runs out (OpenMP's "guided" schedule), for an input of
    /// `total` items shared by `workers`: each chunk is a [`GUIDED_SHARE`] of what remains per
    /// worker, never below `min`. The middle chunks are large (little overhead per item), the
    /// last ones small, so that the end of a call never waits long for one worker, even when
    /// the workers' cores run at different speeds (virtual machines' often do) or the items
    /// differ in cost. The first chunks are small too, doubling from `min`: the caller encodes
    /// the input as the workers run it, and a large first chunk would keep every worker
    /// waiting for it to be encoded whole.
    Guided {
        total: usize,
        workers: usize,
        min: usize,
    },
}

/// Which share of the items left per worker a guided chunk takes: a half, so that the largest
/// chunk (where the doubling from the smallest meets it) is at most twice Python's automatic
/// chunk size, and the sizes then fall by a quarter per chunk with two workers.
const GUIDED_SHARE: usize = 2;
/// The smallest guided chunk, as a fraction of Python's automatic chunk size (about four
/// chunks per worker): small enough for an even end, large enough that the per-chunk cost
/// (a few µs) stays small beside tiny items' own.
const GUIDED_MIN_DIVISOR: usize = 8;

impl Chunking {
    /// The guided schedule for `total` items and `workers` workers.
    pub(crate) fn guided(total: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        Chunking::Guided {
            total,
            workers,
            min: python_chunksize(total, workers).div_ceil(GUIDED_MIN_DIVISOR),
        }
    }

    /// How many items the chunk that starts at item `next` of the call takes.
    pub(crate) fn size_at(&self, next: usize) -> usize {
        match *self {
            Chunking::Fixed(n) => n.max(1),
            Chunking::Guided {
                total,
                workers,
                min,
            } => {
                let left = total.saturating_sub(next);
                let guided = left.div_ceil(GUIDED_SHARE * workers);
                // No larger than all the chunks before it together: doubling from `min`.
                guided.min(next).max(min).max(1)
            }
        }
    }
}

/// Python's automatic chunk size for `map`: about four chunks per worker.
pub(crate) fn python_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(workers.max(1) * 4).max(1)
}

/// Builds chunks by encoding items one after another.
pub(crate) struct ChunkBuilder {
    sink: Arc<dyn Sink>,
    call: u64,
    entry: i64,
    chunking: Chunking,
    /// How many items the current chunk takes.
    chunksize: usize,
    next_index: usize,
    current: Option<Chunk>,
    /// Descriptors of the current chunk's items.
    fds: FdSet,
    /// The most encoded bytes a chunk of several items may hold: what one message can carry.
    max_payload: usize,
    /// The encoded size of the last chunk closed: what the next one is allocated for, up to
    /// [`RESERVED_MAX`].
    last_payload: usize,
    /// Encoded bytes at which a chunk closes whatever its count: [`GUIDED_MAX_BYTES`] for
    /// guided chunks, none for a chunk size the caller chose.
    close_at: usize,
}

/// The encoded bytes at which a guided chunk closes, however many items it was to take. Past
/// this, a larger chunk saves nothing that counts (its fixed cost is a few µs, against 16 K
/// numbers' worth of encoding), but its bytes cross in memory of their own all the way: the
/// caller's encoding, the shared buffer it is staged in, the worker's results. Chunks of at most
/// this size reuse the same few buffers from the first on. Measured, 1 M numbers on a new pool
/// of 2: the first map faulted in 3,300 pages instead of 6,000, and took 13 ms instead of
/// 17–20 (steady state 10 ms either way).
pub(crate) const GUIDED_MAX_BYTES: usize = 128 << 10;

/// The most payload reserved for a chunk before its items are encoded. Small chunks (an `imap`
/// with chunk size 64, say) are then allocated once rather than grown item by item; larger ones
/// grow: measured, reserving them whole made each chunk's memory fresh from the system (a page
/// fault per 4 KiB, for allocations past the allocator's threshold for mapping memory of their
/// own), where growing reuses memory.
const RESERVED_MAX: usize = 64 << 10;

impl ChunkBuilder {
    pub(crate) fn new(sink: Arc<dyn Sink>, entry: i64, chunksize: usize) -> Self {
        Self::with(sink, entry, Chunking::Fixed(chunksize))
    }

    /// A builder whose chunks are cut as `chunking` says.
    pub(crate) fn with(sink: Arc<dyn Sink>, entry: i64, chunking: Chunking) -> Self {
        /// Numbers calls apart (see [`Chunk::call`]).
        static CALLS: AtomicU64 = AtomicU64::new(1);
        Self {
            sink,
            call: CALLS.fetch_add(1, Ordering::Relaxed),
            entry,
            chunking,
            chunksize: chunking.size_at(0),
            next_index: 0,
            current: None,
            fds: FdSet::default(),
            max_payload: MAX_VALUE,
            last_payload: 0,
            close_at: match chunking {
                Chunking::Guided { .. } => GUIDED_MAX_BYTES,
                Chunking::Fixed(_) => usize::MAX,
            },
        }
    }

    /// Sets the size of the chunks made from now on (the current one included).
    pub(crate) fn set_chunksize(&mut self, chunksize: usize) {
        self.chunking = Chunking::Fixed(chunksize);
        self.close_at = usize::MAX;
        self.chunksize = self.chunking.size_at(self.next_index);
    }

    /// Number of items added so far.
    pub(crate) fn count(&self) -> usize {
        self.next_index
    }

    /// Number of items in the partly filled chunk, not handed out yet.
    pub(crate) fn pending(&self) -> usize {
        self.current.as_ref().map_or(0, Chunk::len)
    }

    /// Encodes one item; returns a chunk when one is full. An item that cannot be encoded fails
    /// at once (its index is used up, so results keep their positions). Inlined into the
    /// callers' loops: for tiny items, a call per item costs as much as the encoding.
    #[inline(always)]
    pub(crate) fn push<T: Serialize>(&mut self, item: &T) -> Option<Chunk> {
        let index = self.next_index;
        self.next_index += 1;
        if self.current.is_none() {
            self.open_chunk(index);
        }
        let Some(chunk) = self.current.as_mut() else {
            unreachable!("a chunk was just opened")
        };
        let at = chunk.payload.len();
        // Plain numbers carry no handles: no descriptor context to set up per item.
        // An argument too large for a message is refused before it is copied whole.
        let encoded = if codec::plain::is_plain::<T>() {
            codec::encode_message(item, "argument", &mut chunk.payload)
        } else {
            fds::collect(&mut self.fds, || {
                codec::encode_message(item, "argument", &mut chunk.payload)
            })
        };
        if let Err(e) = encoded {
            return self.fail_item(index, at, e.into());
        }
        if at > u32::MAX as usize {
            let e = Error::Encode("a chunk's items exceed 4 GiB; use a smaller chunksize".into());
            return self.fail_item(index, at, e);
        }
        chunk.offsets.push(at as u32);
        // A chunk travels as one message: items that fit one each need not fail together, so
        // the item that made it too large starts the next chunk.
        if chunk.payload.len() > self.max_payload && at > 0 && self.fds.is_empty() {
            chunk.offsets.pop();
            self.chunksize = self.chunking.size_at(index);
            let next = Chunk {
                sink: chunk.sink.clone(),
                call: chunk.call,
                entry: chunk.entry,
                first: index,
                payload: chunk.payload.split_off(at),
                offsets: Offsets::one(),
                retries: 0,
                fds: Arc::default(),
            };
            return self.current.replace(next);
        }
        // Keep its handles within what one send can carry.
        if chunk.len() >= self.chunksize
            || chunk.payload.len() >= self.close_at
            || self.fds.len() >= sys::fd::MAX_FDS_PER_MSG / 2
        {
            self.take_current()
        } else {
            None
        }
    }

    /// Encodes items of `items` until a chunk is full and returns it; `None` once the input has
    /// run out (the partly filled chunk is then [`finish`](Self::finish)'s). Plain numbers are
    /// copied in runs of a chunk's room, any other item goes through [`push`](Self::push).
    #[inline(always)]
    pub(crate) fn fill<T: Serialize>(
        &mut self,
        items: &mut impl Iterator<Item = T>,
    ) -> Option<Chunk> {
        if !codec::plain::is_scalar::<T>() {
            return items.find_map(|item| self.push(&item));
        }
        let size = std::mem::size_of::<T>();
        // `push` checks each item's start against `u32`; here the payload cap implies it.
        const { assert!(MAX_VALUE <= u32::MAX as usize) };
        loop {
            if self.current.is_none() {
                self.open_chunk(self.next_index);
            }
            let Some(chunk) = self.current.as_mut() else {
                unreachable!("a chunk was just opened")
            };
            let at = chunk.payload.len();
            // As many items as `push` would take before closing the chunk: it closes after the
            // item that fills its count or passes `close_at`, and before one that would not
            // fit a message (unless that one is alone, as with `push`).
            let fits = self.max_payload.saturating_sub(at) / size;
            if fits == 0 && at > 0 {
                if let Some(full) = self.take_current() {
                    return Some(full);
                }
                continue;
            }
            let room = self
                .chunksize
                .saturating_sub(chunk.len())
                .min(self.close_at.saturating_sub(at).div_ceil(size))
                .max(1)
                .min(fits.max(1));
            let taken = codec::append_scalar_run(items.by_ref().take(room), &mut chunk.payload)?;
            chunk.offsets.push_many(taken, size as u32, at as u32);
            self.next_index += taken;
            if taken < room {
                return None;
            }
            if let Some(full) = self.take_current() {
                return Some(full);
            }
        }
    }

    /// Starts the chunk whose first item is `index` (out of line: once a chunk, not once an
    /// item).
    #[inline(never)]
    fn open_chunk(&mut self, index: usize) {
        self.chunksize = self.chunking.size_at(index);
        self.current = Some(Chunk {
            sink: self.sink.clone(),
            call: self.call,
            entry: self.entry,
            first: index,
            payload: Vec::with_capacity(self.last_payload.min(RESERVED_MAX)),
            offsets: Offsets::default(),
            retries: 0,
            fds: Arc::default(),
        });
    }

    /// Fails item `index`, whose encoding started at `at` in the current chunk, and closes the
    /// chunk so that indices stay contiguous within chunks.
    #[cold]
    fn fail_item(&mut self, index: usize, at: usize, error: Error) -> Option<Chunk> {
        if let Some(chunk) = &mut self.current {
            chunk.payload.truncate(at);
        }
        let done = self.take_current();
        self.sink.unsent(index, error);
        done
    }

    /// The last, partly filled chunk.
    pub(crate) fn finish(&mut self) -> Option<Chunk> {
        self.take_current()
    }

    /// Closes the current chunk (if it has items), handing it the descriptors gathered so far.
    fn take_current(&mut self) -> Option<Chunk> {
        let mut chunk = self.current.take().filter(|c| c.len() > 0)?;
        self.last_payload = chunk.payload.len();
        if !self.fds.is_empty() {
            chunk.fds = Arc::new(std::mem::take(&mut self.fds));
        }
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "mpi")]
    #[test]
    fn offsets_from_elsewhere_must_fit_their_payload() {
        assert!(Offsets::Uniform { len: 4, size: 8 }.fit(32));
        assert!(
            Offsets::Uniform { len: 4, size: 8 }.fit(24),
            "the last item may be empty"
        );
        assert!(!Offsets::Uniform { len: 5, size: 8 }.fit(24));
        assert!(
            !Offsets::Uniform { len: 0, size: 0 }.fit(0),
            "no chunk is empty"
        );
        assert!(
            !Offsets::Each(vec![]).fit(0),
            "found by fuzzing: an empty chunk"
        );
        assert!(Offsets::Each(vec![0, 3, 3, 10]).fit(10));
        assert!(!Offsets::Each(vec![0, 3, 2]).fit(10), "out of order");
        assert!(
            !Offsets::Each(vec![1, 3]).fit(10),
            "the first item starts the payload"
        );
        assert!(!Offsets::Each(vec![0, 11]).fit(10), "past the end");
        // Found by fuzzing (`mpi_records`): the last item's start overflowed.
        let huge = Offsets::Uniform {
            len: 1 << 40,
            size: u32::MAX,
        };
        assert!(!huge.fit(usize::MAX));
        let countless = Offsets::Uniform {
            len: 1 << 33,
            size: 0,
        };
        assert!(!countless.fit(0), "more items than a task message counts");
    }

    struct Failures(std::sync::Mutex<Vec<usize>>);
    impl Sink for Failures {
        fn deliver(&self, _: usize, _: usize, _: &[u8]) {}
        fn fail(&self, index: usize, _: Error) {
            self.0.lock().unwrap().push(index);
        }
    }

    /// The sizes of the chunks `chunking` cuts `total` items into.
    fn sizes(chunking: Chunking, total: usize) -> Vec<usize> {
        let mut at = 0;
        std::iter::from_fn(|| {
            (at < total).then(|| {
                let n = chunking.size_at(at).min(total - at);
                at += n;
                n
            })
        })
        .collect()
    }

    #[test]
    fn offsets_need_no_list_while_items_are_the_same_size() {
        let mut o = Offsets::default();
        for at in [0, 8, 16, 24] {
            o.push(at);
        }
        assert_eq!(o, Offsets::Uniform { len: 4, size: 8 });
        assert_eq!((o.len(), o.start(3)), (4, 24));
        assert_eq!(o.slice(1..3), Offsets::Uniform { len: 2, size: 8 });
        o.push(35); // the fourth item took 11 bytes
        o.push(40);
        assert_eq!(o, Offsets::Each(vec![0, 8, 16, 24, 35, 40]));
        assert_eq!(o.slice(3..5), Offsets::Each(vec![0, 11]));
        o.pop();
        assert_eq!((o.len(), o.start(4)), (5, 35));
        let mut zero = Offsets::default();
        (0..3).for_each(|_| zero.push(0));
        assert_eq!((zero.len(), zero.start(2)), (3, 0));
    }

    #[test]
    fn sliced_chunks_keep_their_items_whatever_their_sizes() {
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        let items = ["a".to_string(), "bbb".into(), "cc".into(), "dddd".into()];
        for same in [true, false] {
            let mut b = ChunkBuilder::new(sink.clone(), 0, 4);
            let all: Vec<String> = match same {
                true => items.iter().map(|_| "xy".to_string()).collect(),
                false => items.to_vec(),
            };
            let chunk = all.iter().find_map(|s| b.push(s)).unwrap();
            let part = chunk.slice(1..3, 1);
            assert_eq!((part.first, part.len(), part.retries), (1, 2, 1));
            let mut bytes = &part.payload[..];
            for want in &all[1..3] {
                let got: String = codec::decode_front(&mut bytes).unwrap();
                assert_eq!(&got, want);
            }
            assert!(bytes.is_empty());
        }
    }

    #[test]
    fn guided_chunks_grow_from_small_then_shrink_as_the_input_runs_out() {
        // 64 equal tasks on two workers: doubling from one, then a quarter of what is left each
        // time, down to one.
        assert_eq!(
            sizes(Chunking::guided(64, 2), 64),
            [1, 1, 2, 4, 8, 12, 9, 7, 5, 4, 3, 2, 2, 1, 1, 1, 1]
        );
        for (total, workers) in [
            (1, 1),
            (7, 2),
            (1000, 2),
            (1_000_000, 2),
            (5000, 64),
            (3, 8),
        ] {
            let got = sizes(Chunking::guided(total, workers), total);
            assert_eq!(got.iter().sum::<usize>(), total, "{total} on {workers}");
            // Up, then down.
            let top = got
                .iter()
                .position(|&n| n == *got.iter().max().unwrap())
                .unwrap();
            assert!(got[..=top].windows(2).all(|w| w[0] <= w[1]), "{got:?}");
            assert!(got[top..].windows(2).all(|w| w[0] >= w[1]), "{got:?}");
            let python = python_chunksize(total, workers);
            let min = python.div_ceil(GUIDED_MIN_DIVISOR);
            assert!(got[0] <= min, "first chunk {} vs {min}", got[0]);
            assert!(
                got[top] <= 2 * python,
                "largest chunk {} vs {python}",
                got[top]
            );
            // The end is fine-grained: the last chunks are an eighth of Python's size.
            assert!(*got.last().unwrap() <= python.div_ceil(GUIDED_MIN_DIVISOR));
            // And the cost per chunk stays bounded: about ln(1/8)/ln(1 - 1/2w) + 8w chunks,
            // and a few more on the way up.
            assert!(got.len() <= 12 * workers + 12, "{} chunks", got.len());
        }
        assert_eq!(sizes(Chunking::Fixed(3), 7), [3, 3, 1]);
    }

    /// Every chunk of `items` that `chunking` cuts, item by item (`push`) or in runs (`fill`).
    fn chunks_of<T: Serialize + Clone>(items: &[T], chunking: Chunking, runs: bool) -> Vec<Chunk> {
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        let mut b = ChunkBuilder::with(sink, 0, chunking);
        let mut got: Vec<Chunk> = match runs {
            true => {
                let mut it = items.iter().cloned();
                std::iter::from_fn(|| b.fill(&mut it)).collect()
            }
            false => items.iter().filter_map(|i| b.push(i)).collect(),
        };
        got.extend(b.finish());
        got
    }

    #[test]
    fn numbers_filled_in_runs_make_the_chunks_pushing_them_one_by_one_makes() {
        let numbers: Vec<u64> = (0..100_000).collect();
        let bytes: Vec<u8> = (0..5000).map(|i| i as u8).collect();
        let words: Vec<String> = (0..300).map(|i| "w".repeat(i % 7)).collect();
        for chunking in [
            Chunking::guided(numbers.len(), 2),
            Chunking::Fixed(1),
            Chunking::Fixed(64),
            Chunking::Fixed(1 << 30),
        ] {
            let key = |c: &Chunk| (c.first, c.payload.clone(), c.offsets.clone());
            let same = |a: Vec<Chunk>, b: Vec<Chunk>| {
                assert_eq!(a.len(), b.len(), "{chunking:?}");
                assert!(a.iter().map(key).eq(b.iter().map(key)), "{chunking:?}");
            };
            same(
                chunks_of(&numbers, chunking, true),
                chunks_of(&numbers, chunking, false),
            );
            same(
                chunks_of(&bytes, chunking, true),
                chunks_of(&bytes, chunking, false),
            );
            same(
                chunks_of(&words, chunking, true),
                chunks_of(&words, chunking, false),
            );
        }
        // A run that ends short of a chunk leaves it open; the next run goes on filling it.
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        let mut b = ChunkBuilder::new(sink, 0, 10);
        assert!(b.fill(&mut (0..4u32)).is_none());
        let chunk = b.fill(&mut (4..20u32)).unwrap();
        assert_eq!((chunk.first, chunk.len(), b.pending()), (0, 10, 0));
        assert_eq!(chunk.offsets, Offsets::Uniform { len: 10, size: 4 });
        let mut bytes = &chunk.payload[..];
        let back: Vec<u32> = (0..10)
            .map(|_| codec::decode_front(&mut bytes).unwrap())
            .collect();
        assert_eq!(back, (0..10).collect::<Vec<u32>>());
    }

    #[test]
    fn runs_and_single_items_agree_at_the_message_limit_and_across_size_changes() {
        let numbers: Vec<u32> = (0..500).collect();
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        // Where each item starts: `Offsets` may spell the same positions two ways.
        let key = |c: &Chunk| {
            let starts: Vec<usize> = (0..c.len()).map(|i| c.offsets.start(i)).collect();
            (c.first, c.payload.clone(), starts)
        };
        for max_payload in [4, 7, 8, 9, 15, 16, 17, 40, 100, 1000] {
            for chunking in [
                Chunking::Fixed(1),
                Chunking::Fixed(3),
                Chunking::Fixed(64),
                Chunking::guided(numbers.len(), 2),
            ] {
                // The input in pieces, the chunk size changing between them (as `imap`'s
                // window does): once item by item, once in runs.
                let cut = |runs: bool| {
                    let mut b = ChunkBuilder::with(sink.clone(), 0, chunking);
                    b.max_payload = max_payload;
                    let mut got = Vec::new();
                    for (i, piece) in numbers.chunks(37).enumerate() {
                        if i % 3 == 2 {
                            b.set_chunksize(1 + i % 5);
                        }
                        let mut it = piece.iter().copied();
                        match runs {
                            true => {
                                // Now and then a chunk is begun item by item, then filled.
                                if i % 4 == 1 {
                                    got.extend(it.next().and_then(|x| b.push(&x)));
                                }
                                got.extend(std::iter::from_fn(|| b.fill(&mut it)));
                            }
                            false => got.extend(piece.iter().filter_map(|x| b.push(x))),
                        }
                    }
                    got.extend(b.finish());
                    got
                };
                let (runs, one_by_one) = (cut(true), cut(false));
                assert!(
                    runs.iter().map(key).eq(one_by_one.iter().map(key)),
                    "max_payload {max_payload}, {chunking:?}"
                );
                assert_eq!(runs.iter().map(Chunk::len).sum::<usize>(), numbers.len());
            }
        }
    }

    #[test]
    fn guided_chunks_close_at_their_byte_limit_and_chosen_sizes_do_not() {
        let numbers: Vec<u64> = (0..1_000_000).collect();
        for runs in [true, false] {
            let guided = chunks_of(&numbers, Chunking::guided(numbers.len(), 2), runs);
            assert!(guided.iter().all(|c| c.payload.len() <= GUIDED_MAX_BYTES));
            assert_eq!(guided.iter().map(Chunk::len).sum::<usize>(), numbers.len());
            let fixed = chunks_of(&numbers, Chunking::Fixed(100_000), runs);
            assert!(fixed.iter().all(|c| c.len() == 100_000));
        }
        // An item larger than the limit makes a chunk of its own.
        let big: Vec<Vec<u8>> = (0..4).map(|_| vec![1; GUIDED_MAX_BYTES]).collect();
        let chunks = chunks_of(&big, Chunking::guided(4, 1), true);
        assert!(chunks.iter().all(|c| c.len() == 1), "{}", chunks.len());
    }

    #[test]
    fn offsets_of_a_run_are_those_of_its_items_one_by_one() {
        let mut run = Offsets::default();
        run.push_many(1, 8, 0);
        assert_eq!(run, Offsets::one());
        run.push_many(3, 8, 8);
        assert_eq!(run, Offsets::Uniform { len: 4, size: 8 });
        // After an item of another size, a run spells its positions out.
        run.push(32);
        run.push(45);
        run.push_many(2, 8, 50);
        assert_eq!(run, Offsets::Each(vec![0, 8, 16, 24, 32, 45, 50, 58]));
        // A first item of another size than the run's is no uniform chunk either.
        let mut odd = Offsets::default();
        odd.push(0);
        odd.push_many(2, 8, 5);
        assert_eq!(odd, Offsets::Each(vec![0, 5, 13]));
    }

    #[test]
    fn a_builder_cuts_chunks_as_its_schedule_says() {
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        let mut b = ChunkBuilder::with(sink, 0, Chunking::guided(64, 2));
        let mut lens: Vec<usize> = (0..64u32)
            .filter_map(|i| b.push(&i))
            .map(|c| c.len())
            .collect();
        lens.extend(b.finish().map(|c| c.len()));
        assert_eq!(lens, sizes(Chunking::guided(64, 2), 64));
    }

    #[test]
    fn items_that_fit_a_message_one_each_are_never_chunked_past_it() {
        let sink = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        let mut b = ChunkBuilder::new(sink.clone(), 0, 4);
        b.max_payload = 100;
        let item = vec![7u8; 60];
        let mut chunks: Vec<Chunk> = (0..5).filter_map(|_| b.push(&item)).collect();
        chunks.extend(b.finish());
        let shapes: Vec<(usize, usize)> = chunks.iter().map(|c| (c.first, c.len())).collect();
        assert_eq!(shapes, [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]);
        for c in &chunks {
            let decoded: Vec<u8> = codec::decode(&c.payload).unwrap();
            assert_eq!(decoded, item);
        }
        // Small items still fill their chunks.
        let mut b = ChunkBuilder::new(sink.clone(), 0, 4);
        b.max_payload = 100;
        let lens: Vec<usize> = (0..8u8)
            .filter_map(|i| b.push(&i))
            .map(|c| c.len())
            .collect();
        assert_eq!(lens, [4, 4]);
        assert!(sink.0.lock().unwrap().is_empty(), "nothing failed");
    }
}
