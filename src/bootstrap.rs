//! Where children get started: the parent's side of spawning and of the handshake.
//!
//! A child is this same program, re-executed from `/proc/self/exe` with the marker that
//! `child::start` looks for (`child::protocol::ENV`: its socket to the parent, the shared
//! progress page, the parent's pid) and the argument `child::protocol::CHILD_ARG`. The parent
//! greets it with its executable identity and waits for `READY` (or `REFUSE`); what the child
//! does from there is `child/`.
//!
//! Children are forked by one long-lived "spawner" thread: `PR_SET_PDEATHSIG` fires when the
//! *thread* that forked a child exits, so forking from short-lived user threads would kill
//! children early. The signal is armed before `exec`, and the child checks that its parent is
//! still the one that started it, closing the race where the parent dies first.
//!
//! The fork start method uses the same thread, which then does not `exec`: the copy forgets
//! what it inherited (`launch::inherited`), closes the parent's end of its socket, and goes
//! straight to the child's side of the same handshake (`child::start::serve_forked`), on the
//! spawner thread's stack. The spawner holds none of the crate's locks when it forks.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::child::protocol::{CHILD_ARG, ENV, FAULT_SLOT, identity};
use crate::error::{Death, Error, Result};
use crate::launch::inherited::{self, LinkFd, PerProcess};
use crate::sys;
use crate::sys::page::SharedPage;
use crate::wire::message::{Hello, Ready, Refuse, Role, kind};
use crate::wire::{Channel, Io, codec};

/// The parent's end of a freshly started child.
#[derive(Debug)]
pub(crate) struct ChildLink {
    pub(crate) pid: u32,
    pub(crate) channel: Channel,
    pub(crate) page: SharedPage,
    /// Readable once the child has exited.
    pub(crate) pidfd: OwnedFd,
    /// Whether the child was reaped (or handed to someone who will reap it).
    reaped: bool,
}

impl ChildLink {
    /// Waits for the child to exit and reaps it.
    pub(crate) fn reap(&mut self) -> std::io::Result<sys::proc::Exit> {
        let exit = sys::proc::reap(self.pid)?;
        self.reaped = true;
        Ok(exit)
    }

    /// How the child ended, from the status it was reaped with: a fault its handler recognised
    /// as a stack overflow (see `sys::signal`) is [`Death::StackOverflow`], anything else is
    /// told as the status says. The one rule for pool workers and `Process` children alike.
    pub(crate) fn death(&self, exit: sys::proc::Exit) -> Death {
        match exit {
            sys::proc::Exit::Signal(number)
                if sys::signal::stack_overflow_signal(self.page.slot(FAULT_SLOT))
                    == Some(number) =>
            {
                Death::StackOverflow { number }
            }
            other => other.into(),
        }
    }

    /// Hands the duty of reaping to the caller.
    pub(crate) fn detach(&mut self) {
        self.reaped = true;
    }
}

impl Drop for ChildLink {
    /// A child nobody reaped is killed and reaped: no process or zombie outlives its link.
    fn drop(&mut self) {
        inherited::keep_in_copies(sys::proc::raw(&self.channel.as_fd()));
        if !self.reaped {
            let _ = sys::proc::signal(self.pid, sys::proc::Stop::Kill);
            let _ = sys::proc::reap(self.pid);
        }
    }
}

/// A child the spawner thread is asked for: its socket and page (`theirs`: kept open across
/// `exec`, or adopted by the copy), made one of two ways.
struct SpawnRequest {
    how: How,
    theirs: [RawFd; 2],
    reply: mpsc::SyncSender<std::io::Result<u32>>,
}

/// The spawner thread's stack, which a forked child's tasks run on: the usual 8 MiB of a main
/// thread, on which spawned children run theirs.
const FORKED_STACK: usize = 8 << 20;

/// How the spawner thread makes a child.
enum How {
    /// Execute this program again, with this marker in its environment (spawn).
    Exec { marker: String },
    /// Fork: the copy serves on `theirs`.
    Fork,
}

