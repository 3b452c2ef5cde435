//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature; not part of the API).
//!
//! Each function takes arbitrary bytes, plays them as what another process could have written,
//! and drives the real decoding code with them: real sockets, real shared memory, the crate's
//! own readers. A malformed input must end as an error value inside the crate; a panic, abort,
//! hang or out-of-bounds access is a finding.
//!
//! - [`frames`]: a socket stream read by a `wire::Channel` (`fill`, `next_frame`, `recv`), in
//!   blocking or non-blocking mode, with a descriptor riding on one of its bytes.
//! - [`messages`]: one frame as the handshake and the batch headers read it: `Hello` (child),
//!   `bootstrap::check_ready` (parent: `Ready`, `Refuse`, anything else), `TaskHeader::read`,
//!   `ResultsHeader::read` and the one outcome of a `Process`.
//! - [`outcomes`]: a `RESULTS` payload, its outcomes decoded one after another as the pool's
//!   sinks do (`codec::decode_outcome` for several result types, `Failure` into `Error`).
//! - [`codec`]: the codec on typical user types, one value or values back to back. A value
//!   that decodes must encode, and its encoding must decode to a value with the same encoding.
//! - [`pipe`]: a `Connection` received in a message, reading a stream of frames whose payloads
//!   are user messages, some with handles inside.
//! - [`queue`]: a `Queue` received from another process that wrote its shared memory (head,
//!   tail, counts, ring size, ring bytes), perhaps left its lock to a dead thread, and sent side
//!   messages; items are taken until it is empty, then one is put. Records are at least 8
//!   bytes, so a queue that nobody puts to yielding more items than its memory holds is a bug
//!   (the harness panics).
//! - [`handles`]: a received lock, semaphore, event, condition, barrier, value, array, queue or
//!   connection whose memory object has input-chosen size and content (tag and size checks,
//!   `Cells::from_segment`, `Ring::from_parts`), then used once without waiting.
//! - [`manager`]: a connection to a manager's server, as a stranger that has not proven it
//!   knows the key (the handshake: frame limits, the answer's decoding), or as a client that
//!   is in (requests decoded and run on objects of every kind, blocking ones included, then
//!   the client gone with what it held).
//!
//! - [`mpi_records`] (feature `mpi` as well): the records MPI ranks exchange
//!   (`mpi::message`), and a chunk from rank 0 that passes the agent's offset check, cut as
//!   the agent's pool cuts it.
//!
//! Not covered, by design: the worker's jump to the trampoline the parent names
//! (`task::entry_at`). The parent is the same executable, checked in the handshake before any
//! task is accepted, so that offset is not input from an untrusted peer.
//!
//! Each entry point bounds its loops by what the input can hold, and panics only where a
//! loop going further would itself be a bug.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mem::segment::{CELL_OFFSET, Kind};
use crate::sync::lock::LockCell;
use crate::sys;
use crate::sys::shm::{Mapping, SealedBytes};
use crate::wire::message::{Forked, Hello, Preload, Preloaded, ResultsHeader, TaskHeader, kind};
use crate::wire::{Channel, Frame, HEADER, Io, codec, fds};
use crate::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Event, Lock, Queue, RLock, RawArray,
    RawValue, Semaphore, Value,
};

