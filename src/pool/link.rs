//! The parent's side of one pool worker: its link (socket, pidfd, progress page), the chunks
//! it holds, what it has answered, and the frames that carry its work and its answers.
//!
//! The child's side is `crate::child::worker`. Everything here is driven by the supervisor (and,
//! for reading answers, by waiters that borrow its core; see `handoff.rs`): it sends chunks without
//! blocking, reads whatever a worker has sent, turns `RESULTS` frames into [`Delivery`]s for the
//! calls that wait for them, and times the chunks it answers for `pace.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::job::{Chunk, Sink, WaiterId};
use super::pace::Pace;
use super::starts::Starts;
use super::stats::Meter;
use crate::bootstrap::{self, ChildLink};
use crate::child::protocol::STARTED_SLOT;
use crate::error::{Death, Error, Result};
use crate::sys;
use crate::sys::fd::Interest;
use crate::wire::message::{ResultsHeader, TaskHeader, kind};
use crate::wire::{Frame, fds};

/// How long part of a message from a worker may wait for the rest before the worker is
/// replaced: workers write each message whole, so one cut short for this long is garbage (a
/// task wrote into the worker's socket, say) that will never be completed.
pub(super) const STALLED: Duration = Duration::from_secs(2);

pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) sent: Instant,
    pub(super) chunk: Chunk,
    pub(super) reported: usize,
    pub(super) is_init: bool,
    /// Who waits for the chunk's outcomes (its sink's [`Sink::waiter`], asked once).
    pub(super) waiter: Option<WaiterId>,
}

/// Why we killed a worker ourselves.
#[derive(Clone, Debug)]
pub(super) enum KillReason {
    /// The limit, and the progress counter when we decided to kill: the item then running is
    /// the one that overran, even if the worker moved on before the signal landed.
    Timeout(Duration, u64),
    Protocol(String),
}

pub(super) struct WorkerLink {
    pub(super) link: ChildLink,
    /// Its share of the work, for `Pool::stats` (`stats.rs`).
    pub(super) meter: Arc<Meter>,
    pub(super) inflight: VecDeque<InFlight>,
    /// Items (as counted by the child's progress counter) of chunks already fully answered.
    pub(super) done_items: u64,
    pub(super) tasks_assigned: usize,
    pub(super) retiring: bool,
    /// Last progress value seen, and when it was first seen.
    pub(super) progress: (u64, Instant),
    /// When the worker last finished a chunk (to measure chunk service time).
    pub(super) last_done: Instant,
    pub(super) killed: Option<KillReason>,
    /// Whether the child answered the greeting.
    pub(super) ready: bool,
    /// Whether it is ready to serve tasks (greeted, and through its initializer); noted once
    /// in `Starts`.
    pub(super) serving: bool,
    /// What the supervisor's poller watches its socket for (see `Core::rewatch`).
    pub(super) watched: Interest,
}

impl WorkerLink {
    pub(super) fn started(&self) -> u64 {
        self.link.page.slot(STARTED_SLOT).load(Ordering::Relaxed)
    }

    /// Whether an item is running right now (started and not answered).
    pub(super) fn busy(&self) -> bool {
        self.started() > self.answered()
    }

    pub(super) fn running_init(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.is_init)
    }

    /// Items answered so far, as counted by the progress counter.
    pub(super) fn answered(&self) -> u64 {
        self.done_items + self.inflight.front().map_or(0, |f| f.reported as u64)
    }

    /// Whether it is alive and in service, or on its way there: not killed, not retiring, not
    /// hung up.
    pub(super) fn usable(&self) -> bool {
        self.killed.is_none() && !self.retiring && !self.link.channel.at_eof()
    }

    /// Whether it runs a chunk taken back from a dead worker, which runs alone (see
    /// `Core::dispatch`): if it kills or garbles its worker again, the blame is exact.
    pub(super) fn runs_a_retry(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.chunk.retries > 0)
    }

    /// How long part of a message from it may still wait for the rest (see [`STALLED`]);
    /// `None` unless part of one waits (or it was killed already).
    pub(super) fn stall_left(&self, now: Instant) -> Option<Duration> {
        let waited = self.link.channel.stalled_for(now)?;
        self.killed
            .is_none()
            .then(|| STALLED.saturating_sub(waited))
    }
}

/// Results read from a worker, on their way to the call that wants them. The supervisor hands
/// them over after it has released the core lock (see `Supervisor::serve`): the caller it wakes
/// then finds the lock free to dispatch its next call.
pub(super) struct Delivery {
    pub(super) sink: Arc<dyn Sink>,
    pub(super) first: usize,
    pub(super) count: usize,
    pub(super) frame: Frame,
    /// Where the encoded outcomes start in the frame's payload.
    pub(super) body_at: usize,
}

impl Delivery {
    /// Hands the results over; handles in them take their descriptors from the frame's.
    pub(super) fn deliver(mut self) {
        let fds = std::mem::take(&mut self.frame.fds);
        fds::receive(fds, || {
            deliver_outcomes(
                &*self.sink,
                self.first,
                self.count,
                &self.frame.payload()[self.body_at..],
            )
        });
    }
}

/// Hands `count` encoded outcomes of items `first..` to `sink`. Decoding runs the user's
/// `Deserialize`, which may panic: that fails these items, never whoever hands them over.
pub(crate) fn deliver_outcomes(sink: &dyn Sink, first: usize, count: usize, body: &[u8]) {
    let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sink.deliver(first, count, body)
    }));
    if let Err(panic) = delivered {
        let message = crate::task::panic_message(&*panic);
        for i in first..first + count {
            sink.fail(
                i,
                Error::Decode(format!("decoding the result panicked: {message}")),
            );
        }
    }
}

