//! Death accounting: when a worker ends, which of the items it held fail and which run again.
//!
//! The worker bumps a progress counter before each item (`child/worker.rs`), so at its death the
//! counter says which item was running: that one is blamed (it killed the worker, or overran, or
//! sent garbage), and the others it held but did not answer run again elsewhere — items it never
//! reached, and (rarely) items it finished whose answers died with it.
//!
//! Retries are charged so that nothing runs for ever: a death pinned on an item made progress,
//! and charges nothing else; one pinned on no item (the worker died between items, or before
//! its first) counts against the chunk it was about to run; a child that died before greeting
//! back ran nothing, which is a failed start, not a charge. A chunk charged more than
//! [`MAX_RETRIES`] times fails.
//!
//! Garbage is the one ending that cannot be pinned when several items ran unanswered: answers
//! of earlier items may have been held back in the worker's batch, behind the garbage. None of
//! them is blamed then; each runs again alone (`Core::dispatch` gives a retried chunk a worker
//! to itself), where a culprit is caught by itself.
//!
//! Pure: it sees counts, not processes, so every case is a unit test.

use std::ops::Range;

/// How many times a chunk whose worker died is handed out again before its items fail.
pub(crate) const MAX_RETRIES: u8 = 3;

/// Why a worker ended, as far as blame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It died by itself (a signal, an exit): the item running then ended it.
    Died,
    /// It was killed for overrunning; `at` is the progress counter when that was decided (the
    /// worker may have moved on before the signal landed).
    TimedOut { at: u64 },
    /// It was killed for sending garbage.
    Garbled,
}

/// The worker's progress at its end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// Items of chunks it had answered whole, as counted by the progress counter.
    pub(crate) done_items: u64,
    /// The progress counter: items started.
    pub(crate) started: u64,
    /// Whether it had greeted back (before that, it ran nothing).
    pub(crate) greeted: bool,
}

/// A chunk the worker held, oldest first, as the accounting needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub(crate) len: usize,
    /// Items answered.
    pub(crate) reported: usize,
    pub(crate) retries: u8,
    /// The initializer: nothing to fail or run again (its failure is the pool's).
    pub(crate) is_init: bool,
}

/// Whether unanswered items may have sent the garbage their worker was killed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Clear,
    Suspect,
}

/// What becomes of items of a held chunk (indices within the chunk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The item that ended the worker: it fails with the cause.
    Blamed(usize),
    /// Items that run again elsewhere, with `charge` more retries counted.
    Rerun { items: Range<usize>, charge: u8 },
    /// Items that ran again too often: they fail — with the cause if they are suspects, as
    /// victims of a death otherwise.
    GiveUp {
        items: Range<usize>,
        standing: Standing,
    },
}