/// Serves `[mode, stream…]` as a manager's server serves one client connection: through the
/// handshake first if bit 0 of `mode` is set, else as a client already in. With bit 1 the
/// stream is made of requests, each `[len, payload…]` sent as a request frame of that payload
/// (so that the search spends its time on requests, not on frame headers). The client writes
/// the stream, ends its half of the connection and reads the server's answers until it closes.
pub fn manager(data: &[u8]) {
    let mut data = data;
    let mode = byte(&mut data);
    let handshake = mode & 1 == 1;
    let framed = mode & 2 == 2;
    let mut stream = Vec::new();
    if framed {
        while !data.is_empty() {
            let len = (byte(&mut data) as usize).min(data.len());
            let (payload, rest) = data.split_at(len);
            stream.extend_from_slice(&(len as u32).to_le_bytes());
            stream.extend_from_slice(&[crate::manager::REQUEST_FRAME, 0, 0, 0]);
            stream.extend_from_slice(payload);
            data = rest;
        }
        data = &stream;
    }
    let Ok((ours, theirs)) = sys::fd::socketpair() else {
        return;
    };
    let theirs = std::os::unix::net::UnixStream::from(theirs);
    let Ok(mut reader) = theirs.try_clone() else {
        return;
    };
    // Read apart from the writing, so that neither side ever waits on a full buffer.
    let reading = std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let bytes = data.to_vec();
    let writing = std::thread::spawn(move || {
        use std::io::Write;
        let mut theirs = theirs;
        let _ = theirs.write_all(&bytes);
        let _ = theirs.shutdown(std::net::Shutdown::Write);
    });
    if let Ok(chan) = Channel::new(ours, Io::Blocking) {
        crate::manager::fuzz(chan, handshake, b"the fuzzed manager's key");
    }
    let _ = writing.join();
    let _ = reading.join();
}

/// Reads `data` as the messages between MPI ranks: records of rank 0 to an agent (a chunk's
/// offsets checked, then the chunk cut at every item, as a worker's death makes the agent's
/// pool cut it), then records of an agent to rank 0. Feature `mpi` too.
#[cfg(feature = "mpi")]
pub fn mpi_records(data: &[u8]) {
    crate::mpi::fuzz(data);
}

/// Feeds `data` to a `Channel` as a socket stream: `[flags, fd_at, stream…]`. Flags: bit 0
/// sends a descriptor with byte `fd_at` of the stream, bit 1 reads in non-blocking mode.
pub fn frames(data: &[u8]) {
    let mut data = data;
    let (flags, fd_at) = (byte(&mut data), byte(&mut data));
    let _ = read_frames(data, flags, fd_at, |_| Ok(()));
}

/// Reads one frame `[kind, payload…]` as the handshake and batch headers do.
pub fn messages(data: &[u8]) {
    let mut data = data;
    let kind = byte(&mut data);
    let mut stream = Vec::with_capacity(HEADER + data.len());
    stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
    stream.extend_from_slice(&[kind, 0, 0, 0]);
    stream.extend_from_slice(data);
    let _ = read_frames(&stream, 0, 0, |frame| {
        let _ = message(&frame);
        Ok(())
    });
}

/// Decodes a results payload `[type, ResultsHeader, outcomes…]`.
pub fn outcomes(data: &[u8]) {
    let mut data = data;
    match byte(&mut data) % 7 {
        0 => results::<u64>(data),
        1 => results::<String>(data),
        2 => results::<Vec<u64>>(data),
        3 => results::<Option<(i32, String)>>(data),
        4 => results::<Shape>(data),
        5 => results::<HashMap<String, Vec<u32>>>(data),
        _ => results::<()>(data), // a pool initializer's outcome
    }
}

/// Decodes `[type, value bytes…]` as one of a few typical user types.
pub fn codec(data: &[u8]) {
    let mut data = data;
    match byte(&mut data) % 10 {
        0 => round_trip::<String>(data),
        1 => round_trip::<Vec<u64>>(data),
        2 => round_trip::<Option<(i32, String, bool)>>(data),
        3 => round_trip::<Shape>(data),
        4 => round_trip::<BTreeMap<u16, Option<char>>>(data),
        5 => round_trip::<(f64, i128, u16, char)>(data),
        6 => round_trip::<Vec<Vec<u8>>>(data),
        7 => round_trip::<(Box<str>, Box<[u8]>, [u32; 3])>(data),
        8 => round_trip::<crate::wire::message::Failure>(data),
        // Iteration order differs between two equal maps: decode only.
        _ => back_to_back::<HashMap<String, Vec<u32>>>(data),
    }
}

/// Receives a pipe end whose peer wrote `[flags, fd_at, stream…]` and closed it. Flags: bit 0
/// sends a descriptor with byte `fd_at` (bit 2: a memory object holding a lock, else a socket),
/// bit 1 is ignored (pipes read in blocking mode).
pub fn pipe(data: &[u8]) {
    let mut data = data;
    let (flags, fd_at) = (byte(&mut data), byte(&mut data));
    let _ = read_pipe(data, flags, fd_at);
}

