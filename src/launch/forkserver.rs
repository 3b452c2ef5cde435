//! The forkserver start method, the parent's side: one fork server per program, spawned on
//! first use, asked for each child (the server's side is `child::forkserver`).
//!
//! A request hands the server the new child's socket and page, and the server answers with the
//! pid of a copy of itself that is a child of this program; from there the start is the same
//! as for any child (`bootstrap::greet`). Requests take turns under one lock: a fork takes a
//! fraction of a millisecond. A server that died (killed, say) is noticed by the next request,
//! which starts another and asks again, once.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Launch;
use crate::bootstrap::{self, ChildLink};
use crate::child::protocol::identity;
use crate::error::{Error, Result};
use crate::launch::inherited::PerProcess;
use crate::sys::page::SharedPage;
use crate::task;
use crate::wire::message::{Forked, Preload, Preloaded, Role, kind};
use crate::wire::{Io, codec};

/// How long the server may take to start (and preload), or to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

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
/// which is what makes the forkserver start method safe with threads.
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
    fn launch(&self, name: &str, role: Role, io: Io) -> Result<ChildLink> {
        let (ours, theirs, page) = bootstrap::child_ends()?;
        let pid = server().fork(&theirs, &page)?;
        drop(theirs);
        bootstrap::greet(pid, ours, page, name, role, io, identity()?)
    }
}

impl Server {
    /// Asks the server for a child serving on `sock` and `page`, starting the server if there
    /// is none, and once more if the one there was is gone. Returns the child's pid.
    fn fork(&mut self, sock: &OwnedFd, page: &SharedPage) -> Result<u32> {
        let was_running = self.link.is_some();
        match self.ask(sock, page) {
            Err(Error::Disconnected) if was_running => {
                self.link = None;
                self.ask(sock, page)
            }
            other => other,
        }
    }

    /// One request; [`Error::Disconnected`] if the server is gone.
    fn ask(&mut self, sock: &OwnedFd, page: &SharedPage) -> Result<u32> {
        let link = match &mut self.link {
            Some(link) => link,
            None => self.link.insert(start(self.preload)?),
        };
        let fds = vec![sock.try_clone()?, page.as_fd().try_clone_to_owned()?];
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
            Ok(Forked::Failed(why)) => Err(Error::Spawn(why)),
            Err(e) => {
                // Whatever went wrong, this server is not asked again: it is killed and reaped
                // (its link's drop), and the next request starts another.
                self.link = None;
                match e {
                    Error::Disconnected | Error::Io(_) => Err(Error::Disconnected),
                    other => Err(other),
                }
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
    let answer = link.channel.recv(Some(deadline))?;
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
    let preload = SERVER.try_lock().ok().and_then(|s| s.preload);
    super::inherited::reclaim(
        &SERVER,
        Server {
            link: None,
            preload,
        },
    );
}
