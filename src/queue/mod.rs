//! `Queue`, `SimpleQueue` and `JoinableQueue`: many producers and consumers in any processes.
//!
//! Items are encoded by the producer, copied into a ring in shared memory under a
//! cross-process lock, and decoded by whichever consumer takes them (`ring.rs`). Unlike
//! Python's queue there is no feeder thread: when `put` returns, the item is in the queue,
//! visible to every process, and survives the producer's exit; nothing is buffered in a
//! process that might die. A full queue (its `maxsize`, or the ring's bytes) makes `put`
//! wait, and `try_put`/`put_timeout` give the item back.
//!
//! Dropping a handle releases it; when a reader finds the queue empty and no handle left
//! anywhere but its own, `get` returns [`Error::Disconnected`] instead of waiting forever.
//! Only `get` does: `try_get` and `get_timeout` end anyway, and the reader's own handle may
//! still put once they return, so for them the queue is just empty (`Ok(None)`,
//! [`Error::Timeout`]) and the drain loop `while let Some(x) = q.try_get()? {}` stops there.

mod ring;

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::mem::parking;
use crate::mem::segment::{Kind, Segment};
use crate::sys::proc::own_process_identity;
use crate::sys::shm::SealedBytes;
use crate::task::Data;
use crate::wire::codec;
use crate::wire::fds::{self, FdSet, Pin};
use ring::{PopError, Popped, PushError, Ring};

/// Why an item was not put; the item comes back in every case.
pub enum PutError<T> {
    /// No room: the queue is at its `maxsize` (or its ring is full), and `try_put` does not
    /// wait or `put_timeout` ran out.
    Full(T),
    /// This handle was closed.
    Closed(T),
    /// The item could not be encoded, or the operating system refused (the error says which).
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::Closed(t) | PutError::Failed(t, _) => t,
        }
    }
}

impl<T> std::fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Failed(_, e) => write!(f, "Failed(.., {e:?})"),
        }
    }
}

impl<T> std::fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Closed(_) => f.write_str("the queue handle is closed"),
            PutError::Failed(_, e) => write!(f, "{e}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Full(_) => Error::Full,
            PutError::Closed(_) => Error::Closed,
            PutError::Failed(_, e) => e,
        }
    }
}

thread_local! {
    /// Encoding and copying buffers, reused so that small items cost no allocation.
    static BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer (taken out, so a nested use gets a fresh one).
fn with_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = BUF.take();
    buf.clear();
    let out = f(&mut buf);
    if buf.capacity() <= 1 << 20 {
        BUF.set(buf);
    }
    out
}

/// One process's view of a queue: the mapping, shared by all handles of this process.
struct Shared {
    ring: Ring,
}

/// A queue shared between processes, like `multiprocessing.Queue`.
///
/// Clone it, or pass it to a [`Process`](crate::Process), a pool task or a pool initializer:
/// every copy is the same queue. Items keep their order per producer; each item is taken by
/// exactly one consumer. A handle is `Send` but not `Sync`: give each thread its own clone
/// (that is how a reader knows whether anyone is left to write).
///
/// ```compile_fail
/// fn shared_by_threads<T: Sync>(_: &T) {}
/// let q = multiproc::Queue::<u8>::new().unwrap();
/// shared_by_threads(&q); // a Queue is not Sync: clone it per thread
/// ```
///
/// **Drop:** releases this handle. When every other handle in every process is gone and the
/// queue is empty, a blocking [`get`](Self::get) returns [`Error::Disconnected`] instead of
/// waiting forever. The queue's memory goes with its last handle.
///
/// # Examples
/// ```
/// # multiproc::init();
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<String>) {
///     for word in ["hello", "from", "a child"] {
///         q.put(word.to_string()).unwrap();
///     }
/// }
///
/// let q = Queue::new()?;
/// let mut child = Process::new(produce, q.clone());
/// child.start()?;
/// let words: Vec<String> = (0..3).map(|_| q.get()).collect::<Result<_, _>>()?;
/// assert_eq!(words, ["hello", "from", "a child"]);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    closed: AtomicBool,
    _t: PhantomData<fn(T) -> T>,
    /// A handle is one holder: threads that read and write need a clone each (`Send`, not
    /// `Sync`), or a reader could not tell whether anyone else is left to write.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.shared.ring.maxsize())
            .finish()
    }
}

