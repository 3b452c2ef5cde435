//! `Pipe`: a pair of connected ends for messages between two processes.
//!
//! An end is a Unix stream socket with the crate's framing (`wire::channel`): each message is
//! one frame, and handles inside a message travel as descriptors with it. The kernel reports
//! the other end's close — by `close`, drop, or the death of the last process holding it — as
//! end of stream, which `recv` turns into [`Error::Disconnected`] at once.
//!
//! As in Python, an end that a process does not use should not be kept there: a copy of the
//! writing end held by the reader keeps the reader from ever seeing end of stream. Passing an
//! end to a [`Process`](crate::Process) moves it; the parent keeps no copy.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::mem::parking;
use crate::sys;
use crate::task::Data;
use crate::wire::fds::{self, FdSet};
use crate::wire::{Channel, Io, codec};

/// Frame kind of a pipe message.
const MESSAGE: u8 = 0x40;

/// Makes connected pairs of [`Connection`]s, like `multiprocessing.Pipe`.
///
/// # Examples
/// ```
/// # multiproc::init();
/// use multiproc::{Connection, Pipe, Process};
///
/// fn child(mut conn: Connection<Option<String>>) {
///     for word in [Some("Hello"), Some("World"), None] {
///         conn.send(&word.map(String::from)).unwrap();
///     }
/// }
///
/// let (mut parent_end, child_end) = Pipe::<Option<String>>::duplex()?;
/// let mut p = Process::new(child, child_end);
/// p.start()?;
/// while let Some(word) = parent_end.recv()? {
///     println!("{word}");
/// }
/// p.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipe<T> {
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Data> Pipe<T> {
    /// Two ends that can both send and receive (Python's `Pipe()`).
    ///
    /// # Errors
    /// The socket pair could not be created ([`Error::Io`]).
    pub fn duplex() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = sys::fd::socketpair()?;
        Ok((
            Connection::new(Channel::new(a, Io::Blocking)?, Ends::Both),
            Connection::new(Channel::new(b, Io::Blocking)?, Ends::Both),
        ))
    }

    /// A receiving end and a sending end, in that order (Python's `Pipe(duplex=False)`).
    ///
    /// # Errors
    /// As [`duplex`](Self::duplex).
    pub fn one_way() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = sys::fd::socketpair()?;
        Ok((
            Connection::new(Channel::new(a, Io::Blocking)?, Ends::Receive),
            Connection::new(Channel::new(b, Io::Blocking)?, Ends::Send),
        ))
    }
}

/// One end of a [`Pipe`]. Messages are values of `T`, and may contain handles (queues,
/// locks, other connections).
///
/// **Drop:** closes this end; the other end's `recv` then reports [`Error::Disconnected`] once
/// it has read what was sent (unless another process still holds a copy of this end).
pub struct Connection<T> {
    chan: Option<Channel>,
    ends: Ends,
    _t: PhantomData<fn(T) -> T>,
}

/// What an end of a pipe may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Ends {
    /// Send and receive (a duplex pipe).
    Both,
    /// Only receive (the reading end of a one-way pipe).
    Receive,
    /// Only send (the writing end of a one-way pipe).
    Send,
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("closed", &self.chan.is_none())
            .finish()
    }
}

impl<T> Connection<T> {
    fn new(chan: Channel, ends: Ends) -> Self {
        Self {
            chan: Some(chan),
            ends,
            _t: PhantomData,
        }
    }

    fn chan(&mut self) -> Result<&mut Channel> {
        self.chan.as_mut().ok_or(Error::Closed)
    }

    /// Closes this end now (dropping it does the same).
    pub fn close(&mut self) {
        self.chan = None;
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.ends != Ends::Send
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.ends != Ends::Receive
    }

    /// Whether a message (or the end of the stream) is ready to be received, waiting at most
    /// `timeout` for one. `Duration::ZERO` just looks.
    ///
    /// # Errors
    /// The end is closed or not readable, or the socket failed.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        if !self.readable() {
            return Err(Error::InvalidArgument(
                "this end of the pipe cannot receive".into(),
            ));
        }
        let chan = self.chan()?;
        if chan.has_frame() || chan.at_eof() {
            return Ok(true);
        }
        if sys::fd::wait_readable(chan.as_fd(), Some(timeout))? {
            chan.fill()?;
        }
        Ok(chan.has_frame() || chan.at_eof())
    }
}