/// Receives a queue whose memory another process rewrote:
/// `[flags, counters (7 × u64), side messages (n × [nonce (8), mode]), ring bytes…]`.
///
/// Flags: bits 0–1 the number of side messages; bits 2–3 the memory object's size (smallest,
/// or 8, 12, 16 KiB); bit 4 sets the ring size to fill the object to its end; all of bits
/// 5–7 leave the lock held by a thread that is gone (costs the 25 ms a waiter sleeps before it
/// looks). Counters are head, tail, items, maxsize, ring size, unfinished, untracked. Side
/// modes: 0 a bare nonce, 1 a sealed item, 2 an item open to writes, 3 a sealed item with a
/// socket.
pub fn queue(data: &[u8]) {
    let _ = take_all(data);
}

/// Receives a handle whose memory object is `[type, flags, size (u16), content…]`. Flags:
/// bit 0 writes the right kind tag and puts the content at the cell, else it starts at 0.
pub fn handles(data: &[u8]) {
    let mut data = data;
    let (pick, flags) = (byte(&mut data), byte(&mut data));
    let size = u16::from_le_bytes([byte(&mut data), byte(&mut data)]) as usize;
    let _ = handle(pick, flags, size, data);
}

// ----- frames, messages, outcomes -----

/// Writes `bytes` into a socket, reads it back with a `Channel` and gives `each` every frame.
/// A stream of `n` bytes holds at most `n / 8` frames: one more is a bug.
fn read_frames(
    bytes: &[u8],
    flags: u8,
    fd_at: u8,
    mut each: impl FnMut(Frame) -> Result<()>,
) -> Result<()> {
    let rx = stream(bytes, extra_fd(flags, fd_at)?)?;
    let mut ch = Channel::new(
        rx,
        if flags & 2 != 0 {
            Io::Polled
        } else {
            Io::Blocking
        },
    )?;
    let most = bytes.len() / HEADER;
    for _ in 0..=most {
        each(ch.recv(None)?)?;
    }
    panic!(
        "a stream of {} bytes gave more than {most} frames",
        bytes.len()
    );
}

/// What child and parent do with a frame of each kind.
fn message(frame: &Frame) -> Result<()> {
    let mut body = frame.payload();
    match frame.kind {
        kind::HELLO => drop(codec::decode::<Hello>(body)?),
        // A fork server's messages, both ways.
        kind::PRELOAD => {
            codec::decode::<Preload>(body)?;
        }
        kind::PRELOADED => drop(codec::decode::<Preloaded>(body)?),
        kind::FORKED => drop(codec::decode::<Forked>(body)?),
        // The items that follow go to the trampoline, which is not fuzzed (see above).
        kind::TASK => drop(TaskHeader::read(&mut body)?),
        kind::RESULTS => {
            ResultsHeader::read(&mut body)?;
            let _ = codec::decode_outcome::<(u64, String)>(&mut body)?.map_err(Error::from)?;
        }
        _ => drop(crate::bootstrap::check_ready(frame)?),
    }
    Ok(())
}

/// The supervisor's reading of a `RESULTS` payload, then the sinks' `job::decode_pieces`:
/// runs of values (plain numbers in one pass), failures, and, from the first outcome that does
/// not decode, a decode error for each item left. The supervisor trusts the header's count no
/// further than the chunk it sent; here, no further than one byte an outcome.
fn results<R: DeserializeOwned>(mut body: &[u8]) {
    let Ok(header) = ResultsHeader::read(&mut body) else {
        return;
    };
    let count = (header.count as usize).min(body.len() + 1);
    crate::pool::decode_pieces::<R>(0, count, body, Vec::new(), |_, piece| {
        if let crate::pool::Piece::Failed(e) = piece {
            drop(e.to_string());
        }
    });
}

// ----- codec -----

/// A user type with every serde shape: unit, tuple and struct variants, recursion.
#[derive(Debug, Serialize, Deserialize)]
enum Shape {
    Empty,
    Point(i32, i32),
    Named {
        name: String,
        tags: Vec<(u8, Option<char>)>,
    },
    Group(Vec<Shape>),
    Boxed(Option<Box<Shape>>),
}

