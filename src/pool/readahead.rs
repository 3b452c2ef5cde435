//! Read-ahead: how large an `imap`'s chunks are, and how many of its items may be in flight.
//!
//! An `imap` pulls its input lazily, so it cannot size chunks from the input's length as `map`
//! does, and it must bound how far it reads ahead of its consumer (its *window*: items pulled
//! and not yet yielded, whether queued, running, or waiting for their turn).
//!
//! With automatic chunks, the first chunks hold one item each — a stream of slow items is
//! spread one at a time, as Python's default — and chunks grow while they are served fast: the
//! next chunk is sized for about [`TARGET`] of work, judged by how long the supervisor took to
//! serve the chunks so far (`Sink::served`). A chunk served within twice the target only lets
//! the size grow, at most [`GROWTH`]-fold over that chunk, so a few round trips reach full
//! size; only a chunk that took longer shrinks it, at once. (Small chunks look slow per item,
//! as each chunk costs a round trip: a tail, or chunks sent before the last growth, must not
//! shrink the size.)
//!
//! The window is [`CHUNKS_PER_WORKER`] chunks per worker: enough to keep every worker busy
//! while the consumer catches up, yet bounded in items ([`MAX_CHUNK`]) and in bytes: the
//! largest encoded size of an item seen (argument or result) bounds the window to about
//! [`MAX_WINDOW_BYTES`]. Explicit chunk sizes keep their size, with a window of at least
//! [`FIXED_MIN_WINDOW`] items, since small explicit chunks need many in flight to keep the
//! workers fed.
//!
//! Everything here is arithmetic on what the caller reports; `imap.rs` feeds it.

use std::time::Duration;

/// About how much work an automatic chunk is sized for.
const TARGET: Duration = Duration::from_micros(500);
/// The most an automatic chunk grows on the strength of one timed chunk.
const GROWTH: usize = 4;
/// The most items in an automatic chunk.
const MAX_CHUNK: usize = 1 << 15;
/// Chunks in flight per worker.
const CHUNKS_PER_WORKER: usize = 4;
/// The least window with an explicit chunk size, in items.
const FIXED_MIN_WINDOW: usize = 16384;
/// About the most bytes (encoded, per item the larger of argument and result) in flight.
const MAX_WINDOW_BYTES: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sizing {
    /// The caller's chunk size.
    Fixed(usize),
    /// Grown from 1 while chunks are fast, up to `cap` items.
    Growing { cap: usize },
}

/// An `imap`'s chunk size and window (see the module docs).
#[derive(Debug)]
pub(crate) struct Readahead {
    sizing: Sizing,
    processes: usize,
    /// The automatic chunk size, before the bounds on items and bytes.
    size: usize,
    /// The largest encoded size of an item seen, forgotten slowly (an eighth per report).
    item_bytes: usize,
}

impl Readahead {
    /// Chunks of `chunksize` items, spread over `processes` workers.
    pub(crate) fn fixed(chunksize: usize, processes: usize) -> Self {
        Self::new(Sizing::Fixed(chunksize.max(1)), processes)
    }

    /// Automatic chunks, never larger than `cap` items (for an input of known length, the
    /// size `map` would use, so that its last chunks still spread over the workers).
    pub(crate) fn growing(cap: usize, processes: usize) -> Self {
        Self::new(Sizing::Growing { cap: cap.max(1) }, processes)
    }

    fn new(sizing: Sizing, processes: usize) -> Self {
        Self {
            sizing,
            processes: processes.max(1),
            size: 1,
            item_bytes: 1,
        }
    }

    /// Whether chunk sizes follow the chunks' timings (see [`served`](Self::served)).
    pub(crate) fn grows(&self) -> bool {
        matches!(self.sizing, Sizing::Growing { .. })
    }

    /// A chunk of `len` items took `took` to serve.
    pub(crate) fn served(&mut self, len: usize, took: Duration) {
        let len = len.max(1);
        let ideal = (len as u128 * TARGET.as_nanos() / took.as_nanos().max(1))
            .min(MAX_CHUNK as u128) as usize;
        self.size = if took > TARGET * 2 {
            self.size.min(ideal).max(1)
        } else {
            self.size.max(ideal.min(len * GROWTH))
        };
    }

    /// An item was seen to take `bytes` encoded (an argument or a result; an average over a
    /// chunk will do).
    pub(crate) fn item_bytes(&mut self, bytes: usize) {
        self.item_bytes = bytes.max(self.item_bytes - self.item_bytes / 8).max(1);
    }

    /// Items per chunk, for the next chunk.
    pub(crate) fn chunksize(&self) -> usize {
        match self.sizing {
            Sizing::Fixed(n) => n,
            Sizing::Growing { cap } => {
                let per_chunk_bytes = MAX_WINDOW_BYTES / (self.processes * CHUNKS_PER_WORKER);
                let by_bytes = per_chunk_bytes / self.item_bytes;
                self.size.min(cap).min(by_bytes).max(1)
            }
        }
    }

