//! Starting workers when the machine pushes back: when to try again, and when waiting work
//! gives up.
//!
//! A worker may fail to start (no descriptor, no process slot, no memory) or die before it can
//! serve (an OOM kill, a kill storm, a crash in the initializer). None of that need last, so no
//! failed start is final: the pool tries again after a back-off that doubles from
//! [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], for as long as it wants workers, and the first
//! worker that is ready to serve ends the run of failures.
//!
//! Work does not wait for ever meanwhile. An *outage* begins with a failure while no worker
//! serves (failures beside a serving worker only slow the retries down); once it has lasted
//! the pool's start timeout, and no worker is alive at all (a worker still starting may yet
//! serve: slow is not failed), waiting work fails with `Error::Spawn` naming the last cause —
//! but only work that has seen a failure of the outage since it arrived ([`Backlog`] keeps
//! count). New work brings the next attempt forward, once per failure, so that a call made
//! just after the cause went away is served, not failed on old news.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::job::Chunk;

/// The wait after the first failed start; it doubles with each failure after that.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts: a pool recovers within this of its cause going away.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The run of failed starts the pool is in, if any.
#[derive(Debug)]
struct Streak {
    failures: u32,
    last_failure: Instant,
    cause: String,
    /// Whether new work brought the next attempt forward.
    hurried: bool,
    /// Whether the last failure was of such an attempt: then new work waits for the next
    /// attempt the back-off allows.
    hurry_spent: bool,
}

/// When to try starting a worker, and what waiting work is told when none can be started.
#[derive(Debug)]
pub(crate) struct Starts {
    /// How long an outage may last before waiting work fails.
    patience: Duration,
    next_try: Instant,
    streak: Option<Streak>,
    /// When the outage began: the first failure with no worker serving.
    outage_since: Option<Instant>,
}

impl Starts {
    pub(crate) fn new(patience: Duration, now: Instant) -> Self {
        Self {
            patience,
            next_try: now,
            streak: None,
            outage_since: None,
        }
    }

    /// Whether an attempt to start a worker is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next_try
    }

    /// When the next attempt is due.
    pub(crate) fn next_try(&self) -> Instant {
        self.next_try
    }

    /// A worker could not be started, or died before it could serve, because of `cause`: the
    /// next attempt backs off.
    pub(crate) fn failed(&mut self, now: Instant, cause: String) {
        let streak = self.streak.get_or_insert(Streak {
            failures: 0,
            last_failure: now,
            cause: String::new(),
            hurried: false,
            hurry_spent: false,
        });
        streak.failures += 1;
        streak.last_failure = now;
        streak.cause = cause;
        streak.hurry_spent = std::mem::take(&mut streak.hurried);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (streak.failures - 1).min(16));
        self.next_try = now + backoff.min(MAX_BACKOFF);
    }

    /// The failure just noted left no worker serving: an outage begins, unless one is on.
    pub(crate) fn stranded(&mut self, now: Instant) {
        self.outage_since.get_or_insert(now);
    }

    /// A worker is ready to serve: the run of failures, and any outage, is over.
    pub(crate) fn succeeded(&mut self) {
        self.streak = None;
        self.outage_since = None;
    }

    /// New work arrived: after a failure, try again soon (at most [`FIRST_BACKOFF`] after it),
    /// so that the work is decided by a fresh attempt. Not after a failed attempt that was
    /// itself brought forward: a stream of calls may at most double the attempts the
    /// back-off allows, never turn it into a storm of them.
    pub(crate) fn hurry(&mut self) {
        if let Some(streak) = self
            .streak
            .as_mut()
            .filter(|s| !s.hurried && !s.hurry_spent)
        {
            streak.hurried = true;
            self.next_try = self.next_try.min(streak.last_failure + FIRST_BACKOFF);
        }
    }

    /// What waiting work is told (as `Error::Spawn`) once the outage has lasted the start
    /// timeout; `None` while work may still wait. The caller checks that no worker is alive.
    pub(crate) fn verdict(&self, now: Instant) -> Option<String> {
        let since = self.outage_since?;
        let streak = self.streak.as_ref()?;
        (now >= since + self.patience).then(|| {
            format!(
                "no worker could be started for {:.1?} ({} attempts); last cause: {}",
                now.saturating_duration_since(since),
                streak.failures,
                streak.cause
            )
        })
    }

    /// When [`verdict`](Self::verdict) starts to give an error, during an outage.
    pub(crate) fn verdict_due(&self) -> Option<Instant> {
        self.outage_since.map(|since| since + self.patience)
    }
}

/// The chunks waiting for a worker, oldest first, with a count of those at the front that
/// have seen a start attempt fail since they arrived (and so may fail with the outage).
#[derive(Default)]
pub(crate) struct Backlog {
    chunks: VecDeque<Chunk>,
    decided: usize,
    /// Items in `chunks`.
    items: usize,
}

impl Backlog {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// How many items wait.
    pub(crate) fn items(&self) -> usize {
        self.items
    }

    pub(crate) fn front(&self) -> Option<&Chunk> {
        self.chunks.front()
    }

    pub(crate) fn pop_front(&mut self) -> Option<Chunk> {
        self.decided = self.decided.saturating_sub(1);
        let chunk = self.chunks.pop_front()?;
        self.items -= chunk.len();
        Some(chunk)
    }

