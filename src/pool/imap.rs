//! `imap` and `imap_unordered`: lazy iterators over a pool's results.
//!
//! The input iterator is pulled on the consumer's thread, inside `next()`, and only while the
//! window has room — so an endless iterator works and memory stays flat, unlike CPython, which
//! reads the whole input first. How large chunks are and how many items may be in flight is
//! `readahead.rs`: automatic chunks start at one item and grow while the supervisor serves
//! them fast, and the window is a few chunks per worker, bounded in items and bytes. The input
//! is pulled a batch at a time (once a quarter of the window, or a chunk, has room), so that
//! chunks are handed to the pool several at once.
//!
//! Outcomes arrive on the thread that read them (the supervisor's) as pieces: a run of
//! consecutive values (one results frame's worth) or one item's error. The sink appends them to
//! a list under its lock and wakes the consumer only if it sleeps waiting for one of them (an
//! ordered `imap` waits for the piece that holds its next item); the consumer swaps the whole
//! list out in one lock round and then yields from its own buffer without locking. Ordered
//! results wait there, by run, until their turn; unordered ones are yielded as they arrived.
//!
//! An `imap` made while the pool runs holds an admission (`handoff::Admission`): after
//! `close()` it goes on handing in its input, as Python's does, until its input ends or it is
//! dropped; the workers wait for it. `join()` ends that: it must never wait for an input that
//! nobody may ever pull (the joining thread may hold the `imap` itself), so from then on the
//! pool refuses everyone: the items pulled but not handed in yet fail with `PoolClosed`, and
//! the input is pulled no more (the `imap` ends after them).

use std::collections::{BTreeMap, VecDeque};
#[cfg(feature = "stream")]
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
#[cfg(feature = "stream")]
use std::task::Context;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use super::handoff::Admission;
use super::job::{ChunkBuilder, Piece, Sink, decode_pieces};
use super::readahead::Readahead;
use super::result::lock;
use super::stats::Report;
use crate::error::{Error, Result};
use crate::mem::parking;

/// What arrived since the consumer last looked.
struct Arrived<R> {
    /// Pieces, each with the index of its first item, in the order they arrived.
    pieces: Vec<(usize, Piece<R>)>,
    /// Chunks answered whole: their items and how long they took (for `Readahead::served`).
    served: Vec<(usize, Duration)>,
    /// The largest encoded size of a result seen, averaged over each piece.
    result_bytes: usize,
    /// What the consumer waits for: asleep on `Stream::cond`, or as a task (`waker`).
    wanted: Wanted,
    /// The task that polls the `imap` as a [`futures_core::Stream`], while it waits for
    /// `wanted`.
    waker: Option<Waker>,
}

/// What a waiting consumer waits for: it is woken for that only (an ordered `imap` waiting for
/// its next item has no use for the pieces that arrive before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    /// It does not wait.
    Nothing,
    AnyPiece,
    /// The piece that starts at this item.
    PieceAt(usize),
}

impl Wanted {
    fn met_by<R>(self, pieces: &[(usize, Piece<R>)]) -> bool {
        match self {
            Wanted::Nothing => false,
            Wanted::AnyPiece => !pieces.is_empty(),
            Wanted::PieceAt(index) => pieces.iter().any(|(first, _)| *first == index),
        }
    }
}

/// Where an `imap`'s outcomes arrive.
pub(crate) struct Stream<R> {
    arrived: Mutex<Arrived<R>>,
    /// What the call reports as its outcomes arrive (`stats.rs`).
    report: Report,
    /// Whether chunks' timings are wanted (automatic chunk sizes).
    timed: bool,
    cond: Condvar,
    abandoned: AtomicBool,
}

