//! The forkserver start method, the parent's side: one fork server per program, spawned on
//! first use, asked for each child (the server's side is `child::forkserver`).
//!
//! A request hands the server the new child's socket and page, and the server answers with the
//! pid of a copy of itself that is a child of this program; from there the start is the same
//! as for any child (`bootstrap::greet`). Requests take turns under one lock: a fork takes a
//! fraction of a millisecond. A server that died (killed, say) is noticed by the next request,
//! which starts another and asks again, once.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Launch;
use crate::bootstrap::{self, ChildLink};
use crate::child::protocol::{PID_SLOT, identity};
use crate::error::{Error, Result};
use crate::launch::inherited::{LinkFd, PerProcess};
use crate::sys;
use crate::sys::page::SharedPage;
use crate::task;
use crate::wire::message::{Forked, Preload, Preloaded, Role, kind};
use crate::wire::{Io, codec};

/// How long the server may take to start, or to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long its preload function may take.
const PRELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// This program's fork server, and what it runs first.
struct Server {
    link: Option<ChildLink>,
    preload: Option<fn()>,
}

static SERVER: PerProcess<Mutex<Server>> = PerProcess::new(Mutex::new(Server {
    link: None,
    preload: None,
}));

fn server() -> std::sync::MutexGuard<'static, Server> {
    // Consistent between statements: a panic elsewhere cannot have broken it.
    SERVER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Has the fork server run `f` once, before it forks any child, like Python's
/// `set_forkserver_preload`: heavy initialisation (a table loaded into a `static`, a library
/// set up) is then paid once, and every child of the server starts with it done. Set it before
/// the first child the server starts.
///
/// `f` must not leave threads running: the server forks its children from its one thread,
/// which is what makes the forkserver start method safe with threads. It may take up to ten
/// minutes (a model loaded, say); meanwhile every start through the fork server waits.
///
/// # Errors
/// [`Error::InvalidArgument`] if the fork server is already running. If `f` panics, starting
/// a child fails with [`Error::Spawn`] naming the panic (and the server is started again, and
/// runs `f` again, for the next child).
///
/// # Examples
/// ```
/// use std::sync::OnceLock;
/// use multiproc::{Pool, StartMethod};
///
/// static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
/// fn load_table() { TABLE.get_or_init(|| (0..1_000).map(|x| x * x).collect()); }
/// fn look_up(i: usize) -> u64 { TABLE.get().map_or(0, |t| t[i]) }
///
/// multiproc::init();
/// multiproc::set_forkserver_preload(load_table)?;
/// let pool = Pool::builder().processes(2).start_method(StartMethod::ForkServer).build()?;
/// assert_eq!(pool.map(look_up, [2usize, 999])?, vec![4, 998_001]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn set_forkserver_preload(f: fn()) -> Result<()> {
    let mut server = server();
    if server.link.is_some() {
        return Err(Error::InvalidArgument(
            "the fork server is already running: set its preload before it starts a child".into(),
        ));
    }
    server.preload = Some(f);
    Ok(())
}

/// The forkserver start method (see the module docs).
pub(super) struct ForkServer;

impl Launch for ForkServer {
    /// Asks the server for a child, starting the server if there is none, and asking a new
    /// one once more if the one there was turns out to be gone.
    fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (ours, theirs, page) = bootstrap::child_ends()?;
            let (was_running, asked) = {
                let mut server = server();
                (server.link.is_some(), server.ask(&theirs, &page))
            };
            drop(theirs);
            match asked {
                Ok(pid) => return bootstrap::greet(pid, ours, page, name, role, io, identity()?),
                Err(Lost(e)) => {
                    // Fresh ends for the next try: a child the lost server made from these may
                    // exist, and must not share a socket with the next one.
                    end_orphan(&ours, &page);
                    if !was_running || tries > 1 {
                        return Err(e);
                    }
                }
                Err(Refused(e)) => return Err(e),
            }
        }
    }
}

/// Why a request to the fork server failed.
enum Failure {
    /// The server is gone, or stopped answering (and was killed): the request may or may not
    /// have made a child.
    Lost(Error),
    /// The server answered: no child was made.
    Refused(Error),
}
use Failure::{Lost, Refused};

/// How long a lost server's child may take to say who it is (it does so first thing).
const ORPHAN_WAIT: Duration = Duration::from_secs(1);

