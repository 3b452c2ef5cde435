//! The MPI job this process belongs to, and the library's one door: start-up under `mpirun`,
//! every call into MPI one thread at a time ([`with`]), messages of any size sent without
//! blocking ([`Posts`]) and received whole ([`take`]), the pace of a thread that polls
//! ([`Pacer`]), and the end of the job.
//!
//! MPI has no descriptor to wait on: a thread that expects a message must ask for it. So the
//! threads that talk to other ranks poll — continuously for a short while after anything
//! happened (an answer that follows a request comes within tens of µs), then less and less
//! often, down to once a millisecond when idle: an idle rank costs about 1.5 % of a core
//! (Open MPI's own blocking receive would spin a whole one, and the workers need those cores).

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mpi::Threading;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};

use crate::error::{Error, Result};
use crate::pool::lock;

/// Where this process stands in the job.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub(crate) rank: u32,
    pub(crate) size: u32,
    pub(crate) host: String,
    /// Whether MPI lets any thread call it, one at a time (`Threading::Serialized` or better):
    /// what rank 0's pool threads need.
    pub(crate) any_thread: bool,
    /// The process that joined the job. A forked copy of it (a `Fork` pool's worker) is not a
    /// rank: it must not touch the MPI state it inherited.
    pid: u32,
}

/// Set once MPI is initialized (in rank 0 and in the agents).
static WORLD: OnceLock<World> = OnceLock::new();

/// The initialized library; `None` before `start` and after the end of the job. Every call into
/// MPI holds this lock (`Threading::Serialized`: one thread at a time, any thread).
static LIBRARY: Mutex<Option<Universe>> = Mutex::new(None);

/// The job, if this process is one of its ranks and MPI is initialized (in this process, not
/// in one it was forked from).
pub(crate) fn world() -> Option<&'static World> {
    WORLD.get().filter(|w| w.pid == std::process::id())
}

/// The job of this process, or of the rank it was forked from: where it runs, for
/// [`rank`](super::rank) and [`size`](super::size). Never for talking to MPI ([`world`]).
pub(crate) fn placement() -> Option<&'static World> {
    WORLD.get()
}

/// Whether `mpirun` (Open MPI's or MPICH's) started this process as one of a job's ranks.
pub(crate) fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Initializes MPI if `mpirun` started this process; returns where it stands. `None` when it
/// did not, or when the program initialized MPI itself first.
pub(crate) fn initialize() -> Option<&'static World> {
    if !launched_by_mpirun() {
        return None;
    }
    let (universe, granted) = mpi::initialize_with_threading(Threading::Serialized)?;
    let comm = universe.world();
    let world = World {
        rank: comm.rank() as u32,
        size: comm.size() as u32,
        host: mpi::environment::processor_name().unwrap_or_else(|_| "?".into()),
        any_thread: granted >= Threading::Serialized,
        pid: std::process::id(),
    };
    *lock(&LIBRARY) = Some(universe);
    Some(WORLD.get_or_init(|| world))
}

/// Runs `f` with the world communicator, holding the library's lock; `None` once the job has
/// ended here (or before it began).
pub(crate) fn with<R>(f: impl FnOnce(&SimpleCommunicator) -> R) -> Option<R> {
    world()?;
    let library = lock(&LIBRARY);
    library.as_ref()?;
    Some(f(&SimpleCommunicator::world()))
}

/// Ends this process's part in the job (`MPI_Finalize`); every later [`with`] is `None`. Sends
/// still under way are waited for (at most `patience`), then abandoned.
pub(crate) fn finalize(posts: &mut Posts, patience: Duration) {
    posts.settle(Instant::now() + patience);
    posts.abandon();
    let universe = lock(&LIBRARY).take();
    // Dropping the universe finalizes.
    drop(universe);
}

/// Aborts the whole job, every rank, with `code`: for a rank that cannot go on and whose
/// silence would leave the others waiting.
pub(crate) fn abort(code: i32) -> ! {
    let _ = with(|comm| comm.abort(code));
    std::process::exit(code)
}