    /// How many items may be in flight (pulled and not yet yielded). At least one chunk per
    /// worker, whatever the bytes.
    pub(crate) fn window(&self) -> usize {
        let chunk = self.chunksize();
        let mut items = chunk
            .saturating_mul(self.processes)
            .saturating_mul(CHUNKS_PER_WORKER);
        if let Sizing::Fixed(_) = self.sizing {
            items = items.max(FIXED_MIN_WINDOW);
        }
        items
            .min(MAX_WINDOW_BYTES / self.item_bytes)
            .max(chunk.saturating_mul(self.processes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    /// Serves a chunk of the current size at `per_item` each (plus `overhead` per chunk) until
    /// the size settles; returns the sizes it went through.
    fn ramp(r: &mut Readahead, per_item: Duration, overhead: Duration) -> Vec<usize> {
        let mut sizes = vec![r.chunksize()];
        for _ in 0..30 {
            let n = r.chunksize();
            r.served(n, per_item * n as u32 + overhead);
            if r.chunksize() == n {
                break;
            }
            sizes.push(r.chunksize());
        }
        sizes
    }

    #[test]
    fn automatic_chunks_start_at_one_and_grow_fourfold_while_fast() {
        let mut r = Readahead::growing(usize::MAX, 2);
        assert_eq!(r.chunksize(), 1);
        assert_eq!(r.window(), 2 * CHUNKS_PER_WORKER);
        let sizes = ramp(&mut r, Duration::from_nanos(10), US(50));
        assert_eq!(&sizes[..4], [1, 4, 16, 64]);
        // Settles near half a millisecond of work per chunk, within a handful of round trips.
        let last = *sizes.last().unwrap();
        assert_eq!(last, MAX_CHUNK, "{sizes:?}");
        assert!(sizes.len() <= 10, "{sizes:?}");
        assert_eq!(r.window(), MAX_CHUNK * 2 * CHUNKS_PER_WORKER);
    }

    #[test]
    fn slow_items_keep_chunks_of_one() {
        let mut r = Readahead::growing(usize::MAX, 2);
        r.served(1, US(5_000));
        assert_eq!(r.chunksize(), 1);
        // Items of a tenth of a millisecond: about five per chunk.
        let mut r = Readahead::growing(usize::MAX, 2);
        assert_eq!(*ramp(&mut r, US(100), US(0)).last().unwrap(), 5);
    }

    #[test]
    fn a_slow_chunk_shrinks_at_once_and_stale_fast_ones_never_do() {
        let mut r = Readahead::growing(usize::MAX, 2);
        ramp(&mut r, Duration::from_nanos(10), US(50));
        assert_eq!(r.chunksize(), MAX_CHUNK);
        // A small chunk sent before the growth comes back: no change, though its round trip
        // makes each of its items look slow.
        r.served(16, US(40));
        r.served(MAX_CHUNK, US(800));
        assert_eq!(r.chunksize(), MAX_CHUNK);
        // Items got slow: 32 Ki items took 32 ms, so about 500 fit half a millisecond.
        r.served(MAX_CHUNK, US(32_000));
        assert_eq!(r.chunksize(), 512);
        r.served(512, US(10_000));
        assert_eq!(r.chunksize(), 25);
    }

    #[test]
    fn an_input_of_known_length_caps_the_chunks() {
        let mut r = Readahead::growing(100, 2);
        ramp(&mut r, Duration::from_nanos(10), US(50));
        assert_eq!(r.chunksize(), 100);
        assert_eq!(r.window(), 100 * 2 * CHUNKS_PER_WORKER);
    }

    #[test]
    fn large_items_bound_the_window_in_bytes() {
        let mut r = Readahead::growing(usize::MAX, 2);
        ramp(&mut r, Duration::from_nanos(10), US(50));
        r.item_bytes(1 << 20);
        // 64 MiB over 2 workers, 4 chunks each: 8 items of 1 MiB per chunk.
        assert_eq!(r.chunksize(), 8);
        assert_eq!(r.window(), 64);
        // Forgotten slowly once items are small again.
        r.item_bytes(8);
        assert_eq!(r.chunksize(), 9);
        // Explicit chunks keep their size, but the window still holds at least a chunk each.
        let mut r = Readahead::fixed(4, 2);
        assert_eq!(r.window(), FIXED_MIN_WINDOW);
        r.item_bytes(1 << 20);
        assert_eq!(r.window(), 64);
        r.item_bytes(1 << 30);
        assert_eq!((r.chunksize(), r.window()), (4, 8));
    }

    #[test]
    fn explicit_chunks_never_change_size() {
        let mut r = Readahead::fixed(64, 2);
        r.served(64, Duration::from_nanos(640));
        r.served(64, US(640_000));
        assert_eq!(r.chunksize(), 64);
        assert_eq!(r.window(), FIXED_MIN_WINDOW);
        assert_eq!(
            Readahead::fixed(4096, 2).window(),
            4096 * 2 * CHUNKS_PER_WORKER
        );
    }
}
