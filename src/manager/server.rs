//! The manager's server: a child process (started like any `Process`, so it dies with its
//! owner and is reaped) that keeps the shared objects and serves each client connection on a
//! thread of its own, so that one slow client never stalls the others.
//!
//! Objects are kept as bytes (keys and values encoded by the clients; a hosted object also
//! decoded, see `hosted.rs`), each behind its own lock: an operation, `update` included, runs
//! whole under that lock, which is what makes a read-modify-write atomic where Python's manager
//! loses updates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::auth;
use super::client::Endpoint;
use super::protocol::{
    Answer, Bytes, DictOp, Executable, HANDSHAKE_FRAME, HANDSHAKE_TIMEOUT, Kind, ListOp, Op,
    QueueOp, Reply, Request, VERSION, ValueOp, WATCH, kind, split_answer,
};
use crate::error::{Error, Result};
use crate::pool::lock;
use crate::sys;
use crate::wire::fds;
use crate::wire::{Channel, Io, MAX_FRAME, codec};

mod primitives;
mod slot;

use slot::{Slot, Stop};

/// What the server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) listener: Listener,
    pub(crate) key: Vec<u8>,
    /// How long an object no process holds is kept before it is freed (see `lease.rs`).
    pub(crate) linger: Duration,
}

/// The socket the server accepts clients on, made by the owner (so that an address already in
/// use is the owner's error, at once) and handed to the server process (its descriptor travels
/// with the message).
pub(crate) enum Listener {
    Local(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// The next client's connection: its channel, not yet through the handshake. It carries
    /// no descriptors either way (requests and replies are data), so a stranger cannot park
    /// any here.
    fn accept(&self) -> Result<Channel> {
        let fd = match self {
            Listener::Local(l) => OwnedFd::from(l.accept()?.0),
            Listener::Tcp(l) => {
                let stream = l.accept()?.0;
                sys::tcp::set_up(&stream)?;
                OwnedFd::from(stream)
            }
        };
        Ok(Channel::new(fd, Io::Blocking)?.without_descriptors())
    }

    /// Where clients reach it.
    pub(crate) fn endpoint(&self) -> Result<Endpoint> {
        Ok(match self {
            Listener::Local(l) => {
                let name = sys::local_socket::name_of(l)?.ok_or_else(|| {
                    Error::InvalidArgument("a local manager listens on an abstract name".into())
                })?;
                Endpoint::Local(name)
            }
            Listener::Tcp(l) => Endpoint::Tcp(l.local_addr()?),
        })
    }

    /// An endpoint that reaches this listener from this machine (to wake its accept loop).
    fn nearby(&self) -> Result<Endpoint> {
        Ok(match self.endpoint()? {
            Endpoint::Tcp(mut at) if at.ip().is_unspecified() => {
                at.set_ip(match at {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
                Endpoint::Tcp(at)
            }
            other => other,
        })
    }
}

impl Serialize for Listener {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let (tcp, fd) = match self {
            Listener::Local(l) => (false, l.as_fd()),
            Listener::Tcp(l) => (true, l.as_fd()),
        };
        (tcp, fds::attach(fd).map_err(S::Error::custom)?).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Listener {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (tcp, slot) = <(bool, u32)>::deserialize(d)?;
        let fd: OwnedFd = fds::take(slot).map_err(D::Error::custom)?;
        Ok(match tcp {
            true => Listener::Tcp(TcpListener::from(fd)),
            false => Listener::Local(UnixListener::from(fd)),
        })
    }
}

/// A dict as the server keeps it: encoded keys and values, in insertion order.
type Dict = IndexMap<Bytes, Bytes>;

/// An object as the server keeps it.
enum Object {
    Dict(Dict),
    List(Vec<Bytes>),
    /// A value; `None` only between its creation and the first `Set` (`Manager::value`).
    Value(Option<Bytes>),
    Queue {
        items: VecDeque<Bytes>,
        /// 0: no bound.
        maxsize: usize,
    },
    Hosted(super::hosted::Held),
    /// A lock, semaphore, event, condition or barrier.
    Sync(primitives::Primitive),
}

/// A client connection, as the server tells them apart: what it owns (a lock it holds) is
/// owned by this, and let go of when the connection ends. A client has one per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ClientId(u64);

/// The server's objects, each behind its own lock.
#[derive(Default)]
struct Objects {
    next: AtomicU64,
    table: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Named objects' ids (`Request::Named`). A named object lives as long as the server.
    names: Mutex<HashMap<String, (u64, Kind)>>,
}

impl Objects {
    fn slot(&self, id: u64) -> Option<Arc<Slot>> {
        lock(&self.table).get(&id).cloned()
    }

    /// A process holds object `id` once more. One that is gone already is not brought back.
    fn hold(&self, id: u64) {
        if let Some(slot) = self.slot(id) {
            slot.hold();
        }
    }

    /// A process lets go of a hold on object `id`.
    fn release(&self, id: u64) {
        if let Some(slot) = self.slot(id) {
            slot.release();
        }
    }

    /// Frees the objects no process has held for `linger`. They are dropped after the table
    /// is let go of: a hosted object's drop runs the program's code, which may use this
    /// manager (its proxies inside, let go of).
    fn sweep(&self, linger: Duration) {
        let freed: Vec<Arc<Slot>> = {
            let mut table = lock(&self.table);
            let ids: Vec<u64> = table
                .iter()
                .filter(|(_, slot)| slot.unheld_for(linger))
                .map(|(&id, _)| id)
                .collect();
            ids.iter().filter_map(|id| table.remove(id)).collect()
        };
        drop(freed);
    }
}

/// What one client connection holds — its holds on objects (`lease.rs`), and the locks among
/// the primitives it used — let go of when it ends, however it ends (its process died, even
/// by SIGKILL, or closed it).
struct Holding<'a> {
    objects: &'a Objects,
    client: ClientId,
    ids: HashMap<u64, usize>,
    /// The primitives it used: only these can have a lock it owns.
    used: HashSet<u64>,
}

impl Holding<'_> {
    fn hold(&mut self, id: u64) {
        self.objects.hold(id);
        *self.ids.entry(id).or_default() += 1;
    }

    fn release(&mut self, id: u64) {
        // Only what this connection holds: a client cannot let go of others' holds.
        if let Some(n) = self.ids.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.ids.remove(&id);
            }
            self.objects.release(id);
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        primitives::client_left(self.objects, self.client, &self.used);
        for (&id, &n) in &self.ids {
            for _ in 0..n {
                self.objects.release(id);
            }
        }
    }
}

