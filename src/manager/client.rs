//! A thread's connections to managers: one per manager, made on first use (so that a proxy
//! that arrived in another process connects by itself). Each thread has its own, served by a
//! server thread of its own: a queue `get` that waits in one thread never holds up another.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::auth;
use super::mailbox::{Mailboxes, Message};
#[cfg(test)]
use super::protocol::Kind;
use super::protocol::{
    Answer, HANDSHAKE_FRAME, HANDSHAKE_TIMEOUT, Reply, Request, WATCH, answer_frame, decode_frame,
    kind,
};
use crate::error::{Error, Result};
use crate::launch::inherited::PerProcess;
use crate::pool::lock;
use crate::sys;
use crate::wire::{Channel, Io, MAX_FRAME, codec};

/// Where a manager listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Endpoint {
    /// A name in this machine's abstract socket namespace (a manager started without an
    /// address).
    Local(String),
    /// A TCP address (a manager that serves other programs and machines).
    Tcp(SocketAddr),
}

impl Endpoint {
    /// A connection to the manager (before the handshake). It carries no descriptors either
    /// way: requests and replies are data.
    pub(crate) fn connect(&self) -> Result<Channel> {
        let fd = match self {
            Endpoint::Local(name) => {
                OwnedFd::from(sys::local_socket::connect(name).map_err(|e| gone(e.into()))?)
            }
            Endpoint::Tcp(at) => {
                let stream = TcpStream::connect_timeout(at, HANDSHAKE_TIMEOUT)
                    .map_err(|e| gone(e.into()))?;
                sys::tcp::set_up(&stream)?;
                OwnedFd::from(stream)
            }
        };
        Ok(Channel::new(fd, Io::Blocking)?.without_descriptors())
    }
}

/// Where a manager listens, and the key it lets clients in with. Not serializable: a proxy
/// carries its manager's key only between this program's processes (see `proxy.rs`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) endpoint: Endpoint,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Address")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The keys of the managers this process knows (started, connected to, or was handed a proxy
/// of by its parent): what a proxy that arrives without its key (read from a manager's
/// object, say) is completed with.
static KEYS: PerProcess<Mutex<Keys>> = PerProcess::new(Mutex::new(Vec::new()));

/// Managers' endpoints and their keys.
type Keys = Vec<(Endpoint, Vec<u8>)>;

/// Remembers the key of the manager at `endpoint`.
pub(crate) fn learn_key(endpoint: &Endpoint, key: &[u8]) {
    let mut keys = lock(&KEYS);
    match keys.iter_mut().find(|(e, _)| e == endpoint) {
        Some((_, known)) if known == key => {}
        Some((_, known)) => *known = key.to_vec(),
        None => keys.push((endpoint.clone(), key.to_vec())),
    }
}

/// The key of the manager at `endpoint`, if this process knows it.
pub(crate) fn known_key(endpoint: &Endpoint) -> Option<Vec<u8>> {
    lock(&KEYS)
        .iter()
        .find(|(e, _)| e == endpoint)
        .map(|(_, key)| key.clone())
}

thread_local! {
    /// This thread's connections, by manager address (a proxy with another key for the same
    /// endpoint must go through the handshake itself).
    static CONNECTIONS: RefCell<Vec<Connection>> = const { RefCell::new(Vec::new()) };
}

/// Sends `request` to the manager at `addr` and returns its reply.
///
/// # Errors
/// [`Error::ManagerGone`] if the manager cannot be reached or goes away before answering;
/// a refused handshake ([`Error::AuthenticationFailed`]); the server's failure to do it.
pub(crate) fn call(addr: &Address, request: &Request) -> Result<Reply> {
    CONNECTIONS.with_borrow_mut(|all| {
        let at = match all.iter().position(|c| c.addr == *addr) {
            Some(at) => at,
            None => {
                let mut chan = connect(addr)?;
                let mailboxes = match addr.endpoint {
                    Endpoint::Local(_) => offer_mailboxes(&mut chan).map_err(gone)?,
                    Endpoint::Tcp(_) => None,
                };
                // Connections to managers that are gone (their peer hung up) go now.
                all.retain_mut(|c| matches!(c.chan.try_fill(), Ok(None)));
                all.push(Connection {
                    addr: addr.clone(),
                    chan,
                    mailboxes,
                });
                all.len() - 1
            }
        };
        match all[at].exchange(&codec::encode(request)?) {
            Ok(Reply::Failed(why)) => Err(Error::Manager(why)),
            Ok(reply) => Ok(reply),
            Err(e) => {
                // A broken connection is not kept; the next call tries afresh.
                all.remove(at);
                Err(gone(e))
            }
        }
    })
}

