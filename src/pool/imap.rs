//! `imap` and `imap_unordered`: lazy iterators over a pool's results.
//!
//! The input iterator is pulled on the consumer's thread, inside `next()`, and only while fewer
//! than `window` items are in flight — so an endless iterator works and memory stays flat, unlike
//! CPython, which reads the whole input first. Ordered results wait in a small map until their
//! turn; unordered ones are yielded as they arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use super::job::{ChunkBuilder, Sink, decode_outcomes};
use super::result::lock;
use crate::error::{Error, Result};

struct Arrived<R> {
    in_order: HashMap<usize, Result<R>>,
    any_order: VecDeque<Result<R>>,
}

/// Where an `imap`'s outcomes arrive.
pub(crate) struct Stream<R> {
    ordered: bool,
    arrived: Mutex<Arrived<R>>,
    cond: Condvar,
    abandoned: AtomicBool,
}

impl<R> Stream<R> {
    fn push(&self, arrived: &mut Arrived<R>, index: usize, value: Result<R>) {
        if self.ordered {
            arrived.in_order.insert(index, value);
        } else {
            arrived.any_order.push_back(value);
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Stream<R> {
    fn deliver(&self, first: usize, count: usize, bytes: &[u8]) {
        // Decode first, publish after: a panicking `Deserialize` leaves nothing half-delivered.
        let mut decoded = Vec::with_capacity(count);
        decode_outcomes::<R>(first, count, bytes, |i, v| decoded.push((i, v)));
        let mut arrived = lock(&self.arrived);
        for (i, v) in decoded {
            self.push(&mut arrived, i, v);
        }
        drop(arrived);
        self.cond.notify_all();
    }

    fn fail(&self, index: usize, error: Error) {
        let mut arrived = lock(&self.arrived);
        self.push(&mut arrived, index, Err(error));
        drop(arrived);
        self.cond.notify_all();
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// A lazy iterator over a pool's results: what [`Pool::imap`] and [`Pool::imap_unordered`]
/// return. Each item is that task's own `Result`, so one failure loses nothing else.
///
/// Dropping it stops feeding the pool; tasks not yet started are skipped.
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    input: std::iter::Fuse<I>,
    builder: ChunkBuilder,
    stream: Arc<Stream<R>>,
    window: usize,
    /// Items handed to the pool (a partly filled chunk is not handed over yet).
    submitted: usize,
    yielded: usize,
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
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let stream = Arc::new(Stream {
            ordered,
            arrived: Mutex::new(Arrived {
                in_order: HashMap::new(),
                any_order: VecDeque::new(),
            }),
            cond: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        // Enough in flight to keep every worker a few chunks deep (the supervisor's queue
        // covers the round trips), yet bounded whatever the input's length.
        let window = (chunksize * pool.processes() * 8).max(1024);
        Self {
            pool,
            input: input.fuse(),
            builder: ChunkBuilder::new(stream.clone(), entry, chunksize),
            stream,
            window,
            submitted: 0,
            yielded: 0,
        }
    }

    /// Encodes and submits input until `window` items are in flight or the input ends. A partly
    /// filled chunk is kept back (so chunks stay full) unless the input has ended or the
    /// consumer has nothing else to wait for.
    fn top_up(&mut self) {
        let mut chunks = Vec::new();
        let mut ended = false;
        while self.builder.count() - self.yielded < self.window {
            match self.input.next() {
                Some(item) => chunks.extend(self.builder.push(&item)),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let submitted_after = self.submitted + chunks.iter().map(|c| c.len()).sum::<usize>();
        if ended || submitted_after <= self.yielded {
            chunks.extend(self.builder.finish());
        }
        if !chunks.is_empty() {
            self.submitted += chunks.iter().map(|c| c.len()).sum::<usize>();
            self.pool.submit_or_fail(chunks);
        }
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.top_up();
        if self.yielded == self.builder.count() {
            return None;
        }
        let index = self.yielded;
        let mut arrived = lock(&self.stream.arrived);
        loop {
            let got = if self.stream.ordered {
                arrived.in_order.remove(&index)
            } else {
                arrived.any_order.pop_front()
            };
            if let Some(value) = got {
                self.yielded += 1;
                return Some(value);
            }
            arrived = self
                .stream
                .cond
                .wait(arrived)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<I: Iterator, R> Drop for IMap<'_, I, R> {
    fn drop(&mut self) {
        self.stream.abandoned.store(true, Ordering::Relaxed);
    }
}