/// Decodes `bytes` as one `T`, and as `T`s back to back. A value that decodes must encode, and
/// encoding is idempotent through a decode.
fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    back_to_back::<T>(bytes);
    let Ok(value) = codec::decode::<T>(bytes) else {
        return;
    };
    let once = codec::encode(&value).expect("a decoded value encodes");
    let again: T = codec::decode(&once).expect("a value's own encoding decodes");
    let twice = codec::encode(&again).expect("a decoded value encodes");
    assert!(once == twice, "encoding changed through a decode");
}

/// Items back to back, as in a pool chunk or a results frame.
fn back_to_back<T: DeserializeOwned>(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let before = bytes.len();
        if codec::decode_front::<T>(&mut bytes).is_err() || bytes.len() == before {
            return;
        }
    }
}

// ----- pipe -----

/// A user message, with handles inside.
#[derive(Serialize, Deserialize)]
enum Msg {
    Text(String),
    Numbers(Vec<u64>),
    Nested(Option<(u8, Vec<String>)>, bool),
    Map(HashMap<String, i64>),
    Float(f64, char),
    Pipe(Connection<u8>),
    Lock(Lock),
    Array(RawArray<u32>),
}

fn read_pipe(bytes: &[u8], flags: u8, fd_at: u8) -> Result<()> {
    let rx = stream(bytes, extra_fd(flags, fd_at)?)?;
    let handle = codec::encode(&(0u32, true, true))?;
    let mut conn: Connection<Msg> = fds::receive(vec![rx], || codec::decode(&handle))?;
    let most = bytes.len() / HEADER;
    for _ in 0..=most {
        match conn.recv() {
            Ok(_) | Err(Error::Decode(_)) => {}
            Err(_) => return Ok(()),
        }
    }
    panic!(
        "a stream of {} bytes gave more than {most} messages",
        bytes.len()
    );
}

// ----- queue -----

/// Where a queue segment's counters and ring start, found once from a real queue.
struct QueueLayout {
    counters: usize,
    ring: usize,
    /// Size of the memory object of a queue with the smallest ring (4096 bytes).
    size: usize,
}

/// Reads the layout off a real queue holding one known item, so that the harness follows
/// changes to `queue::ring` instead of copying its structs.
fn queue_layout() -> &'static QueueLayout {
    static LAYOUT: OnceLock<QueueLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let item: Vec<u8> = (100..124).collect();
        let q = Queue::<Vec<u8>>::with_ring_bytes(0, 4096).expect("a queue");
        q.put(item.clone()).expect("a put");
        let (_, mut fds) = export(&q).expect("an exported queue");
        let seg = File::from(fds.swap_remove(0));
        let mut bytes = vec![0; seg.metadata().expect("fstat").len() as usize];
        seg.read_exact_at(&mut bytes, 0).expect("a read");
        // The record: header (length 32, kind 1 = inline), the item (length, bytes).
        let mut record = vec![32, 0, 0, 0, 1, 0, 0, 0];
        record.extend_from_slice(&24u64.to_le_bytes());
        record.extend_from_slice(&item);
        let ring = bytes
            .windows(record.len())
            .position(|w| w == record)
            .expect("queue layout changed: update fuzzing.rs");
        let counters = CELL_OFFSET + std::mem::size_of::<LockCell>();
        let word = |i: usize| {
            let at = counters + 8 * i;
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        };
        assert!(
            (word(0), word(1), word(2)) == (0, 40, 1),
            "queue layout changed (head, tail, items): update fuzzing.rs"
        );
        QueueLayout {
            counters,
            ring,
            size: bytes.len(),
        }
    })
}

