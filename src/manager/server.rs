//! The manager's server: a child process (started like any `Process`, so it dies with its
//! owner and is reaped) that keeps the shared objects and serves each client connection on a
//! thread of its own, so that one slow client never stalls the others.
//!
//! Objects are kept as bytes (keys and values encoded by the clients; a hosted object also
//! decoded, see `hosted.rs`), each behind its own lock: an operation, `update` included, runs
//! whole under that lock, which is what makes a read-modify-write atomic where Python's manager
//! loses updates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mailbox::{Mailboxes, Message};
use super::protocol::{
    Bytes, DictOp, Executable, Kind, ListOp, Op, Reply, Request, ValueOp, WATCH, decode_frame, kind,
};
use crate::error::{Error, Result};
use crate::pool::lock;
use crate::wire::{Channel, codec};

mod containers;
mod listener;
mod primitives;
mod slot;
mod welcome;

use containers::{Dict, dict_op, list_op, queue_op, value_op};
pub(crate) use listener::Listener;
use listener::{ACCEPT_BACKOFF, Stranger};
use slot::Slot;
use welcome::{Welcome, welcome};

/// What the server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) listener: Listener,
    pub(crate) key: Vec<u8>,
    /// How long an object no process holds is kept before it is freed (see `lease.rs`).
    pub(crate) linger: Duration,
}

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
    /// The client used primitive `id` (it may own its lock now). Primitives freed since are
    /// forgotten each time the list doubles past [`USED_PRUNE`], so a long-lived client's list
    /// stays as short as what it uses, at a cost spread over its uses.
    fn use_primitive(&mut self, id: u64) {
        let len = self.used.len() + 1;
        if self.used.insert(id) && len >= USED_PRUNE && len.is_power_of_two() {
            let table = lock(&self.objects.table);
            self.used.retain(|id| table.contains_key(id));
        }
    }

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

/// How many primitives a connection's list of used ones holds before the freed are first
/// dropped from it (a power of two).
const USED_PRUNE: usize = 256;

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
    // Proxies inside what clients send (a hosted object's field, a method's argument) arrive
    // without the key (see `proxy.rs`): this process knows it.
    super::client::learn_key(&listener.endpoint()?, &key);
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
    let local = matches!(listener, Listener::Local(_));
    for client_id in (0..).map(ClientId) {
        // With as many strangers in the handshake as allowed, newcomers wait in the socket's
        // backlog (not refused) until one of them is through or dropped.
        while strangers.load(Ordering::Acquire) >= listener::MAX_STRANGERS {
            std::thread::sleep(ACCEPT_BACKOFF);
        }
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
        // Strangers (not yet through the handshake) are few at a time, so that connecting in
        // a loop costs the server no threads (the wait above makes room before each accept).
        let Some(stranger) = Stranger::admitted(&strangers) else {
            continue;
        };
        let (key, objects, stop, nearby) =
            (key.clone(), objects.clone(), stop.clone(), nearby.clone());
        let spawned = std::thread::Builder::new()
            .name("multiproc-manager-client".into())
            .spawn(move || {
                let served = client(conn, client_id, &key, &objects, pid, stranger, local);
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

/// Serves one client; returns whether it asked the server to shut down.
fn client(
    mut chan: Channel,
    id: ClientId,
    key: &[u8],
    objects: &Objects,
    pid: u32,
    stranger: Stranger,
    local: bool,
) -> Result<bool> {
    let welcomed = welcome(&mut chan, key);
    drop(stranger);
    match welcomed? {
        Welcome::In(exe) => {
            if local {
                // A peer of this machine that knows the key: large values may go through
                // shared memory.
                chan.allow_descriptors();
            }
            requests(chan, id, objects, exe, pid)
        }
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
    let mut mailboxes: Option<Mailboxes> = None;
    loop {
        let through_mailboxes = mailboxes.is_some();
        let request: Request = match &mut mailboxes {
            Some(m) => match m.recv(&mut || chan.peer_there()) {
                Ok(Message::Inline(payload)) => codec::decode(&payload)?,
                Ok(Message::OnSocket) => decode_frame(&chan.recv(None)?, kind::REQUEST)?,
                Err(Error::Disconnected) => return Ok(false),
                Err(e) => return Err(e),
            },
            None => {
                chan.watch(WATCH);
                let frame = match chan.recv(None) {
                    Ok(frame) => frame,
                    Err(Error::Disconnected) => return Ok(false),
                    Err(e) => return Err(e),
                };
                if frame.kind == kind::MAILBOXES {
                    // From now on this client takes turns in shared memory (`mailbox.rs`);
                    // mailboxes that cannot be used are refused, and the socket serves on.
                    match frame.fds.into_iter().next().map(Mailboxes::open) {
                        Some(Ok(taken)) => {
                            mailboxes = Some(taken);
                            chan.send(kind::MAILBOXES, b"")?;
                        }
                        _ => chan.send(kind::REFUSED, b"mailboxes unusable")?,
                    }
                    continue;
                }
                decode_frame(&frame, kind::REQUEST)?
            }
        };
        let shutdown = matches!(request, Request::Shutdown);
        if let Request::Op {
            id,
            op: Op::Sync(_),
        } = request
        {
            holding.use_primitive(id);
        }
        if through_mailboxes && matches!(request, Request::Hold { .. } | Request::Release { .. }) {
            // One-way messages come on lease connections, which take turns through no
            // mailboxes: one here would leave its client waiting for a reply.
            return Err(Error::Protocol(
                "a hold or release through mailboxes".into(),
            ));
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
            request => handle(objects, request, id, exe, &mut || chan.peer_there()),
        };
        let reply = codec::encode(&reply)?;
        match &mailboxes {
            Some(m) => m.send(&mut chan, kind::REPLY, &reply)?,
            None => chan.send(kind::REPLY, &reply)?,
        }
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
        true => client(chan, me, key, &objects, 0, stranger, false),
        false => requests(chan, me, &objects, Executable::Foreign, 0),
    };
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

/// The reply to an operation on an object of another kind.
fn other_kind(id: u64) -> impl FnOnce() -> Reply {
    move || Reply::Failed(format!("object {id} is of another kind"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::QueueOp;

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
}