impl<T> Queue<T> {
    fn from_shared(shared: Arc<Shared>) -> Self {
        shared.ring.hold(own_process_identity());
        Self {
            shared,
            closed: AtomicBool::new(false),
            _t: PhantomData,
            _not_sync: PhantomData,
        }
    }

    fn ring(&self) -> &Ring {
        &self.shared.ring
    }

    /// The number of items in the queue now (Python's `qsize`, exact here).
    pub fn qsize(&self) -> usize {
        self.ring().len()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue is at its `maxsize` now (never, for an unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.ring().maxsize();
        max != 0 && self.qsize() >= max
    }

    /// The item limit; 0 for none.
    pub fn maxsize(&self) -> usize {
        self.ring().maxsize()
    }

    /// Closes this handle: it can put and get no more, and no longer counts as a possible
    /// writer (see [`Error::Disconnected`]). Other handles are not affected. Idempotent.
    pub fn close(&self) {
        if !self.closed.swap(true, SeqCst) {
            self.ring().release(own_process_identity());
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }
}

impl<T: Data> Queue<T> {
    /// An unbounded queue (its ring holds 4 MiB of items; `put` waits beyond that).
    ///
    /// # Errors
    /// The shared memory or side socket could not be created ([`Error::Io`]).
    pub fn new() -> Result<Self> {
        Self::with_ring_bytes(0, ring::DEFAULT_RING)
    }

    /// A queue of at most `maxsize` items (0 for no limit), like `Queue(maxsize)`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Self::with_ring_bytes(maxsize, ring::DEFAULT_RING)
    }

    /// A queue of at most `maxsize` items (0: no limit) whose ring holds `ring_bytes` bytes of
    /// encoded items (at least 4 KiB). Items larger than a quarter of the ring, and items that
    /// carry handles, travel in their own sealed memory over a socket instead; the socket's
    /// buffer lets a few hundred such items wait at once (about 250 here), beyond which `put`
    /// waits for a reader as it does when the ring is full.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        let ring = Ring::create(maxsize, ring_bytes)?;
        Ok(Self::from_shared(Arc::new(Shared { ring })))
    }