impl<R> Stream<R> {
    fn publish(&self, pieces: &mut Vec<(usize, Piece<R>)>, result_bytes: usize) {
        let mut arrived = lock(&self.arrived);
        let wake = arrived.wanted.met_by(pieces);
        let mut waker = None;
        if wake {
            arrived.wanted = Wanted::Nothing;
            waker = arrived.waker.take();
        }
        arrived.pieces.append(pieces);
        arrived.result_bytes = arrived.result_bytes.max(result_bytes);
        drop(arrived);
        match waker {
            Some(waker) => waker.wake(),
            None if wake => self.cond.notify_one(),
            None => {}
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Stream<R> {
    fn deliver(&self, first: usize, count: usize, bytes: &[u8]) {
        // Decode first, publish after: a panicking `Deserialize` leaves nothing half-delivered.
        let mut pieces = Vec::new();
        decode_pieces::<R>(first, count, bytes, Vec::new(), |at, piece| {
            pieces.push((at, piece))
        });
        let mut failed = 0;
        for (at, piece) in &pieces {
            if let Piece::Failed(e) = piece {
                self.report.task_failed(*at, e);
                failed += 1;
            }
        }
        self.report.answered(count, failed);
        self.publish(&mut pieces, bytes.len() / count.max(1));
    }

    fn unsent(&self, index: usize, error: Error) {
        self.report.unsent(index, &error);
        self.publish(&mut vec![(index, Piece::Failed(error))], 0);
    }

    fn fail(&self, index: usize, error: Error) {
        self.report.failed(index, &error);
        self.publish(&mut vec![(index, Piece::Failed(error))], 0);
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    fn served(&self, len: usize, took: Duration) {
        if self.timed {
            lock(&self.arrived).served.push((len, took));
        }
    }
}

/// Outcomes taken from the stream and not yet yielded.
enum Taken<R> {
    /// By the index of their first item, until their turn comes.
    InOrder(BTreeMap<usize, Piece<R>>),
    AnyOrder(VecDeque<Piece<R>>),
}

impl<R> Taken<R> {
    fn extend(&mut self, pieces: impl Iterator<Item = (usize, Piece<R>)>) {
        match self {
            Taken::InOrder(map) => map.extend(pieces),
            Taken::AnyOrder(queue) => queue.extend(pieces.map(|(_, piece)| piece)),
        }
    }

    /// The piece to yield once `yielded` items have been.
    fn next(&mut self, yielded: usize) -> Option<Piece<R>> {
        match self {
            Taken::InOrder(map) => map.remove(&yielded),
            Taken::AnyOrder(queue) => queue.pop_front(),
        }
    }
}

/// A lazy iterator over a pool's results: what [`Pool::imap`] and [`Pool::imap_unordered`]
/// return. Each item is that task's own `Result`, so one failure loses nothing else.
/// [`next_timeout`](Self::next_timeout) is the bounded form of `next`.
///
/// One made while the pool runs goes on after [`Pool::close`], until [`Pool::join`]: the items
/// it has pulled but not handed to the pool by then fail with [`Error::PoolClosed`], and it
/// ends after them, pulling no more of its input.
///
/// Dropping it stops feeding the pool; tasks not yet started are skipped.
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    /// `None` once it has ended.
    input: Option<I>,
    /// Leave to go on after `close()` (`None` if made after it, or once the input ended).
    admission: Option<Admission>,
    builder: ChunkBuilder,
    stream: Arc<Stream<R>>,
    readahead: Readahead,
    yielded: usize,
    /// Of those, the errors.
    failed: usize,
    /// The input is pulled again once `yielded` reaches this.
    refill_at: usize,
    taken: Taken<R>,
    /// The run of values being yielded.
    run: std::vec::IntoIter<R>,
    /// An empty list to swap with the stream's (keeps its allocation).
    spare: Vec<(usize, Piece<R>)>,
}

impl<I: Iterator, R> std::fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("submitted", &self.builder.count())
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl<'p, I, R> IMap<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        pool: &'p Pool,
        input: I,
        entry: i64,
        readahead: Readahead,
        order: Order,
    ) -> Self {
        let stream = Arc::new(Stream {
            arrived: Mutex::new(Arrived {
                pieces: Vec::new(),
                served: Vec::new(),
                result_bytes: 0,
                wanted: Wanted::Nothing,
                waker: None,
            }),
            report: pool.report(
                match order {
                    Order::Input => "imap",
                    Order::Completion => "imap_unordered",
                },
                super::exact_len(&input),
                true,
            ),
            timed: readahead.grows(),
            cond: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        let taken = match order {
            Order::Input => Taken::InOrder(BTreeMap::new()),
            Order::Completion => Taken::AnyOrder(VecDeque::new()),
        };
        Self {
            pool,
            input: Some(input),
            admission: pool.admit(),
            builder: ChunkBuilder::new(stream.clone(), entry, readahead.chunksize()),
            stream,
            readahead,
            yielded: 0,
            failed: 0,
            refill_at: 0,
            taken,
            run: Vec::new().into_iter(),
            spare: Vec::new(),
        }
    }

    /// Encodes and submits input until the window is full or the input ends. A partly filled
    /// chunk is kept back (so chunks stay full) unless the input has ended or the consumer has
    /// nothing else to wait for.
    fn top_up(&mut self) {
        let Some(input) = &mut self.input else {
            self.refill_at = usize::MAX;
            return;
        };
        let mut window = self.readahead.window();
        let chunksize = self.readahead.chunksize();
        self.builder.set_chunksize(chunksize);
        let mut chunks = Vec::new();
        let mut ended = false;
        loop {
            let room = window.saturating_sub(self.builder.count() - self.yielded);
            if room == 0 {
                break;
            }
            let before = self.builder.count();
            match self.builder.fill(&mut input.by_ref().take(room)) {
                Some(chunk) => {
                    // Large items narrow the window at once, not at the next top-up.
                    self.readahead.item_bytes(chunk.payload.len() / chunk.len());
                    window = self.readahead.window();
                    chunks.push(chunk);
                }
                None => {
                    // The window is full, or the input ended short of it.
                    ended = self.builder.count() - before < room;
                    break;
                }
            }
        }
        let on_their_way = self.builder.count() - self.builder.pending();
        if ended || on_their_way <= self.yielded {
            chunks.extend(self.builder.finish());
        }
        if !chunks.is_empty() && !self.pool.submit_or_fail(chunks, self.admission.as_ref()) {
            // The pool takes no more work (joined, or closed before this `imap` was made): the
            // items pulled so far have failed with the reason, and the input is pulled no more
            // (on an endless one, failing them one by one would never end).
            if let Some(rest) = self.builder.finish() {
                self.pool.submit_or_fail(vec![rest], None);
            }
            ended = true;
        }
        if ended {
            self.input = None;
            self.stream.report.set_total(self.builder.count());
            // Its last chunks are in: the pool need not wait for it any more.
            self.admission = None;
        }
        let step = chunksize.max(window / 4);
        self.refill_at = match self.input {
            Some(_) => (self.builder.count() + step).saturating_sub(window),
            None => usize::MAX,
        };
    }

    /// Takes what has arrived, waiting until it holds the next piece to yield or `deadline`
    /// passes (as `wait` says; a task's waker is kept to be woken then instead); whether the
    /// piece is there. Whatever arrived meanwhile is taken either way (into `taken`, where the
    /// next call finds it): a wait that runs out loses nothing.
    fn take_arrived(&mut self, wait: Wait<'_>) -> bool {
        // Whatever we wait for must be on its way: hand over a partly filled chunk if need be.
        self.top_up();
        let wanted = match self.taken {
            Taken::InOrder(_) => Wanted::PieceAt(self.yielded),
            Taken::AnyOrder(_) => Wanted::AnyPiece,
        };
        let mut arrived = lock(&self.stream.arrived);
        let mut met = wanted.met_by(&arrived.pieces);
        let deadline = match wait {
            Wait::Until(deadline) => {
                // This thread waits now, not a task: a waker left by an earlier `poll_next`
                // must not take the wake-up meant for it.
                arrived.waker = None;
                deadline
            }
            Wait::Wake(waker) => {
                if !met {
                    arrived.wanted = wanted;
                    match &mut arrived.waker {
                        Some(kept) => kept.clone_from(waker),
                        none => *none = Some(waker.clone()),
                    }
                }
                // Do not sleep: take what is there.
                Some(Instant::now())
            }
        };
        while !met {
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
            };
            arrived.wanted = wanted;
            arrived = match left {
                None => self
                    .stream
                    .cond
                    .wait(arrived)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.stream
                        .cond
                        .wait_timeout(arrived, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            arrived.wanted = Wanted::Nothing;
            met = wanted.met_by(&arrived.pieces);
        }
        std::mem::swap(&mut arrived.pieces, &mut self.spare);
        let served = std::mem::take(&mut arrived.served);
        let result_bytes = std::mem::take(&mut arrived.result_bytes);
        drop(arrived);
        for (len, took) in served {
            self.readahead.served(len, took);
        }
        if result_bytes > 0 {
            self.readahead.item_bytes(result_bytes);
        }
        self.taken.extend(self.spare.drain(..));
        if self.input.is_some() {
            // The read-ahead may have grown: look again at the next item.
            self.refill_at = self.refill_at.min(self.yielded);
        }
        met
    }

    /// The next result, waiting for it until `deadline` (`None`: as long as it takes).
    /// `Some(Err(Error::Timeout))` if it passed first; `None` once every result was yielded.
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        match self.next_with(Wait::Until(deadline)) {
            Poll::Ready(next) => next,
            Poll::Pending => Some(Err(Error::Timeout)),
        }
    }

    /// The next result, or `Pending` if it is not there and `wait` ran out (or is a task's
    /// waker, kept to be woken once it is); `Ready(None)` once every result was yielded.
    fn next_with(&mut self, wait: Wait<'_>) -> Poll<Option<Result<R>>> {
        if self.yielded >= self.refill_at {
            self.top_up();
        }
        loop {
            if let Some(value) = self.run.next() {
                self.yielded += 1;
                return Poll::Ready(Some(Ok(value)));
            }
            if self.yielded == self.builder.count() {
                self.top_up();
                if self.yielded == self.builder.count() {
                    return Poll::Ready(None);
                }
            }
            match self.taken.next(self.yielded) {
                Some(Piece::Values(values)) => self.run = values.into_iter(),
                Some(Piece::Failed(error)) => {
                    self.yielded += 1;
                    self.failed += 1;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    if !self.take_arrived(wait) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// The next result, waiting at most `timeout` for it: the bounded form of
    /// [`next`](Iterator::next), like Python's `IMapIterator.next(timeout)`.
    ///
    /// - `None`: every result was yielded (the iterator is exhausted), as for `next`.
    /// - `Some(Err(Error::Timeout))`: the next result is not there yet. Nothing is lost: the
    ///   next call (`next` or `next_timeout`) goes on where this one stopped, and an `imap`
    ///   still yields in input order.
    /// - Otherwise, as `next`: `Some(Ok(value))`, or `Some(Err(e))` with that item's own error.
    ///
    /// The deadline bounds the wait for results; pulling the input (which happens inside
    /// `next` and `next_timeout`, as the window has room) takes as long as the input iterator
    /// takes.
    ///
    /// # Errors
    /// [`Error::Timeout`] as above; otherwise each item's own error, as for `next`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Error;
    ///
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let mut results = pool.imap(slow, [300, 1]);
    /// // Python: `it.next(timeout=0.01)` raises `TimeoutError`.
    /// assert!(matches!(results.next_timeout(Duration::from_millis(10)), Some(Err(Error::Timeout))));
    /// let later: Vec<u64> = std::iter::from_fn(|| results.next_timeout(Duration::from_secs(30)))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(later, [300, 1]); // in input order, nothing lost
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(parking::deadline(timeout))
    }
}

/// How long the consumer of an `imap` (this one, or a thread pool's) waits for the next result.
#[derive(Clone, Copy)]
pub(crate) enum Wait<'a> {
    /// Until this deadline (`None`: as long as it takes).
    Until(Option<Instant>),
    /// Not at all: this task's waker is woken once what it waits for arrives.
    #[cfg_attr(not(feature = "stream"), allow(dead_code))]
    Wake(&'a Waker),
}

/// The order in which an `imap` yields its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// The input's (`imap`).
    Input,
    /// As they complete (`imap_unordered`).
    Completion,
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}

/// With the cargo feature `stream`, an `imap` is also a [`futures_core::Stream`] of the same
/// items, for async code: polling it never blocks on results (the task is woken as the next
/// one arrives, by the thread that reads it), and each `poll_next` hands in input as `next`
/// does. Pulling the input happens inside `poll_next`, on the executor's thread: an input that
/// blocks blocks it.
///
/// # Examples
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// #     }
/// #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         match f.as_mut().poll(&mut cx) {
/// #             std::task::Poll::Ready(v) => return v,
/// #             std::task::Poll::Pending => std::thread::park(),
/// #         }
/// #     }
/// # }
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
///
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let total = block_on(async {
///     let mut squares = pool.imap(square, 1..=100);
///     let mut total = 0;
///     // With `futures::StreamExt` or `tokio_stream::StreamExt`: `squares.next().await`.
///     while let Some(x) = poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
///         total += x?;
///     }
///     Ok::<_, multiproc::Error>(total)
/// })?;
/// assert_eq!(total, 338_350);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(feature = "stream")]
impl<I, R> futures_core::Stream for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().next_with(Wait::Wake(cx.waker()))
    }
}

// Nothing of an `imap` is ever pinned in place (no field is projected): moving it is fine.
impl<I: Iterator, R> Unpin for IMap<'_, I, R> {}

impl<I: Iterator, R> Drop for IMap<'_, I, R> {
    fn drop(&mut self) {
        self.stream.abandoned.store(true, Ordering::Relaxed);
        if self.input.is_some() || self.yielded < self.builder.count() {
            self.stream.report.abandon();
        }
        self.stream.report.ended(self.yielded, self.failed);
    }
}