/// The most bytes one MPI message carries (its count is a C `int`); larger messages go as
/// several. A test may lower it (`MULTIPROC_MPI_PIECE`, in bytes) to exercise that path.
fn piece_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("MULTIPROC_MPI_PIECE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n >= 16)
            .unwrap_or(1 << 30)
            .min(i32::MAX as usize)
    })
}

/// A message's first piece starts with its whole length, so that the receiver knows how many
/// pieces follow (they follow in order: MPI does not reorder messages between two ranks with
/// the same tag).
const LENGTH_PREFIX: usize = 8;

/// Sends under way. The buffers stay here, unmoved, until MPI is done with them; a thread that
/// posts must call [`progress`](Self::progress) often while any are left (large messages move
/// only while their sender calls into MPI).
#[derive(Default)]
pub(crate) struct Posts {
    pending: VecDeque<Posted>,
}

// SAFETY: a `Posted`'s request is a handle MPI lets any thread complete (the library is
// initialized for `Threading::Serialized`, and every call holds `LIBRARY`); its buffer is plain
// bytes owned here.
unsafe impl Send for Posted {}

struct Posted {
    request: Request<'static, [u8], StaticScope>,
    /// The bytes `request` reads: a forgotten vector, freed once MPI is done with them
    /// (`progress`), never while a request may read them.
    bytes: Forgotten,
}

/// A vector's raw parts, its memory owned by nobody until [`release`] rebuilds it.
struct Forgotten {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

/// A message being written: its buffer starts with room for the length prefix that
/// [`Posts::post`] fills in, so that a message of one piece is sent as it was written, never
/// copied behind a prefix.
#[derive(Clone)]
pub(crate) struct Outgoing(Vec<u8>);

impl Outgoing {
    pub(crate) fn new() -> Self {
        Outgoing(vec![0; LENGTH_PREFIX])
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.len() == LENGTH_PREFIX
    }

