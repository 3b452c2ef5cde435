//! One call's work — its input items, its function, the buffer its values land in, and who gets
//! them — shared by the threads that run it in pieces, and the protocol by which a thread hands
//! its items' outcomes over or has them taken away.
//!
//! A call's items sit in a vector; a [`Piece`] is a range of them, the unit on the work queue.
//! A thread reads each item it runs out of the vector and writes the value into the call's
//! buffer in place: no allocation or queue operation per item, which is what makes a `map` of
//! tiny items run at memory speed.
//!
//! Who owns an item is decided through the thread's [`Watch`]. A thread *claims* items before
//! it reads them (a whole piece at once, or one item at a time under a `task_timeout`), and
//! *commits* their outcomes when done. Whoever else takes the piece away from the thread —
//! `terminate()`, or the timeout watcher when an item overruns — gives the claimed but
//! uncommitted items their error, and owns the unclaimed rest: it fails them or hands them to
//! another thread. The thread finds out at its next claim or commit and throws its values away.
//! That is how a thread that cannot be stopped is left to run on without its outcome ever
//! reaching anybody. Outcomes of committed items are delivered when every item of the call has
//! one ([`Tally`]); an item's value is therefore read by the deliverer only once committed, and
//! never by two parties.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::imap::Stream;
use super::task::{catching, panic_error};
use crate::error::{Error, Result};
use crate::pool::{Progress, Slot, lock};

/// Items `items` of one call: the unit of the work queue.
///
/// A piece that is dropped unrun fails its items with [`Error::PoolTerminated`] (a pool that
/// goes away leaves no result waiting).
pub(super) struct Piece {
    work: Arc<dyn Work>,
    items: Range<usize>,
}

impl Piece {
    pub(super) fn new(work: Arc<dyn Work>, items: Range<usize>) -> Self {
        Piece { work, items }
    }

    /// Pieces of at most `chunksize` items covering the whole of `work`'s `len` items.
    pub(super) fn cover(
        work: Arc<dyn Work>,
        len: usize,
        chunksize: usize,
    ) -> impl Iterator<Item = Piece> {
        let chunksize = chunksize.max(1);
        (0..len)
            .step_by(chunksize)
            .map(move |start| Piece::new(work.clone(), start..(start + chunksize).min(len)))
    }

    /// Fails its items with `error`: the pool refused them.
    pub(super) fn fail(mut self, error: &Error) {
        fail(&*self.work, std::mem::take(&mut self.items), error);
    }

    /// Whether nobody wants its outcomes any more; called as a thread is about to run it (see
    /// [`Work::unwanted`]).
    pub(super) fn unwanted(&self) -> bool {
        self.work.unwanted()
    }

    /// Runs the piece on this thread, which `watch` stands for, unless the pool was
    /// `terminated`.
    pub(super) fn run(mut self, watch: &Watch, claim: Claim, terminated: &AtomicBool) -> Ran {
        let items = std::mem::take(&mut self.items);
        watch.start(self.work.clone(), items.clone(), claim);
        // `terminate()` sets the flag, then takes away the pieces it finds: either it found this
        // one, or this thread sees the flag (the watch's lock orders the two).
        if terminated.load(Ordering::SeqCst) {
            if let Some(current) = watch.abandon() {
                drop(current.take_over(&|_| Error::PoolTerminated));
            }
            // Whoever took the piece away failed the claimed items, whose inputs are this
            // thread's to drop, unread.
            let claimed = match claim {
                Claim::WholePiece => items,
                Claim::EachItem => items.start..items.start,
            };
            self.work.drop_inputs(claimed);
            return Ran::Abandoned;
        }
        self.work.run(items, watch, claim)
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if !self.items.is_empty() {
            fail(
                &*self.work,
                std::mem::take(&mut self.items),
                &Error::PoolTerminated,
            );
        }
    }
}

/// Gives unclaimed `items` of `work` the error: their inputs are dropped unread.
fn fail(work: &dyn Work, items: Range<usize>, error: &Error) {
    work.drop_inputs(items.clone());
    work.fail_claimed(items, &|_| error.clone());
}