/// After the server was lost with a request for a child on `ours`'s socket and `page`: ends
/// the child it may have forked before it went. Such a child writes its pid in its page before
/// anything else; if instead the socket's other end is closed (nothing but a child would still
/// hold it once the server is gone), there is none.
fn end_orphan(ours: &LinkFd, page: &SharedPage) {
    let deadline = Instant::now() + ORPHAN_WAIT;
    loop {
        let pid = page.slot(PID_SLOT).load(Ordering::Acquire);
        if let Ok(pid @ 1..) = u32::try_from(pid) {
            // Our child (the server made it with CLONE_PARENT), and known to no one else.
            let _ = sys::proc::signal(pid, sys::proc::Stop::Kill);
            let _ = sys::proc::reap(pid);
            return;
        }
        // The child writes nothing on its socket before it is greeted: readable means closed.
        let closed = sys::fd::wait_readable(ours.as_fd(), Some(Duration::from_millis(1)));
        if !matches!(closed, Ok(false)) || Instant::now() >= deadline {
            return;
        }
    }
}

impl Server {
    /// One request for a child serving on `sock` and `page`, starting the server if there is
    /// none. Returns the child's pid.
    fn ask(&mut self, sock: &LinkFd, page: &SharedPage) -> std::result::Result<u32, Failure> {
        let link = match &mut self.link {
            Some(link) => link,
            None => self.link.insert(start(self.preload).map_err(Refused)?),
        };
        let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map_err(Error::from);
        let fds = vec![
            dup(sock.as_fd()).map_err(Refused)?,
            dup(page.as_fd()).map_err(Refused)?,
        ];
        let answer = link
            .channel
            .push_parts(kind::FORK, fds, &[])
            .and_then(|()| link.channel.flush().map_err(Error::from))
            .and_then(|_| link.channel.recv(Some(Instant::now() + ANSWER_TIMEOUT)));
        let answer = match answer {
            Ok(frame) if frame.kind == kind::FORKED => {
                codec::decode::<Forked>(frame.payload()).map_err(Error::from)
            }
            Ok(frame) => Err(Error::Protocol(format!(
                "the fork server answered with kind {}",
                frame.kind
            ))),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Forked::Child(pid)) => Ok(pid),
            Ok(Forked::Failed(why)) => Err(Refused(Error::Spawn(why))),
            Err(e) => {
                // Whatever went wrong, this server is not asked again: it is killed and reaped
                // (its link's drop), and the next request starts another.
                self.link = None;
                Err(Lost(Error::Spawn(format!("the fork server was lost: {e}"))))
            }
        }
    }
}

/// Spawns a fork server and has it run `preload`.
fn start(preload: Option<fn()>) -> Result<ChildLink> {
    let mut link = bootstrap::spawn_child("ForkServer", Role::ForkServer, Io::Blocking)?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    bootstrap::await_ready(&mut link, deadline)?;
    let function = preload.map(|f| task::offset_of_fn(f as usize));
    link.channel
        .send(kind::PRELOAD, &codec::encode(&Preload { function })?)?;
    let answer = link.channel.recv(Some(Instant::now() + PRELOAD_TIMEOUT))?;
    if answer.kind != kind::PRELOADED {
        return Err(Error::Protocol(format!(
            "the fork server answered the preload with kind {}",
            answer.kind
        )));
    }
    match codec::decode::<Preloaded>(answer.payload())? {
        Preloaded::Done => Ok(link),
        Preloaded::Panicked(why) => Err(Error::Spawn(format!(
            "the fork server's preload function panicked: {why}"
        ))),
    }
}

/// In a forked copy: forgets the parent's fork server (the copy's first request starts one of
/// its own), keeping the preload unless a thread of the parent held the lock (see
/// `launch::inherited`).
pub(crate) fn forget_inherited() {
    let preload = super::inherited::peek(&SERVER, |s| s.preload).flatten();
    super::inherited::reclaim(
        &SERVER,
        Server {
            link: None,
            preload,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server lost after it forked: its child, which said who it is in its page, is killed
    /// and reaped; with no child, the closed socket says so at once.
    #[test]
    fn a_child_the_lost_server_made_is_found_and_ended() {
        let (ours, theirs, page) = bootstrap::child_ends().unwrap();
        let slot = page.slot(PID_SLOT);
        let copy = || {
            slot.store(u64::from(sys::proc::getpid()), Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        };
        // SAFETY: the copy makes system calls and an atomic store only, until it is killed.
        let pid = unsafe { sys::proc::fork_and_run(copy) }.unwrap();
        drop(theirs);
        let t = Instant::now();
        end_orphan(&ours, &page);
        assert!(t.elapsed() < ORPHAN_WAIT, "took {:?}", t.elapsed());
        // Reaped: no longer a child of ours.
        assert!(sys::proc::pidfd(pid).is_err() || sys::proc::reap(pid).is_err());

        let (ours, theirs, page) = bootstrap::child_ends().unwrap();
        drop(theirs);
        let t = Instant::now();
        end_orphan(&ours, &page);
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "took {:?}",
            t.elapsed()
        );
    }
}
