//! The worker loop, a child's side of a pool worker or a `Process`: serve batches of items
//! until told to stop or the parent goes away. (The parent's side of a pool worker is
//! `pool::link`.)
//!
//! Replies are batched: outcomes accumulate in the channel's output buffer and are written when
//! the worker has nothing buffered to do next, when a batch's reply grows large, or when about a
//! millisecond has passed since the last write — so tiny tasks cost one write per batch, and the
//! result of a slow task leaves as soon as it is done. A result too large for any message fails
//! its item alone (`codec::encode_ok`); one that fits a message but not the reply it would
//! share gets a frame of its own (`Replies::split_last`).
//!
//! Before each item the worker bumps a counter in a page shared with the parent. When a worker
//! dies, that counter tells the supervisor exactly which item it was running (that item failed)
//! and which it never reached (those run elsewhere). It is also how task timeouts are measured.

use std::time::{Duration, Instant};

use super::protocol::{EXIT_PROTOCOL, EXIT_TASK_FAILED, STARTED_SLOT};
use crate::sys;
use crate::sys::page::SharedPage;
use crate::task::{self, Ran};
use crate::wire::fds::{self, FdSet};
use crate::wire::message::{Failure, ResultsHeader, Role, TaskHeader, kind};
use crate::wire::{BULK_IDLE, Channel, HEADER, MAX_FRAME};

const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// The most items run between two looks at the clock.
const MAX_STRIDE: u32 = 64;
const REPLY_LIMIT: usize = 16 << 20;

struct Replies {
    /// Start of the open `RESULTS` frame in the channel's output buffer.
    at: usize,
    /// The descriptors of the handles that the open frame's results carry (see `run_batch`).
    fds: FdSet,
    /// The identity of the process the replies go to, which holds their handles from then on.
    parent: Option<u64>,
    header: ResultsHeader,
    last_flush: Instant,
    last_check: Instant,
    /// Items between clock checks: grows while items are fast, drops to 1 when they are slow.
    stride: u32,
    until_check: u32,
}

impl Replies {
    fn open(ch: &mut Channel, seq: u64, first: u32, parent: Option<u64>) -> Self {
        let at = ch.begin_frame();
        ch.out_buf().extend_from_slice(&[0; ResultsHeader::LEN]);
        let now = Instant::now();
        Self {
            at,
            fds: FdSet::default(),
            parent,
            header: ResultsHeader {
                seq,
                first,
                count: 0,
            },
            last_flush: now,
            last_check: now,
            stride: 1,
            until_check: 1,
        }
    }

    fn close(&mut self, ch: &mut Channel) -> crate::Result<()> {
        let fds = std::mem::take(&mut self.fds);
        if self.header.count == 0 {
            // Nothing since the last write: drop the empty frame.
            ch.out_buf().truncate(self.at);
            return Ok(());
        }
        let at = self.at + HEADER;
        self.header
            .write_at(&mut ch.out_buf()[at..at + ResultsHeader::LEN]);
        // A lasting message, as an argument is: the parent, which it goes to, counts as holding
        // its handles until it exits (whether or not it ever decodes them), and this worker
        // until the set is dropped, now. So a reply lost with a dying worker, or never
        // decoded, or decoded twice, never leaves a queue's holders miscounted.
        if !fds.is_empty() {
            if let Some(parent) = self.parent {
                fds.hand_to(parent);
            }
        }
        ch.end_frame_with(self.at, kind::RESULTS, fds.into_fds())
    }

    /// Called after each run of `n` items (the last of whose outcomes starts at `large_at` in
    /// the output buffer, if it is large); writes what is ready when it is time.
    #[inline(always)]
    fn items_done(
        &mut self,
        ch: &mut Channel,
        n: u32,
        large_at: Option<usize>,
    ) -> crate::Result<()> {
        self.header.count += n;
        self.until_check = self.until_check.saturating_sub(n);
        // Results that carry handles go at once, in a frame of their own run, and the items
        // after them run one at a time: a frame's descriptors (at most `MAX_FDS_PER_MSG`) are
        // then one item's.
        let carrying = !self.fds.is_empty();
        let big = ch.out_buf().len() - self.at > REPLY_LIMIT || carrying;
        if self.until_check > 0 && !big {
            return Ok(());
        }
        self.checkpoint(ch, big, large_at)?;
        if carrying {
            (self.stride, self.until_check) = (1, 1);
        }
        Ok(())
    }