/// How a thread claims the items of a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// All at once, and commits them at the end: nothing is done per item (no time limit to
    /// enforce).
    WholePiece,
    /// One at a time, noting when each started, so that an item that overruns can be taken
    /// away alone and the rest handed to another thread.
    EachItem,
}

/// How a thread's run of a piece ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ran {
    /// Every item's outcome was committed.
    Done,
    /// The piece was taken away (see [`Watch`]): the thread is no longer the pool's.
    Abandoned,
}

/// One call's work, as the threads see it.
pub(super) trait Work: Send + Sync {
    /// Runs `items`, which `watch` has just been told of (see [`Piece::run`]).
    fn run(&self, items: Range<usize>, watch: &Watch, claim: Claim) -> Ran;
    /// Drops the inputs of `items`, which nobody will read.
    fn drop_inputs(&self, items: Range<usize>);
    /// Gives `items` the error `error(index in the call)`; their inputs are someone else's
    /// (see [`fail`]; items claimed by a thread that was abandoned stay that thread's).
    fn fail_claimed(&self, items: Range<usize>, error: &dyn Fn(usize) -> Error);
    /// Called as a thread is about to run items of it: whether nobody wants the outcomes any
    /// more (a dropped `imap`, a cancelled call). A cancellable call answers `false` once for
    /// good: from then on it has started.
    fn unwanted(&self) -> bool;
}

/// What a thread is doing, shared with whoever may take it away: `terminate()`, and the
/// timeout watcher.
pub(super) struct Watch {
    current: Mutex<Option<Current>>,
}

/// A piece a thread runs: items from `committed` are not committed yet; of those, the ones
/// below `claimed` may be read by the thread, the rest may not.
pub(super) struct Current {
    work: Arc<dyn Work>,
    committed: usize,
    claimed: usize,
    end: usize,
    /// When the last claim was made.
    since: Instant,
}

impl Watch {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Watch {
            current: Mutex::new(None),
        })
    }

    fn start(&self, work: Arc<dyn Work>, items: Range<usize>, claim: Claim) {
        let claimed = match claim {
            Claim::WholePiece => items.end,
            Claim::EachItem => items.start,
        };
        *lock(&self.current) = Some(Current {
            work,
            committed: items.start,
            claimed,
            end: items.end,
            since: Instant::now(),
        });
    }

    /// Claims item `i`; false if the piece was taken away.
    fn claim(&self, i: usize) -> bool {
        match lock(&self.current).as_mut() {
            Some(c) => {
                c.claimed = i + 1;
                c.since = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Commits the items below `upto`; false if the piece was taken away.
    fn commit(&self, upto: usize) -> bool {
        let mut current = lock(&self.current);
        match current.as_mut() {
            Some(c) => {
                c.committed = upto;
                if upto == c.end {
                    *current = None;
                }
                true
            }
            None => false,
        }
    }

    /// Takes the thread's piece away, if it runs one.
    pub(super) fn abandon(&self) -> Option<Current> {
        lock(&self.current).take()
    }

    /// Takes the thread's piece away if the item it runs started `limit` ago or more.
    pub(super) fn abandon_if_overdue(&self, limit: Duration) -> Option<Current> {
        let mut current = lock(&self.current);
        match current.as_ref() {
            Some(c) if c.committed < c.claimed && c.since.elapsed() >= limit => current.take(),
            _ => None,
        }
    }
}

impl Current {
    /// Gives the claimed, uncommitted items `error(index in the call)`, and returns the
    /// unclaimed rest, now the caller's.
    pub(super) fn take_over(self, error: &dyn Fn(usize) -> Error) -> Option<Piece> {
        self.work.fail_claimed(self.committed..self.claimed, error);
        (self.claimed < self.end).then(|| Piece::new(self.work, self.claimed..self.end))
    }
}

/// `len` cells at `ptr`, each of which one party at a time puts a value in or takes it out of.
/// A view: the memory is the job's [`Memory`].
struct Cells<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: `Cells` moves values of `T` between threads (so `T: Send`), and each value is
// touched through the unsafe methods below only, whose callers guarantee that one party at a
// time touches a given cell.
unsafe impl<T: Send> Send for Cells<T> {}
// SAFETY: as for `Send`: shared access touches distinct cells only.
unsafe impl<T: Send> Sync for Cells<T> {}

impl<T> Cells<T> {
    /// Moves the value out of cell `i`.
    ///
    /// # Safety
    /// `i < len`, the cell holds a value, and no other party touches cell `i` meanwhile.
    unsafe fn take(&self, i: usize) -> T {
        // SAFETY: the caller's guarantee; `ptr` is valid for `len` values (see `Memory`).
        unsafe { self.ptr.add(i).read() }
    }

    /// Puts `value` in cell `i`.
    ///
    /// # Safety
    /// `i < len`, the cell is empty, and no other party touches cell `i` meanwhile.
    unsafe fn put(&self, i: usize, value: T) {
        // SAFETY: the caller's guarantee; `ptr` is valid for `len` values (see `Memory`).
        unsafe { self.ptr.add(i).write(value) }
    }

    /// Drops the value in cell `i`; a panic in its `Drop` goes no further (see
    /// [`drop_quietly`]).
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    unsafe fn drop_at(&self, i: usize) {
        // SAFETY: the caller's guarantee.
        drop_quietly(unsafe { self.take(i) });
    }
}

/// Drops `value`, swallowing a panic of its `Drop` (whose payload is leaked, lest it panic
/// too): the pool drops the program's values in the middle of its own bookkeeping — a failed
/// map's other values, inputs never run — which must not be cut short, or a result would never
/// be delivered and its caller would wait for ever.
pub(super) fn drop_quietly<T>(value: T) {
    if let Err(payload) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)))
    {
        std::mem::forget(payload);
    }
}