/// A thread's connection to a manager.
struct Connection {
    addr: Address,
    chan: Channel,
    /// The shared-memory mailboxes it takes turns in, if the manager is on this machine (see
    /// `mailbox.rs`).
    mailboxes: Option<Mailboxes>,
}

impl Connection {
    /// Sends an encoded request and returns the reply.
    fn exchange(&mut self, request: &[u8]) -> Result<Reply> {
        let chan = &mut self.chan;
        let Some(mailboxes) = &mut self.mailboxes else {
            chan.send(kind::REQUEST, request)?;
            chan.watch(WATCH);
            return decode_frame(&chan.recv(None)?, kind::REPLY);
        };
        mailboxes.send(chan, kind::REQUEST, request)?;
        match mailboxes.recv(&mut || chan.peer_there())? {
            Message::Inline(reply) => Ok(codec::decode(&reply)?),
            Message::OnSocket => decode_frame(&chan.recv(None)?, kind::REPLY),
        }
    }
}

/// Hands the server a pair of mailboxes in shared memory for this connection; `Ok(None)` if
/// this side cannot make them or the server refuses them (the connection then goes on through
/// its socket alone).
///
/// # Errors
/// The connection failed, or the server did not answer in time: it is not to be used (the
/// server may have taken the mailboxes after all).
fn offer_mailboxes(chan: &mut Channel) -> Result<Option<Mailboxes>> {
    let Ok(mailboxes) = Mailboxes::create() else {
        return Ok(None);
    };
    let Ok(fd) = mailboxes.fd().try_clone_to_owned() else {
        return Ok(None);
    };
    chan.push_with(kind::MAILBOXES, vec![fd], |_| Ok(()))?;
    chan.flush()?;
    let answer = chan.recv(Some(Instant::now() + HANDSHAKE_TIMEOUT))?;
    match answer.kind {
        kind::MAILBOXES => Ok(Some(mailboxes)),
        kind::REFUSED => Ok(None),
        other => Err(Error::Protocol(format!("unexpected frame kind {other}"))),
    }
}

/// Closes this thread's connection to the manager at `addr` and, if `owned` (this process
/// started it, and it is ending), forgets its key: a thread that makes many managers in turn
/// keeps nothing of those gone.
pub(crate) fn disconnect(addr: &Address, owned: bool) {
    CONNECTIONS.with_borrow_mut(|all| {
        all.retain(|c| c.addr != *addr);
    });
    if owned {
        lock(&KEYS).retain(|(e, _)| *e != addr.endpoint);
    }
}

/// In a forked copy: forgets the forking thread's connections, which are its parent's (their
/// sockets are shared with it: the copy must neither use nor close them politely), and keeps
/// the keys it knows unless a thread of the parent was changing them (see
/// `launch::inherited`).
pub(crate) fn forget_inherited() {
    CONNECTIONS.with_borrow_mut(|all| std::mem::forget(std::mem::take(all)));
    let keys = crate::launch::inherited::peek(&KEYS, Keys::clone).unwrap_or_default();
    crate::launch::inherited::reclaim(&KEYS, keys);
}

/// Connects and goes through the handshake (see `auth`).
pub(crate) fn connect(addr: &Address) -> Result<Channel> {
    let mut chan = addr.endpoint.connect()?;
    // Until the manager has proven it knows the key, it may send only small frames.
    chan.limit_frames(HANDSHAKE_FRAME);
    let deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);
    let challenge = chan.recv(deadline).map_err(gone)?;
    if challenge.kind != kind::CHALLENGE {
        return Err(Error::Protocol(
            "the manager did not send its challenge".into(),
        ));
    }
    let mine = auth::challenge()?;
    let answer = Answer {
        identity: crate::child::protocol::identity()?,
        challenge: mine,
    };
    let mac = auth::answer(&addr.key, challenge.payload());
    chan.send(kind::ANSWER, &answer_frame(&mac, &answer)?)?;
    let reply = chan.recv(deadline).map_err(gone)?;
    let why = || String::from_utf8_lossy(reply.payload()).into_owned();
    match reply.kind {
        kind::WELCOME if auth::verify(&addr.key, &mine, reply.payload()) => {
            chan.limit_frames(MAX_FRAME);
            if let Endpoint::Local(_) = addr.endpoint {
                // The manager of this machine proved it knows the key: large values may go
                // through shared memory.
                chan.allow_descriptors();
            }
            Ok(chan)
        }
        kind::WELCOME => Err(Error::AuthenticationFailed(
            "the manager does not know the key".into(),
        )),
        kind::INCOMPATIBLE => Err(Error::Manager(why())),
        _ => Err(Error::AuthenticationFailed(why())),
    }
}

