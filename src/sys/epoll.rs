//! A persistent readiness set (Linux `epoll`), for a thread that watches many descriptors.
//!
//! `fd::poll` hands the kernel the whole list on every call, and the kernel hooks into and
//! unhooks from every descriptor in it each time it sleeps: a cost per call that grows with the
//! number of descriptors. Here each descriptor is registered once, under a caller's `u64` key,
//! and a wait costs what is ready, not what is watched. Registrations are level-triggered, so
//! a descriptor stays reported for as long as it is ready (as with `poll`), and a hang-up or
//! error is reported whatever the interest.
//!
//! A descriptor must be removed before it is closed: the kernel keys a registration on the
//! open file, which a duplicate elsewhere could keep alive (and reporting) after our close.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::io::Errno;

use super::fd::{Interest, Ready};

/// The longest single wait: a longer timeout is cut to this (the caller finds nothing ready,
/// works out what is left and waits again), which any kernel's `epoll_wait` accepts.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Most events one wait reports; any others stay ready for the next.
const MAX_EVENTS: usize = 256;

/// A set of descriptors, each watched under a key until removed.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

fn flags(want: Interest) -> EventFlags {
    let mut flags = EventFlags::empty();
    if want.read {
        flags |= EventFlags::IN;
    }
    if want.write {
        flags |= EventFlags::OUT;
    }
    flags
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            fd: epoll::create(CreateFlags::CLOEXEC)?,
        })
    }

    /// Starts watching `fd` for `want`; its readiness is reported under `key`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64, want: Interest) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(key), flags(want))?;
        Ok(())
    }

    /// Changes what `fd` (already watched) is watched for, and the key it is reported under.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, key: u64, want: Interest) -> io::Result<()> {
        epoll::modify(&self.fd, fd, EventData::new_u64(key), flags(want))?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        epoll::delete(&self.fd, fd)?;
        Ok(())
    }

    /// Waits until something watched is ready or `timeout` passes (`None` waits forever), and
    /// puts what is ready in `out` as `(key, what)`, at most [`MAX_EVENTS`] entries: the rest
    /// stay ready for the next call. Retries on `EINTR`.
    pub(crate) fn wait(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<(u64, Ready)>,
    ) -> io::Result<()> {
        let timeout = timeout.map(|d| {
            let d = d.min(LONGEST_WAIT);
            rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            }
        });
        let mut space = [MaybeUninit::<Event>::uninit(); MAX_EVENTS];
        let events = loop {
            match epoll::wait(&self.fd, &mut space, timeout.as_ref()) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
                Ok((events, _)) => break events,
            }
        };
        out.clear();
        out.extend(events.iter().map(|e| {
            let r = e.flags;
            let ready = Ready {
                read: r.contains(EventFlags::IN),
                write: r.contains(EventFlags::OUT),
                hangup: r.intersects(EventFlags::HUP | EventFlags::ERR),
            };
            (e.data.u64(), ready)
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::sys::fd::socketpair;

    const READ: Interest = Interest {
        read: true,
        write: false,
    };

    #[test]
    fn reports_what_is_ready_under_its_key_until_removed() {
        let ep = Epoll::new().unwrap();
        let (a, b) = socketpair().unwrap();
        let (c, _d) = socketpair().unwrap();
        ep.add(a.as_fd(), 7, READ).unwrap();
        ep.add(c.as_fd(), 9, READ).unwrap();
        let mut out = Vec::new();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "nothing sent yet");
        rustix::io::write(&b, b"x").unwrap();
        ep.wait(Some(Duration::from_secs(5)), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 7);
        assert!(out[0].1.read);
        // Level-triggered: still ready while unread, now under its new key.
        ep.modify(a.as_fd(), 8, READ).unwrap();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), [8]);
        ep.remove(a.as_fd()).unwrap();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "removed");
    }

    #[test]
    fn a_hang_up_is_reported_without_read_interest() {
        let ep = Epoll::new().unwrap();
        let (a, b) = socketpair().unwrap();
        let none = Interest {
            read: false,
            write: false,
        };
        ep.add(a.as_fd(), 1, none).unwrap();
        drop(b);
        let mut out = Vec::new();
        ep.wait(Some(Duration::from_secs(5)), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].1.hangup);
    }
}