fn take_all(data: &[u8]) -> Result<()> {
    let layout = queue_layout();
    let mut data = data;
    let flags = byte(&mut data);
    let counters = split(&mut data, 7 * 8);
    let sides: Vec<(&[u8], u8)> = (0..flags & 3)
        .map(|_| (split(&mut data, 8), byte(&mut data)))
        .collect();
    let ring = data;

    // A real queue, sent away: its only handle is now the message. Its memory object is
    // either the smallest or ends on a page boundary, where reading past it faults.
    let pages = ((flags >> 2) & 3) as usize;
    let ring_bytes = match pages {
        0 => 4096,
        _ => ((pages + 1) * 4096 + 4096).saturating_sub(layout.size),
    };
    let (handle, fds) = export(&Queue::<Msg>::with_ring_bytes(0, ring_bytes)?)?;
    let file = File::from(fds[0].try_clone()?);
    let size = file.metadata()?.len() as usize;
    file.write_all_at(counters, layout.counters as u64)?;
    let room = size.saturating_sub(layout.ring).min(ring.len());
    file.write_all_at(&ring[..room], layout.ring as u64)?;
    if flags & 0x10 != 0 {
        let fill = (size.saturating_sub(layout.ring) & !7) as u64;
        file.write_all_at(&fill.to_le_bytes(), layout.counters as u64 + 32)?;
    }
    if flags >> 5 == 7 {
        // Thread id u32::MAX never exists: the holder is dead.
        file.write_all_at(&u64::MAX.to_le_bytes(), CELL_OFFSET as u64)?;
    }
    for (nonce, mode) in sides {
        let _ = side_message(fds[1].as_fd(), nonce, mode, ring);
    }
    drop(file);

    let q: Queue<Msg> = fds::receive(fds, || codec::decode(&handle))?;
    // Every record takes at least 8 bytes of the ring, which lies inside the object.
    let most = size / 8;
    for _ in 0..=most {
        match q.try_get() {
            Ok(Some(_)) | Err(Error::Decode(_)) => {}
            Ok(None) | Err(_) => {
                let _ = q.try_put(Msg::Numbers(vec![1, 2, 3]));
                let _ = q.try_get();
                return Ok(());
            }
        }
    }
    panic!("a queue of {size} bytes that nobody puts to gave more than {most} items");
}