    /// Looks at the clock; writes the replies so far if it is time, or if they grew `big`.
    #[inline(never)]
    fn checkpoint(
        &mut self,
        ch: &mut Channel,
        big: bool,
        large_at: Option<usize>,
    ) -> crate::Result<()> {
        // Only a large last outcome can take the frame past its limit (see `split_last`).
        let over = ch.out_buf().len() - self.at - HEADER > MAX_FRAME;
        if let Some(at) = large_at.filter(|_| over) {
            self.split_last(ch, at)?;
        }
        let now = Instant::now();
        // Fast items: look at the clock less often (at once to 8: a batch starts at one item,
        // and a small batch of tiny items would otherwise spend more on the clock than on its
        // items; then doubling, so that items that turn slow are caught within a few);
        // slow ones: after each.
        let since_check = now - self.last_check;
        self.stride = if since_check < FLUSH_AFTER / 64 {
            (self.stride * if self.stride < 8 { 8 } else { 2 }).min(MAX_STRIDE)
        } else if since_check > FLUSH_AFTER / 4 {
            (self.stride / 4).max(1)
        } else {
            self.stride
        };
        self.until_check = self.stride;
        self.last_check = now;
        if now - self.last_flush >= FLUSH_AFTER || big {
            self.close(ch)?;
            ch.flush()?;
            let next = self.header.first + self.header.count;
            self.restart(ch, next);
            self.last_flush = now;
            self.last_check = Instant::now();
        }
        Ok(())
    }

    /// Opens the next frame, for outcomes from item `first` of the batch on.
    fn restart(&mut self, ch: &mut Channel, first: u32) {
        self.at = ch.begin_frame();
        ch.out_buf().extend_from_slice(&[0; ResultsHeader::LEN]);
        self.header.first = first;
        self.header.count = 0;
    }

    /// Gives the last outcome, which starts at `last_at`, a frame of its own: the open frame
    /// would pass [`MAX_FRAME`] with it. Each outcome fits a frame alone (`codec::encode_ok`
    /// refuses larger results), and the ones before it take little (a run of items ends after
    /// a large outcome, `task::LARGE_OUTCOME`, so at most 63 smaller ones precede it in its
    /// run, and the frame is written once it passes [`REPLY_LIMIT`]): two frames always do.
    /// Rare: copies the outcome.
    #[cold]
    fn split_last(&mut self, ch: &mut Channel, last_at: usize) -> crate::Result<()> {
        let last = ch.out_buf().split_off(last_at);
        // The last outcome's handles are numbered in the open frame's set: its own frame
        // carries a copy of the whole set.
        let fds = self.fds.duplicate()?;
        self.header.count -= 1;
        self.close(ch)?;
        let first = self.header.first + self.header.count;
        let mut head = [0; ResultsHeader::LEN];
        ResultsHeader {
            seq: self.header.seq,
            first,
            count: 1,
        }
        .write_at(&mut head);
        ch.push_parts(kind::RESULTS, fds, &[&head, &last])?;
        self.restart(ch, first + 1);
        Ok(())
    }
}

/// Where the handles in a worker's results go.
#[derive(Clone, Copy, Debug)]
enum ResultHandles {
    /// With the reply, to the parent, whose identity (`sys::proc::process_identity`) this is
    /// if it could be read.
    Carried { parent: Option<u64> },
    /// Nowhere: a result with a handle fails (the worker of an MPI rank other than 0, whose
    /// answers cross to rank 0, maybe on another machine, as bytes).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Refused,
}

impl ResultHandles {
    /// This worker's: asked once, as it starts serving.
    fn here() -> Self {
        #[cfg(feature = "mpi")]
        if crate::mpi::serves_a_remote_rank() {
            return ResultHandles::Refused;
        }
        ResultHandles::Carried {
            parent: sys::proc::getppid().and_then(sys::proc::process_identity),
        }
    }
}