    /// Puts an item, waiting for room if the queue is full.
    ///
    /// # Errors
    /// The item comes back inside the error: [`PutError::Closed`] if this handle was closed,
    /// [`PutError::Failed`] if it could not be encoded or sent.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    /// [`PutError::Full`] with the item if there is no room, or as [`put`](Self::put).
    pub fn try_put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()))
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutError::Full`] with the item if there was no room in time, or as [`put`](Self::put).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_until(item, parking::deadline(timeout))
    }

    fn put_until(
        &self,
        item: T,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(item));
        }
        let outcome = with_buf(|buf| {
            let mut fds = FdSet::passing();
            fds::collect(&mut fds, || codec::encode_into(&item, buf)).map_err(Error::from)?;
            let pushed = if fds.is_empty() && self.ring().fits_inline(buf.len()) {
                self.ring().push(buf, None, deadline)
            } else {
                let memfd = SealedBytes::seal(buf)?;
                self.ring().push(&[], Some((&memfd, &fds)), deadline)
            };
            if pushed.is_ok() {
                fds.sent();
            }
            Ok(pushed)
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(PushError::Full)) => Err(PutError::Full(item)),
            Ok(Err(PushError::Io(e))) => Err(PutError::Failed(item, e.into())),
            Ok(Err(PushError::Corrupt(why))) => Err(PutError::Failed(item, Error::Protocol(why))),
            Err(e) => Err(PutError::Failed(item, e)),
        }
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    /// - [`Error::Disconnected`]: the queue is empty and no other handle exists anywhere, so
    ///   none can ever arrive (the waiting handle cannot put while it waits).
    /// - [`Error::Decode`]: the item's bytes do not decode as a `T` (it is consumed).
    /// - [`Error::Closed`]: this handle was closed.
    /// - [`Error::Protocol`]: the queue's shared memory is corrupt.
    pub fn get(&self) -> Result<T> {
        self.get_until(None)?.ok_or(Error::Timeout)
    }

    /// Takes the oldest item if there is one now; `Ok(None)` if the queue is empty, even when
    /// no other handle exists (this one can still put).
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// q.put(2)?;
    /// let mut items = Vec::new();
    /// while let Some(x) = q.try_get()? {
    ///     items.push(x);
    /// }
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](Self::get), but never [`Error::Disconnected`].
    pub fn try_get(&self) -> Result<Option<T>> {
        self.get_until(Some(Instant::now()))
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none came in time, even when no other handle exists (this one can
    /// still put); otherwise as [`get`](Self::get), but never [`Error::Disconnected`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_until(parking::deadline(timeout))?
            .ok_or(Error::Timeout)
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        with_buf(
            |buf| match self.ring().pop(buf, deadline, own_process_identity()) {
                Ok(Popped::Inline) => fds::receive(Vec::new(), || codec::decode(buf))
                    .map(Some)
                    .map_err(Error::from),
                Ok(Popped::Side(bytes, item_fds)) => {
                    fds::receive(item_fds, || codec::decode(bytes.as_slice()))
                        .map(Some)
                        .map_err(Error::from)
                }
                Err(PopError::Empty) => Ok(None),
                Err(PopError::Disconnected) => Err(Error::Disconnected),
                Err(PopError::Corrupt(why)) => Err(Error::Protocol(why)),
            },
        )
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self::from_shared(self.shared.clone())
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Keeps the sending process counted as a holder while a lasting message (a `Process` or
/// pool argument) carrying a queue exists.
struct QueuePin {
    shared: Arc<Shared>,
}

/// Counts a handle inside a passing message (a queue item, a pipe message) as on its way
/// until it is decoded; undone if the message is dropped undelivered.
struct InFlight {
    shared: Arc<Shared>,
    sent: AtomicBool,
}

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        shared.ring.departed();
        Self {
            shared,
            sent: AtomicBool::new(false),
        }
    }
}

impl Pin for InFlight {
    fn sent(&self) {
        self.sent.store(true, SeqCst);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.sent.load(SeqCst) {
            self.shared.ring.arrived();
        }
    }
}

impl QueuePin {
    fn new(shared: Arc<Shared>) -> Self {
        shared.ring.hold(own_process_identity());
        Self { shared }
    }
}

impl Pin for QueuePin {
    fn hand_to(&self, identity: u64) {
        // Counted for the receiver until it exits: its own handles come and go on top.
        self.shared.ring.pin(identity);
    }
}

impl Drop for QueuePin {
    fn drop(&mut self) {
        self.shared.ring.release(own_process_identity());
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let ring = self.ring();
        let shared = self.shared.clone();
        let (seg, passing) = fds::attach_pinned(ring.segment().as_fd(), |passing| {
            Some(if passing {
                Box::new(InFlight::new(shared)) as Box<dyn Pin>
            } else {
                Box::new(QueuePin::new(shared))
            })
        })
        .map_err(serde::ser::Error::custom)?;
        let (tx, rx) = ring.side_fds();
        let tx = fds::attach(tx).map_err(serde::ser::Error::custom)?;
        let rx = fds::attach(rx).map_err(serde::ser::Error::custom)?;
        (seg, tx, rx, passing).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (seg, tx, rx, passing) = <(u32, u32, u32, bool)>::deserialize(d)?;
        let seg = Segment::from_fd(fds::take(seg).map_err(D::Error::custom)?, Kind::Queue)
            .map_err(D::Error::custom)?;
        let tx = fds::take(tx).map_err(D::Error::custom)?;
        let rx = fds::take(rx).map_err(D::Error::custom)?;
        let ring = Ring::from_parts(seg, tx, rx).map_err(D::Error::custom)?;
        let queue = Self::from_shared(Arc::new(Shared { ring }));
        if passing {
            // Counted as a holder now (above), so no longer as on its way.
            queue.ring().arrived();
        }
        Ok(queue)
    }
}

/// A queue with only `put`, `get`, `empty` and `close`, like `multiprocessing.SimpleQueue`
/// (here it is the same machinery as [`Queue`], unbounded). Its `get` has the same
/// non-blocking and bounded forms as `Queue`'s, [`try_get`](Self::try_get) and
/// [`get_timeout`](Self::get_timeout), with the same errors.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let q = multiproc::SimpleQueue::new()?;
/// q.put(7u8)?;
/// assert_eq!(q.get()?, 7);
/// assert!(q.empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T: Data> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<Self> {
        Ok(Self {
            inner: Queue::new()?,
        })
    }

    /// Puts an item (see [`Queue::put`]).
    ///
    /// # Errors
    /// As [`Queue::put`], which gives the item back.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.inner.put(item)
    }

    /// Takes the oldest item, waiting for one (see [`Queue::get`]).
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.inner.get()
    }

    /// Takes the oldest item if there is one now; `Ok(None)` if the queue is empty, even when
    /// no other handle exists (this one can still put). See [`Queue::try_get`].
    ///
    /// # Errors
    /// As [`Queue::try_get`]: as [`get`](Self::get), but never [`Error::Disconnected`].
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// assert_eq!(q.try_get()?, None);
    /// q.put(1u8)?;
    /// q.put(2)?;
    /// let mut items = Vec::new();
    /// while let Some(x) = q.try_get()? {
    ///     items.push(x);
    /// }
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<Option<T>> {
        self.inner.try_get()
    }

    /// Takes the oldest item, waiting at most `timeout`. See [`Queue::get_timeout`].
    ///
    /// # Errors
    /// As [`Queue::get_timeout`]: [`Error::Timeout`] if none came in time, even when no other
    /// handle exists (this one can still put); otherwise as [`get`](Self::get), but never
    /// [`Error::Disconnected`].
    ///
    /// # Examples
    /// ```
    /// # multiproc::init();
    /// use std::time::Duration;
    ///
    /// let q = multiproc::SimpleQueue::new()?;
    /// let waited = q.get_timeout(Duration::from_millis(10));
    /// assert!(matches!(waited, Err(multiproc::Error::Timeout)));
    /// q.put("late".to_string())?;
    /// assert_eq!(q.get_timeout(Duration::from_secs(1))?, "late");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.get_timeout(timeout)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// Closes this handle (see [`Queue::close`]).
    pub fn close(&self) {
        self.inner.close()
    }
}