/// The error for a manager that cannot be reached or went away.
fn gone(e: Error) -> Error {
    match e {
        Error::Disconnected | Error::Io(_) | Error::Timeout => Error::ManagerGone,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wrong_key_is_refused_and_the_server_serves_on() {
        let m = crate::Manager::new().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        let wrong = Address {
            endpoint: m.addr.endpoint.clone(),
            key: b"not the key".to_vec(),
        };
        let t = Instant::now();
        assert!(matches!(
            call(&wrong, &Request::New(Kind::Dict)),
            Err(Error::AuthenticationFailed(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(1));
        d.insert(1, 2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
        // A manager that is not there.
        let nowhere = Address {
            endpoint: Endpoint::Local("multiproc-manager-nobody".into()),
            key: vec![],
        };
        assert!(matches!(
            call(&nowhere, &Request::New(Kind::Dict)),
            Err(Error::ManagerGone)
        ));
    }

    #[test]
    fn garbage_after_the_handshake_ends_only_that_connection() {
        let m = crate::Manager::new().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        for (frame_kind, payload) in [
            (kind::REQUEST, &b"\xff\xff\xff not a request"[..]),
            (0x01, &b""[..]),
            (kind::ANSWER, &b"again"[..]),
        ] {
            let mut chan = connect(&m.addr).unwrap();
            chan.send(frame_kind, payload).unwrap();
            let deadline = Some(Instant::now() + Duration::from_secs(5));
            assert!(matches!(chan.recv(deadline), Err(Error::Disconnected)));
            d.insert(frame_kind, 1).unwrap();
        }
        assert_eq!(d.len().unwrap(), 3);
    }

    #[test]
    fn another_version_of_the_protocol_is_refused_clearly() {
        let m = crate::Manager::new().unwrap();
        let mut chan = m.addr.endpoint.connect().unwrap();
        let challenge = chan.recv(None).unwrap();
        let answer = Answer {
            identity: crate::child::protocol::identity().unwrap(),
            challenge: auth::challenge().unwrap(),
        };
        // A later release, whose answer holds more than this one can decode.
        let mac = auth::answer(&m.addr.key, challenge.payload());
        let mut payload = answer_frame(&mac, &answer).unwrap();
        let later = super::super::protocol::VERSION + 1;
        payload[..4].copy_from_slice(&later.to_le_bytes());
        payload.extend_from_slice(b"fields of a later release");
        chan.send(kind::ANSWER, &payload).unwrap();
        let reply = chan.recv(None).unwrap();
        assert_eq!(reply.kind, kind::INCOMPATIBLE);
        let why = String::from_utf8_lossy(reply.payload()).into_owned();
        let (ours, theirs) = (format!("version {}", later - 1), format!("version {later}"));
        assert!(why.contains(&ours) && why.contains(&theirs), "{why}");
    }

    #[test]
    fn unusable_mailboxes_are_refused_and_the_socket_serves_on() {
        let m = crate::Manager::new().unwrap();
        let mut chan = connect(&m.addr).unwrap();
        // Not a sealed memory object: refused.
        let (fd, _other) = sys::fd::socketpair().unwrap();
        chan.push_with(kind::MAILBOXES, vec![fd], |_| Ok(()))
            .unwrap();
        chan.flush().unwrap();
        assert_eq!(chan.recv(None).unwrap().kind, kind::REFUSED);
        let mut conn = Connection {
            addr: (*m.addr).clone(),
            chan,
            mailboxes: None,
        };
        let reply = conn
            .exchange(&codec::encode(&Request::Count).unwrap())
            .unwrap();
        assert!(matches!(reply, Reply::Len(_)));
        // A connection made by a call takes turns in shared memory.
        let mut conn = Connection {
            addr: (*m.addr).clone(),
            chan: connect(&m.addr).unwrap(),
            mailboxes: None,
        };
        conn.mailboxes = offer_mailboxes(&mut conn.chan).unwrap();
        assert!(conn.mailboxes.is_some());
        let reply = conn
            .exchange(&codec::encode(&Request::Pid).unwrap())
            .unwrap();
        assert!(matches!(reply, Reply::Pid(pid) if pid == m.pid()));
    }
}