/// Runs one `TASK` frame's items. Returns whether every item succeeded. Handles in the results
/// travel with them (their descriptors in the `RESULTS` frame) as `handles` says, or such a
/// result fails its item with [`fds::IN_REMOTE_RESULT`].
fn run_batch(
    ch: &mut Channel,
    page: &SharedPage,
    started: &mut u64,
    payload: &[u8],
    handles: ResultHandles,
) -> crate::Result<bool> {
    let mut input = payload;
    let header = TaskHeader::read(&mut input)?;
    // SAFETY: the parent computed `entry` with `task::offset_of` in the same executable; the
    // handshake checked the executable identity before any task was accepted.
    let entry = unsafe { task::entry_at(header.entry) };
    let parent = match handles {
        ResultHandles::Carried { parent } => parent,
        ResultHandles::Refused => None,
    };
    let mut replies = Replies::open(ch, header.seq, 0, parent);
    let progress = page.slot(STARTED_SLOT);
    let mut all_ok = true;
    let mut i = 0;
    while i < header.count {
        // Runs of items between two looks at the clock (see `Replies`).
        let max = (header.count - i).min(replies.until_check.max(1));
        let run_items = || entry(&mut input, ch.out_buf(), max, started, progress);
        let run = match handles {
            ResultHandles::Carried { .. } => fds::results_into(&mut replies.fds, run_items),
            ResultHandles::Refused => fds::results_refused(fds::IN_REMOTE_RESULT, run_items),
        };
        let n = run.items;
        if n == 0 || n > max {
            return Err(crate::Error::Protocol("a trampoline ran no items".into()));
        }
        all_ok &= run.last == Ran::Ok;
        replies.items_done(ch, n, run.large_at)?;
        i += n;
        if run.last == Ran::BadInput {
            // Nothing after an undecodable item can be trusted: fail the rest of the batch.
            while i < header.count {
                *started += 1;
                progress.store(*started, std::sync::atomic::Ordering::Relaxed);
                task::push_failure(
                    ch.out_buf(),
                    Failure::Decode("an earlier item of the batch could not be decoded".into()),
                );
                replies.items_done(ch, 1, None)?;
                i += 1;
            }
        }
    }
    replies.close(ch)?;
    Ok(all_ok)
}

/// How long an idle pool worker watches its socket for the next task before it sleeps in
/// `recv`. The parent's next `apply` then finds it awake: a round trip costs no wake-up of the
/// worker (several µs, far more on a virtual machine). It yields the core all the while.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// Serves the parent until it says `EXIT` (status 0), disconnects, or breaks the protocol.
/// Returns the exit status.
pub(crate) fn serve(mut ch: Channel, page: &SharedPage, role: Role) -> i32 {
    let mut started = 0u64;
    let handles = ResultHandles::here();
    loop {
        if !ch.has_frame() && ch.pending_out() > 0 && ch.flush().is_err() {
            return EXIT_PROTOCOL;
        }
        if role == Role::PoolWorker {
            ch.watch(IDLE_SPIN);
        }
        let next = if ch.keeps_memory() {
            // Idle for a while: let go of the memory kept for large messages.
            match ch.recv(Some(Instant::now() + BULK_IDLE)) {
                Err(crate::Error::Timeout) => {
                    ch.release_memory();
                    ch.recv(None)
                }
                other => other,
            }
        } else {
            ch.recv(None)
        };
        let mut frame = match next {
            Ok(frame) => frame,
            // The parent is gone or spoke garbage: there is nobody to report to.
            Err(_) => return EXIT_PROTOCOL,
        };
        match frame.kind {
            kind::TASK => match fds::receive(std::mem::take(&mut frame.fds), || {
                run_batch(&mut ch, page, &mut started, frame.payload(), handles)
            }) {
                Ok(all_ok) if role == Role::Process => {
                    return match ch.flush() {
                        Ok(_) if all_ok => 0,
                        Ok(_) => EXIT_TASK_FAILED,
                        Err(_) => EXIT_PROTOCOL,
                    };
                }
                Ok(_) => {}
                Err(_) => return EXIT_PROTOCOL,
            },
            kind::EXIT => {
                return match ch.flush() {
                    Ok(_) => 0,
                    Err(_) => EXIT_PROTOCOL,
                };
            }
            _ => return EXIT_PROTOCOL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Io, codec};

    #[test]
    fn a_last_outcome_split_off_gets_a_frame_of_its_own_in_order() {
        let (a, b) = crate::sys::fd::socketpair().unwrap();
        let mut ch = Channel::new(a, Io::Blocking).unwrap();
        let mut peer = Channel::new(b, Io::Blocking).unwrap();
        let mut replies = Replies::open(&mut ch, 7, 0, None);
        let mut last_at = 0;
        for x in [1u32, 2, 3] {
            last_at = ch.out_buf().len();
            codec::encode_ok(&x, ch.out_buf()).unwrap();
        }
        replies.header.count = 3;
        replies.split_last(&mut ch, last_at).unwrap();
        codec::encode_ok(&4u32, ch.out_buf()).unwrap();
        replies.header.count += 1;
        replies.close(&mut ch).unwrap();
        ch.flush().unwrap();
        for (first, values) in [(0, vec![1u32, 2]), (2, vec![3]), (3, vec![4])] {
            let f = peer.recv(None).unwrap();
            assert_eq!(f.kind, kind::RESULTS);
            let mut body = f.payload();
            let h = ResultsHeader::read(&mut body).unwrap();
            assert_eq!((h.seq, h.first, h.count), (7, first, values.len() as u32));
            for v in values {
                let got = codec::decode_outcome::<u32>(&mut body).unwrap().unwrap();
                assert_eq!(got, v);
            }
            assert!(body.is_empty());
        }
    }
}