/// A [`Queue`] that also counts unfinished items, like `multiprocessing.JoinableQueue`:
/// consumers call [`task_done`](Self::task_done) for every item they took, and
/// [`join`](Self::join) waits until all items put so far are done. It dereferences to its
/// `Queue` for `put`, `get` and the rest.
///
/// # Examples
/// ```
/// # multiproc::init();
/// let q = multiproc::JoinableQueue::new()?;
/// q.put(1u32)?;
/// let item = q.get()?;
/// q.task_done()?;
/// q.join(); // nothing outstanding
/// # let _ = item;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<T: Data> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<Self> {
        Ok(Self {
            inner: Queue::new()?,
        })
    }

    /// A joinable queue of at most `maxsize` items.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Ok(Self {
            inner: Queue::bounded(maxsize)?,
        })
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as done.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        if self.inner.ring().task_done() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "task_done() called more times than items were put".into(),
            ))
        }
    }

    /// Waits until every item put so far has been marked done.
    pub fn join(&self) {
        self.inner.ring().join(None);
    }

    /// Like [`join`](Self::join), waiting at most `timeout`, as every `join_timeout` does.
    ///
    /// # Errors
    /// [`Error::Timeout`] if items put are not all done yet (nothing is lost: join again).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1u8)?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(5)), Err(multiproc::Error::Timeout)));
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        match self.inner.ring().join(parking::deadline(timeout)) {
            true => Ok(()),
            false => Err(Error::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_that_does_not_decode_is_an_error_and_the_queue_goes_on() {
        let q: Queue<String> = Queue::new().unwrap();
        // A length prefix far beyond the bytes that follow.
        q.ring().push(&[0xff; 12], None, None).ok().unwrap();
        q.put("fine".into()).unwrap();
        assert!(matches!(q.get(), Err(Error::Decode(_))));
        assert_eq!(q.get().unwrap(), "fine");
    }
}