/// The memory of a job's items and values — never the values themselves: its vectors keep
/// length 0 until the values are handed over whole.
///
/// When an item and a value have the same size and alignment, each value is written in the
/// cell its item was read from, and the items' vector becomes the values' (a `map` of numbers
/// to numbers then touches half the memory, and a fresh page costs more than the work on this
/// kind of machine); otherwise the values get a vector of their own. Either way an item is read
/// before its value is written, and a cell holds one or the other.
struct Memory<T, R> {
    items: Vec<T>,
    /// Empty when the values live in `items`' memory.
    values: Vec<R>,
    in_place: bool,
}

/// A job's cells and their memory.
struct Slots<T, R> {
    input: Cells<T>,
    output: Cells<R>,
    memory: Mutex<Memory<T, R>>,
}

impl<T, R> Slots<T, R> {
    fn new(items: Vec<T>) -> Self {
        let len = items.len();
        let mut items = std::mem::ManuallyDrop::new(items);
        let (ptr, cap) = (items.as_mut_ptr(), items.capacity());
        // SAFETY: the parts of a vector just given up; length 0: the values are the cells'.
        let items = unsafe { Vec::from_raw_parts(ptr, 0, cap) };
        let in_place = std::alloc::Layout::new::<T>() == std::alloc::Layout::new::<R>();
        let mut values = Vec::with_capacity(if in_place { 0 } else { len });
        let output = if in_place {
            ptr.cast::<R>()
        } else {
            values.as_mut_ptr()
        };
        Slots {
            input: Cells { ptr, len },
            output: Cells { ptr: output, len },
            memory: Mutex::new(Memory {
                items,
                values,
                in_place,
            }),
        }
    }

    /// Hands over every value, as a vector.
    ///
    /// # Safety
    /// Every output cell holds a value, no party touches any cell any more, and this is called
    /// once.
    unsafe fn take_all(&self) -> Vec<R> {
        let mut memory = lock(&self.memory);
        if memory.in_place {
            let mut items = std::mem::ManuallyDrop::new(std::mem::take(&mut memory.items));
            let (ptr, cap) = (items.as_mut_ptr(), items.capacity());
            // SAFETY: `T` and `R` have the same layout, so the items' allocation is one for
            // `cap` values of `R`; its first `len` cells hold values (the caller's guarantee).
            unsafe { Vec::from_raw_parts(ptr.cast::<R>(), self.output.len, cap) }
        } else {
            let mut values = std::mem::take(&mut memory.values);
            // SAFETY: the first `len` cells of `values`' allocation hold values (the caller's
            // guarantee), and it has room for them.
            unsafe { values.set_len(self.output.len) };
            values
        }
    }
}