/// The fates of the unanswered items of every chunk in `held` (by position in `held`).
pub(crate) fn account(ending: Ending, progress: Progress, held: &[Held]) -> Vec<(usize, Fate)> {
    let answered = progress.done_items + held.first().map_or(0, |h| h.reported as u64);
    // The item to blame, as a value of the progress counter (item k of the worker's stream is
    // counter value k + 1).
    let mut blamed = match ending {
        Ending::TimedOut { at } => at,
        Ending::Died | Ending::Garbled => progress.started,
    };
    let suspects = match ending {
        Ending::Garbled if blamed > answered + 1 => {
            let suspects = answered + 1..blamed + 1;
            blamed = 0;
            suspects
        }
        _ => 0..0,
    };
    let mut chargeable = blamed <= answered && progress.greeted && suspects.is_empty();
    let mut fates = Vec::new();
    let mut base = progress.done_items;
    for (at, h) in held.iter().enumerate() {
        let n = h.len;
        let running = (blamed > base + h.reported as u64 && blamed <= base + n as u64)
            .then(|| (blamed - 1 - base) as usize);
        let index = |counter: u64| (counter.saturating_sub(base + 1) as usize).min(n);
        let suspect = index(suspects.start).max(h.reported)..index(suspects.end);
        base += n as u64;
        if h.is_init {
            continue;
        }
        let mut runs = Vec::new();
        match running {
            Some(r) => {
                fates.push((at, Fate::Blamed(r)));
                runs.push((h.reported..r, Standing::Clear));
                runs.push((r + 1..n, Standing::Clear));
            }
            None if !suspect.is_empty() => {
                runs.push((h.reported..suspect.start, Standing::Clear));
                runs.extend(suspect.clone().map(|i| (i..i + 1, Standing::Suspect)));
                runs.push((suspect.end..n, Standing::Clear));
            }
            None => runs.push((h.reported..n, Standing::Clear)),
        }
        let charge = u8::from(std::mem::take(&mut chargeable));
        for (items, standing) in runs.into_iter().filter(|(r, _)| !r.is_empty()) {
            // A suspect is charged a retry of its own, so it cannot run for ever.
            let charge = charge.max(u8::from(standing == Standing::Suspect));
            let fate = if h.retries + charge > MAX_RETRIES {
                Fate::GiveUp { items, standing }
            } else {
                Fate::Rerun { items, charge }
            };
            fates.push((at, fate));
        }
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, reported: usize) -> Held {
        Held {
            len,
            reported,
            retries: 0,
            is_init: false,
        }
    }

    fn progress(done_items: u64, started: u64) -> Progress {
        Progress {
            done_items,
            started,
            greeted: true,
        }
    }

    fn rerun(items: Range<usize>, charge: u8) -> Fate {
        Fate::Rerun { items, charge }
    }

    #[test]
    fn a_death_pinned_on_an_item_blames_it_and_charges_nobody() {
        // Chunk 0: items 0..4, 1 answered; item 2 (counter 3) was running. Chunk 1 queued.
        let fates = account(Ending::Died, progress(0, 3), &[chunk(4, 1), chunk(2, 0)]);
        assert_eq!(
            fates,
            [
                (0, Fate::Blamed(2)),
                (0, rerun(1..2, 0)),
                (0, rerun(3..4, 0)),
                (1, rerun(0..2, 0)),
            ]
        );
    }

    #[test]
    fn a_death_on_no_item_charges_the_chunk_it_was_about_to_run_only() {
        // Everything started was answered: the worker died between items.
        let fates = account(Ending::Died, progress(10, 12), &[chunk(4, 2), chunk(3, 0)]);
        assert_eq!(fates, [(0, rerun(2..4, 1)), (1, rerun(0..3, 0))]);
    }

    #[test]
    fn a_death_before_greeting_back_is_a_failed_start_not_a_charge() {
        let before_ready = Progress {
            done_items: 0,
            started: 0,
            greeted: false,
        };
        let fates = account(Ending::Died, before_ready, &[chunk(3, 0)]);
        assert_eq!(fates, [(0, rerun(0..3, 0))]);
    }

    #[test]
    fn a_timeout_blames_the_item_that_overran_even_if_the_worker_moved_past_it() {
        // Decided while item 1 (counter 2) ran; the worker reached item 3 before the signal.
        let fates = account(Ending::TimedOut { at: 2 }, progress(0, 4), &[chunk(5, 0)]);
        assert_eq!(
            fates,
            [
                (0, Fate::Blamed(1)),
                (0, rerun(0..1, 0)),
                (0, rerun(2..5, 0))
            ]
        );
    }

    #[test]
    fn a_chunk_charged_too_often_gives_up() {
        let tired = Held {
            retries: MAX_RETRIES,
            ..chunk(3, 1)
        };
        let fates = account(Ending::Died, progress(5, 6), &[tired]);
        assert_eq!(
            fates,
            [(
                0,
                Fate::GiveUp {
                    items: 1..3,
                    standing: Standing::Clear
                }
            )]
        );
    }

    #[test]
    fn garbage_behind_one_unanswered_item_blames_it() {
        let fates = account(Ending::Garbled, progress(0, 2), &[chunk(4, 1)]);
        assert_eq!(fates, [(0, Fate::Blamed(1)), (0, rerun(2..4, 0))]);
    }

    #[test]
    fn garbage_behind_several_unanswered_items_reruns_each_alone_and_blames_none() {
        // Items 1, 2 of chunk 0 and item 0 of chunk 1 ran unanswered (counters 2..=4).
        let fates = account(Ending::Garbled, progress(0, 4), &[chunk(3, 1), chunk(3, 0)]);
        assert_eq!(
            fates,
            [
                (0, rerun(1..2, 1)),
                (0, rerun(2..3, 1)),
                (1, rerun(0..1, 1)),
                (1, rerun(1..3, 0)),
            ]
        );
        // A suspect that has run again too often fails with the cause.
        let tired = Held {
            retries: MAX_RETRIES,
            ..chunk(2, 0)
        };
        let fates = account(Ending::Garbled, progress(0, 2), &[tired]);
        assert_eq!(
            fates,
            [
                (
                    0,
                    Fate::GiveUp {
                        items: 0..1,
                        standing: Standing::Suspect
                    }
                ),
                (
                    0,
                    Fate::GiveUp {
                        items: 1..2,
                        standing: Standing::Suspect
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_initializer_is_neither_failed_nor_run_again() {
        let init = Held {
            is_init: true,
            ..chunk(1, 0)
        };
        // Died in the initializer (counter 1), a task chunk queued behind it.
        let fates = account(Ending::Died, progress(0, 1), &[init, chunk(2, 0)]);
        assert_eq!(fates, [(1, rerun(0..2, 0))]);
    }
}