impl<T: Data> Connection<T> {
    /// Sends a message (blocks while the other end's buffer is full).
    ///
    /// # Errors
    /// [`Error::Encode`] if the value cannot be encoded (nothing is sent);
    /// [`Error::Disconnected`] if the other end is closed; [`Error::Closed`] if this one is.
    pub fn send(&mut self, value: &T) -> Result<()> {
        if !self.writable() {
            return Err(Error::InvalidArgument(
                "this end of the pipe cannot send".into(),
            ));
        }
        let chan = self.chan()?;
        let mut fds = FdSet::passing();
        let mut payload = Vec::new();
        fds::collect(&mut fds, || {
            codec::encode_message(value, "message", &mut payload)
        })?;
        // A large message goes straight into shared memory, not through the channel's buffer.
        chan.push_parts(MESSAGE, fds.duplicate()?, &[&payload])?;
        match chan.flush() {
            Ok(_) => {
                fds.sent();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::Disconnected),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives the next message, waiting for one.
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the other end is closed (or its process died) and every
    /// message it sent was received; [`Error::Decode`] for a message that is not a `T` (it is
    /// consumed); [`Error::Protocol`] for bytes that are not a message at all (the connection
    /// is useless afterwards).
    pub fn recv(&mut self) -> Result<T> {
        self.recv_until(None)
    }

    /// Receives a message if one is ready now; `Ok(None)` otherwise.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        match self.recv_until(Some(Instant::now())) {
            Err(Error::Timeout) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none came, or as [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.recv_until(parking::deadline(timeout))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<T> {
        if !self.readable() {
            return Err(Error::InvalidArgument(
                "this end of the pipe cannot receive".into(),
            ));
        }
        let mut frame = self.chan()?.recv(deadline)?;
        if frame.kind != MESSAGE {
            return Err(Error::Protocol(format!(
                "unexpected frame kind {} on a pipe",
                frame.kind
            )));
        }
        let item_fds = std::mem::take(&mut frame.fds);
        Ok(fds::receive(item_fds, || codec::decode(frame.payload()))?)
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let chan = self
            .chan
            .as_ref()
            .ok_or_else(|| S::Error::custom("a closed connection cannot be sent"))?;
        if chan.has_buffered_input() {
            return Err(S::Error::custom(
                "a connection with received, unread data cannot be sent",
            ));
        }
        let index = fds::attach(chan.as_fd()).map_err(S::Error::custom)?;
        (index, self.ends).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (index, ends) = <(u32, Ends)>::deserialize(d)?;
        let fd = fds::take(index).map_err(D::Error::custom)?;
        let chan = Channel::new(fd, Io::Blocking).map_err(D::Error::custom)?;
        Ok(Self::new(chan, ends))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw_pair() -> (Connection<String>, std::os::unix::net::UnixStream) {
        let (a, b) = sys::fd::socketpair().unwrap();
        (
            Connection::new(Channel::new(a, Io::Blocking).unwrap(), Ends::Both),
            std::os::unix::net::UnixStream::from(b),
        )
    }

    #[test]
    fn malformed_frames_are_errors_not_crashes() {
        let garbage: [&[u8]; 4] = [
            &[0xff, 0xff, 0xff, 0x7f, MESSAGE, 0, 0, 0], // over the frame limit
            &[3, 0, 0, 0, MESSAGE, 0, 9, 9, 1, 2, 3],    // reserved bits set
            &[2, 0, 0, 0, 0x11, 0, 0, 0, 1, 2],          // not a pipe message
            &[2, 0, 0, 0, MESSAGE, 5, 0, 0, 1, 2],       // announces descriptors it lacks
        ];
        for bytes in garbage {
            let (mut conn, mut raw) = raw_pair();
            raw.write_all(bytes).unwrap();
            let got = conn.recv_timeout(Duration::from_secs(5));
            assert!(
                matches!(got, Err(Error::Protocol(_))),
                "{bytes:?} gave {got:?}"
            );
        }
        // A well-formed frame whose payload is not a String.
        let (mut conn, mut raw) = raw_pair();
        raw.write_all(&[8, 0, 0, 0, MESSAGE, 0, 0, 0]).unwrap();
        raw.write_all(&u64::MAX.to_le_bytes()).unwrap();
        assert!(matches!(conn.recv(), Err(Error::Decode(_))));
        // A truncated frame, then the writer goes away.
        let (mut conn, mut raw) = raw_pair();
        raw.write_all(&[100, 0, 0, 0, MESSAGE, 0, 0, 0, 1]).unwrap();
        drop(raw);
        assert!(matches!(conn.recv(), Err(Error::Disconnected)));
    }
}