    /// The buffer to append to (its prefix must be left alone).
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Posts {
    pub(crate) const fn new() -> Self {
        Self {
            pending: VecDeque::new(),
        }
    }

    /// Sends `message` to `rank` with `tag`, without waiting for it to be received: as it is
    /// when it fits one MPI message, in pieces (copied) when it does not.
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the job has ended here.
    pub(crate) fn post(&mut self, rank: u32, tag: i32, message: Outgoing) -> Result<()> {
        let mut bytes = message.0;
        let length = (bytes.len() - LENGTH_PREFIX) as u64;
        bytes[..LENGTH_PREFIX].copy_from_slice(&length.to_le_bytes());
        let limit = piece_limit();
        if bytes.len() <= limit {
            return self.post_piece(rank, tag, bytes);
        }
        for piece in bytes.chunks(limit) {
            self.post_piece(rank, tag, piece.to_vec())?;
        }
        Ok(())
    }

    fn post_piece(&mut self, rank: u32, tag: i32, bytes: Vec<u8>) -> Result<()> {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        let bytes = Forgotten {
            ptr: NonNull::new(bytes.as_mut_ptr()).unwrap_or(NonNull::dangling()),
            len: bytes.len(),
            capacity: bytes.capacity(),
        };
        // SAFETY: `bytes` are a forgotten vector's parts: `len` initialized bytes at `ptr`,
        // which nothing else refers to; they are freed only by `release`, once the request
        // reading them has completed (or the send failed to start), and leaked for good if the
        // request is abandoned: they outlive every use MPI makes of them, and nothing writes to
        // them meanwhile.
        let view: &'static [u8] =
            unsafe { std::slice::from_raw_parts(bytes.ptr.as_ptr(), bytes.len) };
        let request = with(|comm| {
            comm.process_at_rank(rank as i32)
                .immediate_send_with_tag(StaticScope, view, tag)
        });
        let Some(request) = request else {
            // SAFETY: no request was made: nothing reads the bytes.
            unsafe { release(bytes) };
            return Err(Error::Disconnected);
        };
        self.pending.push_back(Posted { request, bytes });
        Ok(())
    }

    /// Lets MPI move the sends along; forgets those that are done. Returns whether any is left.
    pub(crate) fn progress(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let _ = with(|_| {
            let mut left = VecDeque::with_capacity(self.pending.len());
            for Posted { request, bytes } in self.pending.drain(..) {
                match request.test() {
                    // SAFETY: the request that read the bytes has completed.
                    Ok(_) => unsafe { release(bytes) },
                    Err(request) => left.push_back(Posted { request, bytes }),
                }
            }
            self.pending = left;
        });
        !self.pending.is_empty()
    }

    /// Lets the sends under way complete, until `until` at most; returns whether they did.
    pub(crate) fn settle(&mut self, until: Instant) -> bool {
        while self.progress() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Gives up on the sends under way (the job is ending): their buffers are leaked, since
    /// MPI may still read them, and their requests forgotten.
    fn abandon(&mut self) {
        for posted in self.pending.drain(..) {
            std::mem::forget(posted);
        }
    }
}

impl Drop for Posts {
    /// Sends still under way when their owner goes (the job ended here, say) are given up on,
    /// as in [`finalize`]: MPI may still read their buffers, so those are leaked.
    fn drop(&mut self) {
        self.progress();
        self.abandon();
    }
}

/// Frees the bytes of a send.
///
/// # Safety
/// `bytes` are the parts of a vector forgotten in `post_piece`, and no request that reads them
/// is pending.
unsafe fn release(bytes: Forgotten) {
    // SAFETY: the caller's promise: a forgotten vector's parts, which nothing reads any more.
    drop(unsafe { Vec::from_raw_parts(bytes.ptr.as_ptr(), bytes.len, bytes.capacity) });
}

/// A message received whole, or what was wrong with it: the error is its sender's.
pub(crate) struct Received {
    pub(crate) source: u32,
    pub(crate) bytes: Result<Body>,
}

/// A message's bytes, as received: its length prefix stays in front (dropping it would move
/// the whole message) and is skipped when read.
pub(crate) struct Body(Vec<u8>);

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.get(LENGTH_PREFIX..).unwrap_or_default()
    }
}

/// How long the rest of a message may keep its receiver waiting between two of its pieces: the
/// sender posts every piece at once, so they follow at the speed of the link.
const PIECE_TIMEOUT: Duration = Duration::from_secs(60);

/// Takes the next message that has arrived with `tag` (any tag: `None`) from any rank, without
/// waiting for one; the pieces of a large message that follow its first are waited for (at
/// most [`PIECE_TIMEOUT`] each, with the library's lock released between looks). The length a
/// message announces is not trusted: memory grows with what arrives. A message whose sender and
/// tag `ignored` says are not listened to (a rank that broke the protocol; pools' messages at
/// the end of the job) is dropped unread, its bytes empty: nothing of it is parsed, leftover
/// pieces included.
///
/// # Errors
/// [`Error::Disconnected`] once the job has ended here. A message that does not start with its
/// length, is longer than it says, or is cut short is [`Error::Protocol`] in its
/// [`Received::bytes`]: its sender's fault.
pub(crate) fn take(
    tag: Option<i32>,
    ignored: impl Fn(u32, i32) -> bool,
) -> Result<Option<Received>> {
    let first = with(|comm| {
        let any = comm.any_process();
        let probed = match tag {
            Some(tag) => any.immediate_matched_probe_with_tag(tag),
            None => any.immediate_matched_probe(),
        };
        probed.map(|(message, status)| {
            let (source, tag) = (status.source_rank(), status.tag());
            (source, tag, (message, status).matched_receive_vec::<u8>().0)
        })
    })
    .ok_or(Error::Disconnected)?;
    let Some((source, tag, first)) = first else {
        return Ok(None);
    };
    let bytes = if ignored(source as u32, tag) {
        Ok(Body(Vec::new()))
    } else {
        rest_of(source, tag, first)
    };
    if let Err(Error::Disconnected) = bytes {
        return Err(Error::Disconnected);
    }
    Ok(Some(Received {
        source: source as u32,
        bytes,
    }))
}

/// Takes the messages of `tag` (any tag: `None`) as they arrive and hands each to `handle`
/// (with `posts`, to answer), until `handle` returns a value, or until `until` passes
/// (`Ok(None)`). Between looks it lets `posts` move and naps as a [`Pacer`] says. The one wait
/// loop of the handshakes and of the ends of pools and of the job.
///
/// # Errors
/// Those of [`take`], and `handle`'s.
pub(crate) fn wait_for<T>(
    tag: Option<i32>,
    posts: &mut Posts,
    until: Option<Instant>,
    ignored: impl Fn(u32, i32) -> bool,
    mut handle: impl FnMut(&mut Posts, Received) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut pacer = Pacer::default();
    loop {
        posts.progress();
        match take(tag, &ignored)? {
            Some(received) => {
                pacer.event();
                if let Some(done) = handle(posts, received)? {
                    return Ok(Some(done));
                }
            }
            None if until.is_some_and(|until| Instant::now() >= until) => return Ok(None),
            None => std::thread::sleep(pacer.next_wait()),
        }
    }
}

/// The whole of a message whose first piece, from `source` with `tag`, is `first`.
fn rest_of(source: i32, tag: i32, mut bytes: Vec<u8>) -> Result<Body> {
    let protocol = |what: &str| {
        Err(Error::Protocol(format!(
            "a message from rank {source} {what}"
        )))
    };
    let Some(length) = bytes.get(..LENGTH_PREFIX) else {
        return protocol("lacks its length");
    };
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default())
        .saturating_add(LENGTH_PREFIX as u64);
    let mut until = Instant::now() + PIECE_TIMEOUT;
    while (bytes.len() as u64) < length {
        let piece = with(|comm| {
            comm.process_at_rank(source)
                .immediate_matched_probe_with_tag(tag)
                .map(|probed| probed.matched_receive_vec::<u8>().0)
        })
        .ok_or(Error::Disconnected)?;
        match piece {
            Some(piece) => {
                bytes.extend_from_slice(&piece);
                until = Instant::now() + PIECE_TIMEOUT;
            }
            None if Instant::now() >= until => return protocol("was cut short"),
            None => std::thread::yield_now(),
        }
    }
    if bytes.len() as u64 > length {
        return protocol("is longer than it says");
    }
    Ok(Body(bytes))
}

