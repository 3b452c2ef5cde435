//! A thread's connections to managers: one per manager, made on first use (so that a proxy
//! that arrived in another process connects by itself). Each thread has its own, served by a
//! server thread of its own: a queue `get` that waits in one thread never holds up another.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::auth;
#[cfg(test)]
use super::protocol::Kind;
use super::protocol::{Answer, Reply, Request, kind};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{Channel, Io, codec};

/// How long the server may take over its part of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call watches for the reply before it sleeps: a quick answer is then read without
/// this thread being put to sleep and woken (see `Channel::watch`).
const WATCH: Duration = Duration::from_micros(50);

/// Where a manager listens, and the key it lets clients in with.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Address {
    pub(crate) name: String,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Address")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread's connections, by manager name and key (a proxy with another key for the
    /// same name must go through the handshake itself).
    static CONNECTIONS: RefCell<Vec<(String, Vec<u8>, Channel)>> = const { RefCell::new(Vec::new()) };
}

/// Sends `request` to the manager at `addr` and returns its reply.
///
/// # Errors
/// [`Error::ManagerGone`] if the manager cannot be reached or goes away before answering;
/// a refused handshake ([`Error::AuthenticationFailed`]); the server's failure to do it.
pub(crate) fn call(addr: &Address, request: &Request) -> Result<Reply> {
    CONNECTIONS.with_borrow_mut(|all| {
        let at = match all
            .iter()
            .position(|(name, key, _)| *name == addr.name && *key == addr.key)
        {
            Some(at) => at,
            None => {
                all.push((addr.name.clone(), addr.key.clone(), connect(addr)?));
                all.len() - 1
            }
        };
        let ch = &mut all[at].2;
        let exchanged = ch
            .send(kind::REQUEST, &codec::encode(request)?)
            .and_then(|()| {
                ch.watch(WATCH);
                ch.recv(None)
            });
        let frame = match exchanged {
            Ok(frame) if frame.kind == kind::REPLY => frame,
            Ok(frame) => {
                all.remove(at);
                return Err(Error::Protocol(format!(
                    "unexpected frame kind {}",
                    frame.kind
                )));
            }
            Err(e) => {
                // A broken connection is not kept; the next call tries afresh.
                all.remove(at);
                return Err(gone(e));
            }
        };
        match codec::decode::<Reply>(frame.payload())? {
            Reply::Failed(why) => Err(Error::Manager(why)),
            reply => Ok(reply),
        }
    })
}

/// Connects and goes through the handshake (see `auth`).
fn connect(addr: &Address) -> Result<Channel> {
    let stream = sys::local_socket::connect(&addr.name).map_err(|e| gone(e.into()))?;
    let mut chan = Channel::new(OwnedFd::from(stream), Io::Blocking)?;
    let deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);
    let challenge = chan.recv(deadline).map_err(gone)?;
    if challenge.kind != kind::CHALLENGE {
        return Err(Error::Protocol(
            "the manager did not send its challenge".into(),
        ));
    }
    let mine = auth::challenge()?;
    let answer = Answer {
        mac: auth::answer(&addr.key, challenge.payload()),
        identity: crate::child::protocol::identity()?,
        challenge: mine,
    };
    chan.send(kind::ANSWER, &codec::encode(&answer)?)?;
    let reply = chan.recv(deadline).map_err(gone)?;
    match reply.kind {
        kind::WELCOME if auth::verify(&addr.key, &mine, reply.payload()) => Ok(chan),
        kind::WELCOME => Err(Error::AuthenticationFailed(
            "the manager does not know the key".into(),
        )),
        _ => Err(Error::AuthenticationFailed(
            "the manager refused the key".into(),
        )),
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

    #[test]
    fn a_wrong_key_is_refused_and_the_server_serves_on() {
        let m = crate::Manager::new().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        let wrong = Address {
            name: m.addr.name.clone(),
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
            name: "multiproc-manager-nobody".into(),
            key: vec![],
        };
        assert!(matches!(
            call(&nowhere, &Request::New(Kind::Dict)),
            Err(Error::ManagerGone)
        ));
    }
}