/// The longest pause between sweeps for objects to free.
const SWEEP_MAX: Duration = Duration::from_secs(1);

/// The server process's function: serves until a client asks it to shut down.
pub(crate) fn serve(start: Start) -> Result<()> {
    let Start {
        listener,
        key,
        linger,
    } = start;
    let nearby = listener.nearby()?;
    let key = Arc::new(key);
    let objects = Arc::new(Objects::default());
    let sweeper = objects.clone();
    std::thread::Builder::new()
        .name("multiproc-manager-sweeper".into())
        .spawn(move || {
            loop {
                std::thread::sleep((linger / 4).clamp(Duration::from_millis(10), SWEEP_MAX));
                sweeper.sweep(linger);
            }
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let strangers = Arc::new(AtomicUsize::new(0));
    let pid = std::process::id();
    for client_id in (0..).map(ClientId) {
        let conn = listener.accept();
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let conn = match conn {
            Ok(conn) => conn,
            Err(_) => {
                // One client's failed connection, or no descriptor or memory free for a new
                // one: the clients that are in go on; new ones wait a moment, not a spin.
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        // Strangers (not yet through the handshake) are few at a time: more are dropped at
        // once, so that connecting in a loop costs the server no threads.
        let Some(stranger) = Stranger::admitted(&strangers) else {
            continue;
        };
        let (key, objects, stop, nearby) =
            (key.clone(), objects.clone(), stop.clone(), nearby.clone());
        let spawned = std::thread::Builder::new()
            .name("multiproc-manager-client".into())
            .spawn(move || {
                let served = client(conn, client_id, &key, &objects, pid, stranger);
                if let Ok(true) = served {
                    stop.store(true, Ordering::Release);
                    // Wake the accept loop so it sees `stop`.
                    let _ = nearby.connect();
                }
            });
        // No thread to be had: this client is refused (its connection drops), others go on.
        drop(spawned);
    }
    Ok(())
}

/// How many connections may be in the handshake at once.
const MAX_STRANGERS: usize = 128;
/// How long the accept loop waits after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A connection in the handshake, counted among the strangers until it is dropped.
struct Stranger(Arc<AtomicUsize>);

impl Stranger {
    /// One more stranger, unless there are [`MAX_STRANGERS`] already.
    fn admitted(count: &Arc<AtomicUsize>) -> Option<Stranger> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STRANGERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Stranger(count.clone()))
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one client; returns whether it asked the server to shut down.
fn client(
    mut chan: Channel,
    id: ClientId,
    key: &[u8],
    objects: &Objects,
    pid: u32,
    stranger: Stranger,
) -> Result<bool> {
    let welcomed = welcome(&mut chan, key);
    drop(stranger);
    match welcomed? {
        Welcome::In(exe) => requests(chan, id, objects, exe, pid),
        Welcome::Refused => Ok(false),
    }
}

/// Answers a client's requests, once it is in, until it leaves or asks the server to shut
/// down (then `true`).
fn requests(
    mut chan: Channel,
    id: ClientId,
    objects: &Objects,
    exe: Executable,
    pid: u32,
) -> Result<bool> {
    let mut holding = Holding {
        objects,
        client: id,
        ids: HashMap::new(),
        used: HashSet::new(),
    };
    loop {
        chan.watch(WATCH);
        let frame = match chan.recv(None) {
            Ok(frame) => frame,
            Err(Error::Disconnected) => return Ok(false),
            Err(e) => return Err(e),
        };
        if frame.kind != kind::REQUEST {
            return Err(Error::Protocol(format!(
                "unexpected frame kind {}",
                frame.kind
            )));
        }
        let request: Request = codec::decode(frame.payload())?;
        let shutdown = matches!(request, Request::Shutdown);
        if let Request::Op {
            id,
            op: Op::Sync(_),
        } = request
        {
            holding.used.insert(id);
        }
        let reply = match request {
            Request::Hold { id } => {
                holding.hold(id);
                continue;
            }
            Request::Release { id } => {
                holding.release(id);
                continue;
            }
            Request::Pid => Reply::Pid(pid),
            Request::Count => Reply::Len(lock(&objects.table).len() as u64),
            request => handle(objects, request, id, exe, &mut || {
                !matches!(chan.try_fill(), Ok(Some(0)) | Err(_))
            }),
        };
        chan.send(kind::REPLY, &codec::encode(&reply)?)?;
        if shutdown {
            return Ok(true);
        }
    }
}

/// For the fuzz target (`fuzzing::manager`): serves one connection whose client wrote what
/// `chan` reads, on a server that holds an object of every kind (ids 0 to 10). With
/// `handshake`, the client must first get through the handshake on `key`; without it, it is
/// taken as in, from another executable (so no function of its naming is ever run).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(chan: Channel, handshake: bool, key: &[u8]) {
    use super::protocol::SyncKind;
    let objects = Objects::default();
    for kind in [
        Kind::Dict,
        Kind::List,
        Kind::Value,
        Kind::Queue { maxsize: 2 },
        Kind::Hosted,
        Kind::Sync(SyncKind::Lock),
        Kind::Sync(SyncKind::RLock),
        Kind::Sync(SyncKind::Semaphore {
            value: 1,
            bound: Some(1),
        }),
        Kind::Sync(SyncKind::Event),
        Kind::Sync(SyncKind::Condition),
        Kind::Sync(SyncKind::Barrier { parties: 2 }),
    ] {
        create(&objects, kind);
    }
    let me = ClientId(0);
    let strangers = Arc::new(AtomicUsize::new(0));
    let Some(stranger) = Stranger::admitted(&strangers) else {
        return;
    };
    let _ = match handshake {
        true => client(chan, me, key, &objects, 0, stranger),
        false => requests(chan, me, &objects, Executable::Foreign, 0),
    };
}

/// How a client's handshake ended.
enum Welcome {
    Refused,
    In(Executable),
}

/// The server's side of the handshake (see `auth`). Until the client has proven it knows the
/// key, it may send only small frames, and must within [`HANDSHAKE_TIMEOUT`]. A client in is
/// told whether it runs this same executable (and so may name functions for the server).
fn welcome(chan: &mut Channel, key: &[u8]) -> Result<Welcome> {
    chan.limit_frames(HANDSHAKE_FRAME);
    let mine = auth::challenge()?;
    chan.send(kind::CHALLENGE, &mine)?;
    let frame = chan.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT))?;
    let head = match frame.kind {
        kind::ANSWER => split_answer(frame.payload()),
        _ => None,
    };
    let Some((version, rest)) = head
        .filter(|(_, mac, _)| auth::verify(key, &mine, mac))
        .map(|(version, _, rest)| (version, rest))
    else {
        let _ = chan.send(kind::REFUSED, b"the manager refused the key");
        return Ok(Welcome::Refused);
    };
    if version != VERSION {
        let why = format!(
            "the manager speaks version {VERSION} of the protocol, this program version \
             {version} (built with another release of multiproc)"
        );
        let _ = chan.send(kind::INCOMPATIBLE, why.as_bytes());
        return Ok(Welcome::Refused);
    }
    let answer: Answer = codec::decode(rest)?;
    chan.send(kind::WELCOME, &auth::answer(key, &answer.challenge))?;
    chan.limit_frames(MAX_FRAME);
    Ok(Welcome::In(
        match answer.identity == crate::child::protocol::identity()? {
            true => Executable::Same,
            false => Executable::Foreign,
        },
    ))
}

/// A new, empty object of `kind`; its id.
fn create(objects: &Objects, kind: Kind) -> u64 {
    let id = objects.next.fetch_add(1, Ordering::Relaxed);
    let object = match kind {
        Kind::Dict => Object::Dict(Dict::default()),
        Kind::List => Object::List(Vec::new()),
        Kind::Value => Object::Value(None),
        Kind::Queue { maxsize } => Object::Queue {
            items: VecDeque::new(),
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
        },
        Kind::Hosted => Object::Hosted(Default::default()),
        Kind::Sync(kind) => Object::Sync(primitives::Primitive::new(kind)),
    };
    lock(&objects.table).insert(id, Arc::new(Slot::new(object)));
    id
}

/// The object called `name`, made now if there is none.
fn named(objects: &Objects, name: String, kind: Kind) -> Reply {
    let mut names = lock(&objects.names);
    if let Some(&(id, theirs)) = names.get(&name) {
        // Kinds are compared by name: a named queue opened with another bound is the same.
        return match theirs.name() == kind.name() {
            true => Reply::Id(id),
            false => Reply::Failed(format!(
                "the object called {name:?} is a {}, not a {}",
                theirs.name(),
                kind.name()
            )),
        };
    }
    let id = create(objects, kind);
    // Held by its name for as long as the server lives.
    objects.hold(id);
    names.insert(name, (id, kind));
    Reply::Id(id)
}

fn handle(
    objects: &Objects,
    request: Request,
    client: ClientId,
    exe: Executable,
    still_there: &mut dyn FnMut() -> bool,
) -> Reply {
    match request {
        Request::New(kind) => Reply::Id(create(objects, kind)),
        Request::Named { name, kind } => named(objects, name, kind),
        Request::Op { id, op } => {
            let Some(slot) = lock(&objects.table).get(&id).cloned() else {
                return Reply::Failed(format!(
                    "no object {id} on this manager (freed when no process held it, or never made)"
                ));
            };
            let with_function = matches!(
                op,
                Op::Dict(DictOp::Update { .. })
                    | Op::List(ListOp::Update { .. })
                    | Op::Value(ValueOp::Update { .. })
            );
            if with_function && exe == Executable::Foreign {
                return Reply::Failed(
                    "update with a function needs the manager's own executable".into(),
                );
            }
            // A queue's operations may wait, letting go of the lock meanwhile.
            let op = match op {
                Op::Queue(op) => {
                    return queue_op(&slot, op, still_there).unwrap_or_else(other_kind(id));
                }
                Op::Sync(op) => {
                    return primitives::sync_op(&slot, op, client, still_there)
                        .unwrap_or_else(other_kind(id));
                }
                op => op,
            };
            let mut guard = slot.lock();
            let reply = match (&mut *guard, op) {
                (Object::Dict(dict), Op::Dict(op)) => dict_op(dict, op),
                (Object::List(list), Op::List(op)) => list_op(list, op),
                (Object::Value(value), Op::Value(op)) => value_op(value, op),
                (Object::Hosted(held), Op::Hosted(op)) => super::hosted::op(held, op, exe),
                _ => other_kind(id)(),
            };
            slot.signalled(guard, reply)
        }
        // Answered by `client`, which knows the process and the connection.
        Request::Pid | Request::Count | Request::Hold { .. } | Request::Release { .. } => {
            Reply::Failed("not a request for an object".into())
        }
        Request::Shutdown => Reply::Done,
    }
}

fn dict_op(dict: &mut Dict, op: DictOp) -> Reply {
    match op {
        DictOp::Insert { key, value } => Reply::Value(dict.insert(key, value)),
        DictOp::Get { key } => Reply::Value(dict.get(&key).cloned()),
        DictOp::Remove { key } => Reply::Value(dict.shift_remove(&key)),
        DictOp::ContainsKey { key } => Reply::Bool(dict.contains_key(&key)),
        DictOp::Len => Reply::Len(dict.len() as u64),
        DictOp::Keys => Reply::List(dict.keys().cloned().collect()),
        DictOp::Values => Reply::List(dict.values().cloned().collect()),
        DictOp::Items => Reply::Pairs(dict.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Clear => {
            dict.clear();
            Reply::Done
        }
        DictOp::Update { key, entry } => match updated(&some_or_none(dict.get(&key)), entry) {
            Ok(value) => {
                dict.insert(key, value.clone());
                Reply::Value(Some(value))
            }
            Err(e) => Reply::Failed(e.to_string()),
        },
    }
}

/// The reply to an operation on an object of another kind.
fn other_kind(id: u64) -> impl FnOnce() -> Reply {
    move || Reply::Failed(format!("object {id} is of another kind"))
}

/// A queue operation, which may wait (for an item, or for room; see `Slot::waiting`). `None`
/// if the object is not a queue.
fn queue_op(slot: &Slot, op: QueueOp, still_there: &mut dyn FnMut() -> bool) -> Option<Reply> {
    let (mut put, wait_ms) = match op {
        QueueOp::Put { value, wait_ms } => (Some(value), wait_ms),
        QueueOp::Get { wait_ms } => (None, wait_ms),
        QueueOp::Len => return queue_query(slot, |items, _| Reply::Len(items.len() as u64)),
        QueueOp::Full => return queue_query(slot, |items, max| Reply::Bool(is_full(items, max))),
    };
    let putting = put.is_some();
    slot.waiting(
        slot::deadline(wait_ms),
        still_there,
        |object| {
            let Object::Queue { items, maxsize } = object else {
                return Some(None);
            };
            match put.take() {
                Some(value) if !is_full(items, *maxsize) => {
                    items.push_back(value);
                    Some(Some(Reply::Bool(true)))
                }
                Some(value) => {
                    put = Some(value);
                    None
                }
                None => items.pop_front().map(|item| Some(Reply::Value(Some(item)))),
            }
        },
        |_, stop| {
            Some(match (stop, putting) {
                (Stop::TimedOut, true) => Reply::Bool(false),
                (Stop::TimedOut, false) => Reply::Value(None),
                (Stop::Left, _) => Reply::Failed("the client is gone".into()),
            })
        },
    )
}

fn is_full(items: &VecDeque<Bytes>, maxsize: usize) -> bool {
    maxsize != 0 && items.len() >= maxsize
}

fn queue_query(slot: &Slot, answer: impl Fn(&VecDeque<Bytes>, usize) -> Reply) -> Option<Reply> {
    match &*slot.lock() {
        Object::Queue { items, maxsize } => Some(answer(items, *maxsize)),
        _ => None,
    }
}

fn value_op(value: &mut Option<Bytes>, op: ValueOp) -> Reply {
    match op {
        ValueOp::Get => Reply::Value(value.clone()),
        ValueOp::Set { value: new } => Reply::Value(value.replace(new)),
        ValueOp::Update { entry } => match value.as_deref().map(|v| updated(v, entry)) {
            Some(Ok(new)) => Reply::Value(Some(value.insert(new).clone())),
            Some(Err(e)) => Reply::Failed(e.to_string()),
            None => Reply::Failed("the value was never set".into()),
        },
    }
}

fn list_op(list: &mut Vec<Bytes>, op: ListOp) -> Reply {
    let len = list.len();
    let at = |index: u64| usize::try_from(index).ok().filter(|&i| i < len);
    let out_of_range =
        |index: u64| Reply::Failed(format!("index {index} out of range (len {len})"));
    match op {
        ListOp::Push { value } => {
            list.push(value);
            Reply::Done
        }
        ListOp::Pop => Reply::Value(list.pop()),
        ListOp::Get { index } => Reply::Value(at(index).map(|i| list[i].clone())),
        ListOp::Set { index, value } => match at(index) {
            Some(i) => Reply::Value(Some(std::mem::replace(&mut list[i], value))),
            None => out_of_range(index),
        },
        ListOp::Insert { index, value } => {
            let i = usize::try_from(index).map_or(len, |i| i.min(len));
            list.insert(i, value);
            Reply::Done
        }
        ListOp::Remove { index } => match at(index) {
            Some(i) => Reply::Value(Some(list.remove(i))),
            None => out_of_range(index),
        },
        ListOp::Len => Reply::Len(len as u64),
        ListOp::ToVec => Reply::List(list.clone()),
        ListOp::Extend { values } => {
            list.extend(values);
            Reply::Done
        }
        ListOp::Clear => {
            list.clear();
            Reply::Done
        }
        ListOp::Update { index, entry } => match at(index) {
            Some(i) => match updated(&list[i], entry) {
                Ok(value) => {
                    list[i] = value.clone();
                    Reply::Value(Some(value))
                }
                Err(e) => Reply::Failed(e.to_string()),
            },
            None => out_of_range(index),
        },
    }
}

/// An encoded `Option<V>` from an encoded `V`, if any, as serde encodes it (a tag byte, then
/// the value): the argument of a dict's update function.
fn some_or_none(value: Option<&Bytes>) -> Bytes {
    match value {
        Some(v) => [&[1u8][..], v].concat(),
        None => vec![0],
    }
}

/// What the update function at `entry` makes of its encoded argument.
fn updated(input: &[u8], entry: i64) -> Result<Bytes> {
    // SAFETY: only a client that runs this same executable may ask for an update (checked in
    // its handshake, `welcome`), so `entry` is a trampoline offset it computed with
    // `task::entry_for`, valid here too.
    let entry = unsafe { crate::task::entry_at(entry) };
    let outcome = crate::task::run_once(entry, input);
    match codec::outcome_value(&outcome)? {
        Ok(value) => Ok(value.to_vec()),
        Err(failure) => Err(Error::from(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client of every request in these tests.
    const ME: ClientId = ClientId(0);

    fn id_of(reply: Reply) -> u64 {
        match reply {
            Reply::Id(id) => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_reach_only_objects_of_their_kind() {
        let objects = Objects::default();
        let mut there = || true;
        let dict = id_of(handle(
            &objects,
            Request::New(Kind::Dict),
            ME,
            Executable::Same,
            &mut there,
        ));
        let list = id_of(handle(
            &objects,
            Request::New(Kind::List),
            ME,
            Executable::Same,
            &mut there,
        ));
        assert_ne!(dict, list);
        let on = |id, op| {
            handle(
                &objects,
                Request::Op { id, op },
                ME,
                Executable::Same,
                &mut || true,
            )
        };
        assert!(
            matches!(on(dict, Op::List(ListOp::Len)), Reply::Failed(why) if why.contains("another kind"))
        );
        assert!(matches!(on(list, Op::Dict(DictOp::Len)), Reply::Failed(_)));
        assert!(
            matches!(on(99, Op::Dict(DictOp::Len)), Reply::Failed(why) if why.contains("no object 99"))
        );
        let insert = DictOp::Insert {
            key: vec![1],
            value: vec![2],
        };
        assert!(matches!(on(dict, Op::Dict(insert)), Reply::Value(None)));
        assert!(matches!(on(dict, Op::Dict(DictOp::Len)), Reply::Len(1)));
        // An update from another executable is refused before anything runs.
        let update = DictOp::Update {
            key: vec![1],
            entry: 0,
        };
        let foreign = handle(
            &objects,
            Request::Op {
                id: dict,
                op: Op::Dict(update),
            },
            ME,
            Executable::Foreign,
            &mut || true,
        );
        assert!(matches!(foreign, Reply::Failed(why) if why.contains("own executable")));
    }

    #[test]
    fn a_queue_waits_for_items_and_room_and_never_gives_to_a_client_that_left() {
        let objects = Arc::new(Objects::default());
        let new = Request::New(Kind::Queue { maxsize: 1 });
        let q = id_of(handle(&objects, new, ME, Executable::Same, &mut || true));
        let op = move |op| Request::Op {
            id: q,
            op: Op::Queue(op),
        };
        let put = |v: u8, wait_ms| {
            op(QueueOp::Put {
                value: vec![v],
                wait_ms,
            })
        };
        let get = |wait_ms| op(QueueOp::Get { wait_ms });
        let there = &mut || true;
        assert!(matches!(
            handle(&objects, get(Some(0)), ME, Executable::Same, there),
            Reply::Value(None)
        ));
        assert!(matches!(
            handle(&objects, put(1, Some(0)), ME, Executable::Same, there),
            Reply::Bool(true)
        ));
        assert!(matches!(
            handle(&objects, put(2, Some(20)), ME, Executable::Same, there),
            Reply::Bool(false)
        ));
        assert!(matches!(
            handle(&objects, op(QueueOp::Full), ME, Executable::Same, there),
            Reply::Bool(true)
        ));
        // A client that left is not given the item.
        let gone = handle(
            &objects,
            op(QueueOp::Put {
                value: vec![3],
                wait_ms: None,
            }),
            ME,
            Executable::Same,
            &mut || false,
        );
        assert!(matches!(gone, Reply::Failed(_)));
        assert!(
            matches!(handle(&objects, get(None), ME, Executable::Same, there), Reply::Value(Some(v)) if v == [1])
        );
        // A get that waits is given what another client puts.
        let (o, getter) = (
            objects.clone(),
            std::thread::spawn({
                let objects = objects.clone();
                move || {
                    handle(
                        &objects,
                        Request::Op {
                            id: q,
                            op: Op::Queue(QueueOp::Get {
                                wait_ms: Some(5000),
                            }),
                        },
                        ME,
                        Executable::Same,
                        &mut || true,
                    )
                }
            }),
        );
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(
            handle(&o, put(9, None), ME, Executable::Same, &mut || true),
            Reply::Bool(true)
        ));
        assert!(matches!(getter.join().unwrap(), Reply::Value(Some(v)) if v == [9]));
        assert!(matches!(
            handle(&objects, op(QueueOp::Len), ME, Executable::Same, there),
            Reply::Len(0)
        ));
        assert!(matches!(
            handle(
                &objects,
                Request::Op {
                    id: q,
                    op: Op::Dict(DictOp::Len)
                },
                ME,
                Executable::Same,
                there
            ),
            Reply::Failed(_)
        ));
    }

    #[test]
    fn list_indices_are_checked() {
        let mut list = vec![vec![1u8], vec![2]];
        assert!(matches!(
            list_op(&mut list, ListOp::Get { index: u64::MAX }),
            Reply::Value(None)
        ));
        assert!(matches!(
            list_op(&mut list, ListOp::Remove { index: 2 }),
            Reply::Failed(_)
        ));
        assert!(matches!(
            list_op(
                &mut list,
                ListOp::Set {
                    index: 5,
                    value: vec![]
                }
            ),
            Reply::Failed(_)
        ));
        list_op(
            &mut list,
            ListOp::Insert {
                index: u64::MAX,
                value: vec![3],
            },
        );
        assert_eq!(list, [vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn a_dict_update_gets_an_encoded_option() {
        assert_eq!(some_or_none(None), [0]);
        assert_eq!(some_or_none(Some(&vec![7, 8])), [1, 7, 8]);
        let encoded: Option<u16> =
            codec::decode(&some_or_none(Some(&codec::encode(&513u16).unwrap()))).unwrap();
        assert_eq!(encoded, Some(513));
    }
}
