//! Descriptors: sockets, file-descriptor passing, readiness polling, wake-ups, and the
//! process's table of open descriptors.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, FdFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// Most descriptors a single `sendmsg` carries; larger sets are split by the caller.
pub(crate) const MAX_FDS_PER_MSG: usize = 64;

/// What a memory object is, independently of its name: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// The identity of the object behind `fd`.
pub(crate) fn object_id(fd: BorrowedFd<'_>) -> io::Result<ObjectId> {
    let st = rustix::fs::fstat(fd)?;
    Ok(ObjectId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// What descriptor number `raw` of this process refers to, as `/proc/self/fd` names it
/// (`socket:[…]`, `/memfd:<label> (deleted)`, a path); `None` if it is not open. Asking
/// neither needs nor takes ownership of the descriptor.
pub(crate) fn target(raw: RawFd) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// Whether descriptor number `raw` is an open socket of this process.
pub(crate) fn is_socket(raw: RawFd) -> bool {
    target(raw).is_some_and(|t| t.starts_with("socket:"))
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok(pair)
}

/// A connected pair of Unix sequenced-packet sockets (each send is one whole message),
/// non-blocking and close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    Ok(pair)
}

/// Switches a descriptor between blocking and non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let flags = if on {
        flags | rustix::fs::OFlags::NONBLOCK
    } else {
        flags - rustix::fs::OFlags::NONBLOCK
    };
    rustix::fs::fcntl_setfl(fd, flags)?;
    Ok(())
}

/// Sets or clears close-on-exec.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    rustix::io::fcntl_setfd(fd, flags)?;
    Ok(())
}

/// Sends bytes, with `fds` attached to the first byte. Never raises SIGPIPE: a closed peer is
/// `BrokenPipe`. Returns how many bytes went out (possibly fewer than `bytes.len()`).
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    let iov = [io::IoSlice::new(bytes)];
    loop {
        let sent = if fds.is_empty() {
            rustix::net::send(sock, bytes, flags)
        } else {
            let mut space = [std::mem::MaybeUninit::<u8>::uninit();
                rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "too many file descriptors in one message",
                ));
            }
            rustix::net::sendmsg(sock, &iov, &mut control, flags)
        };
        match sent {
            Err(Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Receives bytes into `buf`, appending any descriptors that came with them to `fds`.
/// `Ok(0)` means the peer closed its end.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let mut space =
        [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = message {
                        fds.extend(received);
                    }
                }
                if msg.flags.contains(ReturnFlags::CTRUNC) {
                    // Descriptors that came with these bytes were dropped (this process has
                    // none free): the frames that claim them cannot be matched any more.
                    return Err(io::Error::other(
                        "descriptors sent with a message were lost: no descriptor free",
                    ));
                }
                return Ok(msg.bytes);
            }
        }
    }
}

/// Copies the start of the next message without taking it (and without its descriptors),
/// never blocking. `WouldBlock` if there is none.
pub(crate) fn peek(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok((n, _)) => return Ok(n),
        }
    }
}

/// What `poll` should wait for on one descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// What `poll` reported for one descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    pub(crate) read: bool,
    pub(crate) write: bool,
    /// Hang-up or error: the peer is gone (there may still be bytes to read).
    pub(crate) hangup: bool,
}

/// Waits until one of `fds` is ready or `timeout` passes (`None` waits forever).
/// Retries on `EINTR`. Returns one `Ready` per entry.
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
    out: &mut Vec<Ready>,
) -> io::Result<()> {
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, want)| {
            let mut flags = PollFlags::empty();
            if want.read {
                flags |= PollFlags::IN;
            }
            if want.write {
                flags |= PollFlags::OUT;
            }
            PollFd::new(fd, flags)
        })
        .collect();
    let timeout = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    loop {
        match rustix::event::poll(&mut pollfds, timeout.as_ref()) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    out.clear();
    out.extend(pollfds.iter().map(|p| {
        let r = p.revents();
        Ready {
            read: r.contains(PollFlags::IN),
            write: r.contains(PollFlags::OUT),
            hangup: r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        }
    }));
    Ok(())
}

/// Waits until `fd` is readable (or hung up), up to `timeout`. Returns whether it is.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut out = Vec::with_capacity(1);
    poll(
        &[(
            fd,
            Interest {
                read: true,
                write: false,
            },
        )],
        timeout,
        &mut out,
    )?;
    Ok(out[0].read || out[0].hangup)
}

/// A counter-based wake-up: any thread may `notify`; a poller sees it readable.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Self { fd })
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            // The counter is saturated: a wake-up is already pending, which is all we need.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Clears pending wake-ups.
    pub(crate) fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Duplicates a raw descriptor number this process was handed at start-up into an owned one.
///
/// # Safety
/// `raw` must be an open descriptor that nothing else in the process owns.
pub(crate) unsafe fn adopt(raw: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller guarantees `raw` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Closes every descriptor of this process except stdin, stdout, stderr and `keep`, so that a
/// helper process holds nothing of its parent's (a pipe end it kept would hide the parent's
/// exit from the reader, for one).
///
/// # Safety
/// No other part of the process may own a descriptor other than those kept: call it at the
/// start of a single-threaded helper process, after dropping everything else.
pub(crate) unsafe fn close_all_except(keep: BorrowedFd<'_>) -> io::Result<()> {
    let keep = keep.as_raw_fd();
    let listing = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = rustix::fs::Dir::new(listing)?;
    // The listing's own descriptor shows up in it; it is closed by dropping `dir`.
    let own = dir.fd()?.as_raw_fd();
    let mut open: Vec<RawFd> = Vec::new();
    for entry in dir.by_ref() {
        if let Ok(fd) = entry?.file_name().to_string_lossy().parse::<RawFd>() {
            open.push(fd);
        }
    }
    drop(dir);
    for fd in open {
        if fd > 2 && fd != keep && fd != own {
            // SAFETY: the caller guarantees nothing else in the process owns `fd`; owning it
            // for the duration of this drop closes it.
            drop(unsafe { adopt(fd) });
        }
    }
    Ok(())
}
