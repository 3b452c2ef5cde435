//! A fork server's process (`Role::ForkServer`): a spawned child that stays single-threaded and
//! forks children for its parent on request (the forkserver start method; the parent's side is
//! `launch::forkserver`).
//!
//! It first runs the parent's preload function, if any, once. Then, for each `FORK` frame —
//! whose two descriptors are the new child's socket and progress page — it forks a copy of
//! itself that is a child of *its parent*, not of the server (`sys::proc::fork_sibling`): the
//! program that asked reaps, watches and kills it exactly as a child it started itself, and
//! the copy dies with that program. The copy forgets what it inherited, closes the server's
//! socket, and serves on its own (`start::serve_forked`); the server answers with its pid.
//!
//! Being single-threaded is what makes this fork safe where the fork start method is not: no
//! lock can be held by a thread missing in the copy. A preload function that leaves threads
//! running gives that up, and is documented so.
//!
//! The one place in `child/` that reaches into the parent's side: a copy forgets the
//! per-process state and leaves as `launch::inherited` says, as every forked copy does.

use std::io::Write;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use super::protocol::{EXIT_PROTOCOL, EXIT_TASK_FAILED, PID_SLOT};
use super::start::serve_forked;
use crate::launch::inherited;
use crate::sys;
use crate::sys::page::SharedPage;
use crate::task;
use crate::wire::message::{Forked, Preload, Preloaded, kind};
use crate::wire::{Channel, codec};

/// Serves the parent until it says `EXIT` or goes away. Returns the exit status.
pub(crate) fn serve(mut ch: Channel) -> i32 {
    let Some(parent) = sys::proc::getppid() else {
        return EXIT_PROTOCOL;
    };
    match preload(&mut ch) {
        Ok(Preloaded::Done) => {}
        Ok(Preloaded::Panicked(_)) => return EXIT_TASK_FAILED,
        Err(_) => return EXIT_PROTOCOL,
    }
    loop {
        let mut frame = match ch.recv(None) {
            Ok(frame) => frame,
            // The parent is gone: so is everything the server was for.
            Err(_) => return 0,
        };
        match frame.kind {
            kind::FORK => {
                let Ok([sock, page]) = <[OwnedFd; 2]>::try_from(std::mem::take(&mut frame.fds))
                else {
                    return EXIT_PROTOCOL;
                };
                let answer = fork_child(&ch, sock, page, parent);
                let sent = codec::encode(&answer).map_err(crate::Error::from);
                if sent.and_then(|a| ch.send(kind::FORKED, &a)).is_err() {
                    return EXIT_PROTOCOL;
                }
            }
            kind::EXIT => return 0,
            _ => return EXIT_PROTOCOL,
        }
    }
}

/// Runs the preload function the parent names in its first frame, and says how it went.
fn preload(ch: &mut Channel) -> crate::Result<Preloaded> {
    let frame = ch.recv(None)?;
    if frame.kind != kind::PRELOAD {
        return Err(crate::Error::Protocol(format!(
            "expected the preload, got kind {}",
            frame.kind
        )));
    }
    let Preload { function } = codec::decode(frame.payload())?;
    let outcome = match function {
        None => Preloaded::Done,
        Some(offset) => {
            // SAFETY: the parent computed `offset` with `task::offset_of_fn` of a `fn()` in the
            // same executable; the handshake checked the executable identity.
            let f = unsafe { task::fn_at::<fn()>(offset) };
            match catch_unwind(AssertUnwindSafe(f)) {
                Ok(()) => Preloaded::Done,
                Err(panic) => Preloaded::Panicked(task::panic_message(panic.as_ref())),
            }
        }
    };
    ch.send(kind::PRELOADED, &codec::encode(&outcome)?)?;
    Ok(outcome)
}

/// Forks a child that serves on `sock` and `page`, for `parent`; returns the answer to send.
fn fork_child(ch: &Channel, sock: OwnedFd, page: OwnedFd, parent: u32) -> Forked {
    let page = match SharedPage::map(page) {
        Ok(page) => page,
        Err(e) => return Forked::Failed(format!("the fork server could not map a page: {e}")),
    };
    // What the server printed is not printed again by the copy.
    let _ = std::io::stdout().flush();
    // SAFETY: the server is single-threaded (see the module docs); the copy forgets what it
    // inherited first and leaves with `_exit` (`inherited::live`).
    match unsafe { sys::proc::fork_sibling() } {
        // The copy has its own; the server's are closed here, as `sock` and `page` drop.
        Ok(sys::proc::Forked::Parent(pid)) => Forked::Child(pid),
        Err(e) => Forked::Failed(format!("the fork server could not fork: {e}")),
        Ok(sys::proc::Forked::Child) => {
            // First of all: should the server die before it answers, the parent learns who
            // this is from the page, and ends it.
            page.slot(PID_SLOT)
                .store(u64::from(sys::proc::getpid()), Ordering::Release);
            let server = sys::proc::raw(&ch.as_fd());
            let (sock, page) = (sock.into_raw_fd(), sys::proc::raw(&page.as_fd()));
            inherited::live(|| {
                // SAFETY: the server's socket, open in the copy and owned there only by the
                // server's channel, which the copy never uses again (it never returns).
                drop(unsafe { sys::fd::adopt(server) });
                serve_forked(sock, page, parent)
            })
        }
    }
}
