//! Where the server meets its clients: the socket it accepts them on (made by the owner and
//! handed over), and the bound on strangers — connections not yet through the handshake — so
//! that connecting in a loop costs the server no threads: beyond it, newcomers wait in the
//! socket's backlog until a stranger is through or dropped (by the handshake's timeout).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::manager::client::Endpoint;
use crate::sys;
use crate::wire::fds;
use crate::wire::{Channel, Io};

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
    pub(super) fn accept(&self) -> Result<Channel> {
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
    pub(super) fn nearby(&self) -> Result<Endpoint> {
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

/// How many connections may be in the handshake at once.
pub(super) const MAX_STRANGERS: usize = 128;
/// How long the accept loop waits after a failed accept.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A connection in the handshake, counted among the strangers until it is dropped.
pub(super) struct Stranger(Arc<AtomicUsize>);

impl Stranger {
    /// One more stranger, unless there are [`MAX_STRANGERS`] already.
    pub(super) fn admitted(count: &Arc<AtomicUsize>) -> Option<Stranger> {
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