/// The thread that forks every child (see the module docs), started when first needed. Only a
/// thread that exists is recorded: when it cannot be created (`EAGAIN` under a process limit,
/// say), that spawn fails with the OS cause and the next one tries again.
struct Spawner {
    tx: PerProcess<Mutex<Option<mpsc::Sender<SpawnRequest>>>>,
    /// Test hook: the next creation of the thread fails, as it does under `RLIMIT_NPROC`.
    #[cfg(test)]
    fail_next_start: std::sync::atomic::AtomicBool,
}

/// This process's spawner.
static SPAWNER: Spawner = Spawner::new();

impl Spawner {
    const fn new() -> Self {
        Self {
            tx: PerProcess::new(Mutex::new(None)),
            #[cfg(test)]
            fail_next_start: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Has the spawner thread make a child `how`, serving on `theirs` and `page`; returns its
    /// pid. The caller keeps both open until then.
    fn start(&self, how: How, theirs: &LinkFd, page: &SharedPage) -> Result<u32> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(SpawnRequest {
            how,
            theirs: [sys::proc::raw(theirs), sys::proc::raw(&page.as_fd())],
            reply,
        })?;
        answer
            .recv()
            .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?
            .map_err(|e| Error::Spawn(e.to_string()))
    }

    /// Hands `req` to the spawner thread, starting one if there is none or it is gone.
    fn submit(&self, req: SpawnRequest) -> Result<()> {
        // Held while a thread is started, so that concurrent first spawns start only one.
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let req = match tx.take() {
            None => req,
            Some(running) => match running.send(req) {
                Ok(()) => {
                    *tx = Some(running);
                    return Ok(());
                }
                // The thread ended (it only does by panicking): start another.
                Err(mpsc::SendError(req)) => req,
            },
        };
        let (started, rx) = mpsc::channel::<SpawnRequest>();
        self.start_thread(move || serve_spawns(rx))
            .map_err(|e| Error::Spawn(format!("the spawner thread could not start: {e}")))?;
        started
            .send(req)
            .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?;
        *tx = Some(started);
        Ok(())
    }

    /// Creates the spawner thread, running `serve`.
    fn start_thread(&self, serve: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .fail_next_start
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // What `clone` answers when the thread limit is reached, at the same place.
            return Err(std::io::Error::from_raw_os_error(11 /* EAGAIN */));
        }
        std::thread::Builder::new()
            .name("multiproc-spawner".into())
            // A forked child runs its tasks on this thread: give it a main thread's stack
            // (address space only, until used).
            .stack_size(FORKED_STACK)
            .spawn(serve)
            .map(drop)
    }
}

/// In a forked copy: forgets the parent's spawner thread, which does not exist here; the
/// copy's first spawn starts one of its own (see `launch::inherited`).
pub(crate) fn forget_inherited() {
    inherited::reclaim(&SPAWNER.tx, None);
}

/// The spawner thread: starts a child for each request until every sender is gone. It holds
/// none of the crate's locks while it forks.
fn serve_spawns(rx: mpsc::Receiver<SpawnRequest>) {
    for req in rx {
        let result = match req.how {
            How::Exec { marker } => {
                // SAFETY: the requester blocks on `reply` until we answer, keeping both
                // descriptors open for the whole call.
                let keep = unsafe { req.theirs.map(|fd| BorrowedFd::borrow_raw(fd)) };
                #[allow(unused_mut)]
                let mut spec = sys::proc::SpawnSpec {
                    env: vec![(ENV, marker)],
                    remove: Vec::new(),
                    keep: keep.to_vec(),
                    args: vec![CHILD_ARG, "--exact"],
                };
                // A rank's children know where they run, and are no ranks themselves.
                #[cfg(feature = "mpi")]
                if let Some((placement, launcher)) = crate::mpi::child_environment() {
                    spec.env.push((crate::mpi::ENV, placement));
                    spec.remove = launcher;
                }
                sys::proc::spawn_self(spec)
            }
            How::Fork => fork_here(req.theirs),
        };
        let _ = req.reply.send(result);
    }
}