    /// New work, behind everything waiting.
    pub(crate) fn push_back(&mut self, chunk: Chunk) {
        self.items += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Work taken back from a worker that died, ahead of everything else: it was sent to a
    /// worker before, so it counts as having seen an attempt.
    pub(crate) fn push_front(&mut self, chunk: Chunk) {
        self.items += chunk.len();
        self.chunks.push_front(chunk);
        self.decided += 1;
    }

    /// A start attempt failed: everything waiting now has seen one.
    pub(crate) fn saw_failure(&mut self) {
        self.decided = self.chunks.len();
    }

    /// Takes out the chunks that have seen a failed attempt.
    pub(crate) fn take_decided(&mut self) -> Vec<Chunk> {
        let n = std::mem::take(&mut self.decided).min(self.chunks.len());
        let taken: Vec<Chunk> = self.chunks.drain(..n).collect();
        self.items -= taken.iter().map(Chunk::len).sum::<usize>();
        taken
    }

    /// Takes out everything.
    pub(crate) fn take_all(&mut self) -> Vec<Chunk> {
        self.decided = 0;
        self.items = 0;
        self.chunks.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::pool::job::{Offsets, Sink};
    use std::sync::Arc;

    struct Nobody;
    impl Sink for Nobody {
        fn deliver(&self, _: usize, _: usize, _: &[u8]) {}
        fn fail(&self, _: usize, _: Error) {}
    }

    fn chunk(first: usize) -> Chunk {
        Chunk {
            sink: Arc::new(Nobody),
            call: 1,
            entry: 0,
            first,
            payload: Vec::new(),
            offsets: Offsets::one(),
            retries: 0,
            fds: Arc::default(),
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_back_off_doubles_and_is_capped() {
        let t0 = Instant::now();
        let mut s = Starts::new(MS(5000), t0);
        assert!(s.due(t0));
        let waits: Vec<Duration> = (0..8)
            .map(|_| {
                s.failed(t0, "EMFILE".into());
                s.next_try() - t0
            })
            .collect();
        assert_eq!(
            waits,
            [50, 100, 200, 400, 800, 1000, 1000, 1000].map(MS).to_vec()
        );
        s.succeeded();
        s.failed(t0, "EMFILE".into());
        assert_eq!(s.next_try() - t0, FIRST_BACKOFF, "a success starts over");
    }

    #[test]
    fn waiting_work_fails_only_after_the_start_timeout_with_the_cause() {
        let t0 = Instant::now();
        let mut s = Starts::new(MS(300), t0);
        assert!(s.verdict(t0 + MS(1000)).is_none(), "no outage, no verdict");
        s.failed(t0, "Too many open files".into());
        assert!(
            s.verdict(t0 + MS(1000)).is_none(),
            "a failure beside a serving worker is no outage"
        );
        s.stranded(t0);
        s.stranded(t0 + MS(200));
        assert!(s.verdict(t0 + MS(299)).is_none());
        assert_eq!(s.verdict_due(), Some(t0 + MS(300)));
        let why = s
            .verdict(t0 + MS(300))
            .expect("a verdict at the start timeout");
        assert!(why.contains("Too many open files"), "{why}");
        s.succeeded();
        assert!(s.verdict(t0 + MS(5000)).is_none());
        assert_eq!(s.verdict_due(), None);
    }

    #[test]
    fn new_work_brings_the_next_attempt_forward() {
        let t0 = Instant::now();
        let mut s = Starts::new(MS(300), t0);
        for _ in 0..6 {
            s.failed(t0, "EAGAIN".into());
        }
        assert_eq!(s.next_try(), t0 + MAX_BACKOFF);
        s.hurry();
        assert_eq!(s.next_try(), t0 + FIRST_BACKOFF);
        // The attempt it brought forward failed, and calls keep coming: they wait for the
        // attempt the back-off allows...
        let t1 = t0 + FIRST_BACKOFF;
        s.failed(t1, "EAGAIN".into());
        s.hurry();
        assert_eq!(s.next_try(), t1 + MAX_BACKOFF);
        // ...and after that one failed, the next call may bring one forward again.
        let t2 = t1 + MAX_BACKOFF;
        s.failed(t2, "EAGAIN".into());
        s.hurry();
        s.hurry();
        assert_eq!(s.next_try(), t2 + FIRST_BACKOFF);
    }

    #[test]
    fn only_work_that_saw_a_failed_attempt_is_decided() {
        let mut b = Backlog::default();
        b.push_back(chunk(0));
        b.push_back(chunk(1));
        b.saw_failure();
        b.push_back(chunk(2));
        b.push_front(chunk(9));
        let decided: Vec<usize> = b.take_decided().iter().map(|c| c.first).collect();
        assert_eq!(decided, [9, 0, 1]);
        assert_eq!(b.front().map(|c| c.first), Some(2));
        assert!(
            b.take_decided().is_empty(),
            "the newest has seen no attempt"
        );
        b.saw_failure();
        assert_eq!(b.pop_front().map(|c| c.first), Some(2));
        assert!(b.take_decided().is_empty() && b.is_empty());
    }
}