/// Where a call's outcomes go once every item has one.
pub(super) enum Deliver<R> {
    /// `apply`: the one value, or its error.
    One(Arc<Slot<R>>),
    /// `map`, `starmap`: the values in order, or the first item's error.
    All(Arc<Slot<Vec<R>>>),
    /// A chunk of an `imap`: every item's own outcome, and how long the chunk took.
    Each {
        stream: Arc<Stream<R>>,
        born: Instant,
    },
}

/// Items not yet given an outcome, and the errors of those that were.
struct Tally {
    left: usize,
    /// By index in the job.
    errors: Vec<(usize, Error)>,
}

/// A call (or one chunk of an `imap`) of `f` over `len` items.
pub(super) struct Job<T, R, F> {
    f: F,
    slots: Slots<T, R>,
    /// The index, in its call, of the job's first item (an `imap` chunk's place).
    base: usize,
    tally: Mutex<Tally>,
    deliver: Deliver<R>,
    /// The call's progress bar, if the pool draws them.
    progress: Option<Arc<Progress>>,
}

impl<T, R, F> Job<T, R, F>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    /// A job of `f` over `items`, the first being the call's item `base`. A job of no items
    /// delivers at once.
    /// `progress` is the call's bar, if the pool draws them: advanced as pieces are done.
    pub(super) fn new(
        f: F,
        items: Vec<T>,
        base: usize,
        deliver: Deliver<R>,
        progress: Option<Arc<Progress>>,
    ) -> Arc<Self> {
        let len = items.len();
        let job = Arc::new(Job {
            f,
            slots: Slots::new(items),
            base,
            tally: Mutex::new(Tally {
                left: len,
                errors: Vec::new(),
            }),
            deliver,
            progress,
        });
        if len == 0 {
            job.finish(Vec::new());
        }
        job
    }

    pub(super) fn len(&self) -> usize {
        self.slots.input.len
    }

    /// Runs items `items`, claimed all at once; `failed` gets the panics. The hot loop: nothing
    /// but the call and two moves per item.
    fn run_all(&self, items: Range<usize>, failed: &mut Vec<(usize, Error)>) {
        // Borrowed apart from `self` (whose locks make it mutable memory to the optimiser), so
        // that the loop keeps the cells' addresses in registers.
        let (f, input, output) = (&self.f, &self.slots.input, &self.slots.output);
        let mut i = items.start;
        while i < items.end {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while i < items.end {
                    // SAFETY: `i` is in this thread's claimed piece (see `Watch`): no other
                    // party touches its input or its value, and it is read once (`i` moves on).
                    let value = f(unsafe { input.take(i) });
                    // SAFETY: as above; the value's cell is empty until now.
                    unsafe { output.put(i, value) };
                    i += 1;
                }
            }));
            if let Err(payload) = ran {
                // Item `i` panicked: its input was consumed, it has no value.
                failed.push((i, panic_error(payload)));
                i += 1;
            }
        }
    }

    /// Drops the values this thread put in `items` (all but `failed`), after the piece was
    /// taken away: they are nobody else's.
    fn discard(&self, items: Range<usize>, failed: &[(usize, Error)]) {
        let mut failed = failed.iter().map(|(i, _)| *i).peekable();
        for i in items {
            if failed.next_if_eq(&i).is_none() {
                // SAFETY: this thread put a value there, and the piece was taken away before
                // it committed, so nobody else reads it (`Current::take_over` fails it).
                unsafe { self.slots.output.drop_at(i) };
            }
        }
    }

    /// Records `count` more outcomes, `errors` among them; delivers when none is left.
    fn settle(&self, count: usize, errors: impl IntoIterator<Item = (usize, Error)>) {
        let mut tally = lock(&self.tally);
        tally.left -= count;
        let before = tally.errors.len();
        tally.errors.extend(errors);
        let failed = tally.errors.len() - before;
        let done = (tally.left == 0).then(|| std::mem::take(&mut tally.errors));
        drop(tally);
        // Outside the lock: a bar may draw.
        if let Some(progress) = &self.progress {
            progress.advance(count, failed);
        }
        if let Some(errors) = done {
            self.finish(errors);
        }
    }

    /// Delivers the outcomes: every item has one, and the values of all but `errors` are
    /// committed.
    fn finish(&self, mut errors: Vec<(usize, Error)>) {
        errors.sort_unstable_by_key(|(i, _)| *i);
        match &self.deliver {
            Deliver::One(slot) => {
                slot.complete(self.all_or_first_error(errors).and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| Error::Protocol("no outcome for the task".into()))
                }))
            }
            Deliver::All(slot) => slot.complete(self.all_or_first_error(errors)),
            Deliver::Each { stream, born } => {
                stream.deliver(self.base, self.each(errors), born.elapsed());
            }
        }
    }

    /// Every value, or the first error (`errors` is sorted).
    fn all_or_first_error(&self, mut errors: Vec<(usize, Error)>) -> Result<Vec<R>> {
        if errors.is_empty() {
            // SAFETY: no item failed, so every cell holds a committed value, and nobody
            // touches the cells after the last commit; `finish` runs once.
            return Ok(unsafe { self.slots.take_all() });
        }
        if std::mem::needs_drop::<R>() {
            let mut failed = errors.iter().map(|(i, _)| *i).peekable();
            for i in 0..self.len() {
                if failed.next_if_eq(&i).is_none() {
                    // SAFETY: an item without an error has a committed value, which only the
                    // deliverer touches now.
                    unsafe { self.slots.output.drop_at(i) };
                }
            }
        }
        Err(errors.swap_remove(0).1)
    }

    fn each(&self, errors: Vec<(usize, Error)>) -> Vec<Result<R>> {
        let mut errors = errors.into_iter().peekable();
        (0..self.len())
            .map(|i| match errors.next_if(|(at, _)| *at == i) {
                Some((_, e)) => Err(e),
                // SAFETY: an item without an error has a committed value, which only the
                // deliverer touches now, and moves out once (`i` moves on).
                None => Ok(unsafe { self.slots.output.take(i) }),
            })
            .collect()
    }
}

