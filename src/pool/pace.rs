//! Pacing: how many chunks of a call each worker may hold at once.
//!
//! One chunk at a time per worker balances best: whoever is free takes the next one. But a
//! worker that finishes a tiny chunk would then wait for the supervisor to hand it another,
//! which costs as much as the chunk. So chunks known to be fast are queued a few deep, and
//! very fast ones deeper, about [`QUEUED_WORK`] of work per worker: one wake-up of a worker then
//! serves many chunks, while the imbalance at the end of a call stays that small.
//!
//! What is written to a worker's socket cannot be taken back for an idle one, so a call is
//! queued deep only on the strength of its own timing, never an earlier call's: its chunks may
//! be far slower. The measure is the slowest chunk of the current call, forgotten slowly (an
//! eighth per chunk), not the mean: queueing deep behind a slow chunk is what costs, and the
//! tasks of one call are often uneven.
//!
//! Slow chunks of a call whose own chunks were all timed under [`QUEUE_BEHIND_BELOW`] are
//! queued one behind the chunk a worker runs, too, while the items waiting behind it are at
//! least as many as it holds for every worker ([`Pace::depth`]'s `waiting`): every worker then
//! still finds as much waiting when it is done, and none waits for a round trip between two
//! chunks (a large `map` cuts its input into a dozen or more). Near the end of the queue, one
//! at a time again, so that the end of a call waits behind no chunk queued on a busy worker;
//! and never for a call not timed yet (an `apply` of unknown length behind a long one).

use std::time::Duration;

/// Chunks slower than this are sent one at a time per worker; faster ones a few deep.
const SLOW_CHUNK: Duration = Duration::from_millis(1);
const FAST_DEPTH: usize = 4;
/// About how much work very fast chunks are queued for each worker.
const QUEUED_WORK: Duration = Duration::from_micros(250);
const MAX_DEPTH: usize = 64;
/// Chunks of a call that must have been timed before it is queued deeper than a few.
const SAMPLES: u32 = 16;
/// Slow chunks are queued one behind another only if the call's own chunks were timed, all
/// under this: a round trip between two chunks (some 100 µs) is worth saving for those, and a
/// chunk queued behind one far slower, or of unknown length, could wait long while another
/// worker idles.
const QUEUE_BEHIND_BELOW: std::time::Duration = std::time::Duration::from_millis(20);

/// How fast chunks are served (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// The call (see `Chunk::call`) whose chunks were timed last, and how many of them.
    call: u64,
    samples: u32,
    slowest: Option<Duration>,
}

impl Pace {
    /// A chunk of `call` took `took` to serve.
    pub(crate) fn record(&mut self, call: u64, took: Duration) {
        match self.slowest {
            Some(t) if self.call == call => {
                self.slowest = Some(took.max(t * 7 / 8));
                self.samples = self.samples.saturating_add(1);
            }
            _ => (self.call, self.samples, self.slowest) = (call, 1, Some(took)),
        }
    }

    /// How many chunks each worker may hold when a chunk of `call` with `len` items is handed
    /// out, with `waiting` other items still waiting behind it for `workers` workers: one while
    /// chunks are slow (or not timed yet), or two while `waiting` is at least `len` for every
    /// worker; a few when the last ones timed were fast; and once enough chunks of `call`
    /// itself were timed and all were fast, enough for about [`QUEUED_WORK`] of work.
    pub(crate) fn depth(&self, call: u64, len: usize, waiting: usize, workers: usize) -> usize {
        let timed = self.timed_depth(call);
        let own_moderate =
            self.call == call && self.slowest.is_some_and(|t| t < QUEUE_BEHIND_BELOW);
        if timed == 1 && own_moderate && waiting >= workers.saturating_mul(len) {
            2
        } else {
            timed
        }
    }

