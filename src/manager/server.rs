//! The manager's server: a child process (started like any `Process`, so it dies with its
//! owner and is reaped) that keeps the shared objects and serves each client connection on a
//! thread of its own, so that one slow client never stalls the others.
//!
//! Objects are kept as bytes (keys and values encoded by the clients), each behind its own
//! lock: an operation, `update` included, runs whole under that lock, which is what makes a
//! read-modify-write atomic where Python's manager loses updates.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::auth;
use super::protocol::{Answer, Bytes, DictOp, Reply, Request, kind};
use crate::error::{Error, Result};
use crate::pool::lock;
use crate::sys;
use crate::wire::fds;
use crate::wire::{Channel, Io, codec};

/// How long a client may take over its part of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) listener: Listening,
    /// The abstract name the listener is bound to (to wake it for shutdown).
    pub(crate) name: String,
    pub(crate) key: Vec<u8>,
}

/// A listening socket handed to the server process (its descriptor travels with the message).
pub(crate) struct Listening(pub(crate) UnixListener);

impl Serialize for Listening {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        fds::attach(self.0.as_fd())
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Listening {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let fd: OwnedFd = fds::take(u32::deserialize(d)?).map_err(D::Error::custom)?;
        Ok(Listening(UnixListener::from(fd)))
    }
}

/// A dict as the server keeps it: encoded keys and values, in insertion order.
type Dict = IndexMap<Bytes, Bytes>;

/// The server's objects.
#[derive(Default)]
struct Objects {
    next: AtomicU64,
    dicts: Mutex<IndexMap<u64, Arc<Mutex<Dict>>>>,
}

/// The server process's function: serves until a client asks it to shut down.
pub(crate) fn serve(start: Start) {
    let Start {
        listener: Listening(listener),
        name,
        key,
    } = start;
    let key = Arc::new(key);
    let objects = Arc::new(Objects::default());
    let stop = Arc::new(AtomicBool::new(false));
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let (key, objects, stop, name) = (key.clone(), objects.clone(), stop.clone(), name.clone());
        let spawned = std::thread::Builder::new()
            .name("multiproc-manager-client".into())
            .spawn(move || {
                if let Ok(shutdown) = client(conn, &key, &objects) {
                    if shutdown {
                        stop.store(true, Ordering::Release);
                        // Wake the accept loop so it sees `stop`.
                        let _ = sys::local_socket::connect(&name);
                    }
                }
            });
        // No thread to be had: this client is refused (its connection drops), others go on.
        drop(spawned);
    }
}

/// Serves one client; returns whether it asked the server to shut down.
fn client(conn: UnixStream, key: &[u8], objects: &Objects) -> Result<bool> {
    let mut chan = Channel::new(OwnedFd::from(conn), Io::Blocking)?;
    let Some(same_exe) = welcome(&mut chan, key)? else {
        return Ok(false);
    };
    loop {
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
        let reply = handle(objects, request, same_exe);
        chan.send(kind::REPLY, &codec::encode(&reply)?)?;
        if shutdown {
            return Ok(true);
        }
    }
}

/// The server's side of the handshake (see `auth`): `None` if the client is refused, else
/// whether it runs this same executable (and so may name update functions).
fn welcome(chan: &mut Channel, key: &[u8]) -> Result<Option<bool>> {
    let mine = auth::challenge()?;
    chan.send(kind::CHALLENGE, &mine)?;
    let frame = chan.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT))?;
    let answer = match frame.kind {
        kind::ANSWER => codec::decode::<Answer>(frame.payload()).ok(),
        _ => None,
    };
    let Some(answer) = answer.filter(|a| auth::verify(key, &mine, &a.mac)) else {
        let _ = chan.send(kind::REFUSED, b"");
        return Ok(None);
    };
    chan.send(kind::WELCOME, &auth::answer(key, &answer.challenge))?;
    Ok(Some(answer.identity == crate::child::protocol::identity()?))
}

fn handle(objects: &Objects, request: Request, same_exe: bool) -> Reply {
    match request {
        Request::NewDict => {
            let id = objects.next.fetch_add(1, Ordering::Relaxed);
            lock(&objects.dicts).insert(id, Arc::default());
            Reply::Id(id)
        }
        Request::Dict { id, op } => {
            let Some(dict) = lock(&objects.dicts).get(&id).cloned() else {
                return Reply::Failed(format!("no dict {id} on this manager"));
            };
            if matches!(op, DictOp::Update { .. }) && !same_exe {
                return Reply::Failed(
                    "update with a function needs the manager's own executable".into(),
                );
            }
            let mut dict = lock(&dict);
            dict_op(&mut dict, op)
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
        DictOp::Update { key, entry } => match updated(dict.get(&key), entry) {
            Ok(value) => {
                dict.insert(key, value.clone());
                Reply::Value(Some(value))
            }
            Err(e) => Reply::Failed(e.to_string()),
        },
    }
}

/// What the update function at `entry` makes of `old`: its argument is `Option<V>`, encoded
/// as serde does (a tag byte, then the value).
fn updated(old: Option<&Bytes>, entry: i64) -> Result<Bytes> {
    let mut input = Vec::with_capacity(1 + old.map_or(0, Vec::len));
    match old {
        Some(v) => {
            input.push(1);
            input.extend_from_slice(v);
        }
        None => input.push(0),
    }
    // SAFETY: only a client that runs this same executable may ask for an update (checked in
    // its handshake, `welcome`), so `entry` is a trampoline offset it computed with
    // `task::entry_for`, valid here too.
    let entry = unsafe { crate::task::entry_at(entry) };
    let outcome = crate::task::run_once(entry, &input);
    match codec::outcome_value(&outcome)? {
        Ok(value) => Ok(value.to_vec()),
        Err(failure) => Err(Error::from(failure)),
    }
}