impl<T, R, F> Work for Job<T, R, F>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    fn run(&self, items: Range<usize>, watch: &Watch, claim: Claim) -> Ran {
        match claim {
            Claim::WholePiece => {
                let mut failed = Vec::new();
                self.run_all(items.clone(), &mut failed);
                if watch.commit(items.end) {
                    self.settle(items.len(), failed);
                    Ran::Done
                } else {
                    self.discard(items, &failed);
                    Ran::Abandoned
                }
            }
            Claim::EachItem => {
                for i in items {
                    if !watch.claim(i) {
                        return Ran::Abandoned;
                    }
                    // SAFETY: `i` was just claimed by this thread (see `Watch`): no other party
                    // touches its input or its value.
                    let failed = match catching(|| (self.f)(unsafe { self.slots.input.take(i) })) {
                        Ok(value) => {
                            // SAFETY: as above; its cell is empty until now.
                            unsafe { self.slots.output.put(i, value) };
                            None
                        }
                        Err(e) => Some(e),
                    };
                    if !watch.commit(i + 1) {
                        if failed.is_none() {
                            // SAFETY: the value this thread just put, which the thread that
                            // took the piece away failed rather than read.
                            unsafe { self.slots.output.drop_at(i) };
                        }
                        return Ran::Abandoned;
                    }
                    self.settle(1, failed.map(|e| (i, e)));
                }
                Ran::Done
            }
        }
    }

    fn drop_inputs(&self, items: Range<usize>) {
        for i in items {
            // SAFETY: unclaimed items, or items claimed but never run, are the dropping
            // party's alone, and dropped once.
            unsafe { self.slots.input.drop_at(i) };
        }
    }

    fn fail_claimed(&self, items: Range<usize>, error: &dyn Fn(usize) -> Error) {
        let base = self.base;
        self.settle(items.len(), items.map(|i| (i, error(base + i))));
    }

    fn unwanted(&self) -> bool {
        let unwanted = match &self.deliver {
            Deliver::Each { stream, .. } => stream.unwanted(),
            Deliver::One(slot) => !slot.claim(),
            Deliver::All(slot) => !slot.claim(),
        };
        if let Some(progress) = self.progress.as_ref().filter(|_| unwanted) {
            progress.abandon();
        }
        unwanted
    }
}
