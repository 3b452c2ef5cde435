//! `imap` and `imap_unordered` over threads: lazy iterators of each item's own result.
//!
//! The input is pulled on the consumer's thread, inside `next()`, a chunk at a time and only
//! while fewer than a window's worth of items are in flight (four chunks per thread), so an
//! endless iterator works and memory stays flat. Each chunk is a job of its own
//! (`job.rs`), which delivers all its items' outcomes at once into the [`Stream`]; the
//! consumer takes them from there in one lock round and yields them from its own buffer, in
//! input order (`imap`) or chunk by chunk as they completed (`imap_unordered`).
//!
//! Automatic chunks start at one item, so that slow items are spread one at a time, and grow
//! (at most doubling) while chunks come back quickly, up to 4 096 items, so that tiny items
//! cost a queue operation per chunk rather than per item.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::Pool;
use super::job::{Deliver, Job, Piece, Work};
use super::worker::Admission;
use crate::error::{Error, Result};
use crate::pool::{Progress, Wait, lock};

/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 4096;
/// How long an automatic chunk should take, from hand-in to delivery.
const CHUNK_TIME: Duration = Duration::from_micros(200);
/// Chunks in flight per thread.
const CHUNKS_PER_THREAD: usize = 4;

/// A chunk's outcomes.
struct Delivered<R> {
    first: usize,
    outcomes: Vec<Result<R>>,
    took: Duration,
}

/// Where an `imap`'s chunks deliver their outcomes.
pub(super) struct Stream<R> {
    arrived: Mutex<Arrived<R>>,
    /// The call's progress bar, if the pool draws them (its chunks' jobs advance it).
    progress: Option<Arc<Progress>>,
    cond: Condvar,
    /// The `imap` was dropped: chunks not started yet are skipped.
    unwanted: AtomicBool,
}

struct Arrived<R> {
    chunks: Vec<Delivered<R>>,
    /// Whether the consumer sleeps, waiting for a chunk.
    waiting: bool,
    /// The task that polls the `imap` as a `Stream`, while it waits for a chunk.
    waker: Option<Waker>,
}

impl<R> Stream<R> {
    pub(super) fn deliver(&self, first: usize, outcomes: Vec<Result<R>>, took: Duration) {
        let mut arrived = lock(&self.arrived);
        arrived.chunks.push(Delivered {
            first,
            outcomes,
            took,
        });
        let wake = arrived.waiting;
        let waker = arrived.waker.take();
        drop(arrived);
        if wake {
            self.cond.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(super) fn unwanted(&self) -> bool {
        self.unwanted.load(Ordering::Relaxed)
    }
}

/// In which order results are yielded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    Input,
    Completion,
}

/// How large chunks are.
#[derive(Clone, Copy, Debug)]
pub(super) enum Chunks {
    Fixed(usize),
    /// Sized by how fast chunks come back; the current size.
    Auto(usize),
}

/// Makes the job of a chunk: its items, the index of the first, where it delivers.
type MakeJob<'p, T, R> =
    Box<dyn Fn(Vec<T>, usize, Arc<Stream<R>>) -> Arc<dyn Work> + Send + Sync + 'p>;

/// A lazy iterator over a thread pool's results: what [`Pool::imap`] and
/// [`Pool::imap_unordered`] return. Each item is that task's own `Result`, so one failure
/// loses nothing else; [`next_timeout`](Self::next_timeout) is the bounded form of `next`.
///
/// One made while the pool runs goes on after [`Pool::close`], until [`Pool::join`]: the items
/// it has pulled but not handed to the pool by then fail with [`Error::PoolClosed`], and it
/// ends after them, pulling no more of its input.
///
/// Dropping it stops feeding the pool; chunks not yet started are skipped.
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    /// `None` once it has ended.
    input: Option<I>,
    admission: Option<Admission>,
    make: MakeJob<'p, I::Item, R>,
    stream: Arc<Stream<R>>,
    order: Order,
    chunks: Chunks,
    /// Items handed in so far (the index of the next).
    pulled: usize,
    yielded: usize,
    /// Chunks taken from the stream and not yet yielded: by first item, or as they came.
    in_order: BTreeMap<usize, Vec<Result<R>>>,
    as_came: VecDeque<Vec<Result<R>>>,
    /// The chunk being yielded.
    run: std::vec::IntoIter<Result<R>>,
}