/// Forks this process on the spawner thread; the copy serves on `sock` and never returns.
fn fork_here([sock, page]: [RawFd; 2]) -> std::io::Result<u32> {
    let parent = sys::proc::getpid();
    // No flush of std's `stdout` first, unlike the fork server: the spawner must never wait on
    // a lock a user's thread may hold while it waits for this very child (a `StdoutLock` held
    // across an `imap`). It holds whole lines only, unless something was printed without one.
    // SAFETY: the copy forgets the crate's inherited state before anything else, runs only the
    // child's side, and leaves with `_exit` (`inherited::live`). What else other threads held
    // at this moment is the documented hazard of the fork start method (`StartMethod::Fork`).
    match unsafe { sys::proc::fork() }? {
        sys::proc::Forked::Parent(pid) => Ok(pid),
        sys::proc::Forked::Child => {
            // Its own socket is the one child socket the copy keeps; the parent's end of it,
            // and every other, are closed as it forgets (`inherited::LINKS`).
            inherited::keep_in_copies(sock);
            inherited::live(|| crate::child::start::serve_forked(sock, page, parent))
        }
    }
}

/// Starts a child, greets it, and returns the parent's end. The child's `READY` (or `REFUSE`)
/// is the first frame that will arrive on the channel.
pub(crate) fn spawn_child(name: &str, role: Role, io: Io) -> Result<ChildLink> {
    spawn_child_as(&SPAWNER, name, role, io, identity()?)
}

/// [`spawn_child`] by forking this process instead (the fork start method).
pub(crate) fn fork_child(name: &str, role: Role, io: Io) -> Result<ChildLink> {
    // Known before the fork: the copy checks it in the handshake, and must not find it being
    // worked out by a thread of the parent (a `OnceLock` half-initialised for ever).
    let identity = identity()?;
    let (ours, theirs, page) = child_ends()?;
    let pid = SPAWNER.start(How::Fork, &theirs, &page)?;
    drop(theirs);
    greet(pid, ours, page, name, role, io, identity)
}

/// A new child's socket (the parent's end, the child's) and progress page.
pub(crate) fn child_ends() -> Result<(LinkFd, LinkFd, SharedPage)> {
    let (ours, theirs) = sys::fd::socketpair()?;
    Ok((
        LinkFd::new(ours),
        LinkFd::new(theirs),
        SharedPage::create()?,
    ))
}

/// [`spawn_child`] through `spawner`, claiming `identity` in the greeting (tests claim a wrong
/// one, and use spawners of their own).
fn spawn_child_as(
    spawner: &Spawner,
    name: &str,
    role: Role,
    io: Io,
    identity: [u64; 6],
) -> Result<ChildLink> {
    #[cfg(target_os = "linux")]
    std::hint::black_box(&crate::child::start::CHILD_HOOK);
    let (ours, theirs, page) = child_ends()?;
    let marker = format!(
        "{},{},{}",
        sys::proc::raw(&theirs),
        sys::proc::raw(&page.as_fd()),
        sys::proc::getpid()
    );
    let pid = spawner.start(How::Exec { marker }, &theirs, &page)?;
    drop(theirs);
    greet(pid, ours, page, name, role, io, identity)
}

/// The parent's side of a child's start once the child `pid` exists, however it was made: a
/// pidfd, the channel, and the greeting. A child that cannot be greeted is killed and reaped.
pub(crate) fn greet(
    pid: u32,
    ours: LinkFd,
    page: SharedPage,
    name: &str,
    role: Role,
    io: Io,
    identity: [u64; 6],
) -> Result<ChildLink> {
    let ends = sys::proc::pidfd(pid).and_then(|pidfd| Ok((pidfd, ours.into_channel(io)?)));
    let (pidfd, channel) = match ends {
        Ok(ends) => ends,
        Err(e) => {
            // Started but unusable: it must not linger, not even as a zombie.
            let _ = sys::proc::signal(pid, sys::proc::Stop::Kill);
            let _ = sys::proc::reap(pid);
            return Err(e.into());
        }
    };
    // From here the link kills and reaps the child if anything fails.
    let mut link = ChildLink {
        pid,
        channel,
        page,
        pidfd,
        reaped: false,
    };
    let hello = Hello {
        identity,
        name: name.to_string(),
        role,
    };
    link.channel.push(kind::HELLO, &codec::encode(&hello)?)?;
    // A greeting is far smaller than a socket buffer: this completes even when non-blocking.
    link.channel.flush()?;
    Ok(link)
}