    fn timed_depth(&self, call: u64) -> usize {
        let own = self
            .slowest
            .filter(|_| self.call == call && self.samples >= SAMPLES);
        if let Some(t) = own.filter(|t| *t < SLOW_CHUNK) {
            let deep = QUEUED_WORK.as_nanos() / t.as_nanos().max(1);
            return deep.clamp(FAST_DEPTH as u128, MAX_DEPTH as u128) as usize;
        }
        match self.slowest {
            Some(t) if t < SLOW_CHUNK => FAST_DEPTH,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    fn timed(call: u64, took: Duration, times: u32) -> Pace {
        let mut pace = Pace::default();
        (0..times).for_each(|_| pace.record(call, took));
        pace
    }

    #[test]
    fn untimed_and_slow_calls_go_one_chunk_at_a_time() {
        assert_eq!(Pace::default().depth(1, 1, 0, 2), 1);
        assert_eq!(timed(1, US(5_000), 100).depth(1, 1, 0, 2), 1);
    }

    #[test]
    fn fast_chunks_of_the_same_call_are_queued_for_about_a_quarter_millisecond() {
        assert_eq!(timed(1, US(10), SAMPLES).depth(1, 1, 0, 2), 25);
        assert_eq!(timed(1, US(1), SAMPLES).depth(1, 1, 0, 2), MAX_DEPTH);
        assert_eq!(timed(1, US(200), SAMPLES).depth(1, 1, 0, 2), FAST_DEPTH);
        // Too few samples yet: only a few deep.
        assert_eq!(timed(1, US(10), SAMPLES - 1).depth(1, 1, 0, 2), FAST_DEPTH);
    }

    #[test]
    fn another_calls_timing_never_queues_a_call_deep() {
        let pace = timed(1, US(10), 100);
        assert_eq!(pace.depth(2, 1, 0, 2), FAST_DEPTH, "a few, not 25");
        assert_eq!(timed(1, US(5_000), 100).depth(2, 1, 0, 2), 1);
    }

    #[test]
    fn slow_chunks_queue_one_behind_another_while_every_worker_has_as_much_waiting() {
        let slow = timed(1, US(5_000), 100);
        assert_eq!(slow.depth(1, 1, 4, 4), 2);
        assert_eq!(slow.depth(1, 1, 9, 2), 2);
        assert_eq!(slow.depth(1, 1, 3, 4), 1, "near the end, one at a time");
        assert_eq!(slow.depth(1, 5, 10, 2), 2);
        assert_eq!(
            slow.depth(1, 5, 9, 2),
            1,
            "a large chunk needs as much behind it"
        );
        assert_eq!(Pace::default().depth(7, 1, 0, 2), 1);
        // Never for a call not timed yet: five `apply`s, the first long, the others not (the
        // third must not wait behind the first while the second worker idles).
        assert_eq!(Pace::default().depth(7, 1, 2, 2), 1, "untimed");
        assert_eq!(slow.depth(2, 1, 9, 2), 1, "another call's timing");
        // Nor behind chunks that take long.
        assert_eq!(timed(1, US(30_000), 3).depth(1, 1, 9, 2), 1);
        // Fast chunks keep their own depth.
        assert_eq!(timed(1, US(10), SAMPLES).depth(1, 1, 100, 2), 25);
    }

    #[test]
    fn the_slowest_chunk_counts_and_is_forgotten_slowly() {
        let mut pace = timed(1, US(10), SAMPLES);
        pace.record(1, US(800));
        assert_eq!(
            pace.depth(1, 1, 0, 2),
            FAST_DEPTH,
            "one slow chunk keeps queues shallow"
        );
        // An eighth forgotten per chunk: 800 µs needs about 30 fast chunks to fall below 10.
        (0..20).for_each(|_| pace.record(1, US(10)));
        assert!(pace.depth(1, 1, 0, 2) < 25);
        (0..20).for_each(|_| pace.record(1, US(10)));
        assert_eq!(pace.depth(1, 1, 0, 2), 25);
        // A new call starts over.
        pace.record(2, US(5_000));
        assert_eq!(pace.depth(2, 1, 0, 2), 1);
    }
}