impl<I: Iterator, R> std::fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("submitted", &self.pulled)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl<'p, I, R> IMap<'p, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    pub(super) fn new<F>(pool: &'p Pool, input: I, f: F, chunks: Chunks, order: Order) -> Self
    where
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let make: MakeJob<'p, I::Item, R> = Box::new(move |items, first, stream| {
            let f = f.clone();
            let progress = stream.progress.clone();
            let deliver = Deliver::Each {
                stream,
                born: Instant::now(),
            };
            Job::new(move |x| f(x), items, first, deliver, progress)
        });
        let call = match order {
            Order::Input => "imap",
            Order::Completion => "imap_unordered",
        };
        let len = crate::pool::exact_len(&input);
        IMap {
            pool,
            input: Some(input),
            admission: pool.shared.admit(),
            make,
            stream: Arc::new(Stream {
                progress: pool.bar(call, len),
                arrived: Mutex::new(Arrived {
                    chunks: Vec::new(),
                    waiting: false,
                    waker: None,
                }),
                cond: Condvar::new(),
                unwanted: AtomicBool::new(false),
            }),
            order,
            chunks,
            pulled: 0,
            yielded: 0,
            in_order: BTreeMap::new(),
            as_came: VecDeque::new(),
            run: Vec::new().into_iter(),
        }
    }

    /// Like `next`, waiting at most `timeout` for the next result.
    ///
    /// Returns `Some(Err(Error::Timeout))` if it is not there in time (nothing is lost: call
    /// again), `None` once every result was yielded.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Error, dummy::Pool};
    ///
    /// let pool = Pool::new(1)?;
    /// let mut naps = pool.imap(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [300]);
    /// assert!(matches!(naps.next_timeout(Duration::from_millis(10)), Some(Err(Error::Timeout))));
    /// assert!(matches!(naps.next_timeout(Duration::from_secs(30)), Some(Ok(()))));
    /// assert!(naps.next().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(crate::mem::parking::deadline(timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        match self.next_with(Wait::Until(deadline)) {
            Poll::Ready(next) => next,
            Poll::Pending => Some(Err(Error::Timeout)),
        }
    }

    /// The next result, or `Pending` if it is not there and `wait` ran out (or is a task's
    /// waker, kept to be woken once a chunk arrives); `Ready(None)` once every result was
    /// yielded.
    fn next_with(&mut self, wait: Wait<'_>) -> Poll<Option<Result<R>>> {
        loop {
            if let Some(outcome) = self.run.next() {
                self.yielded += 1;
                return Poll::Ready(Some(outcome));
            }
            self.refill();
            self.take_arrived(None);
            let next = match self.order {
                Order::Input => self.in_order.remove(&self.yielded),
                Order::Completion => self.as_came.pop_front(),
            };
            if let Some(chunk) = next {
                self.run = chunk.into_iter();
                continue;
            }
            if self.pulled == self.yielded && self.input.is_none() {
                return Poll::Ready(None);
            }
            if !self.take_arrived(Some(wait)) {
                return Poll::Pending;
            }
        }
    }

    /// Hands in chunks of the input while the window has room.
    fn refill(&mut self) {
        let window = self.chunk_size() * self.pool.processes() * CHUNKS_PER_THREAD;
        while self.pulled - self.yielded < window {
            let size = self.chunk_size();
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let items: Vec<I::Item> = input.by_ref().take(size).collect();
            let len = items.len();
            if len == 0 {
                self.end_input();
                return;
            }
            let job = (self.make)(items, self.pulled, self.stream.clone());
            self.pulled += len;
            let taken = self
                .pool
                .shared
                .submit(Piece::cover(job, len, len), self.admission.is_some());
            if !taken || len < size {
                self.end_input();
            }
        }
    }

    fn end_input(&mut self) {
        self.input = None;
        self.admission = None;
        if let Some(progress) = &self.stream.progress {
            progress.set_total(self.pulled);
        }
    }

    fn chunk_size(&self) -> usize {
        match self.chunks {
            Chunks::Fixed(n) => n.max(1),
            Chunks::Auto(n) => n,
        }
    }

    /// Moves the chunks that arrived into the consumer's buffers; with `wait`, waits for one
    /// first as it says (a task's waker is kept, to be woken when one comes). Returns false if
    /// none came in time.
    fn take_arrived(&mut self, wait: Option<Wait<'_>>) -> bool {
        let mut arrived = lock(&self.stream.arrived);
        let came = match wait {
            None => true,
            Some(Wait::Until(deadline)) => {
                arrived.waiting = true;
                let came;
                (arrived, came) = crate::pool::wait_while_until(
                    &self.stream.cond,
                    arrived,
                    deadline,
                    |a: &Arrived<R>| a.chunks.is_empty(),
                );
                arrived.waiting = false;
                came
            }
            Some(Wait::Wake(waker)) => {
                let came = !arrived.chunks.is_empty();
                if !came {
                    arrived.waker = Some(waker.clone());
                }
                came
            }
        };
        let chunks = std::mem::take(&mut arrived.chunks);
        drop(arrived);
        for chunk in chunks {
            if let Chunks::Auto(size) = &mut self.chunks {
                *size = next_auto_size(*size, chunk.outcomes.len(), chunk.took);
            }
            match self.order {
                Order::Input => drop(self.in_order.insert(chunk.first, chunk.outcomes)),
                Order::Completion => self.as_came.push_back(chunk.outcomes),
            }
        }
        came
    }
}

/// The next automatic chunk size, after a chunk of `len` items took `took`: what would take
/// [`CHUNK_TIME`] at that pace, at most twice the current size.
fn next_auto_size(current: usize, len: usize, took: Duration) -> usize {
    let per_item = took.as_nanos().max(1) / len.max(1) as u128;
    let fits = (CHUNK_TIME.as_nanos() / per_item.max(1)) as usize;
    fits.clamp(1, (current * 2).min(MAX_AUTO_CHUNK))
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}

/// With the cargo feature `stream`, a thread pool's `imap` is a [`futures_core::Stream`] too,
/// as a process pool's is (see [`crate::IMap`]).
#[cfg(feature = "stream")]
impl<I, R> futures_core::Stream for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<R>>> {
        self.get_mut().next_with(Wait::Wake(cx.waker()))
    }
}

// Nothing of an `imap` is ever pinned in place (no field is projected): moving it is fine.
impl<I: Iterator, R> Unpin for IMap<'_, I, R> {}

impl<I: Iterator, R> Drop for IMap<'_, I, R> {
    fn drop(&mut self) {
        self.stream.unwanted.store(true, Ordering::Relaxed);
        if let Some(progress) = &self.stream.progress {
            progress.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_chunks_grow_for_quick_items_and_stay_small_for_slow_ones() {
        let quick = Duration::from_nanos(20);
        assert_eq!(next_auto_size(1, 1, quick), 2);
        assert_eq!(next_auto_size(2048, 2048, quick * 2048), MAX_AUTO_CHUNK);
        assert_eq!(next_auto_size(8, 8, Duration::from_millis(800)), 1);
        assert_eq!(next_auto_size(64, 64, quick * 64 * 100), 100);
    }
}