/// Queues a chunk on a worker's channel. A chunk too large for one frame cannot be sent at
/// all: its items fail with the encode error, which is also returned.
pub(super) fn send_chunk(w: &mut WorkerLink, seq: u64, chunk: Chunk, is_init: bool) -> Result<()> {
    let header = TaskHeader {
        seq,
        entry: chunk.entry,
        count: chunk.len() as u32,
    };
    let fds = match chunk.fds.duplicate() {
        Ok(fds) => fds,
        Err(e) => {
            let msg = format!("could not duplicate the descriptors of handles: {e}");
            chunk.fail(0..chunk.len(), |_| {
                Error::Io(std::io::Error::other(msg.clone()))
            });
            return Err(e.into());
        }
    };
    let mut head = Vec::with_capacity(TaskHeader::LEN);
    header.write(&mut head);
    let pushed = w
        .link
        .channel
        .push_parts(kind::TASK, fds, &[&head, &chunk.payload]);
    match pushed {
        Ok(()) => {
            let sent = Instant::now();
            // Busy from its first task on (an initializer is not work done for the pool's
            // calls; tasks queued behind it count from its end).
            if w.inflight.is_empty() && !is_init {
                w.meter.busy(sent);
            }
            w.inflight.push_back(InFlight {
                seq,
                sent,
                waiter: chunk.sink.waiter(),
                chunk,
                reported: 0,
                is_init,
            });
            Ok(())
        }
        Err(e) => {
            let msg = match &e {
                Error::Encode(why) => why.clone(),
                other => other.to_string(),
            };
            chunk.fail(0..chunk.len(), |_| Error::Encode(msg.clone()));
            Err(e)
        }
    }
}

/// Notes `w` in `starts` if it has just become ready to serve: greeted back, and through its
/// initializer.
pub(super) fn note_serving(w: &mut WorkerLink, starts: &mut Starts) {
    if !w.serving && w.ready && !w.running_init() && w.killed.is_none() {
        w.serving = true;
        w.meter.ready();
        starts.succeeded();
    }
}

pub(super) fn kill(w: &mut WorkerLink, why: KillReason) {
    if w.killed.is_none() {
        w.killed = Some(why);
    }
    let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
}

/// Waits for a worker that has exited (or is about to) and reaps it.
pub(super) fn reap(w: &mut WorkerLink) -> Death {
    let pidfd = std::os::fd::AsFd::as_fd(&w.link.pidfd);
    // The socket closing usually means the process is exiting; give it a moment, then insist.
    if !sys::fd::wait_readable(pidfd, Some(Duration::from_secs(2))).unwrap_or(false) {
        let _ = sys::proc::signal(w.link.pid, sys::proc::Stop::Kill);
    }
    match w.link.reap() {
        Ok(exit) => w.link.death(exit),
        Err(_) => Death::Unknown,
    }
}

/// Reads whatever the worker has sent and applies it; results for callers go to `deliveries`.
pub(super) fn read_available(
    w: &mut WorkerLink,
    pace: &mut Pace,
    deliveries: &mut Vec<Delivery>,
) -> Result<()> {
    loop {
        while let Some(frame) = w.link.channel.next_frame()? {
            apply_frame(w, frame, pace, deliveries)?;
        }
        match w.link.channel.fill()? {
            None | Some(0) => return Ok(()),
            Some(_) => {}
        }
    }
}

pub(super) fn apply_frame(
    w: &mut WorkerLink,
    frame: Frame,
    pace: &mut Pace,
    deliveries: &mut Vec<Delivery>,
) -> Result<()> {
    match frame.kind {
        kind::READY | kind::REFUSE => {
            bootstrap::check_ready(&frame)?;
            w.ready = true;
            Ok(())
        }
        kind::RESULTS => {
            let mut body = frame.payload();
            let header = ResultsHeader::read(&mut body)?;
            let body_at = frame.payload().len() - body.len();
            let Some(front) = w.inflight.front_mut() else {
                return Err(Error::Protocol(
                    "results for a batch that was not sent".into(),
                ));
            };
            if front.seq != header.seq || header.first as usize != front.reported {
                return Err(Error::Protocol("results out of order".into()));
            }
            let count = header.count as usize;
            if front.reported + count > front.chunk.len() {
                return Err(Error::Protocol("more results than items".into()));
            }
            let delivery = Delivery {
                sink: front.chunk.sink.clone(),
                first: front.chunk.first + front.reported,
                count,
                frame,
                body_at,
            };
            if front.is_init {
                // The supervisor looks at the initializer's outcome as soon as it has read.
                delivery.deliver();
            } else {
                w.meter.answered(count);
                deliveries.push(delivery);
            }
            front.reported += count;
            if front.reported == front.chunk.len() {
                let done = w.inflight.pop_front();
                let now = Instant::now();
                if let Some(done) = done {
                    if done.is_init && !w.inflight.is_empty() {
                        w.meter.busy(now);
                    }
                    w.done_items += done.chunk.len() as u64;
                    if !done.is_init {
                        let took = now - done.sent.max(w.last_done);
                        pace.record(done.chunk.call, took);
                        done.chunk.sink.served(done.chunk.len(), took);
                    }
                }
                if w.inflight.is_empty() {
                    w.meter.idle(now);
                }
                w.last_done = now;
            }
            Ok(())
        }
        other => Err(Error::Protocol(format!(
            "unexpected frame kind {other} from a worker"
        ))),
    }
}