/// Sends what a writer sends on the side socket: a nonce, perhaps with an item's memory.
fn side_message(tx: BorrowedFd<'_>, nonce: &[u8], mode: u8, item: &[u8]) -> io::Result<()> {
    let mut fds = Vec::new();
    match mode % 4 {
        0 => {}
        1 => fds.push(SealedBytes::seal(item)?),
        2 => fds.push(memory(item.len().max(1), None, item)?),
        _ => {
            fds.push(SealedBytes::seal(item)?);
            fds.push(sys::fd::socketpair()?.0);
        }
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    sys::fd::send(tx, nonce, &borrowed, true).map(drop)
}

// ----- handles -----

fn handle(pick: u8, flags: u8, size: usize, content: &[u8]) -> Result<()> {
    const KINDS: [Kind; 12] = [
        Kind::Lock,
        Kind::RLock,
        Kind::Semaphore,
        Kind::Semaphore,
        Kind::Event,
        Kind::Condition,
        Kind::Barrier,
        Kind::Value,
        Kind::Array,
        Kind::Array,
        Kind::Queue,
        Kind::Lock, // a connection: any memory object where a socket should be
    ];
    let pick = pick as usize % KINDS.len();
    let seg = memory(size, (flags & 1 != 0).then_some(KINDS[pick]), content)?;
    if pick == 10 && size >= CELL_OFFSET + 8 {
        // A queue with a live holder blocks its users, by design: keep the lock free.
        File::from(seg.try_clone()?).write_all_at(&[0; 8], CELL_OFFSET as u64)?;
    }
    let mut fds = vec![seg];
    let message = match pick {
        10 => {
            let (tx, rx) = sys::fd::seqpacket_pair()?;
            fds.extend([tx, rx]);
            codec::encode(&(0u32, 1u32, 2u32))?
        }
        11 => codec::encode(&(0u32, true, true))?,
        _ => codec::encode(&0u32)?,
    };
    let m = &message[..];
    fds::receive(fds, || -> Result<()> {
        match pick {
            0 => drop(codec::decode::<Lock>(m)?.try_acquire()),
            1 => drop(codec::decode::<RLock>(m)?.try_acquire()),
            2 => {
                let s = codec::decode::<Semaphore>(m)?;
                let _ = s.get_value();
                drop(s.try_acquire());
            }
            3 => drop(codec::decode::<BoundedSemaphore>(m)?.try_acquire()),
            4 => _ = codec::decode::<Event>(m)?.is_set(),
            5 => {
                if let Some(guard) = codec::decode::<Condition>(m)?.try_acquire()? {
                    guard.notify_all();
                }
            }
            6 => {
                let b = codec::decode::<Barrier>(m)?;
                let _ = (b.parties(), b.n_waiting(), b.broken());
            }
            7 => {
                let _ = codec::decode::<RawValue<u64>>(m)?.get();
                let _ = codec::decode::<Value<i32>>(m)?.try_lock()?.map(|g| g.get());
            }
            8 => drop(codec::decode::<RawArray<u16>>(m)?.to_vec()),
            9 => {
                let a = codec::decode::<Array<f64>>(m)?;
                let _ = a.try_lock()?.map(|g| g.to_vec());
            }
            10 => {
                let q = codec::decode::<Queue<u8>>(m)?;
                let _ = q.try_get();
                let _ = q.try_put(7);
            }
            _ => drop(codec::decode::<Connection<u8>>(m)?.try_recv()),
        }
        Ok(())
    })
}

// ----- helpers -----

/// Takes up to `n` bytes off the front of `data`.
fn split<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

/// Takes one byte off the front of `data` (0 when there is none).
fn byte(data: &mut &[u8]) -> u8 {
    split(data, 1).first().copied().unwrap_or(0)
}

/// The descriptor `flags` asks to send along a stream, and where.
fn extra_fd(flags: u8, at: u8) -> io::Result<Option<(usize, OwnedFd)>> {
    Ok(match (flags & 1 != 0, flags & 4 != 0) {
        (false, _) => None,
        (true, false) => Some((at as usize, sys::fd::socketpair()?.0)),
        (true, true) => Some((at as usize, memory(4096, Some(Kind::Lock), &[])?)),
    })
}

/// The reading end of a stream socket whose peer wrote `bytes` (as many as the socket buffer
/// holds: writing never blocks) with `fd` on byte `at`, then closed its end.
fn stream(bytes: &[u8], fd: Option<(usize, OwnedFd)>) -> io::Result<OwnedFd> {
    let (tx, rx) = sys::fd::socketpair()?;
    let tx = tx.as_fd();
    match fd {
        Some((at, fd)) if !bytes.is_empty() => {
            let at = at.min(bytes.len() - 1);
            if send_all(tx, &bytes[..at], &[])? {
                send_all(tx, &bytes[at..], &[fd.as_fd()])?;
            }
        }
        _ => {
            send_all(tx, bytes, &[])?;
        }
    }
    Ok(rx)
}

/// Sends `bytes` (descriptors on the first), without blocking; `false` if the buffer filled.
fn send_all(
    sock: BorrowedFd<'_>,
    mut bytes: &[u8],
    mut fds: &[BorrowedFd<'_>],
) -> io::Result<bool> {
    while !bytes.is_empty() {
        match sys::fd::send(sock, bytes, fds, true) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                bytes = &bytes[n..];
                fds = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A shared-memory object of `size` bytes: `kind`'s tag then `content` at the cell, or
/// `content` from the start. Size 0 gives an empty object.
fn memory(size: usize, kind: Option<Kind>, content: &[u8]) -> io::Result<OwnedFd> {
    if size == 0 {
        return SealedBytes::seal(&[]);
    }
    let file = File::from(
        Mapping::anonymous("multiproc-fuzz", size)?
            .as_fd()
            .try_clone_to_owned()?,
    );
    let mut at = 0;
    if let Some(kind) = kind {
        let tag = (kind as u64).to_le_bytes();
        file.write_all_at(&tag[..size.min(8)], 0)?;
        at = CELL_OFFSET;
    }
    let room = size.saturating_sub(at).min(content.len());
    file.write_all_at(&content[..room], at as u64)?;
    Ok(file.into())
}

/// Encodes `value` as a message would carry it: the bytes and the descriptors.
fn export<T: Serialize>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut set = fds::FdSet::default();
    let bytes = fds::collect(&mut set, || codec::encode(value))?;
    Ok((bytes, set.into_fds()))
}
