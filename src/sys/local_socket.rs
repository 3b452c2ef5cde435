//! Stream sockets with a name in Linux's abstract namespace: what a local Manager listens on.
//! An abstract name needs no file (nothing is left behind if the server is killed) and is gone
//! with the last socket bound to it. Other Unix systems would use a path in a private
//! directory instead.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// Listens on the abstract name `name`.
pub(crate) fn listen(name: &str) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}

/// Connects to the abstract name `name`.
pub(crate) fn connect(name: &str) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}

/// The abstract name `listener` is bound to, if it is bound to one.
pub(crate) fn name_of(listener: &UnixListener) -> io::Result<Option<String>> {
    let addr = listener.local_addr()?;
    Ok(addr
        .as_abstract_name()
        .map(|name| String::from_utf8_lossy(name).into_owned()))
}