/// Interprets the child's answer to the greeting.
pub(crate) fn check_ready(frame: &crate::wire::Frame) -> Result<u32> {
    match frame.kind {
        kind::READY => Ok(codec::decode::<Ready>(frame.payload())?.pid),
        kind::REFUSE => Err(Error::Spawn(
            codec::decode::<Refuse>(frame.payload())?.reason,
        )),
        other => Err(Error::Protocol(format!("expected READY, got kind {other}"))),
    }
}

/// Waits for the child's answer to the greeting (blocking channels).
pub(crate) fn await_ready(link: &mut ChildLink, deadline: Instant) -> Result<u32> {
    match link.channel.recv(Some(deadline)) {
        Ok(frame) => check_ready(&frame),
        Err(Error::Disconnected) => Err(Error::Spawn(
            "the child exited during start-up (see its stderr)".into(),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::child::protocol::EXIT_REFUSED;

    #[test]
    fn a_child_refuses_a_parent_with_another_executable() {
        let mut wrong = identity().unwrap();
        wrong[1] ^= 1;
        let mut link =
            spawn_child_as(&SPAWNER, "impostor", Role::Process, Io::Blocking, wrong).unwrap();
        match await_ready(&mut link, Instant::now() + Duration::from_secs(30)) {
            Err(Error::Spawn(reason)) => assert!(reason.contains("not the same executable")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let exit = link.reap().unwrap();
        assert_eq!(exit, sys::proc::Exit::Code(EXIT_REFUSED));
    }

    /// Regression (issue 9): one failed creation of the spawner thread (EAGAIN under
    /// `RLIMIT_NPROC`) left a dead sender behind, and every later spawn failed with "the
    /// spawner thread is gone". A spawner of its own, so that other tests are not affected.
    #[test]
    fn a_spawner_thread_that_could_not_start_is_started_by_the_next_spawn() {
        let spawner = Spawner::new();
        spawner
            .fail_next_start
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let me = identity().unwrap();
        match spawn_child_as(&spawner, "first", Role::PoolWorker, Io::Blocking, me) {
            Err(Error::Spawn(reason)) => {
                assert!(
                    reason.contains("Resource temporarily unavailable"),
                    "{reason}"
                )
            }
            other => panic!("expected the OS cause, got {other:?}"),
        }
        let mut link =
            spawn_child_as(&spawner, "second", Role::PoolWorker, Io::Blocking, me).unwrap();
        let pid = await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(pid, link.pid);
        link.channel.send(kind::EXIT, &[]).unwrap();
        assert_eq!(link.reap().unwrap(), sys::proc::Exit::Code(0));
    }

    #[test]
    fn a_child_greets_back_with_its_pid() {
        let mut link = spawn_child("greeter", Role::PoolWorker, Io::Blocking).unwrap();
        let pid = await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(pid, link.pid);
        link.channel.send(kind::EXIT, &[]).unwrap();
        assert_eq!(link.reap().unwrap(), sys::proc::Exit::Code(0));
    }

    /// The stack-overflow handler is a child's: a parent keeps std's own (which reports an
    /// overflow of any of its threads), however many children it starts.
    #[test]
    fn a_parent_keeps_its_own_fault_handler() {
        let mut link = spawn_child("plain", Role::PoolWorker, Io::Blocking).unwrap();
        await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert!(!sys::signal::installed_here());
        link.channel.send(kind::EXIT, &[]).unwrap();
        let exit = link.reap().unwrap();
        assert_eq!(link.death(exit), Death::Exit(0));
    }
}