/// How long a polling thread waits before it looks again: not at all for [`SPIN`] after the
/// last thing that happened, then from [`FIRST_NAP`] doubling up to [`LONGEST_NAP`].
#[derive(Debug)]
pub(crate) struct Pacer {
    last_event: Instant,
    nap: Duration,
}

/// How long a thread keeps polling flat out after something happened.
const SPIN: Duration = Duration::from_micros(300);
const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest wait between two looks: an idle rank's cost (about 1.5 % of a core measured),
/// and what a message to an idle rank may wait before it is seen.
pub(crate) const LONGEST_NAP: Duration = Duration::from_millis(1);

impl Default for Pacer {
    fn default() -> Self {
        Self {
            last_event: Instant::now(),
            nap: FIRST_NAP,
        }
    }
}

impl Pacer {
    /// Something happened: poll flat out again.
    pub(crate) fn event(&mut self) {
        self.last_event = Instant::now();
        self.nap = FIRST_NAP;
    }

    /// How long to wait before the next look (zero: yield the core, then look).
    pub(crate) fn next_wait(&mut self) -> Duration {
        if self.last_event.elapsed() < SPIN {
            return Duration::ZERO;
        }
        let nap = self.nap;
        self.nap = (nap * 2).min(LONGEST_NAP);
        nap
    }
}
